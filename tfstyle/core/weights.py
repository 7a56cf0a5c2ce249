"""Pretrained weights of keras.applications networks, one loader for all of them.

VGG19 (style transfer, texture words) and InceptionV3 (FID/KID) are built by
keras.applications with ``weights=None`` and then filled here, so both follow the same rules.
The ``weights`` argument (a :data:`WeightsSpec`) is one of:

``"imagenet"``  the Keras ImageNet weights, from the Keras cache (``~/.keras/models/<file>``,
                or ``$KERAS_HOME/models``) or downloaded there with their md5 checked. If
                neither works, the network's "unavailable" error says how to supply a local
                file (its path in the cache, or the flag that takes one).
a path          a local file (``str`` or ``os.PathLike``): ``*.h5`` / ``*.hdf5`` (legacy Keras
                HDF5, e.g. the files keras.applications downloads), ``*.keras`` (a saved Keras
                model holding the network's layers, nested models included) or
                ``*.weights.h5`` (Keras 3 weights of the same architecture, loaded by
                topology). ``.h5`` and ``.keras`` files are matched to the model either
                *by layer name* (VGG19: its layers have fixed names, and extra layers in the
                file are ignored) or *by order* (InceptionV3: keras.applications names its
                layers with global counters such as ``conv2d_17``, so the n-th layer with
                weights in the file goes to the n-th in the model); shapes are checked
                either way, and a mismatch is the network's "mismatch" error naming the file
                and the layer. A missing file raises ``FileNotFoundError`` naming the path.
``"random"``    random initialisation (Keras defaults), silently: for tests.
``None``        random initialisation with a ``RuntimeWarning`` and an absl warning saying what
                the network's outputs are then worth.

A network is described once, as a :class:`Pretrained`; :func:`load` does the rest.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Union

import keras
import numpy as np
from absl import logging

WeightsSpec = Union[str, os.PathLike, None]
#: The weights of one layer in the order legacy HDF5 files store them.
LayerWeights = tuple[str, list[np.ndarray]]


@dataclasses.dataclass(frozen=True)
class HostedFile:
    """A weights file keras.applications downloads: its name in the Keras cache, URL, md5."""
    name: str
    url: str
    md5: str


@dataclasses.dataclass(frozen=True)
class Pretrained:
    """What the loader needs to know of one network (and one variant of it).

    `match` is "name" or "order" (see the module docstring); `top_layers` are the layers of
    the classifier on top: with name matching a file lacking them is "the notop file" (the
    message then names `full_file`); with order matching one trailing top layer in the file
    is skipped. `flag` is the command-line flag that takes a weights file, named in the
    "unavailable" message; `random_note` says what random weights make of the outputs."""
    name: str
    variant: str
    hosted: HostedFile
    match: str
    flag: str
    random_note: str
    unavailable_error: type[Exception]
    mismatch_error: type[Exception]
    top_layers: tuple[str, ...] = ()
    full_file: str = ""


def keras_cache_dir() -> Path:
    """Where Keras keeps downloaded weights."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def fetch(net: Pretrained) -> str:
    """Path of the network's ImageNet file: the Keras cache, else a download (md5 checked);
    `net.unavailable_error` saying how to supply the file when neither works."""
    hosted = net.hosted
    try:
        return keras.utils.get_file(hosted.name, hosted.url, cache_subdir="models",
                                    file_hash=hosted.md5)
    except Exception as err:  # get_file reports network failures as a bare Exception
        cached = keras_cache_dir() / hosted.name
        raise net.unavailable_error(
            f"Could not get the ImageNet {net.name} weights ({net.variant}): {err}\n"
            f"They are looked for in the Keras cache as {cached} and otherwise downloaded "
            f"from {hosted.url}.\nOn a machine without internet access, download that file "
            f"elsewhere and either copy it to {cached} or pass its path as "
            f"weights='/path/to/{hosted.name}' (CLI: {net.flag}=/path/to/{hosted.name})."
        ) from err


def legacy_order(layer) -> list:
    """A layer's variables in the order legacy HDF5 files store them (trainable first, as
    Keras' own legacy loader reads them)."""
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)


def read_legacy_h5(path: Path, net: Pretrained) -> list[LayerWeights]:
    """(layer name, arrays) of the layers with weights in a legacy Keras HDF5 weights or model
    file, in file order."""
    import h5py  # a Keras dependency

    def text(v):
        return v.decode("utf8") if isinstance(v, bytes) else str(v)

    with h5py.File(path, "r") as f:
        group = f
        if "layer_names" not in group.attrs and "model_weights" in group:
            group = group["model_weights"]
        if "layer_names" not in group.attrs:
            raise net.mismatch_error(
                f"{path} is an HDF5 file but not a legacy Keras weights file (no "
                "'layer_names'); a Keras 3 weights file must be named *.weights.h5")
        out = []
        for name in (text(n) for n in group.attrs["layer_names"]):
            weight_names = [text(n) for n in group[name].attrs.get("weight_names", [])]
            if weight_names:
                out.append((name, [np.asarray(group[name][w]) for w in weight_names]))
    return out


def read_keras_file(path: Path) -> list[LayerWeights]:
    """(layer name, arrays) of the layers with weights in a saved ``.keras`` model, nested
    models walked in order."""
    source = keras.saving.load_model(path, compile=False, safe_mode=True)
    out = []

    def walk(model):
        for layer in model.layers:
            if isinstance(layer, keras.Model):
                walk(layer)
            elif layer.weights:
                out.append((layer.name, [np.asarray(v) for v in legacy_order(layer)]))

    walk(source)
    return out


def _check_shapes(net: Pretrained, source, pairs) -> None:
    for layer, (name, values) in pairs:
        expected = [tuple(w.shape) for w in legacy_order(layer)]
        got = [tuple(v.shape) for v in values]
        if expected != got:
            raise net.mismatch_error(
                f"Weights file {source}: layer {name} has shapes {got}, {net.name} "
                f"({net.variant}) expects {expected} there. Is it a {net.name} weights file?")


def _pair_by_name(model, layers: Sequence[LayerWeights], source, net: Pretrained):
    by_name = dict(layers)
    targets = [layer for layer in model.layers if layer.weights]
    missing = [layer.name for layer in targets if layer.name not in by_name]
    if missing:
        hint = (f"The top layers need the {net.name} file with the top ({net.full_file}), not "
                "the 'notop' one." if set(missing) & set(net.top_layers) else
                f"Is it a {net.name} weights file with Keras layer names?")
        raise net.mismatch_error(f"Weights file {source} lacks the {net.name} layer(s) "
                                 f"{', '.join(missing)}. {hint}")
    return [(layer, (layer.name, by_name[layer.name])) for layer in targets]


def _pair_in_order(model, layers: Sequence[LayerWeights], source, net: Pretrained):
    targets = [layer for layer in model.layers if layer.weights]
    layers = list(layers)
    if len(layers) == len(targets) + 1 and layers[-1][0] in net.top_layers:
        layers = layers[:-1]  # the file with the top: its classifier is not needed
    if len(layers) != len(targets):
        raise net.mismatch_error(
            f"Weights file {source} holds {len(layers)} layers with weights; {net.name} "
            f"({net.variant}) has {len(targets)}. Is it a {net.name} weights file?")
    return list(zip(targets, layers))


def assign(model: keras.Model, layers: Sequence[LayerWeights], source, net: Pretrained) -> None:
    """Assign `layers` (as read from `source`) to `model`'s layers, by name or by order as
    `net.match` says; every shape is checked before anything is assigned."""
    pair = _pair_by_name if net.match == "name" else _pair_in_order
    pairs = pair(model, layers, source, net)
    _check_shapes(net, source, pairs)
    for layer, (_, values) in pairs:
        for variable, value in zip(legacy_order(layer), values):
            variable.assign(value)


def load_weights_into(model: keras.Model, path, net: Pretrained) -> None:
    """Load the local weights file `path` (see the module docstring) into `model`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{net.name} weights file not found: {path}")
    name = path.name.lower()
    if name.endswith(".weights.h5"):
        try:
            model.load_weights(path)
        except Exception as err:
            raise net.mismatch_error(
                f"Could not load {path} into {net.name} ({net.variant}): {err}. A "
                f"'.weights.h5' file must come from a {net.name} built the same way "
                f"({net.variant}).") from err
    elif name.endswith((".h5", ".hdf5")):
        assign(model, read_legacy_h5(path, net), path, net)
    elif name.endswith(".keras"):
        assign(model, read_keras_file(path), path, net)
    else:
        raise net.mismatch_error(f"Unsupported {net.name} weights file {path}: expected .h5, "
                                 ".hdf5, .weights.h5 or .keras")


def parse_spec(weights: WeightsSpec, net: Pretrained):
    """"imagenet", "random", None or the Path of an existing file; FileNotFoundError naming a
    missing file, TypeError for anything else."""
    if isinstance(weights, str) and weights in ("imagenet", "random"):
        return weights
    if weights is None:
        return None
    if isinstance(weights, (str, os.PathLike)):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{net.name} weights file not found: {path}")
        return path
    raise TypeError(f"weights must be 'imagenet', 'random', None or a path, got {weights!r}")


def load(net: Pretrained, weights: WeightsSpec, build: Callable[[], keras.Model],
         trainable: bool = False) -> keras.Model:
    """`build()` (a keras.applications network with weights=None) with `weights` loaded as
    the module docstring says. The ImageNet file is fetched before the model is built, so an
    offline machine fails at once."""
    spec = parse_spec(weights, net)
    imagenet_path = fetch(net) if spec == "imagenet" else None
    model = build()
    if spec is None:
        message = (f"{net.name} is running with RANDOM weights (weights=None): "
                   f"{net.random_note}. Pass weights='imagenet' or a weights file "
                   "(weights='random' silences this, for tests).")
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        logging.warning(message)
    elif spec != "random":
        load_weights_into(model, imagenet_path or spec, net)
    model.trainable = trainable
    return model
