"""What an exported artifact is checked against: the Keras generator on real images.

Agreement is the PSNR, in dB, of the artifact's output against the Keras generator's output
for the same input, both as float pixels in [0, 255]:

    PSNR = 10 log10(255^2 / MSE)      (capped at PSNR_CAP: identical outputs give the cap)

The evaluation images come from the model's training data root: the source domain's test
folder (testA for AtoB, testB for BtoA), or its train folder when there is no test folder.
Full-int8 calibration uses the source domain's train folder.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfstyle.core.images import (
    ImageError,
    from_model_range,
    list_images,
    read_image,
    resize,
    to_model_range,
)

#: PSNR reported for outputs that agree to float rounding (MSE ~ 0).
PSNR_CAP = 100.0

#: Minimum agreement (dB) with the Keras generator for each artifact kind; see docs/export.md
#: for the measurements behind them. "savedmodel" covers both serving signatures.
DEFAULT_MIN_PSNR = {
    "savedmodel": 45.0,
    "float32": 45.0,
    "float16": 40.0,
    "dynamic": 25.0,
    "int8": 20.0,
}

#: The same for style-transfer models (tfstyle.deploy.style_model): their LiteRT files whiten
#: by Newton-Schulz iterations instead of an eigen-decomposition, an approximation on top of
#: the precision of the variant, so float32 and float16 are held to 35 dB rather than 45 / 40
#: (docs/export.md, "Style-transfer models", for the measurements). Full int8 quantizes the
#: whitening too and does not run (the interpreter refuses a zero divisor).
DEFAULT_MIN_PSNR_STYLIZER = {**DEFAULT_MIN_PSNR, "float32": 35.0, "float16": 35.0}

#: The generator's source domain for each direction.
SOURCE_DOMAIN = {"AtoB": "A", "BtoA": "B"}


class ExportError(RuntimeError):
    """An export that could not be made or that was refused; the message says which and why."""


def first_line(err: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def psnr(output, reference, peak: float = 255.0) -> float:
    """PSNR (dB) of `output` against `reference`, float pixels in [0, peak]; capped. NaN when
    either holds a NaN, -inf when the error is infinite."""
    output = np.asarray(output, np.float64)
    reference = np.asarray(reference, np.float64)
    if output.shape != reference.shape:
        raise ValueError(f"shapes differ: {output.shape} vs {reference.shape}")
    with np.errstate(invalid="ignore", over="ignore"):
        mse = float(np.mean((output - reference) ** 2))
    if math.isnan(mse):
        return math.nan
    if math.isinf(mse):
        return -math.inf
    if mse <= peak * peak * 10 ** (-PSNR_CAP / 10):
        return PSNR_CAP
    return 10.0 * math.log10(peak * peak / mse)


def _number(value) -> float | None:
    """`value` rounded for the records, or None when it is not finite (JSON has no NaN)."""
    return round(float(value), 2) if math.isfinite(value) else None


def agreement(outputs, references) -> dict:
    """Agreement of a list of outputs with their references: the worst image's PSNR (what
    thresholds are applied to; None when an output holds NaN or inf, which no threshold
    accepts), the mean PSNR and the largest absolute pixel error."""
    pairs = list(zip(outputs, references, strict=True))
    if not pairs:
        raise ValueError("no images to compare")
    values = np.array([psnr(o, r) for o, r in pairs])
    with np.errstate(invalid="ignore"):
        max_abs = np.max([np.max(np.abs(np.asarray(o, np.float64) - np.asarray(r, np.float64)))
                          for o, r in pairs])
    return {"psnr_db": _number(np.min(values)), "mean_psnr_db": _number(np.mean(values)),
            "max_abs_error": None if not math.isfinite(max_abs) else round(float(max_abs), 4),
            "images": len(values)}


def passes(value: float | None, threshold: float) -> bool:
    """Whether an agreement `value` meets `threshold`: never for None or NaN."""
    return value is not None and value >= threshold


def center_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize (bicubic) so the shorter side is `size`, then crop the centre size x size."""
    h, w = image.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    image = resize(image, (nh, nw))
    top, left = (nh - size) // 2, (nw - size) // 2
    return image[top:top + size, left:left + size]


def _spread(items: list, n: int) -> list:
    """`n` items spread evenly over `items` (all of them if there are fewer)."""
    if n >= len(items):
        return list(items)
    return [items[int(i * len(items) / n)] for i in range(n)]


#: Images smaller than this on a side are not used for checks or calibration.
MIN_IMAGE_SIDE = 16


def read_some(paths: list[Path], n: int, limits=None) -> tuple[list[np.ndarray], list[Path]]:
    """Up to `n` readable images spread over `paths` (unreadable or tiny files, and files
    over the ImageLimits `limits`, skipped)."""
    images, used = [], []
    candidates = _spread(paths, n)
    candidates += [p for p in paths if p not in candidates]
    for path in candidates:
        if len(images) == n:
            break
        try:
            image = read_image(path, limits)
        except ImageError:
            continue  # a stray unreadable file in the data root is skipped
        if min(image.shape[:2]) >= MIN_IMAGE_SIDE:
            images.append(image)
            used.append(path)
    return images, used


def _domain_folders(dataroot, domain: str, splits) -> list[Path]:
    root = Path(dataroot)
    return [root / f"{split}{domain}" for split in splits if (root / f"{split}{domain}").is_dir()]


def image_folders(dataroot, domain: str, splits=("test", "train")) -> list[Path]:
    """The data root's <split><domain> folders that hold image files, in `splits` order."""
    return [f for f in _domain_folders(dataroot, domain, splits) if list_images(f)]


def evaluation_images(dataroot, domain: str, n: int,
                      limits=None) -> tuple[list[np.ndarray], Path]:
    """Up to `n` RGB uint8 images of `domain` ('A' or 'B'): from test<domain>, else
    train<domain>; returns (images, folder). Raises ExportError if there are none."""
    for folder in _domain_folders(dataroot, domain, ("test", "train")):
        images, _ = read_some(list_images(folder), n, limits)
        if images:
            return images, folder
    raise ExportError(
        f"no readable images in {Path(dataroot)}/test{domain} or train{domain} to check the "
        "export against the Keras model (set --dataroot to the training data root)")


def calibration_images(dataroot, domain: str, n: int, size: int,
                       limits=None) -> tuple[np.ndarray, Path]:
    """`n` real training images of `domain` (train<domain>), centre squares of `size`, as
    float32 [n, size, size, 3] in [0, 255], and the folder they came from."""
    folders = _domain_folders(dataroot, domain, ("train",))
    if folders:
        images, _ = read_some(list_images(folders[0]), n, limits)
        if images:
            batch = np.stack([center_square(im, size) for im in images]).astype(np.float32)
            return batch, folders[0]
    raise ExportError(
        f"no readable images in {Path(dataroot)}/train{domain} to calibrate the full-int8 "
        "model (set --dataroot to the training data root, or leave int8 out of --tflite)")


class KerasReference:
    """The Keras generator as the reference: float pixels [0, 255] in, float pixels out.

    Images of any size are reflection-padded to a multiple of 4 (of the model's `multiple`
    if it has one) and cropped back, as `tfstyle.cyclegan.translator.Translator` does for one tile.
    """

    def __init__(self, generator):
        import tensorflow as tf

        self.multiple = getattr(generator, "multiple", 4)
        self._run = tf.function(
            lambda x: generator(x, training=False),
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """[B, H, W, 3] or [H, W, 3] float/uint8 pixels in [0, 255] -> float32 [0, 255]."""
        pixels = np.asarray(pixels, np.float32)
        single = pixels.ndim == 3
        x = pixels[None] if single else pixels
        h, w = x.shape[1:3]
        ph, pw = -h % self.multiple, -w % self.multiple
        x = to_model_range(x)
        if ph or pw:
            x = np.pad(x, [(0, 0), (0, ph), (0, pw), (0, 0)], mode="reflect")
        y = self._run(x).numpy()[:, :h, :w]
        y = np.clip(from_model_range(y), 0.0, 255.0)
        return y[0] if single else y


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p90_ms: float
    runs: int

    def as_dict(self) -> dict:
        return {"median_ms": round(self.median_ms, 3), "p90_ms": round(self.p90_ms, 3),
                "runs": self.runs}


def measure_latency(fn, runs: int = 10, warmup: int = 2) -> Latency:
    """Wall-clock latency of `fn()` (no arguments): median and 90th percentile of `runs`
    calls after `warmup` untimed calls."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return Latency(float(np.median(times)), float(np.percentile(times, 90)), runs)
