"""The training-speed rules of issue 19 (docs/benchmarks.md, "Training step"): XLA by device,
an instance norm that is cheaper and more precise, gradients without TensorFlow's slow generic
kernels, a fused Adam, an in-place image pool, a cheap per-step finiteness check, batched
discriminator calls, and a GPU check that fails clearly where it cannot run.

Run as a script, it measures how far the generator's float32 output is from PyTorch's float64
one (ngf 4, 6 blocks, 256 px, six trained-like weight draws), against PyTorch float32's own
error (needs PyTorch; docs/benchmarks.md quotes it):

    python tests/test_speed_rules.py
"""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from tfstyle.core import layers
from tfstyle.core.config import define_flags, from_flags
from tfstyle.core import distribute, training
from tfstyle.core.training import FiniteGuard, FusedAdam
from tfstyle.cyclegan import losses
from tfstyle.cyclegan.networks import ResnetGenerator
from tfstyle.cyclegan.pool import ImagePool
from tfstyle.cyclegan.trainer import CycleGAN, CycleGANConfig

REPO = Path(__file__).resolve().parents[1]
HAS_GPU = bool(tf.config.list_physical_devices("GPU"))


def rand(*shape, seed=0, scale=1.0, offset=0.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale + offset).astype("float32")


def graph_ops(concrete):
    """Op types of a concrete function's graph and of every function it calls."""
    graph = concrete.graph.as_graph_def()
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
        ops |= {node.op for node in function.node_def}
    return ops


# -- XLA by device ----------------------------------------------------------------------------
def test_jit_compile_is_on_with_a_gpu_off_on_a_cpu_unless_forced():
    config = CycleGANConfig(dataroot="data", model_dir="run")
    assert config.jit_compile is HAS_GPU
    assert CycleGANConfig(dataroot="data", model_dir="run", jit_compile=True).jit_compile
    for argv, expected in (([], HAS_GPU), (["--jit_compile"], True),
                           (["--nojit_compile"], False), (["--jit_compile=false"], False)):
        fv = flags.FlagValues()
        define_flags(CycleGANConfig, fv)
        fv(["prog", "--dataroot=data", "--model_dir=run", *argv])
        config, text = from_flags(CycleGANConfig, fv)
        assert config.jit_compile is expected, argv
        # The run's flags.txt records what ran, and reads back as a flagfile.
        assert f"--jit_compile={expected}\n" in text
        again = flags.FlagValues()
        define_flags(CycleGANConfig, again)
        again(["prog", *text.splitlines()])
        assert from_flags(CycleGANConfig, again)[0].jit_compile is expected


# -- instance norm ----------------------------------------------------------------------------
def instance_norm_64(x):
    x = x.astype(np.float64)
    return (x - x.mean((1, 2), keepdims=True)) / np.sqrt(x.var((1, 2), keepdims=True) + 1e-5)


def test_instance_norm_keeps_float32_precision_on_large_images():
    """One reduction over all 65,536 pixels of a 256 x 256 image lost 1.8e-5 (the former
    formulation); reductions over W then H stay within 5e-6 of float64."""
    x = rand(2, 256, 256, 8, scale=0.5, offset=3.0)
    error = np.abs(layers.InstanceNormalization()(x).numpy() - instance_norm_64(x)).max()
    assert error < 5e-6


@pytest.mark.parametrize("affine", [False, True])
def test_instance_norm_gradient_is_the_formula_s(affine):
    """The written-out gradient equals the float64 gradient of the plain formula."""
    x, dy = rand(2, 9, 7, 5, scale=2.0, offset=1.0), rand(2, 9, 7, 5, seed=1)
    layer = layers.InstanceNormalization(affine=affine)
    layer.build(x.shape)
    if affine:
        layer.gamma.assign([1.0, 2.0, -1.0, 0.5, 3.0])
    x_t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        y = layer(x_t)
    grads = tape.gradient(y, [x_t, *layer.trainable_weights], output_gradients=tf.constant(dy))

    x64, dy64 = tf.constant(x, tf.float64), tf.constant(dy, tf.float64)
    gamma = [tf.constant(w.numpy(), tf.float64) for w in layer.trainable_weights]
    with tf.GradientTape() as tape:
        tape.watch([x64, *gamma])
        mean, variance = tf.nn.moments(x64, [1, 2], keepdims=True)
        y64 = (x64 - mean) / tf.sqrt(variance + 1e-5)
        if affine:
            y64 = y64 * gamma[0] + gamma[1]
    expected = tape.gradient(y64, [x64, *gamma], output_gradients=dy64)
    np.testing.assert_allclose(y.numpy(), y64.numpy(), atol=1e-5)
    for got, want in zip(grads, expected):
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=2e-5)


def test_generator_gradients_use_no_generic_strided_slice_or_norm_chains():
    """The transposed convolutions' crop has a zero-pad gradient (TensorFlow's generic
    strided-slice gradient cost 5-13x more) and each instance norm's gradient is written out."""
    generator = ResnetGenerator(ngf=4, n_blocks=1)
    generator.build((1, 16, 16, 3))

    @tf.function
    def grads(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(generator(x, training=True))
        return tape.gradient(loss, generator.trainable_weights)

    ops = graph_ops(grads.get_concrete_function(tf.TensorSpec([1, 16, 16, 3])))
    assert "StridedSliceGrad" not in ops
    assert "Rsqrt" in ops and "RsqrtGrad" not in ops  # no differentiated norm chain

    crop = layers.CropTopLeft2D(1)
    x = tf.constant(rand(2, 5, 6, 3))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = crop(x)
    dy = rand(2, 4, 5, 3, seed=1)
    np.testing.assert_array_equal(y.numpy(), x.numpy()[:, 1:, 1:])
    np.testing.assert_array_equal(tape.gradient(y, x, output_gradients=dy).numpy(),
                                  np.pad(dy, [(0, 0), (1, 0), (1, 0), (0, 0)]))


# -- optimizer, pool, guard, discriminator calls ------------------------------------------------
def test_fused_adam_follows_keras_adam_and_reads_its_checkpoints(tmp_path):
    grads = [[tf.constant(rand(3, 4, seed=s)), tf.constant(rand(4, seed=s + 10))]
             for s in range(6)]

    def run(optimizer_cls, steps, start=None):
        weights = [tf.Variable(rand(3, 4, seed=20)), tf.Variable(rand(4, seed=21))]
        optimizer = optimizer_cls(1e-2, beta_1=0.5, beta_2=0.999)
        optimizer.build(weights)
        checkpoint = tf.train.Checkpoint(weights=weights, optimizer=optimizer)
        if start:
            checkpoint.restore(start).assert_consumed()
        apply = tf.function(lambda g: optimizer.apply_gradients(zip(g, weights)))
        for g in steps:
            apply(g)
        return [w.numpy() for w in weights], checkpoint

    keras_weights, checkpoint = run(keras.optimizers.Adam, grads)
    fused_weights, _ = run(FusedAdam, grads)
    for a, b in zip(keras_weights, fused_weights):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # A checkpoint written with Keras's Adam resumes with the fused one (same slots, same keys).
    _, half = run(keras.optimizers.Adam, grads[:3])
    path = half.save(str(tmp_path / "ckpt"))
    resumed, _ = run(FusedAdam, grads[3:], start=path)
    for a, b in zip(keras_weights, resumed):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_epoch_iterators_are_kept_and_the_data_position_advances():
    """Tearing a tf.data iterator down stalled the loop for 10-80 s at the end of most epochs
    (TF 2.21): run_epoch keeps each epoch's iterator; the data position still advances."""

    class Model:
        global_batch = 2
        step_in_epoch = tf.Variable(0)

        def train_step(self, batch):
            return {"loss": tf.reduce_mean(batch)}

    model, kept = Model(), len(training._EPOCH_ITERATORS)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    seen = []

    def hooks(step, out, images, shown):
        seen.append((step, shown["epoch"]))
        return {k: float(v) for k, v in out.items()}

    def dataset_fn(ctx):
        return tf.data.Dataset.range(6).map(lambda i: tf.cast(i, tf.float32)).batch(2)

    step, losses = training.run_epoch(model, strategy, dataset_fn, hooks, 0, 100, 0, {})
    assert step == 3 and losses == {"loss": 4.5} and int(model.step_in_epoch.numpy()) == 3
    step, _ = training.run_epoch(model, strategy, dataset_fn, hooks, step, 5, 1, losses)
    assert step == 5 and seen[-1] == (5, 2)  # stops at the last step
    assert len(training._EPOCH_ITERATORS) == kept + 2


def test_image_pool_writes_one_image_in_place():
    pool = ImagePool(4, (8, 8, 3))
    query = tf.function(pool.query)
    ops = graph_ops(query.get_concrete_function(tf.TensorSpec([2, 8, 8, 3]),
                                                tf.TensorSpec([2], tf.int32)))
    assert "ResourceScatterUpdate" in ops
    assert not ops & {"TensorScatterUpdate", "AssignVariableOp"}  # no copy of the whole pool


def test_the_finite_guard_names_non_finite_variables_and_clears_huge_finite_ones():
    huge = tf.Variable(np.full((1000,), 3e37, np.float32))  # its sum overflows float32
    fine, bad = tf.Variable(rand(10)), tf.Variable(rand(10))
    guard = FiniteGuard([huge, fine, bad, tf.Variable(3)])
    assert guard.bad_variables() == []
    for value in (np.nan, np.inf, -np.inf):
        bad.assign(np.where(np.arange(10) == 4, value, 1.0).astype(np.float32))
        assert guard.bad_variables() == [bad.name]


def test_batched_discriminator_terms_equal_separate_calls(tmp_path):
    model = CycleGAN(CycleGANConfig(dataroot="data", model_dir=str(tmp_path), ngf=4, ndf=4,
                                    n_blocks=1, n_layers_d=2, load_size=32, crop_size=32,
                                    batch_size=2),
                     tf.distribute.OneDeviceStrategy("/cpu:0"))
    a, b, fake_a, fake_b = (tf.constant(rand(2, 32, 32, 3, seed=s)) for s in range(4))
    terms = model._discriminator_terms(a, b, fake_a, fake_b)

    def separate(d, real, fake):
        return tf.reduce_mean(0.5 * (losses.gan_loss(d(real), True)
                                     + losses.gan_loss(d(fake), False)))

    np.testing.assert_allclose(terms["D_A"], separate(model.D_A, a, fake_a), rtol=1e-5)
    np.testing.assert_allclose(terms["D_B"], separate(model.D_B, b, fake_b), rtol=1e-5)


def test_the_thread_pool_rule_shares_the_cores_among_a_step_s_streams(monkeypatch, tmp_path):
    from tfstyle.cyclegan.distill import DistillConfig
    from tfstyle.style.trainer import AutoencoderConfig
    monkeypatch.setattr(distribute.tf.config, "list_physical_devices",
                        lambda kind=None: [] if kind == "GPU" else ["cpu"])
    # Shared out on the two cores it was measured on; elsewhere TensorFlow's defaults.
    for cores, rule in ((1, None), (3, None), (16, None), (2, (1, 2))):
        monkeypatch.setattr(distribute, "cpu_cores", lambda cores=cores: cores)
        assert distribute.default_cpu_threads(2) == rule
        assert distribute.default_cpu_threads(1) is None
    # A run asks for the rule where its settings say -1 (the GAN trainers share the cores
    # out, the auto-encoder keeps TensorFlow's defaults, 0, as does XLA), else for what the
    # user gives; the settings (and so flags.txt) keep the -1.
    common = {"dataroot": "data", "model_dir": str(tmp_path)}
    for config in (CycleGANConfig(**common), CycleGANConfig(**common, model="cut"),
                   DistillConfig(teacher="t", model_dir=str(tmp_path), direction="AtoB")):
        assert config.cpu_threads() == (1, 2)
        assert (config.intra_op_threads, config.inter_op_threads) == (-1, -1)
    assert CycleGANConfig(**common, jit_compile=True).cpu_threads() == (0, 0)
    assert AutoencoderConfig(content_dir="c", model_dir=str(tmp_path)).cpu_threads() == (0, 0)
    given = CycleGANConfig(**common, intra_op_threads=3, inter_op_threads=0)
    assert given.cpu_threads() == (3, 0)
    monkeypatch.setattr(distribute.tf.config, "list_physical_devices",
                        lambda kind=None: ["gpu"])
    assert distribute.default_cpu_threads(2) is None


def test_thread_pools_that_can_no_longer_change_are_reported_not_raised():
    tf.constant(1.0) + 1.0  # the runtime has started
    assert not distribute.set_cpu_threads(7, 5)  # (values no rule gives, so they differ)


def test_the_step_work_count_follows_the_layers_and_the_passes(tmp_path):
    sys.path.insert(0, str(REPO / "bench"))
    import step_work

    model = CycleGAN(CycleGANConfig(dataroot="data", model_dir=str(tmp_path), ngf=4, ndf=4,
                                    n_blocks=1, load_size=36, crop_size=32),
                     tf.distribute.OneDeviceStrategy("/cpu:0"))
    # Generator at 32 px, by hand: 7x7 stem and head, two stride-2 convolutions, one block of
    # two 3x3 convolutions at 8 x 8, two transposed convolutions (their input positions).
    stem = 32 * 32 * 49 * 3 * 4
    g = (stem + 16 * 16 * 9 * 4 * 8 + 8 * 8 * 9 * 8 * 16 + 2 * 8 * 8 * 9 * 16 * 16
         + 8 * 8 * 9 * 16 * 8 + 16 * 16 * 9 * 8 * 4 + 32 * 32 * 49 * 4 * 3)
    assert step_work.conv_macs(model.G, 32) == (g, stem)
    # PatchGAN: 4x4 convolutions to 16, 8, 4 (stride 2), 3 and 2 (stride 1) pixels a side.
    first = 16 * 16 * 16 * 3 * 4
    d = first + 16 * (8 * 8 * 4 * 8 + 4 * 4 * 8 * 16 + 3 * 3 * 16 * 32 + 2 * 2 * 32 * 1)
    assert step_work.conv_macs(model.D_A, 32) == (d, first)
    # Six generator passes (two of them reconstructions) with the identity loss, four without.
    assert step_work.step_gflop(model) == pytest.approx(
        2 * (18 * g - 4 * stem + 16 * d - 4 * first) / 1e9)
    model.config.lambda_identity = 0.0
    assert step_work.step_gflop(model) == pytest.approx(
        2 * (12 * g - 2 * stem + 16 * d - 4 * first) / 1e9)
    assert step_work.matmul_gflops(n=64, repeats=3) > 0


# -- the GPU check ------------------------------------------------------------------------------
def gpu_check(*args, timeout=240):
    env = {**os.environ, "PYTHON": sys.executable, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_the_gpu_check_fails_clearly_without_a_checkout_or_a_gpu(tmp_path):
    assert "give the reference checkout" in gpu_check().stderr
    assert "give the reference checkout" in gpu_check("--reference_only").stderr
    assert "does not apply" in gpu_check("--reference_only", "--part=2", str(tmp_path)).stderr
    assert "not a pytorch-CycleGAN-and-pix2pix checkout" in gpu_check(str(tmp_path)).stderr
    if HAS_GPU:
        return
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "cycle_gan_model.py").write_text("")
    done = gpu_check(str(tmp_path), timeout=120)
    assert done.returncode != 0 and "TensorFlow sees no GPU" in done.stderr


def test_the_gpu_check_s_first_part_runs_on_the_cpu_as_a_dry_run():
    done = gpu_check("--dry_run", "--part=1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| 32 | none | false (auto) | CPU" in done.stdout and "gpu_check: done" in done.stdout


# -- script: generator precision against PyTorch float64 -----------------------------------------
def main():
    import tempfile

    import torch
    from test_import_pytorch import (
        OfficialResnetGenerator,
        photo_like,
        torch_output,
        trained_like,
    )

    from tfstyle.cyclegan import pytorch_import
    from tfstyle.cyclegan.pth_reader import load_state_dict
    for ngf, n_blocks in ((4, 6), (64, 9)):
        ours, theirs = [], []
        for seed in range(1, 7):
            module = trained_like(OfficialResnetGenerator(ngf=ngf, n_blocks=n_blocks), seed)
            path = os.path.join(tempfile.mkdtemp(), "g.pth")
            torch.save(module.state_dict(), path)
            generator = pytorch_import.generator_from_state_dict(load_state_dict(path)[0], path)
            x = photo_like(256, 256, seed)
            exact = torch_output(module.double(), x.astype(np.float64))
            theirs.append(np.abs(torch_output(module.float(), x) - exact).max())
            ours.append(np.abs(np.asarray(generator(x), np.float64) - exact).max())
        print(f"ngf {ngf}, {n_blocks} blocks, 256 px: max |output - PyTorch float64| over 6 "
              f"weight draws, median (max): tfstyle {np.median(ours):.1e} ({max(ours):.1e}), "
              f"PyTorch float32 {np.median(theirs):.1e} ({max(theirs):.1e})")


if __name__ == "__main__":
    main()
