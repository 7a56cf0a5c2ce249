"""The rating study app: answers through real HTTP requests, validation, restarts, summary."""

import json
import math
import os
import re
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfstyle.evaluation import rating

REPO = Path(__file__).resolve().parents[1]
MODELS = ["run_a (CycleGAN)", "run_b (CycleSE)", "run_c (CycleDA)"]


def make_report(root: Path) -> Path:
    """A report folder as tfstyle.report writes it: PNGs plus rating_manifest.json."""
    rng = np.random.default_rng(0)
    items = []

    def png(rel):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)
        return rel

    for split, count in (("train", 2), ("test", 3)):
        for i in range(count):
            stem = f"{i:04d}"
            source = png(f"images/real/{split}/A/{stem}.png")
            target = png(f"images/real/{split}/B/{stem}.png") if split == "train" else None
            for k, model in enumerate(MODELS):
                items.append({"id": f"{split}{i}{k}".ljust(16, "x"), "model": model,
                              "split": split, "direction": "AtoB", "stem": stem,
                              "input": source, "target": target,
                              "output": png(f"images/m{k + 1}/{split}/AtoB/{stem}.png")})
    (root / rating.MANIFEST).write_text(json.dumps({"version": 1, "models": MODELS,
                                                     "items": items}))
    return root


@pytest.fixture
def report(tmp_path):
    return make_report(tmp_path / "report")


class Server:
    """make_server in a thread on a free port."""

    def __init__(self, report_dir, db):
        self.server = rating.make_server(report_dir, db, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def server(report, tmp_path):
    s = Server(report, tmp_path / "ratings.sqlite")
    yield s
    s.stop()


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read(), r.headers


def post(base, fields):
    """POST a form; returns (status, body) of the final response (a 303 is followed)."""
    data = urllib.parse.urlencode(fields, doseq=True).encode()
    request = urllib.request.Request(base + "/answer", data=data, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def current_item(page: str) -> tuple[str, str, int, int]:
    """(item id, anonymous label, position, total) shown on a rating page."""
    item = re.search(r"name='item' value='([^']+)'", page).group(1)
    label = re.search(r"Output of (System [A-Z])", page).group(1)
    position, total = map(int, re.search(r"item (\d+) of (\d+)", page).groups())
    return item, label, position, total


def db_rows(db):
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT rater, item, model, split, score, created FROM answers "
                            "ORDER BY id").fetchall()
    finally:
        conn.close()


def test_t_quantile_matches_tables():
    table = {1: 12.7062047, 2: 4.30265273, 4: 2.77644511, 9: 2.26215716, 30: 2.04227246,
             100: 1.98397152, 10**7: 1.95996434}
    for df, expected in table.items():
        assert rating.t_quantile(0.975, df) == pytest.approx(expected, rel=1e-7)
    assert rating.t_quantile(0.025, 9) == pytest.approx(-2.26215716, rel=1e-7)
    assert rating.t_quantile(0.95, 5) == pytest.approx(2.01504837, rel=1e-7)
    assert rating.t_cdf(0.0, 3) == pytest.approx(0.5)
    # df = 1 is the Cauchy distribution: CDF 0.5 + atan(t) / pi.
    assert rating.t_cdf(2.5, 1) == pytest.approx(0.5 + math.atan(2.5) / math.pi, rel=1e-12)
    with pytest.raises(ValueError):
        rating.t_quantile(1.0, 3)


def test_rating_over_http_stores_answers_and_summary_matches(server, report, tmp_path):
    manifest = rating.load_manifest(report)
    status, page, headers = get(server.url + "/")
    assert status == 200 and b"<form" in page and b"<script" not in page

    status, body, headers = get(server.url + "/rate?rater=alice")
    page = body.decode()
    assert status == 200 and "rater=alice" in headers["Set-Cookie"]
    item, label, position, total = current_item(page)
    assert (position, total) == (1, len(manifest.items))
    # Anonymised: neither the model names nor the image paths appear on the page.
    for model in MODELS:
        assert model not in page and model.split()[0] not in page
    assert "images/" not in page and "<script" not in page
    # The images are served by item id; the output is the model's file.
    status, data, headers = get(f"{server.url}/image/{item}/output")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert data == manifest.path(manifest.items[item].output).read_bytes()

    # Answer every item of alice and half of bob's through the forms.
    rng = np.random.default_rng(1)
    given = {}
    labels = {}
    for rater, count in (("alice", total), ("bob", total // 2)):
        page = get(f"{server.url}/rate?rater={rater}")[1].decode()
        seen = []
        for k in range(count):
            item, label, position, _ = current_item(page)
            assert position == k + 1 and item not in seen
            seen.append(item)
            model = manifest.items[item].model
            assert labels.setdefault((rater, model), label) == label  # stable per rater
            score = int(rng.integers(-2, 3))
            given[(rater, item)] = score
            status, page = post(server.url, {"rater": rater, "item": item, "score": str(score)})
            assert status == 200
        if rater == "alice":
            assert "You rated all" in page
            first_order = seen
    assert seen != first_order[:len(seen)]  # bob's order differs from alice's
    assert seen == rating.rater_order("bob", manifest.items)[:len(seen)]
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
    assert post(server.url, {"rater": "alice", "item": item, "score": "-2"})[0] == 200
    given[("alice", item)] = -2
    assert len(db_rows(tmp_path / "ratings.sqlite")) == len(rows) + 1

    summary = rating.summarize(server.server.app.store, MODELS)
    assert [(r["model"], r["split"]) for r in summary] == [(m, s) for m in MODELS
                                                           for s in ("train", "test")]
    for row in summary:
        scores = [v for (rater, item), v in given.items()
                  if manifest.items[item].model == row["model"]
                  and manifest.items[item].split == row["split"]]
        assert row["n"] == len(scores)
        assert row["mean"] == pytest.approx(np.mean(scores))
        half = rating.t_quantile(0.975, len(scores) - 1) * np.std(scores, ddof=1) \
            / np.sqrt(len(scores))
        assert row["ci_low"] == pytest.approx(np.mean(scores) - half)
        assert row["ci_high"] == pytest.approx(np.mean(scores) + half)
    text = rating.format_summary(summary)
    for model in MODELS:
        assert model in text


def test_bad_answers_are_rejected(server, report, tmp_path):
    item = next(iter(rating.load_manifest(report).items))
    good = {"rater": "carol", "item": item, "score": "1"}
    bad = [
        ({**good, "score": "3"}, "score"),
        ({**good, "score": "-3"}, "score"),
        ({**good, "score": "1.5"}, "score"),
        ({**good, "score": "abc"}, "score"),
        ({**good, "score": ""}, "score"),
        ({"rater": "carol", "item": item}, "score"),
        ({**good, "score": ["1", "2"]}, "score"),
        ({**good, "item": "not-an-item"}, "unknown item"),
        ({**good, "item": ""}, "unknown item"),
        ({**good, "rater": "bad rater!"}, "rater id"),
        ({**good, "rater": "x" * 65}, "rater id"),
    ]
    for fields, message in bad:
        status, body = post(server.url, fields)
        assert status == 400, fields
        assert message in body, (fields, body)
    assert db_rows(tmp_path / "ratings.sqlite") == []
    # Not a form, too large, unknown paths and images.
    request = urllib.request.Request(server.url + "/answer", data=b'{"score": 1}',
                                     method="POST", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 415
    big = urllib.parse.urlencode({**good, "pad": "x" * 10000}).encode()
    request = urllib.request.Request(server.url + "/answer", data=big, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 413
    for path in (f"/image/{item}/secret", "/image/nope/output", "/image/../../etc/passwd",
                 "/nothing"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(server.url + path, timeout=10)
        assert err.value.code == 404, path
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(server.url + "/rate?rater=no%20spaces", timeout=10)
    assert err.value.code == 400
    assert db_rows(tmp_path / "ratings.sqlite") == []
    # The valid answer goes through; the store refuses bad scores too.
    assert post(server.url, good)[0] == 200
    assert [r[4] for r in db_rows(tmp_path / "ratings.sqlite")] == [1]
    store = rating.RatingStore(tmp_path / "ratings.sqlite")
    some = rating.load_manifest(report).items[item]
    for score in (3, True, 1.0, "1"):
        with pytest.raises(rating.RatingError):
            store.add("carol", some, score)
    with pytest.raises(sqlite3.IntegrityError):  # the schema enforces the scale as well
        conn = sqlite3.connect(tmp_path / "ratings.sqlite")
        with conn:
            conn.execute("INSERT INTO answers (rater, item, model, split, direction, image, "
                         "score, created) VALUES ('x', 'y', 'm', 'test', 'AtoB', 'i', 7, 't')")


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
        page = get(url + "/rate?rater=dave")[1].decode()
        answered = []
        for score in (2, -1, 0):
            item = current_item(page)[0]
            status, page = post(url, {"rater": "dave", "item": item, "score": str(score)})
            assert status == 200
            answered.append((item, score))
    finally:
        proc.kill()  # no clean shutdown: committed answers must survive
        proc.wait(10)
    proc, url = start_cli(report, db)
    try:
        page = get(url + "/rate?rater=dave")[1].decode()
        item, _, position, total = current_item(page)
        assert position == 4 and item not in [i for i, _ in answered]
        assert [(r[1], r[4]) for r in db_rows(db)] == answered
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0]
    assert "answers are saved" in out

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    summary = subprocess.run([sys.executable, "-m", "tfstyle.rate", f"--db={db}", "--summary",
                              f"--report={report}"], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=60)
    assert summary.returncode == 0, summary.stderr
    assert "3 answers stored" in summary.stdout
    manifest = rating.load_manifest(report)
    for model in MODELS:
        scores = [s for i, s in answered if manifest.items[i].model == model]
        line = next(x for x in summary.stdout.splitlines() if x.startswith(model))
        if scores:
            assert f"{np.mean(scores):+.3f}" in line

    bad = subprocess.run([sys.executable, "-m", "tfstyle.rate", f"--db={db}",
                          f"--report={tmp_path}"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode != 0 and "--report" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "tfstyle.rate", f"--db={tmp_path}/none.sqlite",
                          "--summary"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode != 0 and "--db" in bad.stderr
