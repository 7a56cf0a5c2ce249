"""Shipping models: SavedModel for TF Serving, LiteRT for phones, agreement checks, the serving
client."""
