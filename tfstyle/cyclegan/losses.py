"""Losses of the CycleGAN family, per example (reduce over the batch with
tf.nn.compute_average_loss so that tf.distribute replicas add up to the global mean)."""

from __future__ import annotations

import tensorflow as tf

GAN_MODES = ("lsgan", "vanilla")


def _per_example_mean(x):
    return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def gan_loss(prediction, target_is_real: bool, mode: str = "lsgan"):
    """Per-example GAN loss of discriminator scores [B, h, w, 1] against a constant target.

    lsgan:   mean((D - t)^2),                 t = 1 (real) or 0 (fake)  (Mao et al.)
    vanilla: mean(BCE(sigmoid(D), t)),        computed from logits
    """
    prediction = tf.cast(prediction, tf.float32)
    target = tf.ones_like(prediction) if target_is_real else tf.zeros_like(prediction)
    if mode == "lsgan":
        return _per_example_mean(tf.square(prediction - target))
    if mode == "vanilla":
        return _per_example_mean(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=prediction))
    raise ValueError(f"gan_mode must be one of {GAN_MODES}, got {mode!r}")


def l1(x, y):
    """Per-example mean absolute error, [B]."""
    return _per_example_mean(tf.abs(tf.cast(x, tf.float32) - tf.cast(y, tf.float32)))
