"""Selecting BAM images: what a run asks for (:class:`DomainsSpec`: the database, two
attributes, the train and test ranks), the database and its schema, the ranked candidates of
an attribute after the filters, and the split of two ranked lists into two disjoint domains.

The BAM release is one SQLite file: :func:`open_bam_db` opens it read-only and
:func:`check_schema` names everything a selection needs that the file lacks.
:func:`iter_candidates` lists the images of one attribute, best score first, that pass the
:class:`SelectionFilters`; :class:`DomainSplitter` gives an image that is a candidate of both
attributes to exactly one domain.  Nothing here fetches or writes anything.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
import re
import sqlite3
from typing import Iterable, Iterator, Mapping, Sequence

from tfstyle.core.config import Config, ConfigError, setting

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

#: Domain 0 and 1 of a run, as the folders and the manifest name them.
DOMAINS: tuple[str, ...] = ("A", "B")
_MATURE_TRUE = ("1", "true", "t", "yes", "y")


class BamError(Exception):
    """Base class of the errors the BAM wing raises on purpose."""


class BamSchemaError(BamError):
    """The file is not a (usable) BAM database; the message names the file
    and every missing table or column."""


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


@dataclasses.dataclass(frozen=True)
class DomainsSpec(Config):
    """What to build: the database, the output folder, the two attributes and the ranks."""
    bam_db: str = setting("", "Path of the BAM SQLite file (opened read-only), e.g. "
                          "20170509-bam-2.2m-Nja9G.sqlite.",
                          required="give the BAM SQLite file")
    out: str = setting("", "Output folder (the data root); trainA/ trainB/ testA/ testB/, "
                       "manifest.csv and bam_domains.json go there.",
                       required="give the output folder")
    domain_a: str = setting("emotion_happy", "BAM attribute whose top images are domain A.",
                            choices=ATTRIBUTES)
    domain_b: str = setting("emotion_scary", "BAM attribute whose top images are domain B.",
                            choices=ATTRIBUTES)
    train: int = setting(1000, "Train images per domain (ranks 1.. of the de-duplicated "
                         "list; a skipped image is replaced by the next rank).", min=0)
    test: str = setting("1001:1200", "Test ranks START:END (1-based, inclusive) per domain; "
                        "END-START+1 images starting at rank START, or right after the ranks "
                        "train used if those reach further.  Empty or 'none': no test images.")
    image_root: str = setting("", "Local mirror of the BAM images; when set nothing is "
                              "downloaded (see docs/bam.md for the layouts looked up).")

    def validate(self):
        try:
            test = parse_test_slice(self.test)
        except ValueError as err:
            raise ConfigError(f"--test={self.test!r}: {err}") from None
        self.need(self.domain_a != self.domain_b, "domain_b",
                  f"must differ from --domain_a={self.domain_a}")
        self.need(test is None or test[0] > self.train, "test",
                  f"starts inside the --train={self.train} train ranks; START must be "
                  "greater than --train")
        self.need(test is not None or self.train > 0, "train",
                  "is 0 and there is no --test slice: nothing to do")
        out = pathlib.Path(self.out)
        self.need(not out.exists() or out.is_dir(), "out", "exists and is not a folder")
        self.need(not self.image_root or pathlib.Path(self.image_root).is_dir(),
                  "image_root", "is not a folder")

    @property
    def test_slice(self) -> tuple[int, int] | None:
        return parse_test_slice(self.test)


@dataclasses.dataclass(frozen=True)
class SelectionFilters(Config):
    """Which images are candidates at all (the same for both domains, except that
    ``min_label`` looks at each domain's own attribute)."""
    min_label: str = setting(
        "none", "Keep only images whose label for the domain's own attribute is at least "
        "this: 'positive', 'unsure' (positive or unsure), or 'none' (no label filter).",
        choices=MIN_LABEL_CHOICES)
    label_source: str = setting(
        "crowd_or_automatic", "Label used by --min_label: the crowd label when there is one, "
        "else the automatic one (crowd_or_automatic); only automatic_labels; or only "
        "crowd_labels.", choices=LABEL_SOURCES)
    exclude_mature: bool = setting(False, "Drop images with modules.mature_content set.")
    media: tuple[str, ...] = setting(
        (), "Keep only images whose automatic label is positive for at least one of these "
        "media (comma separated; e.g. watercolor,oilpaint or media_watercolor).")

    def validate(self):
        try:
            media = tuple(normalize_media(m) for m in self.media)
        except ValueError as err:
            raise ConfigError(f"--media={','.join(self.media)}: {err}") from None
        object.__setattr__(self, "media", media)


@dataclasses.dataclass(frozen=True)
class RankedImage:
    """One image of one attribute's ranked list (a row of the database).

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
                    filters: SelectionFilters) -> Iterator[RankedImage]:
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
        yield RankedImage(mid=int(mid), score=float(score),
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

    def __init__(self, list_a: Iterable[RankedImage],
                 list_b: Iterable[RankedImage]):
        self._iters = [iter(list_a), iter(list_b)]
        self._done = [False, False]
        self._seen: list[set[int]] = [set(), set()]
        self._queues: list[collections.deque] = [collections.deque(),
                                                 collections.deque()]
        self._ranks = [0, 0]

    def _pull(self, d: int) -> RankedImage | None:
        """Next row of list ``d`` that was not already seen in that list."""
        while not self._done[d]:
            row = next(self._iters[d], None)
            if row is None:
                self._done[d] = True
            elif row.mid not in self._seen[d]:
                self._seen[d].add(row.mid)
                return row
        return None

    def _emit(self, d: int, cand: RankedImage) -> None:
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

    def next(self, d: int) -> RankedImage | None:
        """Next candidate of domain ``d`` in rank order, or None."""
        while not self._queues[d]:
            # Domain d only gains images from its own list.
            if self._done[d]:
                return None
            self._step()
        return self._queues[d].popleft()

