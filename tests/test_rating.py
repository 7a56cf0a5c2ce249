"""The rating studies: answers through real HTTP requests, sessions and forged posts, load,
the word study, restarts, summaries."""

import html
import http.client
import json
import math
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import numpy as np
import pytest
from PIL import Image

from tfstyle.evaluation import rating, studies, summary
from tfstyle.evaluation.answers import RatingStore

REPO = Path(__file__).resolve().parents[1]
MODELS = ["run_a (CycleGAN)", "run_b (CycleSE)", "run_c (CycleDA)"]
WORDS = ["ふさふさ", "ざらざら", "metallic"]
CONTENTS = ["cat", "cup", "face"]


def png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)


def make_report(root: Path) -> Path:
    """A report folder as evaluation.report writes it: PNGs plus rating_manifest.json."""
    items = []
    for split, count in (("train", 2), ("test", 3)):
        for i in range(count):
            stem = f"{i:04d}"
            source = f"images/real/{split}/A/{stem}.png"
            png(root / source, i)
            target = f"images/real/{split}/B/{stem}.png" if split == "train" else None
            if target:
                png(root / target, 100 + i)
            for k, model in enumerate(MODELS):
                output = f"images/m{k + 1}/{split}/AtoB/{stem}.png"
                png(root / output, 1000 * k + i)
                items.append({"id": f"{split}{i}{k}".ljust(16, "x"), "model": model,
                              "split": split, "direction": "AtoB", "stem": stem,
                              "input": source, "target": target, "output": output})
    (root / studies.MANIFEST).write_text(json.dumps({"version": 1, "models": MODELS,
                                                      "items": items}))
    return root


def make_word_study(root: Path) -> Path:
    """STUDY/<word>/<content>.png as the texture tool writes them, with its contact sheets."""
    for w, word in enumerate(WORDS):
        for c, content in enumerate(CONTENTS):
            png(root / word / f"{content}.png", 10 * w + c)
            png(root / word / f"{content}_clusters.png", 99)
    return root


@pytest.fixture
def report(tmp_path):
    return make_report(tmp_path / "report")


class Server:
    """make_server in a thread on a free port."""

    def __init__(self, study_dir, db, **settings):
        self.server = rating.make_server(study_dir, db, rating.RatingSettings(port=0,
                                                                              **settings))
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.thread.join(10)
        self.server.server_close()
        assert not self.thread.is_alive()


@pytest.fixture
def server(report, tmp_path):
    s = Server(report, tmp_path / "ratings.sqlite")
    yield s
    s.stop()


class Browser:
    """A rater's browser: keeps the session cookie, sends this server's Origin with POSTs (as
    browsers do), follows 303 redirects."""

    def __init__(self, url):
        self.url, self.host = url, urlsplit(url).netloc
        self.cookie = None

    def request(self, method, path, fields=None, headers=None, follow=True, raw=None):
        conn = http.client.HTTPConnection(self.host, timeout=20)
        body = raw if fields is None else urlencode(fields, doseq=True).encode()
        sent = {"Origin": self.url} if method == "POST" else {}
        if body is not None:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookie:
            sent["Cookie"] = f"{rating.COOKIE}={self.cookie}"
        sent.update(headers or {})
        try:
            conn.request(method, path, body=body, headers={k: v for k, v in sent.items()
                                                           if v is not None})
            reply = conn.getresponse()
            data = reply.read()
        finally:
            conn.close()
        cookie = re.match(rf"{rating.COOKIE}=([^;]+)", reply.getheader("Set-Cookie") or "")
        if cookie:
            self.cookie = cookie.group(1)
        if follow and reply.status == 303:
            return self.request("GET", reply.getheader("Location"))
        return reply.status, data, reply

    def get(self, path):
        status, data, _ = self.request("GET", path)
        return status, data.decode()

    def post(self, path, fields, **kwargs):
        status, data, _ = self.request("POST", path, fields, **kwargs)
        return status, data.decode()

    def start(self, rater):
        return self.post("/start", {"csrf": csrf(self.get("/")[1]), "rater": rater})

    def answer(self, page, **fields):
        return self.post("/answer", {"csrf": csrf(page), "item": current_item(page)[0],
                                     **fields})


def csrf(page: str) -> str:
    return re.search(r"name='csrf' value='([^']+)'", page).group(1)


def current_item(page: str) -> tuple[str, str, int, int]:
    """(item id, anonymous label or '', position, total) shown on a rating page."""
    item = re.search(r"name='item' value='([^']+)'", page).group(1)
    label = re.search(r"Generated by (System [A-Z])", page)
    position, total = map(int, re.search(r"item (\d+) of (\d+)", page).groups())
    return item, label.group(1) if label else "", position, total


def db_rows(db, table="answers"):
    conn = sqlite3.connect(db)
    try:
        columns = ("rater, item, model, split, score, created" if table == "answers" else
                   "rater, item, word, content, chosen, candidates")
        return conn.execute(f"SELECT {columns} FROM {table} ORDER BY id").fetchall()
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------
# Statistics
# ------------------------------------------------------------------------------------------


def test_t_quantile_and_wilson_match_tables():
    table = {1: 12.7062047, 2: 4.30265273, 4: 2.77644511, 9: 2.26215716, 30: 2.04227246,
             100: 1.98397152, 10**7: 1.95996434}
    for df, expected in table.items():
        assert summary.t_quantile(0.975, df) == pytest.approx(expected, rel=1e-7)
    assert summary.t_quantile(0.025, 9) == pytest.approx(-2.26215716, rel=1e-7)
    assert summary.t_quantile(0.95, 5) == pytest.approx(2.01504837, rel=1e-7)
    assert summary.t_cdf(0.0, 3) == pytest.approx(0.5)
    # df = 1 is the Cauchy distribution: CDF 0.5 + atan(t) / pi.
    assert summary.t_cdf(2.5, 1) == pytest.approx(0.5 + math.atan(2.5) / math.pi, rel=1e-12)
    with pytest.raises(ValueError):
        summary.t_quantile(1.0, 3)
    # Wilson score intervals (Newcombe 1998, table I: 81/263 -> 0.2553..0.3662).
    assert summary.wilson(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert summary.wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert summary.wilson(0, 0) == (None, None)


# ------------------------------------------------------------------------------------------
# The caricature study
# ------------------------------------------------------------------------------------------


def test_rating_over_http_stores_answers_and_summary_matches(server, report, tmp_path):
    manifest = studies.load_manifest(report)
    alice = Browser(server.url)
    status, page = alice.get("/")
    assert status == 200 and "<form method='post' action='/start'>" in page
    assert "<script" not in page and "似ていない" in page and "やや似ている" in page

    status, page = alice.start("alice")
    assert status == 200 and alice.cookie
    item, label, position, total = current_item(page)
    assert (position, total) == (1, len(manifest.items))
    # Anonymised: neither the model names nor the image paths appear on the page.
    for model in MODELS:
        assert model not in page and model.split()[0] not in page
    assert "images/" not in page and "<script" not in page
    # The images are served by item id; the output is the model's file.
    status, data, reply = alice.request("GET", f"/image/{item}/output")
    assert status == 200 and reply.getheader("Content-Type") == "image/png"
    assert data == manifest.path(manifest.items[item].output).read_bytes()

    # Answer every item of alice and half of bob's through the forms.
    rng = np.random.default_rng(1)
    given, labels = {}, {}
    bob = Browser(server.url)
    for browser, rater, count in ((alice, "alice", total), (bob, "bob", total // 2)):
        page = browser.start(rater)[1]
        seen = []
        for k in range(count):
            item, label, position, _ = current_item(page)
            assert position == k + 1 and item not in seen
            seen.append(item)
            entry = manifest.items[item]
            # The seed's protocol: train outputs beside the illustrator's drawing (not the
            # photo), test outputs alone; each with its question and the seed's labels.
            shown = re.findall(r"/image/[^/]+/(\w+)'", page)
            if entry.split == "train":
                assert shown == ["target", "output"]
            else:
                assert shown == ["output"]
            assert html.escape(studies.QUESTIONS[entry.split]) in page
            assert "(似ていない)" in page and "(似ている)" in page
            assert labels.setdefault((rater, entry.model), label) == label  # stable
            score = int(rng.integers(-2, 3))
            given[(rater, item)] = score
            status, page = browser.answer(page, score=str(score))
            assert status == 200
        if rater == "alice":
            assert "You answered all" in page
            first_order = seen
    assert seen != first_order[:len(seen)]  # bob's order differs from alice's
    assert seen == studies.rater_order("bob", manifest.items)[:len(seen)]
    for rater in ("alice", "bob"):  # one label per model, all different
        assert len({labels[(rater, m)] for m in MODELS}) == len(MODELS)

    rows = db_rows(tmp_path / "ratings.sqlite")
    assert len(rows) == len(given)
    for rater, item, model, split, score, created in rows:
        assert given[(rater, item)] == score
        assert manifest.items[item].model == model and manifest.items[item].split == split
        assert re.match(r"\d{4}-\d\d-\d\dT", created)

    # A changed answer is a new row; the summary uses the latest.
    item = first_order[0]
    status, _ = alice.post("/answer", {"csrf": csrf(alice.get("/")[1]), "item": item,
                                       "score": "-2"})
    assert status == 200
    given[("alice", item)] = -2
    assert len(db_rows(tmp_path / "ratings.sqlite")) == len(rows) + 1

    rows = summary.summarize(server.server.app.store, MODELS)
    assert [(r["model"], r["split"]) for r in rows] == [(m, s) for m in MODELS
                                                        for s in ("train", "test")]
    for row in rows:
        scores = [v for (rater, item), v in given.items()
                  if manifest.items[item].model == row["model"]
                  and manifest.items[item].split == row["split"]]
        assert row["n"] == len(scores) and row["raters"] == 2
        assert row["mean"] == pytest.approx(np.mean(scores))
        half = summary.t_quantile(0.975, len(scores) - 1) * np.std(scores, ddof=1) \
            / np.sqrt(len(scores))
        assert row["ci_low"] == pytest.approx(np.mean(scores) - half)
        assert row["ci_high"] == pytest.approx(np.mean(scores) + half)
    # The seed's layout: a row per model; train similarity, then test completeness.
    lines = summary.format_summary(rows).splitlines()
    header = lines[0]
    assert header.startswith("model") and header.index("train similarity") \
        < header.index("test completeness")
    for model, line in zip(MODELS, lines[2:5]):
        assert line.startswith(model)
        cells = [r for r in rows if r["model"] == model]
        expected = [f"{r['mean']:+.3f}" for r in cells]
        assert [c for c in re.findall(r"[+-]\d\.\d{3}(?!,|\])", line)] == expected


def test_bad_answers_are_rejected(server, report, tmp_path):
    carol = Browser(server.url)
    page = carol.start("carol")[1]
    item = current_item(page)[0]
    good = {"csrf": csrf(page), "item": item, "score": "1"}
    bad = [
        ({**good, "score": "3"}, "score"),
        ({**good, "score": "-3"}, "score"),
        ({**good, "score": "1.5"}, "score"),
        ({**good, "score": "abc"}, "score"),
        ({**good, "score": ""}, "score"),
        ({k: v for k, v in good.items() if k != "score"}, "score"),
        ({**good, "score": ["1", "2"]}, "score"),
        ({**good, "item": "not-an-item"}, "unknown item"),
        ({**good, "item": ""}, "unknown item"),
    ]
    for fields, message in bad:
        status, body = carol.post("/answer", fields)
        assert status == 400, fields
        assert message in body, (fields, body)
    for rater in ("bad rater!", "x" * 65, ""):
        status, body = Browser(server.url).start(rater)
        assert status == 400 and "rater id" in body
    assert db_rows(tmp_path / "ratings.sqlite") == []
    # Not a form, too large, unknown paths and images.
    status, _, _ = carol.request("POST", "/answer", raw=b'{"score": 1}',
                                 headers={"Content-Type": "application/json"})
    assert status == 415
    status, _, _ = carol.request("POST", "/answer", {**good, "pad": "x" * 10000})
    assert status == 413
    for path in (f"/image/{item}/secret", "/image/nope/output", "/image/../../etc/passwd",
                 "/nothing"):
        assert carol.request("GET", path)[0] == 404, path
    assert carol.request("DELETE", "/answer")[0] == 405
    assert db_rows(tmp_path / "ratings.sqlite") == []
    # The valid answer goes through; the store refuses bad scores too.
    assert carol.post("/answer", good)[0] == 200
    assert [r[4] for r in db_rows(tmp_path / "ratings.sqlite")] == [1]
    store = RatingStore(tmp_path / "ratings.sqlite")
    some = studies.load_manifest(report).items[item]
    for score in (3, True, 1.0, "1"):
        with pytest.raises(studies.RatingError):
            store.add("carol", some, score)
    with pytest.raises(sqlite3.IntegrityError):  # the schema enforces the scale as well
        conn = sqlite3.connect(tmp_path / "ratings.sqlite")
        with conn:
            conn.execute("INSERT INTO answers (rater, item, model, split, direction, image, "
                         "score, created) VALUES ('x', 'y', 'm', 'test', 'AtoB', 'i', 7, 't')")
    # A file of one kind of study does not take the answers of another.
    with pytest.raises(studies.RatingError, match="translation study"):
        RatingStore(tmp_path / "ratings.sqlite", "words")


def test_forged_posts_are_refused_and_store_nothing(server, report, tmp_path):
    """CSRF: a page on another site posting to the app (the browser sends its own Origin and,
    with SameSite=Strict, no cookie), posts without a session or token, and a rater id that
    another session holds, are all refused; nothing is stored or claimed."""
    db = tmp_path / "ratings.sqlite"
    victim = Browser(server.url)
    page = victim.start("victim")[1]
    item = current_item(page)[0]
    token = csrf(page)
    evil = "http://evil.example:8080"
    attacker = Browser(server.url)
    attacker_page = attacker.get("/")[1]
    forged = [
        # the classic: a cross-site form, no cookie, the rater named in the form
        dict(cookie=None, origin=evil, fields={"rater": "victim", "item": item, "score": "2"}),
        # cross-site, even with the victim's cookie and token
        dict(cookie=victim.cookie, origin=evil, fields={"csrf": token, "item": item,
                                                         "score": "2"}),
        dict(cookie=victim.cookie, origin="null", fields={"csrf": token, "item": item,
                                                          "score": "2"}),
        # same origin but no token, a wrong token, the attacker's own token
        dict(cookie=victim.cookie, origin=server.url, fields={"item": item, "score": "2"}),
        dict(cookie=victim.cookie, origin=server.url, fields={"csrf": "0" * 64, "item": item,
                                                              "score": "2"}),
        dict(cookie=victim.cookie, origin=server.url, fields={
            "csrf": csrf(attacker_page), "item": item, "score": "2"}),
        # a token but no session cookie
        dict(cookie=None, origin=server.url, fields={"csrf": token, "item": item,
                                                     "score": "2"}),
        # neither Origin nor Referer
        dict(cookie=victim.cookie, origin=None, fields={"csrf": token, "item": item,
                                                        "score": "2"}),
    ]
    for case in forged:
        forger = Browser(server.url)
        forger.cookie = case["cookie"]
        status, body = forger.post("/answer", case["fields"], headers={"Origin": case["origin"]})
        assert status == 403, case
        assert "refused" in body
    # Claiming a rater id: cross-site, or without the start page's token, is refused too,
    # and an id another session holds is refused.
    start = {"csrf": csrf(attacker_page), "rater": "mallory"}
    assert attacker.post("/start", start, headers={"Origin": evil})[0] == 403
    assert attacker.post("/start", {"rater": "mallory"})[0] == 403
    assert attacker.post("/start", {**start, "rater": "victim"})[0] == 409
    assert db_rows(db) == []
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT rater FROM raters").fetchall() == [("victim",)]
    conn.close()

    # The victim's own answer goes through, also with only a same-origin Referer; a rater
    # named in the form is ignored: answers belong to the session.
    status, page = victim.post("/answer", {"csrf": token, "item": item, "score": "1",
                                           "rater": "someone_else"},
                               headers={"Origin": None, "Referer": server.url + "/rate"})
    assert status == 200
    assert [(r[0], r[1], r[4]) for r in db_rows(db)] == [("victim", item, 1)]
    # The attacker can rate as themselves, never as the victim.
    status, page = attacker.post("/start", start)
    assert status == 200
    assert attacker.answer(page, score="-2")[0] == 200
    assert [r[0] for r in db_rows(db)] == ["victim", "mallory"]


def test_200_concurrent_ratings_are_stored_while_stalled_connections_are_dropped(
        report, tmp_path):
    """A classroom posting at once through a server bounded to few connections and threads
    (the rest wait in the listen backlog): every answer is stored once; connections that
    announce a body and stall are dropped after the timeout."""
    db = tmp_path / "load.sqlite"
    s = Server(report, db, threads=4, max_connections=40, backlog=256, timeout=1)
    try:
        store, app = s.server.app.store, s.server.app
        host, port = s.server.server_address
        stalled, opened = [], time.monotonic()
        for _ in range(20):
            sock = socket.create_connection((host, port), timeout=15)
            sock.sendall(b"POST /answer HTTP/1.1\r\nHost: x\r\nContent-Type: application/"
                         b"x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nitem=")
            stalled.append(sock)
        raters = [f"r{i:03d}" for i in range(200)]
        posts = []
        for rater in raters:
            token = store.start_session(rater)
            item = app.next_item(rater)[0].id
            posts.append((rater, item, token, rating.csrf_token(token), int(rater[1:]) % 5 - 2))
        barrier, results = threading.Barrier(len(posts)), {}

        def send(rater, item, token, form_token, score):
            browser = Browser(s.url)
            browser.cookie = token
            barrier.wait()
            try:
                results[rater] = browser.request("POST", "/answer", {
                    "csrf": form_token, "item": item, "score": str(score)}, follow=False)[0]
            except OSError as err:
                results[rater] = repr(err)

        threads = [threading.Thread(target=send, args=p) for p in posts]
        for t in threads:
            t.start()
        closed = []
        for sock in stalled:  # the server closes them: EOF (or a reset) on read
            try:
                assert sock.recv(1024) == b""
            except ConnectionResetError:
                pass
            closed.append(time.monotonic() - opened)
            sock.close()
        for t in threads:
            t.join(60)
        assert results == {rater: 303 for rater in raters}
        rows = db_rows(db)
        assert sorted((r[0], r[1], r[4]) for r in rows) == sorted(
            (rater, item, score) for rater, item, _, _, score in posts)
        assert 1.0 <= min(closed) and max(closed) < 8.0, closed
    finally:
        s.stop()


# ------------------------------------------------------------------------------------------
# The word study
# ------------------------------------------------------------------------------------------


def test_word_study_protocol_and_summary(tmp_path):
    root = make_word_study(tmp_path / "study")
    manifest = studies.write_word_manifest(root)
    assert manifest.kind == "words" and set(manifest.words) == set(WORDS)
    assert manifest.contents == sorted(CONTENTS) and len(manifest.items) == 9
    assert not any("_clusters" in i.image for i in manifest.items.values())
    assert studies.load_manifest(root).items == manifest.items  # what the app reads back
    db = tmp_path / "words.sqlite"
    s = Server(root, db)
    try:
        truths = {}
        for rater, right in (("ann", 9), ("ben", 3)):  # ann right each time, ben 3 times
            browser = Browser(s.url)
            page = browser.start(rater)[1]
            for k in range(9):
                item = manifest.items[current_item(page)[0]]
                offered = re.findall(r"name='choice' value='([^']+)'", page)
                assert offered == manifest.words  # the seed's sheet: every word, fixed order
                assert studies.WORD_QUESTION in page and f"/image/{item.id}/image" in page
                status, data, reply = browser.request("GET", f"/image/{item.id}/image")
                assert data == (root / item.image).read_bytes()
                assert browser.answer(page, choice="nonsense")[0] == 400
                wrong = next(w for w in manifest.words if w != item.word)
                choice = item.word if k < right else wrong
                truths[(rater, item.id)] = choice == item.word
                status, page = browser.answer(page, choice=choice)
                assert status == 200
            assert "You answered all" in page
        rows = db_rows(db, "word_answers")
        assert len(rows) == 18 and all(json.loads(r[5]) == manifest.words for r in rows)
        result = summary.summarize_words(s.server.app.store, manifest.words, manifest.contents)
    finally:
        s.stop()
    assert result["all"]["correct"] == 12 and result["all"]["n"] == 18
    assert result["all"]["raters"] == 2 and result["chance"] == pytest.approx(1 / 3)
    assert result["all"]["accuracy"] == pytest.approx(12 / 18)
    assert (result["all"]["ci_low"], result["all"]["ci_high"]) == summary.wilson(12, 18)
    for word in WORDS:
        picked = [ok for (r, i), ok in truths.items() if manifest.items[i].word == word]
        assert result["words"][word]["all"]["correct"] == sum(picked)
        assert result["words"][word]["all"]["n"] == len(picked) == 6
        for content in CONTENTS:
            cell = result["words"][word]["by_content"][content]
            assert cell["n"] == 2 and cell["correct"] == sum(
                ok for (r, i), ok in truths.items()
                if manifest.items[i].word == word and manifest.items[i].content == content)
    text = summary.format_word_summary(result)
    for word in WORDS:
        assert any(line.startswith(word) for line in text.splitlines())
    assert "all words" in text and "0.667" in text

    # Fewer candidates: the right word and others drawn per rater and item, shuffled.
    item = next(iter(manifest.items.values()))
    offered = studies.word_choices("ann", item, manifest.words, 2)
    assert len(offered) == 2 and item.word in offered
    assert offered == studies.word_choices("ann", item, manifest.words, 2)
    with pytest.raises(studies.RatingError, match="at least two words"):
        studies.write_word_manifest(make_word_study(tmp_path / "one") / WORDS[0])
    with pytest.raises(ValueError, match="--choices"):
        rating.RatingSettings(choices=1)


# ------------------------------------------------------------------------------------------
# The command line
# ------------------------------------------------------------------------------------------


def run_cli(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "tfstyle.rate", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def start_cli(report, db):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "tfstyle.rate", f"--report={report}",
                             f"--db={db}", "--port=0"], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in proc.stdout:
        match = re.search(r"Serving on (http://127\.0\.0\.1:\d+)/", line)
        if match:
            return proc, match.group(1)
    proc.wait(10)
    raise AssertionError(f"the rating server did not start (exit {proc.returncode})")


def test_cli_survives_a_killed_server(report, tmp_path):
    db = tmp_path / "cli.sqlite"
    proc, url = start_cli(report, db)
    try:
        dave = Browser(url)
        page = dave.start("dave")[1]
        answered = []
        for score in (2, -1, 0):
            item = current_item(page)[0]
            status, page = dave.answer(page, score=str(score))
            assert status == 200
            answered.append((item, score))
    finally:
        proc.kill()  # no clean shutdown: committed answers and sessions must survive
        proc.wait(10)
    proc, url = start_cli(report, db)
    try:
        dave.url, dave.host = url, urlsplit(url).netloc
        page = dave.get("/rate")[1]
        item, _, position, total = current_item(page)
        assert position == 4 and item not in [i for i, _ in answered]
        assert [(r[1], r[4]) for r in db_rows(db)] == answered
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0]
    assert "answers are saved" in out

    result = run_cli(f"--db={db}", "--summary", f"--report={report}")
    assert result.returncode == 0, result.stderr
    assert "3 answers stored" in result.stdout
    manifest = studies.load_manifest(report)
    for model in MODELS:
        scores = [s for i, s in answered if manifest.items[i].model == model]
        line = next(x for x in result.stdout.splitlines() if x.startswith(model))
        if scores:
            assert f"{np.mean(scores):+.3f}" in line

    bad = run_cli(f"--db={db}", f"--report={tmp_path}")
    assert bad.returncode != 0 and "--report" in bad.stderr
    bad = run_cli(f"--db={tmp_path}/none.sqlite", "--summary")
    assert bad.returncode != 0 and "--db" in bad.stderr
    bad = run_cli(f"--db={db}", f"--report={report}", "--port=70000")
    assert bad.returncode != 0 and "--port" in bad.stderr
    (tmp_path / "notes.txt").write_text("not a database " * 100)
    for args in ([f"--report={report}"], ["--summary"]):
        bad = run_cli(f"--db={tmp_path / 'notes.txt'}", *args)
        assert bad.returncode != 0 and "--db" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_word_study(tmp_path):
    root = make_word_study(tmp_path / "study")
    result = run_cli(f"--word_study={root}")
    assert result.returncode == 0, result.stderr
    assert "9 images of 3 words" in result.stdout and (root / studies.MANIFEST).is_file()
    manifest = studies.load_manifest(root)
    store = RatingStore(tmp_path / "words.sqlite", "words")
    for item in manifest.items.values():
        store.start_session(f"r_{item.id}")
        store.add_choice(f"r_{item.id}", item, item.word, manifest.words)
    result = run_cli(f"--db={tmp_path / 'words.sqlite'}", "--summary")
    assert result.returncode == 0, result.stderr
    assert "9 answers stored" in result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["word", *sorted(CONTENTS)]
    assert any(line.startswith("all words") and "1.000" in line for line in lines)
    bad = run_cli(f"--word_study={tmp_path / 'nothing'}")
    assert bad.returncode != 0 and "--word_study" in bad.stderr
    # A translation report's file does not take a word study's answers.
    bad = run_cli(f"--db={tmp_path / 'words.sqlite'}", "--summary",
                  f"--report={make_report(tmp_path / 'report')}")
    assert bad.returncode != 0 and "--db" in bad.stderr
