"""Feature transforms of attention-aware multi-stroke style transfer (AAMS, Yao et al. 2019),
written as plain TensorFlow functions on the features of ONE image.

Shapes: a feature map is ``[H, W, C]`` (float32); ``N = H * W``.

Whitening and colouring (Li et al. 2017, "universal style transfer")
    X = f - mu (rows are the N positions), Sigma = X^T X / N (the biased covariance, as the
    AAMS code does), Sigma = E diag(d) E^T. Eigenvalues d_i <= eps (1e-5) are dropped.
    whiten:  f_hat = X E diag(d^-1/2) E^T          -> cov(f_hat) = I (on the kept subspace)
    colour:  f_cs  = f_hat E_s diag(d_s^1/2) E_s^T + mu_s
                                                 -> cov(f_cs) = Sigma_s, mean(f_cs) = mu_s
    The decompositions run in float64 (`tf.linalg.eigh`). `whiten(..., method=
    "newton_schulz")` instead iterates Newton-Schulz (coupled, on Sigma / ||Sigma||_F) to
    Sigma^-1/2 in float32 with matrix products only, for graphs that must convert to builtin
    LiteRT operators (no eigen-decomposition there); directions whose eigenvalues are below
    about ||Sigma||_F * 2.25^-iterations are not fully whitened instead of being dropped.

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
maps; the whitened content itself is the k-th, finest "stroke".

Multi-stroke fusion (AAMS)
    a: the attention map [H, W] in [0, 1]; c_1 < ... < c_k: 1-D k-means centroids of a.
    w_k(y,x) = softmax_k(theta * (1 - |a(y,x) - c_k|)),  theta = 50
    fused    = sum_k w_k F_k,  F_1 the coarsest stroke ... F_k the content:
    low attention (background) gets coarse strokes, high attention keeps detail.

Attention map (AAMS's filter, applied to the attention branch's output o: the self-attention
output, or CBAM's F''):
    m = [|o| > 2 mean(|o|)] (per element), a = minmax(box3x3(mean_c(m))).
    AAMS smooths with a 3x3 kernel drawn from a truncated normal; we use a box filter so the
    map is deterministic.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

#: Eigenvalues of a covariance at or below this are treated as zero (AAMS: 1e-5).
EIGEN_EPS = 1e-5
#: Default cap on floats held by one chunk of the style-swap correlation volume (128 MiB).
DEFAULT_MAX_SWAP_ENTRIES = 2 ** 25


def _flatten(features) -> tf.Tensor:
    features = tf.convert_to_tensor(features, tf.float32)
    if features.shape.rank != 3:
        raise ValueError(f"expected one feature map [H, W, C], got shape {features.shape}")
    return tf.reshape(features, [-1, tf.shape(features)[-1]])


def _eigen(features):
    """(mean [C], eigenvalues d [C], eigenvectors E [C, C], centred X [N, C]) in float64."""
    x = tf.cast(_flatten(features), tf.float64)
    mean = tf.reduce_mean(x, axis=0)
    centred = x - mean
    n = tf.cast(tf.shape(x)[0], tf.float64)
    cov = tf.matmul(centred, centred, transpose_a=True) / n
    d, e = tf.linalg.eigh((cov + tf.transpose(cov)) / 2)
    return mean, d, e, centred


#: Newton-Schulz iterations of `whiten(..., method="newton_schulz")`.
NEWTON_SCHULZ_ITERATIONS = 20
WHITENING_METHODS = ("eigh", "newton_schulz")


def inverse_sqrt_newton_schulz(cov, iterations: int = NEWTON_SCHULZ_ITERATIONS) -> tf.Tensor:
    """Sigma^-1/2 of a symmetric positive semi-definite [C, C] (float32) by the coupled
    Newton-Schulz iteration: A = Sigma / ||Sigma||_F, Y_0 = A, Z_0 = I,
    T = (3 I - Z Y) / 2, Y <- Y T, Z <- T Z; Z -> A^-1/2, returned as Z / sqrt(||Sigma||_F)."""
    cov = tf.convert_to_tensor(cov, tf.float32)
    norm = tf.sqrt(tf.reduce_sum(tf.square(cov))) + 1e-12
    identity = tf.eye(cov.shape[-1], dtype=tf.float32)
    y, z = cov / norm, identity
    for _ in range(iterations):
        # T = 1.5 I - 0.5 Z Y, written as an addition: the LiteRT converter (TF 2.21) turns
        # "c * I - Z Y" with a constant identity into -(c * I - Z Y).
        t = tf.add(1.5 * identity, -0.5 * tf.matmul(z, y))
        y, z = tf.matmul(y, t), tf.matmul(t, z)
    return z / tf.sqrt(norm)


def whiten(features, eps: float = EIGEN_EPS, method: str = "eigh",
           iterations: int = NEWTON_SCHULZ_ITERATIONS) -> tf.Tensor:
    """ZCA whitening: [H, W, C] -> [H, W, C] with zero mean and identity covariance.

    "eigh": f_hat = (f - mu) E diag(d^-1/2) E^T, eigen-directions with d <= eps dropped.
    "newton_schulz": f_hat = (f - mu) Sigma^-1/2 by `inverse_sqrt_newton_schulz` (float32).
    """
    if method == "newton_schulz":
        x = _flatten(features)
        centred = x - tf.reduce_mean(x, axis=0)
        n = tf.cast(tf.shape(x)[0], tf.float32)
        cov = tf.matmul(centred, centred, transpose_a=True) / n
        out = tf.matmul(centred, inverse_sqrt_newton_schulz(cov, iterations))
        return tf.reshape(out, tf.shape(features))
    if method != "eigh":
        raise ValueError(f"whitening method must be one of {WHITENING_METHODS}, got {method!r}")
    _, d, e, centred = _eigen(features)
    keep = tf.cast(d > eps, tf.float64)
    inv_sqrt = keep / tf.sqrt(tf.maximum(d, eps))
    transform = tf.matmul(e * inv_sqrt, e, transpose_b=True)  # E diag(d^-1/2) E^T
    out = tf.matmul(centred, transform)
    return tf.reshape(tf.cast(out, tf.float32), tf.shape(features))


def colouring(style, eps: float = EIGEN_EPS) -> tuple[tf.Tensor, tf.Tensor]:
    """The colouring transform of a style map [Hs, Ws, C]: (E_s diag(d_s^1/2) E_s^T [C, C],
    mu_s [C]), float32."""
    mean, d, e, _ = _eigen(style)
    sqrt_d = tf.cast(d > eps, tf.float64) * tf.sqrt(tf.maximum(d, 0.0))
    transform = tf.matmul(e * sqrt_d, e, transpose_b=True)
    return tf.cast(transform, tf.float32), tf.cast(mean, tf.float32)


def apply_colouring(whitened, transform, mean) -> tf.Tensor:
    """f_cs = f_hat T + mu for features [H, W, C], a colouring transform T [C, C] and mean mu
    [C] (`colouring`)."""
    whitened = tf.convert_to_tensor(whitened, tf.float32)
    out = tf.matmul(_flatten(whitened), transform) + mean
    return tf.reshape(out, tf.shape(whitened))


def colour(whitened, style, eps: float = EIGEN_EPS) -> tf.Tensor:
    """Colour whitened features [H, W, C] with the covariance and mean of `style` [Hs, Ws, C]:
    f_cs = f_hat E_s diag(d_s^1/2) E_s^T + mu_s."""
    return apply_colouring(whitened, *colouring(style, eps))


def wct(content, style, alpha: float = 1.0, eps: float = EIGEN_EPS) -> tf.Tensor:
    """Whitening and colouring transform with Li et al.'s blend:
    alpha * colour(whiten(f_c), f_s) + (1 - alpha) * f_c."""
    content = tf.convert_to_tensor(content, tf.float32)
    return alpha * colour(whiten(content, eps), style, eps) + (1.0 - alpha) * content


# --------------------------------------------------------------------------------------------
# Style swap
# --------------------------------------------------------------------------------------------


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
    """The style map [Hs, Ws, C] resized (bilinearly) by each beta in `scales`, each side at
    least p: the maps the content is swapped against, coarse to fine."""
    style = tf.convert_to_tensor(style, tf.float32)
    hs, ws = style.shape[:2]
    out = []
    for beta in scales:
        size = [max(patch_size, int(round(hs * beta))), max(patch_size, int(round(ws * beta)))]
        out.append(tf.image.resize(style[None], size, method="bilinear")[0]
                   if size != [hs, ws] else style)
    return out


def swap_strokes(content, pyramid: Sequence, patch_size: int = 5,
                 max_entries: int = DEFAULT_MAX_SWAP_ENTRIES) -> list[tf.Tensor]:
    """Whitened content [Hc, Wc, C] swapped against each map of a `style_pyramid`, followed
    by the content itself: len(pyramid) + 1 strokes [Hc, Wc, C], coarsest first."""
    content = tf.convert_to_tensor(content, tf.float32)
    return [style_swap(content, s, patch_size, max_entries) for s in pyramid] + [content]


# --------------------------------------------------------------------------------------------
# Attention map and multi-stroke fusion
# --------------------------------------------------------------------------------------------


def attention_map(output, kernel_size: int = 3) -> tf.Tensor:
    """AAMS's attention filter: the attention branch's output [H, W, C] -> a map [H, W] in
    [0, 1]: a = minmax(box_kxk(mean_c([|o| > 2 mean(|o|)]))). A constant map gives zeros."""
    magnitude = tf.abs(tf.convert_to_tensor(output, tf.float32))
    mask = tf.cast(magnitude > 2.0 * tf.reduce_mean(magnitude), tf.float32)
    a = tf.reduce_mean(mask, axis=-1)[None, :, :, None]
    a = tf.nn.avg_pool2d(a, kernel_size, 1, "SAME")[0, :, :, 0]
    low, high = tf.reduce_min(a), tf.reduce_max(a)
    return tf.where(high > low, (a - low) / tf.maximum(high - low, 1e-12), tf.zeros_like(a))


def kmeans_1d(values, k: int, iterations: int = 30) -> tf.Tensor:
    """Lloyd's k-means on scalar values (any shape): k centroids, sorted ascending.
    Initialised at the (i + 1/2)/k quantiles (deterministic; AAMS draws random points); an
    empty cluster keeps its centroid."""
    v = tf.reshape(tf.convert_to_tensor(values, tf.float32), [-1])
    sorted_v = tf.sort(v)
    n = tf.shape(v)[0]
    q = tf.cast((tf.range(k, dtype=tf.float32) + 0.5) / k * tf.cast(n, tf.float32), tf.int32)
    centroids = tf.gather(sorted_v, tf.minimum(q, n - 1))
    for _ in range(iterations):
        assign = tf.argmin(tf.abs(v[:, None] - centroids[None]), axis=1, output_type=tf.int32)
        sums = tf.math.unsorted_segment_sum(v, assign, k)
        counts = tf.math.unsorted_segment_sum(tf.ones_like(v), assign, k)
        centroids = tf.where(counts > 0, sums / tf.maximum(counts, 1.0), centroids)
    return tf.sort(centroids)


def fusion_weights(attention, centroids, theta: float = 50.0) -> tf.Tensor:
    """w [H, W, k] = softmax_k(theta * (1 - |a - c_k|)) for an attention map a [H, W]:
    positive, summing to 1 at every pixel."""
    a = tf.convert_to_tensor(attention, tf.float32)[..., None]
    return tf.nn.softmax(theta * (1.0 - tf.abs(a - centroids)), axis=-1)


def multi_stroke_fusion(strokes: Sequence, attention, theta: float = 50.0
                        ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Fuse k stroke maps [H, W, C] (coarsest first) by the attention map [H, W]:
    returns (sum_k w_k F_k [H, W, C], w [H, W, k], centroids [k])."""
    k = len(strokes)
    centroids = kmeans_1d(attention, k)
    weights = fusion_weights(attention, centroids, theta)
    stacked = tf.stack([tf.convert_to_tensor(s, tf.float32) for s in strokes], axis=-1)
    fused = tf.reduce_sum(stacked * weights[:, :, None, :], axis=-1)
    return fused, weights, centroids


def resize_map(values, size) -> tf.Tensor:
    """Bilinear resize of a map [h, w] to size (H, W)."""
    v = tf.convert_to_tensor(values, tf.float32)[None, :, :, None]
    return tf.image.resize(v, size, method="bilinear")[0, :, :, 0]


def entries(content_shape, style_shape, patch_size: int = 5) -> int:
    """Size of the full style-swap correlation volume N_content x N_style (for the docs and
    logs: the chunked implementation never holds more than max_entries of it)."""
    hc, wc = content_shape[:2]
    hs, ws = style_shape[:2]
    return hc * wc * max(0, hs - patch_size + 1) * max(0, ws - patch_size + 1)


__all__ = ["EIGEN_EPS", "DEFAULT_MAX_SWAP_ENTRIES", "NEWTON_SCHULZ_ITERATIONS",
           "WHITENING_METHODS", "whiten", "inverse_sqrt_newton_schulz", "colouring",
           "apply_colouring", "colour", "wct", "patch_norms", "style_swap_indices",
           "fold_patches", "style_swap", "stroke_scales", "style_pyramid", "swap_strokes",
           "attention_map", "kmeans_1d", "fusion_weights", "multi_stroke_fusion", "resize_map",
           "entries", "dim"]
