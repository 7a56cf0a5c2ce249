"""What an image must be to be kept: decoded completely by Pillow, and stored as a
single-frame JPEG or PNG that ``tf.io.decode_image`` reads (:func:`prepare_image`)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import pathlib
import struct

from PIL import Image, ImageFile

from tfstyle.bam.select import BamError

# Stored byte for byte: format -> (extension, stored format).  MPO is the
# multi-picture JPEG of some cameras; its first picture is a plain JPEG.
_KEEP_FORMATS = {"JPEG": (".jpg", "JPEG"), "MPO": (".jpg", "JPEG"),
                 "PNG": (".png", "PNG")}


class ImageRejected(BamError):
    """A body is not an image we keep (``not_image``, ``corrupt_image``,
    ``too_large``)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class PreparedImage:
    """What will be written for one image."""
    data: bytes
    extension: str       # ".jpg" or ".png"
    format: str          # "JPEG" or "PNG" (stored)
    source_format: str   # what the body was (e.g. "GIF")
    width: int
    height: int


def prepare_image(body: bytes) -> PreparedImage:
    """Decodes ``body`` completely with Pillow and returns what to store.

    JPEG and PNG bodies are kept byte for byte.  Any other format Pillow
    decodes (GIF, BMP, WebP, TIFF, ...) is re-encoded as PNG (first frame), so
    every stored file is a single-frame JPEG or PNG that ``tf.io.decode_image``
    reads.  Sets ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES = False`` (Pillow's
    default) so that a truncated file is an error, not a grey bottom.

    Raises ImageRejected with reason ``not_image`` (Pillow does not recognise
    it), ``corrupt_image`` (recognised but does not decode, e.g. truncated) or
    ``too_large`` (Pillow's decompression-bomb limit).
    """
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(io.BytesIO(body)) as img:
            fmt = img.format or "unknown"
            try:
                img.load()
            except Image.DecompressionBombError as e:
                raise ImageRejected("too_large", str(e)) from None
            except (OSError, SyntaxError, ValueError, EOFError,
                    struct.error, IndexError) as e:
                raise ImageRejected("corrupt_image", f"{fmt}: {e}") from None
            width, height = img.size
            if fmt in _KEEP_FORMATS:
                extension, stored = _KEEP_FORMATS[fmt]
                return PreparedImage(body, extension, stored, fmt,
                                     width, height)
            frame = img
            if frame.mode not in ("RGB", "RGBA", "L", "LA"):
                has_alpha = ("A" in frame.getbands()
                             or "transparency" in frame.info)
                frame = frame.convert("RGBA" if has_alpha else "RGB")
            out = io.BytesIO()
            frame.save(out, format="PNG")
            return PreparedImage(out.getvalue(), ".png", "PNG", fmt,
                                 width, height)
    except ImageRejected:
        raise
    except Image.DecompressionBombError as e:
        raise ImageRejected("too_large", str(e)) from None
    except Image.UnidentifiedImageError:
        raise ImageRejected("not_image",
                            "Pillow does not recognise the body") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error,
            IndexError) as e:
        raise ImageRejected("corrupt_image", str(e)) from None


def sha256_file(path: pathlib.Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

