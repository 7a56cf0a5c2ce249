"""Shared VGG19 module: layer names, caffe preprocessing, weight loading, feature extractors.

Everything in tfstyle that needs VGG19 (Gatys style transfer, Neural Style Vectors, fc6
features, the VGG19 auto-encoder) goes through this module, so weight loading behaves the same
everywhere.

Layer names
    Keras names the layers ``blockB_convK`` / ``blockB_pool`` / ``fc1`` / ``fc2`` /
    ``predictions``.  Papers use Caffe names: ``convB_K``, ``reluB_K``, ``poolB``, ``fc6``,
    ``fc7``, ``fc8``.  A Keras conv layer has its ReLU fused in, so the output of
    ``block1_conv1`` *is* ``relu1_1``; ``conv1_1`` is mapped to the same tensor, as Gatys et al.
    and most re-implementations do (their "conv1_1" features are the rectified ones).  Likewise
    ``fc6`` and ``relu6`` both map to Keras ``fc1`` (Caffe's in-place ReLU makes the ``fc6`` blob
    the rectified one too).

Preprocessing
    VGG19 was trained on Caffe-style inputs: RGB in [0, 255] -> BGR -> minus the ImageNet mean
    (B, G, R) = (103.939, 116.779, 123.68).  No scaling.  :class:`VGG19Preprocess` does this
    inside a model; :func:`preprocess` / :func:`deprocess` do it on tensors.

Weights (the ``weights`` argument of :func:`load_vgg19` and the builders), loaded by
:mod:`tfstyle.core.weights`, the loader InceptionV3 shares
    ``"imagenet"``  the Keras ImageNet weights.  They are taken from the Keras cache
                    (``~/.keras/models/<file>``, or ``$KERAS_HOME/models``) or downloaded there.
                    If neither works, :class:`VGGWeightsUnavailableError` explains how to supply
                    a local file.
    a path          a local weights file (``str`` or ``os.PathLike``):
                    ``*.h5`` / ``*.hdf5`` (legacy Keras HDF5, e.g. the files keras.applications
                    downloads), ``*.keras`` (a saved Keras model containing VGG19 layers), or
                    ``*.weights.h5`` (Keras 3 weights of the same architecture).  ``.h5`` and
                    ``.keras`` are matched *by layer name*, so a file with the top (fc layers)
                    also serves ``include_top=False``.  A missing file raises
                    ``FileNotFoundError`` naming the path.
    ``"random"``    random initialisation (Keras defaults), silently: meant for tests.
    ``None``        random initialisation with a ``RuntimeWarning`` (and an absl warning),
                    because features of an untrained VGG19 make style transfer meaningless.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Union

import keras
import tensorflow as tf

from tfstyle.core import weights as weights_lib
from tfstyle.core.weights import WeightsSpec

# --------------------------------------------------------------------------------------------
# Layer table
# --------------------------------------------------------------------------------------------

#: (block, number of convs, channels) of VGG19 (Simonyan & Zisserman 2015, configuration E).
VGG19_BLOCKS: tuple[tuple[int, int, int], ...] = (
    (1, 2, 64),
    (2, 2, 128),
    (3, 4, 256),
    (4, 4, 512),
    (5, 4, 512),
)


def _build_tables():
    order: list[str] = []
    channels: dict[str, int] = {}
    paper_to_keras: dict[str, str] = {}
    keras_to_paper: dict[str, str] = {}
    for block, n_convs, n_ch in VGG19_BLOCKS:
        for k in range(1, n_convs + 1):
            kname = f"block{block}_conv{k}"
            order.append(kname)
            channels[kname] = n_ch
            paper_to_keras[f"conv{block}_{k}"] = kname
            paper_to_keras[f"relu{block}_{k}"] = kname
            keras_to_paper[kname] = f"relu{block}_{k}"
        pname = f"block{block}_pool"
        order.append(pname)
        channels[pname] = n_ch
        paper_to_keras[f"pool{block}"] = pname
        keras_to_paper[pname] = f"pool{block}"
    top = (("fc1", ("fc6", "relu6"), 4096), ("fc2", ("fc7", "relu7"), 4096),
           ("predictions", ("fc8", "prob"), 1000))
    for kname, pnames, n in top:
        channels[kname] = n
        for p in pnames:
            paper_to_keras[p] = kname
        keras_to_paper[kname] = pnames[1] if kname != "predictions" else "prob"
    return tuple(order), channels, paper_to_keras, keras_to_paper


#: Keras names of the convolutional part, input to output (convs and pools).
VGG19_FEATURE_LAYERS: tuple[str, ...]
#: Output channels of every named Keras layer (convs, pools, fc1, fc2, predictions).
VGG19_CHANNELS: dict[str, int]
#: Caffe/paper name -> Keras name (``conv1_1``/``relu1_1`` -> ``block1_conv1``, ``fc6`` -> ``fc1``).
PAPER_TO_KERAS: dict[str, str]
#: Keras name -> canonical paper name (``block1_conv1`` -> ``relu1_1``, ``fc1`` -> ``relu6``).
KERAS_TO_PAPER: dict[str, str]
VGG19_FEATURE_LAYERS, VGG19_CHANNELS, PAPER_TO_KERAS, KERAS_TO_PAPER = _build_tables()

#: Keras names of the 16 conv layers (each includes its ReLU).
VGG19_CONV_LAYERS: tuple[str, ...] = tuple(n for n in VGG19_FEATURE_LAYERS if "_conv" in n)
#: Keras names of the top (``include_top=True`` only).
VGG19_TOP_LAYERS: tuple[str, ...] = ("flatten", "fc1", "fc2", "predictions")

#: ImageNet BGR mean used by the Caffe VGG models (and keras.applications.vgg19).
IMAGENET_BGR_MEAN: tuple[float, float, float] = (103.939, 116.779, 123.68)

#: Input side that ``include_top=True`` requires (the fc layers fix it).
TOP_INPUT_SIZE = 224


def keras_layer_name(name: str) -> str:
    """Maps a paper (``relu4_1``, ``conv5_4``, ``pool3``, ``fc6``) or Keras name to the Keras name.

    Raises ``ValueError`` listing the valid names for anything else.
    """
    if name in VGG19_CHANNELS:
        return name
    if name in PAPER_TO_KERAS:
        return PAPER_TO_KERAS[name]
    raise ValueError(
        f"Unknown VGG19 layer {name!r}. Use a Keras name ({', '.join(VGG19_CHANNELS)}) or a "
        f"paper name ({', '.join(PAPER_TO_KERAS)})."
    )


def paper_layer_name(name: str) -> str:
    """Canonical paper name of a layer (``block4_conv1`` -> ``relu4_1``, ``fc1`` -> ``relu6``)."""
    return KERAS_TO_PAPER[keras_layer_name(name)]


def layer_channels(name: str) -> int:
    """Number of output channels of a VGG19 layer given by Keras or paper name."""
    return VGG19_CHANNELS[keras_layer_name(name)]


def layers_up_to(cut: str) -> tuple[str, ...]:
    """Keras names of the feature layers from the input up to and including ``cut``.

    ``layers_up_to("relu2_1") == ("block1_conv1", "block1_conv2", "block1_pool",
    "block2_conv1")``.  Useful to mirror an encoder into a decoder.
    """
    kname = keras_layer_name(cut)
    if kname not in VGG19_FEATURE_LAYERS:
        raise ValueError(f"{cut!r} is not in the convolutional part of VGG19.")
    return VGG19_FEATURE_LAYERS[: VGG19_FEATURE_LAYERS.index(kname) + 1]


# --------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------


def preprocess(rgb: tf.Tensor) -> tf.Tensor:
    """Caffe VGG preprocessing: ``[..., 3]`` RGB in [0, 255] -> BGR minus the ImageNet mean.

    ``x_bgr[..., c] = rgb[..., 2 - c] - mean_bgr[c]``; shape and dtype (float) are kept.
    Same numbers as ``keras.applications.vgg19.preprocess_input``.
    """
    rgb = tf.convert_to_tensor(rgb)
    if not rgb.dtype.is_floating:
        rgb = tf.cast(rgb, tf.float32)
    bgr = tf.reverse(rgb, axis=[-1])
    return bgr - tf.constant(IMAGENET_BGR_MEAN, dtype=bgr.dtype)


def deprocess(bgr: tf.Tensor) -> tf.Tensor:
    """Inverse of :func:`preprocess`: BGR minus mean -> RGB in [0, 255] (not clipped)."""
    bgr = tf.convert_to_tensor(bgr)
    rgb = bgr + tf.constant(IMAGENET_BGR_MEAN, dtype=bgr.dtype)
    return tf.reverse(rgb, axis=[-1])


@keras.saving.register_keras_serializable(package="tfstyle")
class VGG19Preprocess(keras.layers.Layer):
    """Keras layer doing :func:`preprocess`: RGB [0, 255] ``[B, H, W, 3]`` -> Caffe BGR input.

    Uses only a channel reverse and a subtraction, so it exports to SavedModel and to TFLite
    builtins (REVERSE_V2, SUB).
    """

    def call(self, inputs):
        return preprocess(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape


# --------------------------------------------------------------------------------------------
# Weights (the rules are those of tfstyle.core.weights, shared with InceptionV3)
# --------------------------------------------------------------------------------------------

_IMAGENET_FILES = {
    # include_top -> the file keras.applications downloads.
    True: weights_lib.HostedFile(
        "vgg19_weights_tf_dim_ordering_tf_kernels.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
        "vgg19_weights_tf_dim_ordering_tf_kernels.h5",
        "cbe5617147190e668d6c5d5026f83318",
    ),
    False: weights_lib.HostedFile(
        "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
        "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "253f8cb515780f3b799900260a226db6",
    ),
}


class VGGWeightsUnavailableError(RuntimeError):
    """The ImageNet VGG19 weights could neither be found in the Keras cache nor downloaded."""


class VGGWeightsMismatchError(ValueError):
    """A local weights file does not hold the VGG19 layers that were asked for."""


def imagenet_weights_file(include_top: bool = False) -> tuple[str, str]:
    """``(file name, URL)`` of the Keras ImageNet VGG19 weights for ``include_top``."""
    hosted = _IMAGENET_FILES[bool(include_top)]
    return hosted.name, hosted.url


def _network(include_top: bool) -> weights_lib.Pretrained:
    """VGG19 for the shared loader: layers matched by their Keras names."""
    return weights_lib.Pretrained(
        name="VGG19", variant=f"include_top={bool(include_top)}",
        hosted=_IMAGENET_FILES[bool(include_top)], match="name", flag="--weights",
        random_note="features, style vectors and style transfer results are meaningless",
        unavailable_error=VGGWeightsUnavailableError, mismatch_error=VGGWeightsMismatchError,
        top_layers=VGG19_TOP_LAYERS, full_file=_IMAGENET_FILES[True].name)


def load_weights_into(model: keras.Model, path: Union[str, os.PathLike]) -> None:
    """Loads a local VGG19 weights file into a keras.applications-style VGG19 ``model``.

    ``.h5``/``.hdf5``/``.keras`` are matched by layer name (extra layers in the file are ignored,
    missing ones are an error); ``.weights.h5`` is loaded by topology (same ``include_top``).
    Raises ``FileNotFoundError`` naming the path when it does not exist.
    """
    include_top = "fc1" in [layer.name for layer in model.layers]
    weights_lib.load_weights_into(model, path, _network(include_top))


def load_vgg19(
    weights: WeightsSpec = "imagenet",
    include_top: bool = False,
    trainable: bool = False,
) -> keras.Model:
    """The keras.applications VGG19 architecture with weights per the module docstring.

    Args:
      weights: ``"imagenet"``, a path to a local file, ``"random"`` (quiet) or ``None``
        (random, warns).
      include_top: also build ``flatten``, ``fc1`` (fc6), ``fc2`` (fc7) and ``predictions``
        (fc8); the input is then fixed to ``[B, 224, 224, 3]``.  Without the top the input is
        ``[B, H, W, 3]`` for any H, W >= 32 (smaller works too, deep layers just get tiny).
      trainable: leave the layers trainable (default: frozen).

    Returns:
      The VGG19 ``keras.Model``; its input is Caffe-preprocessed BGR (see :func:`preprocess`),
      its layers carry the Keras names (``block1_conv1`` ... ``block5_pool`` [, ``fc1`` ...]).
    """
    shape = (TOP_INPUT_SIZE, TOP_INPUT_SIZE, 3) if include_top else (None, None, 3)
    return weights_lib.load(
        _network(include_top), weights,
        lambda: keras.applications.VGG19(weights=None, include_top=include_top,
                                         input_shape=shape),
        trainable=trainable)


# --------------------------------------------------------------------------------------------
# Feature extractors
# --------------------------------------------------------------------------------------------


def vgg19_feature_extractor(
    layers: Iterable[str],
    weights: WeightsSpec = "imagenet",
    *,
    base: keras.Model | None = None,
    preprocess_input: bool = True,
    name: str = "vgg19_features",
) -> keras.Model:
    """A functional model mapping images to a dict of named VGG19 activations.

    The model contains the VGG19 layers up to the deepest requested one only (a "cut" VGG19),
    sharing layer objects (weights) with ``base``.

    Args:
      layers: names to return, Keras (``block4_conv1``) or paper (``relu4_1``, ``fc6``) names;
        the dict keys are the names exactly as given.
      weights: as :func:`load_vgg19`; ignored when ``base`` is given.
      base: an existing :func:`load_vgg19` model whose layers (and weights) to reuse; it must
        have the top when ``fc6``/``fc7``/``fc8`` layers are asked for.
      preprocess_input: if True (default) the input is RGB in [0, 255] and a
        :class:`VGG19Preprocess` layer comes first; if False the input is already
        Caffe-preprocessed BGR.
      name: model name.

    Returns:
      ``keras.Model``: ``[B, H, W, 3]`` -> ``{name: [B, H_l, W_l, C_l]}`` (``[B, C]`` for fc
      layers; with fc layers H = W = 224).
    """
    requested = list(dict.fromkeys(layers))
    if not requested:
        raise ValueError("vgg19_feature_extractor needs at least one layer name.")
    knames = {req: keras_layer_name(req) for req in requested}
    needs_top = any(k in VGG19_TOP_LAYERS for k in knames.values())
    if base is None:
        base = load_vgg19(weights=weights, include_top=needs_top)
    elif needs_top and "fc1" not in [layer.name for layer in base.layers]:
        raise ValueError("fc layers were requested but `base` was built with include_top=False.")

    chain = [layer for layer in base.layers if not isinstance(layer, keras.layers.InputLayer)]
    chain_names = [layer.name for layer in chain]
    deepest = max(chain_names.index(k) for k in knames.values())
    shape = (TOP_INPUT_SIZE, TOP_INPUT_SIZE, 3) if needs_top else (None, None, 3)
    inputs = keras.Input(shape=shape, name="rgb" if preprocess_input else "bgr_caffe")
    x = VGG19Preprocess(name="vgg19_preprocess")(inputs) if preprocess_input else inputs
    produced: dict[str, keras.KerasTensor] = {}
    for layer in chain[: deepest + 1]:
        x = layer(x)
        produced[layer.name] = x
    outputs = {req: produced[knames[req]] for req in requested}
    return keras.Model(inputs, outputs, name=name)

