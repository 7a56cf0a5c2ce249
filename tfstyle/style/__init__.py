"""Attention-aware style transfer (the CBAM seed, AAMS): the VGG19 auto-encoder, its trainer,
whitening/colouring, style swap, fusion, the stylizer."""
