r"""Builds CycleGAN domain folders from the BAM (Behance Artistic Media) database.

The emotion seed's setup (top 1,000 happy vs top 1,000 scary, ranks
1,001-1,200 as test images):

  python -m train.bam_domains --bam_db=20170509-bam-2.2m-Nja9G.sqlite \
      --out=data/bam_happy_scary --domain_a=emotion_happy \
      --domain_b=emotion_scary --train=1000 --test=1001:1200

writes trainA/ trainB/ testA/ testB/ (ready for train.cyclegan), manifest.csv
and bam_domains.json under --out.  Running it again continues an interrupted
run.  See docs/bam.md.
"""

from __future__ import annotations

import os

from absl import app, flags

from tfstyle.bam import build as bam


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
    """Defines this tool's flags and their validators on ``fv``.

    Kept in a function (called when the module runs as a program, or by
    :func:`parse_flags`) so that importing the module never adds flags to
    the global FLAGS, where they could clash with another tool's.
    """
    flags.DEFINE_string("bam_db", None, "Path of the BAM SQLite file (opened "
                        "read-only), e.g. 20170509-bam-2.2m-Nja9G.sqlite.",
                        flag_values=fv)
    flags.DEFINE_string("out", None, "Output folder (the data root); "
                        "trainA/ trainB/ testA/ testB/, manifest.csv and "
                        "bam_domains.json go there.", flag_values=fv)
    flags.DEFINE_enum("domain_a", "emotion_happy", bam.ATTRIBUTES,
                      "BAM attribute whose top images are domain A.",
                      flag_values=fv)
    flags.DEFINE_enum("domain_b", "emotion_scary", bam.ATTRIBUTES,
                      "BAM attribute whose top images are domain B.",
                      flag_values=fv)
    flags.DEFINE_integer("train", 1000, "Train images per domain (ranks 1.. "
                         "of the de-duplicated list; a skipped image is "
                         "replaced by the next rank).", lower_bound=0,
                         flag_values=fv)
    flags.DEFINE_string("test", "1001:1200", "Test ranks START:END (1-based, "
                        "inclusive) per domain; END-START+1 images starting "
                        "at rank START, or right after the ranks train used "
                        "if those reach further.  Empty or 'none': no test "
                        "images.", flag_values=fv)
    flags.DEFINE_enum("min_label", "none", bam.MIN_LABEL_CHOICES,
                      "Keep only images whose label for the domain's own "
                      "attribute is at least this: 'positive', 'unsure' "
                      "(positive or unsure), or 'none' (no label filter).",
                      flag_values=fv)
    flags.DEFINE_enum("label_source", "crowd_or_automatic", bam.LABEL_SOURCES,
                      "Label used by --min_label: the crowd label when there "
                      "is one, else the automatic one (crowd_or_automatic); "
                      "only automatic_labels; or only crowd_labels.",
                      flag_values=fv)
    flags.DEFINE_bool("exclude_mature", False, "Drop images with "
                      "modules.mature_content set.", flag_values=fv)
    flags.DEFINE_list("media", [], "Keep only images whose automatic label is "
                      "positive for at least one of these media (comma "
                      "separated; e.g. watercolor,oilpaint or "
                      "media_watercolor).", flag_values=fv)
    flags.DEFINE_string("image_root", None, "Local mirror of the BAM images; "
                        "when set nothing is downloaded (see docs/bam.md for "
                        "the layouts looked up).", flag_values=fv)
    flags.DEFINE_integer("workers", 4, "Concurrent downloads.", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_float("rate", 5.0, "Most HTTP requests per second over all "
                       "workers (0: no limit).", lower_bound=0.0,
                       flag_values=fv)
    flags.DEFINE_float("timeout", 20.0, "Seconds allowed for connecting and "
                       "for each read (a whole download gets "
                       f"{bam.TOTAL_TIMEOUT_FACTOR:g}x this).", flag_values=fv)
    flags.DEFINE_integer("retries", 3, "Extra attempts after a transient "
                         "failure (timeout, network error, HTTP 5xx/429).",
                         lower_bound=0, flag_values=fv)
    flags.DEFINE_float("backoff", 1.0, "Seconds before the first retry; "
                       "doubles for each further retry.", lower_bound=0.0,
                       flag_values=fv)
    flags.DEFINE_string("user_agent", bam.DEFAULT_USER_AGENT,
                        "User-Agent header of the requests.", flag_values=fv)
    flags.DEFINE_integer("max_downloads", None, "Stop after this many HTTP "
                         "downloads (a later run continues).", lower_bound=0,
                         flag_values=fv)
    flags.DEFINE_bool("retry_skipped", False, "Ask again for links an earlier "
                      "run found dead for good (404, not an image, ...).",
                      flag_values=fv)
    flags.DEFINE_integer("progress_every", 50, "Log a progress line after "
                         "this many images.", lower_bound=1, flag_values=fv)

    flags.mark_flags_as_required(["bam_db", "out"], flag_values=fv)

    def test_ok(value):
        try:
            bam.parse_test_slice(value)
        except ValueError as e:
            raise flags.ValidationError(f"--test: {e}") from None
        return True

    def media_ok(values):
        for value in values:
            try:
                bam.normalize_media(value)
            except ValueError as e:
                raise flags.ValidationError(f"--media: {e}") from None
        return True

    flags.register_validator("test", test_ok, flag_values=fv)
    flags.register_validator("media", media_ok, flag_values=fv)
    flags.register_validator(
        "bam_db", lambda v: v is None or os.path.isfile(v),
        message="--bam_db must name an existing file", flag_values=fv)
    flags.register_validator(
        "out", lambda v: v is None or not os.path.exists(v)
        or os.path.isdir(v),
        message="--out exists and is not a folder", flag_values=fv)
    flags.register_validator(
        "image_root", lambda v: v is None or os.path.isdir(v),
        message="--image_root must name an existing folder", flag_values=fv)
    flags.register_validator(
        "timeout", lambda v: v > 0, message="--timeout must be > 0",
        flag_values=fv)
    flags.register_validator(
        "user_agent", lambda v: bool(v and v.strip()),
        message="--user_agent must not be empty", flag_values=fv)
    flags.register_multi_flags_validator(
        ["domain_a", "domain_b"],
        lambda d: d["domain_a"] != d["domain_b"],
        message="--domain_a and --domain_b must be different attributes",
        flag_values=fv)

    def slices_ok(d):
        try:
            test = bam.parse_test_slice(d["test"])
        except ValueError:
            return True  # reported by the --test validator
        if test is not None and test[0] <= d["train"]:
            raise flags.ValidationError(
                f"--test={d['test']} starts inside the --train={d['train']} "
                f"train ranks; START must be greater than --train")
        if test is None and d["train"] == 0:
            raise flags.ValidationError(
                "--train=0 with no --test: nothing to do")
        return True

    flags.register_multi_flags_validator(["train", "test"], slices_ok,
                                         flag_values=fv)


def parse_flags(argv: list[str]) -> flags.FlagValues:
    """Parses ``argv`` (argv[0] is the program name) into a fresh FlagValues.

    Raises ``flags.Error`` whose message names the offending flag.
    """
    fv = flags.FlagValues()
    define_flags(fv)
    fv(argv)
    return fv


def run(fv: flags.FlagValues) -> bam.BuildSummary:
    """Runs the build with parsed flags and prints the summary.

    Raises SystemExit with a message naming the file on a database error.
    """
    filters = bam.SelectionFilters(
        min_label=fv.min_label, label_source=fv.label_source,
        exclude_mature=fv.exclude_mature, media=tuple(fv.media))
    options = bam.DownloadOptions(
        workers=fv.workers, rate=fv.rate, timeout=fv.timeout,
        retries=fv.retries, backoff=fv.backoff, user_agent=fv.user_agent,
        max_downloads=fv.max_downloads, retry_skipped=fv.retry_skipped,
        progress_every=fv.progress_every)
    try:
        summary = bam.build_domains(
            fv.bam_db, fv.out, domain_a=fv.domain_a, domain_b=fv.domain_b,
            train=fv.train, test=bam.parse_test_slice(fv.test),
            filters=filters, options=options, image_root=fv.image_root)
    except (bam.BamError, FileNotFoundError) as e:
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
    app.run(main)
