"""Texture word -> style -> stylised content image (methods.md section 4).

Steps of :func:`texture_transfer`:

1. collect distinct images for the word from a provider
   (:mod:`tfstyle.texture_words.providers`);
2. describe each image (resized so its longer side is ``style_size``) by its Neural Style
   Vector (seed layers conv1_2, conv2_2, conv3_4, conv4_4, conv5_4) and, optionally, VGG19 fc6
   features (224 x 224), and keep its Gram matrices on the Gatys style layers (computed by the
   network Gatys runs on, so with its pooling);
3. k-means (k-means++, seeded) on the chosen descriptors
   (:mod:`tfstyle.texture_words.clustering`);
4. write a contact sheet of the clusters; pick a cluster (given, or ``auto``: the most
   coherent in style, see :func:`tfstyle.texture_words.clustering.pick_coherent_cluster`);
5. style target = mean Gram matrices of the cluster's images; Gatys style transfer
   (:mod:`tfstyle.texture_words.gatys`) on the content image; save the PNG.

:func:`word_study` does steps 1-4 once per word and step 5 for every content image, writing
the seed's word-recognition study as ``STUDY/<word>/<content>.png`` (the layout
``python -m tfstyle.rate --word_study`` reads).
"""

from __future__ import annotations

import dataclasses
import unicodedata
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
#: Stem suffix of contact sheets; the rating app's word study skips such images.
CONTACT_SHEET_SUFFIX = "_clusters"


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
    style_extractor: keras.Model | None = None,
) -> ImageDescriptors:
    """Descriptors of ``images`` (``[H_i, W_i, 3]`` RGB in [0, 255]).

    ``extractor`` must return ``nsv_layers`` (see :func:`descriptor_extractor`), and
    ``style_extractor`` (default: ``extractor``) ``style_layers``: the Gram matrices must come
    from the network Gatys optimises with (:func:`gatys.gatys_extractor`).  Images are
    processed one by one (sizes differ); each is resized so its longer side is ``style_size``
    (None: as is).
    """
    style_extractor = extractor if style_extractor is None else style_extractor
    vectors, grams = [], {name: [] for name in style_layers}

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    def run(x):
        feats = extractor(x, training=False)
        nsv = style_vector.neural_style_vector(feats, layers=list(nsv_layers))
        style_feats = feats if style_extractor is extractor \
            else style_extractor(x, training=False)
        return nsv, {name: style_vector.gram_matrix(style_feats[name])[0]
                     for name in style_layers}

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
    """Settings of :func:`texture_transfer` and :func:`word_study`; the flags of
    ``python -m tfstyle.texture`` are generated from these fields.

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
class TextureModels:
    """The VGG19 models a run needs, built once from one set of weights: ``descriptors``
    (NSV layers), ``fc6`` (or None) and ``gatys`` (content and style layers, the Gatys
    pooling), which also gives the clusters' Gram matrices."""

    descriptors: keras.Model
    fc6: keras.Model | None
    gatys: keras.Model


def load_models(config: TextureConfig, log: Callable[[str], None] = logging.info
                ) -> TextureModels:
    """:class:`TextureModels` for ``config`` (VGG19 weights per ``config.weights``)."""
    needs_fc6 = config.features in ("fc6", "both")
    # One set of weights serves every model: with fc6 the full VGG19 is loaded once and its
    # convolutional layers are reused at any input size.
    base = vgg.load_vgg19(weights=config.weights, include_top=needs_fc6)
    log(f"VGG19 weights: {config.weights}; devices: "
        f"{[d.name for d in tf.config.list_logical_devices() if d.device_type != 'CPU'] or 'CPU'}")
    return TextureModels(
        descriptors=descriptor_extractor(base, style_layers=()),
        fc6=style_vector.fc6_extractor(base=base) if needs_fc6 else None,
        gatys=gatys.gatys_extractor(base, config.gatys_config),
    )


@dataclasses.dataclass(frozen=True)
class WordStyle:
    """A word's images (``sources``), their clusters and the chosen one; ``targets`` is the
    chosen cluster's style target (None after ``contact_sheet_only``)."""

    sources: list[str]
    labels: np.ndarray
    summaries: list[clustering.ClusterSummary]
    chosen: int
    contact_sheet: Path
    targets: dict[str, tf.Tensor] | None


def word_style(word: str, provider: providers.ImageProvider, models: TextureModels,
               contact_sheet_path, config: TextureConfig,
               log: Callable[[str], None] = logging.info) -> WordStyle:
    """Steps 1-4 for ``word``: collect, describe, cluster, contact sheet, the chosen cluster.

    Raises ValueError when fewer than 2 usable images are found or the requested cluster does
    not exist (fewer images than clusters lowers k to the number of images, with a log line).
    """
    images = providers.collect_images(provider, word, limit=config.max_images)
    log(f"{len(images)} distinct images for {word!r}.")
    if len(images) < 2:
        raise ValueError(f"Need at least 2 usable images for {word!r}, found {len(images)}.")
    k = config.clusters
    if len(images) < k:
        log(f"Only {len(images)} images: using {len(images)} clusters instead of {k}.")
        k = len(images)
    if config.cluster is not None and config.cluster >= k:
        raise ValueError(f"cluster {config.cluster} does not exist for {word!r}: there are "
                         f"{k} clusters.")
    desc = describe_images(
        [img.pixels for img in images], models.descriptors,
        style_layers=config.gatys_config.style_layers, style_size=config.style_size,
        fc6_model=models.fc6, style_extractor=models.gatys,
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
    targets = None if config.contact_sheet_only \
        else cluster_style_targets(desc, summaries[chosen].members)
    return WordStyle([i.source for i in images], km.labels, summaries, chosen, sheet, targets)


def render(content_path, style: WordStyle, models: TextureModels, out_path,
           config: TextureConfig, log: Callable[[str], None] = logging.info,
           progress: gatys.ProgressFn | None = None) -> gatys.StylizeResult:
    """Step 5: the content image (downscaled to ``max_size``) in ``style``, written to
    ``out_path`` (PNG, atomically)."""
    content = images_io.read_image(content_path)
    small = gatys.resize_longer_side(content, config.max_size).numpy()
    gconfig = config.gatys_config
    result = gatys.stylize(small, style.targets, models.gatys, gconfig, progress=progress)
    images_io.write_image(out_path, result.image)
    h, w = small.shape[:2]
    per = result.seconds / max(result.evaluations, 1)
    log(f"{gconfig.optimizer}: {result.steps} steps, {result.evaluations} evaluations of "
        f"{gatys.evaluation_flops(h, w, gconfig) / 1e9:.3g} GFLOP at {w}x{h} in "
        f"{result.seconds:.1f} s ({per:.3g} s each)"
        + (f"; {result.message}" if result.message else ""))
    log(f"Wrote {out_path}")
    return result


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

    Raises ValueError as :func:`word_style`.
    """
    images_io.read_image(content_path)  # an unreadable content image fails before the work
    models = load_models(config, log)
    style = word_style(word, provider, models, contact_sheet_path, config, log)
    if config.contact_sheet_only:
        return TextureResult(style.sources, style.labels, style.summaries, style.chosen,
                             style.contact_sheet, None, [])
    result = render(content_path, style, models, out_path, config, log, progress)
    return TextureResult(style.sources, style.labels, style.summaries, style.chosen,
                         style.contact_sheet, Path(out_path), result.history)


# --------------------------------------------------------------------------------------------
# The seed's word-recognition study
# --------------------------------------------------------------------------------------------


def check_study_word(word: str) -> None:
    """ValueError unless ``word`` can name its own folder, ``STUDY/<word>/``: not empty, no
    path separator, not ``.`` or ``..``, no control or format characters, no space at
    either end."""
    if not word or word != word.strip() or word in (".", "..") or "/" in word \
            or "\\" in word or any(unicodedata.category(c).startswith("C") for c in word):
        raise ValueError(f"{word!r} cannot name a folder of the study (no path separators, "
                         "control characters, surrounding spaces, '.' or '..')")


def _twice(names: Sequence[str]) -> list[str]:
    """The names that one file system may take for another (case, Unicode composition)."""
    keys = [unicodedata.normalize("NFC", n).casefold() for n in names]
    return sorted({n for n, k in zip(names, keys) if keys.count(k) > 1})


def check_study_words(words: Sequence[str]) -> None:
    """ValueError unless every word can name its folder and no two would share one."""
    if not words:
        raise ValueError("a study needs at least one word")
    for word in words:
        check_study_word(word)
    if _twice(words):
        raise ValueError(f"the words must differ (also in case and Unicode composition): "
                         f"{', '.join(_twice(words))}")


def check_study_contents(contents: Sequence) -> None:
    """ValueError unless the content files' names (stems) can name the study's images: no
    two alike, none ending in ``_clusters`` (the rating app leaves contact sheets out by
    that suffix)."""
    if not contents:
        raise ValueError("a study needs at least one content image")
    stems = [Path(c).stem for c in contents]
    if _twice(stems):
        raise ValueError("the content files' names (without the extension) must differ, also "
                         f"in case and Unicode composition: {', '.join(_twice(stems))}")
    for content, stem in zip(contents, stems):
        if stem.endswith(CONTACT_SHEET_SUFFIX):
            raise ValueError(f"{content}: a content name may not end in "
                             f"{CONTACT_SHEET_SUFFIX!r} (the rating app skips such images)")


def study_outputs(study_dir, words: Sequence[str], contents: Sequence
                  ) -> dict[str, list[tuple[Path, Path]]]:
    """``{word: [(content file, STUDY/<word>/<content stem>.png), ...]}``, the study's
    layout; ValueError as :func:`check_study_words` and :func:`check_study_contents`."""
    check_study_words(words)
    check_study_contents(contents)
    root = Path(study_dir)
    return {word: [(Path(c), root / word / f"{Path(c).stem}.png") for c in contents]
            for word in words}


def study_contact_sheet(study_dir, word: str) -> Path:
    """``STUDY/<word>/<word>_clusters.png``: a word's contact sheet (not a study item)."""
    return Path(study_dir) / word / f"{word}{CONTACT_SHEET_SUFFIX}.png"


@dataclasses.dataclass(frozen=True)
class StudyResult:
    """The study's images written by this run, those found and kept, the contact sheets."""

    written: list[Path]
    kept: list[Path]
    contact_sheets: list[Path]


def word_study(
    words: Sequence[str],
    provider: providers.ImageProvider,
    contents: Sequence,
    study_dir,
    config: TextureConfig = TextureConfig(),
    log: Callable[[str], None] = logging.info,
    progress: gatys.ProgressFn | None = None,
) -> StudyResult:
    """The seed's word-recognition study set: every content image in the style of every
    word, ``STUDY/<word>/<content stem>.png`` (:func:`study_outputs`), the layout
    ``tfstyle.evaluation.studies.write_word_manifest`` lists.  Each word's images are
    collected, described and clustered once (contact sheet ``STUDY/<word>/<word>_clusters.png``).

    Images already there are kept, not redone: a rerun resumes, and a word rendered
    beforehand with a cluster picked by hand stays as it is (delete an image to redo it).
    Raises ValueError as :func:`study_outputs` and :func:`word_style`; what was written
    before the error stays.
    """
    plan = study_outputs(study_dir, words, contents)
    for content in contents:  # an unreadable content image fails before any work
        images_io.read_image(content)
    written, kept, sheets = [], [], []
    models = None
    for word, pairs in plan.items():
        todo = [(c, out) for c, out in pairs if not out.is_file()]
        kept += [out for _, out in pairs if out.is_file()]
        if not todo and not config.contact_sheet_only:
            log(f"{word!r}: all {len(pairs)} images are there, kept.")
            continue
        models = models or load_models(config, log)
        style = word_style(word, provider, models, study_contact_sheet(study_dir, word),
                           config, log)
        sheets.append(style.contact_sheet)
        if config.contact_sheet_only:
            continue
        for content, out in todo:
            log(f"{word!r} x {content}:")
            render(content, style, models, out, config, log, progress)
            written.append(out)
    return StudyResult(written, kept, sheets)
