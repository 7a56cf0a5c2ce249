"""Reading and writing images the way a user's folders hold them.

`read_image` turns any file Pillow can decode (JPEG, PNG, BMP, GIF's first frame, TIFF,
WebP, ...) into an RGB uint8 array: EXIF orientation applied, grayscale and palette images
expanded, alpha composited on white, 16-bit images scaled down to 8 bits. A file that is not
an image, is truncated, or exceeds the limits (`ImageLimits`: 80 megapixels and 256 MiB by
default, checked from the file size and the header before anything is decoded) raises
`ImageError` naming the file.
"""

from __future__ import annotations

import stat
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from tfstyle.core.config import Config, setting
from tfstyle.core.files import atomic_path

ImageFile.LOAD_TRUNCATED_IMAGES = False
# ImageLimits replaces Pillow's decompression-bomb warning (Pillow still refuses images over
# twice its MAX_IMAGE_PIXELS, which read_image turns into an ImageError).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
PILLOW_PIXEL_LIMIT = 2 * (Image.MAX_IMAGE_PIXELS or 89_478_485)


@dataclass
class ImageLimits(Config):
    """The largest image file `read_image` accepts; larger ones raise ImageError (training
    and translate skip and count them). The trainers' settings extend this class."""
    max_image_pixels: int = setting(
        80_000_000, "Largest image read, in pixels (width x height, checked from the header "
        "before decoding); larger images are skipped. At most Pillow's own limit.",
        min=1, max=PILLOW_PIXEL_LIMIT)
    max_image_bytes: int = setting(256 * 2 ** 20, "Largest image file read, in bytes; larger "
                                   "files are skipped.", min=1)


DEFAULT_LIMITS = ImageLimits()

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


class ImageError(ValueError):
    """A file that cannot be read as an image; the message names the file."""


def list_images(folder) -> list[Path]:
    """Image files directly in `folder` (by extension, case-insensitive), sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit (or 32-bit integer) grayscale: scale the full range down to 8 bits.
        array = np.asarray(image, dtype=np.float32)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float32)
        image = Image.fromarray(np.clip(array * (255.0 if array.max() <= 1 else 1), 0, 255)
                                .astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image if image.mode == "RGB" else image.convert("RGB")


def read_image(path, limits: ImageLimits | None = None) -> np.ndarray:
    """The image at `path` as RGB uint8 [H, W, 3] (EXIF-rotated, alpha on white).

    `limits` (an ImageLimits, or settings that extend it; default DEFAULT_LIMITS) bounds the
    file size and the pixel count, both checked before decoding. FileNotFoundError for a
    missing file; ImageError naming the file for anything else that cannot be read."""
    limits = limits or DEFAULT_LIMITS
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise
    except OSError as err:
        raise ImageError(f"{path}: cannot be read ({err})") from err
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(f"{path}: not a regular file")
    if info.st_size > limits.max_image_bytes:
        raise ImageError(f"{path}: {info.st_size:,} bytes, more than the limit of "
                         f"{limits.max_image_bytes:,} (max_image_bytes)")
    try:
        with Image.open(path) as image:
            image.seek(0)  # first frame of an animation
            width, height = image.size
            if width * height > limits.max_image_pixels:
                raise ImageError(f"{path}: {width}x{height} pixels, more than the limit of "
                                 f"{limits.max_image_pixels:,} (max_image_pixels)")
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            return np.asarray(_to_rgb(image), dtype=np.uint8)
    except (FileNotFoundError, ImageError):
        raise
    except Image.DecompressionBombError as err:
        raise ImageError(f"{path}: more pixels than the limit of {limits.max_image_pixels:,} "
                         f"(max_image_pixels; {err})") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageError(f"{path}: not a readable image ({err})") from err


def resize(image: np.ndarray, size) -> np.ndarray:
    """Bicubic resize of an RGB uint8 array to `size` = (height, width) (Pillow, as the
    official CycleGAN data loader)."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))


def check_writable_folder(folder) -> None:
    """Create `folder` if needed and write (then delete) a file there: OSError, before any
    work is done, when images cannot be written into it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".tfstyle-write-test-"):
        pass


def write_image(path, image: np.ndarray) -> None:
    """Write an RGB uint8 array (or float in [0, 255]) atomically; format from the suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format=Image.registered_extensions().get(
            path.suffix.lower(), "PNG"))


# The one pixel-range convention: the networks see float32 in [-1, 1], files hold uint8
# in [0, 255]; x = pixels / 127.5 - 1.
PIXEL_HALF_RANGE = 127.5


def to_model_range(pixels):
    """uint8 (or float) pixels in [0, 255] -> float32 in [-1, 1]. Numpy arrays stay numpy;
    TensorFlow tensors stay tensors (inside tf.function too)."""
    if isinstance(pixels, (np.ndarray, np.generic, int, float, list, tuple)):
        return np.asarray(pixels, dtype=np.float32) / PIXEL_HALF_RANGE - 1.0
    import tensorflow as tf
    return tf.cast(pixels, tf.float32) / PIXEL_HALF_RANGE - 1.0


def from_model_range(x):
    """float in [-1, 1] -> float pixels in [0, 255] (not rounded or clipped); numpy or TF."""
    return (x + 1.0) * PIXEL_HALF_RANGE


def to_uint8(x) -> np.ndarray:
    """float in [-1, 1] (numpy or an eager tensor) -> RGB uint8, rounded and clipped."""
    return np.clip(np.rint((np.asarray(x) + 1.0) * PIXEL_HALF_RANGE), 0, 255).astype(np.uint8)
