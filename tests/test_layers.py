"""Layers against plain numpy implementations of the same formulas."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfstyle.core import layers
from tfstyle.cyclegan import attention as cyclegan_attention
from tfstyle.style import attention as style_attention

RNG = np.random.default_rng(0)


def rand(*shape):
    return RNG.standard_normal(shape).astype("float32")


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def conv1x1(x, conv):
    kernel, bias = (w.numpy() for w in conv.weights)
    return np.einsum("bhwc,cd->bhwd", x, kernel[0, 0]) + bias


def test_instance_norm_matches_numpy():
    x = rand(2, 5, 7, 3) * 4 + 3
    layer = layers.InstanceNormalization()
    y = layer(x).numpy()
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), atol=1e-5)
    assert not layer.weights


def test_instance_norm_affine_and_4d_only():
    x = rand(2, 4, 4, 3)
    layer = layers.InstanceNormalization(affine=True)
    layer.build(x.shape)
    layer.gamma.assign(np.array([1.0, 2.0, -1.0], "float32"))
    layer.beta.assign(np.array([0.0, 1.0, 0.5], "float32"))
    ref = (x - x.mean((1, 2), keepdims=True)) / np.sqrt(x.var((1, 2), keepdims=True) + 1e-5)
    np.testing.assert_allclose(layer(x).numpy(), ref * [1, 2, -1] + [0, 1, 0.5], atol=1e-5)
    with pytest.raises(ValueError, match="4-D"):
        layers.InstanceNormalization()(rand(1, 2, 4, 4, 3))


def test_reflection_padding_matches_numpy():
    x = rand(1, 5, 6, 2)
    y = layers.ReflectionPadding2D(2)(x).numpy()
    np.testing.assert_array_equal(y, np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)], "reflect"))


def test_squeeze_excitation_matches_numpy():
    x = rand(2, 6, 5, 32)
    layer = cyclegan_attention.SqueezeExcitation(32, reduction=16)
    y = layer(x).numpy()
    pooled = x.mean(axis=(1, 2), keepdims=True)
    s = sigmoid(conv1x1(np.maximum(conv1x1(pooled, layer.squeeze), 0), layer.excite))
    assert layer.squeeze.filters == 2
    np.testing.assert_allclose(y, x * s, atol=1e-5)


def pam_numpy(x, layer, gamma):
    b, h, w, c = x.shape
    p = layer.kv_pool
    kv = x.reshape(b, h // p, p, w // p, p, c).mean(axis=(2, 4)) if p > 1 else x
    q = conv1x1(x, layer.query).reshape(b, h * w, -1)
    k = conv1x1(kv, layer.key).reshape(b, kv.shape[1] * kv.shape[2], -1)
    v = conv1x1(kv, layer.value).reshape(b, kv.shape[1] * kv.shape[2], c)
    attn = softmax(q @ k.transpose(0, 2, 1), axis=-1)
    return gamma * (attn @ v).reshape(b, h, w, c) + x


@pytest.mark.parametrize("kv_pool", [1, 2])
def test_position_attention_matches_numpy(kv_pool):
    x = rand(2, 4, 6, 16)
    layer = cyclegan_attention.PositionAttention(16, reduction=8, kv_pool=kv_pool)
    np.testing.assert_allclose(layer(x).numpy(), x, atol=1e-6)  # gamma starts at 0
    layer.gamma.assign(0.7)
    np.testing.assert_allclose(layer(x).numpy(), pam_numpy(x, layer, 0.7), atol=1e-4)


def test_position_attention_refuses_oversized_maps():
    layer = cyclegan_attention.PositionAttention(8, max_attention_size=64 * 64)
    layer(rand(1, 8, 8, 8))  # 64 x 64 entries: at the limit
    with pytest.raises(ValueError, match="kv_pool=2"):
        layer(rand(1, 8, 16, 8))
    pooled = cyclegan_attention.PositionAttention(8, kv_pool=2, max_attention_size=64 * 64)
    assert pooled(rand(1, 8, 16, 8)).shape == (1, 8, 16, 8)  # 128 x 32 entries


def test_channel_attention_matches_numpy():
    x = rand(2, 3, 5, 6)
    layer = cyclegan_attention.ChannelAttention()
    layer.build(x.shape)
    layer.gamma.assign(0.3)
    flat = x.reshape(2, 15, 6)
    energy = flat.transpose(0, 2, 1) @ flat
    attn = softmax(energy.max(axis=-1, keepdims=True) - energy, axis=-1)
    ref = 0.3 * (flat @ attn.transpose(0, 2, 1)).reshape(x.shape) + x
    np.testing.assert_allclose(layer(x).numpy(), ref, rtol=1e-4, atol=1e-4)


def test_cbam_matches_numpy():
    x = rand(2, 6, 7, 32)
    layer = style_attention.CBAM(32, reduction=16, kernel_size=7)
    layer.build(x.shape)
    bn = layer.spatial_gate.norm
    bn.gamma.assign([1.5])
    bn.beta.assign([0.2])
    bn.moving_mean.assign([0.1])
    bn.moving_variance.assign([2.0])
    out, mc, ms = layer(x, training=False, return_attention=True)

    gate = layer.channel_gate
    mlp = lambda v: conv1x1(np.maximum(conv1x1(v, gate.hidden), 0), gate.out)  # noqa: E731
    mc_ref = sigmoid(mlp(x.mean((1, 2), keepdims=True)) + mlp(x.max((1, 2), keepdims=True)))
    refined = mc_ref * x
    pooled = np.concatenate([refined.max(-1, keepdims=True), refined.mean(-1, keepdims=True)], -1)
    kernel = layer.spatial_gate.conv.weights[0].numpy()  # [7, 7, 2, 1]
    padded = np.pad(pooled, [(0, 0), (3, 3), (3, 3), (0, 0)])
    conv = np.zeros(pooled.shape[:3] + (1,), "float32")
    for i in range(7):
        for j in range(7):
            conv += np.einsum("bhwc,cd->bhwd", padded[:, i:i + 6, j:j + 7], kernel[i, j])
    ms_ref = sigmoid((conv - 0.1) / np.sqrt(2.0 + 1e-5) * 1.5 + 0.2)
    np.testing.assert_allclose(mc.numpy(), mc_ref, atol=1e-5)
    np.testing.assert_allclose(ms.numpy(), ms_ref, atol=1e-5)
    np.testing.assert_allclose(out.numpy(), ms_ref * refined, atol=1e-5)


@pytest.mark.parametrize("layer", [
    layers.InstanceNormalization(affine=True), layers.ReflectionPadding2D(3),
    cyclegan_attention.SqueezeExcitation(16, 4), cyclegan_attention.PositionAttention(16, 4, kv_pool=2),
    cyclegan_attention.ChannelAttention(), style_attention.CBAM(16, 4, 3)], ids=lambda l: type(l).__name__)
def test_layer_config_round_trip(layer):
    x = rand(1, 8, 8, 16)
    y = layer(x)
    clone = type(layer).from_config(layer.get_config())
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(x).numpy(), y.numpy(), atol=1e-6)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == layer.get_config()


def test_nearest_upsampling_repeats_pixels_with_dynamic_sizes():
    from tfstyle.core.layers import NearestUpsampling2D

    x = np.random.default_rng(0).normal(size=(2, 5, 7, 3)).astype(np.float32)
    layer = NearestUpsampling2D(2)
    np.testing.assert_array_equal(layer(x).numpy(), x.repeat(2, axis=1).repeat(2, axis=2))
    traced = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 3])])
    assert traced(x[:, :3]).shape == (2, 6, 14, 3)
    assert layer.compute_output_shape((None, None, 4, 3)) == (None, None, 8, 3)
