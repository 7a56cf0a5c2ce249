"""CycleGAN training: it learns, it resumes exactly, it survives kills and bad numbers, and
every tf.distribute strategy follows the one-device run."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfstyle.core import images, synthetic
from tfstyle.core.data import DataError
from tfstyle.core.images import list_images, read_image
from tfstyle.core.training import NonFiniteLossError, checkpoints_on_disk
from tfstyle.cyclegan import generators, losses, trainer, translator

REPO = Path(__file__).resolve().parents[1]
TINY = dict(ngf=8, ndf=8, n_blocks=2, n_layers_d=2, load_size=36, crop_size=32,
            num_samples=2, log_every_steps=5, image_every_steps=10, jit_compile=False)


def one_device():
    return tf.distribute.OneDeviceStrategy("/cpu:0")


def config(data, model_dir, **overrides):
    return trainer.CycleGANConfig(dataroot=str(data), model_dir=str(model_dir),
                                   **{**TINY, **overrides})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic.make_dataset(tmp_path_factory.mktemp("data"), train=6, test=2, size=40)


def cli(*args, env=None, **kwargs):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def brightness(images):
    return float(np.mean([np.mean(i) for i in images]))


def test_training_moves_a_toward_b_and_lowers_the_cycle_loss(tmp_path):
    root = synthetic.make_dataset(tmp_path / "data", train=24, test=6, size=40)
    cfg = config(root, tmp_path / "run", epochs=8, decay_epochs=2, pool_size=10,
                 lambda_identity=0.0, save_every_steps=1000, jit_compile=True)
    untrained = trainer.CycleGAN(cfg, one_device())
    summary = trainer.train(cfg, one_device())
    assert summary["steps"] == 240 and summary["epochs"] == 10
    test_a = [read_image(p) for p in list_images(root / "testA")]
    test_b = [read_image(p) for p in list_images(root / "testB")]
    g = translator.Translator(generators.load_generator(tmp_path / "run", "AtoB"))
    moved = brightness([g(x) for x in test_a])
    # Domain A is bright, B dark: G must carry A most of the way to B.
    gap = brightness(test_a) - brightness(test_b)
    assert gap > 60
    assert abs(moved - brightness(test_b)) < 0.35 * gap, (moved, brightness(test_b))

    def cycle_l1(G, F):
        x = np.stack([images.to_model_range(i) for i in test_a])
        return float(tf.reduce_mean(tf.abs(F(G(x)) - x)))
    trained = cycle_l1(generators.load_generator(tmp_path / "run", "AtoB"),
                       generators.load_generator(tmp_path / "run", "BtoA"))
    assert trained < 0.5 * cycle_l1(untrained.G, untrained.F)
    samples = tmp_path / "run" / "samples"
    assert len(list((samples / "final" / "AtoB").glob("*.png"))) == 2
    assert (samples / "epoch_001" / "BtoA").is_dir()
    assert list((tmp_path / "run" / "logs").glob("events.out.tfevents.*"))


def checkpoint_state(model_dir):
    reader = tf.train.load_checkpoint(str(Path(model_dir) / "checkpoints"))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if "_CHECKPOINTABLE_OBJECT_GRAPH" not in k}


def test_resume_continues_with_identical_step_lr_pool_and_weights(data, tmp_path):
    tf.config.experimental.enable_op_determinism()
    settings = dict(epochs=1, decay_epochs=2, pool_size=3, save_every_steps=4)
    straight = trainer.train(config(data, tmp_path / "straight", **settings), one_device())
    first = trainer.train(config(data, tmp_path / "resumed", max_steps=8, **settings),
                           one_device())
    assert first["steps"] == 8
    mid = checkpoint_state(tmp_path / "resumed")
    assert int(mid["step/.ATTRIBUTES/VARIABLE_VALUE"]) == 8
    assert int(mid["epoch/.ATTRIBUTES/VARIABLE_VALUE"]) == 1  # 6 steps per epoch
    lr_key = next(k for k in mid if "learning_rate" in k and "opt_G" in k)
    assert np.isclose(mid[lr_key], 2e-4 * (1 - 1 / 3))  # second epoch: first decay step
    second = trainer.train(config(data, tmp_path / "resumed", **settings), one_device())
    assert second["resumed_from"].endswith("ckpt-8") and second["steps"] == straight["steps"] == 18
    a, b = checkpoint_state(tmp_path / "straight"), checkpoint_state(tmp_path / "resumed")
    assert a.keys() == b.keys()
    pools = [k for k in a if k.startswith("pool_")]
    assert pools and all(np.array_equal(a[k], b[k]) for k in pools)
    different = [k for k in a if not np.allclose(a[k], b[k], rtol=0, atol=1e-6)]
    assert not different


def test_unreadable_newest_checkpoint_falls_back_and_partial_writes_are_ignored(data, tmp_path):
    cfg = config(data, tmp_path / "run", epochs=1, decay_epochs=0, save_every_steps=2,
                 num_samples=0)
    trainer.train(cfg, one_device())
    ckpts = tmp_path / "run" / "checkpoints"
    # A write killed half-way leaves files the state file does not name yet.
    (ckpts / "ckpt-99.index").write_bytes(b"partial")
    (ckpts / "ckpt-99.data-00000-of-00001").write_bytes(b"partial")
    newest = tf.train.latest_checkpoint(str(ckpts))
    assert newest.endswith("ckpt-6")
    Path(newest + ".data-00000-of-00001").write_bytes(b"corrupted")
    again = trainer.train(config(data, tmp_path / "run", epochs=2, decay_epochs=0,
                                  save_every_steps=2, num_samples=0), one_device())
    assert again["resumed_from"].endswith("ckpt-4") and again["steps"] == 12


def test_non_finite_loss_stops_without_touching_the_last_checkpoint(data, tmp_path, monkeypatch):
    cfg = config(data, tmp_path / "run", epochs=1, decay_epochs=0, save_every_steps=2,
                 max_steps=2, num_samples=0)
    trainer.train(cfg, one_device())
    before = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    monkeypatch.setattr(losses, "l1", lambda x, y: tf.fill([tf.shape(x)[0]], np.nan))
    with pytest.raises(NonFiniteLossError, match="cycle_A=nan"):
        trainer.train(config(data, tmp_path / "run", epochs=1, decay_epochs=0,
                              save_every_steps=2, num_samples=0), one_device())
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == before


def nan_learning_rate_in_second_epoch(monkeypatch):
    """From the first step of the second epoch on, the update (not the loss of the step)
    makes every weight NaN: the loss of that step, computed before the update, is finite."""
    monkeypatch.setattr(trainer.CycleGANConfig, "lr_factor",
                        lambda self, epoch: float("nan") if epoch >= 1 else 1.0)


def all_finite(model_dir):
    return all(np.isfinite(v).all() for v in checkpoint_state(model_dir).values()
               if np.asarray(v).dtype.kind == "f")


def test_nan_weights_on_a_middle_step_write_no_checkpoint(data, tmp_path, monkeypatch):
    nan_learning_rate_in_second_epoch(monkeypatch)
    cfg = config(data, tmp_path / "run", epochs=2, decay_epochs=0, save_every_steps=7,
                 num_samples=0)
    with pytest.raises(NonFiniteLossError) as err:
        trainer.train(cfg, one_device())
    message = str(err.value)
    assert "step 7: non-finite weights" in message and message.endswith(".")
    assert f"the last good checkpoint is {tmp_path / 'run' / 'checkpoints' / 'ckpt-6'}" in message
    assert [s for s, _ in checkpoints_on_disk(tmp_path / "run" / "checkpoints")] == [6]
    assert all_finite(tmp_path / "run")


def test_nan_weights_on_the_last_step_save_no_generators(data, tmp_path, monkeypatch):
    nan_learning_rate_in_second_epoch(monkeypatch)
    cfg = config(data, tmp_path / "run", epochs=1, decay_epochs=1, max_steps=7,
                 save_every_steps=100, num_samples=0)
    with pytest.raises(NonFiniteLossError, match="step 7"):
        trainer.train(cfg, one_device())
    assert not (tmp_path / "run" / "generators").exists()
    assert not (tmp_path / "run" / "summary.json").exists()
    assert [s for s, _ in checkpoints_on_disk(tmp_path / "run" / "checkpoints")] == [6]
    assert all_finite(tmp_path / "run")


def test_absurd_learning_rate_fails_with_one_line_and_writes_nothing(data, tmp_path):
    run = cli("train.cyclegan", f"--dataroot={data}", f"--model_dir={tmp_path / 'run'}",
              "--ngf=4", "--ndf=4", "--n_blocks=1", "--n_layers_d=2", "--load_size=36",
              "--crop_size=32", "--epochs=1", "--decay_epochs=0", "--num_samples=0",
              "--max_steps=1", "--nojit_compile", "--lr=1e30", "--intra_op_threads=1",
              "--inter_op_threads=2")
    out, _ = run.communicate(timeout=240)
    # The thread pools are set before TensorFlow's runtime starts, so they take effect.
    assert "CPU thread pools: 1 threads per op, 2 ops side by side" in out
    assert "thread pools were fixed" not in out
    assert run.returncode != 0
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "step 1: non-finite losses from the updated weights" in errors[0]
    assert "Traceback" not in out
    # Weights of about 1e30 are finite, but the next step would overflow: nothing written.
    assert not (tmp_path / "run" / "generators").exists()
    assert not checkpoints_on_disk(tmp_path / "run" / "checkpoints")


def test_user_errors_are_one_line_and_leave_no_run_behind(data, tmp_path):
    with pytest.raises(DataError, match="--dataroot=.*no such folder"):
        trainer.train(config(tmp_path / "missing", tmp_path / "run"), one_device())
    assert not (tmp_path / "run").exists()  # no config.json to refuse a later --crop_size
    empty = tmp_path / "empty"
    (empty / "trainA").mkdir(parents=True)
    (empty / "trainB").mkdir()
    run = cli("train.cyclegan", f"--dataroot={empty}", f"--model_dir={tmp_path / 'run2'}",
              "--load_size=36", "--crop_size=32", "--n_layers_d=2")
    out, _ = run.communicate(timeout=120)
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert run.returncode != 0 and "Traceback" not in out, out[-3000:]
    assert len(errors) == 1 and "trainA holds no image files" in errors[0]


def test_changed_architecture_on_resume_is_refused(data, tmp_path):
    trainer.train(config(data, tmp_path / "run", epochs=1, decay_epochs=0, max_steps=1,
                          num_samples=0), one_device())
    with pytest.raises(ValueError, match="--ngf=8 there, --ngf=16 now"):
        trainer.train(config(data, tmp_path / "run", ngf=16, epochs=1, decay_epochs=0),
                       one_device())


@pytest.mark.parametrize("overrides, flag", [
    (dict(crop_size=30), "--crop_size"), (dict(crop_size=64), "--crop_size"),
    (dict(block="dense"), "--block"), (dict(lr=0.0), "--lr"), (dict(batch_size=0), "--batch_size"),
])
def test_invalid_settings_name_their_flag(overrides, flag):
    with pytest.raises(ValueError, match=flag):
        trainer.CycleGANConfig(**{"dataroot": "d", "model_dir": "m", **TINY, **overrides})


def test_lr_schedule_is_the_official_linear_rule():
    cfg = trainer.CycleGANConfig(dataroot="d", model_dir="m", epochs=100, decay_epochs=100)
    assert [cfg.lr_factor(e) for e in (0, 99)] == [1.0, 1.0]
    assert np.isclose(cfg.lr_factor(100), 1 - 1 / 101) and np.isclose(cfg.lr_factor(199), 1 / 101)


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_strategies_match_the_one_device_run(data, tmp_path):
    common = ["train.cyclegan", f"--dataroot={data}", "--ngf=4", "--ndf=4", "--n_blocks=1",
              "--n_layers_d=2", "--load_size=36", "--crop_size=32", "--epochs=1",
              "--decay_epochs=0", "--num_samples=0", "--max_steps=3", "--pool_size=2",
              "--nojit_compile"]
    procs = {"mirrored": cli(*common, f"--model_dir={tmp_path / 'mirrored'}", "--batch_size=1",
                             "--strategy=mirrored", "--logical_cpus=2")}
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    for i in range(2):
        procs[f"worker{i}"] = cli(
            *common, f"--model_dir={tmp_path / 'multi'}", "--batch_size=1",
            "--strategy=multi_worker",
            env={"TF_CONFIG": json.dumps({"cluster": cluster,
                                          "task": {"type": "worker", "index": i}})})
    # The one-device run with the same global batch, in this process meanwhile.
    trainer.train(trainer.CycleGANConfig(
        dataroot=str(data), model_dir=str(tmp_path / "one"), ngf=4, ndf=4, n_blocks=1,
        n_layers_d=2, load_size=36, crop_size=32, epochs=1, decay_epochs=0, num_samples=0,
        max_steps=3, pool_size=2, batch_size=2, jit_compile=False), one_device())
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=400)
        assert proc.returncode == 0, f"{name}:\n{out[-3000:]}"
        assert "with 2 replicas" in out, name
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    reference = {}
    for name in ("one", "mirrored", "multi"):
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        for direction in ("AtoB", "BtoA"):
            y = generators.load_generator(tmp_path / name, direction)(x).numpy()
            reference.setdefault(direction, y)
            # Adam's first steps move every weight by about +-lr whatever the gradient's size,
            # so float noise on near-zero gradients shows in single weights; the functions agree.
            np.testing.assert_allclose(y, reference[direction], atol=2e-2)
        reference.setdefault("losses", summary["losses"])
        for k, v in summary["losses"].items():
            assert np.isclose(v, reference["losses"][k], rtol=1e-3), (name, k)


def test_cli_resumes_after_being_killed_and_translate_writes_pngs(data, tmp_path):
    args = ["train.cyclegan", f"--dataroot={data}", f"--model_dir={tmp_path / 'run'}",
            "--ngf=8", "--ndf=8", "--n_blocks=1", "--n_layers_d=2", "--load_size=36",
            "--crop_size=32", "--epochs=10", "--decay_epochs=0", "--save_every_steps=3",
            "--num_samples=0", "--nojit_compile"]
    proc = cli(*args)
    state = tmp_path / "run" / "checkpoints" / "checkpoint"
    deadline = time.time() + 240
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(np.random.default_rng().uniform(0, 1.5))
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert (tmp_path / "run" / "flags.txt").read_text().count("--ngf=8") == 1
    done = cli(*args)
    out, _ = done.communicate(timeout=300)
    assert done.returncode == 0, out[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["resumed_from"] and summary["steps"] == 60
    assert "Trained 60 steps" in out

    big = tmp_path / "in" / "wide photo.jpg"
    big.parent.mkdir()
    from PIL import Image
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (70, 150, 3), np.uint8)).save(big)
    (tmp_path / "in" / "notes.png").write_text("not an image")
    tr = cli("tfstyle.translate", f"--model_dir={tmp_path / 'run'}", "--direction=BtoA",
             f"--out_dir={tmp_path / 'out'}", "--tile=64", "--overlap=8", str(tmp_path / "in"))
    out, _ = tr.communicate(timeout=120)
    assert tr.returncode == 0, out
    assert read_image(tmp_path / "out" / "wide photo.png").shape == (70, 150, 3)
    assert "notes.png" in out

    bad = cli("train.cyclegan", f"--dataroot={data}", f"--model_dir={tmp_path / 'x'}",
              "--crop_size=30")
    out, _ = bad.communicate(timeout=120)
    assert bad.returncode != 0 and "--crop_size=30" in out
