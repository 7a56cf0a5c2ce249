"""Generators and discriminator: shapes, parameter counts, gradients, serialisation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfstyle.cyclegan.blocks import BLOCKS
from tfstyle.cyclegan.networks import PatchDiscriminator, ResnetGenerator, count_params


def tiny_generator(block, **kwargs):
    return ResnetGenerator(ngf=8, n_blocks=2, block=block, **kwargs)


def images(*shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype("float32")


@pytest.mark.parametrize("config, expected", [
    (dict(), 11_378_179),
    (dict(n_blocks=6), 7_837_699),
])
def test_generator_parameter_counts_match_official(config, expected):
    assert count_params(ResnetGenerator(**config)) == expected


def test_attention_generators_add_the_attention_weights():
    plain = count_params(ResnetGenerator())
    # SE per block: 1x1 convs 256->16 and 16->256 with biases.
    assert count_params(ResnetGenerator(block="se")) == plain + 9 * (256 * 16 + 16 + 16 * 256 + 256)
    # DA per block: PAM query/key 256->32, value 256->256 (with biases) and two gammas.
    pam = 2 * (256 * 32 + 32) + 256 * 256 + 256
    assert count_params(ResnetGenerator(block="da")) == plain + 9 * (pam + 2)


def test_discriminator_parameter_count_and_patch_shape():
    assert count_params(PatchDiscriminator()) == 2_764_737
    assert PatchDiscriminator(ndf=4)(images(1, 256, 256, 3)).shape == (1, 30, 30, 1)
    assert PatchDiscriminator(ndf=4)(images(2, 64, 96, 3)).shape == (2, 6, 10, 1)


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("size", [(32, 32), (36, 64), (64, 40)])
def test_generator_output_shapes(block, size):
    y = tiny_generator(block)(images(2, *size, 3))
    assert y.shape == (2, *size, 3) and y.dtype == tf.float32
    assert np.abs(y.numpy()).max() <= 1.0


def test_generator_rejects_sizes_not_divisible_by_4():
    with pytest.raises(ValueError, match="divisible by 4"):
        tiny_generator("resnet")(images(1, 30, 32, 3))


def test_generator_accepts_unknown_sizes_in_graph_mode():
    g = tiny_generator("se")
    fn = tf.function(g, input_signature=[tf.TensorSpec([None, None, None, 3])])
    assert fn(images(1, 44, 28, 3)).shape == (1, 44, 28, 3)


def test_initialisation_is_normal_0_02_with_zero_biases():
    g = ResnetGenerator(ngf=32, n_blocks=2)
    g.build((1, 32, 32, 3))
    kernels = np.concatenate([w.numpy().ravel() for w in g.weights if "kernel" in w.path])
    biases = np.concatenate([w.numpy().ravel() for w in g.weights if "bias" in w.path])
    assert abs(kernels.mean()) < 1e-3 and abs(kernels.std() - 0.02) < 1e-3
    assert not biases.any()


@pytest.mark.parametrize("model", [tiny_generator("resnet"), tiny_generator("se"),
                                   tiny_generator("da", norm_affine=True),
                                   PatchDiscriminator(ndf=8)], ids=lambda m: m.name)
def test_gradients_reach_every_trainable_weight(model):
    x = images(2, 32, 32, 3)
    model(x)
    for w in model.trainable_weights:  # DANet's gammas start at 0 and would hide q/k/v
        if w.path.endswith("gamma") and w.shape == ():
            w.assign(0.5)
    target = images(*model(x).shape, seed=1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x) - target))
    grads = tape.gradient(loss, model.trainable_weights)
    missing = [w.path for w, g in zip(model.trainable_weights, grads)
               if g is None or not np.any(g.numpy())]
    assert not missing


@pytest.mark.parametrize("model", [tiny_generator("resnet"), tiny_generator("se"),
                                   tiny_generator("da", pam_kv_pool=2),
                                   PatchDiscriminator(ndf=8, n_layers=2)], ids=lambda m: m.name)
def test_keras_format_round_trip_gives_identical_outputs(model, tmp_path):
    x = images(1, 32, 48, 3)
    model(x)
    for w in model.weights:  # make every weight matter
        if w.path.endswith("gamma") and w.shape == ():
            w.assign(0.25)
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert type(restored) is type(model)
    assert restored.get_config() == model.get_config()
    np.testing.assert_array_equal(restored(x).numpy(), model(x).numpy())
    clone = type(model).from_config(model.get_config())
    clone(x)
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone(x).numpy(), model(x).numpy())


def test_da_generator_refuses_huge_bottleneck_with_a_clear_error():
    g = ResnetGenerator(ngf=4, n_blocks=1, block="da", pam_max_attention_size=16 * 16 * 16 * 16)
    g(images(1, 64, 64, 3))
    with pytest.raises(ValueError, match="pam_kv_pool"):
        g(images(1, 64, 128, 3))


def test_generator_under_mixed_precision_returns_float32():
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        g = tiny_generator("da")
        d = PatchDiscriminator(ndf=8)
        y = g(images(1, 32, 32, 3))
        assert y.dtype == tf.float32 and d(y).dtype == tf.float32
        assert np.isfinite(y.numpy()).all()
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


@pytest.fixture(scope="module")
def toy_block():
    """A block type registered the way a contributor adds one: one class, one decorator."""
    from tfstyle.cyclegan.blocks import BLOCKS, ResnetBlock, block_type

    @block_type("toy", "CycleToy", "residual branch scaled by a constant (test only)")
    class ToyResnetBlock(ResnetBlock):
        def __init__(self, dim, toy_scale=0.5, norm_affine=False, **kwargs):
            super().__init__(dim, norm_affine=norm_affine, **kwargs)
            self.toy_scale = float(toy_scale)

        def call(self, x):
            return x + self.toy_scale * self.residual(x)

        def get_config(self):
            return {**super().get_config(), "toy_scale": self.toy_scale}

    yield ToyResnetBlock
    del BLOCKS["toy"]


def test_a_new_block_type_is_one_class_and_one_entry(toy_block, tmp_path):
    from tfstyle import params
    from tfstyle.cyclegan.trainer import CycleGANConfig
    g = ResnetGenerator(ngf=4, n_blocks=2, block="toy", block_options={"toy_scale": 0.25})
    x = images(1, 16, 16, 3)
    y = g(x).numpy()
    assert isinstance(g.blocks[0], toy_block) and g.blocks[0].toy_scale == 0.25
    g.save(tmp_path / "toy.keras")
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "toy.keras")(x), y, atol=1e-6)
    assert "CycleToy generator" in params.cyclegan_table(4, 4)
    assert CycleGANConfig(dataroot="synthetic", model_dir=str(tmp_path), block="toy").block == "toy"
    with pytest.raises(ValueError, match="toy_scale"):
        ResnetGenerator(ngf=4, n_blocks=1, block="resnet", block_options={"toy_scale": 1.0})
