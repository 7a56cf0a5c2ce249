"""A tiny built-in two-domain dataset, so a new user sees CycleGAN work in minutes on a CPU.

Domain A ("happy") and domain B ("scary") echo the BAM emotion seed: the same kind of scene
(a sky, a ground, a sun or moon, round and pointed shapes), drawn bright, warm and
saturated with soft edges in A, and dark, desaturated, red-and-black with hard jagged edges
in B. The images are generated deterministically from a seed with Pillow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HAPPY = {"sky": [(255, 214, 120), (255, 170, 200), (150, 215, 255)],
         "ground": [(120, 210, 110), (250, 235, 150)],
         "shapes": [(255, 120, 40), (255, 60, 120), (255, 220, 0), (90, 200, 90), (80, 160, 255)],
         "sun": (255, 240, 80)}
SCARY = {"sky": [(25, 10, 30), (40, 40, 48), (15, 15, 20)],
         "ground": [(30, 25, 25), (55, 50, 50)],
         "shapes": [(140, 0, 0), (90, 10, 10), (20, 20, 20), (110, 110, 110), (170, 20, 20)],
         "sun": (200, 200, 190)}


def _scene(rng: np.random.Generator, palette: dict, size: int, scary: bool) -> Image.Image:
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    sky = np.array(palette["sky"][rng.integers(len(palette["sky"]))], float)
    horizon = int(size * rng.uniform(0.55, 0.8))
    for y in range(horizon):  # vertical sky gradient
        shade = sky * (0.75 + 0.25 * y / horizon) if not scary else sky * (1.3 - 0.5 * y / horizon)
        draw.line([(0, y), (size, y)], fill=tuple(int(v) for v in np.clip(shade, 0, 255)))
    ground = palette["ground"][rng.integers(len(palette["ground"]))]
    draw.rectangle([0, horizon, size, size], fill=ground)
    r = size * rng.uniform(0.07, 0.12)
    cx, cy = rng.uniform(0.15, 0.85) * size, rng.uniform(0.1, 0.3) * size
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=palette["sun"])
    for _ in range(rng.integers(2, 5)):
        colour = palette["shapes"][rng.integers(len(palette["shapes"]))]
        x, y = rng.uniform(0.1, 0.9) * size, rng.uniform(0.4, 0.9) * size
        s = size * rng.uniform(0.08, 0.16)
        if rng.random() < 0.5:
            draw.ellipse([x - s, y - s, x + s, y + s], fill=colour)
        else:  # a triangle: a tree in A, a spike in B
            tip = s * (1.0 if not scary else 2.2)
            draw.polygon([(x - s, y + s), (x + s, y + s), (x, y - tip)], fill=colour)
    if scary:
        for _ in range(rng.integers(2, 4)):  # jagged cracks
            pts = [(rng.uniform(0, size), rng.uniform(0, size))]
            for _ in range(5):
                pts.append((pts[-1][0] + rng.uniform(-12, 12), pts[-1][1] + rng.uniform(4, 12)))
            draw.line(pts, fill=(0, 0, 0), width=2)
        return image.filter(ImageFilter.SHARPEN)
    return image.filter(ImageFilter.GaussianBlur(1.2))


def make_dataset(root, train: int = 60, test: int = 8, size: int = 80, seed: int = 0) -> Path:
    """Write trainA/ trainB/ testA/ testB/ PNGs under `root` (once; kept if complete)."""
    root = Path(root)
    marker = root / "dataset.json"
    spec = {"train": train, "test": test, "size": size, "seed": seed, "version": 1}
    if marker.is_file() and json.loads(marker.read_text()) == spec:
        return root
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("test", test)):
        for domain, palette, scary in (("A", HAPPY, False), ("B", SCARY, True)):
            folder = root / f"{split}{domain}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                _scene(rng, palette, size, scary).save(folder / f"{i:04d}.png")
    marker.write_text(json.dumps(spec))
    return root
