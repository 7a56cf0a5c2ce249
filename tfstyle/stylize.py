"""Attention-aware multi-stroke stylization with a trained auto-encoder.

    python -m tfstyle.stylize --model_dir=runs/demo --content=photo.jpg --style=art.jpg \
        --out=out.png [--alpha=1.0] [--strokes=4] [--region=foreground] [--save_attention]

--region=foreground stylizes only the salient object (the attention mask), background only
the rest; the other pixels show the content decoded by the auto-encoder (or, with
--unstylized=original, the content itself). --save_attention also writes OUT_attention.png
(and OUT_mask.png with a region). See docs/attention_style.md.
"""

import sys
from pathlib import Path

from absl import app, flags

from tfstyle.core.config import define_flags, from_flags
from tfstyle.core.images import ImageLimits
from tfstyle.style.stylizer import StylizeOptions

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, "Training folder holding autoencoder/ "
                    "(python -m train.autoencoder --model_dir=...).")
flags.DEFINE_string("content", None, "Content image (any format Pillow reads).")
flags.DEFINE_string("style", None, "Style image.")
flags.DEFINE_string("out", None, "Output image (.png, .jpg, ...).")
define_flags(StylizeOptions)
define_flags(ImageLimits)
flags.DEFINE_boolean("save_attention", False,
                     "Also write the attention map as OUT_attention.png (and OUT_mask.png).")

flags.mark_flags_as_required(["model_dir", "content", "style", "out"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    options, _ = from_flags(StylizeOptions)
    limits, _ = from_flags(ImageLimits)
    for flag in ("content", "style"):
        if not Path(FLAGS[flag].value).is_file():
            raise app.UsageError(f"--{flag}={FLAGS[flag].value}: file not found")
    out = Path(FLAGS.out)
    if not out.suffix:
        raise app.UsageError(f"--out={FLAGS.out}: give a file name with an image suffix (.png)")

    from tfstyle.core.images import ImageError, read_image, write_image
    from tfstyle.core.keras_files import ModelFileError
    from tfstyle.style.autoencoder import load_autoencoder
    from tfstyle.style.stylizer import Stylizer, attention_image

    try:
        model, info = load_autoencoder(FLAGS.model_dir)
        content, style = read_image(FLAGS.content, limits), read_image(FLAGS.style, limits)
        result = Stylizer(model)(content, style, options)
    except (FileNotFoundError, ImageError, ModelFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        raise app.UsageError(str(err)) from err
    if info.get("vgg_weights") == "random":
        print("WARNING: this auto-encoder was trained on a VGG19 with random weights; the "
              "attention map and the stylization are not meaningful.", file=sys.stderr)
    write_image(out, result.image)
    written = [out]
    if FLAGS.save_attention:
        written.append(out.with_name(f"{out.stem}_attention.png"))
        write_image(written[-1], attention_image(result.attention))
        if result.mask is not None:
            written.append(out.with_name(f"{out.stem}_mask.png"))
            write_image(written[-1], attention_image(result.mask.astype("float32")))
    h, w = result.image.shape[:2]
    print(f"{model.attention} auto-encoder to {model.cut} ({info.get('step', '?')} steps): "
          f"{w}x{h}, region {options.region}, {options.strokes} strokes, alpha "
          f"{options.alpha}; centroids {', '.join(f'{c:.2f}' for c in result.centroids)}")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
