"""Texture words: a word's images, clustered by style, rendered onto a content image by Gatys
style transfer."""
