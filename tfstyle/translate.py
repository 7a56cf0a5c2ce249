"""Translate images with a trained CycleGAN-family generator.

    python -m tfstyle.translate --model_dir=runs/demo --direction=AtoB --out_dir=out photo.jpg more/

Images of any size and aspect ratio: padded to a multiple of 4 and cropped back; images
larger than --tile are translated in overlapping tiles so memory stays bounded. Each output
is a PNG named after its input (in --out_dir).
"""

import sys
from pathlib import Path

from absl import app, flags, logging

flags.DEFINE_string("model_dir", None, "Training folder holding generators/ (train.cyclegan).")
flags.DEFINE_enum("direction", "AtoB", ["AtoB", "BtoA"], "Which generator to run.")
flags.DEFINE_string("out_dir", None, "Folder for the translated PNGs.")
flags.DEFINE_integer("tile", 512, "Largest side translated in one piece; larger images are tiled.")
flags.DEFINE_integer("overlap", 32, "Overlap of neighbouring tiles in pixels (blended).")
flags.mark_flags_as_required(["model_dir", "out_dir"])
FLAGS = flags.FLAGS


def main(argv):
    inputs = [Path(p) for p in argv[1:]]
    if not inputs:
        raise app.UsageError("give one or more images or folders of images to translate")
    for p in inputs:
        if not p.exists():
            raise app.UsageError(f"{p}: no such file or folder")
    if FLAGS.tile % 4 or FLAGS.tile < 16:
        raise app.UsageError(f"--tile={FLAGS.tile}: must be a multiple of 4 and at least 16")
    if not 0 <= FLAGS.overlap < FLAGS.tile // 2:
        raise app.UsageError(f"--overlap={FLAGS.overlap}: must be in [0, tile/2)")
    from tfstyle.core.images import ImageError, list_images, read_image, write_image
    from tfstyle.cyclegan.generators import load_generator
    from tfstyle.cyclegan.translator import Translator
    try:
        translator = Translator(load_generator(FLAGS.model_dir, FLAGS.direction),
                                FLAGS.tile, FLAGS.overlap)
    except FileNotFoundError as err:
        raise app.UsageError(f"--model_dir: {err}") from err
    files = [f for p in inputs for f in (list_images(p) if p.is_dir() else [p])]
    out_dir, done, failed = Path(FLAGS.out_dir), 0, []
    for i, path in enumerate(files, 1):
        try:
            image = read_image(path)
        except ImageError as err:
            logging.warning("skipped %s", err)
            failed.append(str(path))
            continue
        target = out_dir / f"{path.stem}.png"
        write_image(target, translator(image))
        done += 1
        print(f"[{i}/{len(files)}] {path} -> {target} ({image.shape[1]}x{image.shape[0]})")
    print(f"translated {done} images into {out_dir}"
          + (f"; skipped {len(failed)} unreadable: {', '.join(failed)}" if failed else ""))
    return 1 if failed and not done else 0


if __name__ == "__main__":
    sys.exit(app.run(main))
