"""InceptionV3 pool features for FID and KID.

The feature of an image is the 2048-d output of InceptionV3's global average pool (the
``pool_3`` features of the FID convention), from keras.applications' InceptionV3 without
the top.

Input
    An RGB uint8 image of any size is resized to 299 x 299 with bilinear interpolation
    (tf.image.resize, no antialiasing: what the TF FID code does) and scaled with
    ``keras.applications.inception_v3.preprocess_input`` (x / 127.5 - 1). The aspect ratio is
    not kept, as in the reference FID implementations.

Weights (the ``weights`` argument), loaded by `tfstyle.core.weights` as VGG19's are:
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

from typing import Iterable

import keras
import numpy as np
import tensorflow as tf

from tfstyle.core import weights as weights_lib
from tfstyle.core.weights import WeightsSpec

#: Input side of InceptionV3 for FID.
INPUT_SIZE = 299
#: Dimension of the pool features.
FEATURE_DIM = 2048

_NOTOP = weights_lib.HostedFile(
    "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
    "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "bcbd6486424b2319ff4ef7d526e38f63")


class InceptionWeightsUnavailableError(RuntimeError):
    """The ImageNet InceptionV3 weights are neither in the Keras cache nor downloadable."""


class InceptionWeightsMismatchError(ValueError):
    """A local weights file does not hold InceptionV3's layers."""


#: InceptionV3 for the shared loader: layers matched by order (their names are counters).
NETWORK = weights_lib.Pretrained(
    name="InceptionV3", variant="without the top", hosted=_NOTOP, match="order",
    flag="--inception_weights", random_note="FID and KID values are meaningless",
    unavailable_error=InceptionWeightsUnavailableError,
    mismatch_error=InceptionWeightsMismatchError, top_layers=("predictions",))


def imagenet_weights_file() -> tuple[str, str]:
    """(file name, URL) of the Keras ImageNet InceptionV3 weights without the top."""
    return _NOTOP.name, _NOTOP.url


def load_weights_into(model: keras.Model, path) -> None:
    """Load a local InceptionV3 weights file (see the module docstring) into `model`."""
    weights_lib.load_weights_into(model, path, NETWORK)


def load_inception(weights: WeightsSpec = "imagenet", input_size: int = INPUT_SIZE
                   ) -> keras.Model:
    """keras.applications InceptionV3 without the top, global average pooled:
    [B, input_size, input_size, 3] (preprocessed, in [-1, 1]) -> [B, 2048].

    `input_size` other than 299 (at least 75) is for quick smoke runs only: FID is defined
    at 299."""
    if input_size < 75:
        raise ValueError(f"InceptionV3 needs inputs of at least 75 pixels, got {input_size}")
    return weights_lib.load(NETWORK, weights, lambda: keras.applications.InceptionV3(
        weights=None, include_top=False, pooling="avg", input_shape=(input_size, input_size, 3)))


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
