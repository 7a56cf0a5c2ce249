"""The mobile generator (blocks "mobile" and "mobile_se"): depthwise-separable residual blocks
behind the generators' contract, so the CycleGAN trainer, translate, the exports (SavedModel
signatures, builtin-only LiteRT in every variant) and the Android catalog take it unchanged."""

import json
import subprocess
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from tfstyle.core import synthetic
from tfstyle.core.config import define_flags, from_flags
from tfstyle.core.images import read_image
from tfstyle.cyclegan import generators, trainer, translator
from tfstyle.cyclegan.blocks import BLOCKS, MobileResnetBlock, MobileSEResnetBlock
from tfstyle.cyclegan.networks import ResnetGenerator, count_params
from tfstyle.deploy import litert
from tfstyle.deploy.exporter import ExportOptions, export_generators

REPO = Path(__file__).resolve().parents[1]
MOBILE = ("mobile", "mobile_se")
SIZE = 32


def images(*shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype("float32")


@pytest.fixture(scope="module")
def dataroot(tmp_path_factory):
    return synthetic.make_dataset(tmp_path_factory.mktemp("data"), train=6, test=3, size=40)


def test_mobile_blocks_are_registered_depthwise_separable_residual_blocks():
    assert BLOCKS["mobile"].cls is MobileResnetBlock and BLOCKS["mobile"].label == "CycleMobile"
    assert BLOCKS["mobile_se"].cls is MobileSEResnetBlock
    assert BLOCKS["mobile_se"].option_names == ("se_reduction",)
    block = ResnetGenerator(ngf=8, n_blocks=1, block="mobile").blocks[0]
    kinds = [type(layer).__name__ for layer in block.branch]
    assert kinds == ["ReflectionPadding2D", "DepthwiseConv2D", "Conv2D", "InstanceNormalization",
                     "ReLU", "ReflectionPadding2D", "DepthwiseConv2D", "Conv2D",
                     "InstanceNormalization"]
    assert all(layer.kernel_size == (1, 1) for layer in block.branch if type(layer).__name__ == "Conv2D")


def test_the_branch_reaches_each_norm_at_a_scale_int8_can_resolve():
    # Instance norm divides by sqrt(var + 1e-5) and int8 quantizes that variance per tensor:
    # with N(0, 0.02) depthwise kernels the variance before the norm was ~1e-4 and the int8
    # file of a distilled student fell to 12 dB against its Keras model (threshold 20 dB).
    keras.utils.set_random_seed(0)
    block = ResnetGenerator(ngf=16, n_blocks=1, block="mobile").blocks[0]
    x = tf.random.normal([1, 32, 32, 64])
    pad, dw1, pw1 = block.branch[:3]
    assert float(tf.math.reduce_variance(pw1(dw1(pad(x))))) > 0.01


@pytest.mark.parametrize("ngf, n_blocks", [(8, 2), (32, 9)])
def test_parameter_counts_of_the_mobile_generators(ngf, n_blocks):
    outer = count_params(ResnetGenerator(ngf=ngf, n_blocks=0))
    d = 4 * ngf
    # Per block: two 3x3 depthwise convs (no bias) and two 1x1 convs d -> d with biases.
    mobile = 2 * (9 * d + d * d + d)
    se = d * (d // 16) + d // 16 + (d // 16) * d + d
    assert count_params(ResnetGenerator(ngf=ngf, n_blocks=n_blocks, block="mobile")) == \
        outer + n_blocks * mobile
    assert count_params(ResnetGenerator(ngf=ngf, n_blocks=n_blocks, block="mobile_se")) == \
        outer + n_blocks * (mobile + se)
    # The 9-block ngf-64 teacher has 11.4M; the default student (ngf 32) 0.51M.
    assert count_params(ResnetGenerator(ngf=32, block="mobile")) < \
        count_params(ResnetGenerator()) / 20


@pytest.mark.parametrize("block", MOBILE)
def test_shapes_range_and_unknown_sizes(block):
    g = ResnetGenerator(ngf=8, n_blocks=2, block=block)
    for size in [(32, 32), (36, 64), (64, 40)]:
        y = g(images(2, *size, 3))
        assert y.shape == (2, *size, 3) and y.dtype == tf.float32
        assert np.abs(y.numpy()).max() <= 1.0
    fn = tf.function(g, input_signature=[tf.TensorSpec([None, None, None, 3])])
    assert fn(images(1, 44, 28, 3)).shape == (1, 44, 28, 3)
    with pytest.raises(ValueError, match="divisible by 4"):
        g(images(1, 30, 32, 3))


@pytest.mark.parametrize("block", MOBILE)
def test_gradients_reach_every_weight_and_round_trip_is_exact(block, tmp_path):
    # Seeded: at this width the SE squeeze has two ReLU units, and an unseeded draw can leave
    # both dead on these inputs (no gradient to fc1), as one CI run found.
    keras.utils.set_random_seed(0)
    g = ResnetGenerator(ngf=8, n_blocks=2, block=block, norm_affine=True)
    x = images(2, 32, 48, 3)
    target = images(2, 32, 48, 3, seed=1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(g(x) - target))
    grads = tape.gradient(loss, g.trainable_weights)
    assert not [w.path for w, gr in zip(g.trainable_weights, grads)
                if gr is None or not np.any(gr.numpy())]
    g.save(tmp_path / "g.keras")
    restored = keras.models.load_model(tmp_path / "g.keras")
    assert restored.get_config() == g.get_config()
    assert isinstance(restored.blocks[0], BLOCKS[block].cls)
    np.testing.assert_array_equal(restored(x).numpy(), g(x).numpy())


def test_the_cyclegan_trainer_trains_a_mobile_generator_from_its_flags(dataroot, tmp_path):
    fv = flags.FlagValues()
    define_flags(trainer.CycleGANConfig, fv)
    fv(["prog", f"--dataroot={dataroot}", f"--model_dir={tmp_path / 'run'}", "--block=mobile",
        "--ngf=8", "--ndf=8", "--n_blocks=1", "--n_layers_d=2", "--load_size=36",
        "--crop_size=32", "--max_steps=3", "--num_samples=0", "--nojit_compile"])
    config, _ = from_flags(trainer.CycleGANConfig, fv)
    summary = trainer.train(config, tf.distribute.OneDeviceStrategy("/cpu:0"))
    assert summary["steps"] == 3
    assert generators.load_info(tmp_path / "run")["block"] == "mobile"
    g = generators.load_generator(tmp_path / "run", "BtoA")
    assert isinstance(g.blocks[0], MobileResnetBlock) and g.ngf == 8
    odd = np.random.default_rng(2).integers(0, 255, (37, 50, 3), np.uint8)
    assert translator.Translator(g)(odd).shape == (37, 50, 3)


def fitted(block, dataroot, domain, steps=60):
    """A tiny generator fitted (L1, Adam) to reproduce its domain's images, so its output is
    a picture rather than an untrained net's near-grey (which int8 cannot follow)."""
    keras.utils.set_random_seed(0)
    g = ResnetGenerator(ngf=8, n_blocks=2, block=block)
    crops = np.stack([read_image(p) for p in
                      sorted((dataroot / f"train{domain}").iterdir())[:6]])
    x = crops.astype(np.float32)[:, 4:4 + SIZE, 4:4 + SIZE] / 127.5 - 1.0
    optimizer = keras.optimizers.Adam(5e-3)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.abs(g(x) - x))
        optimizer.apply(tape.gradient(loss, g.trainable_variables), g.trainable_variables)
        return loss

    for _ in range(steps):
        loss = step()
    assert float(loss) < 0.2
    return g


def test_export_serving_litert_builtins_and_android_catalog(dataroot, tmp_path):
    # mobile_se: the mobile block's branch and CycleSE's gate (MEAN, MUL, LOGISTIC) together.
    model_dir = tmp_path / "runs" / "mobile"
    generators.save_generators(
        model_dir, {"AtoB": fitted("mobile_se", dataroot, "A")},
        {"block": "mobile_se", "ngf": 8, "n_blocks": 2, "crop_size": SIZE, "load_size": 40,
         "dataroot": str(dataroot), "step": 60, "epoch": 1})
    out = tmp_path / "exported"
    report = export_generators(model_dir, out, ExportOptions(
        tflite=("float32", "int8"), tflite_size=SIZE, calibration_images=6, check_images=2,
        latency_runs=1, num_threads=1), log=lambda _: None)
    artifacts = report["artifacts"]
    assert {(a["variant"], a["status"]) for a in artifacts} == {
        ("savedmodel", "ok"), ("float32", "ok"), ("int8", "ok")}
    assert (out / "serving" / "mobile_AtoB" / "1" / "saved_model.pb").is_file()
    for variant in ("float32", "int8"):
        facts = litert.inspect((out / "tflite" / f"mobile_AtoB_{variant}.tflite").read_bytes())
        assert "DEPTHWISE_CONV_2D" in facts.ops and not facts.custom_ops
        assert facts.max_rank <= 4
    dest = tmp_path / "assets"
    fetched = subprocess.run(["bash", str(REPO / "android_demo" / "fetch_models.sh"), str(out),
                              f"--dest={dest}", "--names=mobile:happy:scary"],
                             check=False, capture_output=True, text=True, timeout=120)
    assert fetched.returncode == 0, fetched.stderr
    catalog = json.loads((dest / "models.json").read_text())
    assert {(m["model_name"], m["variant"]) for m in catalog["models"]} == {
        ("mobile_AtoB", "float32"), ("mobile_AtoB", "int8")}
    assert all((dest / m["file"]).is_file() for m in catalog["models"])
