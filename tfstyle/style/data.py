"""Content images of the auto-encoder's training (MS-COCO in the seed, or the built-in demo
scenes), and the built-in style image of the demos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image, ImageDraw, ImageFilter

from tfstyle.core import synthetic
from tfstyle.core.data import DataError, replica_slots, slot_dataset
from tfstyle.core.images import DEFAULT_LIMITS, IMAGE_EXTENSIONS, ImageError, read_image


def list_content_images(folder) -> list[Path]:
    """Image files under `folder` (recursively, by extension), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"--content_dir={folder}: no such folder")
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataError(f"--content_dir={folder}: holds no image files")
    return files


def random_crop(image: np.ndarray, load_size: int, crop_size: int, offset) -> np.ndarray:
    """Resize the shorter side to max(load_size, crop_size) (bicubic, aspect kept), then crop
    crop_size x crop_size at relative offset (u, v) in [0, 1)^2. Only the crop is resampled
    (from its box in the source), so a panorama of extreme aspect ratio costs no more memory
    than a square image."""
    h, w = image.shape[:2]
    short = max(load_size, crop_size)
    scale = short / min(h, w)
    nh, nw = max(crop_size, round(h * scale)), max(crop_size, round(w * scale))
    top = int(offset[0] * (nh - crop_size + 1))
    left = int(offset[1] * (nw - crop_size + 1))
    sy, sx = h / nh, w / nw  # source pixels per resized pixel
    box = (left * sx, top * sy, (left + crop_size) * sx, (top + crop_size) * sy)
    return np.asarray(Image.fromarray(image).resize((crop_size, crop_size), Image.BICUBIC,
                                                    box=box))


class ContentData:
    """Content images decoded on the fly (MS-COCO does not fit a cache): every epoch is a
    permutation of the files and a crop offset per slot, drawn from (seed, epoch) with numpy,
    so a resumed run sees the data the interrupted one would have seen, and each
    tf.distribute replica reads its slice of the same global batch as a one-device run.
    An unreadable file (or one over the ImageLimits `limits`) is replaced by the next
    readable one in the file list (a warning names it once) and counted in `skipped`."""

    def __init__(self, files, load_size: int, crop_size: int, seed: int, limits=None):
        self.files = [Path(f) for f in files]
        if not self.files:
            raise DataError("no content images")
        self.load_size, self.crop_size, self.seed = load_size, crop_size, seed
        self.limits = limits or DEFAULT_LIMITS  # ImageLimits, or settings that extend it
        self.skipped: dict[str, str] = {}

    def __len__(self):
        return len(self.files)

    def steps_per_epoch(self, global_batch: int) -> int:
        steps = len(self.files) // global_batch
        if steps == 0:
            raise DataError(f"{len(self.files)} content images are fewer than the global "
                            f"batch size {global_batch}")
        return steps

    def plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(file order [N], crop offsets [N, 2] in [0, 1)) of `epoch`."""
        rng = np.random.default_rng([self.seed, epoch])
        return rng.permutation(len(self.files)), rng.random((len(self.files), 2))

    def load(self, index: int, offset) -> np.ndarray:
        """uint8 crop [crop, crop, 3] of file `index` (or of the next readable one)."""
        for k in range(len(self.files)):
            path = self.files[(index + k) % len(self.files)]
            if str(path) in self.skipped:
                continue
            try:
                return random_crop(read_image(path, self.limits), self.load_size,
                                   self.crop_size, offset)
            except (ImageError, OSError) as err:
                self.skipped[str(path)] = str(err)
                logging.warning("skipped %s: %s", path, err)
        raise DataError("none of the content images could be read: "
                        + "; ".join(list(self.skipped.values())[:3]))

    def dataset(self, epoch: int, start_step: int, global_batch: int,
                input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """Per-replica batches, uint8 [b, crop, crop, 3], of one epoch from `start_step` on
        (with an input context: this pipeline's replicas, in replica order)."""
        slots = replica_slots(self.steps_per_epoch(global_batch), global_batch, start_step,
                              input_context)
        per_replica = slots.shape[1]
        order, offsets = self.plan(epoch)

        def load(batch_slots):
            return np.stack([self.load(int(order[s]), offsets[s]) for s in batch_slots])

        def to_tensor(batch_slots):
            x = tf.numpy_function(load, [batch_slots], tf.uint8, stateful=False)
            return tf.ensure_shape(x, (per_replica, self.crop_size, self.crop_size, 3))

        return slot_dataset(slots, to_tensor)


def builtin_style_image(size: int = 256, seed: int = 0) -> np.ndarray:
    """A built-in style image for demos: bold brush-like strokes in a saturated palette on a
    warm ground, drawn with Pillow (deterministic from seed). RGB uint8 [size, size, 3]."""
    rng = np.random.default_rng(seed)
    palette = [(230, 57, 70), (29, 53, 87), (69, 123, 157), (244, 162, 97), (42, 157, 143),
               (233, 196, 106), (38, 70, 83), (255, 255, 255)]
    image = Image.new("RGB", (size, size), (241, 226, 190))
    draw = ImageDraw.Draw(image)
    for _ in range(90):
        colour = palette[rng.integers(len(palette))]
        x, y = rng.uniform(0, size, 2)
        angle = rng.uniform(0, np.pi) if rng.random() < 0.3 else rng.normal(np.pi / 4, 0.3)
        length = rng.uniform(0.1, 0.35) * size
        points = [(x, y)]
        for _ in range(4):  # a slightly curved stroke
            angle += rng.normal(0, 0.25)
            x, y = x + np.cos(angle) * length / 4, y + np.sin(angle) * length / 4
            points.append((x, y))
        draw.line(points, fill=colour, width=int(rng.uniform(0.015, 0.05) * size), joint="curve")
    return np.asarray(image.filter(ImageFilter.GaussianBlur(0.6)), dtype=np.uint8)


def prepare_content(content_dir: str, model_dir, seed: int = 0) -> list[Path]:
    """The content files; 'synthetic' writes the built-in demo scenes under model_dir first
    (tfstyle.core.synthetic, 128 px; train and test of both domains)."""
    if content_dir == "synthetic":
        root = synthetic.make_dataset(Path(model_dir) / "synthetic_data", size=128, seed=seed)
        return sorted(list_content_images(root / "trainA") + list_content_images(root / "trainB"))
    return list_content_images(content_dir)
