"""The record of a BAM run: one :class:`Outcome` per image tried, written as rows of
``manifest.csv`` (read back by the next run to resume), and the run's
:class:`BuildSummary`, printed and written as ``bam_domains.json``."""

from __future__ import annotations

import collections
import csv
import dataclasses
import datetime
import io
import pathlib
from typing import Iterable, Mapping

from absl import logging

from tfstyle.bam.select import DOMAINS, RankedImage
from tfstyle.core.files import write_json_atomic, write_text_atomic

#: The slot groups of each domain, filled in this order.
SPLITS: tuple[str, ...] = ("train", "test")
MANIFEST_NAME = "manifest.csv"
RUN_INFO_NAME = "bam_domains.json"

#: Columns of manifest.csv, in order.
MANIFEST_COLUMNS: tuple[str, ...] = (
    "domain",        # A or B
    "attribute",     # e.g. emotion_happy
    "split",         # train or test (the slot group the image was tried for)
    "rank",          # 1-based position in the filtered, de-duplicated list
    "mid",           # BAM module id
    "score",         # scores.<attribute>
    "label",         # positive / unsure / negative / empty
    "label_source",  # crowd / automatic / empty
    "src",           # modules.src, the source URL
    "license",       # modules.license
    "mature_content",  # 0 or 1
    "status",        # downloaded / copied / reused / skipped
    "reason",        # why it was skipped (empty otherwise)
    "origin",        # url / mirror / existing
    "file",          # path relative to the output folder, e.g. trainA/123.jpg
    "sha256",        # of the stored file
    "bytes",         # size of the stored file
    "width",
    "height",
    "format",        # JPEG or PNG (the stored format)
)

GOOD_STATUSES = frozenset({"downloaded", "copied", "reused"})
#: Skip reasons that will not change by asking again; a later run over the
#: same folder does not fetch these links again (unless retry_skipped).
PERMANENT_REASONS = frozenset({
    "http_400", "http_401", "http_403", "http_404", "http_405", "http_406",
    "http_410", "http_451", "not_image", "corrupt_image", "too_large",
    "no_url", "bad_url", "redirect_refused", "too_many_redirects", "tls_error",
})


@dataclasses.dataclass
class Outcome:
    """What happened to one candidate."""
    candidate: RankedImage
    split: str
    status: str                 # downloaded/copied/reused/skipped/pending
    origin: str = ""            # url/mirror/existing
    reason: str = ""
    detail: str = ""
    file: pathlib.Path | None = None
    sha256: str = ""
    nbytes: int | None = None
    width: int | None = None
    height: int | None = None
    format: str = ""

    @property
    def good(self) -> bool:
        return self.status in GOOD_STATUSES

    def row(self, out: pathlib.Path, attribute: str) -> dict[str, object]:
        """This outcome as a manifest row (``file`` relative to the output folder ``out``)."""
        c = self.candidate
        return {
            "domain": DOMAINS[c.domain], "attribute": attribute,
            "split": self.split, "rank": c.rank, "mid": c.mid,
            "score": repr(c.score), "label": c.label,
            "label_source": c.label_source, "src": c.src,
            "license": c.license, "mature_content": int(c.mature),
            "status": self.status, "reason": self.reason, "origin": self.origin,
            "file": (self.file.relative_to(out).as_posix()
                     if self.file is not None else ""),
            "sha256": self.sha256, "bytes": self.nbytes, "width": self.width,
            "height": self.height, "format": self.format,
        }


def rank_key(row: Mapping[str, object]) -> tuple[str, int, int]:
    """Sort key of a manifest row: domain, split (train first), rank."""
    split = row.get("split")
    try:
        rank = int(row.get("rank") or 0)
    except (TypeError, ValueError):
        rank = 0
    return (str(row.get("domain")),
            SPLITS.index(split) if split in SPLITS else len(SPLITS), rank)


def read_manifest(path: pathlib.Path) -> list[dict[str, str]]:
    """Rows of an existing manifest.csv; [] when there is none or it is not
    one of ours (then a warning names the file)."""
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            have = set(reader.fieldnames or ())
            missing = [c for c in ("mid", "status", "file", "sha256", "src",
                                   "reason", "origin") if c not in have]
            if missing:
                logging.warning("%s lacks the columns %s; not using it to "
                                "resume", path, ", ".join(missing))
                return []
            return list(reader)
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        logging.warning("cannot read %s (%s); not using it to resume", path, e)
        return []


def write_manifest(path: pathlib.Path,
                   rows: Iterable[Mapping[str, object]]) -> None:
    """Writes manifest.csv atomically, columns MANIFEST_COLUMNS."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=MANIFEST_COLUMNS,
                            extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k))
                         for k in MANIFEST_COLUMNS})
    write_text_atomic(path, out.getvalue())



@dataclasses.dataclass
class SlotReport:
    """How one domain's train or test slots were filled."""
    domain: str
    attribute: str
    split: str
    wanted: int
    filled: int = 0
    skipped: int = 0
    first_rank: int | None = None
    last_rank: int | None = None
    ran_out: bool = False


@dataclasses.dataclass
class BuildSummary:
    """Result of :func:`build_domains`."""
    out_dir: pathlib.Path
    slots: list[SlotReport]
    downloaded: int = 0
    copied: int = 0
    reused: int = 0
    skipped: collections.Counter = dataclasses.field(
        default_factory=collections.Counter)
    requests: int = 0
    stopped_early: bool = False
    seconds: float = 0.0

    @property
    def ran_out(self) -> list[str]:
        """One message per slot group the database could not fill."""
        return [f"the database ran out of candidates for domain {s.domain} "
                f"({s.attribute}) {s.split}: {s.filled} of {s.wanted} images"
                for s in self.slots if s.ran_out]

    @property
    def complete(self) -> bool:
        return not self.stopped_early and not self.ran_out

    def format(self) -> str:
        """Multi-line human-readable summary."""
        lines = [f"BAM domains in {self.out_dir} ({self.seconds:.1f}s)"]
        for s in self.slots:
            ranks = (f"ranks {s.first_rank}-{s.last_rank}"
                     if s.first_rank is not None else "no ranks")
            note = "  <- database ran out" if s.ran_out else ""
            lines.append(
                f"  {s.split}{s.domain} ({s.attribute}): {s.filled}/"
                f"{s.wanted} images, {s.skipped} skipped, {ranks}{note}")
        lines.append(f"  files: {self.downloaded} downloaded, {self.copied} "
                     f"copied from the mirror, {self.reused} reused; "
                     f"{self.requests} HTTP requests")
        total = sum(self.skipped.values())
        detail = ", ".join(f"{r}: {n}" for r, n in
                           sorted(self.skipped.items(),
                                  key=lambda kv: (-kv[1], kv[0])))
        lines.append(f"  skipped: {total}"
                     + (f" ({detail})" if detail else ""))
        lines.append(f"  manifest: {self.out_dir / MANIFEST_NAME}")
        for message in self.ran_out:
            lines.append("WARNING: " + message)
        if self.stopped_early:
            lines.append("NOTE: stopped at the download limit before all "
                         "slots were filled; run again to continue")
        return "\n".join(lines)



def write_run_info(out: pathlib.Path, parameters: Mapping[str, object],
                   summary: BuildSummary) -> None:
    """Writes bam_domains.json: the run's ``parameters`` and its counts."""
    info = {
        **parameters,
        "finished_at": datetime.datetime.now(datetime.timezone.utc)
        .isoformat(timespec="seconds"),
        "complete": summary.complete,
        "stopped_early": summary.stopped_early,
        "slots": [dataclasses.asdict(s) for s in summary.slots],
        "downloaded": summary.downloaded, "copied": summary.copied,
        "reused": summary.reused, "skipped": dict(summary.skipped),
        "ran_out": summary.ran_out,
    }
    write_json_atomic(out / RUN_INFO_NAME, info, sort_keys=False)
