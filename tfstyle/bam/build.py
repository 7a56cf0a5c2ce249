"""BAM (Behance Artistic Media) emotion domains: from the BAM SQLite database to
CycleGAN training folders.

The emotion seed ranks BAM images by the automatic score of two attributes
(``emotion_happy`` and ``emotion_scary``), takes the top images of each as the
two domains and a later rank range as the test images.  This module does that
end to end:

1. open the BAM SQLite file read-only and check that it has the tables and
   columns needed (:func:`open_bam_db`, :func:`check_schema`);
2. list the candidates of each attribute, best score first, after the optional
   filters (:func:`iter_candidates`, :class:`SelectionFilters`);
3. give an image that appears in both lists to exactly one domain, the one
   where it sits higher (:class:`DomainSplitter`);
4. fill the train slots and then the test slots of each domain by walking the
   de-duplicated list in rank order; an image that cannot be obtained (dead
   link, HTML instead of an image, truncated file, ...) is skipped and the next
   ranked image takes the slot (:func:`build_domains`);
5. fetch the images over HTTP(S) with a bounded thread pool, a shared rate
   limit, timeouts and retries with exponential backoff (:func:`fetch_url`,
   :class:`RateLimiter`), or copy them from a local mirror
   (:func:`find_in_mirror`); every body is decoded with Pillow before it is
   written, atomically, under its ``mid`` (:func:`prepare_image`);
6. write ``manifest.csv`` (one row per image tried) and ``bam_domains.json``
   (the run's parameters and counts).

A second run over the same output folder reuses every file whose sha256 still
matches the manifest and does not ask again for links that failed for good.

Nothing here reads command-line flags; ``train/bam_domains.py`` is the CLI.
See docs/bam.md for the user-facing description.
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import dataclasses
import datetime
import hashlib
import http.client
import io
import json
import os
import pathlib
import random
import re
import sqlite3
import struct
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from absl import logging
from PIL import Image, ImageFile

# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

#: The 20 BAM attributes, in the order of the columns of ``scores`` and
#: ``automatic_labels``.
ATTRIBUTES: tuple[str, ...] = (
    "content_bicycle", "content_bird", "content_building", "content_cars",
    "content_cat", "content_dog", "content_flower", "content_people",
    "content_tree",
    "emotion_gloomy", "emotion_happy", "emotion_peaceful", "emotion_scary",
    "media_3d_graphics", "media_comic", "media_graphite", "media_oilpaint",
    "media_pen_ink", "media_vectorart", "media_watercolor",
)
MEDIA_ATTRIBUTES: tuple[str, ...] = tuple(
    a for a in ATTRIBUTES if a.startswith("media_"))

#: Values of ``--min_label``: "none" (no label filter), "unsure" (positive or
#: unsure), "positive" (positive only).
MIN_LABEL_CHOICES: tuple[str, ...] = ("none", "unsure", "positive")
_ACCEPTED_LABELS = {
    "unsure": ("positive", "unsure"),
    "positive": ("positive",),
}
#: Where the label of an image for an attribute comes from: the crowd label
#: when there is one and the automatic label otherwise, only the automatic
#: label, or only the crowd label.
LABEL_SOURCES: tuple[str, ...] = ("crowd_or_automatic", "automatic", "crowd")

DOMAINS: tuple[str, ...] = ("A", "B")
SPLITS: tuple[str, ...] = ("train", "test")
SPLIT_DIRS: tuple[str, ...] = ("trainA", "trainB", "testA", "testB")
UNUSED_DIR = "unused"
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
    "no_url", "bad_url",
})

DEFAULT_USER_AGENT = (
    "tfstyle-bam-domains/0.1 (research dataset builder; Python-urllib)")
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: A download is abandoned when it takes longer than this many timeouts in
#: total, even when every single read came in time (a trickling server).
TOTAL_TIMEOUT_FACTOR = 5.0
#: Largest Retry-After (seconds) honoured before a retry.
MAX_RETRY_AFTER = 60.0

_STORED_NAME = re.compile(r"^(\d+)\.(jpg|png)$")
# Stored byte for byte: format -> (extension, stored format).  MPO is the
# multi-picture JPEG of some cameras; its first picture is a plain JPEG.
_KEEP_FORMATS = {"JPEG": (".jpg", "JPEG"), "MPO": (".jpg", "JPEG"),
                 "PNG": (".png", "PNG")}
_MIRROR_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp",
                      ".JPG", ".JPEG", ".PNG", "")
_MATURE_TRUE = ("1", "true", "t", "yes", "y")


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

class BamError(Exception):
    """Base class of the errors this module raises on purpose."""


class BamSchemaError(BamError):
    """The file is not a (usable) BAM database; the message names the file
    and every missing table or column."""


class FetchError(BamError):
    """An image could not be fetched.

    Attributes:
      reason: short machine-readable reason (``http_404``, ``timeout``, ...).
      detail: human-readable detail.
      transient: whether asking again later may succeed.
      retry_after: seconds the server asked us to wait, if it said so.
      attempts: how many requests were made.
    """

    def __init__(self, reason: str, detail: str = "", transient: bool = False,
                 retry_after: float | None = None, attempts: int = 1):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.transient = transient
        self.retry_after = retry_after
        self.attempts = attempts


class ImageRejected(BamError):
    """A body is not an image we keep (``not_image``, ``corrupt_image``,
    ``too_large``)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# --------------------------------------------------------------------------
# Small parsers
# --------------------------------------------------------------------------

def normalize_media(name: str) -> str:
    """Returns the ``media_*`` attribute for ``watercolor`` or
    ``media_watercolor``; raises ValueError naming the valid values."""
    key = name.strip().lower()
    if not key.startswith("media_"):
        key = "media_" + key
    if key not in MEDIA_ATTRIBUTES:
        valid = ", ".join(a[len("media_"):] for a in MEDIA_ATTRIBUTES)
        raise ValueError(f"unknown medium {name!r}; expected one of: {valid}")
    return key


def parse_test_slice(text: str | None) -> tuple[int, int] | None:
    """Parses ``"1001:1200"`` into ``(1001, 1200)`` (1-based, inclusive).

    An empty string, ``"none"`` or None means "no test images" and returns
    None.  Raises ValueError for anything else that is not ``START:END`` with
    ``1 <= START <= END``.
    """
    if text is None:
        return None
    text = text.strip()
    if text == "" or text.lower() == "none":
        return None
    match = re.fullmatch(r"(\d+)\s*:\s*(\d+)", text)
    if not match:
        raise ValueError(
            f"expected START:END (1-based, inclusive, e.g. 1001:1200), "
            f"got {text!r}")
    start, end = int(match.group(1)), int(match.group(2))
    if start < 1 or end < start:
        raise ValueError(
            f"expected 1 <= START <= END in START:END, got {text!r}")
    return start, end


# --------------------------------------------------------------------------
# Database
# --------------------------------------------------------------------------

def open_bam_db(path: str | os.PathLike) -> sqlite3.Connection:
    """Opens a SQLite file read-only (``mode=ro`` URI); never creates or
    changes it.

    Raises FileNotFoundError when the path is not a file and BamSchemaError
    when it is not a SQLite database.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"BAM database not found: {path}")
    uri = path.resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as e:
        raise BamError(f"cannot open {path} read-only: {e}") from e
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as e:
        conn.close()
        raise BamSchemaError(
            f"{path} is not a SQLite database (and so not a BAM database): "
            f"{e}") from e
    return conn


def required_schema(attributes: Iterable[str],
                    media: Iterable[str] = ()) -> dict[str, tuple[str, ...]]:
    """The tables and columns a selection over ``attributes`` (plus the
    ``media`` filter columns) reads."""
    attrs = tuple(dict.fromkeys(attributes))
    label_cols = tuple(dict.fromkeys(attrs + tuple(media)))
    return {
        "modules": ("mid", "src", "mature_content", "license"),
        "scores": ("mid",) + attrs,
        "automatic_labels": ("mid",) + label_cols,
        "crowd_labels": ("mid", "attribute", "label"),
    }


def check_schema(conn: sqlite3.Connection,
                 required: Mapping[str, Sequence[str]],
                 path: str | os.PathLike = "the database") -> None:
    """Raises BamSchemaError naming every missing table and column."""
    tables = {row[0].lower() for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    missing_tables, missing_columns = [], []
    for table, columns in required.items():
        if table.lower() not in tables:
            missing_tables.append(table)
            continue
        have = {row[1].lower() for row in conn.execute(
            f'PRAGMA table_info("{table}")')}
        missing_columns += [f"{table}.{c}" for c in columns
                            if c.lower() not in have]
    if missing_tables or missing_columns:
        parts = []
        if missing_tables:
            parts.append("missing table(s): " + ", ".join(missing_tables))
        if missing_columns:
            parts.append("missing column(s): " + ", ".join(missing_columns))
        raise BamSchemaError(
            f"{path} is not a BAM database (expected the tables modules, "
            f"scores, automatic_labels and crowd_labels of the BAM SQLite "
            f"release): " + "; ".join(parts))


@dataclasses.dataclass(frozen=True)
class SelectionFilters:
    """Which images are candidates at all.

    Attributes:
      min_label: "none", "unsure" (label positive or unsure) or "positive":
        the image's label for the domain's own attribute must reach this.
      label_source: where that label comes from, see LABEL_SOURCES.
      exclude_mature: drop images with ``modules.mature_content`` set.
      media: keep only images whose automatic label is positive for at least
        one of these ``media_*`` attributes (empty: no media filter).
    """
    min_label: str = "none"
    label_source: str = "crowd_or_automatic"
    exclude_mature: bool = False
    media: tuple[str, ...] = ()

    def __post_init__(self):
        if self.min_label not in MIN_LABEL_CHOICES:
            raise ValueError(f"min_label must be one of {MIN_LABEL_CHOICES}, "
                             f"got {self.min_label!r}")
        if self.label_source not in LABEL_SOURCES:
            raise ValueError(f"label_source must be one of {LABEL_SOURCES}, "
                             f"got {self.label_source!r}")
        object.__setattr__(self, "media",
                           tuple(normalize_media(m) for m in self.media))


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One image of one attribute's ranked list.

    ``rank`` is 0 until :class:`DomainSplitter` gives the image to a domain;
    then it is the 1-based position in that domain's de-duplicated list.
    """
    mid: int
    score: float
    src: str | None
    license: str | None
    mature: bool
    label: str | None
    label_source: str | None
    domain: int = -1
    rank: int = 0


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def candidate_query(attribute: str,
                    filters: SelectionFilters) -> tuple[str, tuple]:
    """SQL (and parameters) listing the candidates of ``attribute``, best
    score first; ties are broken by the smaller ``mid``."""
    if attribute not in ATTRIBUTES:
        raise ValueError(f"unknown BAM attribute {attribute!r}")
    col = _quote(attribute)
    where = [f"s.{col} IS NOT NULL"]
    if filters.exclude_mature:
        where.append("lower(CAST(COALESCE(m.mature_content, 0) AS TEXT)) "
                     f"NOT IN ({', '.join('?' * len(_MATURE_TRUE))})")
    if filters.media:
        where.append("(" + " OR ".join(
            f"lower(a.{_quote(m)}) = 'positive'" for m in filters.media) + ")")
    if filters.min_label != "none":
        label_expr = {
            "crowd_or_automatic": f"COALESCE(c.label, a.{col})",
            "automatic": f"a.{col}",
            "crowd": "c.label",
        }[filters.label_source]
        accepted = _ACCEPTED_LABELS[filters.min_label]
        where.append(f"lower({label_expr}) IN "
                     f"({', '.join(repr(v) for v in accepted)})")
    sql = (
        f"SELECT m.mid, s.{col}, m.src, m.license, m.mature_content, "
        f"c.label, a.{col} "
        f"FROM scores AS s "
        f"JOIN modules AS m ON m.mid = s.mid "
        f"LEFT JOIN automatic_labels AS a ON a.mid = s.mid "
        f"LEFT JOIN crowd_labels AS c ON c.mid = s.mid AND c.attribute = ? "
        f"WHERE {' AND '.join(where)} "
        f"ORDER BY s.{col} DESC, m.mid ASC")
    params: tuple = (attribute,)
    if filters.exclude_mature:
        params += _MATURE_TRUE
    return sql, params


def _is_mature(value) -> bool:
    return value is not None and str(value).strip().lower() in _MATURE_TRUE


def iter_candidates(conn: sqlite3.Connection, attribute: str,
                    filters: SelectionFilters) -> Iterator[Candidate]:
    """Yields the candidates of ``attribute`` lazily, best score first."""
    sql, params = candidate_query(attribute, filters)
    for mid, score, src, lic, mature, crowd, auto in conn.execute(sql, params):
        if filters.label_source == "automatic":
            label, source = auto, "automatic" if auto is not None else None
        elif filters.label_source == "crowd":
            label, source = crowd, "crowd" if crowd is not None else None
        elif crowd is not None:
            label, source = crowd, "crowd"
        else:
            label, source = auto, "automatic" if auto is not None else None
        yield Candidate(mid=int(mid), score=float(score),
                        src=src if src else None, license=lic,
                        mature=_is_mature(mature),
                        label=(label.lower() if isinstance(label, str)
                               else label),
                        label_source=source)


class DomainSplitter:
    """Turns two ranked candidate lists into two disjoint ranked lists.

    Rule: an image in both lists goes to the list where its position is
    better (smaller); at equal positions, to the one where its score is
    higher, and at equal scores to domain A.  Positions are counted in the
    filtered lists, before de-duplication.  The lists are walked in lockstep
    and only as far as needed, so a 2.2M-row database is never loaded whole.

    ``next(d)`` returns the next candidate of domain ``d`` (0 = A, 1 = B) with
    its de-duplicated 1-based ``rank`` set, or None when the list has no more.
    """

    def __init__(self, list_a: Iterable[Candidate],
                 list_b: Iterable[Candidate]):
        self._iters = [iter(list_a), iter(list_b)]
        self._done = [False, False]
        self._seen: list[set[int]] = [set(), set()]
        self._queues: list[collections.deque] = [collections.deque(),
                                                 collections.deque()]
        self._ranks = [0, 0]

    def _pull(self, d: int) -> Candidate | None:
        """Next row of list ``d`` that was not already seen in that list."""
        while not self._done[d]:
            row = next(self._iters[d], None)
            if row is None:
                self._done[d] = True
            elif row.mid not in self._seen[d]:
                self._seen[d].add(row.mid)
                return row
        return None

    def _emit(self, d: int, cand: Candidate) -> None:
        self._ranks[d] += 1
        self._queues[d].append(
            dataclasses.replace(cand, domain=d, rank=self._ranks[d]))

    def _step(self) -> None:
        a, b = self._pull(0), self._pull(1)
        if a is not None and b is not None and a.mid == b.mid:
            # Same image at the same position in both lists.
            if a.score >= b.score:
                self._emit(0, a)
            else:
                self._emit(1, b)
            return
        # A mid already seen in the other list sat at a better position there
        # and was given to that domain when it was seen.
        if a is not None and a.mid not in self._seen[1]:
            self._emit(0, a)
        if b is not None and b.mid not in self._seen[0]:
            self._emit(1, b)

    def next(self, d: int) -> Candidate | None:
        """Next candidate of domain ``d`` in rank order, or None."""
        while not self._queues[d]:
            # Domain d only gains images from its own list.
            if self._done[d]:
                return None
            self._step()
        return self._queues[d].popleft()


# --------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------

class RateLimiter:
    """At most ``rate`` acquisitions per second, shared by all threads.

    Each caller reserves the next free time slot (slots are ``1/rate`` seconds
    apart) and sleeps until it.  ``rate <= 0`` means no limit.
    """

    def __init__(self, rate: float,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = float("-inf")

    def acquire(self) -> None:
        """Blocks until the caller may make its request."""
        if not self._interval:
            return
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self._interval
        if slot > now:
            self._sleep(slot - now)


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None  # an HTTP date; the normal backoff is used instead


@dataclasses.dataclass(frozen=True)
class FetchResult:
    """A fetched body and what the server said about it."""
    body: bytes
    content_type: str
    attempts: int


def _requote(url: str) -> str:
    """Percent-encodes characters a URL may not contain (spaces, non-ASCII)
    in its path and query, keeping existing %XX escapes."""
    parts = urllib.parse.urlsplit(url)
    safe = "/%:@!$&'()*+,;=-._~"
    return urllib.parse.urlunsplit((
        parts.scheme, parts.netloc, urllib.parse.quote(parts.path, safe=safe),
        urllib.parse.quote(parts.query, safe=safe + "?"), ""))


def _fetch_once(url: str, opener: urllib.request.OpenerDirector,
                timeout: float, user_agent: str, max_bytes: int
                ) -> tuple[bytes, str]:
    request = urllib.request.Request(_requote(url), headers={
        "User-Agent": user_agent, "Accept": "image/*, */*;q=0.1"})
    deadline = time.monotonic() + timeout * TOTAL_TIMEOUT_FACTOR
    try:
        with opener.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length", "").strip()
            expected = int(length) if length.isdigit() else None
            if expected is not None and expected > max_bytes:
                raise FetchError("too_large", f"{expected} bytes")
            chunks, total = [], 0
            while True:
                chunk = response.read(64 * 1024)
                if not chunk:
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise FetchError("too_large", f"over {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise FetchError(
                        "timeout", f"download not done after "
                        f"{timeout * TOTAL_TIMEOUT_FACTOR:g}s", transient=True)
                chunks.append(chunk)
            if expected is not None and total < expected:
                raise FetchError("incomplete",
                                 f"got {total} of {expected} bytes",
                                 transient=True)
            return b"".join(chunks), response.headers.get_content_type()
    except FetchError:
        raise
    except urllib.error.HTTPError as e:
        retry_after = _parse_retry_after(
            e.headers.get("Retry-After") if e.headers else None)
        e.close()
        transient = e.code in (408, 425, 429) or e.code >= 500
        raise FetchError(f"http_{e.code}", str(e.reason), transient,
                         retry_after) from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, TimeoutError):
            raise FetchError("timeout", f"no answer within {timeout:g}s",
                             transient=True) from None
        raise FetchError("network_error", str(e.reason),
                         transient=True) from None
    except TimeoutError:
        raise FetchError("timeout", f"no answer within {timeout:g}s",
                         transient=True) from None
    except http.client.InvalidURL as e:
        raise FetchError("bad_url", str(e)) from None
    except (http.client.HTTPException, OSError) as e:
        raise FetchError("network_error", f"{type(e).__name__}: {e}",
                         transient=True) from None
    except ValueError as e:
        raise FetchError("bad_url", str(e)) from None


def fetch_url(url: str | None, *,
              opener: urllib.request.OpenerDirector | None = None,
              timeout: float = 20.0, retries: int = 3, backoff: float = 1.0,
              rate_limiter: RateLimiter | None = None,
              user_agent: str = DEFAULT_USER_AGENT,
              max_bytes: int = DEFAULT_MAX_BYTES,
              sleep: Callable[[float], None] = time.sleep) -> FetchResult:
    """GETs an http(s) URL and returns the whole body.

    ``timeout`` bounds connecting and each read; a whole download is also
    abandoned after ``TOTAL_TIMEOUT_FACTOR * timeout`` seconds.  Transient
    failures (timeouts, network errors, HTTP 408/425/429/5xx, a body shorter
    than its Content-Length) are retried up to ``retries`` times, waiting
    ``backoff * 2**n`` seconds (plus up to 25% jitter, or the server's
    Retry-After up to MAX_RETRY_AFTER) before retry n+1.  Every request goes
    through ``rate_limiter``.  Raises FetchError.
    """
    if not url:
        raise FetchError("no_url", "modules.src is empty")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise FetchError("bad_url", f"not an http(s) URL: {url}")
    opener = opener or urllib.request.build_opener()
    attempt = 0
    while True:
        attempt += 1
        if rate_limiter is not None:
            rate_limiter.acquire()
        try:
            body, ctype = _fetch_once(url, opener, timeout, user_agent,
                                      max_bytes)
            return FetchResult(body, ctype, attempt)
        except FetchError as e:
            e.attempts = attempt
            if not e.transient or attempt > retries:
                raise
            delay = backoff * 2 ** (attempt - 1) * (1 + 0.25 * random.random())
            if e.retry_after is not None:
                delay = max(delay, min(e.retry_after, MAX_RETRY_AFTER))
            sleep(delay)


# --------------------------------------------------------------------------
# Images and files
# --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PreparedImage:
    """What will be written for one image."""
    data: bytes
    extension: str       # ".jpg" or ".png"
    format: str          # "JPEG" or "PNG" (stored)
    source_format: str   # what the body was (e.g. "GIF")
    width: int
    height: int


def prepare_image(body: bytes) -> PreparedImage:
    """Decodes ``body`` completely with Pillow and returns what to store.

    JPEG and PNG bodies are kept byte for byte.  Any other format Pillow
    decodes (GIF, BMP, WebP, TIFF, ...) is re-encoded as PNG (first frame), so
    every stored file is a single-frame JPEG or PNG that ``tf.io.decode_image``
    reads.  Sets ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES = False`` (Pillow's
    default) so that a truncated file is an error, not a grey bottom.

    Raises ImageRejected with reason ``not_image`` (Pillow does not recognise
    it), ``corrupt_image`` (recognised but does not decode, e.g. truncated) or
    ``too_large`` (Pillow's decompression-bomb limit).
    """
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(io.BytesIO(body)) as img:
            fmt = img.format or "unknown"
            try:
                img.load()
            except Image.DecompressionBombError as e:
                raise ImageRejected("too_large", str(e)) from None
            except (OSError, SyntaxError, ValueError, EOFError,
                    struct.error, IndexError) as e:
                raise ImageRejected("corrupt_image", f"{fmt}: {e}") from None
            width, height = img.size
            if fmt in _KEEP_FORMATS:
                extension, stored = _KEEP_FORMATS[fmt]
                return PreparedImage(body, extension, stored, fmt,
                                     width, height)
            frame = img
            if frame.mode not in ("RGB", "RGBA", "L", "LA"):
                has_alpha = ("A" in frame.getbands()
                             or "transparency" in frame.info)
                frame = frame.convert("RGBA" if has_alpha else "RGB")
            out = io.BytesIO()
            frame.save(out, format="PNG")
            return PreparedImage(out.getvalue(), ".png", "PNG", fmt,
                                 width, height)
    except ImageRejected:
        raise
    except Image.DecompressionBombError as e:
        raise ImageRejected("too_large", str(e)) from None
    except Image.UnidentifiedImageError:
        raise ImageRejected("not_image",
                            "Pillow does not recognise the body") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error,
            IndexError) as e:
        raise ImageRejected("corrupt_image", str(e)) from None


def write_atomic(path: pathlib.Path, data: bytes) -> None:
    """Writes ``data`` to a temporary file next to ``path``, flushes it to
    disk and renames it over ``path``: readers see the old file or the whole
    new one, never a part."""
    tmp = path.with_name(
        f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sha256_file(path: pathlib.Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_in_mirror(root: pathlib.Path, mid: int,
                   src: str | None) -> pathlib.Path | None:
    """Looks an image up in a local mirror of the BAM images.

    Tried in order: ``ROOT/<mid>`` with the extensions .jpg .jpeg .png .gif
    .webp .bmp (also upper-case) or none; then the URL's path under
    ``ROOT/<host>/`` (the layout of ``wget -x``), under ``ROOT/``, and its
    file name alone.  Paths from the URL never leave ROOT.
    """
    for ext in _MIRROR_EXTENSIONS:
        path = root / f"{mid}{ext}"
        if path.is_file():
            return path
    if not src:
        return None
    parts = urllib.parse.urlsplit(src)
    segments = [s for s in urllib.parse.unquote(parts.path).split("/") if s]
    if not segments or any(s in (".", "..") or "\\" in s for s in segments):
        return None
    host = parts.hostname or ""
    options = []
    if host and host not in (".", ".."):
        options.append(root.joinpath(host, *segments))
    options += [root.joinpath(*segments), root / segments[-1]]
    for path in options:
        if path.is_file():
            return path
    return None


# --------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------

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
    write_atomic(path, out.getvalue().encode("utf-8"))


# --------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class DownloadOptions:
    """How images are obtained.

    Attributes:
      workers: threads fetching/copying/verifying at once.
      rate: most HTTP requests per second over all threads (0: no limit).
      timeout: seconds for connecting and for each read.
      retries: extra attempts after a transient failure.
      backoff: seconds before the first retry; doubles for each further one.
      user_agent: User-Agent header of every request.
      max_bytes: largest body accepted.
      max_downloads: stop after this many HTTP downloads were started (None:
        no limit); a later run continues where this one stopped.
      retry_skipped: ask again for links that failed for good in an earlier
        run (by default only transient failures are tried again).
      progress_every: log a progress line after this many images.
      checkpoint_every: rewrite manifest.csv after this many images.
    """
    workers: int = 4
    rate: float = 5.0
    timeout: float = 20.0
    retries: int = 3
    backoff: float = 1.0
    user_agent: str = DEFAULT_USER_AGENT
    max_bytes: int = DEFAULT_MAX_BYTES
    max_downloads: int | None = None
    retry_skipped: bool = False
    progress_every: int = 50
    checkpoint_every: int = 100

    def __post_init__(self):
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.rate < 0:
            raise ValueError(f"rate must be >= 0, got {self.rate}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {self.timeout}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.backoff < 0:
            raise ValueError(f"backoff must be >= 0, got {self.backoff}")
        if self.max_downloads is not None and self.max_downloads < 0:
            raise ValueError(
                f"max_downloads must be >= 0, got {self.max_downloads}")
        for name in ("max_bytes", "progress_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"{name} must be >= 1, got {getattr(self, name)}")


@dataclasses.dataclass
class Outcome:
    """What happened to one candidate."""
    candidate: Candidate
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


class _Budget:
    """Thread-safe count of HTTP downloads still allowed (None: unlimited)."""

    def __init__(self, limit: int | None):
        self._left = limit
        self._lock = threading.Lock()

    def take(self) -> bool:
        if self._left is None:
            return True
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            return True


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


def _rank_key(row: Mapping[str, object]) -> tuple[str, int, int]:
    """Sort key of a manifest row: domain, split (train first), rank."""
    split = row.get("split")
    try:
        rank = int(row.get("rank") or 0)
    except (TypeError, ValueError):
        rank = 0
    return (str(row.get("domain")),
            SPLITS.index(split) if split in SPLITS else len(SPLITS), rank)


class _Builder:
    """State of one :func:`build_domains` run (see there)."""

    def __init__(self, out_dir, attributes, train, test, options, image_root):
        self.out = out_dir
        self.attributes = attributes
        self.train = train
        self.test = test
        self.options = options
        self.image_root = image_root
        self.limiter = RateLimiter(options.rate)
        self.budget = _Budget(options.max_downloads)
        self.opener = urllib.request.build_opener()
        self.request_lock = threading.Lock()
        self.requests = 0
        self.old_rows: dict[int, dict[str, str]] = {}
        self.existing: dict[int, pathlib.Path] = {}
        self.outcomes: list[Outcome] = []
        self.completed = 0
        # Per domain: its train phase, then its test phase (if any).
        self.pipelines: list[list[_Phase]] = []
        for d in (0, 1):
            phases = [_Phase(d, "train", train, 1)]
            if test is not None:
                phases.append(_Phase(d, "test", test[1] - test[0] + 1,
                                     test[0]))
            self.pipelines.append(phases)

    # -- preparation ------------------------------------------------------

    def prepare_folders(self) -> None:
        """Creates the folders, removes temporary files left by a killed run,
        and indexes the images already there and the old manifest."""
        for name in SPLIT_DIRS + (UNUSED_DIR,):
            (self.out / name).mkdir(parents=True, exist_ok=True)
        for folder in (self.out,) + tuple(self.out / n for n in
                                          SPLIT_DIRS + (UNUSED_DIR,)):
            for entry in folder.iterdir():
                if entry.name.startswith(".") and entry.name.endswith(".part"):
                    entry.unlink(missing_ok=True)  # from write_atomic
                    continue
                if folder == self.out:
                    continue
                match = _STORED_NAME.match(entry.name)
                if match and entry.is_file():
                    self.existing.setdefault(int(match.group(1)), entry)
        for row in read_manifest(self.out / MANIFEST_NAME):
            try:
                mid = int(row["mid"])
            except (TypeError, ValueError):
                continue
            previous = self.old_rows.get(mid)
            # A good row wins over a skipped one for the same image.
            if previous is None or row.get("status") in GOOD_STATUSES:
                self.old_rows[mid] = row

    # -- per-candidate work -----------------------------------------------

    def remembered_skip(self, cand: Candidate) -> Outcome | None:
        """A permanent failure of the same URL recorded by an earlier run."""
        if self.image_root is not None or self.options.retry_skipped:
            return None
        if cand.mid in self.existing:
            return None
        row = self.old_rows.get(cand.mid)
        if (row is None or row.get("status") != "skipped"
                or row.get("origin") != "url"
                or row.get("reason") not in PERMANENT_REASONS
                or (row.get("src") or None) != cand.src):
            return None
        return Outcome(cand, "", "skipped", origin="url", reason=row["reason"],
                       detail="as in the previous run (retry_skipped to ask "
                       "again)")

    def _reuse(self, cand: Candidate, target: pathlib.Path) -> Outcome | None:
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

    def _store(self, cand: Candidate, body: bytes, target: pathlib.Path,
               status: str, origin: str) -> Outcome:
        try:
            info = prepare_image(body)
        except ImageRejected as e:
            return Outcome(cand, "", "skipped", origin=origin, reason=e.reason,
                           detail=e.detail)
        path = target / f"{cand.mid}{info.extension}"
        write_atomic(path, info.data)
        return Outcome(cand, "", status, origin=origin, file=path,
                       sha256=hashlib.sha256(info.data).hexdigest(),
                       nbytes=len(info.data), width=info.width,
                       height=info.height, format=info.format)

    def _count_request(self) -> None:
        with self.request_lock:
            self.requests += 1

    def process(self, cand: Candidate, split: str) -> Outcome:
        """Reuses, copies or downloads one candidate (runs in a worker)."""
        target = self.out / f"{split}{DOMAINS[cand.domain]}"
        outcome = self._reuse(cand, target)
        if outcome is None and self.image_root is not None:
            path = find_in_mirror(self.image_root, cand.mid, cand.src)
            try:
                body = path.read_bytes() if path is not None else None
                detail = f"not in {self.image_root}"
            except OSError as e:
                body, detail = None, f"cannot read {path}: {e}"
            if body is None:
                outcome = Outcome(cand, "", "skipped", origin="mirror",
                                  reason="missing_local", detail=detail)
            else:
                outcome = self._store(cand, body, target, "copied", "mirror")
        elif outcome is None:
            if not self.budget.take():
                return Outcome(cand, split, "pending")
            try:
                result = fetch_url(
                    cand.src, opener=self.opener,
                    timeout=self.options.timeout,
                    retries=self.options.retries,
                    backoff=self.options.backoff,
                    rate_limiter=_CountingLimiter(self.limiter,
                                                  self._count_request),
                    user_agent=self.options.user_agent,
                    max_bytes=self.options.max_bytes)
            except FetchError as e:
                outcome = Outcome(cand, "", "skipped", origin="url",
                                  reason=e.reason,
                                  detail=f"{e.detail} ({e.attempts} attempt"
                                  f"{'s' if e.attempts != 1 else ''})")
            else:
                outcome = self._store(cand, result.body, target,
                                      "downloaded", "url")
                if outcome.reason == "not_image":
                    outcome.detail = f"Content-Type {result.content_type}"
        outcome.split = split
        return outcome

    # -- the fill loop ----------------------------------------------------

    def _next_candidate(self, splitter: DomainSplitter,
                        phase: _Phase) -> Candidate | None:
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

    def rows(self) -> list[dict[str, object]]:
        """Manifest rows of this run's outcomes, in domain/split/rank order."""
        rows = []
        for o in self.outcomes:
            c = o.candidate
            rows.append({
                "domain": DOMAINS[c.domain],
                "attribute": self.attributes[c.domain],
                "split": o.split, "rank": c.rank, "mid": c.mid,
                "score": repr(c.score), "label": c.label,
                "label_source": c.label_source, "src": c.src,
                "license": c.license, "mature_content": int(c.mature),
                "status": o.status, "reason": o.reason, "origin": o.origin,
                "file": (o.file.relative_to(self.out).as_posix()
                         if o.file is not None else ""),
                "sha256": o.sha256, "bytes": o.nbytes, "width": o.width,
                "height": o.height, "format": o.format,
            })
        rows.sort(key=_rank_key)
        return rows

    def write_manifest(self, final: bool) -> None:
        """Writes manifest.csv.  Unless ``final``, rows of the previous
        manifest for images this run has not reached yet are kept, so that an
        interrupted run loses nothing a later run could reuse."""
        rows = self.rows()
        if not final:
            done = {o.candidate.mid for o in self.outcomes}
            rows += [r for mid, r in self.old_rows.items() if mid not in done]
        write_manifest(self.out / MANIFEST_NAME, rows)

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


class _CountingLimiter:
    """Wraps a RateLimiter and counts every request it lets through."""

    def __init__(self, limiter: RateLimiter, count: Callable[[], None]):
        self._limiter = limiter
        self._count = count

    def acquire(self) -> None:
        self._limiter.acquire()
        self._count()


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
    for bad arguments (naming them).
    """
    started = time.monotonic()
    for name, value in (("domain_a", domain_a), ("domain_b", domain_b)):
        if value not in ATTRIBUTES:
            raise ValueError(f"{name}: unknown BAM attribute {value!r}; "
                             f"expected one of: {', '.join(ATTRIBUTES)}")
    if domain_a == domain_b:
        raise ValueError(f"domain_a and domain_b must differ, both are "
                         f"{domain_a!r}")
    if train < 0:
        raise ValueError(f"train must be >= 0, got {train}")
    if test is not None:
        if len(test) != 2 or not 1 <= test[0] <= test[1]:
            raise ValueError(f"test must be (start, end) with 1 <= start <= "
                             f"end, got {test!r}")
        if test[0] <= train:
            raise ValueError(f"test starts at rank {test[0]}, inside the "
                             f"{train} train ranks; it must start after them")
    if train == 0 and test is None:
        raise ValueError("nothing to do: train is 0 and there is no test "
                         "slice")
    out = pathlib.Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {out} exists and is not a folder")
    root = None
    if image_root is not None:
        root = pathlib.Path(image_root)
        if not root.is_dir():
            raise ValueError(f"image_root {root} is not a folder")

    attributes = (domain_a, domain_b)
    conn = open_bam_db(bam_db)
    try:
        check_schema(conn, required_schema(attributes, filters.media), bam_db)
        logging.info("ranking the images of %s by %s (A) and %s (B); sorting "
                     "the full BAM database takes a while", bam_db, domain_a,
                     domain_b)
        builder = _Builder(out, attributes, train, test, options, root)
        builder.prepare_folders()
        splitter = DomainSplitter(iter_candidates(conn, domain_a, filters),
                                  iter_candidates(conn, domain_b, filters))
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
                         "%s", moved, out / UNUSED_DIR)

    summary = BuildSummary(out_dir=out, slots=[], requests=builder.requests,
                           stopped_early=not finished)
    for phases in builder.pipelines:
        for p in phases:
            tried = sorted(o.candidate.rank for o in p.good + p.skipped)
            summary.slots.append(SlotReport(
                domain=DOMAINS[p.domain], attribute=attributes[p.domain],
                split=p.split, wanted=p.size, filled=len(p.good),
                skipped=len(p.skipped),
                first_rank=tried[0] if tried else None,
                last_rank=tried[-1] if tried else None,
                ran_out=finished and p.exhausted and len(p.good) < p.size))
    for o in builder.outcomes:
        if o.status == "downloaded":
            summary.downloaded += 1
        elif o.status == "copied":
            summary.copied += 1
        elif o.status == "reused":
            summary.reused += 1
        else:
            summary.skipped[o.reason] += 1
    summary.seconds = time.monotonic() - started
    _write_run_info(out, bam_db, attributes, train, test, filters, options,
                    root, summary)
    for message in summary.ran_out:
        logging.warning("%s", message)
    return summary


def _write_run_info(out, bam_db, attributes, train, test, filters, options,
                    image_root, summary: BuildSummary) -> None:
    """Writes bam_domains.json: the run's parameters and counts."""
    info = {
        "bam_db": str(pathlib.Path(bam_db).resolve()),
        "domain_a": attributes[0], "domain_b": attributes[1],
        "train": train, "test": list(test) if test else None,
        "filters": dataclasses.asdict(filters),
        "image_root": str(image_root) if image_root else None,
        "rate": options.rate, "workers": options.workers,
        "finished_at": datetime.datetime.now(datetime.timezone.utc)
        .isoformat(timespec="seconds"),
        "complete": summary.complete,
        "stopped_early": summary.stopped_early,
        "slots": [dataclasses.asdict(s) for s in summary.slots],
        "downloaded": summary.downloaded, "copied": summary.copied,
        "reused": summary.reused, "skipped": dict(summary.skipped),
        "ran_out": summary.ran_out,
    }
    write_atomic(out / RUN_INFO_NAME,
                 (json.dumps(info, indent=2) + "\n").encode("utf-8"))


# --------------------------------------------------------------------------
# Demo database
# --------------------------------------------------------------------------

def create_demo_database(path: str | os.PathLike, *, n_images: int = 60,
                         image_root: str | os.PathLike | None = None,
                         seed: int = 0) -> pathlib.Path:
    """Writes a tiny database with the BAM schema and random scores, for
    trying the tool offline; with ``image_root`` also writes one small PNG per
    image there, named ``<mid>.png`` (a mirror for ``image_root=``).  The
    ``src`` URLs point at example.invalid and cannot be downloaded."""
    path = pathlib.Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; not overwriting it")
    rng = random.Random(seed)
    conn = sqlite3.connect(path)
    try:
        cols_real = ", ".join(f"{a} REAL" for a in ATTRIBUTES)
        cols_text = ", ".join(f"{a} TEXT" for a in ATTRIBUTES)
        conn.executescript(
            "CREATE TABLE modules (mid INTEGER PRIMARY KEY, project_id "
            "INTEGER, src TEXT, mature_content BOOLEAN, license TEXT);"
            f"CREATE TABLE scores (mid INTEGER PRIMARY KEY, {cols_real});"
            f"CREATE TABLE automatic_labels (mid INTEGER PRIMARY KEY, "
            f"{cols_text});"
            "CREATE TABLE crowd_labels (mid INTEGER, attribute TEXT, label "
            "TEXT, PRIMARY KEY (mid, attribute));")
        marks = ", ".join("?" * len(ATTRIBUTES))
        for i in range(n_images):
            mid = 1000 + i
            scores = [round(rng.random(), 6) for _ in ATTRIBUTES]
            labels = ["positive" if s > 0.7 else "unsure" if s > 0.4
                      else "negative" for s in scores]
            conn.execute("INSERT INTO modules VALUES (?, ?, ?, ?, ?)",
                         (mid, 1 + i // 3,
                          f"https://example.invalid/bam-demo/{mid}.png",
                          int(rng.random() < 0.05), "CC BY-NC 4.0"))
            conn.execute(f"INSERT INTO scores VALUES (?, {marks})",
                         (mid, *scores))
            conn.execute(f"INSERT INTO automatic_labels VALUES (?, {marks})",
                         (mid, *labels))
            if image_root is not None:
                root = pathlib.Path(image_root)
                root.mkdir(parents=True, exist_ok=True)
                color = tuple(int(255 * s) for s in scores[10:13])
                Image.new("RGB", (32, 32), color).save(root / f"{mid}.png")
        conn.commit()
    finally:
        conn.close()
    return path
