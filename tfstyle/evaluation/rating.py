"""A local web app for the seeds' rating study, and its summary.

The caricature seed asked about 10 raters to score each model's outputs on a 5-point scale from
-2 to 2 and reported the mean per model for training and test images. This module serves the
outputs of an evaluation report (`tfstyle.report` writes REPORT/rating_manifest.json, one item
per (image, model, split) output) to raters in a browser and stores their answers in SQLite:

* A rater enters an id (kept in a cookie); every rater sees all items in an order shuffled
  with a seed derived from the rater id, and the models under anonymous labels ("System C"),
  also drawn per rater, so the same rater always gets the same order and labels back.
  Images are served by item id, so neither page nor URLs name the model.
* The page is plain server-rendered HTML with a form (no JavaScript). An answer is a POST of
  (rater, item, score); the score must be an integer in -2..2 and the item must be in the
  manifest, otherwise the answer is refused with 400. Each answer is one SQLite transaction
  (WAL journal, synchronous=FULL), committed before the reply, so a restarted or killed server
  loses nothing. Answers are never overwritten: a changed answer is a new row, and the
  summary uses each rater's latest answer per item.
* `summarize` gives, per model and split (train/test), the number of answers and raters, the
  mean score and a 95% confidence interval of the mean (Student t with n - 1 degrees of
  freedom over the answers). Answers of one rater are not independent, so the interval is
  optimistic when few raters give many answers; the rater count is reported beside it.
"""

from __future__ import annotations

import datetime
import hashlib
import html
import json
import math
import random
import re
import sqlite3
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

#: The 5-point scale of the seed's study.
SCALE = ((-2, "very poor"), (-1, "poor"), (0, "neither good nor poor"), (1, "good"),
         (2, "very good"))
SCORES = frozenset(s for s, _ in SCALE)
SPLITS = ("train", "test")
RATER_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
DEFAULT_QUESTIONS = {
    "train": "How well does the output match the target style (for caricatures: how similar "
             "is it to the illustrator's caricature)?",
    "test": "How complete and convincing is the output as an image of the target style, "
            "keeping the input's content?",
}
MAX_BODY = 4096
#: The list of outputs to rate, written into the report folder by tfstyle.report.
MANIFEST = "rating_manifest.json"


class RatingError(ValueError):
    """An answer or a manifest that cannot be used; the message says why."""


# ------------------------------------------------------------------------------------------
# Manifest
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    id: str
    model: str
    split: str
    direction: str
    stem: str
    input: str
    output: str
    target: str | None


@dataclass
class Manifest:
    root: Path
    models: list[str]
    items: dict[str, Item]

    def path(self, relative: str) -> Path:
        """The file `relative` inside the report folder (never outside it)."""
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise RatingError(f"{relative} points outside the report")
        return path


def load_manifest(report_dir, directions=("AtoB", "BtoA")) -> Manifest:
    """REPORT/rating_manifest.json (written by tfstyle.report) as a Manifest, keeping the
    items of `directions` (the caricature seed rated photo -> caricature only: ("AtoB",))."""
    root = Path(report_dir)
    path = root / MANIFEST
    if not path.is_file():
        raise RatingError(f"{path} not found: build the report first "
                          "(python -m tfstyle.evaluate --out=...)")
    data = json.loads(path.read_text(encoding="utf-8"))
    items = {}
    for raw in data.get("items", []):
        item = Item(**{k: raw.get(k) for k in Item.__dataclass_fields__})
        if item.split not in SPLITS or item.model not in data["models"]:
            raise RatingError(f"{path}: item {item.id} has an unknown split or model")
        if item.direction in directions:
            items[item.id] = item
    if not items:
        raise RatingError(f"{path} lists no items for the directions {', '.join(directions)}")
    return Manifest(root, list(data["models"]), items)


def _rng(rater: str, purpose: str) -> random.Random:
    digest = hashlib.sha256(f"{purpose}\0{rater}".encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def rater_order(rater: str, item_ids) -> list[str]:
    """The items in the order `rater` sees them (shuffled, seeded by the rater id)."""
    order = sorted(item_ids)
    _rng(rater, "order").shuffle(order)
    return order


def model_labels(rater: str, models) -> dict[str, str]:
    """Anonymous label per model for `rater`: a random assignment of 'System A', 'B', ..."""
    letters = [chr(ord("A") + i) if i < 26 else f"Z{i}" for i in range(len(models))]
    _rng(rater, "labels").shuffle(letters)
    return {m: f"System {letter}" for m, letter in zip(sorted(models), letters)}


# ------------------------------------------------------------------------------------------
# Storage
# ------------------------------------------------------------------------------------------

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
"""


class RatingStore:
    """Answers in an SQLite file; safe to use from several threads (a connection per call)."""

    def __init__(self, path):
        self.path = Path(path)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
        conn.close()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def add(self, rater: str, item: Item, score: int) -> int:
        """Store one answer in its own transaction; returns its row id."""
        check_rater(rater)
        if isinstance(score, bool) or not isinstance(score, int) or score not in SCORES:
            raise RatingError(f"score must be an integer from -2 to 2, got {score!r}")
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
        conn = self._connect()
        try:
            with conn:
                cursor = conn.execute(
                    "INSERT INTO answers (rater, item, model, split, direction, image, score,"
                    " created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (rater, item.id, item.model, item.split, item.direction, item.output, score,
                     now))
                return int(cursor.lastrowid)
        finally:
            conn.close()

    def _query(self, sql: str, args=()) -> list[tuple]:
        conn = self._connect()
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def answers(self) -> list[dict]:
        """Every stored answer, oldest first."""
        rows = self._query("SELECT id, rater, item, model, split, direction, image, score, "
                           "created FROM answers ORDER BY id")
        keys = ("id", "rater", "item", "model", "split", "direction", "image", "score",
                "created")
        return [dict(zip(keys, r)) for r in rows]

    def latest(self) -> list[dict]:
        """Each rater's latest answer per item."""
        rows = self._query(
            "SELECT rater, item, model, split, score FROM answers WHERE id IN "
            "(SELECT MAX(id) FROM answers GROUP BY rater, item) ORDER BY id")
        return [dict(zip(("rater", "item", "model", "split", "score"), r)) for r in rows]

    def answered(self, rater: str) -> set[str]:
        return {r[0] for r in self._query("SELECT DISTINCT item FROM answers WHERE rater = ?",
                                          (rater,))}


def check_rater(rater) -> str:
    if not isinstance(rater, str) or not RATER_PATTERN.match(rater):
        raise RatingError("rater id must be 1-64 letters, digits or . _ @ -")
    return rater


# ------------------------------------------------------------------------------------------
# Summary
# ------------------------------------------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= c * d
        if abs(c * d - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """CDF of Student's t distribution with `df` degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """Inverse of `t_cdf` (bisection to machine precision)."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"need 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def mean_ci(scores, level: float = 0.95) -> tuple[float, float | None, float | None]:
    """(mean, low, high): the t confidence interval of the mean (None with fewer than 2)."""
    n = len(scores)
    if n == 0:
        return float("nan"), None, None
    mean = sum(scores) / n
    if n < 2:
        return mean, None, None
    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1))
    half = t_quantile(0.5 + level / 2.0, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def summarize(store: RatingStore, models: list[str] | None = None) -> list[dict]:
    """Per model and split: n answers, raters, mean and 95% CI of the latest answers."""
    latest = store.latest()
    names = list(models or [])
    names += sorted({r["model"] for r in latest} - set(names))
    rows = []
    for model in names:
        for split in SPLITS:
            picked = [r for r in latest if r["model"] == model and r["split"] == split]
            mean, low, high = mean_ci([r["score"] for r in picked])
            rows.append({"model": model, "split": split, "n": len(picked),
                         "raters": len({r["rater"] for r in picked}),
                         "mean": mean if picked else None, "ci_low": low, "ci_high": high})
    return rows


def format_summary(rows: list[dict]) -> str:
    """The summary as the seed's table: one line per model, train and test side by side."""
    def cell(r):
        if not r or not r["n"]:
            return "-", "-", "0"
        ci = "-" if r["ci_low"] is None else f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
        return f"{r['mean']:+.3f}", ci, f"{r['n']} ({r['raters']} raters)"

    header = ["model", "train mean", "train 95% CI", "train n", "test mean", "test 95% CI",
              "test n"]
    table = []
    for model in dict.fromkeys(r["model"] for r in rows):
        by_split = {r["split"]: r for r in rows if r["model"] == model}
        table.append([model, *cell(by_split.get("train")), *cell(by_split.get("test"))])
    widths = [max(len(r[i]) for r in [header] + table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths))) for r in [header] + table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + ["scores: -2 (very poor) .. 2 (very good); 95% CI: Student t over "
                              "the answers (latest per rater and item)"])


# ------------------------------------------------------------------------------------------
# Web app
# ------------------------------------------------------------------------------------------

_CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
.images { display: flex; gap: 1.5em; flex-wrap: wrap; align-items: flex-start; }
figure { margin: 0; text-align: center; }
figure img { width: 256px; height: auto; border: 1px solid #ccc; }
fieldset { margin-top: 1.5em; border: 1px solid #aaa; }
label { display: inline-block; margin: 0.3em 1em 0.3em 0; }
button { margin-top: 1em; font-size: 1.1em; padding: 0.3em 1.5em; }
.error { color: #a00; }
"""


def _signed(score: int) -> str:
    return f"{score:+d}" if score else "0"


def _page(title: str, body: str) -> bytes:
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            f"{body}</body></html>").encode("utf-8")


class RatingApp:
    """What the HTTP handler needs: the manifest, the store and the questions."""

    def __init__(self, manifest: Manifest, store: RatingStore, questions: dict | None = None):
        self.manifest, self.store = manifest, store
        self.questions = {**DEFAULT_QUESTIONS, **(questions or {})}
        self._lock = threading.Lock()
        self._orders: dict[str, list[str]] = {}

    def order(self, rater: str) -> list[str]:
        with self._lock:
            if rater not in self._orders:
                self._orders[rater] = rater_order(rater, self.manifest.items)
            return self._orders[rater]

    def next_item(self, rater: str) -> tuple[Item | None, int, int]:
        """(next unanswered item or None, answered so far, total) for `rater`."""
        done = self.store.answered(rater) & self.manifest.items.keys()
        order = self.order(rater)
        for item_id in order:
            if item_id not in done:
                return self.manifest.items[item_id], len(done), len(order)
        return None, len(done), len(order)

    def answer(self, form: dict[str, list[str]]) -> tuple[str, int]:
        """Validate and store a submitted form; returns (rater, row id) or raises RatingError."""
        def one(name):
            values = form.get(name, [])
            if len(values) != 1:
                raise RatingError(f"the form needs exactly one '{name}'")
            return values[0].strip()

        rater, item_id, score_text = check_rater(one("rater")), one("item"), one("score")
        item = self.manifest.items.get(item_id)
        if item is None:
            raise RatingError(f"unknown item {item_id!r}")
        if not re.fullmatch(r"[+-]?\d{1,2}", score_text) or int(score_text) not in SCORES:
            raise RatingError(f"score must be an integer from -2 to 2, got {score_text!r}")
        return rater, self.store.add(rater, item, int(score_text))

    # ---- pages

    def start_page(self, rater: str | None, error: str = "") -> bytes:
        esc = html.escape
        value = esc(rater or "")
        scale = "".join(f"<li><b>{_signed(s)}</b> {esc(label)}</li>" for s, label in SCALE)
        body = ("<h1>Rating study</h1>"
                + (f"<p class='error'>{esc(error)}</p>" if error else "")
                + f"<p>You will see {len(self.manifest.items)} translated images, one at a "
                "time, each with the image it was made from (and, where there is one, the "
                "target the model should reach). The systems are anonymous and appear in a "
                "random order. Rate each output on this scale:</p>"
                f"<ul>{scale}</ul>"
                "<form method='get' action='/rate'><label>Your rater id (letters, digits, "
                f". _ @ -): <input name='rater' value='{value}' required maxlength='64' "
                "pattern='[A-Za-z0-9_.@-]{1,64}'></label> <button type='submit'>Start or "
                "continue</button></form>"
                "<p>Your answers are saved as you go; you can stop and come back later with "
                "the same id.</p>")
        return _page("Rating study", body)

    def item_page(self, rater: str, item: Item, done: int, total: int) -> bytes:
        esc = html.escape
        label = model_labels(rater, self.manifest.models)[item.model]
        figures = [("input", "Input")]
        if item.target:
            figures.append(("target", "Target (reference)"))
        figures.append(("output", f"Output of {label}"))
        images = "".join(
            f"<figure><img src='/image/{quote(item.id)}/{kind}' alt='{esc(caption)}'>"
            f"<figcaption>{esc(caption)}</figcaption></figure>" for kind, caption in figures)
        radios = "".join(
            f"<label><input type='radio' name='score' value='{s}' required> {_signed(s)} "
            f"{esc(text)}</label>" for s, text in SCALE)
        body = (f"<p>Rater <b>{esc(rater)}</b> &middot; item {done + 1} of {total} &middot; "
                f"<a href='/'>start page</a></p>"
                f"<h2>{esc(self.questions[item.split])}</h2>"
                f"<div class='images'>{images}</div>"
                "<form method='post' action='/answer'>"
                f"<input type='hidden' name='rater' value='{esc(rater)}'>"
                f"<input type='hidden' name='item' value='{esc(item.id)}'>"
                f"<fieldset><legend>Your rating of {esc(label)}</legend>{radios}</fieldset>"
                "<button type='submit'>Save and next</button></form>")
        return _page(f"Rating {done + 1}/{total}", body)

    def done_page(self, rater: str, total: int) -> bytes:
        return _page("Thank you", f"<h1>Thank you, {html.escape(rater)}!</h1><p>You rated all "
                     f"{total} images. Your answers are saved.</p><p><a href='/'>start page</a>"
                     "</p>")


class _Handler(BaseHTTPRequestHandler):
    app: RatingApp  # set on the subclass made by make_server
    server_version = "tfstyle-rating/1"

    def log_message(self, format, *args):  # noqa: A002  (quiet; the CLI prints its own lines)
        pass

    def _send(self, status: int, body: bytes, content_type="text/html; charset=utf-8",
              headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, message: str):
        self._send(status, _page("Error", f"<h1>{status} {HTTPStatus(status).phrase}</h1>"
                                 f"<p class='error'>{html.escape(message)}</p>"
                                 "<p><a href='/'>start page</a></p>"))

    def _cookie_rater(self) -> str | None:
        cookie = SimpleCookie()
        try:
            cookie.load(self.headers.get("Cookie", ""))
        except Exception:  # a malformed cookie header is ignored
            return None
        value = cookie["rater"].value if "rater" in cookie else None
        return value if value and RATER_PATTERN.match(value) else None

    def do_HEAD(self):  # noqa: N802
        self.do_GET()

    def do_GET(self):  # noqa: N802
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        app = self.app
        if url.path == "/":
            self._send(200, app.start_page(self._cookie_rater()))
        elif url.path == "/rate":
            rater = (query.get("rater") or [self._cookie_rater() or ""])[0].strip()
            if not RATER_PATTERN.match(rater):
                self._send(400, app.start_page(rater, "Please enter a valid rater id (1-64 "
                                               "letters, digits or . _ @ -)."))
                return
            item, done, total = app.next_item(rater)
            page = (app.item_page(rater, item, done, total) if item
                    else app.done_page(rater, total))
            self._send(200, page, headers=[(
                "Set-Cookie", f"rater={rater}; Path=/; SameSite=Strict; HttpOnly")])
        elif url.path.startswith("/image/"):
            parts = url.path.split("/")
            item = app.manifest.items.get(parts[2]) if len(parts) == 4 else None
            kind = parts[3] if len(parts) == 4 else ""
            relative = getattr(item, kind, None) if kind in ("input", "output", "target") \
                else None
            if not relative:
                self._error(404, "no such image")
                return
            try:
                path = app.manifest.path(relative)
                data = path.read_bytes()
            except (RatingError, OSError):
                self._error(404, "image file missing from the report")
                return
            self._send(200, data, content_type="image/png")
        else:
            self._error(404, f"no page {url.path}")

    def do_POST(self):  # noqa: N802
        if urlsplit(self.path).path != "/answer":
            self._error(404, f"no page {self.path}")
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._error(411, "Content-Length required")
            return
        if length > MAX_BODY or length < 0:
            self._error(413, "form too large")
            return
        body = self.rfile.read(length)
        if "application/x-www-form-urlencoded" not in self.headers.get("Content-Type", ""):
            self._error(415, "send the form as application/x-www-form-urlencoded")
            return
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
            rater, _ = self.app.answer(form)
        except (UnicodeDecodeError, RatingError) as err:
            self._error(400, str(err))
            return
        self._send(303, b"", headers=[("Location", f"/rate?rater={quote(rater)}")])


def make_server(report_dir, db_path, host: str = "127.0.0.1", port: int = 8080,
                questions: dict | None = None, directions=("AtoB", "BtoA")
                ) -> ThreadingHTTPServer:
    """An HTTP server for the rating study of `report_dir` (items of `directions`) storing
    answers in `db_path` (call serve_forever(); port 0 picks a free port: see
    server.server_address)."""
    app = RatingApp(load_manifest(report_dir, directions), RatingStore(db_path), questions)
    handler = type("RatingHandler", (_Handler,), {"app": app})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.app = app
    return server
