"""Texture word -> style -> stylised content image (methods.md section 4).

Steps of :func:`texture_transfer`:

1. collect distinct images for the word from a provider (:mod:`tfstyle.providers`);
2. describe each image (resized so its longer side is ``style_size``) by its Neural Style
   Vector (seed layers conv1_2, conv2_2, conv3_4, conv4_4, conv5_4) and, optionally, VGG19 fc6
   features (224 x 224), and keep its Gram matrices on the Gatys style layers;
3. k-means (k-means++, seeded) on the chosen descriptors (:mod:`tfstyle.clustering`);
4. write a contact sheet of the clusters; pick a cluster (given, or ``auto``: the most
   coherent in style, see :func:`tfstyle.clustering.pick_coherent_cluster`);
5. style target = mean Gram matrices of the cluster's images; Gatys style transfer
   (:mod:`tfstyle.gatys`) on the content image; save the PNG.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tfstyle.core import images as images_io
from tfstyle.core import vgg
from tfstyle.core.config import Config, setting
from tfstyle.texture_words import clustering, gatys, providers, style_vector
from tfstyle.texture_words.contact_sheet import contact_sheet

FEATURE_MODES = ("nsv", "fc6", "both")


@dataclasses.dataclass(frozen=True)
class ImageDescriptors:
    """Per image: ``style_vectors`` ``[n, D]`` (NSV), ``fc6`` ``[n, 4096]`` or None, and
    ``grams``: ``{layer: [n, N_l, N_l]}`` Gram matrices on the style layers."""

    style_vectors: np.ndarray
    fc6: np.ndarray | None
    grams: dict[str, np.ndarray]


def describe_images(
    images: Sequence[np.ndarray],
    extractor: keras.Model,
    nsv_layers: Sequence[str] = style_vector.NSV_LAYERS,
    style_layers: Sequence[str] = gatys.STYLE_LAYERS,
    style_size: int | None = 256,
    fc6_model: keras.Model | None = None,
) -> ImageDescriptors:
    """Descriptors of ``images`` (``[H_i, W_i, 3]`` RGB in [0, 255]).

    ``extractor`` must return ``nsv_layers`` and ``style_layers`` (see
    :func:`descriptor_extractor`).  Images are processed one by one (sizes differ); each is
    resized so its longer side is ``style_size`` (None: as is).
    """
    vectors, grams = [], {name: [] for name in style_layers}

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    def run(x):
        feats = extractor(x, training=False)
        nsv = style_vector.neural_style_vector(feats, layers=list(nsv_layers))
        return nsv, {name: style_vector.gram_matrix(feats[name])[0] for name in style_layers}

    for img in images:
        x = gatys.resize_longer_side(img, style_size, upscale=True) if style_size else img
        nsv, g = run(tf.cast(x, tf.float32)[None])
        vectors.append(nsv[0].numpy())
        for name in style_layers:
            grams[name].append(g[name].numpy())
    fc6 = style_vector.fc6_features(images, fc6_model) if fc6_model is not None else None
    return ImageDescriptors(
        style_vectors=np.stack(vectors),
        fc6=fc6,
        grams={name: np.stack(v) for name, v in grams.items()},
    )


def descriptor_extractor(
    base: keras.Model,
    nsv_layers: Sequence[str] = style_vector.NSV_LAYERS,
    style_layers: Sequence[str] = gatys.STYLE_LAYERS,
) -> keras.Model:
    """One VGG19 model returning both the NSV layers and the style layers."""
    layers = list(dict.fromkeys([*nsv_layers, *style_layers]))
    return vgg.vgg19_feature_extractor(layers, base=base, name="texture_descriptors")


def clustering_matrix(desc: ImageDescriptors, features: str) -> np.ndarray:
    """The rows k-means sees: NSV, fc6, or both (each block unit-norm, equally weighted)."""
    if features not in FEATURE_MODES:
        raise ValueError(f"features must be one of {FEATURE_MODES}, got {features!r}.")
    if features != "nsv" and desc.fc6 is None:
        raise ValueError(f"features={features!r} needs fc6 descriptors.")
    blocks = {"nsv": [desc.style_vectors], "fc6": [desc.fc6],
              "both": [desc.style_vectors, desc.fc6]}[features]
    return clustering.combine_descriptors(*blocks)


def cluster_style_targets(desc: ImageDescriptors, members: Sequence[int]) -> dict[str, tf.Tensor]:
    """A cluster's style target: A^l = mean of its members' Gram matrices, ``{layer: [N, N]}``."""
    if len(members) == 0:
        raise ValueError("A cluster needs at least one member.")
    idx = list(members)
    return {name: tf.constant(g[idx].mean(axis=0)) for name, g in desc.grams.items()}


@dataclasses.dataclass(frozen=True)
class TextureConfig(Config):
    """Settings of :func:`texture_transfer`; the flags of ``python -m tfstyle.texture`` are
    generated from these fields.

    ``cluster``: a cluster index, or None for ``auto`` (the tool's ``--cluster=auto|N``).
    """

    clusters: int = setting(3, "Number of k-means clusters (the seed used 3).", min=1)
    cluster: int | None = setting(None, "Cluster to use; None: the most coherent in style.",
                                  flag=False)
    features: str = setting("both", "Descriptors k-means clusters on: Neural Style Vectors, "
                            "VGG19 fc6, or both (fc6 needs the full VGG19).",
                            choices=FEATURE_MODES)
    weights: str = setting("imagenet", "VGG19 weights: 'imagenet' (Keras cache or download), a "
                           "local .h5/.keras/.weights.h5 file, or 'random' (testing).")
    max_images: int = setting(30, "Images to use for the word.", min=1)
    style_size: int = setting(256, "Longer side of the word images for style features (NSV, "
                              "Gram matrices; larger = coarser texture).", min=1)
    max_size: int = setting(512, "Content image is downscaled to this longer side.", min=1)
    seed: int = setting(0, "Seed of k-means++ (and of --init=noise).")
    contact_sheet_only: bool = setting(False, "Stop after writing the contact sheet.")
    gatys_config: gatys.GatysConfig = setting(None, "Gatys style transfer settings.",
                                              flag=False, default_factory=gatys.GatysConfig)

    def validate(self):
        self.need(self.cluster is None or 0 <= self.cluster < self.clusters, "cluster",
                  f"must be in 0..{self.clusters - 1} (--clusters={self.clusters}) or auto")


@dataclasses.dataclass(frozen=True)
class TextureResult:
    sources: list[str]
    labels: np.ndarray
    summaries: list[clustering.ClusterSummary]
    chosen: int
    contact_sheet: Path
    output: Path | None
    history: list[dict]


def texture_transfer(
    word: str,
    provider: providers.ImageProvider,
    content_path,
    out_path,
    contact_sheet_path,
    config: TextureConfig = TextureConfig(),
    log: Callable[[str], None] = logging.info,
    progress: gatys.ProgressFn | None = None,
) -> TextureResult:
    """The whole method: collect, describe, cluster, pick, contact sheet, Gatys, save.

    Raises ValueError when fewer than 2 usable images are found or the requested cluster does
    not exist (fewer images than clusters lowers k to the number of images, with a log line).
    """
    content = images_io.read_image(content_path)
    images = providers.collect_images(provider, word, limit=config.max_images)
    log(f"{len(images)} distinct images for {word!r}.")
    if len(images) < 2:
        raise ValueError(f"Need at least 2 usable images for {word!r}, found {len(images)}.")
    k = config.clusters
    if len(images) < k:
        log(f"Only {len(images)} images: using {len(images)} clusters instead of {k}.")
        k = len(images)
    if config.cluster is not None and config.cluster >= k:
        raise ValueError(f"cluster {config.cluster} does not exist: there are {k} clusters.")

    needs_fc6 = config.features in ("fc6", "both")
    # One set of weights serves every model: with fc6 the full VGG19 is loaded once and its
    # convolutional layers are reused at any input size.
    base = vgg.load_vgg19(weights=config.weights, include_top=needs_fc6)
    log(f"VGG19 weights: {config.weights}; devices: "
        f"{[d.name for d in tf.config.list_logical_devices() if d.device_type != 'CPU'] or 'CPU'}")
    desc = describe_images(
        [img.pixels for img in images],
        descriptor_extractor(base, style_layers=config.gatys_config.style_layers),
        style_layers=config.gatys_config.style_layers,
        style_size=config.style_size,
        fc6_model=style_vector.fc6_extractor(base=base) if needs_fc6 else None,
    )
    km = clustering.kmeans(clustering_matrix(desc, config.features), k=k, seed=config.seed)
    summaries = clustering.summarize_clusters(km.labels, desc.style_vectors, k)
    chosen = clustering.pick_coherent_cluster(summaries) if config.cluster is None \
        else config.cluster
    for s in summaries:
        spread = "n/a" if np.isnan(s.spread) else f"{s.spread:.4f}"
        log(f"cluster {s.index}: {s.size} images, style spread {spread}"
            + ("  <- chosen" + (" (auto)" if config.cluster is None else "")
               if s.index == chosen else ""))
    sheet = contact_sheet([img.pixels for img in images], summaries, contact_sheet_path,
                          chosen=chosen, title=f"{k} clusters ({config.features})")
    log(f"Contact sheet: {sheet}")
    if config.contact_sheet_only:
        return TextureResult([i.source for i in images], km.labels, summaries, chosen, sheet,
                             None, [])

    targets = cluster_style_targets(desc, summaries[chosen].members)
    content_small = gatys.resize_longer_side(content, config.max_size).numpy()
    result = gatys.stylize(content_small, targets, gatys.gatys_extractor(base, config.gatys_config),
                           config.gatys_config, progress=progress)
    out = Path(out_path)
    images_io.write_image(out, result.image)
    log(f"Wrote {out}")
    return TextureResult([i.source for i in images], km.labels, summaries, chosen, sheet, out,
                         result.history)
