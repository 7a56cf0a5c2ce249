"""Feature transforms of attention-aware multi-stroke style transfer (AAMS, Yao et al. 2019),
written as plain TensorFlow functions on the features of ONE image.

Shapes: a feature map is ``[H, W, C]`` (float32); ``N = H * W``.

Whitening and colouring (Li et al. 2017, "universal style transfer")
    X = f - mu (rows are the N positions), Sigma = X^T X / N (the biased covariance, as the
    AAMS code does), Sigma = E diag(d) E^T. Eigenvalues d_i <= eps (1e-5) are dropped.
    whiten:  f_hat = X E diag(d^-1/2) E^T          -> cov(f_hat) = I (on the kept subspace)
    colour:  f_cs  = f_hat E_s diag(d_s^1/2) E_s^T + mu_s
                                                 -> cov(f_cs) = Sigma_s, mean(f_cs) = mu_s
    The decompositions run in float64.

Style swap (Chen & Schmidt 2016), one scale
    P_j, j = 0..Ns-1: every p x p window of the style map (VALID, row-major order).
    c_(y,x): the p x p window of the reflect-padded content map centred on (y, x).
    j*(y,x) = argmax_j <c_(y,x), P_j> / (|c_(y,x)| |P_j|)  (normalised cross-correlation;
             |c| is the same for every j, so the convolution only divides by |P_j|)
    out(q)  = sum over windows (y,x) covering q of P_j*(y,x)[q - (y,x) + r] / count(q),
              r = p // 2, count(q) = number of windows covering q inside the image.
    Memory: the correlation volume is N_content x N_style (the N^2 part). It is never built
    whole: style patches are taken a few style rows at a time so that one chunk's volume
    (and its kernel) holds at most ``max_entries`` floats, keeping a running max and argmax;
    the output is then folded from the indices with p^2 gathers (no one-hot volume).

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

import numpy as np
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


def whiten(features, eps: float = EIGEN_EPS) -> tf.Tensor:
    """ZCA whitening: [H, W, C] -> [H, W, C] with zero mean and identity covariance.

    f_hat = (f - mu) E diag(d^-1/2) E^T, eigen-directions with d <= eps dropped.
    """
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


def colour(whitened, style, eps: float = EIGEN_EPS) -> tf.Tensor:
    """Colour whitened features [H, W, C] with the covariance and mean of `style` [Hs, Ws, C]:
    f_cs = f_hat E_s diag(d_s^1/2) E_s^T + mu_s."""
    transform, mean = colouring(style, eps)
    out = tf.matmul(_flatten(whitened), transform) + mean
    return tf.reshape(out, tf.shape(whitened))


def wct(content, style, alpha: float = 1.0, eps: float = EIGEN_EPS) -> tf.Tensor:
    """Whitening and colouring transform with Li et al.'s blend:
    alpha * colour(whiten(f_c), f_s) + (1 - alpha) * f_c."""
    content = tf.convert_to_tensor(content, tf.float32)
    return alpha * colour(whiten(content, eps), style, eps) + (1.0 - alpha) * content


# --------------------------------------------------------------------------------------------
# Style swap
# --------------------------------------------------------------------------------------------


def _style_rows_per_chunk(content_positions, style_cols, patch_dim, max_entries):
    per_row = style_cols * max(content_positions, patch_dim)
    return max(1, int(max_entries // max(1, per_row)))


def style_swap_indices(content, style, patch_size: int = 5,
                       max_entries: int = DEFAULT_MAX_SWAP_ENTRIES) -> tf.Tensor:
    """For every content position (y, x), the index j* of the style patch with the highest
    normalised correlation with the content window centred there: int32 [Hc, Wc], indexing
    the (Hs - p + 1) x (Ws - p + 1) style windows in row-major order.

    Correlations are computed a few style rows at a time (see the module docstring), keeping
    the first maximum on ties as numpy's argmax does.
    """
    content = tf.convert_to_tensor(content, tf.float32)
    style = tf.convert_to_tensor(style, tf.float32)
    p = int(patch_size)
    hc, wc, channels = content.shape
    hs, ws, _ = style.shape
    if hs < p or ws < p:
        raise ValueError(f"style map {hs}x{ws} is smaller than the {p}x{p} patch")
    if hc <= p // 2 or wc <= p // 2:
        raise ValueError(f"content map {hc}x{wc} is too small for {p}x{p} patches: use a "
                         "larger content image or a smaller --patch_size")
    r = p // 2
    padded = tf.pad(content, [[r, p - 1 - r], [r, p - 1 - r], [0, 0]], mode="REFLECT")[None]
    rows, cols = hs - p + 1, ws - p + 1
    step = _style_rows_per_chunk(hc * wc, cols, p * p * channels, max_entries)
    best_val = tf.fill([hc, wc], -np.inf)
    best_idx = tf.zeros([hc, wc], tf.int32)
    for top in range(0, rows, step):
        n_rows = min(step, rows - top)
        band = style[top:top + n_rows + p - 1][None]
        patches = tf.image.extract_patches(band, [1, p, p, 1], [1, 1, 1, 1], [1, 1, 1, 1],
                                           "VALID")  # [1, n_rows, cols, p*p*C]
        patches = tf.reshape(patches, [n_rows * cols, p, p, channels])
        norms = tf.sqrt(tf.reduce_sum(tf.square(patches), axis=[1, 2, 3]))
        kernel = tf.transpose(patches / (norms[:, None, None, None] + 1e-7), [1, 2, 3, 0])
        scores = tf.nn.conv2d(padded, kernel, 1, "VALID")[0]  # [Hc, Wc, n_rows * cols]
        val = tf.reduce_max(scores, axis=-1)
        idx = tf.cast(tf.argmax(scores, axis=-1), tf.int32) + top * cols
        better = val > best_val
        best_val = tf.where(better, val, best_val)
        best_idx = tf.where(better, idx, best_idx)
    return best_idx


def fold_patches(style, indices, patch_size: int = 5) -> tf.Tensor:
    """Place style window j = indices[y, x] centred on every content position and average
    the overlaps: [Hs, Ws, C] x int [Hc, Wc] -> [Hc, Wc, C] (the transposed convolution of a
    one-hot volume with the raw patches, divided by the overlap count, done by p^2 gathers)."""
    style = tf.convert_to_tensor(style, tf.float32)
    p, r = int(patch_size), int(patch_size) // 2
    cols = style.shape[1] - p + 1
    hc, wc = indices.shape
    top, left = indices // cols, indices % cols
    canvas = tf.zeros([hc + p - 1, wc + p - 1, style.shape[-1]])
    for dy in range(p):
        for dx in range(p):
            values = tf.gather_nd(style, tf.stack([top + dy, left + dx], axis=-1))
            canvas += tf.pad(values, [[dy, p - 1 - dy], [dx, p - 1 - dx], [0, 0]])
    ones = np.zeros((hc + p - 1, wc + p - 1), np.float32)
    for dy in range(p):
        for dx in range(p):
            ones[dy:dy + hc, dx:dx + wc] += 1.0
    count = ones[r:r + hc, r:r + wc, None]
    return canvas[r:r + hc, r:r + wc] / count


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


def multi_scale_style_swap(content, style, scales: Sequence[float], patch_size: int = 5,
                           max_entries: int = DEFAULT_MAX_SWAP_ENTRIES) -> list[tf.Tensor]:
    """Whitened content [Hc, Wc, C] swapped against the whitened style map resized
    (bilinearly) by each beta in `scales` (at least p x p), coarse to fine, followed by the
    content itself: a list of len(scales) + 1 maps [Hc, Wc, C]."""
    style = tf.convert_to_tensor(style, tf.float32)
    hs, ws = style.shape[:2]
    out = []
    for beta in scales:
        size = [max(patch_size, int(round(hs * beta))), max(patch_size, int(round(ws * beta)))]
        scaled = tf.image.resize(style[None], size, method="bilinear")[0] \
            if size != [hs, ws] else style
        out.append(style_swap(content, scaled, patch_size, max_entries))
    out.append(tf.convert_to_tensor(content, tf.float32))
    return out


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


__all__ = ["EIGEN_EPS", "DEFAULT_MAX_SWAP_ENTRIES", "whiten", "colouring", "colour", "wct",
           "style_swap_indices", "fold_patches", "style_swap", "stroke_scales",
           "multi_scale_style_swap", "attention_map", "kmeans_1d", "fusion_weights",
           "multi_stroke_fusion", "resize_map", "entries"]

