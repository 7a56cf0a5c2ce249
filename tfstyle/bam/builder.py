"""BAM (Behance Artistic Media) emotion domains: from the BAM SQLite database to CycleGAN
training folders.

The emotion seed ranks BAM images by the automatic score of two attributes
(``emotion_happy`` and ``emotion_scary``), takes the top images of each as the
two domains and a later rank range as the test images.  :func:`build_domains`
does that end to end:

1. open the database read-only and check its schema, list the candidates of
   each attribute after the filters and split them into two disjoint ranked
   lists (:mod:`tfstyle.bam.select`);
2. fill the train slots and then the test slots of each domain by walking its
   list in rank order; an image that cannot be obtained (dead link, HTML
   instead of an image, truncated file, ...) is skipped and the next ranked
   image takes the slot;
3. get each image from a local mirror or over HTTP(S) in a bounded thread pool
   (:mod:`tfstyle.bam.download`), decode it completely before it is written,
   atomically, under its ``mid`` (:mod:`tfstyle.bam.checks`);
4. write ``manifest.csv`` (one row per image tried) and ``bam_domains.json``
   (:mod:`tfstyle.bam.manifest`).

A second run over the same output folder reuses every file whose sha256 still
matches the manifest and does not ask again for links that failed for good.

Nothing here reads command-line flags; ``train/bam_domains.py`` is the CLI
(its flags are the fields of ``DomainsSpec``, ``SelectionFilters`` and
``DownloadOptions``).  See docs/bam.md.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import os
import pathlib
import re
import time

from absl import logging

from tfstyle.bam import manifest
from tfstyle.bam.checks import ImageRejected, prepare_image, sha256_file
from tfstyle.bam.download import BudgetSpent, Downloader, DownloadOptions, Unavailable
from tfstyle.bam.manifest import GOOD_STATUSES, BuildSummary, Outcome, SlotReport
from tfstyle.bam.select import (DOMAINS, DomainSplitter, DomainsSpec, RankedImage,
                                SelectionFilters, check_schema, iter_candidates,
                                open_bam_db, required_schema)
from tfstyle.core.files import write_bytes_atomic

SPLIT_DIRS: tuple[str, ...] = ("trainA", "trainB", "testA", "testB")
UNUSED_DIR = "unused"

_STORED_NAME = re.compile(r"^(\d+)\.(jpg|png)$")
# Temporary files of an atomic write that a killed run left behind (and the
# ``.part`` files of tfstyle 0.1).
_LEFTOVER = re.compile(r"^\..+\.(part|tmp(\.[A-Za-z0-9]+)?)$")


class _Phase:
    """The train or test slots of one domain while they are being filled."""

    def __init__(self, domain: int, split: str, size: int, start_rank: int):
        self.domain = domain
        self.split = split
        self.size = size
        self.start_rank = start_rank
        self.good: list[Outcome] = []
        self.skipped: list[Outcome] = []
        self.inflight = 0
        self.exhausted = False

    @property
    def open_slots(self) -> int:
        return self.size - len(self.good) - self.inflight

    @property
    def done(self) -> bool:
        return self.inflight == 0 and (len(self.good) >= self.size
                                       or self.exhausted)


class _Builder:
    """State of one :func:`build` run (see there)."""

    def __init__(self, spec: DomainsSpec, options: DownloadOptions):
        self.out = pathlib.Path(spec.out)
        self.attributes = (spec.domain_a, spec.domain_b)
        self.options = options
        self.image_root = pathlib.Path(spec.image_root) if spec.image_root else None
        self.downloader = Downloader(options, self.image_root)
        self.old_rows: dict[int, dict[str, str]] = {}
        self.existing: dict[int, pathlib.Path] = {}
        self.outcomes: list[Outcome] = []
        self.completed = 0
        # Per domain: its train phase, then its test phase (if any).
        test = spec.test_slice
        self.pipelines: list[list[_Phase]] = []
        for d in (0, 1):
            phases = [_Phase(d, "train", spec.train, 1)]
            if test is not None:
                phases.append(_Phase(d, "test", test[1] - test[0] + 1,
                                     test[0]))
            self.pipelines.append(phases)

    @property
    def requests(self) -> int:
        return self.downloader.requests

    # -- preparation ------------------------------------------------------

    def prepare_folders(self) -> None:
        """Creates the folders, removes temporary files left by a killed run,
        and indexes the images already there and the old manifest."""
        for name in SPLIT_DIRS + (UNUSED_DIR,):
            (self.out / name).mkdir(parents=True, exist_ok=True)
        for folder in (self.out,) + tuple(self.out / n for n in
                                          SPLIT_DIRS + (UNUSED_DIR,)):
            for entry in folder.iterdir():
                if _LEFTOVER.match(entry.name) and entry.is_file():
                    entry.unlink(missing_ok=True)
                    continue
                if folder == self.out:
                    continue
                match = _STORED_NAME.match(entry.name)
                if match and entry.is_file():
                    self.existing.setdefault(int(match.group(1)), entry)
        for row in manifest.read_manifest(self.out / manifest.MANIFEST_NAME):
            try:
                mid = int(row["mid"])
            except (TypeError, ValueError):
                continue
            previous = self.old_rows.get(mid)
            # A good row wins over a skipped one for the same image.
            if previous is None or row.get("status") in GOOD_STATUSES:
                self.old_rows[mid] = row

    # -- per-candidate work -----------------------------------------------

    def remembered_skip(self, cand: RankedImage) -> Outcome | None:
        """A permanent failure of the same URL recorded by an earlier run."""
        if self.image_root is not None or self.options.retry_skipped:
            return None
        if cand.mid in self.existing:
            return None
        row = self.old_rows.get(cand.mid)
        if (row is None or row.get("status") != "skipped"
                or row.get("origin") != "url"
                or row.get("reason") not in manifest.PERMANENT_REASONS
                or (row.get("src") or None) != cand.src):
            return None
        return Outcome(cand, "", "skipped", origin="url", reason=row["reason"],
                       detail="as in the previous run (retry_skipped to ask "
                       "again)")

    def _reuse(self, cand: RankedImage, target: pathlib.Path) -> Outcome | None:
        """Reuses a file already in the output folder if it verifies.

        With a manifest row for it (same file name, same src) the file's
        sha256 must match the row.  Without one (a run killed between two
        manifest checkpoints) it must decode and be what prepare_image would
        store.  A file that fails is deleted and the image fetched again.
        """
        path = self.existing.get(cand.mid)
        if path is None or not path.is_file():
            return None
        row = self.old_rows.get(cand.mid)
        if (row is not None and row.get("status") in GOOD_STATUSES
                and pathlib.PurePosixPath(row.get("file") or "").name
                == path.name):
            if (row.get("src") or None) != cand.src:
                ok, why = False, "its src changed in the database"
            else:
                digest = sha256_file(path)
                ok, why = digest == row.get("sha256"), "sha256 mismatch"
            width, height = row.get("width"), row.get("height")
            fmt = row.get("format") or ""
        else:
            body = path.read_bytes()
            digest = hashlib.sha256(body).hexdigest()
            try:
                info = prepare_image(body)
                ok = info.extension == path.suffix and info.data == body
                width, height, fmt = info.width, info.height, info.format
                why = "not what would be stored"
            except ImageRejected as e:
                ok, why = False, e.reason
        if not ok:
            logging.info("mid %d: not reusing %s (%s); fetching it again",
                         cand.mid, path, why)
            path.unlink(missing_ok=True)
            return None
        destination = target / path.name
        if path != destination:
            os.replace(path, destination)
        return Outcome(cand, "", "reused", origin="existing",
                       file=destination, sha256=digest,
                       nbytes=destination.stat().st_size,
                       width=width, height=height, format=fmt)

    def _store(self, cand: RankedImage, body: bytes, target: pathlib.Path,
               origin: str) -> Outcome:
        try:
            info = prepare_image(body)
        except ImageRejected as e:
            return Outcome(cand, "", "skipped", origin=origin, reason=e.reason,
                           detail=e.detail)
        path = target / f"{cand.mid}{info.extension}"
        write_bytes_atomic(path, info.data)
        return Outcome(cand, "", "copied" if origin == "mirror" else "downloaded",
                       origin=origin, file=path,
                       sha256=hashlib.sha256(info.data).hexdigest(),
                       nbytes=len(info.data), width=info.width,
                       height=info.height, format=info.format)

    def process(self, cand: RankedImage, split: str) -> Outcome:
        """Reuses, copies or downloads one candidate (runs in a worker)."""
        target = self.out / f"{split}{DOMAINS[cand.domain]}"
        outcome = self._reuse(cand, target)
        if outcome is None:
            try:
                body, origin, content_type = self.downloader.get(cand)
            except BudgetSpent:
                return Outcome(cand, split, "pending")
            except Unavailable as e:
                outcome = Outcome(cand, "", "skipped", origin=e.origin,
                                  reason=e.reason, detail=e.detail)
            else:
                outcome = self._store(cand, body, target, origin)
                if outcome.reason == "not_image" and content_type:
                    outcome.detail = f"Content-Type {content_type}"
        outcome.split = split
        return outcome

    # -- the fill loop ----------------------------------------------------

    def _next_candidate(self, splitter: DomainSplitter,
                        phase: _Phase) -> RankedImage | None:
        while True:
            cand = splitter.next(phase.domain)
            if cand is None or cand.rank >= phase.start_rank:
                return cand

    def _record(self, phase: _Phase, outcome: Outcome) -> None:
        (phase.good if outcome.good else phase.skipped).append(outcome)
        self.outcomes.append(outcome)
        self.completed += 1
        if self.completed % self.options.progress_every == 0:
            self._log_progress()
        if self.completed % self.options.checkpoint_every == 0:
            self.write_manifest(final=False)

    def _log_progress(self) -> None:
        parts = [f"{p.split}{DOMAINS[p.domain]} {len(p.good)}/{p.size}"
                 for phases in self.pipelines for p in phases]
        statuses = collections.Counter(o.status for o in self.outcomes)
        logging.info(
            "BAM images: %s | %d downloaded, %d copied, %d reused, %d skipped;"
            " %d HTTP requests", ", ".join(parts), statuses["downloaded"],
            statuses["copied"], statuses["reused"], statuses["skipped"],
            self.requests)

    def fill(self, splitter: DomainSplitter) -> bool:
        """Fills every phase; returns False when stopped by max_downloads.

        The domains take turns submitting work; a phase never has more
        images in flight than it has open slots, so the good images of a
        phase are always the first ``size`` good ones in rank order, and no
        image beyond the last one needed is fetched.
        """
        position = [0, 0]
        pending: dict[concurrent.futures.Future, _Phase] = {}
        max_inflight = 2 * self.options.workers
        stopping = False

        def current(d: int) -> _Phase | None:
            while position[d] < len(self.pipelines[d]):
                phase = self.pipelines[d][position[d]]
                if not phase.done:
                    return phase
                position[d] += 1
            return None

        executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.options.workers, thread_name_prefix="bam")
        try:
            while True:
                progress = True
                while progress and not stopping:
                    progress = False
                    for d in (0, 1):
                        phase = current(d)
                        if (phase is None or phase.exhausted
                                or phase.open_slots <= 0
                                or len(pending) >= max_inflight):
                            continue
                        progress = True
                        cand = self._next_candidate(splitter, phase)
                        if cand is None:
                            phase.exhausted = True
                            continue
                        skip = self.remembered_skip(cand)
                        if skip is not None:
                            skip.split = phase.split
                            self._record(phase, skip)
                            continue
                        future = executor.submit(self.process, cand,
                                                 phase.split)
                        pending[future] = phase
                        phase.inflight += 1
                if not pending:
                    break  # everything is filled or exhausted, or stopping
                finished, _ = concurrent.futures.wait(
                    pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    phase = pending.pop(future)
                    phase.inflight -= 1
                    outcome = future.result()
                    if outcome.status == "pending":
                        stopping = True
                    else:
                        self._record(phase, outcome)
        finally:
            executor.shutdown(wait=not pending, cancel_futures=True)
        return not stopping

    # -- results ----------------------------------------------------------

    def write_manifest(self, final: bool) -> None:
        """Writes manifest.csv.  Unless ``final``, rows of the previous
        manifest for images this run has not reached yet are kept, so that an
        interrupted run loses nothing a later run could reuse."""
        rows = [o.row(self.out, self.attributes[o.candidate.domain])
                for o in self.outcomes]
        rows.sort(key=manifest.rank_key)
        if not final:
            done = {o.candidate.mid for o in self.outcomes}
            rows += [r for mid, r in self.old_rows.items() if mid not in done]
        manifest.write_manifest(self.out / manifest.MANIFEST_NAME, rows)

    def retire_unselected(self) -> int:
        """Moves stored images that this (complete) run did not select out of
        the training folders into ``unused/``; returns how many."""
        keep = {o.file.resolve() for o in self.outcomes
                if o.good and o.file is not None}
        moved = 0
        for name in SPLIT_DIRS:
            for entry in (self.out / name).iterdir():
                if (_STORED_NAME.match(entry.name) and entry.is_file()
                        and entry.resolve() not in keep):
                    os.replace(entry, self.out / UNUSED_DIR / entry.name)
                    moved += 1
        return moved

    def summary(self, finished: bool, seconds: float) -> BuildSummary:
        summary = BuildSummary(out_dir=self.out, slots=[], requests=self.requests,
                               stopped_early=not finished, seconds=seconds)
        for phases in self.pipelines:
            for p in phases:
                tried = sorted(o.candidate.rank for o in p.good + p.skipped)
                summary.slots.append(SlotReport(
                    domain=DOMAINS[p.domain], attribute=self.attributes[p.domain],
                    split=p.split, wanted=p.size, filled=len(p.good),
                    skipped=len(p.skipped),
                    first_rank=tried[0] if tried else None,
                    last_rank=tried[-1] if tried else None,
                    ran_out=finished and p.exhausted and len(p.good) < p.size))
        statuses = collections.Counter(o.status for o in self.outcomes)
        summary.downloaded = statuses["downloaded"]
        summary.copied = statuses["copied"]
        summary.reused = statuses["reused"]
        summary.skipped.update(o.reason for o in self.outcomes if o.status == "skipped")
        return summary


def build_domains(bam_db: str | os.PathLike, out_dir: str | os.PathLike, *,
                  domain_a: str = "emotion_happy",
                  domain_b: str = "emotion_scary",
                  train: int = 1000,
                  test: tuple[int, int] | None = (1001, 1200),
                  filters: SelectionFilters = SelectionFilters(),
                  options: DownloadOptions = DownloadOptions(),
                  image_root: str | os.PathLike | None = None
                  ) -> BuildSummary:
    """Builds ``trainA/ trainB/ testA/ testB/`` and ``manifest.csv``.

    Ranks: each attribute's candidates (after ``filters``) are ordered by
    score, best first (ties: smaller mid first); an image in both lists is
    given to one domain only (see :class:`DomainSplitter`); ``rank`` is the
    1-based position in the resulting de-duplicated list.

    Slots: the train slots are filled from rank 1 on; the test slots from rank
    ``test[0]`` on, or from the rank after the last one the train slots used
    if that is later.  An image that cannot be obtained is skipped and the
    next rank takes its place, so ``test=(1001, 1200)`` means "200 test
    images, starting at rank 1001 unless train needed those ranks".  Ranks
    between the train ranks used and ``test[0]`` are not fetched.  When the
    list ends first, the slots stay short and the summary says so.

    Files are stored as ``<split><A|B>/<mid>.jpg|png`` (see
    :func:`prepare_image`).  Files already in the output folder are reused if
    they verify; stored images the run does not select move to ``unused/``.

    Raises FileNotFoundError / BamSchemaError for the database, ValueError
    (a ConfigError naming the argument) for bad arguments.
    """
    test_text = "" if test is None else ":".join(str(n) for n in test)
    spec = DomainsSpec(bam_db=os.fspath(bam_db), out=os.fspath(out_dir),
                       domain_a=domain_a, domain_b=domain_b, train=train,
                       test=test_text,
                       image_root=os.fspath(image_root) if image_root else "")
    return build(spec, filters, options)


def build(spec: DomainsSpec, filters: SelectionFilters = SelectionFilters(),
          options: DownloadOptions = DownloadOptions()) -> BuildSummary:
    """:func:`build_domains` from its settings (what ``train.bam_domains`` calls)."""
    started = time.monotonic()
    conn = open_bam_db(spec.bam_db)
    try:
        attributes = (spec.domain_a, spec.domain_b)
        check_schema(conn, required_schema(attributes, filters.media), spec.bam_db)
        logging.info("ranking the images of %s by %s (A) and %s (B); sorting "
                     "the full BAM database takes a while", spec.bam_db,
                     spec.domain_a, spec.domain_b)
        builder = _Builder(spec, options)
        builder.prepare_folders()
        splitter = DomainSplitter(iter_candidates(conn, spec.domain_a, filters),
                                  iter_candidates(conn, spec.domain_b, filters))
        finished = False
        try:
            finished = builder.fill(splitter)
        finally:
            builder.write_manifest(final=finished)
    finally:
        conn.close()
    if finished:
        moved = builder.retire_unselected()
        if moved:
            logging.info("moved %d stored images this run did not select to "
                         "%s", moved, builder.out / UNUSED_DIR)
    summary = builder.summary(finished, time.monotonic() - started)
    test = spec.test_slice
    manifest.write_run_info(builder.out, {
        "bam_db": str(pathlib.Path(spec.bam_db).resolve()),
        "domain_a": spec.domain_a, "domain_b": spec.domain_b,
        "train": spec.train, "test": list(test) if test else None,
        "filters": dataclasses.asdict(filters),
        "image_root": spec.image_root or None,
        "rate": options.rate, "workers": options.workers,
    }, summary)
    for message in summary.ran_out:
        logging.warning("%s", message)
    return summary
