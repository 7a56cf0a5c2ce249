"""CUT / FastCUT (tfstyle.cyclegan.cut) and the generator options of the recommended recipe:
the PatchNCE loss against its formula, CUT training under tf.distribute with exact resume and
export, resize-convolution upsampling (shapes, no transposed convolution, builtin LiteRT ops)
and the input-to-output residual."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfstyle.core import synthetic
from tfstyle.cyclegan import cut, generators, trainer
from tfstyle.cyclegan.blocks import BLOCKS
from tfstyle.cyclegan.networks import RepeatUpsampling2D, ResnetGenerator
from tfstyle.deploy import litert
from tfstyle.deploy.exporter import ExportOptions, export_generators

REPO = Path(__file__).resolve().parents[1]
TINY = dict(model="cut", ngf=4, ndf=4, n_blocks=2, n_layers_d=2, load_size=36, crop_size=32,
            num_samples=1, num_patches=16, jit_compile=False, upsample="resize")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic.make_dataset(tmp_path_factory.mktemp("data"), train=4, test=1, size=40)


def config(data, model_dir, **overrides):
    return trainer.CycleGANConfig(dataroot=str(data), model_dir=str(model_dir),
                                   **{**TINY, **overrides})


def one_device():
    return tf.distribute.OneDeviceStrategy("/cpu:0")


def test_patch_nce_loss_is_the_formula():
    rng = np.random.default_rng(0)
    q, k = (rng.normal(size=(2, 5, 3)) for _ in range(2))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    t = 0.5
    expected = np.zeros(2)
    for b in range(2):
        for i in range(5):
            logits = np.array([q[b, i] @ k[b, i]] + [q[b, i] @ k[b, j] for j in range(5)
                                                     if j != i]) / t
            expected[b] += -(logits[0] - np.log(np.sum(np.exp(logits)))) / 5
    got = cut.patch_nce_loss(tf.constant(q, tf.float32), tf.constant(k, tf.float32), t)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)
    # Matching queries and keys score far lower than shuffled ones.
    assert float(tf.reduce_mean(cut.patch_nce_loss(k, k, 0.07))) < float(
        tf.reduce_mean(cut.patch_nce_loss(k[:, ::-1], k, 0.07)))


def test_keys_get_no_gradient_and_layers_follow_the_blocks():
    q = tf.Variable(tf.math.l2_normalize(tf.ones([1, 4, 3]), -1))
    k = tf.Variable(tf.math.l2_normalize(tf.random.normal([1, 4, 3], seed=1), -1))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(cut.patch_nce_loss(q, k))
    dq, dk = tape.gradient(loss, [q, k])
    assert dq is not None and dk is None
    assert cut.nce_layers(9) == (0, 1, 3, 5) and cut.nce_layers(6) == (0, 1, 2, 4)
    assert cut.nce_layers(0) == (0, 1)
    ids = cut.draw_positions(10, 4, tf.constant([1, 2]))
    assert len(set(ids.numpy().tolist())) == 4
    assert cut.draw_positions(10, 64, tf.constant([1, 2])).shape == (10,)


@pytest.mark.parametrize("block", list(BLOCKS))
def test_cut_losses_and_gradients_with_every_block(data, tmp_path, block):
    c = config(data, tmp_path, block=block, upsample="transpose", nce_idt=False)
    model = cut.CUT(c, one_device())
    x = tf.random.uniform([1, 32, 32, 3], -1, 1, seed=2)
    grads, terms, fake = model._generator_gradients(x, x, tf.constant([0, 0]))
    assert set(terms) == {"G_gan", "nce_A"} and fake.shape == x.shape
    assert all(np.isfinite(float(v)) for v in terms.values())
    head = {id(v) for v in model.head.trainable_weights}
    assert all(g is not None for g in grads)  # G and the projection head learn
    assert any(id(v) in head for v in model.g_vars)


def test_cut_resumes_exactly_and_exports_one_direction(data, tmp_path):
    tf.config.experimental.enable_op_determinism()
    settings = dict(epochs=1, decay_epochs=0, save_every_steps=2, num_samples=0)
    straight = trainer.train(config(data, tmp_path / "straight", **settings), one_device())
    first = trainer.train(config(data, tmp_path / "run", max_steps=2, **settings), one_device())
    assert first["steps"] == 2 and set(first["losses"]) == {"G_gan", "nce_A", "nce_B", "D_B"}
    second = trainer.train(config(data, tmp_path / "run", **settings), one_device())
    assert second["resumed_from"].endswith("ckpt-2") and second["steps"] == straight["steps"] == 4
    x = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)).astype("float32")
    g_straight = generators.load_generator(tmp_path / "straight", "AtoB")
    g_resumed = generators.load_generator(tmp_path / "run", "AtoB")
    np.testing.assert_allclose(g_resumed(x).numpy(), g_straight(x).numpy(), atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "run" / "generators").iterdir()) == [
        "AtoB.keras", "info.json"]
    assert generators.load_info(tmp_path / "run")["model"] == "cut"
    # LiteRT export of the same generator class: test_resize_upsampling_... and test_mobile.
    report = export_generators(tmp_path / "run", tmp_path / "out", ExportOptions(
        tflite=(), check_images=1, latency_runs=1, num_threads=1), log=lambda _: None)
    assert {(a["direction"], a["variant"], a["status"]) for a in report["artifacts"]} == {
        ("AtoB", "savedmodel", "ok")}


def test_cut_under_mirrored_strategy_follows_the_one_device_run(data, tmp_path):
    common = [f"--dataroot={data}", "--model=cut", "--ngf=4", "--ndf=4", "--n_blocks=1",
              "--n_layers_d=2", "--load_size=36", "--crop_size=32", "--epochs=1",
              "--decay_epochs=0", "--num_samples=0", "--max_steps=2", "--num_patches=16",
              "--nojit_compile"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "train.cyclegan", *common, f"--model_dir={tmp_path / 'mirrored'}",
         "--batch_size=1", "--strategy=mirrored", "--logical_cpus=2"],
        cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    trainer.train(trainer.CycleGANConfig(
        dataroot=str(data), model_dir=str(tmp_path / "one"), model="cut", ngf=4, ndf=4,
        n_blocks=1, n_layers_d=2, load_size=36, crop_size=32, epochs=1, decay_epochs=0,
        num_samples=0, max_steps=2, num_patches=16, batch_size=2, jit_compile=False),
        one_device())
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    assert "with 2 replicas" in out
    x = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)).astype("float32")
    ys = [generators.load_generator(tmp_path / name, "AtoB")(x).numpy()
          for name in ("one", "mirrored")]
    np.testing.assert_allclose(ys[0], ys[1], atol=2e-2)
    losses = [json.loads((tmp_path / name / "summary.json").read_text())["losses"]
              for name in ("one", "mirrored")]
    for key in losses[0]:
        assert np.isclose(losses[0][key], losses[1][key], rtol=1e-3), key


def test_resize_upsampling_keeps_shapes_and_exports_builtin_ops(tmp_path):
    x = np.arange(2 * 3 * 5 * 2, dtype="float32").reshape(2, 3, 5, 2)
    np.testing.assert_array_equal(RepeatUpsampling2D()(x).numpy(),
                                  x.repeat(2, axis=1).repeat(2, axis=2))
    g = ResnetGenerator(ngf=4, n_blocks=1, upsample="resize")
    for shape in ((1, 16, 16, 3), (2, 20, 28, 3)):
        assert tuple(g(tf.zeros(shape)).shape) == shape
    assert not any(isinstance(layer, tf.keras.layers.Conv2DTranspose) for layer in g.up)
    assert ResnetGenerator.from_config(g.get_config()).upsample == "resize"
    saved = litert.write_fixed_savedmodel(g, 16, tmp_path / "saved")
    facts = litert.inspect(litert.convert(saved, "float32"))
    assert not facts.custom_ops and facts.max_rank <= 4
    assert "DEPTH_TO_SPACE" in facts.ops and "TRANSPOSE_CONV" not in facts.ops
    plain = ResnetGenerator(ngf=4, n_blocks=1)
    plain.build((None, None, None, 3))
    official = litert.write_fixed_savedmodel(plain, 16, tmp_path / "official")
    assert "TRANSPOSE_CONV" in litert.inspect(litert.convert(official, "float32")).ops


def test_residual_generator_starts_near_the_identity_and_stays_in_range():
    g = ResnetGenerator(ngf=4, n_blocks=1, residual=True)
    g.build((None, None, None, 3))
    x = tf.random.uniform([1, 16, 16, 3], -1, 1, seed=3)
    head = g.head[1]
    head.kernel.assign(tf.zeros_like(head.kernel))
    np.testing.assert_allclose(g(x).numpy(), x.numpy(), atol=1e-6)
    head.bias.assign(tf.fill(head.bias.shape, 5.0))  # tanh(5) ~ 1: clipped at 1
    assert float(tf.reduce_max(g(x))) <= 1.0
    plain = ResnetGenerator(ngf=4, n_blocks=1)
    assert np.abs(plain(x).numpy() - x.numpy()).mean() > 0.1
