"""Layers shared by the networks of every wing: the project's convolution and
initialisation, instance normalisation, reflection padding, cropping and nearest upsampling.

All tensors are NHWC and every layer stays 4-D, so the networks convert to TFLite builtin
ops (no 5-D tensors, no Flex ops).

Initialisation follows the official CycleGAN code: conv weights N(0, 0.02), biases 0,
normalisation scales N(1, 0.02).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

register = keras.saving.register_keras_serializable(package="tfstyle")


def weight_init():
    """N(0, 0.02), the initialisation of the official CycleGAN networks."""
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


def conv2d(filters, kernel_size, strides=1, padding="valid", use_bias=True, **kwargs):
    """A Conv2D with the project's initialisation (weights N(0, 0.02), bias 0)."""
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias,
        kernel_initializer=weight_init(), bias_initializer="zeros", **kwargs)


def require_4d(layer, input_shape):
    if len(input_shape) != 4:
        raise ValueError(
            f"{type(layer).__name__} '{layer.name}' takes 4-D NHWC input, got shape "
            f"{tuple(input_shape)}")


def mean_hw(x):
    """[B, H, W, C] -> [B, 1, 1, C]: the mean over H and W, taken over W and then over H.

    TensorFlow's CPU kernels sum a reduced axis that is not the innermost one in sequence, so
    one reduction over all H * W pixels loses precision with the image size (at 256 x 256:
    1.5e-5 from float64 against 1.2e-6 this way, tests/test_speed_rules.py); two short sums
    stay 4-D (LiteRT MEAN) and, W first, are faster on large maps."""
    return tf.reduce_mean(tf.reduce_mean(x, axis=2, keepdims=True), axis=1, keepdims=True)


def instance_norm(x, epsilon):
    """(x - mean_hw(x)) / sqrt(var_hw(x) + epsilon) of a float32 [B, H, W, C] tensor.

    The gradient is written out, dx = r * (dy - mean_hw(dy) - y * mean_hw(dy * y)) with
    r = 1 / sqrt(var + epsilon): a few elementwise passes and two reductions instead of the
    dozen ops that differentiating the forward pass gives."""

    @tf.custom_gradient
    def normalise(x):
        centred = x - mean_hw(x)
        scale = tf.math.rsqrt(mean_hw(tf.square(centred)) + epsilon)
        y = centred * scale

        def grad(dy):
            shift = scale * mean_hw(dy)
            slope = scale * mean_hw(dy * y)
            return dy * scale - (shift + y * slope)

        return y, grad

    return normalise(x)


@register
class InstanceNormalization(keras.layers.Layer):
    """Instance normalisation (Ulyanov et al.), 4-D only.

    y = (x - mean_hw(x)) / sqrt(var_hw(x) + epsilon)  [* gamma + beta if affine]

    Statistics are taken per image and channel over H and W (biased variance, as PyTorch's
    InstanceNorm2d), in float32 whatever the compute dtype; there are no running statistics,
    so training and inference agree (see `instance_norm` for the precision and the gradient).
    Shapes: [B, H, W, C] -> [B, H, W, C].
    """

    def __init__(self, epsilon=1e-5, affine=False, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon
        self.affine = affine

    def build(self, input_shape):
        require_4d(self, input_shape)
        if self.affine:
            channels = input_shape[-1]
            self.gamma = self.add_weight(
                shape=(channels,), name="gamma",
                initializer=keras.initializers.RandomNormal(1.0, 0.02))
            self.beta = self.add_weight(shape=(channels,), name="beta", initializer="zeros")

    def call(self, x):
        y = instance_norm(ops.cast(x, "float32"), self.epsilon)
        if self.affine:
            y = y * ops.cast(self.gamma, "float32") + ops.cast(self.beta, "float32")
        return ops.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "affine": self.affine}


@register
class ReflectionPadding2D(keras.layers.Layer):
    """Reflection padding of H and W by `padding` pixels (TFLite: MIRROR_PAD).

    Shapes: [B, H, W, C] -> [B, H + 2p, W + 2p, C]; needs H, W > p.
    """

    def __init__(self, padding=1, **kwargs):
        super().__init__(**kwargs)
        self.padding = int(padding)

    def build(self, input_shape):
        require_4d(self, input_shape)

    def call(self, x):
        p = self.padding
        return ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="reflect")

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        grow = lambda d: None if d is None else d + 2 * self.padding  # noqa: E731
        return (b, grow(h), grow(w), c)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


@register
class CropTopLeft2D(keras.layers.Layer):
    """Drops the first `n` rows and columns (LiteRT: STRIDED_SLICE).

    Its gradient is written out as a zero pad: TensorFlow's generic strided-slice gradient
    (StridedSliceGrad) costs several times more (docs/benchmarks.md, "Training step").
    Shapes: [B, H, W, C] -> [B, H - n, W - n, C].
    """

    def __init__(self, n=1, **kwargs):
        super().__init__(**kwargs)
        self.n = int(n)

    def build(self, input_shape):
        require_4d(self, input_shape)

    def call(self, x):
        n = self.n

        @tf.custom_gradient
        def crop(x):
            return x[:, n:, n:, :], lambda dy: tf.pad(dy, [[0, 0], [n, 0], [n, 0], [0, 0]])

        return crop(x)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        shrink = lambda d: None if d is None else d - self.n  # noqa: E731
        return (b, shrink(h), shrink(w), c)

    def get_config(self):
        return {**super().get_config(), "n": self.n}


@register
class NearestUpsampling2D(keras.layers.Layer):
    """Nearest-neighbour upsampling by an integer `factor` (TFLite: RESIZE_NEAREST_NEIGHBOR;
    Keras's UpSampling2D repeats through 5-D tensors, which the LiteRT exports refuse).

    Shapes: [B, H, W, C] -> [B, H * f, W * f, C]; out[y, x] = in[y // f, x // f].
    """

    def __init__(self, factor=2, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)

    def build(self, input_shape):
        require_4d(self, input_shape)

    def call(self, x):
        shape = tf.shape(x)
        size = tf.stack([shape[1] * self.factor, shape[2] * self.factor])
        return tf.image.resize(x, size, method="nearest")

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        grow = lambda d: None if d is None else d * self.factor  # noqa: E731
        return (b, grow(h), grow(w), c)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}
