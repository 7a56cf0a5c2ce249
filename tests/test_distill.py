"""Distillation (train.distill): a student learns a teacher's translation, the run resumes
exactly, stops on non-finite numbers without writing, and ends with a normal model dir."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfstyle.core import synthetic
from tfstyle.core.config import ConfigError
from tfstyle.core.images import read_image, to_model_range
from tfstyle.core.training import (
    ConfigMismatchError,
    NonFiniteLossError,
    checkpoints_on_disk,
)
from tfstyle.cyclegan import distill, generators, losses, translator
from tfstyle.cyclegan.blocks import MobileResnetBlock
from tfstyle.cyclegan.networks import ResnetGenerator

REPO = Path(__file__).resolve().parents[1]
TINY = dict(ngf=4, n_blocks=2, ndf=8, n_layers_d=2, load_size=36, crop_size=32, num_samples=2,
            log_every_steps=5, image_every_steps=10, jit_compile=False)


def one_device():
    return tf.distribute.OneDeviceStrategy("/cpu:0")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic.make_dataset(tmp_path_factory.mktemp("data"), train=6, test=2, size=40)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, data):
    """A teacher model dir of two kinds of generator: CycleDA (AtoB) and CycleSE (BtoA)."""
    tf.keras.utils.set_random_seed(0)  # one teacher on every run: the thresholds below hold
    nets = {}
    for direction, block in (("AtoB", "da"), ("BtoA", "se")):
        nets[direction] = ResnetGenerator(ngf=8, n_blocks=3, block=block)
        nets[direction].build((None, None, None, 3))
    model_dir = tmp_path_factory.mktemp("runs") / "teacher"
    generators.save_generators(model_dir, nets, {"block": "da", "ngf": 8, "n_blocks": 3,
                                                 "dataroot": str(data), "step": 1})
    return model_dir


def config(teacher, model_dir, **overrides):
    return distill.DistillConfig(teacher=str(teacher), model_dir=str(model_dir),
                                 **{**TINY, **overrides})


def checkpoint_state(model_dir):
    reader = tf.train.load_checkpoint(str(Path(model_dir) / "checkpoints"))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if "_CHECKPOINTABLE_OBJECT_GRAPH" not in k}


def test_feature_pairs_are_evenly_spaced_depths():
    assert distill.feature_pairs(9, 9, 3) == [(3, 3), (6, 6), (9, 9)]
    assert distill.feature_pairs(6, 9, 3) == [(2, 3), (4, 6), (6, 9)]
    assert distill.feature_pairs(2, 9, 4) == [(0, 2), (1, 4), (2, 7), (2, 9)]
    assert distill.feature_pairs(3, 9, 0) == []


def test_distillation_lowers_its_loss_and_writes_a_normal_model_dir(teacher, data, tmp_path):
    cfg = config(teacher, tmp_path / "student", direction="both", epochs=2, decay_epochs=1,
                 lr=1e-3, save_every_steps=100)
    untrained = distill.Distiller(cfg, one_device())
    crops = {d: to_model_range(np.stack([read_image(p)[4:36, 4:36] for p in
                                         sorted((data / f"train{s}").iterdir())]))
             for d, s in distill.SOURCE.items()}

    def recon(students):  # the L1 reconstruction loss on the training images
        return {d: float(tf.reduce_mean(tf.abs(students[d](x) - untrained.teachers[d](x))))
                for d, x in crops.items()}

    before = recon(untrained.students)
    heldout = {d: distill.heldout_images(data, distill.SOURCE[d], 10) for d in ("AtoB", "BtoA")}
    psnr_before = {d: distill.heldout_check(untrained.teachers[d], untrained.students[d],
                                            heldout[d])["psnr_db"] for d in heldout}
    summary = distill.train(cfg, one_device())
    assert summary["steps"] == 18 and summary["epochs"] == 3
    assert set(summary["losses"]) == {f"{t}_{d}" for t in ("recon", "feature", "gan", "D")
                                      for d in ("AtoB", "BtoA")}
    students = {d: generators.load_generator(tmp_path / "student", d) for d in ("AtoB", "BtoA")}
    after = recon(students)
    for d in ("AtoB", "BtoA"):
        print(d, "L1 to the teacher before/after:", before[d], after[d])
        assert after[d] < 0.8 * before[d], (before, after)
        check = summary["heldout"][d]
        assert check["images"] == 2 and check["psnr_db"] > psnr_before[d] + 3, (psnr_before, check)
        assert isinstance(students[d].blocks[0], MobileResnetBlock) and students[d].ngf == 4
        image = heldout[d][0][1]
        assert translator.Translator(students[d])(image).shape == image.shape
        assert len(list((tmp_path / "student" / "samples" / "final" / d).glob("*.png"))) == 2
    info = generators.load_info(tmp_path / "student")
    assert info["block"] == "mobile" and info["dataroot"] == str(data.resolve())
    assert info["distilled_from"]["model_dir"] == str(teacher.resolve())
    assert json.loads((tmp_path / "student" / "summary.json").read_text())["steps"] == 18
    assert list((tmp_path / "student" / "logs").glob("events.out.tfevents.*"))


def test_resume_continues_with_identical_weights_and_refuses_another_student(
        teacher, tmp_path):
    tf.config.experimental.enable_op_determinism()
    settings = dict(epochs=1, decay_epochs=1, save_every_steps=4, num_samples=0)
    straight = distill.train(config(teacher, tmp_path / "straight", **settings), one_device())
    first = distill.train(config(teacher, tmp_path / "resumed", max_steps=8, **settings),
                          one_device())
    assert first["steps"] == 8
    mid = checkpoint_state(tmp_path / "resumed")
    lr_key = next(k for k in mid if "learning_rate" in k and "opt_S" in k)
    assert np.isclose(mid[lr_key], 2e-4 * 0.5)  # second epoch: the first decay step
    second = distill.train(config(teacher, tmp_path / "resumed", **settings), one_device())
    assert second["resumed_from"].endswith("ckpt-8")
    assert second["steps"] == straight["steps"] == 12
    a, b = checkpoint_state(tmp_path / "straight"), checkpoint_state(tmp_path / "resumed")
    assert a.keys() == b.keys() and any("maps_AtoB" in k for k in a)
    assert not [k for k in a if not np.allclose(a[k], b[k], rtol=0, atol=1e-6)]
    with pytest.raises(ConfigMismatchError, match="--ngf=4 there, --ngf=8 now"):
        distill.train(config(teacher, tmp_path / "resumed", ngf=8, **settings), one_device())


def test_non_finite_loss_stops_without_writing(teacher, tmp_path, monkeypatch):
    monkeypatch.setattr(losses, "l1", lambda x, y: tf.fill([tf.shape(x)[0]], np.nan))
    with pytest.raises(NonFiniteLossError, match="recon=nan"):
        distill.train(config(teacher, tmp_path / "run", epochs=1, decay_epochs=0),
                      one_device())
    assert not (tmp_path / "run" / "generators").exists()
    assert not checkpoints_on_disk(tmp_path / "run" / "checkpoints")


@pytest.mark.parametrize("overrides, flag", [
    (dict(crop_size=30), "--crop_size"), (dict(crop_size=64), "--crop_size"),
    (dict(block="dense"), "--block"), (dict(direction="AtoA"), "--direction"),
    (dict(lambda_recon=-1.0), "--lambda_recon"), (dict(teacher=""), "--teacher"),
])
def test_invalid_settings_name_their_flag(overrides, flag):
    with pytest.raises(ConfigError, match=flag):
        distill.DistillConfig(**{"teacher": "t", "model_dir": "m", **TINY, **overrides})


def test_cli_refuses_a_missing_teacher_in_one_line_and_writes_nothing(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, "-m", "train.distill",
                          f"--teacher={tmp_path / 'nothing'}", f"--model_dir={tmp_path / 'out'}"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
                         check=False)
    assert run.returncode == 2
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--teacher=" in errors[0] and "AtoB" in errors[0]
    assert "Traceback" not in run.stderr and not (tmp_path / "out").exists()


MIRRORED_CHECK = """
import json, sys
import tensorflow as tf
from tfstyle.core.distribute import split_cpu
split_cpu(2)
from tfstyle.cyclegan import distill
teacher, out = sys.argv[1], sys.argv[2]
runs = {"one": (4, tf.distribute.OneDeviceStrategy("/cpu:0")),
        "mirrored": (2, tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))}
for name, (batch, strategy) in runs.items():
    config = distill.DistillConfig(
        teacher=teacher, model_dir=f"{out}/{name}", direction="both", ngf=4, n_blocks=2, ndf=8,
        n_layers_d=2, load_size=36, crop_size=32, batch_size=batch, max_steps=1,
        num_samples=0, jit_compile=False)
    summary = distill.train(config, strategy)
    print(json.dumps({name: [summary["losses"], summary["heldout"]]}))
"""


def test_mirrored_replicas_follow_the_one_device_run(teacher, tmp_path):
    """Two replicas of batch 2 (logical CPUs) take the one-device step of batch 4."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, "-c", MIRRORED_CHECK, str(teacher), str(tmp_path)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                         check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    results = {}
    for line in run.stdout.splitlines():
        if line.startswith("{"):
            results.update(json.loads(line))
    (one_losses, one_heldout), (losses_, heldout) = results["one"], results["mirrored"]
    for k, v in one_losses.items():
        assert np.isclose(losses_[k], v, rtol=1e-4), k
    for d in ("AtoB", "BtoA"):  # after the update
        assert np.isclose(heldout[d]["psnr_db"], one_heldout[d]["psnr_db"], atol=0.01)
