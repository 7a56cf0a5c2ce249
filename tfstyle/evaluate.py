"""Evaluate trained CycleGAN-family models: FID/KID, cycle and paired scores, an HTML report.

    python -m tfstyle.evaluate --model_dir=runs/caricature --model_dir=runs/caricature_se \\
        --model_dir=runs/caricature_da --dataroot=data/caricature --out=reports/caricature

Translates testA with AtoB and testB with BtoA with every model that has that generator (a
CUT/FastCUT run or a distilled student may hold AtoB only; its cycle scores are then n/a),
compares the outputs with the real test images of the target domain, and writes
OUT/metrics.json, OUT/index.html (open it in a browser) and OUT/rating_manifest.json (for
`python -m tfstyle.rate`). The metrics table is printed on stdout. Every option is a field
of tfstyle.evaluation.report.ReportOptions. See docs/evaluation.md.
"""

import json
import sys
from pathlib import Path

from absl import app, flags, logging

from tfstyle.core.config import define_flags, from_flags
from tfstyle.core.images import list_images
from tfstyle.evaluation import report
from tfstyle.evaluation.report import ReportOptions

flags.DEFINE_multi_string("model_dir", None,
                          "Training folder holding generators/ (AtoB.keras and/or BtoA.keras, "
                          "info.json); repeat for several models.")
flags.DEFINE_string("dataroot", None, "Data folder with testA/ testB/ (and trainA/ trainB/); "
                    "default: the dataroot in the first model's generators/info.json.")
flags.DEFINE_string("out", None, "Report folder (created).")
define_flags(ReportOptions)
flags.mark_flags_as_required(["model_dir", "out"])
FLAGS = flags.FLAGS


def _dataroot(options: ReportOptions) -> str:
    """The data folder, after checking the folders the flags name (before models load)."""
    for d in FLAGS.model_dir:
        folder = Path(d) / "generators"
        if not (folder / "info.json").is_file():
            raise app.UsageError(f"--model_dir={d}: {folder / 'info.json'} not found (not a "
                                 "finished training folder)")
        if not any((folder / f"{x}.keras").is_file() for x in report.DIRECTION_DOMAINS):
            raise app.UsageError(f"--model_dir={d}: {folder} holds neither AtoB.keras nor "
                                 "BtoA.keras (not a finished training folder)")
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
    if options.paired == "yes":
        stems = [{p.stem for p in list_images(Path(dataroot) / n)} for n in ("testA", "testB")]
        if not stems[0] & stems[1]:
            raise app.UsageError(f"--paired=yes: no file stem of {dataroot}/testA is in "
                                 f"{dataroot}/testB")
    return dataroot


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    options, _ = from_flags(ReportOptions)
    dataroot = _dataroot(options)
    from tfstyle.core.keras_files import ModelFileError
    from tfstyle.evaluation.inception import (  # TensorFlow: after the cheap checks
        InceptionWeightsMismatchError,
        InceptionWeightsUnavailableError,
    )

    try:
        result = report.build_report(FLAGS.model_dir, dataroot, FLAGS.out, options)
    except InceptionWeightsUnavailableError as err:
        logging.error("%s", err)
        print(f"error: {err}", file=sys.stderr)
        return 2
    except report.ReportError as err:
        raise app.UsageError(str(err)) from err
    except (FileNotFoundError, ModelFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except InceptionWeightsMismatchError as err:
        raise app.UsageError(f"--inception_weights={options.inception_weights}: {err}") from err
    print(report.format_table(result))
    out = Path(FLAGS.out)
    print(f"\nwrote {out / 'metrics.json'}, {out / 'index.html'} and "
          f"{out / report.MANIFEST}")
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
