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
every refused artifact. The flags are the fields of tfstyle.deploy.options.ExportOptions
and tfstyle.style.stylizer.StylizeOptions.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's INFO lines drown the table

from absl import app, flags  # noqa: E402

from tfstyle.core.config import define_flags, from_flags  # noqa: E402
from tfstyle.deploy.options import ExportOptions  # noqa: E402
from tfstyle.style.stylizer import StylizeOptions  # noqa: E402

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, "Trained model directory: generators/ (CycleGAN) "
                    "and/or autoencoder/ (attention style transfer).")
flags.DEFINE_string("out_dir", None, "Where serving/ and tflite/ are written.")
flags.mark_flags_as_required(["model_dir", "out_dir"])
define_flags(ExportOptions)
define_flags(StylizeOptions)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    stylize, _ = from_flags(StylizeOptions)
    options, _ = from_flags(ExportOptions, stylize=stylize)
    from tfstyle.deploy.exporter import ExportError, export_generators

    try:
        export_generators(FLAGS.model_dir, FLAGS.out_dir, options)
    except (ExportError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"export written to {FLAGS.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
