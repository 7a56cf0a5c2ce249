"""Evaluate trained CycleGAN-family models: FID/KID, cycle and paired scores, an HTML report.

    python -m tfstyle.evaluate --model_dir=runs/caricature --model_dir=runs/caricature_se \\
        --model_dir=runs/caricature_da --dataroot=data/caricature --out=reports/caricature

Translates testA with AtoB and testB with BtoA with every model, compares the outputs with
the real test images of the target domain, and writes OUT/metrics.json, OUT/index.html (open
it in a browser) and OUT/rating_manifest.json (for `python -m tfstyle.rate`). The metrics
table is printed on stdout. See docs/evaluation.md.
"""

import sys
from pathlib import Path

from absl import app, flags, logging

flags.DEFINE_multi_string("model_dir", None,
                          "Training folder holding generators/ (repeat for several models).")
flags.DEFINE_string("dataroot", None, "Data folder with testA/ testB/ (and trainA/ trainB/); "
                    "default: the dataroot in the first model's generators/info.json.")
flags.DEFINE_string("out", None, "Report folder (created).")
flags.DEFINE_string("inception_weights", "imagenet",
                    "InceptionV3 weights: 'imagenet' (Keras cache or download), a local file "
                    "(.h5 / .weights.h5 / .keras), or 'random' (smoke tests only).")
flags.DEFINE_integer("inception_size", 299, "Inception input side. FID is defined at 299; "
                     "smaller (>= 75) only for quick smoke runs.")
flags.DEFINE_integer("image_size", None, "Images are resized to this square side before "
                     "translation; default: the first model's crop_size; 0: keep each size.")
flags.DEFINE_integer("num_train", 20, "Train images per domain to translate for the report "
                     "and the rating study (0: none).")
flags.DEFINE_enum("paired", "auto", ["auto", "yes", "no"], "Paired metrics: testA/testB "
                  "files with the same stem are pairs (auto: if there are any).")
flags.DEFINE_integer("kid_subsets", 100, "KID: number of random subsets.")
flags.DEFINE_integer("kid_subset_size", 1000, "KID: largest subset size.")
flags.DEFINE_integer("tile", 512, "Largest side translated in one piece (see tfstyle.translate).")
flags.DEFINE_integer("overlap", 32, "Overlap of neighbouring tiles in pixels.")
flags.DEFINE_integer("seed", 0, "Seed of the KID subsets.")
flags.mark_flags_as_required(["model_dir", "out"])
FLAGS = flags.FLAGS


def _validate():
    # Plain file checks (no TensorFlow import), so a wrong flag fails at once.
    import json

    from tfstyle.core.images import list_images

    for d in FLAGS.model_dir:
        for name in ("AtoB.keras", "BtoA.keras", "info.json"):
            if not (Path(d) / "generators" / name).is_file():
                raise app.UsageError(f"--model_dir={d}: {Path(d) / 'generators' / name} not "
                                     "found (not a finished training folder)")
    dataroot = FLAGS.dataroot
    if dataroot is None:
        info = json.loads((Path(FLAGS.model_dir[0]) / "generators" / "info.json").read_text())
        dataroot = info.get("dataroot")
        if not dataroot:
            raise app.UsageError("--dataroot: not given and not in the first model's info.json")
    for name in ("testA", "testB"):
        folder = Path(dataroot) / name
        if not folder.is_dir() or not list_images(folder):
            raise app.UsageError(f"--dataroot={dataroot}: {folder} is missing or holds no images")
    if FLAGS.paired == "yes":
        stems = [{p.stem for p in list_images(Path(dataroot) / n)} for n in ("testA", "testB")]
        if not stems[0] & stems[1]:
            raise app.UsageError(f"--paired=yes: no file stem of {dataroot}/testA is in "
                                 f"{dataroot}/testB")
    weights = FLAGS.inception_weights
    if weights not in ("imagenet", "random") and not Path(weights).expanduser().is_file():
        raise app.UsageError(f"--inception_weights={weights}: not 'imagenet', 'random' or an "
                             "existing file")
    checks = [("inception_size", FLAGS.inception_size >= 75, "must be at least 75"),
              ("image_size", FLAGS.image_size is None or FLAGS.image_size >= 0, "must be >= 0"),
              ("num_train", FLAGS.num_train >= 0, "must be >= 0"),
              ("kid_subsets", FLAGS.kid_subsets >= 1, "must be >= 1"),
              ("kid_subset_size", FLAGS.kid_subset_size >= 2, "must be >= 2"),
              ("tile", FLAGS.tile % 4 == 0 and FLAGS.tile >= 16,
               "must be a multiple of 4 and at least 16"),
              ("overlap", 0 <= FLAGS.overlap < FLAGS.tile // 2, "must be in [0, tile/2)")]
    for name, ok, why in checks:
        if not ok:
            raise app.UsageError(f"--{name}={FLAGS[name].value}: {why}")
    return dataroot


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    dataroot = _validate()
    from tfstyle.evaluation import report
    from tfstyle.evaluation.inception import (
        InceptionWeightsMismatchError,
        InceptionWeightsUnavailableError,
    )

    try:
        result = report.build_report(
            FLAGS.model_dir, dataroot, FLAGS.out, inception_weights=FLAGS.inception_weights,
            inception_size=FLAGS.inception_size, image_size=FLAGS.image_size,
            num_train=FLAGS.num_train, paired=FLAGS.paired, tile=FLAGS.tile,
            overlap=FLAGS.overlap, kid_subsets=FLAGS.kid_subsets,
            kid_subset_size=FLAGS.kid_subset_size, seed=FLAGS.seed)
    except InceptionWeightsUnavailableError as err:
        logging.error("%s", err)
        print(f"error: {err}", file=sys.stderr)
        return 2
    except report.ReportError as err:
        raise app.UsageError(str(err)) from err
    except InceptionWeightsMismatchError as err:
        raise app.UsageError(f"--inception_weights={FLAGS.inception_weights}: {err}") from err
    print(report.format_table(result))
    out = Path(FLAGS.out)
    print(f"\nwrote {out / 'metrics.json'}, {out / 'index.html'} and "
          f"{out / report.MANIFEST}")
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
