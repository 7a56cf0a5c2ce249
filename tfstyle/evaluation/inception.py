"""InceptionV3 pool features for FID and KID.

The feature of an image is the 2048-d output of InceptionV3's global average pool (the
``pool_3`` features of the FID convention), from keras.applications' InceptionV3 without
the top.

Input
    An RGB uint8 image of any size is resized to 299 x 299 with bilinear interpolation
    (tf.image.resize, no antialiasing: what the TF FID code does) and scaled with
    ``keras.applications.inception_v3.preprocess_input`` (x / 127.5 - 1). The aspect ratio is
    not kept, as in the reference FID implementations.

Weights (the ``weights`` argument), following `tfstyle.vgg`:
    ``"imagenet"``  the Keras ImageNet weights (no top), from the Keras cache
                    (``~/.keras/models/<file>`` or ``$KERAS_HOME/models``) or downloaded there;
                    if neither works, `InceptionWeightsUnavailableError` says how to supply a
                    local file.
    a path          a local file: ``*.h5`` / ``*.hdf5`` (legacy Keras HDF5, e.g. the file
                    keras.applications downloads, with or without the top), ``*.keras`` (a saved
                    Keras InceptionV3) or ``*.weights.h5`` (Keras 3 weights of InceptionV3
                    without the top). keras.applications names InceptionV3's layers with global
                    counters (``conv2d_17``), so weights are matched by *order*: the n-th layer
                    with weights in the file goes to the n-th in the model, shapes checked; a
                    file with the top has one extra layer (``predictions``) at the end, ignored.
                    A missing file raises FileNotFoundError naming the path.
    ``"random"``    random initialisation, silently: for tests.
    ``None``        random initialisation with a RuntimeWarning and an absl warning.

Caveat: published FIDs (e.g. the CycleGAN horse2zebra numbers) use the TF-slim / pytorch-fid
Inception graph ("pt_inception-2015-12-05"), whose weights differ from the keras.applications
ImageNet weights. FIDs from this module are comparable with each other, not digit for digit
with published tables.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable, Union

import keras
import numpy as np
import tensorflow as tf
from absl import logging

WeightsSpec = Union[str, os.PathLike, None]

#: Input side of InceptionV3 for FID.
INPUT_SIZE = 299
#: Dimension of the pool features.
FEATURE_DIM = 2048

_NOTOP_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
_NOTOP_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
              + _NOTOP_FILE)
_NOTOP_MD5 = "bcbd6486424b2319ff4ef7d526e38f63"


class InceptionWeightsUnavailableError(RuntimeError):
    """The ImageNet InceptionV3 weights are neither in the Keras cache nor downloadable."""


class InceptionWeightsMismatchError(ValueError):
    """A local weights file does not hold InceptionV3's layers."""


def _keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def imagenet_weights_file() -> tuple[str, str]:
    """(file name, URL) of the Keras ImageNet InceptionV3 weights without the top."""
    return _NOTOP_FILE, _NOTOP_URL


def _fetch_imagenet_weights() -> str:
    try:
        return keras.utils.get_file(_NOTOP_FILE, _NOTOP_URL, cache_subdir="models",
                                    file_hash=_NOTOP_MD5)
    except Exception as err:  # get_file reports network failures as plain Exception
        cached = _keras_cache_dir() / _NOTOP_FILE
        raise InceptionWeightsUnavailableError(
            f"Could not get the ImageNet InceptionV3 weights for FID/KID: {err}\n"
            f"They are looked for in the Keras cache as {cached} and otherwise downloaded "
            f"from {_NOTOP_URL}.\nOn a machine without internet access, download that file "
            f"elsewhere and either copy it to {cached} or pass its path as "
            f"weights='/path/to/{_NOTOP_FILE}' (CLI: --inception_weights=/path/to/"
            f"{_NOTOP_FILE})."
        ) from err


def _weighted(model: keras.Model) -> list:
    return [layer for layer in model.layers if layer.weights]


def _legacy_h5_layers(path: Path) -> list[tuple[str, list[np.ndarray]]]:
    """(layer name, arrays) of the layers with weights in a legacy Keras HDF5 file, in order."""
    import h5py  # a Keras dependency

    def text(v):
        return v.decode("utf8") if isinstance(v, bytes) else str(v)

    with h5py.File(path, "r") as f:
        group = f
        if "layer_names" not in group.attrs and "model_weights" in group:
            group = group["model_weights"]
        if "layer_names" not in group.attrs:
            raise InceptionWeightsMismatchError(
                f"{path} is an HDF5 file but not a legacy Keras weights file (no 'layer_names');"
                " a Keras 3 weights file must be named *.weights.h5")
        out = []
        for name in (text(n) for n in group.attrs["layer_names"]):
            weight_names = [text(n) for n in group[name].attrs.get("weight_names", [])]
            if weight_names:
                out.append((name, [np.asarray(group[name][w]) for w in weight_names]))
    return out


def _keras_file_layers(path: Path) -> list[tuple[str, list[np.ndarray]]]:
    source = keras.saving.load_model(path, compile=False, safe_mode=True)
    out = []

    def walk(model):
        for layer in model.layers:
            if isinstance(layer, keras.Model):
                walk(layer)
            elif layer.weights:
                out.append((layer.name, [np.asarray(v) for v in _legacy_order(layer)]))

    walk(source)
    return out


def _assign_in_order(model: keras.Model, layers, source) -> None:
    targets = _weighted(model)
    if len(layers) == len(targets) + 1 and layers[-1][0] == "predictions":
        layers = layers[:-1]  # the file with the top: its classifier is not needed
    if len(layers) != len(targets):
        raise InceptionWeightsMismatchError(
            f"Weights file {source} holds {len(layers)} layers with weights; InceptionV3 "
            f"without the top has {len(targets)}. Is it an InceptionV3 weights file?")
    for layer, (name, values) in zip(targets, layers):
        expected = [tuple(w.shape) for w in _legacy_order(layer)]
        got = [tuple(v.shape) for v in values]
        if expected != got:
            raise InceptionWeightsMismatchError(
                f"Weights file {source}: layer {name} has shapes {got}, InceptionV3 expects "
                f"{expected} there. Is it an InceptionV3 weights file?")
    for layer, (_, values) in zip(targets, layers):
        for variable, value in zip(_legacy_order(layer), values):
            variable.assign(value)


def _legacy_order(layer) -> list:
    """A layer's variables in the order legacy HDF5 files store them (trainable first, as
    Keras' own legacy loader reads them)."""
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)


def load_weights_into(model: keras.Model, path) -> None:
    """Load a local InceptionV3 weights file (see the module docstring) into `model`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"InceptionV3 weights file not found: {path}")
    name = path.name.lower()
    if name.endswith(".weights.h5"):
        try:
            model.load_weights(path)
        except Exception as err:
            raise InceptionWeightsMismatchError(
                f"Could not load {path} into InceptionV3 without the top: {err}") from err
    elif name.endswith((".h5", ".hdf5")):
        _assign_in_order(model, _legacy_h5_layers(path), path)
    elif name.endswith(".keras"):
        _assign_in_order(model, _keras_file_layers(path), path)
    else:
        raise InceptionWeightsMismatchError(
            f"Unsupported InceptionV3 weights file {path}: expected .h5, .hdf5, .weights.h5 or "
            ".keras")


def load_inception(weights: WeightsSpec = "imagenet", input_size: int = INPUT_SIZE
                   ) -> keras.Model:
    """keras.applications InceptionV3 without the top, global average pooled:
    [B, input_size, input_size, 3] (preprocessed, in [-1, 1]) -> [B, 2048].

    `input_size` other than 299 (at least 75) is for quick smoke runs only: FID is defined
    at 299."""
    if isinstance(weights, str) and weights in ("imagenet", "random"):
        spec = weights
    elif weights is None:
        spec = None
    elif isinstance(weights, (str, os.PathLike)):
        spec = Path(weights).expanduser()
        if not spec.is_file():
            raise FileNotFoundError(f"InceptionV3 weights file not found: {spec}")
    else:
        raise TypeError(f"weights must be 'imagenet', 'random', None or a path, got {weights!r}")
    if input_size < 75:
        raise ValueError(f"InceptionV3 needs inputs of at least 75 pixels, got {input_size}")
    imagenet_path = _fetch_imagenet_weights() if spec == "imagenet" else None
    model = keras.applications.InceptionV3(
        weights=None, include_top=False, pooling="avg", input_shape=(input_size, input_size, 3))
    if spec is None:
        msg = ("InceptionV3 is running with RANDOM weights (weights=None): FID and KID values "
               "are meaningless. Pass weights='imagenet' or a weights file (weights='random' "
               "silences this, for tests).")
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
        logging.warning(msg)
    elif spec == "imagenet":
        load_weights_into(model, imagenet_path)
    elif isinstance(spec, Path):
        load_weights_into(model, spec)
    model.trainable = False
    return model


class InceptionFeatures:
    """Callable: a list of RGB uint8 images (any sizes) -> float64 [N, 2048] pool features."""

    def __init__(self, weights: WeightsSpec = "imagenet", batch_size: int = 16,
                 input_size: int = INPUT_SIZE, model: keras.Model | None = None):
        self.model = model if model is not None else load_inception(weights, input_size)
        self.input_size, self.batch_size = int(input_size), int(batch_size)
        shown = "random" if weights in (None, "random") else str(weights)
        if model is not None:
            shown = "given model"
        self.description = (f"InceptionV3 pool features ({FEATURE_DIM}-d), keras.applications, "
                            f"weights={shown}, input {self.input_size}x{self.input_size} "
                            "bilinear")
        self._run = tf.function(
            lambda x: self.model(x, training=False),
            input_signature=[tf.TensorSpec([None, self.input_size, self.input_size, 3],
                                           tf.float32)])

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        size = (self.input_size, self.input_size)
        x = tf.image.resize(tf.constant(np.asarray(image), tf.float32), size, method="bilinear")
        return keras.applications.inception_v3.preprocess_input(x.numpy())

    def __call__(self, images: Iterable[np.ndarray]) -> np.ndarray:
        images = list(images)
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = np.stack([self.preprocess(i) for i in images[start:start + self.batch_size]])
            out.append(np.asarray(self._run(batch), dtype=np.float64))
        if not out:
            return np.zeros((0, FEATURE_DIM))
        return np.concatenate(out)
