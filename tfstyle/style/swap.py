"""Style swap of attention-aware multi-stroke style transfer (AAMS, Yao et al. 2019), as
plain TensorFlow functions on the features of ONE image ([H, W, C], float32; N = H * W).

Style swap (Chen & Schmidt 2016), one scale
    P_j, j = 0..Ns-1: every p x p window of the style map (VALID, row-major order).
    c_(y,x): the p x p window of the reflect-padded content map centred on (y, x).
    j*(y,x) = argmax_j <c_(y,x), P_j> / (|c_(y,x)| |P_j|)  (normalised cross-correlation;
             |c| is the same for every j, so the convolution only divides by |P_j|)
    out(q)  = sum over windows (y,x) covering q of P_j*(y,x)[q - (y,x) + r] / count(q),
              r = p // 2, count(q) = number of windows covering q inside the image.
    The correlations are one matrix product G = c_pad . s^T ([N_content_padded, N_style],
    the N^2 part), summed along its p x p "diagonals" (`style_swap_indices`): about p^2 / 2
    times fewer multiply-adds than convolving with the patches, and builtin LiteRT operators
    only. With
    static shapes G is never built whole: content rows are taken a few at a time so that one
    chunk holds at most ``max_entries`` floats; the output is then folded from the indices
    with p^2 gathers (no one-hot volume).

Multi-scale swap (AAMS): the whitened style map is resized by beta in 1/2, 1/sqrt2, 1 (coarse
to fine strokes: a fixed 5x5 patch covers more of a smaller style map), giving k - 1 swapped
maps; the (attended, whitened) content itself is the k-th, finest "stroke". As in the AAMS
code, every style position is a patch centre: `style_pyramid` zero-pads each resized map by
r = p // 2 (tf.extract_image_patches with SAME padding), and the swap takes the p x p
windows of the padded maps.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

#: Default cap on floats held by one chunk of the style-swap correlation volume (128 MiB).
DEFAULT_MAX_SWAP_ENTRIES = 2 ** 25


def dim(tensor, axis):
    """The static size of `tensor`'s axis, or its dynamic size (a scalar tensor)."""
    static = tensor.shape[axis]
    return static if static is not None else tf.shape(tensor)[axis]


def patch_norms(style, patch_size: int = 5) -> tf.Tensor:
    """|P_j| for every p x p window of a style map [Hs, Ws, C]: [Hs - p + 1, Ws - p + 1]."""
    p = int(patch_size)
    squared = tf.reduce_sum(tf.square(style), axis=-1)[None, :, :, None]
    window = tf.nn.avg_pool2d(squared, p, 1, "VALID")[0, :, :, 0] * float(p * p)
    return tf.sqrt(tf.maximum(window, 0.0))


def style_swap_indices(content, style, patch_size: int = 5,
                       max_entries: int = DEFAULT_MAX_SWAP_ENTRIES) -> tf.Tensor:
    """For every content position (y, x), the index j* of the style patch with the highest
    normalised correlation with the content window centred there: int32 [Hc, Wc], indexing
    the (Hs - p + 1) x (Ws - p + 1) style windows in row-major order (first maximum on ties,
    as numpy's argmax).

    The correlations come from one matrix product per chunk of content rows,
    G[y', u', x', v'] = <c_pad[y', x'], s[u', v']>, summed along its p x p "diagonals":
    <c_(y,x), P_(u,v)> = sum_(dy,dx) G[y+dy, u+dy, x+dx, v+dx], first over dx, then over dy
    (2p slice-adds, each after the previous one, so that a few volume-sized tensors exist at
    a time in any executor). That is about p^2 / 2 times fewer operations than convolving with
    the patches as kernels, and only builtin LiteRT operators (BATCH_MATMUL, STRIDED_SLICE,
    ADD, TRANSPOSE, ARG_MAX). With static shapes the content rows are taken a few at a time
    so that a chunk's G holds at most ``max_entries`` floats (the partial sums are no
    larger); with a dynamic content size (a served model) all rows are one chunk, bounded by
    the caller's size policy.
    """
    content = tf.convert_to_tensor(content, tf.float32)
    style = tf.convert_to_tensor(style, tf.float32)
    if content.shape.rank != 3 or style.shape.rank != 3:
        raise ValueError(f"expected feature maps [H, W, C], got {content.shape} and {style.shape}")
    p, r = int(patch_size), int(patch_size) // 2
    hc, wc = dim(content, 0), dim(content, 1)
    hs, ws = dim(style, 0), dim(style, 1)
    if isinstance(hs, int) and isinstance(ws, int) and (hs < p or ws < p):
        raise ValueError(f"style map {hs}x{ws} is smaller than the {p}x{p} patch")
    if isinstance(hc, int) and isinstance(wc, int) and (hc <= r or wc <= r):
        raise ValueError(f"content map {hc}x{wc} is too small for {p}x{p} patches: use a "
                         "larger content image or a smaller --patch_size")
    padded = tf.pad(content, [[r, p - 1 - r], [r, p - 1 - r], [0, 0]], mode="REFLECT")
    rows, cols = hs - p + 1, ws - p + 1
    inv_norms = 1.0 / (patch_norms(style, p) + 1e-7)
    def chunk(top, n_rows):
        band = padded[top:top + n_rows + p - 1]     # [Hb, Wp, C], Hb = n_rows + p - 1
        # G[y', u', x', v'] = <band[y', x'], style[u', v']>            [Hb, Hs, Wp, Ws]
        gram = tf.matmul(band[:, None], style[None], transpose_b=True)
        # Diagonal sums, first over dx then over dy; each slice waits for the previous sum
        # (control dependencies), so a graph holds two slices at a time, not 2p.
        step1 = gram[:, :, :wc, :cols]                                # [Hb, Hs, Wc, cols]
        for d in range(1, p):
            with tf.control_dependencies([step1]):
                step1 = step1 + gram[:, :, d:d + wc, d:d + cols]
        step2 = step1[:n_rows, :rows]                                 # [n, rows, Wc, cols]
        for d in range(1, p):
            with tf.control_dependencies([step2]):
                step2 = step2 + step1[d:d + n_rows, d:d + rows]
        scores = tf.transpose(step2, [0, 2, 1, 3]) * inv_norms       # [n, Wc, rows, cols]
        scores = tf.reshape(scores, tf.stack([n_rows, wc, rows * cols]))
        return tf.cast(tf.argmax(scores, axis=-1), tf.int32)

    if not all(isinstance(d, int) for d in (hc, wc, hs, ws)):
        return chunk(0, hc)
    per_row = (wc + p - 1) * hs * ws
    step = max(1, int(max_entries // max(1, per_row)) - (p - 1))
    return tf.concat([chunk(top, min(step, hc - top)) for top in range(0, hc, step)], axis=0)


def fold_patches(style, indices, patch_size: int = 5) -> tf.Tensor:
    """Place style window j = indices[y, x] centred on every content position and average
    the overlaps: [Hs, Ws, C] x int [Hc, Wc] -> [Hc, Wc, C] (the transposed convolution of a
    one-hot volume with the raw patches, divided by the overlap count, done by p^2 gathers)."""
    style = tf.convert_to_tensor(style, tf.float32)
    indices = tf.convert_to_tensor(indices, tf.int32)
    p, r = int(patch_size), int(patch_size) // 2
    cols = dim(style, 1) - p + 1
    top, left = indices // cols, indices % cols
    ones = tf.ones_like(indices, tf.float32)[..., None]
    canvas = count = 0.0
    for dy in range(p):
        for dx in range(p):
            pad = [[dy, p - 1 - dy], [dx, p - 1 - dx], [0, 0]]
            values = tf.gather_nd(style, tf.stack([top + dy, left + dx], axis=-1))
            canvas += tf.pad(values, pad)
            count += tf.pad(ones, pad)
    hc, wc = dim(indices, 0), dim(indices, 1)
    return (canvas / count)[r:r + hc, r:r + wc]


def style_swap(content, style, patch_size: int = 5,
               max_entries: int = DEFAULT_MAX_SWAP_ENTRIES) -> tf.Tensor:
    """Style swap of one content map [Hc, Wc, C] with one style map [Hs, Ws, C] ->
    [Hc, Wc, C]: every content window replaced by its best-correlated style window."""
    indices = style_swap_indices(content, style, patch_size, max_entries)
    return fold_patches(style, indices, patch_size)


def stroke_scales(strokes: int) -> list[float]:
    """Style resize factors for `strokes` = k levels: k - 1 swapped maps, coarse to fine,
    beta_i = 2^(-(k - 2 - i) / 2); k = 4 gives AAMS's 1/2, 1/sqrt2, 1."""
    if strokes < 1:
        raise ValueError(f"strokes must be at least 1, got {strokes}")
    return [2.0 ** (-(strokes - 2 - i) / 2.0) for i in range(strokes - 1)]


def style_pyramid(style, scales: Sequence[float], patch_size: int = 5) -> list[tf.Tensor]:
    """The maps the content is swapped against, coarse to fine: the style map [Hs, Ws, C]
    resized by each beta in `scales` to (floor(beta Hs), floor(beta Ws)) (at least 1) with
    AAMS's bilinear resize (TF1: no half-pixel centres), then zero-padded by p // 2 on every
    side so that its p x p windows are the patches centred on every style position."""
    style = tf.convert_to_tensor(style, tf.float32)
    hs, ws = style.shape[:2]
    r = int(patch_size) // 2
    out = []
    for beta in scales:
        size = [max(1, int(hs * beta)), max(1, int(ws * beta))]
        resized = style if size == [hs, ws] else tf.raw_ops.ResizeBilinear(
            images=style[None], size=size, align_corners=False, half_pixel_centers=False)[0]
        out.append(tf.pad(resized, [[r, r], [r, r], [0, 0]]))
    return out


def swap_strokes(content, pyramid: Sequence, patch_size: int = 5,
                 max_entries: int = DEFAULT_MAX_SWAP_ENTRIES) -> list[tf.Tensor]:
    """Whitened content [Hc, Wc, C] swapped against each (zero-padded) map of a
    `style_pyramid`, followed by the content itself: len(pyramid) + 1 strokes [Hc, Wc, C],
    coarsest first."""
    content = tf.convert_to_tensor(content, tf.float32)
    return [style_swap(content, s, patch_size, max_entries) for s in pyramid] + [content]


def entries(content_shape, style_shape, patch_size: int = 5) -> int:
    """Size of the full style-swap correlation volume N_content x N_style patches of a
    (padded) style map (for the docs and logs: the chunked implementation never holds more
    than max_entries of it)."""
    hc, wc = content_shape[:2]
    hs, ws = style_shape[:2]
    return hc * wc * max(0, hs - patch_size + 1) * max(0, ws - patch_size + 1)
