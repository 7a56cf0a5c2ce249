"""The Android demo app (android_demo/) against what `python -m export.generators` writes.

This machine cannot build the app, so the test checks the contract between the two:

- android_demo/fetch_models.sh copies an export's LiteRT files and models.json into the app's
  assets (here into a temporary folder), verifying every file models.json names;
- every JSON key the app reads (the `Keys` constants of ModelCatalog.kt) is in every entry of
  the exporter's models.json with the type the app expects, and the tensors the app addresses
  by name (signature, input, output) exist in each .tflite with the recorded shape, dtype,
  quantization and pixel maps;
- the app's documented preprocessing (Preprocessing.kt: centre square, 2x2 box halving,
  bilinear resize, from_pixels / to_pixels), re-implemented here, applied to real images and
  run through each exported .tflite with ai_edge_litert, reproduces the Keras generator on the
  same preprocessed image within the PSNR threshold models.json records for the variant;
- where a Kotlin compiler and Android's org.json are installed (Debian: kotlin,
  libandroid-json-java), ModelCatalog.kt and Preprocessing.kt themselves are compiled and run
  on the JVM (android_demo/jvm-check) and must agree with the Python re-implementation;
- the hand-written project is consistent (resource ids and strings, FileProvider paths, pinned
  versions).

One module-scoped export of two tiny generators at 32x32, all four variants, no SavedModel.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfstyle.core import synthetic
from tfstyle.cyclegan.generators import load_generator, save_generators
from tfstyle.cyclegan.networks import ResnetGenerator
from tfstyle.deploy import checks, exporter

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "android_demo"
SOURCES = APP / "app" / "src" / "main" / "java" / "dev" / "tfstyle" / "demo"
RES = APP / "app" / "src" / "main" / "res"
FETCH = APP / "fetch_models.sh"
SIZE = 32
PREFIX = "emotion"
NAMES = {"A": "happy", "B": "scary"}
VARIANTS = ("float32", "float16", "dynamic", "int8")
DIRECTIONS = ("AtoB", "BtoA")


# -- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dataroot(tmp_path_factory):
    return synthetic.make_dataset(tmp_path_factory.mktemp("data"), train=6, test=4, size=40)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, dataroot):
    generators = {}
    for direction, ngf in (("AtoB", 4), ("BtoA", 8)):  # different nets: a mix-up would show
        generator = ResnetGenerator(ngf=ngf, n_blocks=1)
        generator.build((None, None, None, 3))
        generators[direction] = generator
    directory = tmp_path_factory.mktemp("runs") / "emotion"
    save_generators(directory, generators,
                    {"block": "resnet", "ngf": 4, "n_blocks": 1, "load_size": 40,
                     "crop_size": SIZE, "dataroot": str(dataroot), "step": 1, "epoch": 1})
    return directory


@pytest.fixture(scope="module")
def export(tmp_path_factory, model_dir):
    out = tmp_path_factory.mktemp("exported")
    options = exporter.ExportOptions(name=PREFIX, serving=False, tflite=VARIANTS,
                                     tflite_size=SIZE, calibration_images=6, check_images=2,
                                     latency_runs=1, num_threads=1)
    exporter.export_generators(model_dir, out, options, log=lambda _: None)
    return out


@pytest.fixture(scope="module")
def exported_json(export):
    return json.loads((export / "tflite" / "models.json").read_text())


def run_fetch(*args):
    return subprocess.run(["bash", str(FETCH), *map(str, args)], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def fetched(tmp_path_factory, export):
    dest = tmp_path_factory.mktemp("assets") / "models"
    result = run_fetch(export, f"--dest={dest}", f"--names={PREFIX}:{NAMES['A']}:{NAMES['B']}")
    assert result.returncode == 0, result.stderr
    return dest, result.stdout


@pytest.fixture(scope="module")
def catalog(fetched):
    return json.loads((fetched[0] / "models.json").read_text())


@pytest.fixture(scope="module")
def references(model_dir):
    return {d: checks.KerasReference(load_generator(model_dir, d)) for d in DIRECTIONS}


@pytest.fixture(scope="module")
def images(dataroot):
    """Real images of both domains in shapes that take every branch of the preprocessing: the
    40x40 test image (bilinear 40 -> 32 only), a wide photo that is cropped and halved
    (150x100 -> 100 -> 50 -> 32), and a small tall one that is cropped and enlarged (30 -> 32)."""
    out = {}
    for domain in "AB":
        files = sorted((dataroot / f"test{domain}").iterdir())
        with Image.open(files[0]) as first, Image.open(files[1]) as second:
            out[f"{domain}_square"] = np.asarray(first.convert("RGB"))
            photo = second.convert("RGB")
            out[f"{domain}_wide"] = np.asarray(photo.resize((150, 100), Image.BICUBIC))
            out[f"{domain}_small_tall"] = np.asarray(photo.resize((30, 45), Image.BICUBIC))
    return out


# -- the app's documented preprocessing, in numpy (Preprocessing.kt, same steps) ---------

F32 = np.float32


def model_pixels(rgb: np.ndarray, size: int) -> np.ndarray:
    """Steps 1-3 of Preprocessing.kt: uint8 [H, W, 3] -> float32 [size, size, 3] pixels."""
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = rgb[top:top + side, left:left + side].astype(np.int64)
    while side // 2 >= size:
        half = side // 2
        b = square[:2 * half, :2 * half]
        square = (b[0::2, 0::2] + b[0::2, 1::2] + b[1::2, 0::2] + b[1::2, 1::2] + 2) // 4
        side = half
    scale = F32(side) / F32(size)
    s = (np.arange(size, dtype=F32) + F32(0.5)) * scale - F32(0.5)
    s = np.clip(s, F32(0), F32(side - 1))
    floor = np.floor(s)
    i0 = floor.astype(np.int64)
    i1 = np.minimum(i0 + 1, side - 1)
    weight = (s - floor).astype(F32)
    src = square.astype(F32)
    fx, fy = weight[None, :, None], weight[:, None, None]
    one = F32(1)
    top_row = src[i0][:, i0] * (one - fx) + src[i0][:, i1] * fx
    bottom_row = src[i1][:, i0] * (one - fx) + src[i1][:, i1] * fx
    return (top_row * (one - fy) + bottom_row * fy).astype(F32)


def to_tensor(pixels: np.ndarray, spec: dict) -> np.ndarray:
    """Step 4: pixels -> input tensor values, following models.json "input"."""
    affine = spec["from_pixels"]
    value = pixels * F32(affine["scale"]) + F32(affine["offset"])
    if spec["dtype"] == "float32":
        return value.astype(F32)
    info = np.iinfo(spec["dtype"])
    return np.clip(np.floor(value + F32(0.5)), info.min, info.max).astype(spec["dtype"])


def from_tensor(raw: np.ndarray, spec: dict) -> np.ndarray:
    """Step 5: raw output tensor -> float pixels in [0, 255], following "output"."""
    affine = spec["to_pixels"]
    return np.clip(raw.astype(F32) * F32(affine["scale"]) + F32(affine["offset"]), 0, 255)


def display(pixels: np.ndarray) -> np.ndarray:
    """What the app shows and saves: rounded half up."""
    return np.clip(np.floor(pixels + F32(0.5)), 0, 255).astype(np.uint8)


def run_tflite(path: Path, entry: dict, tensor: np.ndarray) -> np.ndarray:
    """As the app runs a model: by signature, input and output name from models.json."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    runner = interpreter.get_signature_runner(entry["signature_key"])
    result = runner(**{entry["input"]["name"]: tensor[None]})
    return result[entry["output"]["name"]][0]


# -- fetch_models.sh ----------------------------------------------------------------------

def test_fetch_copies_every_model_and_names_the_domains(export, exported_json, fetched,
                                                        catalog):
    dest, stdout = fetched
    files = sorted(p.name for p in dest.iterdir())
    expected = sorted(m["file"] for m in exported_json["models"])
    assert len(expected) == 2 * len(VARIANTS) and exported_json["refused"] == []
    assert files == sorted(expected + ["models.json"])
    for entry in catalog["models"]:
        data = (dest / entry["file"]).read_bytes()
        assert data == (export / "tflite" / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert len(data) == entry["size_bytes"]
        assert entry["domain_names"] == NAMES
        assert f"{entry['file']} ({NAMES[entry['source_domain']]} -> " \
               f"{NAMES[entry['target_domain']]})" in stdout
    # apart from the domain names, the app gets the exporter's models.json as it is
    stripped = [{k: v for k, v in m.items() if k != "domain_names"} for m in catalog["models"]]
    assert {**catalog, "models": stripped} == exported_json


def test_fetch_variant_filter_rewrites_models_json(export, tmp_path):
    dest = tmp_path / "models"
    dest.mkdir()
    (dest / "stale_AtoB_float32.tflite").write_bytes(b"an earlier fetch")
    result = run_fetch(export / "tflite", f"--dest={dest}", "--variants=float16,int8")
    assert result.returncode == 0, result.stderr
    listing = json.loads((dest / "models.json").read_text())
    assert sorted((m["model_name"], m["variant"]) for m in listing["models"]) == [
        (f"{PREFIX}_{d}", v) for d in DIRECTIONS for v in ("float16", "int8")]
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [m["file"] for m in listing["models"]] + ["models.json"])
    assert all("domain_names" not in m for m in listing["models"])


def test_fetch_refuses_an_incomplete_export(export, tmp_path):
    broken = tmp_path / "export" / "tflite"
    shutil.copytree(export / "tflite", broken)
    dest = tmp_path / "models"
    dest.mkdir()
    (dest / "models.json").write_text("{}")  # an earlier fetch must survive a failed one
    missing = f"{PREFIX}_BtoA_int8.tflite"
    (broken / missing).unlink()
    corrupt = broken / f"{PREFIX}_AtoB_float16.tflite"
    data = bytearray(corrupt.read_bytes())
    data[-1] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    result = run_fetch(broken.parent, f"--dest={dest}")
    assert result.returncode != 0
    assert "nothing was copied" in result.stderr
    assert f"{broken / missing} is missing" in result.stderr
    assert f"{corrupt} does not match the sha256" in result.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["models.json"]
    assert (dest / "models.json").read_text() == "{}"

    cases = [
        ((tmp_path / "nowhere",), "no models.json"),
        ((export, f"--dest={dest}", "--variants=float16,bf16"), "unknown variant(s) ['bf16']"),
        ((export, f"--dest={dest}", "--names=horse2zebra:horse:zebra"),
         "no model with prefix horse2zebra"),
        ((export, f"--dest={dest}", "--names=emotion:happy"), "PREFIX:A_NAME:B_NAME"),
        ((), "EXPORT_DIR is missing"),
    ]
    for args, message in cases:
        result = run_fetch(*args)
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr)
    assert (dest / "models.json").read_text() == "{}"


# -- what the app reads -------------------------------------------------------------------

def kotlin_keys() -> dict:
    """{object name: {constant name: JSON key}} of `object Keys` in ModelCatalog.kt."""
    text = (SOURCES / "ModelCatalog.kt").read_text()
    body = text[text.index("object Keys {"):text.index("object CatalogFormat")]
    keys = {}
    for name, block in re.findall(r"object (\w+) \{([^{}]*)\}", body):
        keys[name] = dict(re.findall(r'const val (\w+) = "([^"]+)"', block))
    return keys


def kotlin_constant(file: str, name: str, scope: str | None = None) -> str:
    """The value of `const val NAME` in a Kotlin source (inside `object SCOPE` if given)."""
    text = (SOURCES / file).read_text()
    if scope:
        text = dict(re.findall(r"object (\w+) \{([^{}]*)\}", text))[scope]
    match = re.search(rf"const val {name} = (\"[^\"]*\"|\d+)", text)
    assert match, f"{file} has no const val {name}"
    return match.group(1).strip('"')


NUMBER = (int, float)
#: The type the app expects for each key it reads (ModelCatalog.kt `Keys`).
EXPECTED = {
    "Document": {"format": str, "format_version": int, "size": int, "models": list},
    "Entry": {"file": str, "model_name": str, "direction": str, "source_domain": str,
              "target_domain": str, "variant": str, "size_bytes": int, "signature_key": str,
              "input": dict, "output": dict, "agreement": dict, "latency_ms": dict},
    "Tensor": {"name": str, "shape": list, "dtype": str, "layout": str, "channels": str,
               "quantization": (dict, type(None))},
    "Affine": {"from_pixels": dict, "to_pixels": dict, "scale": NUMBER, "offset": NUMBER},
    "Agreement": {"psnr_db": NUMBER, "threshold_db": NUMBER},
    "Latency": {"median_ms": NUMBER, "threads": int},
    "Optional": {"domain_names": dict},
}


def test_app_reads_keys_the_exporter_writes(exported_json, catalog):
    keys = kotlin_keys()
    # Every key the app declares is known here (and the other way round): a key added to the
    # app must be added to this contract too.
    assert {o: set(k.values()) for o, k in keys.items()} == \
        {o: set(k) for o, k in EXPECTED.items()}

    def check(obj, group, where, only=None):
        for key in only or EXPECTED[group]:
            assert key in obj, f"{where} has no {key!r} (ModelCatalog.kt Keys.{group})"
            assert isinstance(obj[key], EXPECTED[group][key]), (where, key, obj[key])
            assert not isinstance(obj[key], bool)

    check(exported_json, "Document", "models.json")
    assert exported_json["format"] == kotlin_constant("ModelCatalog.kt", "NAME", "CatalogFormat") \
        == exporter.MODELS_JSON_FORMAT
    assert exported_json["format_version"] == int(
        kotlin_constant("ModelCatalog.kt", "VERSION", "CatalogFormat")) \
        == exporter.MODELS_JSON_VERSION
    dtypes = set(re.findall(r'\w+\("(\w+)", \d, -?\d+, \d+\)',
                            (SOURCES / "ModelCatalog.kt").read_text()))
    assert dtypes == {"float32", "uint8", "int8"}
    for entry in exported_json["models"]:
        where = f"models.json entry {entry['file']}"
        check(entry, "Entry", where)
        assert entry["file"] == f"{entry['model_name']}_{entry['variant']}.tflite"
        assert entry["model_name"] == f"{PREFIX}_{entry['direction']}"
        for side, affine in (("input", "from_pixels"), ("output", "to_pixels")):
            tensor = entry[side]
            check(tensor, "Tensor", f"{where} {side}")
            assert tensor["shape"] == [1, exported_json["size"], exported_json["size"], 3]
            assert tensor["dtype"] in dtypes
            assert (tensor["layout"], tensor["channels"]) == (
                kotlin_constant("ModelCatalog.kt", "LAYOUT", "CatalogFormat"),
                kotlin_constant("ModelCatalog.kt", "CHANNELS", "CatalogFormat"))
            assert (tensor["quantization"] is None) == (tensor["dtype"] == "float32")
            check(tensor, "Affine", f"{where} {side}", only=[affine])
            check(tensor[affine], "Affine", f"{where} {side}.{affine}", only=["scale", "offset"])
        check(entry["agreement"], "Agreement", f"{where} agreement")
        check(entry["latency_ms"], "Latency", f"{where} latency_ms")
    for entry in catalog["models"]:  # the fetched copy has the optional domain names
        check(entry, "Optional", f"fetched {entry['file']}")
        assert set(entry["domain_names"]) == {"A", "B"}
        assert all(isinstance(v, str) for v in entry["domain_names"].values())


def test_tensors_the_app_addresses_exist_with_the_recorded_ranges(export, exported_json):
    from ai_edge_litert.interpreter import Interpreter

    for entry in exported_json["models"]:
        interpreter = Interpreter(model_path=str(export / "tflite" / entry["file"]))
        signature = interpreter.get_signature_list()[entry["signature_key"]]
        assert signature == {"inputs": [entry["input"]["name"]],
                             "outputs": [entry["output"]["name"]]}
        runner = interpreter.get_signature_runner(entry["signature_key"])
        details = {"input": runner.get_input_details()[entry["input"]["name"]],
                   "output": runner.get_output_details()[entry["output"]["name"]]}
        for side, affine in (("input", "from_pixels"), ("output", "to_pixels")):
            spec, detail = entry[side], details[side]
            assert list(detail["shape"]) == spec["shape"]
            assert np.dtype(detail["dtype"]).name == spec["dtype"]
            lo, hi = spec["range"]
            if spec["dtype"] == "float32":
                assert spec["quantization"] is None and (lo, hi) == (0.0, 255.0)
                q_scale, q_zero = 1.0, 0
            else:
                q_scale, q_zero = detail["quantization"]
                assert spec["quantization"] == pytest.approx(
                    {"scale": q_scale, "zero_point": q_zero})
            # real = q_scale * (raw - q_zero) stands for [lo, hi]; pixels are [0, 255]
            per_raw = q_scale * 255.0 / (hi - lo)
            pixel_at_zero = (-q_zero * q_scale - lo) * 255.0 / (hi - lo)
            if side == "output":  # pixel = raw * scale + offset
                assert spec[affine]["scale"] == pytest.approx(per_raw)
                assert spec[affine]["offset"] == pytest.approx(pixel_at_zero, abs=1e-6)
            else:  # raw = pixel * scale + offset
                assert spec[affine]["scale"] == pytest.approx(1.0 / per_raw)
                assert spec[affine]["offset"] == pytest.approx(-pixel_at_zero / per_raw,
                                                               abs=1e-6)
        if entry["variant"] == "int8":
            assert entry["output"]["range"] == [-1.0, 1.0]


# -- the documented preprocessing through each .tflite, against Keras ---------------------

def test_preprocessing_steps():
    rgb = np.arange(8 * 5 * 3, dtype=np.uint8).reshape(5, 8, 3)
    # 8 wide, 5 high: the centre square is columns 1..5; no halving for size 3; 5 -> 3
    pixels = model_pixels(rgb, 3)
    assert pixels.shape == (3, 3, 3) and pixels.dtype == np.float32
    same = model_pixels(rgb[:, 1:6], 5)
    np.testing.assert_array_equal(same, rgb[:, 1:6].astype(np.float32))
    halved = model_pixels(np.full((9, 13, 3), 77, np.uint8), 4)  # 9 -> 4 by halving
    np.testing.assert_array_equal(halved, np.full((4, 4, 3), 77, np.float32))
    assert display(np.array([0.49, 0.5, 254.5, 300], np.float32)).tolist() == [0, 1, 255, 255]


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_documented_preprocessing_reproduces_keras(export, catalog, images, references,
                                                   direction):
    source = "A" if direction == "AtoB" else "B"
    entries = [m for m in catalog["models"] if m["direction"] == direction]
    assert sorted(m["variant"] for m in entries) == sorted(VARIANTS)
    for name, rgb in images.items():
        if not name.startswith(source):
            continue
        pixels = model_pixels(rgb, catalog["size"])
        expected = references[direction](pixels)
        for entry in entries:
            raw = run_tflite(export / "tflite" / entry["file"], entry,
                             to_tensor(pixels, entry["input"]))
            assert raw.dtype.name == entry["output"]["dtype"]
            output = from_tensor(raw, entry["output"])
            threshold = entry["agreement"]["threshold_db"]
            value = checks.psnr(output, expected)
            shown = checks.psnr(display(output).astype(np.float32), expected)
            assert min(value, shown) >= threshold, (entry["file"], name, value, shown)


# -- the app's Kotlin itself, on the JVM --------------------------------------------------

def android_json_jar():
    candidates = [os.environ.get("ANDROID_JSON_JAR", ""),
                  "/usr/share/java/com.android.json.jar", "/usr/share/java/android-json.jar"]
    return next((c for c in candidates if c and Path(c).is_file()), None)


@pytest.fixture(scope="module")
def kotlin_check(tmp_path_factory):
    kotlinc, jar = shutil.which("kotlinc"), android_json_jar()
    if not kotlinc or not jar or not shutil.which("kotlin"):
        pytest.skip("needs kotlinc/kotlin and Android's org.json jar "
                    "(apt-get install kotlin libandroid-json-java)")
    out = tmp_path_factory.mktemp("kotlin") / "check.jar"
    sources = [SOURCES / "ModelCatalog.kt", SOURCES / "Preprocessing.kt",
               APP / "jvm-check" / "ContractCheck.kt"]
    result = subprocess.run([kotlinc, *map(str, sources), "-cp", jar, "-d", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    def run(request: dict) -> dict:
        folder = out.parent
        (folder / "request.json").write_text(json.dumps(request))
        result = subprocess.run(
            ["kotlin", "-cp", f"{out}{os.pathsep}{jar}",
             "dev.tfstyle.demo.check.ContractCheckKt", str(folder / "request.json"),
             str(folder / "response.json")], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads((folder / "response.json").read_text())

    return run


def argb_ints(rgb: np.ndarray) -> list:
    """Bitmap.getPixels' opaque ARGB ints (signed 32-bit) of an RGB image."""
    value = (0xFF << 24) | (rgb[..., 0].astype(np.int64) << 16) \
        | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2].astype(np.int64)
    return [int(v) for v in (value.astype(np.uint32).view(np.int32)).ravel()]


def test_kotlin_code_matches_the_python_contract(kotlin_check, fetched, catalog, export,
                                                  images):
    models_json = fetched[0] / "models.json"
    bad = [
        json.dumps({**catalog, "format_version": 2}),
        json.dumps({**catalog, "models": [{**catalog["models"][0], "input": {
            **catalog["models"][0]["input"], "shape": [1, 16, 16, 3]}}]}),
        json.dumps({**catalog, "models": [{**catalog["models"][0], "input": {
            **catalog["models"][0]["input"], "dtype": "float16"}}]}),
        json.dumps({**catalog, "models": []}),
    ]
    raw_outputs, expected_outputs = [], {}
    pixels = {name: model_pixels(rgb, SIZE) for name, rgb in images.items()}
    for name in ("A_wide", "B_small_tall"):
        for entry in catalog["models"]:
            raw = run_tflite(fetched[0] / entry["file"], entry,
                             to_tensor(pixels[name], entry["input"]))
            raw_outputs.append({"image": name, "file": entry["file"],
                                "values": raw.ravel().tolist()})
            expected_outputs[name, entry["file"]] = from_tensor(raw, entry["output"])
    response = kotlin_check({
        "models_json": str(models_json),
        "catalogs": bad,
        "images": [{"name": n, "width": rgb.shape[1], "height": rgb.shape[0],
                    "argb": argb_ints(rgb)} for n, rgb in images.items()],
        "raw_outputs": raw_outputs,
    })

    assert response["size"] == catalog["size"]
    assert [e["file"] for e in response["entries"]] == [m["file"] for m in catalog["models"]]
    for parsed, entry in zip(response["entries"], catalog["models"]):
        arrow = f"{NAMES[entry['source_domain']]} → {NAMES[entry['target_domain']]}"
        assert parsed["direction_label"] == arrow
        assert parsed["label"] == \
            f"{PREFIX}: {arrow} · {entry['variant']} · {entry['size_bytes'] / 1e6:.2f} MB"
        assert parsed["asset_path"] == f"models/{entry['file']}"
        assert parsed["signature_key"] == entry["signature_key"]
        assert parsed["agreement_psnr_db"] == entry["agreement"]["psnr_db"]
        for side, affine in (("input", "from_pixels"), ("output", "to_pixels")):
            assert parsed[side]["name"] == entry[side]["name"]
            assert parsed[side]["dtype"] == entry[side]["dtype"]
            assert parsed[side]["shape"] == entry[side]["shape"]
            assert parsed[side]["scale"] == pytest.approx(entry[side][affine]["scale"], rel=1e-6)
            assert parsed[side]["offset"] == pytest.approx(entry[side][affine]["offset"],
                                                           abs=1e-6)
    errors = response["catalog_errors"]
    assert "version 2" in errors[0]
    assert "input shape [1, 16, 16, 3] is not [1, 32, 32, 3]" in errors[1]
    assert 'dtype "float16" is not supported' in errors[2]
    assert "lists no models" in errors[3]

    for name in images:
        kotlin = response["images"][name]
        np.testing.assert_allclose(np.array(kotlin["pixels"], np.float32).reshape(SIZE, SIZE, 3),
                                   pixels[name], atol=1e-4, err_msg=name)
        for entry in catalog["models"]:
            expected = to_tensor(pixels[name], entry["input"])
            got = np.array(kotlin["inputs"][entry["file"]]).reshape(expected.shape)
            if entry["input"]["dtype"] == "float32":
                np.testing.assert_allclose(got, expected, atol=1e-4)
            else:
                np.testing.assert_array_equal(got, expected)
    assert len(response["outputs"]) == len(raw_outputs)
    for item in response["outputs"]:
        expected = expected_outputs[item["image"], item["file"]]
        np.testing.assert_allclose(np.array(item["pixels"], np.float32).reshape(expected.shape),
                                   expected, atol=1e-3)
        shown = display(expected).astype(np.int64)
        argb = np.array(item["argb"], np.int64).reshape(expected.shape[:2]) & 0xFFFFFFFF
        np.testing.assert_array_equal(np.stack([(argb >> 16) & 255, (argb >> 8) & 255,
                                                argb & 255], -1), shown)


# -- the hand-written Android project ---------------------------------------------------

def test_android_project_is_consistent():
    kotlin = "\n".join(p.read_text() for p in SOURCES.glob("*.kt"))
    layouts = "\n".join(p.read_text() for p in (RES / "layout").glob("*.xml"))
    strings = set(re.findall(r'<string name="(\w+)"', (RES / "values" / "strings.xml").read_text()))
    ids = set(re.findall(r"@\+id/(\w+)", layouts))
    assert set(re.findall(r"(?<!android\.)R\.id\.(\w+)", kotlin)) <= ids
    assert set(re.findall(r"(?<!android\.)R\.string\.(\w+)", kotlin)) <= strings
    xml = "\n".join(p.read_text() for p in RES.rglob("*.xml")) + \
        (APP / "app" / "src" / "main" / "AndroidManifest.xml").read_text()
    assert set(re.findall(r"@string/(\w+)", xml)) <= strings
    for layout in re.findall(r"(?<!android\.)R\.layout\.(\w+)", kotlin):
        assert (RES / "layout" / f"{layout}.xml").is_file()
    for name in re.findall(r"@xml/(\w+)", xml):
        assert (RES / "xml" / f"{name}.xml").is_file()
    for style in re.findall(r'android:theme="@style/([\w.]+)"', xml):
        assert f'<style name="{style}"' in (RES / "values" / "themes.xml").read_text()

    manifest = (APP / "app" / "src" / "main" / "AndroidManifest.xml").read_text()
    assert 'android:authorities="${applicationId}.fileprovider"' in manifest
    assert 'context.packageName + ".fileprovider"' in (SOURCES / "ImageIO.kt").read_text()
    assert 'android:name=".MainActivity"' in manifest and "class MainActivity" in kotlin
    paths = dict((p, n) for n, p in re.findall(r'<cache-path name="(\w+)" path="(\w+)/"',
                                                (RES / "xml" / "file_paths.xml").read_text()))
    assert set(paths) == {kotlin_constant("ImageIO.kt", "CAMERA_DIR"),
                          kotlin_constant("ImageIO.kt", "SHARE_DIR")}
    assert "android.permission.CAMERA" not in manifest  # TakePicture needs no permission

    versions = (APP / "gradle" / "libs.versions.toml").read_text()
    pinned = dict(re.findall(r'^(\w+) = "([^"]+)"', versions, re.M))
    assert pinned and all(re.fullmatch(r"\d+(\.\d+)*", v) for v in pinned.values())
    assert re.search(r'litert = \{ group = "com.google.ai.edge.litert", name = "litert", '
                     r'version.ref = "litert" \}', versions)
    assert re.search(r'litert-gpu = \{ group = "com.google.ai.edge.litert", name = "litert-gpu", '
                     r'version.ref = "litert" \}', versions)
    build = (APP / "app" / "build.gradle.kts").read_text()
    assert "implementation(libs.litert)" in build and "implementation(libs.litert.gpu)" in build
    assert re.search(r"minSdk = 2[4-9]", build) and re.search(r"compileSdk = 3[5-9]", build)
    assert 'noCompress += "tflite"' in build
    wrapper = (APP / "gradle" / "wrapper" / "gradle-wrapper.properties").read_text()
    assert re.search(r"distributionUrl=https\\://services\.gradle\.org/distributions/"
                     r"gradle-\d+\.\d+(\.\d+)?-bin\.zip", wrapper)
    assert not (APP / "gradle" / "wrapper" / "gradle-wrapper.jar").exists()

    # the assets folder the app reads is the one fetch_models.sh fills, and is not committed
    assert kotlin_constant("ModelCatalog.kt", "ASSET_DIR") == "models"
    assert kotlin_constant("ModelCatalog.kt", "FILE_NAME") == "models.json"
    assert '"app", "src", "main", "assets", "models"' in FETCH.read_text()
    assert "app/src/main/assets/models/" in (APP / ".gitignore").read_text().splitlines()
    assert os.access(FETCH, os.X_OK)
