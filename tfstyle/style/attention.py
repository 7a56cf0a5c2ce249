"""Attention modules of the attention-aware auto-encoder: CBAM (the seed: channel gate,
then spatial gate) and AAMS's self-attention.
"""

from __future__ import annotations

import keras
from keras import ops

from tfstyle.core.layers import conv2d, register, require_4d

#: Default cap on entries of the self-attention matrix held at once (per image): 2^26
#: floats (256 MiB). Queries are processed in chunks beyond it (exact: rows are independent).
DEFAULT_MAX_ATTENTION_ENTRIES = 2 ** 26


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
        require_4d(self, input_shape)
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
        require_4d(self, input_shape)
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
        require_4d(self, input_shape)
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


@register
class SelfAttention(keras.layers.Layer):
    """AAMS self-attention (official code; SAGAN's form without the output conv and gamma).

    key = conv1x1(x): C -> C/2, query = conv1x1(x): C -> C/2, value = conv1x1(x): C -> C
    (biases, 2C^2 + 2C parameters); S = query key^T [B, N, N], N = H*W;
    beta = softmax over keys; o = beta value. Shapes: [B, H, W, C] -> o [B, H, W, C].

    Memory: beta has N^2 entries per image (1.6e9 for a 200x200 relu3_1 map). When the
    static N^2 exceeds `max_attention_entries`, queries are processed in chunks of
    max_attention_entries // N rows; every row is its own softmax, so this is exact.
    """

    def __init__(self, channels, max_attention_entries=DEFAULT_MAX_ATTENTION_ENTRIES,
                 **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.max_attention_entries = int(max_attention_entries)
        half = max(1, self.channels // 2)
        dense = lambda n, name: keras.layers.Conv2D(n, 1, name=name)  # noqa: E731
        self.key = dense(half, "f_conv")
        self.query = dense(half, "g_conv")
        self.value = dense(self.channels, "h_conv")

    def build(self, input_shape):
        for conv in (self.key, self.query, self.value):
            conv.build(input_shape)

    def call(self, x):
        batch, height, width = ops.shape(x)[0], x.shape[1], x.shape[2]
        flat = lambda t: ops.reshape(t, (batch, -1, t.shape[-1]))  # noqa: E731
        q, k, v = flat(self.query(x)), flat(self.key(x)), flat(self.value(x))
        n = height * width if height is not None and width is not None else None
        if n is None or n * n <= self.max_attention_entries:
            o = ops.matmul(ops.softmax(ops.matmul(q, ops.transpose(k, (0, 2, 1))), -1), v)
        else:
            rows = max(1, self.max_attention_entries // n)
            kt = ops.transpose(k, (0, 2, 1))
            o = ops.concatenate(
                [ops.matmul(ops.softmax(ops.matmul(q[:, s:s + rows], kt), -1), v)
                 for s in range(0, n, rows)], axis=1)
        return ops.reshape(o, ops.shape(x))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels,
                "max_attention_entries": self.max_attention_entries}
