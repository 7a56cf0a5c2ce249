"""Trained generators on disk, and translation of images of any size with them.

A trained model directory holds its final generators as Keras files:

    MODEL_DIR/generators/AtoB.keras    G: A -> B  (float32, input and output in [-1, 1])
    MODEL_DIR/generators/BtoA.keras    F: B -> A
    MODEL_DIR/generators/info.json     how they were trained (block, sizes, dataroot, step)

`python -m tfstyle.translate` and `python -m export.generators` read them from there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfstyle import models  # noqa: F401  (registers the layers for loading)

DIRECTIONS = ("AtoB", "BtoA")


def generators_dir(model_dir) -> Path:
    return Path(model_dir) / "generators"


def save_generators(model_dir, generators: dict, info: dict) -> None:
    """Write each generator to generators/<direction>.keras (float32) and info.json, each
    through a temporary file so a reader never sees half a file."""
    out = generators_dir(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    for direction, generator in generators.items():
        if not generator.built:
            generator.build((None, None, None, 3))
        generator = as_float32(generator)
        tmp = out / f".{direction}.tmp.keras"
        generator.save(tmp)
        os.replace(tmp, out / f"{direction}.keras")
    tmp = out / ".info.json.tmp"
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True))
    os.replace(tmp, out / "info.json")


def as_float32(model: keras.Model) -> keras.Model:
    """`model` itself if it computes in float32, else a float32 copy with the same weights
    (a mixed-precision model is saved and served in float32)."""
    if model.dtype_policy.name == "float32":
        return model
    config = model.get_config()
    config["dtype"] = "float32"
    clone = type(model).from_config(config)
    clone.build((None, None, None, 3))
    clone.set_weights([np.asarray(w, dtype=np.float32) for w in model.get_weights()])
    return clone


def load_info(model_dir) -> dict:
    path = generators_dir(model_dir) / "info.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {model_dir} holds no finished training "
            "(train with python -m train.cyclegan --model_dir=...)")
    return json.loads(path.read_text())


def load_generator(model_dir, direction: str) -> keras.Model:
    """The trained generator for `direction` ('AtoB' or 'BtoA') from `model_dir`."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    path = generators_dir(model_dir) / f"{direction}.keras"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {model_dir} holds no trained {direction} generator "
            "(train with python -m train.cyclegan --model_dir=...)")
    return keras.models.load_model(path)


def to_model_range(image: np.ndarray) -> np.ndarray:
    """RGB uint8 [.., H, W, 3] -> float32 in [-1, 1]."""
    return image.astype(np.float32) / 127.5 - 1.0


def to_uint8(x) -> np.ndarray:
    """float in [-1, 1] -> RGB uint8."""
    return np.clip(np.rint((np.asarray(x) + 1.0) * 127.5), 0, 255).astype(np.uint8)


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
