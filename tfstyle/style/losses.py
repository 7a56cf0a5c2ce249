"""Losses of the attention-aware auto-encoder (the CBAM seed; AAMS for comparison), per
example: the trainer reduces them over the batch with tf.nn.compute_average_loss, so that
tf.distribute replicas add up to the global-batch mean. The formulas and their weights are in
the trainer's docstring; each term here is checked against them in tests/test_seeds.py.

The AAMS code (the seed kept its settings) takes means for the pixel and perceptual MSE and
the TV term (tf.losses reductions) and a sum for the attention term, 6 * tf.norm(o, 1) over
the whole batch, height, width and channels: `attention_l1(..., "sum")` gives each example
the share of that sum which compute_average_loss turns back into it.
"""

from __future__ import annotations

import tensorflow as tf

from tfstyle.style.autoencoder import AttentionAutoencoder

#: How L_att reduces |A|: "sum" (the seed's ||A||_1, AAMS's tf.norm over the global batch)
#: or "mean" (the element mean per example, so the weight does not depend on batch or size).
ATTENTION_NORMS = ("sum", "mean")


def _per_example_mean(x):
    return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def mse(a, b):
    """Per-example mean squared error over every element: [B, ...] x [B, ...] -> [B]."""
    return _per_example_mean(tf.square(a - b))


def total_variation(x):
    """Per-example anisotropic L1 total variation (AAMS): [B, H, W, C] -> [B],
    mean |x[i+1, j] - x[i, j]| + mean |x[i, j+1] - x[i, j]|."""
    return (_per_example_mean(tf.abs(x[:, 1:] - x[:, :-1]))
            + _per_example_mean(tf.abs(x[:, :, 1:] - x[:, :, :-1])))


def attention_l1(a, norm: str = "sum", global_batch=None):
    """Per-example L_att [B] of an attention tensor a [B, ...].

    "sum": global_batch * sum(|a_i|), so that the global-batch mean is sum over the global
    batch of |a| (AAMS's tf.norm(a, 1)); global_batch defaults to B times the replicas in
    sync. "mean": mean(|a_i|).
    """
    if norm == "mean":
        return _per_example_mean(tf.abs(a))
    if norm != "sum":
        raise ValueError(f"attention norm must be one of {', '.join(ATTENTION_NORMS)}, "
                         f"got {norm!r}")
    if global_batch is None:
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        global_batch = tf.shape(a)[0] * replicas
    per_image = tf.reduce_sum(tf.abs(tf.reshape(a, [tf.shape(a)[0], -1])), axis=1)
    return per_image * tf.cast(global_batch, per_image.dtype)


def autoencoder_losses(model: AttentionAutoencoder, x, l_p: float, training=None,
                       attention_norm: str = "sum") -> dict:
    """Per-example [B] loss terms of a batch x (RGB [0, 255]): perceptual (over
    model.loss_layers), pixel, attention (L_att on A for CBAM, on the self-attention output o
    for AAMS, reduced by `attention_norm`), tv, L_con = perceptual + l_p * pixel; plus x_hat,
    o and A."""
    out = model.forward(x, training=training)
    x_hat = out["x_hat"]
    target = model.perceptual_features(x, out["features"])
    got = model.perceptual_features(x_hat)
    perceptual = tf.add_n([mse(got[name], target[name]) for name in model.loss_layers])
    pixel = mse(x_hat, x)
    if model.attention == "cbam":
        attention = attention_l1(out["A"], attention_norm)
    elif model.attention == "self":
        attention = attention_l1(out["attention"], attention_norm)
    else:
        attention = tf.zeros_like(pixel)
    return {"perceptual": perceptual, "pixel": pixel, "attention": attention,
            "tv": total_variation(x_hat), "x_hat": x_hat, "o": out["attention"],
            "A": out["A"], "L_con": perceptual + l_p * pixel}
