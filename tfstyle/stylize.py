"""Attention-aware multi-stroke stylization with a trained auto-encoder.

    python -m tfstyle.stylize --model_dir=runs/demo --content=photo.jpg --style=art.jpg \
        --out=out.png [--alpha=1.0] [--strokes=4] [--region=foreground] [--save_attention]

--region=foreground stylizes only the salient object (the attention mask), background only
the rest; the other pixels show the content decoded by the auto-encoder (or, with
--unstylized=original, the content itself). --save_attention also writes OUT_attention.png
(and OUT_mask.png with a region). See docs/attention_style.md.
"""

import dataclasses
import sys
from pathlib import Path

from absl import app, flags

from tfstyle.stylize_lib import REGIONS, UNSTYLIZED, StylizeOptions

D = StylizeOptions.__dataclass_fields__
FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, "Training folder holding autoencoder/ "
                    "(python -m train.autoencoder --model_dir=...).")
flags.DEFINE_string("content", None, "Content image (any format Pillow reads).")
flags.DEFINE_string("style", None, "Style image.")
flags.DEFINE_string("out", None, "Output image (.png, .jpg, ...).")
flags.DEFINE_float("alpha", D["alpha"].default, "Content/style blend of the features: "
                   "alpha * stylized + (1 - alpha) * content (0: the content reconstructed).")
flags.DEFINE_integer("strokes", D["strokes"].default, "Multi-stroke fusion levels k: k - 1 "
                     "style-swap scales (1/2, 1/sqrt2, 1 for k = 4) plus the content.")
flags.DEFINE_integer("patch_size", D["patch_size"].default, "Style-swap patch side (odd).")
flags.DEFINE_float("theta", D["theta"].default, "Sharpness of the fusion weights.")
flags.DEFINE_enum("region", D["region"].default, REGIONS,
                  "What to stylize: all, foreground (the salient object of the attention "
                  "mask) or background.")
flags.DEFINE_float("mask_threshold", D["mask_threshold"].default,
                   "Foreground = upsampled attention map >= this (in [0, 1]).")
flags.DEFINE_enum("unstylized", D["unstylized"].default, UNSTYLIZED,
                  "What the region left unstylized shows: the content decoded by the "
                  "auto-encoder, or the original content pixels.")
flags.DEFINE_integer("max_size", D["max_size"].default,
                     "Cap on the content's longer side; larger contents are downscaled.")
flags.DEFINE_integer("style_size", D["style_size"].default, "The style's longer side.")
flags.DEFINE_integer("max_swap_entries", D["max_swap_entries"].default,
                     "Largest chunk of the style-swap correlation volume held at once (floats).")
flags.DEFINE_boolean("save_attention", False,
                     "Also write the attention map as OUT_attention.png (and OUT_mask.png).")

flags.mark_flags_as_required(["model_dir", "content", "style", "out"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        options = StylizeOptions(**{f.name: FLAGS[f.name].value
                                    for f in dataclasses.fields(StylizeOptions)})
    except ValueError as err:
        raise app.UsageError(str(err)) from err
    for flag in ("content", "style"):
        if not Path(FLAGS[flag].value).is_file():
            raise app.UsageError(f"--{flag}={FLAGS[flag].value}: file not found")
    out = Path(FLAGS.out)
    if not out.suffix:
        raise app.UsageError(f"--out={FLAGS.out}: give a file name with an image suffix (.png)")

    from tfstyle.attention_models import load_autoencoder
    from tfstyle.images import ImageError, read_image, write_image
    from tfstyle.stylize_lib import Stylizer, attention_image

    try:
        model, info = load_autoencoder(FLAGS.model_dir)
        content, style = read_image(FLAGS.content), read_image(FLAGS.style)
        result = Stylizer(model)(content, style, options)
    except (FileNotFoundError, ImageError) as err:
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
