"""Trained generators on disk: save, load and describe a model directory's generators.

A trained model directory holds its final generators as Keras files:

    MODEL_DIR/generators/AtoB.keras    G: A -> B  (float32, input and output in [-1, 1])
    MODEL_DIR/generators/BtoA.keras    F: B -> A
    MODEL_DIR/generators/info.json     how they were trained (block, sizes, dataroot, step)

`python -m tfstyle.translate` and `python -m export.generators` read them from there.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

from tfstyle.core.files import atomic_path, write_json_atomic
from tfstyle.core.keras_files import load_keras_file
from tfstyle.cyclegan import networks  # noqa: F401  (registers the layers for loading)

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
        with atomic_path(out / f"{direction}.keras") as tmp:
            generator.save(tmp)
    write_json_atomic(out / "info.json", info)


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
    return load_keras_file(generators_dir(model_dir) / f"{direction}.keras",
                           f"trained {direction} generator",
                           "train with python -m train.cyclegan --model_dir=...")
