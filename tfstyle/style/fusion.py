"""Attention map and multi-stroke fusion of AAMS (Yao et al. 2019), as plain TensorFlow
functions on ONE image's maps.

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
