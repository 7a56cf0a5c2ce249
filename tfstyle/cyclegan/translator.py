"""Translation of whole images of any size and aspect ratio with a generator, and of files
into a folder (distinct output names, unreadable files skipped and counted)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfstyle.core.images import (
    ImageError,
    read_image,
    to_model_range,
    to_uint8,
    write_image,
)

# The smallest side a generator is run on: its residual blocks reflection-pad the 1/4-scale
# map by 1, which needs at least 2 pixels there; smaller images (down to 1x1) are padded up.
MIN_SIDE = 16


class Translator:
    """Runs a generator on whole images of any size and aspect ratio.

    Images are reflection-padded to a multiple of 4 (and to at least MIN_SIDE pixels) and
    cropped back. Images whose longer side exceeds `tile` are cut into overlapping tiles of at
    most tile x tile pixels whose outputs are blended with linear ramps over the `overlap`
    pixels. The blending runs band by band (a band is one row of tiles) in float32: besides
    the uint8 input and output, memory holds one band, tile x width x 16 bytes, whatever the
    image height (instance norm sees each tile's own statistics; a larger tile gives a more
    uniform result).
    """

    def __init__(self, generator: keras.Model, tile: int = 512, overlap: int = 32):
        if tile % 4 or tile < 16:
            raise ValueError(f"tile must be a multiple of 4 and at least 16, got {tile}")
        if not 0 <= overlap < tile // 2:
            raise ValueError(f"overlap must be in [0, tile/2), got {overlap}")
        self.tile, self.overlap = tile, overlap
        self._run = tf.function(lambda x: generator(x, training=False),
                                input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])

    def _run_padded(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 pixels [h, w, 3] -> the generator's float32 output [h, w, 3] in [-1, 1]."""
        h, w = pixels.shape[:2]
        x = to_model_range(pixels)
        ph = max(MIN_SIDE, h + -h % 4) - h
        pw = max(MIN_SIDE, w + -w % 4) - w
        if ph or pw:
            x = np.pad(x, [(0, ph), (0, pw), (0, 0)], mode="reflect")
        return self._run(x[None]).numpy()[0, :h, :w]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 [H, W, 3] -> translated RGB uint8 [H, W, 3]."""
        image = np.asarray(image)
        h, w = image.shape[:2]
        if max(h, w) <= self.tile:
            return to_uint8(self._run_padded(image))
        tile, overlap = self.tile, self.overlap
        out = np.empty((h, w, 3), np.uint8)
        rows, cols = _starts(h, tile, overlap), _starts(w, tile, overlap)
        # Row 0 of the band buffers is image row `top` of the current band; rows that later
        # bands overlap are carried over to the front of the next band's buffers.
        band = np.zeros((min(tile, h), w, 3), np.float32)
        weight = np.zeros((min(tile, h), w, 1), np.float32)
        for i, top in enumerate(rows):
            bottom = min(top + tile, h)
            row_ramp = _ramp(bottom - top, overlap, top > 0, bottom < h)
            for left in cols:
                right = min(left + tile, w)
                ramp = (row_ramp[:, None]
                        * _ramp(right - left, overlap, left > 0, right < w)[None])[..., None]
                translated = self._run_padded(image[top:bottom, left:right])
                band[:bottom - top, left:right] += translated * ramp
                weight[:bottom - top, left:right] += ramp
            done = (rows[i + 1] if i + 1 < len(rows) else bottom) - top
            out[top:top + done] = to_uint8(band[:done] / weight[:done])
            carried = bottom - top - done
            band[:carried] = band[done:done + carried]
            weight[:carried] = weight[done:done + carried]
            band[carried:], weight[carried:] = 0, 0
        return out


def _starts(length, tile, overlap):
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step)) + [length - tile]
    return sorted(set(starts))


def _ramp(length, overlap, fade_in, fade_out):
    """float32 [length] blending weights: 1 inside, a linear ramp (never 0) over `overlap`
    pixels on the sides that a neighbouring tile overlaps."""
    ramp = np.ones(length, np.float32)
    if overlap:
        edge = ((np.arange(overlap) + 1.0) / (overlap + 1.0)).astype(np.float32)
        if fade_in:
            ramp[:overlap] = np.minimum(ramp[:overlap], edge)
        if fade_out:
            ramp[-overlap:] = np.minimum(ramp[-overlap:], edge[::-1])
    return ramp


def output_paths(files, out_dir) -> list[Path]:
    """A distinct output PNG in `out_dir` for each input file, in order.

    The output of `x.ext` is `x.png`. When inputs would share one (`a.jpg` and `a.png`, or
    `a.jpg` in two folders; compared case-insensitively), a `.png` input keeps `a.png` and
    the others are named after their whole file name (`a.jpg.png`), then numbered
    (`a.jpg-2.png`, ...). No output is the path of an input file."""
    out_dir = Path(out_dir)
    files = [Path(f) for f in files]
    taken = {str(f.resolve()).lower() for f in files}

    def claim(name):
        key = str((out_dir / name).resolve()).lower()
        if key in taken:
            return False
        taken.add(key)
        return True

    stems: dict[str, int] = {}
    for f in files:
        stems[f.stem.lower()] = stems.get(f.stem.lower(), 0) + 1
    names: dict[int, str] = {}
    # Unshared stems, then .png inputs, claim x.png first.
    for i in sorted(range(len(files)), key=lambda i: (stems[files[i].stem.lower()] > 1,
                                                      files[i].suffix.lower() != ".png")):
        f = files[i]
        candidates = [f"{f.stem}.png", f"{f.name}.png"]
        candidates += (f"{f.name}-{k}.png" for k in range(2, len(files) + 2))
        names[i] = next(name for name in candidates if claim(name))
    return [out_dir / names[i] for i in range(len(files))]


def translate_files(translator: Translator, files, out_dir, limits=None):
    """Translate each of `files` into its output_paths() PNG in `out_dir`. Yields
    (input, output, "WxH") for every file written and (input, None, reason) for every file
    skipped (unreadable, vanished, or over the ImageLimits `limits`). A failed write raises
    OSError and leaves no partial file."""
    files = [Path(f) for f in files]
    for source, target in zip(files, output_paths(files, out_dir)):
        try:
            image = read_image(source, limits)
        except (ImageError, FileNotFoundError) as err:
            yield source, None, str(err)
            continue
        size = f"{image.shape[1]}x{image.shape[0]}"
        translated = translator(image)
        del image  # the input is not kept while the output is encoded
        write_image(target, translated)
        yield source, target, size
