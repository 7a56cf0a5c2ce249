"""What tfstyle 0.1 (the flat layout) saved still loads: generators, checkpoints (a run
resumes from them), the auto-encoder, and an export's LiteRT file with its models.json.

The files in tests/data/layout_v0_1 were written by the 0.1 code (see its README); the
reference outputs are what that code computed with them.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfstyle.core.images import to_model_range
from tfstyle.cyclegan import generators, trainer
from tfstyle.style import autoencoder
from tfstyle.style import trainer as style_trainer

OLD = Path(__file__).parent / "data" / "layout_v0_1"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(OLD / "reference_outputs.npz"))


@pytest.mark.parametrize("run", ["cyclegan_se", "cyclegan_da"])
def test_generators_of_0_1_load_and_compute_the_same(run, reference):
    generator = generators.load_generator(OLD / run, "AtoB")
    out = generator(to_model_range(reference["input"])[None]).numpy()[0]
    np.testing.assert_allclose(out, reference[run], atol=1e-5)
    assert generators.load_info(OLD / run)["block"] == run.split("_")[1]


def test_a_0_1_cyclegan_run_resumes_from_its_checkpoint(tmp_path):
    run = shutil.copytree(OLD / "cyclegan_se", tmp_path / "run")
    old = json.loads((run / "config.json").read_text())
    fields = {f for f in trainer.CycleGANConfig.__dataclass_fields__}
    settings = {k: v for k, v in old.items() if k in fields}
    config = trainer.CycleGANConfig(**{**settings, "model_dir": str(run), "max_steps": 4,
                                       "num_samples": 0})
    summary = trainer.train(config, tf.distribute.OneDeviceStrategy("/cpu:0"))
    assert summary["resumed_from"].endswith("ckpt-3")
    assert summary["steps"] == 4


def test_the_0_1_autoencoder_loads_and_resumes(tmp_path, reference):
    model, info = autoencoder.load_autoencoder(OLD / "autoencoder")
    assert (info["cut"], info["attention"]) == ("relu3_1", "cbam")
    x_hat = model.forward(tf.constant(reference["input"][None], tf.float32))["x_hat"]
    np.testing.assert_allclose(x_hat.numpy()[0], reference["autoencoder_x_hat"], atol=1e-3)

    run = shutil.copytree(OLD / "autoencoder", tmp_path / "run")
    old = json.loads((run / "config.json").read_text())
    fields = set(style_trainer.AutoencoderConfig.__dataclass_fields__)
    settings = {k: v for k, v in old.items() if k in fields}
    config = style_trainer.AutoencoderConfig(**{**settings, "model_dir": str(run), "steps": 3,
                                                "sample_style": ""})
    summary = style_trainer.train(config, tf.distribute.OneDeviceStrategy("/cpu:0"))
    assert summary["resumed_from"].endswith("ckpt-2")
    assert summary["steps"] == 3


def test_a_0_1_export_is_fetched_for_the_app_and_runs(tmp_path, reference):
    from ai_edge_litert.interpreter import Interpreter
    done = subprocess.run(["bash", str(REPO / "android_demo" / "fetch_models.sh"),
                           str(OLD / "exported"), f"--dest={tmp_path / 'assets'}"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    listing = json.loads((tmp_path / "assets" / "models.json").read_text())
    entry = listing["models"][0]
    interpreter = Interpreter(model_path=str(tmp_path / "assets" / entry["file"]))
    interpreter.allocate_tensors()
    scale, offset = entry["input"]["from_pixels"]["scale"], entry["input"]["from_pixels"]["offset"]
    x = reference["input"][None].astype(np.float32) * scale + offset
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]
    np.testing.assert_allclose(out, reference["tflite_se"], atol=1e-3)
    # and the Keras generator it came from still agrees with it
    keras_out = generators.load_generator(OLD / "cyclegan_se", "AtoB")(
        to_model_range(reference["input"])[None]).numpy()[0]
    np.testing.assert_allclose((keras_out + 1) * 127.5, out, atol=0.05)


def test_translate_cli_runs_a_0_1_model(tmp_path, reference):
    from PIL import Image
    Image.fromarray(reference["input"]).save(tmp_path / "in.png")
    done = subprocess.run([sys.executable, "-m", "tfstyle.translate",
                           f"--model_dir={OLD / 'cyclegan_se'}", f"--out_dir={tmp_path / 'out'}",
                           str(tmp_path / "in.png")], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "out" / "in.png").is_file()
