"""Tests of tfstyle.bam and train.bam_domains (issue 5: BAM emotion domains).

Every test builds its own small SQLite database with the BAM schema and, where
images are downloaded, serves them from a loopback HTTP server started in a
thread.  Nothing here touches the internet.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import http.server
import io
import logging
import os
import pathlib
import re
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from absl import app, flags
from PIL import Image

from tfstyle.bam import builder, checks, demo, download, select
from tfstyle.bam import manifest as manifest_file
from tfstyle.core import fetch
from train import bam_domains

# The 20 BAM attributes, written out here independently of the library.
BAM_ATTRIBUTES = [
    "content_bicycle", "content_bird", "content_building", "content_cars",
    "content_cat", "content_dog", "content_flower", "content_people",
    "content_tree", "emotion_gloomy", "emotion_happy", "emotion_peaceful",
    "emotion_scary", "media_3d_graphics", "media_comic", "media_graphite",
    "media_oilpaint", "media_pen_ink", "media_vectorart", "media_watercolor",
]

# Client timeout used by the tests (seconds): long enough for a loopback
# answer on a loaded machine, short enough to keep the timeout tests quick.
TIMEOUT = 1.0
SLOW_DELAY = 10.0      # /slow/ answers after this (or never: see close())
TRICKLE_GAP = 0.1      # /trickle/ sends a byte every this many seconds
REPO = pathlib.Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------

def image_bytes(seed: int, fmt: str = "JPEG", size: int = 16) -> bytes:
    """A small image whose pixels (and so bytes) depend on ``seed``."""
    img = Image.new("RGB", (size, size),
                    ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    img.putpixel((seed % size, (seed // size) % size), (255, 255, 255))
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def truncated_jpeg() -> bytes:
    """A JPEG cut in the middle of its scan data (header intact)."""
    noise = Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3))
    out = io.BytesIO()
    noise.save(out, format="JPEG", quality=95)
    body = out.getvalue()
    return body[: len(body) // 2]


# --------------------------------------------------------------------------
# Loopback HTTP server
# --------------------------------------------------------------------------

class ImageServer:
    """Serves test images on 127.0.0.1 and counts requests per path.

    /good/<n>.jpg|png  an image        /gif/<n>.gif   a GIF
    /dead/<n>          404             /html/<n>      200 with an HTML page
    /trunc/<n>.jpg     truncated JPEG  /slow/<n>.jpg  image after SLOW_DELAY
    /flaky/<n>.jpg     503 the first time, then the image
    /short/<n>.jpg     Content-Length larger than the body sent
    /trickle/<n>.jpg   an image's headers, then one byte every TRICKLE_GAP s
    /to?URL            302 redirect to URL
    """

    def __init__(self):
        self.counts: collections.Counter = collections.Counter()
        self.user_agents: set[str] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body, ctype, length=None):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length",
                                 str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                with server.lock:
                    server.counts[self.path] += 1
                    count = server.counts[self.path]
                    server.user_agents.add(self.headers.get("User-Agent", ""))
                kind, _, name = self.path.strip("/").partition("/")
                seed = int("".join(c for c in name if c.isdigit()) or 0)
                if self.path.startswith("/to?"):
                    self.send_response(302)
                    self.send_header("Location", self.path[len("/to?"):])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif kind == "trickle":
                    body = image_bytes(seed)
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    for i in range(len(body)):
                        if server.stop.wait(TRICKLE_GAP):
                            return
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                elif kind == "good" and name.endswith(".png"):
                    self._send(200, image_bytes(seed, "PNG"), "image/png")
                elif kind == "good":
                    self._send(200, image_bytes(seed), "image/jpeg")
                elif kind == "gif":
                    self._send(200, image_bytes(seed, "GIF"), "image/gif")
                elif kind == "html":
                    self._send(200, b"<html><body>Project removed</body>"
                               b"</html>", "text/html; charset=utf-8")
                elif kind == "trunc":
                    self._send(200, truncated_jpeg(), "image/jpeg")
                elif kind == "slow":
                    if server.stop.wait(SLOW_DELAY):
                        return
                    self._send(200, image_bytes(seed), "image/jpeg")
                elif kind == "flaky" and count == 1:
                    self._send(503, b"busy", "text/plain")
                elif kind == "flaky":
                    self._send(200, image_bytes(seed), "image/jpeg")
                elif kind == "short":
                    body = image_bytes(seed)
                    self._send(200, body, "image/jpeg", length=len(body) + 500)
                else:
                    self._send(404, b"not found", "text/plain")

        class Server(http.server.ThreadingHTTPServer):
            block_on_close = False

            def handle_error(self, request, client_address):
                pass  # a client that timed out and hung up is expected

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    @property
    def total(self) -> int:
        with self.lock:
            return sum(self.counts.values())

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Loopback requests must never go through a proxy from the environment."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY",
                 "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def server():
    s = ImageServer()
    yield s
    s.close()


# --------------------------------------------------------------------------
# BAM database builder (the real schema: all 20 attribute columns)
# --------------------------------------------------------------------------

class Img:
    """One row of the test database.

    kind picks the server path (good, dead, html, trunc, slow, ...); ``src``
    overrides the URL.  auto/crowd map attribute -> label.
    """

    def __init__(self, mid, happy, scary, kind="good", *, src=None, mature=0,
                 license="CC BY-NC 4.0", auto=None, crowd=None, ext="jpg",
                 scores=None):
        self.mid, self.happy, self.scary, self.kind = mid, happy, scary, kind
        self.src, self.mature, self.license = src, mature, license
        self.auto, self.crowd, self.ext = auto or {}, crowd or {}, ext
        self.scores = scores or {}


def make_bam_db(path, images, server=None, *, skip_tables=(),
                skip_columns=()):
    """Writes a BAM-schema SQLite file with ``images``; returns its path."""
    conn = sqlite3.connect(path)
    real = ", ".join(f"{a} REAL" for a in BAM_ATTRIBUTES
                     if f"scores.{a}" not in skip_columns)
    text = ", ".join(f"{a} TEXT" for a in BAM_ATTRIBUTES
                     if f"automatic_labels.{a}" not in skip_columns)
    modules_cols = ["mid INTEGER PRIMARY KEY", "project_id INTEGER",
                    "src TEXT", "mature_content BOOLEAN", "license TEXT"]
    modules_cols = [c for c in modules_cols
                    if f"modules.{c.split()[0]}" not in skip_columns]
    ddl = {
        "modules": f"CREATE TABLE modules ({', '.join(modules_cols)})",
        "scores": f"CREATE TABLE scores (mid INTEGER, {real})",
        "automatic_labels": f"CREATE TABLE automatic_labels (mid INTEGER, "
                            f"{text})",
        "crowd_labels": "CREATE TABLE crowd_labels (mid INTEGER, attribute "
                        "TEXT, label TEXT, PRIMARY KEY (mid, attribute))",
        # one of the raw crowd tables of the release, unused by the tool
        "crowd_votes": "CREATE TABLE crowd_votes (mid INTEGER, attribute "
                       "TEXT, vote TEXT, worker TEXT)",
    }
    for table, sql in ddl.items():
        if table not in skip_tables:
            conn.execute(sql)
    for img in images:
        src = img.src
        if src is None and server is not None:
            src = server.url(f"/{img.kind}/{img.mid}.{img.ext}")
        if "modules" not in skip_tables:
            cols = [c.split()[0] for c in modules_cols]
            values = {"mid": img.mid, "project_id": img.mid // 10, "src": src,
                      "mature_content": img.mature, "license": img.license}
            conn.execute(f"INSERT INTO modules ({', '.join(cols)}) VALUES "
                         f"({', '.join('?' * len(cols))})",
                         [values[c] for c in cols])
        if "scores" not in skip_tables:
            cols = [a for a in BAM_ATTRIBUTES
                    if f"scores.{a}" not in skip_columns]
            vals = [img.scores.get(a, {"emotion_happy": img.happy,
                                       "emotion_scary": img.scary}.get(a, 0.1))
                    for a in cols]
            marks = ", ".join("?" * len(cols))
            conn.execute(f"INSERT INTO scores (mid, {', '.join(cols)}) "
                         f"VALUES (?, {marks})", [img.mid] + vals)
        if "automatic_labels" not in skip_tables:
            cols = [a for a in BAM_ATTRIBUTES
                    if f"automatic_labels.{a}" not in skip_columns]
            vals = [img.auto.get(a, "negative") for a in cols]
            marks = ", ".join("?" * len(cols))
            conn.execute(f"INSERT INTO automatic_labels (mid, "
                         f"{', '.join(cols)}) VALUES (?, {marks})",
                         [img.mid] + vals)
        if "crowd_labels" not in skip_tables:
            for attribute, label in img.crowd.items():
                conn.execute("INSERT INTO crowd_labels VALUES (?, ?, ?)",
                             (img.mid, attribute, label))
    conn.commit()
    conn.close()
    return pathlib.Path(path)


def happy_only(mids, start=0.99, step=0.01, kinds=None):
    """Images in the happy list only (no scary score), best first."""
    kinds = kinds or {}
    return [Img(m, start - i * step, None, kinds.get(m, "good"))
            for i, m in enumerate(mids)]


def scary_only(mids, start=0.99, step=0.01, kinds=None):
    """Images in the scary list only (no happy score), best first."""
    kinds = kinds or {}
    return [Img(m, None, start - i * step, kinds.get(m, "good"))
            for i, m in enumerate(mids)]


FAST = download.DownloadOptions(workers=4, rate=0, timeout=TIMEOUT, retries=1,
                           backoff=0.01, progress_every=5, checkpoint_every=3)


def build(db, out, **kwargs):
    kwargs.setdefault("options", FAST)
    return builder.build_domains(db, out, **kwargs)


def stored(out, folder) -> dict[int, pathlib.Path]:
    """mid -> file of the images in ``out/folder``."""
    return {int(p.stem): p for p in (out / folder).iterdir()
            if not p.name.startswith(".")}


def manifest(out) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def by_mid(rows) -> dict[int, dict[str, str]]:
    return {int(r["mid"]): r for r in rows}


# --------------------------------------------------------------------------
# Ranking, test slice, de-duplication
# --------------------------------------------------------------------------

def test_attribute_list_matches_bam():
    assert list(select.ATTRIBUTES) == BAM_ATTRIBUTES


def test_ranks_and_test_slice(tmp_path, server):
    # Insert in shuffled order: ranks must come from the scores.
    images = happy_only(range(101, 111)) + scary_only(range(201, 211))
    images = images[::3] + images[1::3] + images[2::3]
    db = make_bam_db(tmp_path / "bam.sqlite", images, server)
    out = tmp_path / "data"
    summary = build(db, out, train=3, test=(5, 6))

    assert set(stored(out, "trainA")) == {101, 102, 103}
    assert set(stored(out, "testA")) == {105, 106}     # rank 4 is the gap
    assert set(stored(out, "trainB")) == {201, 202, 203}
    assert set(stored(out, "testB")) == {205, 206}
    # The gap rank and ranks after the slice are never fetched.
    for mid in (104, 107, 204, 207):
        assert server.counts[f"/good/{mid}.jpg"] == 0
    assert server.total == 10 == summary.requests == summary.downloaded
    rows = by_mid(manifest(out))
    assert {m: int(r["rank"]) for m, r in rows.items() if r["domain"] == "A"} \
        == {101: 1, 102: 2, 103: 3, 105: 5, 106: 6}
    assert rows[105]["split"] == "test" and rows[103]["split"] == "train"
    assert summary.complete and not summary.ran_out
    assert [(s.split + s.domain, s.filled, s.first_rank, s.last_rank)
            for s in summary.slots] == [
        ("trainA", 3, 1, 3), ("testA", 2, 5, 6),
        ("trainB", 3, 1, 3), ("testB", 2, 5, 6)]


def test_image_in_both_lists_goes_to_its_better_rank(tmp_path, server):
    images = [
        Img(1, 0.99, 0.10),   # happy #1
        Img(2, 0.95, 0.99),   # happy #2, scary #1 -> B
        Img(3, 0.90, 0.98),   # happy #3, scary #2 -> B
        Img(4, 0.80, 0.97),   # happy #4, scary #3 -> B
        Img(5, 0.70, 0.05),
        Img(6, 0.60, 0.04),
        Img(7, 0.50, 0.03),
        Img(8, 0.02, 0.90),
        Img(9, 0.01, 0.80),
    ]
    # happy order: 1,2,3,4,5,6,7,8,9 ; scary order: 2,3,4,8,9,1,5,6,7
    # mid 1: happy position 1 vs scary 6 -> A; 5, 6, 7 likewise -> A
    # mids 2, 3, 4: one position better in the scary list -> B
    # de-duplicated: A = 1,5,6,7 ; B = 2,3,4,8,9
    db = make_bam_db(tmp_path / "bam.sqlite", images, server)
    out = tmp_path / "data"
    build(db, out, train=3, test=(4, 4))
    a = set(stored(out, "trainA")) | set(stored(out, "testA"))
    b = set(stored(out, "trainB")) | set(stored(out, "testB"))
    assert not a & b
    assert set(stored(out, "trainA")) == {1, 5, 6}
    assert set(stored(out, "testA")) == {7}
    assert set(stored(out, "trainB")) == {2, 3, 4}
    assert set(stored(out, "testB")) == {8}
    rows = by_mid(manifest(out))
    assert (rows[5]["rank"], rows[5]["domain"]) == ("2", "A")
    assert (rows[8]["rank"], rows[8]["domain"]) == ("4", "B")
    assert len(rows) == 8 and len(manifest(out)) == 8   # each mid once


def test_same_position_in_both_lists_goes_to_higher_score():
    def cand(mid, score):
        return select.RankedImage(mid, score, None, None, False, None, None)

    # mid 7 is 2nd in both lists; its B score is higher -> B.
    a = [cand(1, 0.9), cand(7, 0.5), cand(3, 0.4)]
    b = [cand(2, 0.9), cand(7, 0.8), cand(4, 0.1)]
    s = select.DomainSplitter(a, b)
    assert [(c.mid, c.rank) for c in iter(lambda: s.next(0), None)] == \
        [(1, 1), (3, 2)]
    assert [(c.mid, c.rank) for c in iter(lambda: s.next(1), None)] == \
        [(2, 1), (7, 2), (4, 3)]
    # Equal scores too -> domain A.
    s = select.DomainSplitter([cand(7, 0.5)], [cand(7, 0.5)])
    assert s.next(0).mid == 7 and s.next(1) is None


def test_splitter_reads_lists_only_as_far_as_needed():
    def endless(prefix):
        i = 0
        while True:
            i += 1
            yield select.RankedImage(prefix + i, 1.0 / i, None, None, False, None,
                                None)

    s = select.DomainSplitter(endless(0), endless(10 ** 9))
    assert [s.next(0).rank for _ in range(1000)][-1] == 1000
    assert s.next(1).rank == 1


# --------------------------------------------------------------------------
# Skips, replacement by the next rank, running out
# --------------------------------------------------------------------------

def test_bad_images_are_skipped_and_replaced_by_next_rank(tmp_path, server):
    kinds = {102: "dead", 103: "html", 104: "trunc", 106: "slow"}
    images = happy_only(range(101, 112), kinds=kinds) + \
        scary_only(range(201, 206))
    db = make_bam_db(tmp_path / "bam.sqlite", images, server)
    out = tmp_path / "data"
    summary = build(db, out, train=3, test=(4, 5))

    # train walks ranks 1..7 (four skipped), test continues at rank 8.
    assert set(stored(out, "trainA")) == {101, 105, 107}
    assert set(stored(out, "testA")) == {108, 109}
    assert server.counts["/good/110.jpg"] == 0
    rows = by_mid(manifest(out))
    assert {m: rows[m]["reason"] for m in kinds} == {
        102: "http_404", 103: "not_image", 104: "corrupt_image",
        106: "timeout"}
    for m in kinds:
        assert rows[m]["status"] == "skipped" and rows[m]["split"] == "train"
        assert rows[m]["file"] == "" and rows[m]["sha256"] == ""
    assert server.counts["/slow/106.jpg"] == 2          # retried once
    assert server.counts["/dead/102.jpg"] == 1          # 404 is not retried
    assert summary.skipped == {"http_404": 1, "not_image": 1,
                               "corrupt_image": 1, "timeout": 1}
    assert summary.slots[0].skipped == 4 and summary.slots[0].last_rank == 7
    assert summary.slots[1].first_rank == 8
    text = summary.format()
    assert "skipped: 4" in text and "http_404: 1" in text
    # Nothing partial or bad was written anywhere.
    for folder in builder.SPLIT_DIRS + ("unused",):
        for path in (out / folder).iterdir():
            assert not path.name.startswith(".")
            with Image.open(path) as img:
                img.load()
    assert not any(p.name.startswith(str(m)) for m in kinds
                   for p in out.rglob("*"))


def test_database_running_out_is_reported(tmp_path, server, caplog):
    caplog.set_level(logging.INFO, logger="absl")
    images = happy_only(range(101, 110)) + \
        scary_only(range(201, 206), kinds={202: "dead"})
    db = make_bam_db(tmp_path / "bam.sqlite", images, server)
    out = tmp_path / "data"
    summary = build(db, out, train=3, test=(4, 5))

    assert set(stored(out, "trainB")) == {201, 203, 204}
    assert set(stored(out, "testB")) == {205}
    assert len(stored(out, "testA")) == 2
    assert summary.ran_out == [
        "the database ran out of candidates for domain B (emotion_scary) "
        "test: 1 of 2 images"]
    assert not summary.complete
    assert "WARNING: the database ran out" in summary.format()
    assert any("ran out" in r.getMessage() for r in caplog.records)
    assert any(r.getMessage().startswith("BAM images: trainA")
               for r in caplog.records)               # progress lines


# --------------------------------------------------------------------------
# Resume
# --------------------------------------------------------------------------

def test_second_run_fetches_nothing(tmp_path, server):
    kinds = {102: "dead", 104: "html", 202: "trunc"}
    images = happy_only(range(101, 108), kinds=kinds) + \
        scary_only(range(201, 207), kinds=kinds)
    db = make_bam_db(tmp_path / "bam.sqlite", images, server)
    out = tmp_path / "data"
    first = build(db, out, train=3, test=(4, 4))
    first_rows = manifest(out)
    assert first.downloaded == 8 and server.total == 11
    server.reset()

    second = build(db, out, train=3, test=(4, 4))
    assert server.total == 0 and second.requests == 0
    assert second.reused == 8 and second.downloaded == 0
    assert sum(second.skipped.values()) == 3
    rows = manifest(out)
    assert [(r["mid"], r["rank"], r["file"], r["sha256"], r["reason"])
            for r in rows] == [(r["mid"], r["rank"], r["file"], r["sha256"],
                                r["reason"]) for r in first_rows]
    assert {r["status"] for r in rows} == {"reused", "skipped"}

    # retry_skipped asks again for the three failures only.
    options = download.DownloadOptions(**{**vars(FAST), "retry_skipped": True})
    build(db, out, train=3, test=(4, 4), options=options)
    assert sorted(server.counts) == ["/dead/102.jpg", "/html/104.jpg",
                                     "/trunc/202.jpg"]


def test_transient_failures_are_tried_again_next_run(tmp_path, server):
    images = happy_only(range(101, 104), kinds={101: "slow"}) + \
        scary_only(range(201, 203))
    db = make_bam_db(tmp_path / "bam.sqlite", images, server)
    out = tmp_path / "data"
    options = download.DownloadOptions(**{**vars(FAST), "retries": 0})
    build(db, out, train=2, test=None, options=options)
    assert by_mid(manifest(out))[101]["reason"] == "timeout"
    server.reset()
    build(db, out, train=2, test=None, options=options)
    assert dict(server.counts) == {"/slow/101.jpg": 1}


def test_download_limit_stops_and_next_run_continues(tmp_path, server):
    images = happy_only(range(101, 106)) + scary_only(range(201, 206))
    db = make_bam_db(tmp_path / "bam.sqlite", images, server)
    out = tmp_path / "data"
    options = download.DownloadOptions(**{**vars(FAST), "max_downloads": 3})
    first = build(db, out, train=3, test=(4, 4), options=options)
    assert first.stopped_early and not first.complete
    assert first.downloaded == 3 and server.total == 3
    assert "run again to continue" in first.format()
    files = [p for d in builder.SPLIT_DIRS for p in (out / d).iterdir()]
    assert len(files) == 3
    assert len([r for r in manifest(out) if r["status"] == "downloaded"]) == 3

    second = build(db, out, train=3, test=(4, 4))
    assert second.complete and second.reused == 3 and second.downloaded == 5
    assert server.total == 8 and max(server.counts.values()) == 1


def test_interrupted_run_keeps_no_partial_files_and_resumes(
        tmp_path, server, monkeypatch):
    images = happy_only(range(101, 107)) + scary_only(range(201, 207))
    db = make_bam_db(tmp_path / "bam.sqlite", images, server)
    out = tmp_path / "data"
    real_get = fetch.Fetcher.get
    calls = {"n": 0}
    lock = threading.Lock()

    def interrupting_get(self, url, *args, **kwargs):
        with lock:
            calls["n"] += 1
            n = calls["n"]
        if n == 4:
            raise KeyboardInterrupt  # as if Ctrl-C arrived mid-run
        return real_get(self, url, *args, **kwargs)

    monkeypatch.setattr(fetch.Fetcher, "get", interrupting_get)
    options = download.DownloadOptions(**{**vars(FAST), "workers": 1})
    with pytest.raises(KeyboardInterrupt):
        build(db, out, train=4, test=None, options=options)
    for t in threading.enumerate():        # let a straggling worker finish
        if t.name.startswith("bam"):
            t.join(5)
    monkeypatch.setattr(fetch.Fetcher, "get", real_get)
    done = {int(p.stem) for d in ("trainA", "trainB")
            for p in (out / d).iterdir()}
    assert 3 <= len(done) <= 4
    assert {int(r["mid"]) for r in manifest(out)} <= done

    assert 104 not in done        # not reached before the interruption
    # Now as if the process had been killed before any manifest was written,
    # leaving a temporary file and damaged images behind.
    (out / "manifest.csv").unlink()
    (out / "trainA" / ".105.1a2b3c4d.tmp.jpg").write_bytes(b"\xff\xd8 partial")
    (out / "trainA" / ".106.jpg.1.2.part").write_bytes(b"\xff\xd8 partial")  # 0.1's
    (out / "trainA" / "104.jpg").write_bytes(truncated_jpeg())
    (out / "trainA" / "106.jpg").write_bytes(truncated_jpeg())
    server.reset()
    summary = build(db, out, train=4, test=None)
    assert summary.complete
    assert set(stored(out, "trainA")) == {101, 102, 103, 104}
    assert set(stored(out, "trainB")) == {201, 202, 203, 204}
    assert not [p for p in out.rglob(".*") if p.is_file()]
    assert summary.reused == len(done)
    for mid in done:                     # files on disk are not fetched again
        assert server.counts[f"/good/{mid}.jpg"] == 0
    assert server.total == 8 - len(done)
    # The damaged 104.jpg was fetched again; 106 is not selected: set aside.
    assert server.counts["/good/104.jpg"] == 1
    assert (out / "trainA" / "104.jpg").read_bytes() == image_bytes(104)
    assert (out / "unused" / "106.jpg").exists()


def test_changed_sizes_reuse_files_and_set_aside_unselected(tmp_path, server):
    images = happy_only(range(101, 106)) + scary_only(range(201, 206))
    db = make_bam_db(tmp_path / "bam.sqlite", images, server)
    out = tmp_path / "data"
    build(db, out, train=4, test=None)
    assert server.total == 8
    build(db, out, train=1, test=(2, 2))
    assert set(stored(out, "trainA")) == {101}
    assert set(stored(out, "testA")) == {102}          # moved, not fetched
    assert set(stored(out, "unused")) == {103, 104, 203, 204}
    build(db, out, train=4, test=(5, 5))
    assert set(stored(out, "trainA")) == {101, 102, 103, 104}
    assert set(stored(out, "testA")) == {105}
    assert not stored(out, "unused")
    assert server.total == 10 and max(server.counts.values()) == 1


def test_modified_file_is_fetched_again(tmp_path, server):
    images = happy_only(range(101, 103)) + scary_only(range(201, 203))
    db = make_bam_db(tmp_path / "bam.sqlite", images, server)
    out = tmp_path / "data"
    build(db, out, train=2, test=None)
    # Replace a stored file by another valid image: the sha256 no longer
    # matches the manifest, so it is downloaded again.
    (out / "trainA" / "101.jpg").write_bytes(image_bytes(999))
    server.reset()
    summary = build(db, out, train=2, test=None)
    assert dict(server.counts) == {"/good/101.jpg": 1}
    assert summary.reused == 3 and summary.downloaded == 1
    row = by_mid(manifest(out))[101]
    assert row["sha256"] == hashlib.sha256(image_bytes(101)).hexdigest()


# --------------------------------------------------------------------------
# Manifest, database access
# --------------------------------------------------------------------------

def test_manifest_columns_and_sha256(tmp_path, server):
    images = [Img(101, 0.9, 0.01, license="CC BY 4.0",
                  auto={"emotion_happy": "positive"}),
              Img(102, 0.8, 0.02, ext="png", mature=1,
                  crowd={"emotion_happy": "unsure"}),
              Img(103, 0.7, 0.03, "gif", ext="gif"),
              Img(201, 0.01, 0.9, "dead")] + scary_only([202, 203])
    db = make_bam_db(tmp_path / "bam.sqlite", images, server)
    out = tmp_path / "data"
    build(db, out, train=3, test=None)
    with open(out / "manifest.csv", newline="") as f:
        header = next(csv.reader(f))
    assert tuple(header) == manifest_file.MANIFEST_COLUMNS
    for col in ("mid", "rank", "score", "label", "src", "license", "file",
                "sha256"):
        assert col in header
    rows = by_mid(manifest(out))
    for mid in (101, 102, 103, 202, 203):
        r = rows[mid]
        path = out / r["file"]
        assert path.is_file()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == r["sha256"]
        assert int(r["bytes"]) == path.stat().st_size
        assert r["status"] == "downloaded" and r["origin"] == "url"
        assert r["src"] == server.url(
            f"/{'gif' if mid == 103 else 'good'}/{mid}."
            f"{ {102: 'png', 103: 'gif'}.get(mid, 'jpg') }")
    assert rows[101]["file"] == "trainA/101.jpg"
    assert (rows[101]["label"], rows[101]["label_source"]) == \
        ("positive", "automatic")
    assert (rows[102]["label"], rows[102]["label_source"]) == \
        ("unsure", "crowd")
    assert rows[101]["license"] == "CC BY 4.0"
    assert (rows[101]["mature_content"], rows[102]["mature_content"]) == \
        ("0", "1")
    assert float(rows[101]["score"]) == 0.9
    assert (rows[101]["width"], rows[101]["height"]) == ("16", "16")
    # JPEG/PNG kept byte for byte; the GIF became a PNG.
    assert (out / "trainA" / "101.jpg").read_bytes() == image_bytes(101)
    assert (out / "trainA" / "102.png").read_bytes() == image_bytes(102, "PNG")
    assert rows[103]["file"] == "trainA/103.png"
    assert rows[103]["format"] == "PNG"
    assert (rows[201]["status"], rows[201]["reason"], rows[201]["domain"]) == \
        ("skipped", "http_404", "B")
    # The run's parameters are recorded too.
    info = (out / "bam_domains.json").read_text()
    assert '"domain_a": "emotion_happy"' in info and '"train": 3' in info
    # A User-Agent of our own was sent.
    assert server.user_agents == {download.DEFAULT_USER_AGENT}


def test_database_is_opened_read_only(tmp_path, server):
    images = happy_only(range(101, 104)) + scary_only(range(201, 204))
    db_dir = tmp_path / "db"
    db_dir.mkdir()
    db = make_bam_db(db_dir / "bam 2.2m?.sqlite", images, server)
    def fingerprint():
        return (hashlib.sha256(db.read_bytes()).hexdigest(),
                db.stat().st_mtime_ns)

    before = fingerprint()
    build(db, tmp_path / "data", train=2, test=None)
    assert fingerprint() == before
    assert sorted(p.name for p in db_dir.iterdir()) == [db.name]
    conn = select.open_bam_db(db)
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM modules")
    finally:
        conn.close()


@pytest.mark.parametrize("skip_tables, skip_columns, expected", [
    (("scores", "crowd_labels"), (), ["missing table(s): scores, "
                                      "crowd_labels"]),
    ((), ("scores.emotion_scary",),
     ["missing column(s): scores.emotion_scary"]),
    ((), ("modules.src", "automatic_labels.emotion_happy"),
     ["modules.src", "automatic_labels.emotion_happy"]),
])
def test_not_a_bam_database_names_what_is_missing(
        tmp_path, skip_tables, skip_columns, expected):
    db = make_bam_db(tmp_path / "other.sqlite", happy_only([1, 2]),
                     skip_tables=skip_tables, skip_columns=skip_columns)
    with pytest.raises(select.BamSchemaError) as err:
        builder.build_domains(db, tmp_path / "data", train=1, test=None)
    message = str(err.value)
    assert str(db) in message and "not a BAM database" in message
    for part in expected:
        assert part in message
    assert not (tmp_path / "data").exists()


def test_files_that_are_not_databases(tmp_path):
    text = tmp_path / "notes.sqlite"
    text.write_text("just some text, not SQLite\n" * 20)
    with pytest.raises(select.BamSchemaError, match="not a SQLite database"):
        builder.build_domains(text, tmp_path / "data", train=1, test=None)
    with pytest.raises(FileNotFoundError, match="missing.sqlite"):
        builder.build_domains(tmp_path / "missing.sqlite", tmp_path / "data",
                          train=1, test=None)
    assert not (tmp_path / "missing.sqlite").exists()   # not created


# --------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------

def test_filters(tmp_path):
    images = [
        Img(1, 0.9, 0.0, auto={"emotion_happy": "positive"},
            crowd={"emotion_happy": "negative"}),
        Img(2, 0.8, 0.0, auto={"emotion_happy": "unsure"}),
        Img(3, 0.7, 0.0, crowd={"emotion_happy": "positive"}),
        Img(4, 0.6, 0.0, auto={"emotion_happy": "positive"}, mature=1),
        Img(5, 0.5, 0.0, auto={"emotion_happy": "positive",
                               "media_watercolor": "positive"}),
        Img(6, 0.4, 0.0, auto={"emotion_happy": "positive",
                               "media_oilpaint": "positive"}, mature="true"),
        Img(7, 0.3, 0.0),
    ]
    db = make_bam_db(tmp_path / "bam.sqlite", images)
    conn = select.open_bam_db(db)

    def mids(**kw):
        return [c.mid for c in select.iter_candidates(
            conn, "emotion_happy", select.SelectionFilters(**kw))]

    try:
        assert mids() == [1, 2, 3, 4, 5, 6, 7]
        # crowd label wins over the automatic one where there is one
        assert mids(min_label="positive") == [3, 4, 5, 6]
        assert mids(min_label="unsure") == [2, 3, 4, 5, 6]
        assert mids(min_label="positive", label_source="automatic") == \
            [1, 4, 5, 6]
        assert mids(min_label="positive", label_source="crowd") == [3]
        assert mids(exclude_mature=True) == [1, 2, 3, 5, 7]
        assert mids(media=("watercolor",)) == [5]
        assert mids(media=("media_watercolor", "oilpaint")) == [5, 6]
        assert mids(media=("oilpaint",), exclude_mature=True) == []
        first = next(select.iter_candidates(conn, "emotion_happy",
                                         select.SelectionFilters()))
        assert (first.label, first.label_source) == ("negative", "crowd")
    finally:
        conn.close()
    with pytest.raises(ValueError, match="crayon"):
        select.SelectionFilters(media=("crayon",))


# --------------------------------------------------------------------------
# Local mirror
# --------------------------------------------------------------------------

def test_image_root_mirror(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the mirror run tried to download")

    monkeypatch.setattr(fetch.Fetcher, "get", no_network)
    mirror = tmp_path / "mirror"
    (mirror / "img.example.com" / "pm").mkdir(parents=True)
    (mirror / "301.png").write_bytes(image_bytes(301, "PNG"))
    (mirror / "img.example.com" / "pm" / "x302.jpg").write_bytes(
        image_bytes(302))
    (mirror / "304.gif").write_bytes(image_bytes(304, "GIF"))
    (mirror / "305.jpg").write_bytes(b"<html>nope</html>")
    (mirror / "306.jpg").write_bytes(image_bytes(306))
    (mirror / "401.jpg").write_bytes(image_bytes(401))
    images = [Img(300 + i, 0.9 - i / 100, 0.0,
                  src=f"https://img.example.com/pm/x{300 + i}.jpg")
              for i in range(1, 7)] + \
        [Img(401, 0.0, 0.9, src="https://img.example.com/pm/x401.jpg")]
    db = make_bam_db(tmp_path / "bam.sqlite", images)
    out = tmp_path / "data"
    summary = builder.build_domains(db, out, train=4, test=None, options=FAST,
                                image_root=mirror)
    assert set(stored(out, "trainA")) == {301, 302, 304, 306}
    assert (out / "trainA" / "304.png").exists()          # GIF -> PNG
    assert (out / "trainA" / "302.jpg").read_bytes() == image_bytes(302)
    rows = by_mid(manifest(out))
    assert (rows[303]["status"], rows[303]["reason"]) == \
        ("skipped", "missing_local")
    assert (rows[305]["status"], rows[305]["reason"]) == \
        ("skipped", "not_image")
    assert rows[301]["status"] == "copied" and rows[301]["origin"] == "mirror"
    assert summary.copied == 5 and summary.requests == 0
    assert summary.ran_out    # B has only one image for 4 train slots
    # Rerun: the copies are reused.
    again = builder.build_domains(db, out, train=4, test=None, options=FAST,
                              image_root=mirror)
    assert again.reused == 5 and again.copied == 0


def test_find_in_mirror_stays_inside_root(tmp_path):
    root = tmp_path / "mirror"
    root.mkdir()
    (tmp_path / "secret.jpg").write_bytes(b"x")
    assert download.find_in_mirror(root, 1, "http://h/../secret.jpg") is None
    assert download.find_in_mirror(root, 1, "http://h/%2e%2e/secret.jpg") is None


# --------------------------------------------------------------------------
# Fetching and image checks
# --------------------------------------------------------------------------

def fetcher(**changes):
    """The fetcher of a BAM run with the FAST options (and ``changes``)."""
    return download.Downloader(FAST.replace(**changes)).fetcher


def test_fetching_retries_transient_errors(server):
    waits = []
    f = fetch.Fetcher(FAST.replace(retries=2, backoff=0.5).fetch_settings(),
                      sleep=waits.append)
    result = f.get(server.url("/flaky/5.jpg"))
    assert result.body == image_bytes(5) and result.attempts == 2
    assert len(waits) == 1 and 0.5 <= waits[0] <= 0.625
    with pytest.raises(fetch.FetchError) as err:
        fetcher(retries=1, backoff=0).get(server.url("/short/6.jpg"))
    assert err.value.reason == "incomplete" and err.value.attempts == 2
    with pytest.raises(fetch.FetchError) as err:
        fetcher(retries=3, backoff=0).get(server.url("/dead/7"))
    assert (err.value.reason, err.value.attempts) == ("http_404", 1)
    assert server.counts["/dead/7"] == 1
    # Spaces and non-ASCII characters in the path are percent-encoded.
    result = fetcher().get(server.url("/good/9 é.jpg"))
    assert checks.prepare_image(result.body).format == "JPEG"
    assert server.counts["/good/9%20%C3%A9.jpg"] == 1
    for url in ("file:///etc/passwd", "ftp://example.com/a.jpg", ""):
        with pytest.raises(fetch.FetchError) as err:
            fetcher().get(url)
        assert err.value.reason == "bad_url"


def test_fetching_times_out(server):
    started = time.monotonic()
    with pytest.raises(fetch.FetchError) as err:
        fetcher(retries=0).get(server.url("/slow/8.jpg"))
    assert err.value.reason == "timeout" and err.value.transient
    assert time.monotonic() - started < SLOW_DELAY


def test_redirects_into_the_local_network_or_off_http_are_skipped(
        tmp_path, server, monkeypatch):
    """A BAM URL cannot make the tool fetch from the local network (issue 14)."""
    monkeypatch.setattr(fetch, "TREATED_AS_PUBLIC",
                        {("127.0.0.1", server.httpd.server_address[1])})
    private = ImageServer()   # an internal service on another port of loopback
    try:
        images = [
            Img(101, 0.99, None, src=server.url("/to?" + private.url("/good/101.jpg"))),
            Img(102, 0.98, None, src=server.url(
                "/to?" + private.url("/good/102.jpg").replace("127.0.0.1", "localhost"))),
            Img(103, 0.97, None, src=server.url("/to?ftp://127.0.0.1/103.jpg")),
            Img(104, 0.96, None, src=server.url("/to?/good/104.jpg")),  # same host: fine
            Img(105, 0.95, None),
        ] + scary_only([201])
        db = make_bam_db(tmp_path / "bam.sqlite", images, server)
        out = tmp_path / "data"
        summary = build(db, out, train=2, test=None)
        assert private.total == 0
        assert set(stored(out, "trainA")) == {104, 105}
        rows = by_mid(manifest(out))
        for mid in (101, 102, 103):
            assert (rows[mid]["status"], rows[mid]["reason"]) == \
                ("skipped", "redirect_refused")
        assert summary.skipped == {"redirect_refused": 3}
        # Refused for good: the next run does not ask again.
        server.reset()
        build(db, out, train=2, test=None)
        assert server.total == 0 and private.total == 0
    finally:
        private.close()


def test_trickling_server_is_cut_at_the_deadline(tmp_path, server):
    """Every read comes within --timeout, yet the download ends at 5x --timeout."""
    images = happy_only([101, 102], kinds={101: "trickle"}) + scary_only([201])
    db = make_bam_db(tmp_path / "bam.sqlite", images, server)
    out = tmp_path / "data"
    options = FAST.replace(timeout=0.4, retries=0)   # whole download: 2 s
    started = time.monotonic()
    summary = build(db, out, train=1, test=None, options=options)
    elapsed = time.monotonic() - started
    assert by_mid(manifest(out))[101]["reason"] == "timeout"
    assert set(stored(out, "trainA")) == {102} and summary.complete
    assert 2.0 <= elapsed < 2.0 + 1.5, elapsed


def test_rate_limit_is_applied_to_downloads(tmp_path, server):
    images = happy_only(range(101, 104)) + scary_only(range(201, 204))
    db = make_bam_db(tmp_path / "bam.sqlite", images, server)
    options = download.DownloadOptions(**{**vars(FAST), "rate": 20.0})
    started = time.monotonic()
    build(db, tmp_path / "data", train=3, test=None, options=options)
    # six requests at most 20/s: the last may start 5/20 s after the first
    assert time.monotonic() - started >= 0.25 - 0.01


def test_prepare_image():
    assert checks.prepare_image(image_bytes(1)).data == image_bytes(1)
    gif = checks.prepare_image(image_bytes(2, "GIF"))
    assert (gif.format, gif.extension, gif.source_format) == \
        ("PNG", ".png", "GIF")
    with Image.open(io.BytesIO(gif.data)) as img:
        assert img.format == "PNG" and img.size == (16, 16)
    for body, reason in ((truncated_jpeg(), "corrupt_image"),
                         (b"<!doctype html><html></html>", "not_image"),
                         (b"", "not_image")):
        with pytest.raises(checks.ImageRejected) as err:
            checks.prepare_image(body)
        assert err.value.reason == reason


def test_parse_test_slice():
    assert select.parse_test_slice("1001:1200") == (1001, 1200)
    assert select.parse_test_slice(" 5 : 5 ") == (5, 5)
    assert select.parse_test_slice("") is None
    assert select.parse_test_slice("none") is None
    for bad in ("1200:1001", "0:5", "abc", "5", "1:2:3", "-1:5"):
        with pytest.raises(ValueError):
            select.parse_test_slice(bad)


def test_library_argument_errors_name_the_argument(tmp_path):
    db = make_bam_db(tmp_path / "bam.sqlite", happy_only([1]))
    for kwargs, name in (({"domain_a": "emotion_sad"}, "domain_a"),
                         ({"domain_b": "emotion_happy"}, "domain_b"),
                         ({"train": 10, "test": (5, 8)}, "test"),
                         ({"train": -1}, "train"),
                         ({"image_root": tmp_path / "nope"}, "image_root")):
        with pytest.raises(ValueError, match=name):
            builder.build_domains(db, tmp_path / "data", **kwargs)
    with pytest.raises(ValueError, match="workers"):
        download.DownloadOptions(workers=0)


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def test_cli_end_to_end(tmp_path, server, capsys):
    images = happy_only(range(101, 106), kinds={102: "dead"}) + \
        scary_only(range(201, 206))
    db = make_bam_db(tmp_path / "bam.sqlite", images, server)
    out = tmp_path / "data"
    fv = bam_domains.parse_flags([
        "bam_domains", f"--bam_db={db}", f"--out={out}",
        "--domain_a=emotion_happy", "--domain_b=emotion_scary", "--train=2",
        "--test=3:4", "--workers=2", "--rate=0", f"--timeout={TIMEOUT}",
        "--retries=0", "--min_label=none"])
    summary = bam_domains.run(fv)
    printed = capsys.readouterr().out
    assert "trainA (emotion_happy): 2/2" in printed
    assert "http_404: 1" in printed
    assert set(stored(out, "trainA")) == {101, 103}
    assert set(stored(out, "testA")) == {104, 105}
    assert summary.complete


def test_cli_subprocess(tmp_path):
    mirror = tmp_path / "mirror"
    db = demo.create_demo_database(tmp_path / "demo.sqlite", n_images=30,
                                  image_root=mirror)
    out = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "train.bam_domains", f"--bam_db={db}",
         f"--image_root={mirror}", f"--out={out}", "--train=5",
         "--test=6:8"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "trainB (emotion_scary): 5/5" in proc.stdout
    for folder, n in (("trainA", 5), ("trainB", 5), ("testA", 3),
                      ("testB", 3)):
        assert len(stored(out, folder)) == n
    helpfull = subprocess.run(
        [sys.executable, "-m", "train.bam_domains", "--helpfull"], cwd=REPO,
        env=env, capture_output=True, text=True, timeout=60)
    # absl's help flags print the help and exit with status 1.
    assert "Traceback" not in helpfull.stderr
    for name in ("--bam_db", "--test", "--min_label", "--[no]exclude_mature",
                 "--media", "--image_root", "--rate", "--workers",
                 "--timeout", "--retries", "--max_downloads"):
        assert name in helpfull.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "train.bam_domains", f"--bam_db={db}",
         f"--out={out}", "--test=1001-1200"], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--test" in bad.stderr


@pytest.mark.parametrize("args, flag", [
    (["--train=-1"], "--train"),
    (["--test=abc"], "--test"),
    (["--test=1200:1001"], "--test"),
    (["--train=1000", "--test=500:600"], "--test"),
    (["--domain_a=emotion_sad"], "--domain_a"),
    (["--domain_b=emotion_happy"], "--domain_a"),
    (["--media=watercolor,crayon"], "--media"),
    (["--min_label=maybe"], "--min_label"),
    (["--rate=-1"], "--rate"),
    (["--timeout=0"], "--timeout"),
    (["--workers=0"], "--workers"),
    (["--retries=-2"], "--retries"),
    (["--image_root=/no/such/folder"], "--image_root"),
    (["--bam_db=/no/such/file.sqlite"], "--bam_db"),
    (["--bam_db="], "--bam_db"),
])
def test_cli_bad_flag_values_name_the_flag(tmp_path, args, flag):
    db = tmp_path / "bam.sqlite"
    db.write_bytes(b"")
    argv = ["bam_domains", f"--bam_db={db}", f"--out={tmp_path / 'o'}"] + args
    with pytest.raises((flags.Error, app.UsageError)) as err:
        bam_domains.settings(bam_domains.parse_flags(argv))
    assert flag in str(err.value)


def test_cli_reports_database_errors_with_the_file(tmp_path):
    db = make_bam_db(tmp_path / "bam.sqlite", happy_only([1]),
                     skip_tables=("crowd_labels",))
    fv = bam_domains.parse_flags(["bam_domains", f"--bam_db={db}",
                                  f"--out={tmp_path / 'o'}"])
    with pytest.raises(SystemExit) as err:
        bam_domains.run(fv)
    assert str(db) in str(err.value.code)
    assert "crowd_labels" in str(err.value.code)


def test_importing_the_cli_defines_no_global_flags():
    assert "bam_db" not in flags.FLAGS
    assert "domain_a" not in flags.FLAGS


def test_docs_example(tmp_path, monkeypatch, capsys):
    """The offline example in docs/bam.md works as written (both commands)."""
    docs = (REPO / "docs" / "bam.md").read_text()
    snippet = re.search(r"^python -c '(.*)'$", docs, re.M).group(1)
    command = re.search(r"^python -m (train\.bam_domains --bam_db=demo.*)$", docs,
                        re.M).group(1)
    assert command == ("train.bam_domains --bam_db=demo.sqlite --image_root=demo_mirror "
                       "--out=demo_data --train=10 --test=11:15")
    monkeypatch.chdir(tmp_path)
    exec(snippet, {})
    summary = bam_domains.run(bam_domains.parse_flags(command.split()))
    assert summary.complete and summary.copied == 30
    printed = capsys.readouterr().out
    for line in ("trainA (emotion_happy): 10/10 images, 0 skipped, ranks 1-10",
                 "files: 0 downloaded, 30 copied from the mirror, 0 reused; 0 HTTP "
                 "requests"):
        assert line in printed and line in docs
