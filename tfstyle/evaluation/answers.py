"""The answers of a rating study, and its raters' sessions, in one SQLite file.

Each answer is one transaction (WAL journal, synchronous=FULL), committed before the app
replies, so a stopped or killed server loses nothing. Answers are never overwritten: a changed
answer is a new row, and the summaries use each rater's latest answer per item.

A rater is a session: `start_session(rater)` claims a rater id for a new random session token
(only its SHA-256 is stored) and fails when another session holds the id, so nobody can answer
under someone else's id. One file holds one kind of study (translation scores or word
choices); the kind is recorded when the file is made and checked when it is opened again.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import secrets
import sqlite3
from pathlib import Path

from tfstyle.evaluation.studies import SCORES, Item, RatingError, WordItem

RATER_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
#: A session token as `start_session` makes them (secrets.token_urlsafe(32)).
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rater TEXT NOT NULL,
    item TEXT NOT NULL,
    model TEXT NOT NULL,
    split TEXT NOT NULL CHECK (split IN ('train', 'test')),
    direction TEXT NOT NULL,
    image TEXT NOT NULL,
    score INTEGER NOT NULL CHECK (score BETWEEN -2 AND 2),
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_by_rater ON answers (rater, item);
CREATE TABLE IF NOT EXISTS word_answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rater TEXT NOT NULL,
    item TEXT NOT NULL,
    word TEXT NOT NULL,
    content TEXT NOT NULL,
    chosen TEXT NOT NULL,
    candidates TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS word_answers_by_rater ON word_answers (rater, item);
CREATE TABLE IF NOT EXISTS raters (
    rater TEXT PRIMARY KEY,
    session TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class RaterTakenError(RatingError):
    """The rater id belongs to another session."""


def check_rater(rater) -> str:
    if not isinstance(rater, str) or not RATER_PATTERN.match(rater):
        raise RatingError("rater id must be 1-64 letters, digits or . _ @ -")
    return rater


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


class RatingStore:
    """Answers and sessions in an SQLite file; safe from several threads (a connection per
    call). `kind` ("translation" or "words"), when given, must be the file's kind."""

    def __init__(self, path, kind: str | None = None):
        self.path = Path(path)
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            with conn:
                conn.executescript(_SCHEMA)
                if kind is not None:
                    conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('study', ?)",
                                 (kind,))
            stored = conn.execute("SELECT value FROM meta WHERE key = 'study'").fetchone()
        except sqlite3.DatabaseError as err:
            raise RatingError(f"{self.path} is not a database of answers: {err}") from err
        finally:
            conn.close()
        if kind is not None and stored[0] != kind:
            raise RatingError(f"{self.path} holds the answers of a {stored[0]} study, not of a "
                              f"{kind} study: use another file")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _insert(self, sql: str, args) -> int:
        conn = self._connect()
        try:
            with conn:
                return int(conn.execute(sql, args).lastrowid)
        finally:
            conn.close()

    def _query(self, sql: str, args=()) -> list[tuple]:
        conn = self._connect()
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    # ---- sessions

    def start_session(self, rater: str) -> str:
        """A new session token for `rater`; RaterTakenError when another session holds the
        id. Ids that only old answers carry (files of tfstyle 0.1) go to the first claim."""
        check_rater(rater)
        token = secrets.token_urlsafe(32)
        try:
            self._insert("INSERT INTO raters (rater, session, created) VALUES (?, ?, ?)",
                         (rater, _digest(token), _now()))
        except sqlite3.IntegrityError as err:
            raise RaterTakenError(f"the rater id {rater!r} is in use in another browser; "
                                  "continue there, or choose another id") from err
        return token

    def session_rater(self, token: str | None) -> str | None:
        """The rater of session `token`, or None."""
        if not token or not TOKEN_PATTERN.match(token):
            return None
        rows = self._query("SELECT rater FROM raters WHERE session = ?", (_digest(token),))
        return rows[0][0] if rows else None

    def kind(self) -> str | None:
        """The kind of study the file holds answers of (None: not recorded yet)."""
        rows = self._query("SELECT value FROM meta WHERE key = 'study'")
        return rows[0][0] if rows else None

    # ---- translation scores

    def add(self, rater: str, item: Item, score: int) -> int:
        """Store one score in its own transaction; returns its row id."""
        check_rater(rater)
        if isinstance(score, bool) or not isinstance(score, int) or score not in SCORES:
            raise RatingError(f"score must be an integer from -2 to 2, got {score!r}")
        return self._insert(
            "INSERT INTO answers (rater, item, model, split, direction, image, score, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (rater, item.id, item.model, item.split, item.direction, item.output, score,
             _now()))

    def answers(self) -> list[dict]:
        """Every stored score, oldest first."""
        keys = ("id", "rater", "item", "model", "split", "direction", "image", "score",
                "created")
        rows = self._query(f"SELECT {', '.join(keys)} FROM answers ORDER BY id")
        return [dict(zip(keys, r)) for r in rows]

    def latest(self) -> list[dict]:
        """Each rater's latest score per item."""
        keys = ("rater", "item", "model", "split", "score")
        rows = self._query(
            f"SELECT {', '.join(keys)} FROM answers WHERE id IN "
            "(SELECT MAX(id) FROM answers GROUP BY rater, item) ORDER BY id")
        return [dict(zip(keys, r)) for r in rows]

    # ---- word choices

    def add_choice(self, rater: str, item: WordItem, chosen: str, candidates) -> int:
        """Store one word choice (among `candidates`, the words shown) in its own
        transaction; returns its row id."""
        check_rater(rater)
        candidates = list(candidates)
        if chosen not in candidates:
            raise RatingError(f"the choice must be one of the words shown, got {chosen!r}")
        return self._insert(
            "INSERT INTO word_answers (rater, item, word, content, chosen, candidates, "
            "created) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rater, item.id, item.word, item.content, chosen,
             json.dumps(candidates, ensure_ascii=False), _now()))

    def choices(self, latest_only: bool = False) -> list[dict]:
        """Stored word choices, oldest first (`latest_only`: each rater's latest per item)."""
        keys = ("id", "rater", "item", "word", "content", "chosen", "candidates", "created")
        where = (" WHERE id IN (SELECT MAX(id) FROM word_answers GROUP BY rater, item)"
                 if latest_only else "")
        rows = self._query(f"SELECT {', '.join(keys)} FROM word_answers{where} ORDER BY id")
        out = [dict(zip(keys, r)) for r in rows]
        for row in out:
            row["candidates"] = json.loads(row["candidates"])
        return out

    def answered(self, rater: str) -> set[str]:
        """Items `rater` has answered (either kind)."""
        rows = self._query("SELECT item FROM answers WHERE rater = ? UNION "
                           "SELECT item FROM word_answers WHERE rater = ?", (rater, rater))
        return {r[0] for r in rows}

    def count(self) -> int:
        """Stored answers of either kind."""
        return self._query("SELECT (SELECT COUNT(*) FROM answers) + "
                           "(SELECT COUNT(*) FROM word_answers)")[0][0]
