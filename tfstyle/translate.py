"""Translate images with a trained CycleGAN-family generator.

    python -m tfstyle.translate --model_dir=runs/demo --direction=AtoB --out_dir=out photo.jpg more/

Images of any size and aspect ratio: padded to a multiple of 4 and cropped back; images
larger than --tile are translated in overlapping tiles so memory stays bounded. Each output
is a PNG named after its input (in --out_dir; inputs that would share a name, such as a.jpg
and a.png, get distinct ones: a.png and a.jpg.png). Unreadable files and files over
--max_image_pixels / --max_image_bytes are skipped and counted.
"""

import sys
from pathlib import Path

from absl import app, flags, logging

from tfstyle.core.config import define_flags, from_flags
from tfstyle.core.images import ImageLimits, check_writable_folder, list_images

flags.DEFINE_string("model_dir", None, "Training folder holding generators/ (train.cyclegan).")
flags.DEFINE_enum("direction", "AtoB", ["AtoB", "BtoA"], "Which generator to run.")
flags.DEFINE_string("out_dir", None, "Folder for the translated PNGs.")
MAX_TILE = 2048  # a 2048 x 2048 tile already takes 1 GiB per 64-channel activation
flags.DEFINE_integer("tile", 512, "Largest side translated in one piece; larger images are "
                     f"tiled (at most {MAX_TILE}).")
flags.DEFINE_integer("overlap", 32, "Overlap of neighbouring tiles in pixels (blended).")
flags.mark_flags_as_required(["model_dir", "out_dir"])
define_flags(ImageLimits)
FLAGS = flags.FLAGS


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv):
    inputs = [Path(p) for p in argv[1:]]
    if not inputs:
        raise app.UsageError("give one or more images or folders of images to translate")
    for p in inputs:
        if not p.exists():
            raise app.UsageError(f"{p}: no such file or folder")
    if FLAGS.tile % 4 or not 16 <= FLAGS.tile <= MAX_TILE:
        raise app.UsageError(f"--tile={FLAGS.tile}: must be a multiple of 4 from 16 to "
                             f"{MAX_TILE}")
    if not 0 <= FLAGS.overlap < FLAGS.tile // 2:
        raise app.UsageError(f"--overlap={FLAGS.overlap}: must be in [0, tile/2)")
    limits, _ = from_flags(ImageLimits)
    out_dir = Path(FLAGS.out_dir)
    try:
        check_writable_folder(out_dir)  # before TensorFlow and the model load
    except OSError as err:
        return fail(f"--out_dir={out_dir}: cannot write there ({err})")
    try:
        files = [f for p in inputs for f in (list_images(p) if p.is_dir() else [p])]
    except OSError as err:
        return fail(f"cannot list the inputs: {err}")
    from tfstyle.core.keras_files import ModelFileError
    from tfstyle.cyclegan.generators import load_generator
    from tfstyle.cyclegan.translator import Translator, translate_files
    try:
        translator = Translator(load_generator(FLAGS.model_dir, FLAGS.direction),
                                FLAGS.tile, FLAGS.overlap)
    except (FileNotFoundError, ModelFileError) as err:
        return fail(f"--model_dir={FLAGS.model_dir}: {err}")
    written, skipped = 0, []
    try:
        for i, (source, target, note) in enumerate(
                translate_files(translator, files, out_dir, limits), 1):
            if target is None:
                logging.warning("skipped %s", note)
                skipped.append(str(source))
                continue
            written += 1
            print(f"[{i}/{len(files)}] {source} -> {target} ({note})")
    except OSError as err:
        return fail(f"writing into --out_dir={out_dir} failed after {written} images: {err}")
    print(f"translated {written} images into {out_dir}"
          + (f"; skipped {len(skipped)} unreadable or over the limits: {', '.join(skipped)}"
             if skipped else ""))
    return 1 if skipped and not written else 0


if __name__ == "__main__":
    sys.exit(app.run(main))
