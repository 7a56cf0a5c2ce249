"""Attention map and multi-stroke fusion of AAMS (Yao et al. 2019), as plain TensorFlow
functions on ONE image's maps.

Multi-stroke fusion (AAMS)
    a: the attention map [H, W] in [0, 1]; c_1 < ... < c_k: 1-D k-means centroids of a
    (80 Lloyd iterations, as AAMS).
    w_k(y,x) = softmax_k(theta * (1 - |a(y,x) - c_k|)),  theta = 50
    fused    = sum_k w_k F_k,  F_1 the coarsest stroke ... F_k the content:
    low attention (background) gets coarse strokes, high attention keeps detail.

Attention map (AAMS's `attention_filter`, applied to the attention branch's output o: the
self-attention output, or CBAM's F''):
    m = [|o| > 2 mean(|o|)] (per element), a = minmax(K * mean_c(m)),
    K * : a 3x3 convolution with zero padding. AAMS draws K from a normal(6, 5) truncated at
    two standard deviations and divides it by its sum, anew for every image;
    `smoothing_kernel("aams", seed)` draws it the same way from a seed, so that a
    stylization is reproducible (and an exported model computes what tfstyle.stylize does);
    "box" is the draws' expectation, 1/9 everywhere. (AAMS's convolution sums the channels
    of m into each output channel and the fusion averages those: after the min-max, the same
    map.)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

#: Smoothing kernels of the attention map: AAMS's random draw, or its expectation.
SMOOTHINGS = ("aams", "box")
#: Lloyd iterations of the fusion's k-means (AAMS: 80).
KMEANS_ITERATIONS = 80


def smoothing_kernel(kind: str = "aams", seed: int = 0, size: int = 3) -> np.ndarray:
    """The attention map's smoothing kernel [size, size], summing to 1: "aams" draws it as
    AAMS does (tf.truncated_normal(mean=6, stddev=5): values beyond two standard deviations
    drawn again; then divided by the sum) from numpy's generator seeded with `seed`; "box"
    is 1 / size^2 everywhere, the expectation of those draws."""
    if kind == "box":
        return np.full((size, size), 1.0 / (size * size), np.float32)
    if kind != "aams":
        raise ValueError(f"smoothing must be one of {', '.join(SMOOTHINGS)}, got {kind!r}")
    rng = np.random.default_rng(seed)
    mean, std = 6.0, 5.0
    w = rng.normal(mean, std, (size, size))
    while True:
        outside = np.abs(w - mean) > 2 * std
        if not outside.any():
            break
        w[outside] = rng.normal(mean, std, int(outside.sum()))
    return (w / w.sum()).astype(np.float32)


def attention_map(output, kernel=None) -> tf.Tensor:
    """AAMS's attention filter: the attention branch's output [H, W, C] -> a map [H, W] in
    [0, 1]: a = minmax(kernel * mean_c([|o| > 2 mean(|o|)])), the convolution zero-padded;
    kernel [k, k] defaults to smoothing_kernel() (AAMS's draw, seed 0). A constant map
    gives zeros (where AAMS divides by zero)."""
    kernel = smoothing_kernel() if kernel is None else np.asarray(kernel, np.float32)
    magnitude = tf.abs(tf.convert_to_tensor(output, tf.float32))
    mask = tf.cast(magnitude > 2.0 * tf.reduce_mean(magnitude), tf.float32)
    a = tf.reduce_mean(mask, axis=-1)[None, :, :, None]
    a = tf.nn.conv2d(a, tf.constant(kernel[:, :, None, None]), 1, "SAME")[0, :, :, 0]
    low, high = tf.reduce_min(a), tf.reduce_max(a)
    return tf.where(high > low, (a - low) / tf.maximum(high - low, 1e-12), tf.zeros_like(a))


def kmeans_1d(values, k: int, iterations: int = KMEANS_ITERATIONS) -> tf.Tensor:
    """Lloyd's k-means on scalar values (any shape): k centroids, sorted ascending.
    Initialised at the (i + 1/2)/k quantiles, not at k random values as AAMS, so that a
    stylization does not depend on a draw (bench/aams_order.py compares the two); an empty
    cluster keeps its centroid (AAMS's averages to NaN)."""
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
