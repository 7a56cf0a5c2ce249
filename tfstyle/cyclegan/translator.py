"""Translation of whole images of any size and aspect ratio with a generator."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfstyle.core.images import to_model_range, to_uint8


class Translator:
    """Runs a generator on whole images of any size and aspect ratio.

    Images are reflection-padded to a multiple of 4 and cropped back. Images whose longer
    side exceeds `tile` are cut into overlapping tiles of at most tile x tile pixels whose
    outputs are blended with linear ramps over the `overlap` pixels, so memory stays bounded
    whatever the image size (instance norm sees each tile's own statistics; a larger tile
    gives a more uniform result).
    """

    def __init__(self, generator: keras.Model, tile: int = 512, overlap: int = 32):
        if tile % 4 or tile < 16:
            raise ValueError(f"tile must be a multiple of 4 and at least 16, got {tile}")
        if not 0 <= overlap < tile // 2:
            raise ValueError(f"overlap must be in [0, tile/2), got {overlap}")
        self.tile, self.overlap = tile, overlap
        self._run = tf.function(lambda x: generator(x, training=False),
                                input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])

    def _run_padded(self, x: np.ndarray) -> np.ndarray:
        h, w = x.shape[:2]
        ph, pw = -h % 4, -w % 4
        if ph or pw:
            x = np.pad(x, [(0, ph), (0, pw), (0, 0)], mode="reflect" if min(h, w) > 4 else "edge")
        return self._run(x[None]).numpy()[0, :h, :w]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 [H, W, 3] -> translated RGB uint8 [H, W, 3]."""
        x = to_model_range(image)
        h, w = x.shape[:2]
        if max(h, w) <= self.tile:
            return to_uint8(self._run_padded(x))
        out = np.zeros((h, w, 3), np.float64)
        weight = np.zeros((h, w, 1), np.float64)
        for top in _starts(h, self.tile, self.overlap):
            for left in _starts(w, self.tile, self.overlap):
                patch = x[top:top + self.tile, left:left + self.tile]
                ramp = _ramp(patch.shape[0], self.overlap, top > 0, top + self.tile < h)[:, None] \
                    * _ramp(patch.shape[1], self.overlap, left > 0, left + self.tile < w)[None]
                out[top:top + patch.shape[0], left:left + patch.shape[1]] += \
                    self._run_padded(patch) * ramp[..., None]
                weight[top:top + patch.shape[0], left:left + patch.shape[1]] += ramp[..., None]
        return to_uint8(out / weight)


def _starts(length, tile, overlap):
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step)) + [length - tile]
    return sorted(set(starts))


def _ramp(length, overlap, fade_in, fade_out):
    ramp = np.ones(length)
    if overlap:
        edge = (np.arange(overlap) + 1.0) / (overlap + 1.0)
        if fade_in:
            ramp[:overlap] = np.minimum(ramp[:overlap], edge)
        if fade_out:
            ramp[-overlap:] = np.minimum(ramp[-overlap:], edge[::-1])
    return ramp
