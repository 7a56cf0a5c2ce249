"""Unaligned (or paired) two-domain image data for CycleGAN training.

Each domain folder is read once: every file is decoded with Pillow (`tfstyle.core.images`),
resized bicubically to load_size x load_size and stored in a uint8 .npy cache in the model
directory, so later epochs and resumed runs decode nothing. Unreadable files (and files over
the ImageLimits) are skipped with a warning that names them and are counted. The cache is
written only when the disk has room for it, and a failed decoding leaves no file behind.

The order of an epoch (which A and B image, crop offset and flip for every slot) is drawn
with numpy from (seed, epoch), so a run resumed at (epoch, step) sees exactly the data the
interrupted run would have seen, and every tf.distribute replica reads its own slice of the
same global batch as a one-device run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf
from absl import logging

from tfstyle.core.data import DataError, replica_slots, slot_dataset
from tfstyle.core.files import write_json_atomic
from tfstyle.core.images import (
    DEFAULT_LIMITS,
    ImageError,
    list_images,
    read_image,
    resize,
    to_model_range,
)


@dataclass
class Domain:
    """The readable images of one folder, resized to load_size and cached."""
    folder: Path
    names: list[str]
    images: np.ndarray  # uint8 [N, load_size, load_size, 3] (a read-only memory map)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)

    def __len__(self):
        return len(self.names)


def _fingerprint(files, load_size, limits):
    h = hashlib.sha256(f"{load_size} {limits.max_image_pixels} {limits.max_image_bytes}".encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def load_domain(folder, load_size: int, cache_dir, workers: int = 4, limits=None) -> Domain:
    """Decode, resize and cache every image in `folder`; skip and count unreadable files and
    files over `limits` (ImageLimits, or settings that extend it; default the defaults)."""
    limits = limits or DEFAULT_LIMITS
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"domain folder {folder} does not exist")
    files = list_images(folder)
    others = sorted(p.name for p in folder.iterdir() if p.is_file() and p not in set(files))
    if not files:
        raise DataError(f"domain folder {folder} holds no image files"
                        + (f" (found only {', '.join(others[:5])})" if others else ""))
    cache_dir = Path(cache_dir)
    key = f"{folder.name}-{_fingerprint(files, load_size, limits)}"
    array_path, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    if array_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        images = np.load(array_path, mmap_mode="r")
        logging.info("%s: %d images from cache %s", folder, len(meta["names"]), array_path)
        domain = Domain(folder, meta["names"], images, [tuple(s) for s in meta["skipped"]])
        _warn_skipped(domain)
        return domain

    def decode(path):
        try:
            return resize(read_image(path, limits), (load_size, load_size)), None
        except ImageError as err:
            return None, str(err)

    logging.info("%s: decoding %d files to %dx%d", folder, len(files), load_size, load_size)
    cache_dir.mkdir(parents=True, exist_ok=True)
    needed = len(files) * load_size * load_size * 3
    free = shutil.disk_usage(cache_dir).free
    if needed > free:
        raise DataError(f"{folder}: caching {len(files)} images at {load_size}x{load_size} takes "
                        f"{needed / 2 ** 30:.1f} GiB, {cache_dir} has {free / 2 ** 30:.1f} GiB "
                        "free (lower --load_size or free disk space)")
    tmp = cache_dir / f".{key}.{os.getpid()}.tmp.npy"
    compact = tmp.with_name(tmp.name + ".compact.npy")
    try:
        names, skipped = _decode_into(tmp, files, load_size, decode, workers, folder)
        if not names:
            raise DataError(f"domain folder {folder}: none of its {len(files)} image files "
                            f"could be read (first error: {skipped[0][1]})")
        # Keep only the readable rows: rewrite when files were skipped.
        if len(names) < len(files):
            full = np.load(tmp, mmap_mode="r")
            np.save(compact, full[:len(names)])
            del full
            os.replace(compact, tmp)
        os.replace(tmp, array_path)
    except BaseException:
        for leftover in (tmp, compact):
            leftover.unlink(missing_ok=True)
        raise
    write_json_atomic(meta_path, {"names": names, "skipped": skipped})
    domain = Domain(folder, names, np.load(array_path, mmap_mode="r"), skipped)
    _warn_skipped(domain)
    return domain


def _decode_into(path, files, load_size, decode, workers, folder):
    """Decode `files` into a new .npy memory map at `path`, readable ones first; returns
    (names of the readable files, [(file, reason)] of the others)."""
    out = np.lib.format.open_memmap(path, "w+", np.uint8, (len(files), load_size, load_size, 3))
    names, skipped = [], []
    with ThreadPoolExecutor(workers) as pool:
        for i, (file, (image, error)) in enumerate(zip(files, pool.map(decode, files))):
            if image is None:
                skipped.append((file.name, error))
                continue
            out[len(names)] = image
            names.append(file.name)
            if (i + 1) % 500 == 0:
                logging.info("%s: %d/%d decoded", folder, i + 1, len(files))
    out.flush()
    del out
    return names, skipped


def _warn_skipped(domain):
    for name, reason in domain.skipped:
        logging.warning("skipped %s: %s", domain.folder / name, reason)


@dataclass(frozen=True)
class EpochPlan:
    """Everything random about one epoch, drawn from (seed, epoch)."""
    a_index: np.ndarray
    b_index: np.ndarray
    a_offset: np.ndarray  # [L, 2] crop top-left
    b_offset: np.ndarray
    a_flip: np.ndarray    # [L] bool
    b_flip: np.ndarray


def crop_flip(images: np.ndarray, index, offset, flip, crop: int) -> np.ndarray:
    """uint8 [len(index), crop, crop, 3]: images[i] cut at (top, left) = offset, mirrored
    left-right where flip."""
    out = np.empty((len(index), crop, crop, 3), np.uint8)
    for k, (i, (top, left), f) in enumerate(zip(index, offset, flip)):
        patch = images[i, top:top + crop, left:left + crop]
        out[k] = patch[:, ::-1] if f else patch
    return out


class EpochSlots:
    """Cached square images cut into an epoch of `epoch_size` slots, each a random crop and
    flip drawn from (seed, epoch); subclasses set epoch_size and plan the epoch."""
    epoch_size: int

    def __init__(self, load_size: int, crop_size: int, seed: int):
        if crop_size > load_size:
            raise DataError(f"crop_size {crop_size} is larger than load_size {load_size}")
        self.crop_size, self.seed = crop_size, seed
        self.span = load_size - crop_size + 1  # crop offsets drawn from [0, span)

    def steps_per_epoch(self, global_batch: int) -> int:
        steps = self.epoch_size // global_batch
        if steps == 0:
            raise DataError(f"an epoch has {self.epoch_size} images, fewer than the global batch "
                            f"size {global_batch}")
        return steps


class UnalignedData(EpochSlots):
    """Two domains sampled as the official CycleGAN does: an epoch has max(|A|, |B|) slots,
    A goes through a shuffled order (wrapping around), B is drawn at random independently.
    With `paired=True` (Cyclepix), A and B images with the same file stem form pairs that
    share their crop and flip, and an epoch goes once through the pairs."""

    def __init__(self, domain_a: Domain, domain_b: Domain, crop_size: int, seed: int,
                 paired: bool = False):
        super().__init__(domain_a.images.shape[1], crop_size, seed)
        self.a, self.b, self.paired = domain_a, domain_b, paired
        if paired:
            stems_b = {Path(n).stem: i for i, n in enumerate(domain_b.names)}
            self.pairs = np.array([(i, stems_b[Path(n).stem]) for i, n in enumerate(domain_a.names)
                                   if Path(n).stem in stems_b], dtype=np.int64).reshape(-1, 2)
            if not len(self.pairs):
                raise DataError(f"paired training needs files with the same names in "
                                f"{domain_a.folder} and {domain_b.folder}; none match")
            unmatched = len(domain_a) - len(self.pairs)
            if unmatched:
                logging.warning("%d images of %s have no partner of the same name in %s and "
                                "are not used", unmatched, domain_a.folder, domain_b.folder)
            self.epoch_size = len(self.pairs)
        else:
            self.epoch_size = max(len(domain_a), len(domain_b))

    def plan(self, epoch: int) -> EpochPlan:
        rng = np.random.default_rng([self.seed, epoch])
        n = self.epoch_size
        if self.paired:
            order = self.pairs[rng.permutation(n)]
            a_index, b_index = order[:, 0], order[:, 1]
        else:
            a_index = rng.permutation(n) % len(self.a)
            b_index = rng.integers(0, len(self.b), n)
        span = self.span
        a_offset = rng.integers(0, span, (n, 2))
        a_flip = rng.random(n) < 0.5
        if self.paired:
            b_offset, b_flip = a_offset, a_flip
        else:
            b_offset, b_flip = rng.integers(0, span, (n, 2)), rng.random(n) < 0.5
        return EpochPlan(a_index, b_index, a_offset, b_offset, a_flip, b_flip)

    def dataset(self, epoch: int, start_step: int, global_batch: int,
                input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """Per-replica batches (A, B) in [-1, 1], float32 [b, crop, crop, 3], of one epoch from
        `start_step` on. With an input context, this input pipeline yields, for each step, the
        batches of its own replicas in replica order (as distribute_datasets_from_function
        hands them out), so the replicas together see the one-device global batch."""
        slots = replica_slots(self.steps_per_epoch(global_batch), global_batch, start_step,
                              input_context)
        per_replica = slots.shape[1]
        p = self.plan(epoch)

        def load(batch_slots):
            c = self.crop_size
            return (crop_flip(self.a.images, p.a_index[batch_slots], p.a_offset[batch_slots],
                              p.a_flip[batch_slots], c),
                    crop_flip(self.b.images, p.b_index[batch_slots], p.b_offset[batch_slots],
                              p.b_flip[batch_slots], c))

        def to_tensors(batch_slots):
            a, b = tf.numpy_function(load, [batch_slots], [tf.uint8, tf.uint8], stateful=False)
            shape = (per_replica, self.crop_size, self.crop_size, 3)
            return (to_model_range(tf.ensure_shape(a, shape)),
                    to_model_range(tf.ensure_shape(b, shape)))

        return slot_dataset(slots, to_tensors)
