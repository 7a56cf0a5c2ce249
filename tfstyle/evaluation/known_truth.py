"""A translation task whose truth is known, and how close a translator gets to it.

Unpaired image translation is normally judged by distribution scores (FID, KID) because the
"right" translation of a test image is unknown. Here it is known by construction:

- domain A is tiles of real photos;
- domain B is *other* tiles of the same photos with a fixed photographic look applied
  (`apply_look`: a film-like grade, i.e. a per-pixel colour and contrast change);
- the truth of a translation G(x) of a test tile x is the look applied to x.

The split is unpaired (no tile appears in two of trainA/, trainB/, testA/), so a translator
learns the look only from the two distributions, as in a real unpaired task, and is then
scored against the truth:

    closed gap = 1 - L1(G(x), truth) / L1(x, truth)

(0 for a translator that returns its input, 1 for a perfect one, negative for one that does
worse than doing nothing; L1 summed over the whole test set), plus PSNR and SSIM against the
truth (`tfstyle.evaluation.metrics`).

The photos are ones that installed packages ship, so nothing is downloaded: scikit-image's
sample photos (`pip install scikit-image`, a benchmark-only extra) when it is installed, and
matplotlib's (a tfstyle dependency) always.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfstyle.core.data import DataError
from tfstyle.core.files import write_json_atomic
from tfstyle.core.images import list_images, read_image, resize, write_image
from tfstyle.evaluation import metrics

# (package, file under the package's data folder): colour photographs only.
PHOTOS = (
    ("skimage", "data/astronaut.png"),
    ("skimage", "data/chelsea.png"),
    ("skimage", "data/coffee.png"),
    ("skimage", "data/ihc.png"),
    ("skimage", "data/motorcycle_left.png"),
    ("skimage", "data/rocket.jpg"),
    ("skimage", "data/hubble_deep_field.jpg"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
)

SPLITS = ("trainA", "trainB", "testA")
TRUTH = "testA_truth"
MANIFEST = "task.json"


def photo_paths() -> list[Path]:
    """The colour photos of PHOTOS that the installed packages ship (found without importing
    the packages)."""
    found = []
    for package, relative in PHOTOS:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        path = Path(next(iter(spec.submodule_search_locations))) / relative
        if path.is_file():
            found.append(path)
    return found


def apply_look(pixels: np.ndarray) -> np.ndarray:
    """The fixed look of domain B on RGB uint8 pixels [..., 3] -> uint8: a film-like grade,
    per pixel: 35% desaturation, an S-shaped contrast curve, teal shadows and orange
    highlights (split toning) and lifted blacks."""
    x = np.asarray(pixels, dtype=np.float64) / 255.0
    lum = (x @ np.array([0.299, 0.587, 0.114]))[..., None]
    x = lum + 0.65 * (x - lum)                                       # desaturation
    x = x - 0.8 * np.sin(2 * np.pi * x) / (2 * np.pi)               # contrast S-curve
    x = x + (lum - 0.5) * np.array([0.3, 0.05, -0.3]) + np.array([0.0, 0.02, 0.04])
    x = 0.07 + 0.9 * x                                               # lifted blacks
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _tiles(image: np.ndarray, tile: int, tiles_across: int) -> list[np.ndarray]:
    """Non-overlapping tile x tile crops of `image` resized so that its shorter side holds
    `tiles_across` tiles."""
    h, w = image.shape[:2]
    scale = tile * tiles_across / min(h, w)
    image = resize(image, (max(tile, round(h * scale)), max(tile, round(w * scale))))
    h, w = image.shape[:2]
    return [image[i:i + tile, j:j + tile] for i in range(0, h - tile + 1, tile)
            for j in range(0, w - tile + 1, tile)]


def make_task(root, tile: int = 56, tiles_across: int = 5, test_share: float = 0.2,
              photos=None, seed: int = 0) -> dict:
    """Write the known-truth task under `root` and return its manifest (also root/task.json).

    Every photo (default: `photo_paths()`) is cut into tile x tile tiles; the tiles are
    shuffled with `seed` and dealt out: `test_share` of them to testA/ (with their truth,
    the look applied, under testA_truth/ with the same names), the rest in halves to trainA/
    (as they are) and trainB/ (with the look). A folder that already holds the same task
    (same manifest) is kept as it is.
    """
    root = Path(root)
    paths = [Path(p) for p in (photo_paths() if photos is None else photos)]
    if not paths:
        raise DataError("no sample photos found: pip install scikit-image (matplotlib's "
                        "sample photo alone is too little)")
    if tile % 4 or tile < 8:
        raise ValueError(f"tile must be a multiple of 4 and at least 8, got {tile}")
    if not 0 < test_share < 1:
        raise ValueError(f"test_share must be in (0, 1), got {test_share}")
    spec = {"tile": tile, "tiles_across": tiles_across, "test_share": test_share,
            "seed": seed, "photos": [p.name for p in paths], "look": apply_look.__doc__}
    manifest_path = root / MANIFEST
    if manifest_path.is_file():
        previous = json.loads(manifest_path.read_text())
        if previous.get("spec") == spec:
            return previous
        raise DataError(f"{root}: holds a different known-truth task; use another folder")
    tiles = [(f"{p.stem}_{i:03d}", t) for p in paths
             for i, t in enumerate(_tiles(read_image(p), tile, tiles_across))]
    order = np.random.default_rng(seed).permutation(len(tiles))
    n_test = max(1, round(len(tiles) * test_share))
    n_train = (len(tiles) - n_test) // 2
    if n_train < 1:
        raise DataError(f"{len(tiles)} tiles of {tile} px are too few for a task")
    dealt = {"testA": order[:n_test], "trainA": order[n_test:n_test + n_train],
             "trainB": order[n_test + n_train:n_test + 2 * n_train]}
    for split, indices in dealt.items():
        for index in indices:
            name, pixels = tiles[index]
            write_image(root / split / f"{name}.png",
                        apply_look(pixels) if split == "trainB" else pixels)
            if split == "testA":
                write_image(root / TRUTH / f"{name}.png", apply_look(pixels))
    manifest = {"spec": spec, **{split: len(idx) for split, idx in dealt.items()}}
    write_json_atomic(manifest_path, manifest)
    return manifest


@dataclass
class TestSet:
    """The test tiles of a task: names, inputs and truths (RGB uint8 [N, T, T, 3])."""
    names: list[str]
    inputs: np.ndarray
    truths: np.ndarray


def load_test_set(root) -> TestSet:
    """testA/ and testA_truth/ of a task written by `make_task`."""
    root = Path(root)
    paths = list_images(root / "testA")
    if not paths:
        raise DataError(f"{root / 'testA'}: no test images (write the task with make_task)")
    truths = []
    for path in paths:
        truth = root / TRUTH / path.name
        if not truth.is_file():
            raise DataError(f"{truth}: missing (the truth of {path})")
        truths.append(read_image(truth))
    return TestSet([p.stem for p in paths], np.stack([read_image(p) for p in paths]),
                   np.stack(truths))


def scores(inputs, outputs, truths) -> dict:
    """The known-truth scores of `outputs` (the translations of `inputs`) against `truths`,
    all RGB uint8 [N, H, W, 3]: closed_gap, l1 and l1_input (pixels in [0, 1]), psnr and
    ssim (means over images), psnr_input and ssim_input (the input's, for comparison)."""
    inputs, outputs, truths = (np.asarray(v) for v in (inputs, outputs, truths))
    if not inputs.shape == outputs.shape == truths.shape or inputs.ndim != 4:
        raise ValueError(f"inputs, outputs and truths must be equal [N, H, W, 3] arrays, got "
                         f"{inputs.shape}, {outputs.shape}, {truths.shape}")
    l1 = metrics.l1(outputs, truths)
    l1_input = metrics.l1(inputs, truths)
    return {
        "closed_gap": 1.0 - l1 / l1_input if l1_input > 0 else float("nan"),
        "l1": l1, "l1_input": l1_input,
        "psnr": metrics.mean_of(metrics.psnr, list(outputs), list(truths)),
        "psnr_input": metrics.mean_of(metrics.psnr, list(inputs), list(truths)),
        "ssim": metrics.mean_ssim(list(outputs), list(truths)),
        "ssim_input": metrics.mean_ssim(list(inputs), list(truths)),
    }


def grid(inputs, outputs, truths, count: int = 8, zoom: int = 2, gap: int = 2) -> np.ndarray:
    """A picture of `count` test tiles (evenly spread over the set): rows input / output /
    truth, each tile enlarged `zoom` times by pixel repetition (so checkerboard patterns
    stay visible), white gaps between. RGB uint8."""
    picked = np.unique(np.linspace(0, len(inputs) - 1, count).round().astype(int))
    rows = []
    for images in (inputs, outputs, truths):
        images = np.asarray(images)[picked]
        big = images.repeat(zoom, axis=1).repeat(zoom, axis=2)
        n, h, w, _ = big.shape
        row = np.full((h, n * (w + gap) - gap, 3), 255, np.uint8)
        for i, image in enumerate(big):
            row[:, i * (w + gap):i * (w + gap) + w] = image
        rows.append(row)
    spacer = np.full((gap, rows[0].shape[1], 3), 255, np.uint8)
    return np.concatenate([rows[0], spacer, rows[1], spacer, rows[2]], axis=0)
