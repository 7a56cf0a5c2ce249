"""Export of generators to TF Serving SavedModels and LiteRT files (export.generators).

One module-scoped export, through the CLI, of a model directory holding a tiny CycleDA
generator (AtoB, attention switched on, small attention limit) and a tiny CycleSE generator
(BtoA); the tests load what it wrote and compare it with the Keras generators themselves.
Both generators are fitted for a few steps to a colour grading of their inputs, so their
outputs are pictures, not the near-grey of an untrained net, and an artifact that lost the
picture (flat grey, channels swapped) scores far below every threshold.
"""

import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfstyle.cyclegan.generators import load_generator, save_generators
from tfstyle.cyclegan.networks import ResnetGenerator
from tfstyle.deploy import checks, client, exporter, litert, options, saved_model
from tfstyle.deploy.checks import ExportError

REPO = Path(__file__).resolve().parents[1]
SIZE = 32
VARIANTS = ("float32", "float16", "dynamic", "int8")
PREFIX = "my_model_1"  # sanitized from the directory name "My Model-1"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def smooth_image(rng, height, width):
    """A real-looking picture: smooth colour gradients, a disc and a little sensor noise."""
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    image = np.stack([np.sin(xx * rng.uniform(2, 7) + rng.uniform(0, 3)),
                      np.cos(yy * rng.uniform(2, 7)), np.sin((xx + yy) * 3)], -1) * 0.5 + 0.5
    cy, cx, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.1, 0.25)
    image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 1, 3)
    return np.clip(image * 255 + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def dataroot(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split in ("trainA", "trainB", "testA", "testB"):
        (root / split).mkdir()
        for i in range(6):
            h, w = rng.integers(36, 72, 2)
            fmt = "png" if i % 2 else "jpg"
            Image.fromarray(smooth_image(rng, h, w)).save(root / split / f"{i}.{fmt}")
    return root


def graded(pixels):
    """What the test generators learn: more contrast and a warmer colour (pixels -> pixels)."""
    return np.clip((pixels - 128.0) * 1.2 + 128.0 + np.array([12.0, 0.0, -12.0]), 0, 255)


def fit_to_grading(generator, folder, steps=100):
    """A few Adam steps (L1) towards `graded` on the centre squares of `folder`'s images, so
    the generator's outputs look like pictures (untrained, they are near-grey)."""
    images, _ = checks.read_some(sorted(folder.iterdir()), 6)
    crops = np.stack([checks.center_square(im, SIZE) for im in images]).astype(np.float32)
    x, y = crops / 127.5 - 1.0, graded(crops).astype(np.float32) / 127.5 - 1.0
    optimizer = keras.optimizers.Adam(5e-3)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.abs(generator(x, training=True) - y))
        optimizer.apply(tape.gradient(loss, generator.trainable_variables),
                        generator.trainable_variables)

    for _ in range(steps):
        step()
    return generator


def tiny_da():
    # max_attention_size 64*64: the attention accepts at most 1024 input pixels (32x32).
    g = ResnetGenerator(ngf=4, n_blocks=1, block="da", pam_max_attention_size=64 * 64)
    g.build((None, None, None, 3))
    for block in g.blocks:  # DANet starts with gamma = 0; switch the attention on
        block.pam.gamma.assign(0.5)
        block.cam.gamma.assign(0.5)
    return g


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, dataroot):
    keras.utils.set_random_seed(0)
    directory = tmp_path_factory.mktemp("runs") / "My Model-1"
    se = ResnetGenerator(ngf=8, n_blocks=1, block="se")
    se.build((None, None, None, 3))
    generators = {"AtoB": fit_to_grading(tiny_da(), dataroot / "trainA"),
                  "BtoA": fit_to_grading(se, dataroot / "trainB")}
    save_generators(directory, generators,
                    {"block": "da", "ngf": 4, "n_blocks": 1, "crop_size": SIZE,
                     "load_size": SIZE, "dataroot": str(dataroot), "step": 10, "epoch": 1})
    return directory


@pytest.fixture(scope="module")
def generators(model_dir):
    return {d: load_generator(model_dir, d) for d in ("AtoB", "BtoA")}


def run_export_cli(*args):
    return subprocess.run([sys.executable, "-m", "export.generators", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env=ENV)


def dead_pid():
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.fixture(scope="module")
def leftovers(tmp_path_factory):
    """OUT with work folders of exports that were killed (their process is gone: to be
    removed), one of tfstyle 0.1's, and one of an export still running (this process)."""
    out = tmp_path_factory.mktemp("exported")
    dead = dead_pid()
    killed = [out / f".work-{dead}-1a2b3c4d", out / "serving" / f"{PREFIX}_AtoB" / f".tmp-1-{dead}"]
    for folder in killed:
        (folder / "variables").mkdir(parents=True)
        (folder / "saved_model.pb").write_bytes(b"half")
    running = out / f".work-{os.getpid()}-5e6f7a8b"
    running.mkdir()
    return out, killed, running


@pytest.fixture(scope="module")
def export(leftovers, model_dir):
    out = leftovers[0]
    result = run_export_cli(f"--model_dir={model_dir}", f"--out_dir={out}",
                            f"--tflite_size={SIZE}", "--calibration_images=8",
                            "--check_images=3", "--latency_runs=2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result.stdout


@pytest.fixture(scope="module")
def models_json(export):
    return json.loads((export[0] / "tflite" / "models.json").read_text())


def keras_pixels(generator, pixels):
    """Independent reference: reflect-pad to a multiple of 4, run Keras, crop, to [0, 255]."""
    x = np.asarray(pixels, np.float32)
    h, w = x.shape[1:3]
    x = np.pad(x / 127.5 - 1.0, [(0, 0), (0, -h % 4), (0, -w % 4), (0, 0)], mode="reflect")
    return (generator(x, training=False).numpy()[:, :h, :w] + 1.0) * 127.5


def png_bytes(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def decode(data):
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


# -- layout, CLI --------------------------------------------------------------------------

def test_layout_config_and_table(export):
    out, stdout = export
    print(stdout[stdout.index("| artifact |"):])  # docs/export.md quotes it (pytest -s)
    for direction in ("AtoB", "BtoA"):
        name = f"{PREFIX}_{direction}"
        assert (out / "serving" / name / "1" / "saved_model.pb").is_file()
        assert (out / "serving" / name / "1" / "variables").is_dir()
        for variant in VARIANTS:
            assert (out / "tflite" / f"{name}_{variant}.tflite").is_file()
            assert re.search(rf"\| tflite/{name}_{variant}\.tflite \| [\d.]+ \| [\d.]+ \| "
                             rf"[\d.]+ \| [\d.]+ / [\d.]+ \| ok \|", stdout)
        assert f"| serving/{name}/1 |" in stdout
    config = (out / "serving" / "models.config").read_text()
    assert re.findall(r'name: "(\w+)"\s+base_path: "/models/(\w+)"', config) == [
        (f"{PREFIX}_AtoB", f"{PREFIX}_AtoB"), (f"{PREFIX}_BtoA", f"{PREFIX}_BtoA")]
    batching = (out / "serving" / "batching_parameters.txt").read_text()
    assert "max_batch_size { value: 8 }" in batching
    assert saved_model.next_version(out / "serving" / f"{PREFIX}_AtoB") == 2


def test_work_folders_of_killed_exports_are_removed(export, leftovers):
    out, killed, running = leftovers
    for folder in killed:
        assert not folder.exists() and f"removed {folder}" in export[1]
    assert list(out.glob(".work-*")) == [running]  # an export still running keeps its own
    assert not list((out / "serving").glob("*/.tmp-*"))


def test_names_are_sanitized():
    assert options.sanitize("My Model-1") == "my_model_1"
    assert options.model_name("Horse2Zebra (v2)", "BtoA") == "horse2zebra_v2_BtoA"
    with pytest.raises(ValueError):
        options.sanitize("--")


def test_export_options_in_code_are_the_flags_checked_alike():
    from tfstyle.core.config import ConfigError

    settings = exporter.ExportOptions(tflite=None, version=None, num_threads=None,
                                      directions=["AtoB"], min_psnr=("int8=15",))
    assert (settings.tflite, settings.version, settings.directions) == (("auto",), 0, ("AtoB",))
    assert settings.variants("generator") == litert.VARIANTS
    assert settings.variants("stylizer") == options.STYLIZER_VARIANTS
    assert settings.thresholds("generator")["int8"] == settings.thresholds("stylizer")["int8"] == 15
    assert settings.thresholds("stylizer")["float32"] == 35
    assert exporter.ExportOptions(tflite=()).variants("generator") == ()
    for bad, flag in ((dict(min_psnr=("int8=x",)), "min_psnr"),
                      (dict(min_psnr=("int9=20",)), "min_psnr"),
                      (dict(serving=False, tflite=()), "tflite"),
                      (dict(tflite=("int8", "int8")), "tflite"),
                      (dict(styles=("a.png", "b/a.jpg")), "styles"),
                      (dict(serving_max_pixels=10), "serving_max_pixels"),
                      (dict(name="--"), "name")):
        with pytest.raises(ConfigError, match=f"^--{flag}="):
            exporter.ExportOptions(**bad)


def test_existing_version_is_not_overwritten(export, model_dir):
    with pytest.raises(ExportError, match="exists.*--overwrite"):
        exporter.export_generators(model_dir, export[0], exporter.ExportOptions(version=1))


@pytest.mark.parametrize("args, flag", [
    (["--tflite=float32,bogus"], "--tflite"),
    (["--tflite_size=30"], "--tflite_size"),
    (["--min_psnr=int8"], "--min_psnr"),
    (["--directions=AtoC"], "--directions"),
    (["--tflite=auto,int8"], "--tflite"),
    (["--name=--"], "--name"),
])
def test_cli_rejects_bad_flags(model_dir, tmp_path, args, flag):
    result = run_export_cli(f"--model_dir={model_dir}", f"--out_dir={tmp_path}", *args)
    assert result.returncode != 0 and flag in result.stderr
    assert not list(tmp_path.iterdir())


def test_cli_requires_a_trained_model_dir(tmp_path):
    result = run_export_cli(f"--out_dir={tmp_path}")
    assert result.returncode != 0 and "--model_dir" in result.stderr
    result = run_export_cli(f"--model_dir={tmp_path}", f"--out_dir={tmp_path / 'o'}")
    assert result.returncode != 0
    assert "--model_dir" in result.stderr and "info.json" in result.stderr


# -- SavedModel ---------------------------------------------------------------------------

def test_serving_default_gives_the_keras_output(export, generators, dataroot):
    out, _ = export
    rng = np.random.default_rng(1)
    # The CycleDA model's policy allows 1024 pixels: 27x30 is translated at its own size.
    for direction, (h, w) in (("AtoB", (27, 30)), ("BtoA", (37, 50))):
        loaded = tf.saved_model.load(str(out / "serving" / f"{PREFIX}_{direction}" / "1"))
        images = np.stack([smooth_image(rng, h, w) for _ in range(2)]).astype(np.float32)
        result = loaded.signatures["serving_default"](images=tf.constant(images))
        translated = result["translated"].numpy()
        assert translated.shape == (2, h, w, 3) and translated.dtype == np.float32
        assert translated.min() >= 0 and translated.max() <= 255
        np.testing.assert_allclose(translated, keras_pixels(generators[direction], images),
                                   atol=0.05)


def test_translate_bytes_decodes_what_the_rest_client_sends(export, generators, dataroot):
    out, _ = export
    loaded = tf.saved_model.load(str(out / "serving" / f"{PREFIX}_BtoA" / "1"))
    files = [dataroot / "testB" / "0.jpg", dataroot / "testB" / "1.png"]
    payloads = [client.image_payload(f) for f in files]
    body = json.loads(json.dumps(client.rest_request_body(payloads)))
    assert body["signature_name"] == "translate_bytes"
    # TF Serving's row format, one named input: each instance is that input's value, and an
    # object {"b64": ...} is a base64 binary string.
    instances = [base64.b64decode(item["b64"]) for item in body["instances"]]
    fn = loaded.signatures[body["signature_name"]]
    assert list(fn.structured_input_signature[1]) == ["image_bytes"]
    assert list(fn.structured_outputs) == ["output_bytes"]  # *_bytes: returned as b64
    outputs = fn(image_bytes=tf.constant(instances))["output_bytes"].numpy()
    assert len(outputs) == 2
    for data, encoded in zip(outputs, instances):
        pixels = tf.io.decode_image(encoded, channels=3).numpy()
        result = decode(bytes(data))
        assert result.shape == pixels.shape  # sizes differ between the two images
        expected = np.rint(keras_pixels(generators["BtoA"], pixels[None])[0])
        assert np.abs(result.astype(float) - expected).max() <= 1


def test_saved_model_cli_lists_both_signatures(export):
    path = export[0] / "serving" / f"{PREFIX}_AtoB" / "1"
    result = subprocess.run(["saved_model_cli", "show", "--dir", str(path), "--all"],
                            capture_output=True, text=True, timeout=300, env=ENV)
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout
    default = text[text.index("signature_def['serving_default']"):]
    default = default[:default.index("Method name")]
    assert "inputs['images']" in default and "DT_FLOAT" in default
    assert "shape: (-1, -1, -1, 3)" in default and "outputs['translated']" in default
    tbytes = text[text.index("signature_def['translate_bytes']"):]
    tbytes = tbytes[:tbytes.index("Method name")]
    assert "inputs['image_bytes']" in tbytes and "outputs['output_bytes']" in tbytes
    assert tbytes.count("DT_STRING") == 2 and "shape: (-1)" in tbytes


def test_oversized_uploads_are_downscaled_within_the_attention_limit(export, generators):
    loaded = tf.saved_model.load(str(export[0] / "serving" / f"{PREFIX}_AtoB" / "1"))
    image = smooth_image(np.random.default_rng(2), 64, 48)  # 3072 pixels > 1024
    result = loaded.signatures["translate_bytes"](image_bytes=tf.constant([png_bytes(image)]))
    translated = decode(bytes(result["output_bytes"].numpy()[0]))
    # scale sqrt(1024 / 3072); sides rounded down to multiples of 4
    assert translated.shape == (36, 24, 3)
    assert saved_model.policy_for(generators["AtoB"]).fit(64, 48) == (36, 24)
    pixels = loaded.signatures["serving_default"](images=tf.constant(image[None], tf.float32))
    assert pixels["translated"].shape == (1, 36, 24, 3)


def test_refuse_policy_and_minimum_size(generators):
    functions, specs = saved_model.make_endpoints(
        generators["BtoA"], saved_model.SizePolicy(max_side=32, oversize="refuse"), per_image=False)
    fn = tf.function(functions["serving_default"], input_signature=[specs["serving_default"]])
    assert fn(tf.zeros([1, 32, 20, 3]))["translated"].shape == (1, 32, 20, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="exceeds .*longest side 32"):
        fn(tf.zeros([1, 36, 20, 3]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="smaller than 8"):
        fn(tf.zeros([1, 6, 20, 3]))


def test_attention_limit_matches_the_layer_check():
    g = ResnetGenerator(ngf=4, n_blocks=1, block="da", pam_kv_pool=2)
    limit = saved_model.attention_pixel_limit(g)
    assert limit == 2 * 256 * 256  # 4096^2 entries, keys pooled 2x2
    assert g(np.zeros((1, 256, 512, 3), np.float32)).shape == (1, 256, 512, 3)
    with pytest.raises(ValueError, match="attention"):
        g(np.zeros((1, 260, 512, 3), np.float32))
    assert saved_model.attention_pixel_limit(ResnetGenerator(ngf=4, n_blocks=1)) is None
    assert saved_model.SizePolicy(max_side=1024).fit(3000, 1000) == (1024, 340)
    assert saved_model.SizePolicy(max_side=1024, max_pixels=limit).fit(3000, 1000) == (624, 208)
    assert saved_model.SizePolicy(max_side=1024).fit(1000, 1024) == (1000, 1024)


# -- LiteRT -------------------------------------------------------------------------------

def lite_run(path, entry, pixels):
    """Run a LiteRT file as an app following models.json would."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert list(inp["shape"]) == entry["input"]["shape"]
    assert inp["dtype"].__name__ == entry["input"]["dtype"]
    x = pixels * entry["input"]["from_pixels"]["scale"] + entry["input"]["from_pixels"]["offset"]
    if entry["input"]["dtype"] == "uint8":
        x = np.clip(np.rint(x), 0, 255)
    interpreter.set_tensor(inp["index"], x[None].astype(inp["dtype"]))
    interpreter.invoke()
    y = interpreter.get_tensor(out["index"]).astype(np.float32)[0]
    return y * entry["output"]["to_pixels"]["scale"] + entry["output"]["to_pixels"]["offset"]


@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_tflite_variant_meets_its_agreement_threshold(export, models_json, generators,
                                                      dataroot, direction, variant):
    entry = next(m for m in models_json["models"]
                 if m["direction"] == direction and m["variant"] == variant)
    domain = "A" if direction == "AtoB" else "B"
    images, _ = checks.evaluation_images(dataroot, domain, 3)
    crops = np.stack([checks.center_square(im, SIZE) for im in images]).astype(np.float32)
    expected = keras_pixels(generators[direction], crops)
    path = export[0] / "tflite" / entry["file"]
    values = [checks.psnr(np.clip(lite_run(path, entry, c), 0, 255), e)
              for c, e in zip(crops, expected)]
    threshold = checks.DEFAULT_MIN_PSNR[variant]
    assert min(values) >= threshold
    assert entry["agreement"]["psnr_db"] >= threshold == entry["agreement"]["threshold_db"]
    if variant == "float32":
        assert min(values) > 60  # same graph, same float arithmetic up to kernel order


@pytest.mark.parametrize("variant", VARIANTS)
def test_tflite_has_builtin_ops_only_and_no_5d_tensors(export, models_json, variant):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    for entry in (m for m in models_json["models"] if m["variant"] == variant):
        interpreter = Interpreter(
            model_path=str(export[0] / "tflite" / entry["file"]),
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        ops = {op["op_name"] for op in interpreter._get_ops_details()}
        assert not {o for o in ops if o.startswith("Flex") or o in ("CUSTOM", "DELEGATE")}
        assert "MIRROR_PAD" in ops and "TRANSPOSE_CONV" in ops
        assert ops == set(entry["ops"])
        tensors = interpreter.get_tensor_details()
        assert max(len(t["shape"]) for t in tensors) <= 4
        if entry["direction"] == "AtoB":  # the attention's matmuls are there, in 3-D
            assert "BATCH_MATMUL" in ops and "SOFTMAX" in ops
        if variant == "int8":  # full integer: no float tensor anywhere
            assert {t["dtype"] for t in tensors} <= {np.int8, np.uint8, np.int32}


def info_dataroot(model_dir):
    return json.loads((model_dir / "generators" / "info.json").read_text())["dataroot"]


def test_models_json_describes_each_file(export, models_json, model_dir):
    out = export[0]
    assert models_json["format"] == "tfstyle.litert_models"
    assert models_json["format_version"] == 1 and models_json["size"] == SIZE
    assert models_json["refused"] == []
    assert len(models_json["models"]) == 8
    keys = {"file", "model_name", "kind", "direction", "source_domain", "target_domain", "variant",
            "size_bytes", "sha256", "signature_key", "input", "output", "agreement",
            "latency_ms", "ops", "max_tensor_rank", "source"}
    for entry in models_json["models"]:
        assert set(entry) - {"calibration"} == keys
        data = (out / "tflite" / entry["file"]).read_bytes()
        assert entry["size_bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["kind"] == "generator"
        assert entry["file"] == f"{entry['model_name']}_{entry['variant']}.tflite"
        assert (entry["source_domain"], entry["target_domain"]) == \
            (("A", "B") if entry["direction"] == "AtoB" else ("B", "A"))
        assert entry["input"]["name"] == "image" and entry["output"]["name"] == "translated"
        assert entry["input"]["shape"] == entry["output"]["shape"] == [1, SIZE, SIZE, 3]
        assert entry["latency_ms"]["median_ms"] > 0
        assert entry["source"] == {"model_dir": str(model_dir.resolve()),
                                   "dataroot": info_dataroot(model_dir), "block": "da",
                                   "ngf": 4, "n_blocks": 1, "crop_size": SIZE,
                                   "load_size": SIZE, "step": 10, "epoch": 1}
        source = "testA" if entry["direction"] == "AtoB" else "testB"
        assert entry["agreement"]["image_folder"].endswith(source)
        if entry["variant"] == "int8":
            assert entry["input"]["dtype"] == entry["output"]["dtype"] == "uint8"
            assert entry["input"]["quantization"] == {"scale": 1.0, "zero_point": 0}
            assert entry["output"]["range"] == [-1.0, 1.0]
            assert entry["output"]["to_pixels"]["scale"] == pytest.approx(127.5 / 128, abs=1e-3)
            train = "trainA" if entry["direction"] == "AtoB" else "trainB"
            assert entry["calibration"]["folder"].endswith(train)
            assert entry["calibration"]["images"] == 6
        else:
            assert "calibration" not in entry
            assert entry["input"]["dtype"] == entry["output"]["dtype"] == "float32"
            assert entry["input"]["range"] == entry["output"]["range"] == [0.0, 255.0]
            assert entry["input"]["quantization"] is None


def test_refused_artifacts_are_removed_and_reported(model_dir, tmp_path):
    stale = tmp_path / "tflite" / f"{PREFIX}_BtoA_float16.tflite"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an earlier export")
    settings = exporter.ExportOptions(
        directions=("BtoA",), tflite=("float16",), tflite_size=SIZE, check_images=2,
        latency_runs=1, min_psnr=("float16=150", "savedmodel=150"))
    with pytest.raises(ExportError) as err:
        exporter.export_generators(model_dir, tmp_path, settings, log=lambda _: None)
    message = str(err.value)
    assert f"tflite/{PREFIX}_BtoA_float16.tflite (PSNR" in message and "below 150 dB" in message
    assert f"serving/{PREFIX}_BtoA/1 (PSNR" in message
    assert not stale.exists()
    assert not (tmp_path / "serving").exists()  # no version directory, no models.config
    listing = json.loads((tmp_path / "tflite" / "models.json").read_text())
    assert listing["models"] == []
    (refused,) = listing["refused"]
    assert refused["variant"] == "float16" and refused["threshold_db"] == 150
    assert 35 < refused["psnr_db"] < 150
    report = json.loads((tmp_path / "export_report.json").read_text())
    assert {a["status"] for a in report["artifacts"]} == {"refused"}


def test_missing_data_fails_before_any_work(model_dir, dataroot, tmp_path):
    partial = tmp_path / "data"
    (partial / "testB").mkdir(parents=True)
    (partial / "testB" / "0.jpg").write_bytes((dataroot / "testB" / "0.jpg").read_bytes())
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=r"trainB holds no images to calibrate the int8"):
        exporter.export_generators(model_dir, out, exporter.ExportOptions(
            directions=("BtoA",), dataroot=str(partial)))
    with pytest.raises(ExportError, match="no images in testA/ or trainA/"):
        exporter.export_generators(model_dir, out, exporter.ExportOptions(
            directions=("AtoB",), dataroot=str(partial), tflite=()))
    with pytest.raises(ExportError, match="--dataroot"):
        exporter.export_generators(model_dir, out, exporter.ExportOptions(
            dataroot=str(tmp_path / "nowhere")))
    assert not out.exists()


# -- what is refused, and what a failed export leaves ---------------------------------------

def snapshot(folder):
    """Every path under `folder`, with a hash of each file's bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else "folder" for p in sorted(folder.rglob("*"))}


@pytest.fixture
def earlier_export(export, tmp_path):
    """A copy of the module's export: OUT holding a good export of the same model names."""
    out = tmp_path / "out"
    shutil.copytree(export[0], out)
    return out, snapshot(out)


QUICK = dict(tflite_size=SIZE, calibration_images=4, check_images=2, latency_runs=1)


@pytest.mark.parametrize("poison, message", [
    ("nan", r"BtoA\.keras: 1 weight tensor\(s\) hold NaN or inf \(.*kernel"),
    ("overflow", r"BtoA\.keras: the model's output on the check images of .*testB holds NaN"),
])
def test_a_non_finite_model_is_refused_before_anything_is_written(
        model_dir, earlier_export, tmp_path, poison, message):
    poisoned = tmp_path / "poisoned"
    shutil.copytree(model_dir, poisoned)
    generator = load_generator(poisoned, "BtoA")
    kernel = generator.stem[1].kernel
    value = kernel.numpy()
    if poison == "nan":
        value[0, 0, 0, 0] = np.nan
    else:
        value[:] = 3e38  # every weight finite, but the convolution's sums overflow
    kernel.assign(value)
    generator.save(poisoned / "generators" / "BtoA.keras")  # Keras' own save, unchecked
    out, before = earlier_export
    with pytest.raises(ExportError, match=message):
        exporter.export_generators(poisoned, out, exporter.ExportOptions(name=PREFIX, **QUICK),
                                   log=lambda _: None)
    assert snapshot(out) == before  # the earlier export untouched, no work folder


def test_an_export_that_fails_midway_leaves_out_as_it_was(model_dir, earlier_export,
                                                          monkeypatch):
    from tfstyle.deploy import formats

    check = formats.SavedModelFormat.check

    def disk_full_at_the_second_model(self, candidate):
        if candidate.target.direction == "BtoA":
            raise OSError(28, "No space left on device")
        return check(self, candidate)

    monkeypatch.setattr(formats.SavedModelFormat, "check", disk_full_at_the_second_model)
    out, before = earlier_export
    with pytest.raises(OSError, match="No space left"):  # AtoB was written and checked
        exporter.export_generators(model_dir, out, exporter.ExportOptions(
            tflite=("float32",), **QUICK), log=lambda _: None)
    assert snapshot(out) == before


@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_the_check_tells_the_picture_from_grey_and_swapped_channels(generators, dataroot,
                                                                    direction):
    """Against these generators' outputs, the best flat output (grey or one colour) and the
    right output with red and blue swapped score far below the lowest threshold (int8,
    20 dB); untrained generators' near-grey outputs let a flat grey score 20.3-20.9 dB."""
    images, _ = checks.evaluation_images(dataroot, checks.SOURCE_DOMAIN[direction], 3)
    references = checks.KerasReference(generators[direction])(
        np.stack([checks.center_square(im, SIZE) for im in images]))
    assert references.std() > 40  # a picture, not mid-grey
    lowest = min(checks.DEFAULT_MIN_PSNR.values())
    wrong = {"grey": [np.full_like(r, r.mean()) for r in references],
             "flat colour": [np.broadcast_to(r.mean((0, 1)), r.shape) for r in references],
             "red and blue swapped": [r[..., ::-1] for r in references]}
    for name, outputs in wrong.items():
        value = checks.agreement(outputs, references)["psnr_db"]
        assert value < lowest - 5, (name, value)


@pytest.mark.parametrize("lost, reason", [
    ("grey", r"PSNR \d+\.\d\d dB against the Keras generator is below 20 dB"),
    ("swapped", r"PSNR \d+\.\d\d dB against the Keras generator is below 20 dB"),
    ("nan", "its output holds NaN or inf"),
])
def test_an_int8_file_that_lost_the_picture_is_refused(model_dir, tmp_path, monkeypatch,
                                                       lost, reason):
    run = litert.LiteModel.run

    def broken(self, pixels):
        out = run(self, pixels)
        return {"grey": np.full_like(out, out.mean()), "swapped": out[..., ::-1],
                "nan": out * np.nan}[lost]

    monkeypatch.setattr(litert.LiteModel, "run", broken)
    settings = exporter.ExportOptions(directions=("BtoA",), serving=False, tflite=("int8",),
                                      **QUICK)
    with pytest.raises(ExportError, match=rf"tflite/{PREFIX}_BtoA_int8\.tflite \({reason}\)"):
        exporter.export_generators(model_dir, tmp_path, settings, log=lambda _: None)
    assert not list((tmp_path / "tflite").glob("*.tflite"))
    (refused,) = json.loads((tmp_path / "tflite" / "models.json").read_text())["refused"]
    assert refused["variant"] == "int8" and refused["threshold_db"] == 20


def test_nan_never_passes_a_threshold():
    reference = np.full((8, 8, 3), 100.0)
    for bad in (np.nan, np.inf):
        output = reference.copy()
        output[0, 0, 0] = bad
        result = checks.agreement([reference, output], [reference, reference])
        assert result["psnr_db"] is None and result["mean_psnr_db"] is None
    assert np.isnan(checks.psnr(output * np.nan, reference))
    assert not checks.passes(float("nan"), 20) and not checks.passes(None, 20)
    assert checks.passes(20.0, 20) and not checks.passes(19.99, 20)
