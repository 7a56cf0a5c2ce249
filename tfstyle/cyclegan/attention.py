"""Attention layers of the CycleGAN family's residual blocks: squeeze-and-excitation
(CycleSE) and DANet's position and channel attention modules (CycleDA).

Attention arithmetic runs in float32 even under a mixed precision policy (Gram matrices and
softmax energies overflow float16). Every layer stays 4-D (TFLite builtin ops only).
"""

from __future__ import annotations

import keras
from keras import ops

from tfstyle.core.layers import conv2d, register, require_4d


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
        require_4d(self, input_shape)
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
        require_4d(self, input_shape)
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
        require_4d(self, input_shape)
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
