"""The style-transfer models of a trained attention auto-encoder, made exportable.

A served or on-device model is an image -> image function. `FixedStyleTransfer` is the
auto-encoder's stylization (tfstyle.style.stylizer: attention, whitening, multi-scale style
swap, multi-stroke fusion, colouring, decoding, optional region) with ONE style baked in: the
style's StyleBank (colouring transform, mean and whitened pyramid, computed once at export
with float64 eigen-decompositions) is held as constant weights. It has the generators'
contract, so the SavedModel signatures, the LiteRT conversion, models.json, the client and
the Android demo treat it as one more "direction":

    x: float32 [B, H, W, 3] in [-1, 1]  ->  y: float32 [B, H, W, 3] in [-1, 1]
    (pixels = (x + 1) * 127.5; each image is stylized on its own: a batch that is not
    statically one is mapped over, image by image)

Inside, the image is reflection-padded to the encoder's downsampling (4, 8 or 16) and the
output cropped back. `whitening="eigh"` is the stylization of `python -m tfstyle.stylize`
(the Keras reference every artifact is checked against); LiteRT has no eigen-decomposition
operator, so the LiteRT files whiten the content with Newton-Schulz iterations
("newton_schulz", tfstyle.wct), and their measured agreement says what that costs.

Serving memory: the style swap's correlation volume grows with content x style positions,
so `pixel_limit` gives the largest content whose whole volume (one chunk, the served graph
has a dynamic size) stays within options.max_swap_entries floats; the serving size policy
downscales larger uploads to it. Images must be at least `min_side` on a side.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfstyle.core.images import from_model_range, to_model_range
from tfstyle.style import fusion, swap, wct
from tfstyle.style.autoencoder import AttentionAutoencoder, downsampling
from tfstyle.style.stylizer import (
    StyleBank,
    StylizeOptions,
    Stylizer,
    region_composite,
    stylize_features,
)


class FixedStyleTransfer(keras.Model):
    """A trained AttentionAutoencoder with one style baked in (see the module docstring)."""

    def __init__(self, autoencoder: AttentionAutoencoder, bank: StyleBank,
                 options: StylizeOptions, whitening: str = "eigh", **kwargs):
        super().__init__(**kwargs)
        if whitening not in wct.WHITENING_METHODS:
            raise ValueError(f"whitening must be one of {wct.WHITENING_METHODS}, "
                             f"got {whitening!r}")
        if options.region != "all" and autoencoder.attention == "none":
            raise ValueError(f"--region={options.region}: the model has no attention module")
        self.autoencoder = autoencoder
        self.options = options
        self.whitening = whitening
        self.multiple = downsampling(autoencoder.cut)
        self.style_shapes = [tuple(int(d) for d in m.shape) for m in bank.pyramid]
        self._transform = self._constant("colour_transform", bank.colour_transform)
        self._mean = self._constant("style_mean", bank.mean)
        self._pyramid = [self._constant(f"style_scale_{i}", m)
                         for i, m in enumerate(bank.pyramid)]
        self.built = True

    def _constant(self, name, value):
        value = np.asarray(value, np.float32)
        weight = self.add_weight(name=name, shape=value.shape, initializer="zeros",
                                 trainable=False)
        weight.assign(value)
        return weight

    @property
    def bank(self) -> StyleBank:
        return StyleBank(tf.convert_to_tensor(self._transform), tf.convert_to_tensor(self._mean),
                         [tf.convert_to_tensor(m) for m in self._pyramid])

    @property
    def min_side(self) -> int:
        """Smallest image side: the bottleneck must be larger than the patch radius."""
        return self.multiple * (self.options.patch_size // 2 + 1)

    def pixel_limit(self, max_side: int) -> int:
        """Most content pixels (for images no longer than `max_side` on a side) whose whole
        style-swap volume against the finest style map fits in options.max_swap_entries
        floats. For an h x w image, bottleneck h' <= h/m + 1, and the volume is
        (h' + p - 1)(w' + p - 1) Hs Ws <= (hw / m^2 + p (h + w) / m + p^2) Hs Ws, with
        h + w <= 2 max_side."""
        floor = self.min_side ** 2
        if not self.style_shapes:
            return max(floor, 2 * max_side * max_side)
        hs, ws, _ = self.style_shapes[-1]
        p, m = self.options.patch_size, self.multiple
        positions = self.options.max_swap_entries / (hs * ws) - p * p - 2.0 * p * max_side / m
        return max(floor, int(positions * m * m))

    def call(self, x, training=False):
        if x.shape[0] == 1:
            return self.stylize_one(x[0])[None]
        return tf.map_fn(self.stylize_one, x, parallel_iterations=1,
                         fn_output_signature=tf.TensorSpec(x.shape[1:], tf.float32))

    def stylize_one(self, image):
        """[H, W, 3] in [-1, 1] -> [H, W, 3] in [-1, 1]."""
        o, ae = self.options, self.autoencoder
        pixels = from_model_range(image)
        h, w = swap.dim(pixels, 0), swap.dim(pixels, 1)
        if isinstance(h, int) and isinstance(w, int):
            if min(h, w) < self.min_side:
                raise ValueError(f"a {h}x{w} image is smaller than this style-transfer "
                                 f"model's minimum side {self.min_side}")
        else:
            tf.debugging.Assert(tf.minimum(h, w) >= self.min_side, [
                f"image smaller than the style-transfer model's minimum side "
                f"{self.min_side} (encoder downsampling x (patch_size // 2 + 1)); height, "
                "width:", h, w])
        pad_h, pad_w = -h % self.multiple, -w % self.multiple
        padded = tf.pad(pixels, [[0, pad_h], [0, pad_w], [0, 0]], mode="REFLECT")
        features = ae.encode(padded[None])[ae.cut]
        styled = stylize_features(ae, features, self.bank, o, self.whitening)
        y = tf.clip_by_value(ae.decode(styled.blended[None])[0, :h, :w], 0.0, 255.0)
        if o.region != "all":
            if o.unstylized == "decoded":
                keep = tf.clip_by_value(ae.decode(styled.content[None])[0, :h, :w], 0.0, 255.0)
            else:
                keep = pixels
            size = (h + pad_h, w + pad_w)
            attention = tf.clip_by_value(fusion.resize_map(styled.attention, size)[:h, :w],
                                         0.0, 1.0)
            y, _ = region_composite(y, keep, attention, o.region, o.mask_threshold)
        return to_model_range(y)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


def fixed_style_models(autoencoder: AttentionAutoencoder, style: np.ndarray,
                       options: StylizeOptions) -> tuple[FixedStyleTransfer, FixedStyleTransfer]:
    """(reference, litert): the model with `style` (RGB uint8) baked in, whitening by eigh
    (SavedModel, and the reference of every check) and by Newton-Schulz (LiteRT)."""
    bank = Stylizer(autoencoder).bank(style, options)
    return (FixedStyleTransfer(autoencoder, bank, options, "eigh"),
            FixedStyleTransfer(autoencoder, bank, options, "newton_schulz"))
