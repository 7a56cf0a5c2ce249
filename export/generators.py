r"""Export trained models to TF Serving (SavedModel) and LiteRT (TFLite), checked.

    python -m export.generators --model_dir=runs/horse2zebra --out_dir=exported \
        [--name=horse2zebra] [--version=N] [--tflite_size=256] \
        [--tflite=float32,float16,dynamic,int8] [--calibration_images=100]
    python -m export.generators --model_dir=runs/cbam_relu4_1 --out_dir=exported \
        --styles=mosaic=mosaic.jpg,ink=ink.png [--style_size=256] [--region=foreground]

A CycleGAN model directory (generators/) gives one model per direction; an attention
auto-encoder (autoencoder/) gives one style-transfer model per --styles image, with the
stylization flags (--alpha, --strokes, --region, ...) baked in. Every artifact is compared
with the Keras model on real images (the training data root, or the auto-encoder's content
images) before it is kept (docs/export.md: layout, signatures, models.json, thresholds); the
export prints a table of sizes, agreement and CPU latency, and exits with status 1 naming
every refused artifact.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's INFO lines drown the table

from absl import app, flags  # noqa: E402

from tfstyle.core.config import define_flags, from_flags  # noqa: E402
from tfstyle.style.stylizer import StylizeOptions  # noqa: E402

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, "Trained model directory: generators/ (CycleGAN) "
                    "and/or autoencoder/ (attention style transfer).")
flags.DEFINE_string("out_dir", None, "Where serving/ and tflite/ are written.")
flags.DEFINE_string("name", None, "Model name prefix (sanitized to [a-z0-9_]); default: the "
                    "model_dir's name. Models are <prefix>_AtoB and <prefix>_BtoA.")
flags.DEFINE_list("directions", [], "Generators to export (AtoB, BtoA); default: all present.")
flags.DEFINE_bool("serving", True, "Write the TF Serving SavedModels.")
flags.DEFINE_integer("version", None, "SavedModel version directory; default: 1 + the highest "
                     "existing one.")
flags.DEFINE_bool("overwrite", False, "Replace an existing --version.")
flags.DEFINE_integer("serving_max_side", 1024, "Longest image side the SavedModel translates "
                     "at; larger uploads are downscaled or refused (--serving_oversize).")
flags.DEFINE_integer("serving_max_pixels", 0, "Most pixels per image in the SavedModel (0: no "
                     "limit but the longest side, except a CycleDA generator's attention limit, "
                     "which always applies).")
flags.DEFINE_enum("serving_oversize", "resize", ["resize", "refuse"],
                  "What the SavedModel does with an image over the limits.")
flags.DEFINE_list("tflite", None,
                  "LiteRT variants to write (empty: none); default: float32, float16, "
                  "dynamic and int8 for generators, the first three for style-transfer models.")
flags.DEFINE_list("styles", [], "Style images to bake into style-transfer models, NAME=PATH "
                  "or PATH (named by its stem); one model <prefix>_<name> each. Needs an "
                  "auto-encoder in --model_dir.")
define_flags(StylizeOptions)
flags.DEFINE_integer("tflite_size", 256, "Fixed LiteRT input size S ([1, S, S, 3]); multiple "
                     "of 4.")
flags.DEFINE_integer("calibration_images", 100, "Training images calibrating the int8 variant.")
flags.DEFINE_integer("check_images", 4, "Test images each artifact is checked on.")
flags.DEFINE_string("dataroot", None, "Check and calibration images: the training data root "
                    "(trainA/ trainB/ [testA/ testB/]) of generators, default info.json's "
                    "dataroot; a folder of content images for style-transfer models, default "
                    "the auto-encoder's content_dir.")
flags.DEFINE_list("min_psnr", [], "Threshold overrides, KIND=dB with KIND in savedmodel, "
                  "float32, float16, dynamic, int8 (e.g. int8=18).")
flags.DEFINE_integer("latency_runs", 10, "Timed runs per artifact (median and p90 reported).")
flags.DEFINE_integer("num_threads", 0, "LiteRT interpreter threads (0: all cores).")


def options_from_flags():
    """Validated ExportOptions from the flags; app.UsageError naming the flag otherwise."""
    from tfstyle.deploy import litert
    from tfstyle.deploy.checks import DEFAULT_MIN_PSNR
    from tfstyle.deploy.exporter import ExportOptions, parse_styles, sanitize

    def usage(flag, message):
        raise app.UsageError(f"--{flag}: {message}")

    if not FLAGS.model_dir:
        usage("model_dir", "required (a trained model directory)")
    if not FLAGS.out_dir:
        usage("out_dir", "required")
    model_dir = Path(FLAGS.model_dir)
    has_generators = (model_dir / "generators" / "info.json").is_file()
    has_autoencoder = (model_dir / "autoencoder" / "info.json").is_file()
    if not (has_generators or has_autoencoder):
        usage("model_dir", f"{model_dir} holds neither generators/info.json nor "
              "autoencoder/info.json; train with python -m train.cyclegan or "
              "python -m train.autoencoder first")
    if has_autoencoder and not FLAGS.styles:
        usage("styles", f"{model_dir}/autoencoder holds a style-transfer model: name the "
              "style images to bake in, --styles=NAME=IMAGE[,NAME=IMAGE...]")
    if FLAGS.styles and not has_autoencoder:
        usage("styles", f"{model_dir} has no autoencoder/ to stylize with")
    styles = tuple(FLAGS.styles)
    try:
        parsed = parse_styles(styles)
    except ValueError as err:
        usage("styles", str(err))
    for name, path in parsed:
        if not Path(path).is_file():
            usage("styles", f"{path} (style {name!r}) not found")
    stylize, _ = from_flags(StylizeOptions)
    directions = tuple(FLAGS.directions)
    for d in directions:
        if d not in ("AtoB", "BtoA"):
            usage("directions", f"{d!r} is not AtoB or BtoA")
        if not (Path(FLAGS.model_dir) / "generators" / f"{d}.keras").is_file():
            usage("directions", f"{FLAGS.model_dir} has no {d} generator")
    if FLAGS.name is not None:
        try:
            sanitize(FLAGS.name)
        except ValueError as err:
            usage("name", str(err))
    if FLAGS.version is not None and FLAGS.version < 1:
        usage("version", f"must be a positive integer, got {FLAGS.version}")
    variants = None if FLAGS.tflite is None else tuple(
        v.strip() for v in FLAGS.tflite if v.strip())
    for v in variants or ():
        if v not in litert.VARIANTS:
            usage("tflite", f"{v!r} is not one of {', '.join(litert.VARIANTS)}")
    if variants is not None and len(set(variants)) != len(variants):
        usage("tflite", "a variant is listed twice")
    if FLAGS.tflite_size % 4 or FLAGS.tflite_size < 16:
        usage("tflite_size", f"must be a multiple of 4 and at least 16, got {FLAGS.tflite_size}")
    if FLAGS.serving_max_side < 8:
        usage("serving_max_side", f"must be at least 8, got {FLAGS.serving_max_side}")
    if FLAGS.serving_max_pixels and FLAGS.serving_max_pixels < 64:
        usage("serving_max_pixels", f"must be 0 or at least 64, got {FLAGS.serving_max_pixels}")
    for flag in ("calibration_images", "check_images", "latency_runs"):
        if getattr(FLAGS, flag) < 1:
            usage(flag, f"must be at least 1, got {getattr(FLAGS, flag)}")
    if FLAGS.num_threads < 0:
        usage("num_threads", f"must be 0 (all cores) or positive, got {FLAGS.num_threads}")
    if FLAGS.dataroot is not None and not Path(FLAGS.dataroot).is_dir():
        usage("dataroot", f"{FLAGS.dataroot} is not a directory")
    min_psnr = {}
    for item in FLAGS.min_psnr:
        kind, sep, value = item.partition("=")
        if not sep or kind not in DEFAULT_MIN_PSNR:
            usage("min_psnr", f"{item!r} is not KIND=dB with KIND in {', '.join(DEFAULT_MIN_PSNR)}")
        try:
            min_psnr[kind] = float(value)
        except ValueError:
            usage("min_psnr", f"{value!r} in {item!r} is not a number")
    if not FLAGS.serving and variants == ():
        usage("tflite", "nothing to export: --noserving and an empty --tflite")
    return ExportOptions(
        name=FLAGS.name, directions=directions or None, serving=FLAGS.serving,
        version=FLAGS.version, overwrite=FLAGS.overwrite,
        serving_max_side=FLAGS.serving_max_side,
        serving_max_pixels=FLAGS.serving_max_pixels or None,
        serving_oversize=FLAGS.serving_oversize, tflite=variants,
        tflite_size=FLAGS.tflite_size, calibration_images=FLAGS.calibration_images,
        check_images=FLAGS.check_images, dataroot=FLAGS.dataroot, min_psnr=min_psnr,
        latency_runs=FLAGS.latency_runs, num_threads=FLAGS.num_threads or None,
        styles=styles, stylize=stylize)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    options = options_from_flags()
    from tfstyle.deploy.checks import ExportError
    from tfstyle.deploy.exporter import export_generators

    try:
        export_generators(FLAGS.model_dir, FLAGS.out_dir, options)
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"export written to {FLAGS.out_dir}")
    return 0


if __name__ == "__main__":
    app.run(main)
