"""A contact sheet PNG of image clusters, so a person can pick the cluster to use."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tfstyle.texture_words.clustering import ClusterSummary

_BG = (255, 255, 255)
_TEXT = (20, 20, 20)
_MARK = (220, 40, 40)


def _thumbnail(pixels: np.ndarray, side: int) -> Image.Image:
    """Centre square crop of an ``[H, W, 3]`` uint8 image resized to ``side`` x ``side``."""
    im = Image.fromarray(np.asarray(pixels, dtype=np.uint8), "RGB")
    w, h = im.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return im.crop((left, top, left + s, top + s)).resize((side, side), Image.Resampling.LANCZOS)


def _font(size: int):
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def contact_sheet(
    images: Sequence[np.ndarray],
    summaries: Sequence[ClusterSummary],
    path,
    chosen: int | None = None,
    thumb: int = 96,
    per_row: int = 8,
    title: str = "",
) -> Path:
    """Writes one labelled row of thumbnails per cluster to ``path`` (PNG) and returns it.

    Each row is headed ``cluster i: n images, spread s`` (``spread`` as in
    :class:`ClusterSummary`); the ``chosen`` cluster is framed in red and marked ``<- chosen``.
    Rows show at most ``per_row`` thumbnails (centre crops) and say how many more there are.
    ``title`` is drawn on top (keep it ASCII: the built-in font has no CJK glyphs).
    """
    pad, header = 6, 22
    font = _font(14)
    cols = max([1] + [min(per_row, s.size) for s in summaries])
    width = max(pad + cols * (thumb + pad), 420)
    top = header + pad if title else pad
    row_h = header + thumb + 2 * pad
    height = top + max(1, len(summaries)) * row_h
    sheet = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, pad), title, fill=_TEXT, font=font)
    for row, summary in enumerate(summaries):
        y = top + row * row_h
        spread = "n/a" if np.isnan(summary.spread) else f"{summary.spread:.3f}"
        label = f"cluster {summary.index}: {summary.size} images, spread {spread}"
        if len(summary.members) > per_row:
            label += f" (first {per_row} shown)"
        if summary.index == chosen:
            label += "  <- chosen"
            draw.rectangle([1, y, width - 2, y + row_h - 3], outline=_MARK, width=3)
        draw.text((pad + 2, y + 4), label, fill=_MARK if summary.index == chosen else _TEXT,
                  font=font)
        for col, idx in enumerate(summary.members[:per_row]):
            sheet.paste(_thumbnail(images[idx], thumb), (pad + col * (thumb + pad), y + header))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")
    return path
