"""A tiny database with the BAM schema (and a mirror of small PNGs), for trying the BAM
tool offline: ``python -c 'from tfstyle.bam.demo import create_demo_database; ...'``."""

from __future__ import annotations

import os
import pathlib
import random
import sqlite3

from PIL import Image

from tfstyle.bam.select import ATTRIBUTES


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
