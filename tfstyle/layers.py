"""Layers of the tfstyle networks: normalisation, padding and attention blocks.

All tensors are NHWC and every layer stays 4-D, so the networks convert to TFLite builtin
ops (no 5-D tensors, no Flex ops). Attention arithmetic runs in float32 even under a mixed
precision policy (Gram matrices and softmax energies overflow float16).

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


def _require_4d(layer, input_shape):
    if len(input_shape) != 4:
        raise ValueError(
            f"{type(layer).__name__} '{layer.name}' takes 4-D NHWC input, got shape "
            f"{tuple(input_shape)}")


@register
class InstanceNormalization(keras.layers.Layer):
    """Instance normalisation (Ulyanov et al.), 4-D only.

    y = (x - mean_hw(x)) / sqrt(var_hw(x) + epsilon)  [* gamma + beta if affine]

    Statistics are taken per image and channel over H and W (biased variance, as PyTorch's
    InstanceNorm2d); there are no running statistics, so training and inference agree.
    Shapes: [B, H, W, C] -> [B, H, W, C].
    """

    def __init__(self, epsilon=1e-5, affine=False, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon
        self.affine = affine

    def build(self, input_shape):
        _require_4d(self, input_shape)
        if self.affine:
            channels = input_shape[-1]
            self.gamma = self.add_weight(
                shape=(channels,), name="gamma",
                initializer=keras.initializers.RandomNormal(1.0, 0.02))
            self.beta = self.add_weight(shape=(channels,), name="beta", initializer="zeros")

    def call(self, x):
        x32 = ops.cast(x, "float32")
        mean = ops.mean(x32, axis=[1, 2], keepdims=True)
        centred = x32 - mean
        variance = ops.mean(ops.square(centred), axis=[1, 2], keepdims=True)
        y = centred * ops.rsqrt(variance + self.epsilon)
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
        _require_4d(self, input_shape)

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
class NearestUpsampling2D(keras.layers.Layer):
    """Nearest-neighbour upsampling by an integer `factor` (TFLite: RESIZE_NEAREST_NEIGHBOR;
    Keras's UpSampling2D repeats through 5-D tensors, which the LiteRT exports refuse).

    Shapes: [B, H, W, C] -> [B, H * f, W * f, C]; out[y, x] = in[y // f, x // f].
    """

    def __init__(self, factor=2, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)

    def build(self, input_shape):
        _require_4d(self, input_shape)

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


@register
class SqueezeExcitation(keras.layers.Layer):
    """Squeeze-and-excitation gate (Hu et al.).

    s = sigmoid(W2 relu(W1 avgpool_hw(x)));  y = s * x, with W1: C -> C/r, W2: C/r -> C
    (1x1 convolutions with biases). Shapes: [B, H, W, C] -> [B, H, W, C].
    """

    def __init__(self, channels, reduction=16, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.reduction = int(reduction)
        hidden = max(1, self.channels // self.reduction)
        self.squeeze = conv2d(hidden, 1, activation="relu", name="fc1")
        self.excite = conv2d(self.channels, 1, activation="sigmoid", name="fc2")

    def build(self, input_shape):
        _require_4d(self, input_shape)
        pooled = (input_shape[0], 1, 1, self.channels)
        self.squeeze.build(pooled)
        self.excite.build(pooled[:3] + (self.squeeze.filters,))

    def gate(self, x):
        """The channel weights s, [B, 1, 1, C]."""
        return self.excite(self.squeeze(ops.mean(x, axis=[1, 2], keepdims=True)))

    def call(self, x):
        return x * self.gate(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "reduction": self.reduction}


# Default cap on the attention matrix of PositionAttention: N_query * N_key entries per image.
# 4096 * 4096 is the 64x64 bottleneck of a 256x256 generator input (64 MiB in float32).
DEFAULT_MAX_ATTENTION_SIZE = 4096 * 4096


@register
class PositionAttention(keras.layers.Layer):
    """DANet position attention module (PAM, Fu et al. 2019).

    Q = conv_q(x), K = conv_k(x): C -> C/r;  V = conv_v(x): C -> C  (1x1 convs, r = 8)
    S = softmax_keys(Q K^T)  [B, N, N], N = H*W
    y = gamma * (S V) + x,   gamma a scalar initialised to 0.

    Memory: S has N^2 entries per image (16.8M floats, 64 MiB, for a 64x64 map; 1 GiB for
    128x128), so attention over a large map is refused rather than allowed to exhaust memory.
    `kv_pool` = p > 1 computes keys and values on a p x p average-pooled map, giving
    N * N / p^2 entries; queries, and so the output, keep full resolution. Calls whose static
    N_query * N_key exceeds `max_attention_size` raise ValueError naming both options.

    Shapes: [B, H, W, C] -> [B, H, W, C]; H and W divisible by kv_pool.
    """

    def __init__(self, channels, reduction=8, kv_pool=1,
                 max_attention_size=DEFAULT_MAX_ATTENTION_SIZE, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.reduction = int(reduction)
        self.kv_pool = int(kv_pool)
        self.max_attention_size = int(max_attention_size)
        key_dim = max(1, self.channels // self.reduction)
        self.query = conv2d(key_dim, 1, name="query")
        self.key = conv2d(key_dim, 1, name="key")
        self.value = conv2d(self.channels, 1, name="value")

    def build(self, input_shape):
        _require_4d(self, input_shape)
        for conv in (self.query, self.key, self.value):
            conv.build(input_shape)
        self.gamma = self.add_weight(shape=(), name="gamma", initializer="zeros")

    def _check_size(self, height, width):
        if height is None or width is None:
            return
        queries = height * width
        keys = queries // (self.kv_pool ** 2)
        if queries * keys > self.max_attention_size:
            raise ValueError(
                f"PositionAttention '{self.name}': a {height}x{width} feature map needs a "
                f"{queries}x{keys} attention matrix per image ({queries * keys:,} entries, "
                f"limit max_attention_size={self.max_attention_size:,}). Pool keys and "
                f"values with kv_pool={max(2, 2 * self.kv_pool)} (ResnetGenerator(pam_kv_pool=...)), "
                "raise max_attention_size if memory allows, or translate in tiles "
                "(python -m tfstyle.translate tiles large images).")

    def attention(self, x):
        """The attention matrix S, [B, N_query, N_key], in float32."""
        height, width = x.shape[1], x.shape[2]
        self._check_size(height, width)
        batch = ops.shape(x)[0]
        q = ops.reshape(ops.cast(self.query(x), "float32"), (batch, -1, self.query.filters))
        kv_in = x
        if self.kv_pool > 1:
            kv_in = ops.average_pool(x, self.kv_pool, self.kv_pool, "valid")
        k = ops.reshape(ops.cast(self.key(kv_in), "float32"), (batch, -1, self.key.filters))
        return kv_in, ops.softmax(ops.matmul(q, ops.transpose(k, (0, 2, 1))), axis=-1)

    def call(self, x):
        kv_in, attn = self.attention(x)
        batch = ops.shape(x)[0]
        v = ops.reshape(ops.cast(self.value(kv_in), "float32"), (batch, -1, self.channels))
        out = ops.reshape(ops.matmul(attn, v), ops.shape(x))
        return ops.cast(self.gamma * out, self.compute_dtype) + x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "reduction": self.reduction,
                "kv_pool": self.kv_pool, "max_attention_size": self.max_attention_size}


@register
class ChannelAttention(keras.layers.Layer):
    """DANet channel attention module (CAM, Fu et al. 2019); no convolutions.

    X = reshape(x) [B, N, C];  E = X^T X  [B, C, C]
    S = softmax_last(max_row(E) - E)  (DANet's "energy_new")
    y = gamma * (X S^T) + x,   gamma a scalar initialised to 0.

    Cost is C^2 per image, independent of H and W. Shapes: [B, H, W, C] -> [B, H, W, C].
    """

    def build(self, input_shape):
        _require_4d(self, input_shape)
        self.gamma = self.add_weight(shape=(), name="gamma", initializer="zeros")

    def attention(self, x):
        """The channel attention matrix S, [B, C, C], in float32."""
        flat = ops.reshape(ops.cast(x, "float32"), (ops.shape(x)[0], -1, x.shape[-1]))
        energy = ops.matmul(ops.transpose(flat, (0, 2, 1)), flat)
        energy = ops.max(energy, axis=-1, keepdims=True) - energy
        return flat, ops.softmax(energy, axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def call(self, x):
        flat, attn = self.attention(x)
        out = ops.reshape(ops.matmul(flat, ops.transpose(attn, (0, 2, 1))), ops.shape(x))
        return ops.cast(self.gamma * out, self.compute_dtype) + x


@register
class ChannelGate(keras.layers.Layer):
    """CBAM channel attention map (Woo et al. 2018).

    Mc(F) = sigmoid(MLP(avgpool_hw(F)) + MLP(maxpool_hw(F))), with one shared MLP
    C -> C/r -> C (ReLU inside, biases). Shapes: [B, H, W, C] -> [B, 1, 1, C].
    """

    def __init__(self, channels, reduction=16, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.reduction = int(reduction)
        self.hidden = conv2d(max(1, self.channels // self.reduction), 1, activation="relu",
                             name="mlp_hidden")
        self.out = conv2d(self.channels, 1, name="mlp_out")

    def build(self, input_shape):
        _require_4d(self, input_shape)
        pooled = (input_shape[0], 1, 1, self.channels)
        self.hidden.build(pooled)
        self.out.build(pooled[:3] + (self.hidden.filters,))

    def call(self, x):
        mlp = lambda v: self.out(self.hidden(v))  # noqa: E731
        avg = ops.mean(x, axis=[1, 2], keepdims=True)
        mx = ops.max(x, axis=[1, 2], keepdims=True)
        return ops.sigmoid(mlp(avg) + mlp(mx))

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "reduction": self.reduction}


@register
class SpatialGate(keras.layers.Layer):
    """CBAM spatial attention map (Woo et al. 2018).

    Ms(F) = sigmoid(BN(conv_kxk([max_c(F), mean_c(F)]))), conv without bias, zero padding.
    Shapes: [B, H, W, C] -> [B, H, W, 1].
    """

    def __init__(self, kernel_size=7, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = int(kernel_size)
        self.conv = conv2d(1, self.kernel_size, padding="same", use_bias=False, name="conv")
        self.norm = keras.layers.BatchNormalization(momentum=0.99, epsilon=1e-5, name="bn")

    def build(self, input_shape):
        _require_4d(self, input_shape)
        pooled = tuple(input_shape[:3]) + (2,)
        self.conv.build(pooled)
        self.norm.build(pooled[:3] + (1,))

    def call(self, x, training=None):
        pooled = ops.concatenate(
            [ops.max(x, axis=-1, keepdims=True), ops.mean(x, axis=-1, keepdims=True)], axis=-1)
        return ops.sigmoid(self.norm(self.conv(pooled), training=training))

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size}


@register
class CBAM(keras.layers.Layer):
    """Convolutional block attention module: channel gate, then spatial gate.

    F' = Mc(F) * F;  F'' = Ms(F') * F'.  Returns F'' (and, with return_attention=True, the
    maps Mc [B, 1, 1, C] and Ms [B, H, W, 1]). The CBAM style-transfer seed forms
    A = F + F'' from this output. Shapes: [B, H, W, C] -> [B, H, W, C].
    """

    def __init__(self, channels, reduction=16, kernel_size=7, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.reduction = int(reduction)
        self.kernel_size = int(kernel_size)
        self.channel_gate = ChannelGate(self.channels, self.reduction, name="channel_gate")
        self.spatial_gate = SpatialGate(self.kernel_size, name="spatial_gate")

    def build(self, input_shape):
        _require_4d(self, input_shape)
        self.channel_gate.build(input_shape)
        self.spatial_gate.build(input_shape)

    def call(self, x, training=None, return_attention=False):
        mc = self.channel_gate(x)
        refined = mc * x
        ms = self.spatial_gate(refined, training=training)
        out = ms * refined
        return (out, mc, ms) if return_attention else out

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels,
                "reduction": self.reduction, "kernel_size": self.kernel_size}

