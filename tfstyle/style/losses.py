"""Losses of the attention-aware auto-encoder (the CBAM seed; AAMS for comparison), per
example (reduce over the batch with tf.nn.compute_average_loss so that tf.distribute replicas
add up to the global mean). The formulas and their weights are in the trainer's docstring.
"""

from __future__ import annotations

import tensorflow as tf

from tfstyle.style.autoencoder import AttentionAutoencoder


def _per_example_mean(x):
    return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def total_variation(x):
    """Per-example anisotropic L1 total variation (AAMS): [B, H, W, C] -> [B]."""
    return (_per_example_mean(tf.abs(x[:, 1:] - x[:, :-1]))
            + _per_example_mean(tf.abs(x[:, :, 1:] - x[:, :, :-1])))


def autoencoder_losses(model: AttentionAutoencoder, x, l_p: float, training=None) -> dict:
    """Per-example [B] loss terms of a batch x (RGB [0, 255]): perceptual, pixel, L_att
    (attention), tv, plus x_hat, the attention output o and A (see the module docstring)."""
    out = model.forward(x, training=training)
    x_hat = out["x_hat"]
    features_hat = model.encode(x_hat)
    perceptual = tf.add_n([_per_example_mean(tf.square(features_hat[name] - out["features"][name]))
                           for name in model.loss_layers])
    pixel = _per_example_mean(tf.square(x_hat - x))
    if model.attention == "cbam":
        attention = _per_example_mean(tf.abs(out["A"]))
    elif model.attention == "self":
        attention = _per_example_mean(tf.abs(out["attention"]))
    else:
        attention = tf.zeros_like(pixel)
    return {"perceptual": perceptual, "pixel": pixel, "attention": attention,
            "tv": total_variation(x_hat), "x_hat": x_hat, "o": out["attention"],
            "A": out["A"], "L_con": perceptual + l_p * pixel}
