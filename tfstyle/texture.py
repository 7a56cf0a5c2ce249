r"""Texture word -> style transfer, from the command line.

    python -m tfstyle.texture --word=ふさふさ --images=DIR --content=IMG --out=OUT.png \
        [--cluster=auto|N] [--steps=1000] [--features=both|nsv|fc6] [--weights=imagenet|PATH]

Images for the word come from DIR/<word>/ (``--provider=local``, default) or from a web image
search (``--provider=web``, API key in $TFSTYLE_SEARCH_API_KEY, downloads cached in
``--cache_dir``).  A contact sheet of the clusters is written next to OUT (``--contact_sheet``);
``--contact_sheet_only`` stops there so a person can choose ``--cluster=N`` for the real run.
See docs/texture.md.  All work is done by :mod:`tfstyle.texture_pipeline`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from absl import app, flags

FLAGS = flags.FLAGS

flags.DEFINE_string("word", None, "Texture word, e.g. ふさふさ (fluffy).")
flags.DEFINE_string("content", None, "Content image file.")
flags.DEFINE_string("out", None, "Output PNG file.")
flags.DEFINE_enum("provider", "local", ["local", "web"], "Where the word's images come from.")
flags.DEFINE_string("images", None, "Folder with one sub-folder of images per word "
                    "(DIR/<word>/); used by --provider=local.")
flags.DEFINE_enum("search_api", "bing", ["bing", "google"], "Web search API schema.")
flags.DEFINE_string("search_endpoint", None, "Web search API URL (default: the API's own).")
flags.DEFINE_string("api_key_env", "TFSTYLE_SEARCH_API_KEY",
                    "Environment variable holding the web search API key.")
flags.DEFINE_string("cache_dir", os.path.join("~", ".cache", "tfstyle", "image_search"),
                    "Cache of web search results and downloads.")
flags.DEFINE_float("request_interval", 1.0, "Minimum seconds between web requests to a host.")
flags.DEFINE_integer("max_images", 30, "Images to use for the word.")
flags.DEFINE_string("contact_sheet", None, "Contact sheet PNG (default: OUT_clusters.png).")
flags.DEFINE_bool("contact_sheet_only", False, "Stop after writing the contact sheet.")
flags.DEFINE_integer("clusters", 3, "Number of k-means clusters (the seed used 3).")
flags.DEFINE_string("cluster", "auto", "Cluster to use: 'auto' (most coherent in style) or "
                    "its number as shown on the contact sheet.")
flags.DEFINE_enum("features", "both", ["both", "nsv", "fc6"],
                  "Descriptors k-means clusters on: Neural Style Vectors, VGG19 fc6, or both.")
flags.DEFINE_integer("seed", 0, "Seed of k-means++ (and of --init=noise).")
flags.DEFINE_string("weights", "imagenet", "VGG19 weights: 'imagenet' (Keras cache or "
                    "download), a local .h5/.keras/.weights.h5 file, or 'random' (testing).")
flags.DEFINE_integer("style_size", 256, "Longer side of the word images for style features.")
flags.DEFINE_integer("max_size", 512, "Content image is downscaled to this longer side.")
flags.DEFINE_integer("steps", 1000, "Optimisation steps.")
flags.DEFINE_enum("optimizer", "adam", ["adam", "rmsprop"], "Optimiser.")
flags.DEFINE_float("learning_rate", 0.02, "Learning rate (image in [0, 1]).")
flags.DEFINE_float("content_weight", 1e4, "alpha, weight of the content loss.")
flags.DEFINE_float("style_weight", 1e-2, "beta, weight of the style loss.")
flags.DEFINE_float("tv_weight", 30.0, "gamma, weight of the total-variation loss.")
flags.DEFINE_string("content_layer", "block5_conv2", "Content layer (Keras or paper name).")
flags.DEFINE_enum("init", "content", ["content", "noise"], "Starting image.")
flags.DEFINE_integer("log_every", 50, "Print progress every N steps.")

for _name in ("word", "content", "out"):
    flags.mark_flag_as_required(_name)


def _fail(flag: str, message: str):
    raise app.UsageError(f"--{flag}: {message}")


def _config():
    """Validates the flags and turns them into a TextureConfig (errors name the flag).

    The cheap checks come before TensorFlow is imported, so flag mistakes fail fast.
    """
    if not FLAGS.word.strip():
        _fail("word", "must not be empty")
    if not Path(FLAGS.content).is_file():
        _fail("content", f"no such file: {FLAGS.content}")
    if Path(FLAGS.out).suffix.lower() != ".png":
        _fail("out", f"must end in .png: {FLAGS.out}")
    if FLAGS.provider == "local":
        if not FLAGS.images:
            _fail("images", "required with --provider=local (a folder holding DIR/<word>/)")
        if not Path(FLAGS.images).is_dir():
            _fail("images", f"no such folder: {FLAGS.images}")
    if FLAGS.clusters < 1:
        _fail("clusters", f"must be >= 1, got {FLAGS.clusters}")
    if FLAGS.cluster == "auto":
        cluster = None
    else:
        try:
            cluster = int(FLAGS.cluster)
        except ValueError:
            _fail("cluster", f"'auto' or a number, got {FLAGS.cluster!r}")
        if not 0 <= cluster < FLAGS.clusters:
            _fail("cluster", f"must be in 0..{FLAGS.clusters - 1} (--clusters={FLAGS.clusters}),"
                  f" got {cluster}")
    weights = FLAGS.weights
    if weights not in ("imagenet", "random"):
        if not Path(weights).expanduser().is_file():
            _fail("weights", f"VGG19 weights file not found: {weights}")
    for name in ("max_images", "style_size", "max_size"):
        if getattr(FLAGS, name) < 1:
            _fail(name, f"must be >= 1, got {getattr(FLAGS, name)}")
    if FLAGS.steps < 0:
        _fail("steps", f"must be >= 0, got {FLAGS.steps}")
    if FLAGS.learning_rate <= 0:
        _fail("learning_rate", f"must be > 0, got {FLAGS.learning_rate}")
    for name in ("content_weight", "style_weight", "tv_weight"):
        if getattr(FLAGS, name) < 0:
            _fail(name, f"must be >= 0, got {getattr(FLAGS, name)}")
    from tfstyle.core import vgg
    from tfstyle.texture_words import gatys, pipeline

    try:
        vgg.keras_layer_name(FLAGS.content_layer)
    except ValueError as err:
        _fail("content_layer", str(err))

    return pipeline.TextureConfig(
        clusters=FLAGS.clusters,
        cluster=cluster,
        features=FLAGS.features,
        weights=weights,
        max_images=FLAGS.max_images,
        style_size=FLAGS.style_size,
        max_size=FLAGS.max_size,
        seed=FLAGS.seed,
        contact_sheet_only=FLAGS.contact_sheet_only,
        gatys_config=gatys.GatysConfig(
            steps=FLAGS.steps,
            optimizer=FLAGS.optimizer,
            learning_rate=FLAGS.learning_rate,
            content_weight=FLAGS.content_weight,
            style_weight=FLAGS.style_weight,
            tv_weight=FLAGS.tv_weight,
            content_layer=FLAGS.content_layer,
            init=FLAGS.init,
            seed=FLAGS.seed,
            log_every=FLAGS.log_every,
        ),
    )


def _provider():
    from tfstyle.texture_words import providers

    if FLAGS.provider == "local":
        return providers.LocalFolderProvider(FLAGS.images)
    return providers.WebSearchProvider(
        cache_dir=Path(FLAGS.cache_dir).expanduser(),
        api=FLAGS.search_api,
        endpoint=FLAGS.search_endpoint,
        api_key_env=FLAGS.api_key_env,
        min_interval_s=FLAGS.request_interval,
    )


def _progress(step, steps, losses, seconds):
    print(
        f"step {step:5d}/{steps}  total {losses['total']:.4g}  content {losses['content']:.4g}"
        f"  style {losses['style']:.4g}  tv {losses['tv']:.4g}  ({seconds:.1f} s)",
        flush=True,
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    config = _config()
    from tfstyle.core import vgg
    from tfstyle.texture_words import pipeline, providers

    out = Path(FLAGS.out)
    sheet = Path(FLAGS.contact_sheet) if FLAGS.contact_sheet else \
        out.with_name(out.stem + "_clusters.png")
    if config.weights == "random":
        print("WARNING: --weights=random: VGG19 is untrained, results are meaningless.",
              file=sys.stderr)
    try:
        pipeline.texture_transfer(
            FLAGS.word, _provider(), FLAGS.content, out, sheet, config,
            log=lambda msg: print(msg, flush=True), progress=_progress,
        )
    except (FileNotFoundError, ValueError, vgg.VGGWeightsUnavailableError,
            providers.SearchAPIError) as err:
        print(f"error: {err}", file=sys.stderr)
        if isinstance(err, (vgg.VGGWeightsUnavailableError, vgg.VGGWeightsMismatchError)) \
                and config.features != "nsv":
            print("hint: --features=nsv needs only the convolutional VGG19 weights "
                  f"({vgg.imagenet_weights_file(include_top=False)[0]}, 80 MB); fc6 needs the "
                  "full file.", file=sys.stderr)
        return 1
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
