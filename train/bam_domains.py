r"""Builds CycleGAN domain folders from the BAM (Behance Artistic Media) database.

The emotion seed's setup (top 1,000 happy vs top 1,000 scary, ranks
1,001-1,200 as test images):

  python -m train.bam_domains --bam_db=20170509-bam-2.2m-Nja9G.sqlite \
      --out=data/bam_happy_scary --domain_a=emotion_happy \
      --domain_b=emotion_scary --train=1000 --test=1001:1200

writes trainA/ trainB/ testA/ testB/ (ready for train.cyclegan), manifest.csv
and bam_domains.json under --out.  Running it again continues an interrupted
run.  Every flag is a field of tfstyle.bam.select.DomainsSpec,
tfstyle.bam.select.SelectionFilters or tfstyle.bam.download.DownloadOptions.
See docs/bam.md.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from tfstyle.bam.builder import build
from tfstyle.bam.download import DownloadOptions
from tfstyle.bam.manifest import BuildSummary
from tfstyle.bam.select import BamError, DomainsSpec, SelectionFilters
from tfstyle.core import config

SETTINGS = (DomainsSpec, SelectionFilters, DownloadOptions)


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
    """Defines this tool's flags on ``fv``; kept in a function (called when the module runs as
    a program, or by :func:`parse_flags`) so that importing the module adds no flags to the
    global FLAGS."""
    for cls in SETTINGS:
        config.define_flags(cls, fv)


def parse_flags(argv: list[str]) -> flags.FlagValues:
    """Parses ``argv`` (argv[0] is the program name) into a fresh FlagValues; raises
    ``flags.Error`` naming the flag for a value absl itself refuses."""
    fv = flags.FlagValues()
    define_flags(fv)
    fv(argv)
    return fv


def settings(fv: flags.FlagValues) -> tuple[DomainsSpec, SelectionFilters, DownloadOptions]:
    """The settings of the run; app.UsageError naming the flag for a bad value."""
    spec, filters, options = (config.from_flags(cls, fv)[0] for cls in SETTINGS)
    if not os.path.isfile(spec.bam_db):
        raise app.UsageError(f"--bam_db={spec.bam_db}: no such file")
    return spec, filters, options


def run(fv: flags.FlagValues) -> BuildSummary:
    """Runs the build with parsed flags and prints the summary; SystemExit with a one-line
    message naming the file on a database error."""
    spec, filters, options = settings(fv)
    try:
        summary = build(spec, filters, options)
    except (BamError, FileNotFoundError) as e:
        raise SystemExit(f"bam_domains: error: {e}") from None
    print(summary.format(), flush=True)
    return summary


def main(argv: list[str]) -> None:
    """Entry point for ``app.run``; the flags are already parsed."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    run(flags.FLAGS)


if __name__ == "__main__":
    define_flags()
    sys.exit(app.run(main))
