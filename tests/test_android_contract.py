"""The Android demo app (android_demo/) against what `python -m export.generators` writes.

This machine cannot build the app (no Android SDK), so the test checks what can be checked here:

- fetch_models.sh copies an export's LiteRT files and models.json into the app's assets;
- every JSON key the app reads (ModelCatalog.kt `Keys`) is in the exporter's models.json with
  the expected type, and the tensors the app addresses by name exist in each .tflite as recorded;
- the app's Kotlin (all but the activity) is compiled once on the JVM with the fakes of
  android_demo/jvm-check/fakes (Debian's kotlinc 1.3 and jars, which .ci/run installs; without
  them these tests skip, and fail in CI): ModelCatalog.kt reads the fetched models.json;
  Orientation.kt and Preprocessing.kt, on real image files, give pixel for pixel the upright
  image, model pixels and tensors of the Python pipeline the export's agreement with Keras was
  measured on (read_image, checks.center_square, the models.json affine); and the JUnit tests
  of jvm-check/tests (Translator, MainViewModel, ImageIO) and app/src/test pass;
- the project is consistent: resources, FileProvider paths, and the pinned dependencies
  against android_demo/gradle/verified-coordinates.txt.

One module-scoped export of two tiny generators at 32x32, all four variants, no SavedModel.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
from PIL import Image

from tfstyle.core import synthetic
from tfstyle.core.images import read_image
from tfstyle.cyclegan.generators import save_generators
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


#: EXIF orientation tag (0x0112) and the values the photo files carry besides "normal" (1).
ORIENTATION = 0x0112
EXIF_TAGS = range(2, 9)


def textured(image: np.ndarray, size: tuple[int, int], seed: int) -> np.ndarray:
    """`image` resized (bicubic) to (width, height) with per-pixel noise: photo-like detail."""
    rng = np.random.default_rng(seed)
    base = np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC), np.int16)
    return np.clip(base + rng.integers(-40, 41, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory, dataroot):
    """Real image files in shapes that take every branch of the pipeline: the 40x40 test
    images (reduced to 32), a 150x100 JPEG (reduced to 48x32 and cropped), a 30x45 PNG
    (enlarged to 32x48 and cropped), 65x64 (65 * 0.5 = 32.5 rounds to even: 32x32), a 301x203
    JPEG (a 6x reduction), and a 45x30 JPEG for each EXIF orientation tag 2..8."""
    folder = tmp_path_factory.mktemp("photos")
    files = {}
    for domain in "AB":
        first, second = sorted((dataroot / f"test{domain}").iterdir())[:2]
        files[f"{domain}_square"] = first
        base = read_image(second)
        for name, size, suffix in (("wide", (150, 100), ".jpg"), ("small_tall", (30, 45), ".png"),
                                   ("tie", (65, 64), ".png"), ("large", (301, 203), ".jpg")):
            path = folder / f"{domain}_{name}{suffix}"
            Image.fromarray(textured(base, size, len(files))).save(path, quality=90)
            files[f"{domain}_{name}"] = path
    stored = textured(read_image(files["A_square"]), (45, 30), 99)
    for tag in EXIF_TAGS:
        exif = Image.Exif()
        exif[ORIENTATION] = tag
        path = folder / f"exif_{tag}.jpg"
        Image.fromarray(stored).save(path, exif=exif, quality=90)
        files[f"exif_{tag}"] = path
    return files


def stored_pixels(path: Path) -> tuple[np.ndarray, int]:
    """The pixels as stored in the file (no EXIF rotation) and its EXIF orientation tag."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")), int(image.getexif().get(ORIENTATION, 1))


# -- the Python pipeline the export was checked with, from pixels to tensors and back ------

F32 = np.float32


def to_tensor(pixels: np.ndarray, spec: dict) -> np.ndarray:
    """models.json "input": the tensor tfstyle.deploy.litert.LiteModel.run feeds a .tflite
    (value = pixel * scale + offset in float32; rounded half to even and clipped for an
    integer tensor)."""
    affine = spec["from_pixels"]
    value = np.asarray(pixels, F32) * F32(affine["scale"]) + F32(affine["offset"])
    if spec["dtype"] == "float32":
        return value
    info = np.iinfo(spec["dtype"])
    return np.clip(np.rint(value), info.min, info.max).astype(spec["dtype"])


def from_tensor(raw: np.ndarray, spec: dict) -> np.ndarray:
    """models.json "output": LiteModel.run's float pixels in [0, 255]."""
    affine = spec["to_pixels"]
    return np.clip(raw.astype(F32) * F32(affine["scale"]) + F32(affine["offset"]), 0, 255)


def display(pixels: np.ndarray) -> np.ndarray:
    """What is shown and saved: tfstyle.core.images.write_image's rounding (half to even)."""
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


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
    match = re.search(rf"const val {name} = (\"[^\"]*\"|[\d.]+)", text)
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


# -- the app's Kotlin on the JVM -------------------------------------------------------------

#: The Debian packages the JVM check needs (.ci/run installs them) and the jars it uses.
DEBIAN_PACKAGES = ("kotlin", "libandroid-json-java", "libkotlinx-coroutines-java",
                   "libkotlinx-atomicfu-java", "junit4")
JAVA_DIR = Path("/usr/share/java")
JARS = ("kotlin-stdlib.jar", "com.android.json.jar", "kotlinx-coroutines-core.jar", "atomicfu.jar",
        "junit4.jar", "hamcrest-core.jar")
#: The JUnit classes of android_demo/jvm-check/tests and app/src/test.
JUNIT_CLASSES = sorted(p.stem for folder in (APP / "jvm-check", APP / "app" / "src" / "test")
                       for p in folder.rglob("*Test.kt"))


def jvm_toolchain() -> tuple[str, str, list[Path]]:
    """kotlinc, java and the jars of the JVM check. Where one is missing the JVM tests are
    skipped, except in CI (CI set), where they fail: CI must run them."""
    tools = {name: shutil.which(name) for name in ("kotlinc", "java")}
    jars = [JAVA_DIR / jar for jar in JARS]
    missing = [name for name, path in tools.items() if not path]
    missing += [str(jar) for jar in jars if not jar.is_file()]
    if missing:
        message = (f"the Android demo's JVM check needs {', '.join(missing)}: "
                   f"apt-get install {' '.join(DEBIAN_PACKAGES)} (as .ci/run does)")
        in_ci = os.environ.get("CI", "").lower() not in ("", "0", "false")
        (pytest.fail if in_ci else pytest.skip)(message)
    return tools["kotlinc"], tools["java"], jars


def kotlin_string(text: str) -> str:
    for raw, escaped in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("$", "\\$")):
        text = text.replace(raw, escaped)
    return f'"{text}"'


def generated_resources(folder: Path) -> list[Path]:
    """R.kt (the R.string ids, as the Android build generates them) and the fakes' table of
    the strings, from res/values/strings.xml (Android's \\n, \\' and \\" escapes resolved)."""
    root = ElementTree.parse(RES / "values" / "strings.xml").getroot()
    names = [(e.get("name"), re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1),
                                    e.text or "")) for e in root.findall("string")]
    ids = "".join(f"        const val {n} = {0x7F0E0000 + i}\n" for i, (n, _) in enumerate(names))
    table = ",\n".join(f"    R.string.{n} to {kotlin_string(t)}" for n, t in names)
    (folder / "R.kt").write_text(
        f"package dev.tfstyle.demo\n\nobject R {{\n    object string {{\n{ids}    }}\n}}\n")
    (folder / "Strings.kt").write_text(
        "package tfstyle.fake\n\nimport dev.tfstyle.demo.R\n\n"
        f"val APP_STRINGS: Map<Int, String> = mapOf(\n{table}\n)\n")
    return [folder / "R.kt", folder / "Strings.kt"]


@pytest.fixture(scope="module")
def jvm(tmp_path_factory):
    """Everything but the activity, the fakes, the JVM tests and ContractCheck.kt, compiled
    once (kotlinc 1.3 is slow to start); returns a function running `java -cp ... ARGS`."""
    kotlinc, java, jars = jvm_toolchain()
    folder = tmp_path_factory.mktemp("kotlin")
    sources = sorted(p for p in SOURCES.glob("*.kt") if p.name != "MainActivity.kt")
    sources += sorted((APP / "jvm-check").rglob("*.kt"))
    sources += sorted((APP / "app" / "src" / "test").rglob("*.kt"))
    sources += generated_resources(folder)
    out = folder / "check.jar"
    classpath = os.pathsep.join(map(str, jars))
    # the client compiler alone and a serial GC: a third of the CPU time of kotlinc's defaults
    fast = ["-Xmx1g", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
    result = subprocess.run([kotlinc, "-nowarn", *map(str, sources), "-cp", classpath,
                             "-d", str(out)], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "JAVA_OPTS": " ".join(fast)})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([java, *fast, "-cp", f"{out}{os.pathsep}{classpath}", *args],
                              capture_output=True, text=True, timeout=300)

    return run


def test_ci_installs_what_the_kotlin_check_needs():
    script = (REPO / ".ci" / "run").read_text()
    packages = re.search(r'^KOTLIN_CHECK_PACKAGES="([^"]+)"$', script, re.M)
    assert packages and tuple(packages.group(1).split()) == DEBIAN_PACKAGES
    install = script.index("apt-get install -y -qq $KOTLIN_CHECK_PACKAGES")
    assert install < script.index("python -m pytest")


def test_a_missing_kotlin_toolchain_fails_in_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="needs kotlinc, java.*apt-get install kotlin"):
        jvm_toolchain()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        jvm_toolchain()


@pytest.mark.parametrize("test_class", JUNIT_CLASSES)
def test_kotlin_unit_tests(jvm, test_class):
    result = jvm("org.junit.runner.JUnitCore", f"dev.tfstyle.demo.{test_class}")
    assert result.returncode == 0 and "\nOK (" in result.stdout, \
        result.stdout[-8000:] + result.stderr[-2000:]


def argb_ints(rgb: np.ndarray) -> list:
    """Bitmap.getPixels' opaque ARGB ints (signed 32-bit) of an RGB image."""
    value = (0xFF << 24) | (rgb[..., 0].astype(np.int64) << 16) \
        | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2].astype(np.int64)
    return [int(v) for v in (value.astype(np.uint32).view(np.int32)).ravel()]


def rgb_of(argb: list, width: int, height: int) -> np.ndarray:
    value = np.array(argb, np.int64).reshape(height, width) & 0xFFFFFFFF
    return np.stack([(value >> 16) & 255, (value >> 8) & 255, value & 255], -1).astype(np.uint8)


#: Photos whose raw .tflite outputs are turned back into pixels by the Kotlin and the Python
OUTPUT_PHOTOS = ("A_wide", "exif_6")


@pytest.fixture(scope="module")
def kotlin_contract(jvm, fetched, catalog, photo_files, tmp_path_factory):
    """One run of jvm-check/ContractCheck.kt on the fetched models.json, bad catalogs, the
    photo files as stored and raw .tflite outputs; returns its response."""
    bad = [
        json.dumps({**catalog, "format_version": 2}),
        json.dumps({**catalog, "models": [{**catalog["models"][0], "input": {
            **catalog["models"][0]["input"], "shape": [1, 16, 16, 3]}}]}),
        json.dumps({**catalog, "models": [{**catalog["models"][0], "input": {
            **catalog["models"][0]["input"], "dtype": "float16"}}]}),
        json.dumps({**catalog, "models": []}),
    ]
    images, raw_outputs = [], []
    for name, path in photo_files.items():
        stored, tag = stored_pixels(path)
        images.append({"name": name, "width": stored.shape[1], "height": stored.shape[0],
                       "orientation": tag, "argb": argb_ints(stored)})
    for name in OUTPUT_PHOTOS:
        pixels = checks.center_square(read_image(photo_files[name]), catalog["size"])
        for entry in catalog["models"]:
            raw = run_tflite(fetched[0] / entry["file"], entry, to_tensor(pixels, entry["input"]))
            raw_outputs.append({"image": name, "file": entry["file"],
                                "values": raw.ravel().tolist()})
    folder = tmp_path_factory.mktemp("contract")
    request, response = folder / "request.json", folder / "response.json"
    request.write_text(json.dumps({"models_json": str(fetched[0] / "models.json"),
                                   "catalogs": bad, "images": images,
                                   "raw_outputs": raw_outputs}))
    result = jvm("dev.tfstyle.demo.check.ContractCheckKt", str(request), str(response))
    assert result.returncode == 0, result.stderr[-3000:]
    return {"response": json.loads(response.read_text()), "raw_outputs": raw_outputs}


def test_kotlin_reads_the_fetched_catalog_and_refuses_bad_ones(kotlin_contract, catalog):
    response = kotlin_contract["response"]
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


def test_kotlin_preprocessing_is_the_python_pipeline_pixel_for_pixel(kotlin_contract, catalog,
                                                                     photo_files):
    results = kotlin_contract["response"]["images"]
    assert {stored_pixels(p)[1] for p in photo_files.values()} == {1, *EXIF_TAGS}
    for name, path in photo_files.items():
        kotlin = results[name]
        upright = read_image(path)  # EXIF orientation applied, as the app's decoding does
        np.testing.assert_array_equal(rgb_of(kotlin["upright"], kotlin["width"],
                                             kotlin["height"]), upright, err_msg=name)
        pixels = checks.center_square(upright, catalog["size"])
        np.testing.assert_array_equal(
            np.array(kotlin["pixels"], F32).reshape(pixels.shape), pixels, err_msg=name)
        for entry in catalog["models"]:
            expected = to_tensor(pixels, entry["input"])
            got = np.array(kotlin["inputs"][entry["file"]], expected.dtype)
            np.testing.assert_array_equal(got.reshape(expected.shape), expected,
                                          err_msg=f"{name} {entry['file']}")


def test_kotlin_turns_the_tflite_outputs_into_the_python_pixels(kotlin_contract, catalog):
    outputs = kotlin_contract["response"]["outputs"]
    entries = {m["file"]: m for m in catalog["models"]}
    assert len(outputs) == len(kotlin_contract["raw_outputs"]) == \
        len(OUTPUT_PHOTOS) * len(catalog["models"])
    for item, raw in zip(outputs, kotlin_contract["raw_outputs"]):
        assert (item["image"], item["file"]) == (raw["image"], raw["file"])
        entry = entries[item["file"]]
        size = catalog["size"]
        values = np.array(raw["values"], entry["output"]["dtype"]).reshape(size, size, 3)
        expected = from_tensor(values, entry["output"])
        np.testing.assert_array_equal(np.array(item["pixels"], F32).reshape(expected.shape),
                                      expected)
        np.testing.assert_array_equal(rgb_of(item["argb"], size, size), display(expected))


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

    assert float(kotlin_constant("Translator.kt", "GPU_MIN_PSNR_DB")) == \
        checks.DEFAULT_MIN_PSNR["float16"]
    build = (APP / "app" / "build.gradle.kts").read_text()
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


def test_dependencies_are_the_published_coordinates_kept_in_the_repo():
    catalogue = tomllib.loads((APP / "gradle" / "libs.versions.toml").read_text())
    pins = catalogue["versions"]
    assert all(re.fullmatch(r"\d+(\.\d+)*", v) for v in pins.values())  # no '+', no ranges
    assert set(catalogue) == {"versions", "libraries", "plugins"}
    coordinates = {f"{lib['group']}:{lib['name']}:{pins[lib['version']['ref']]}"
                   for lib in catalogue["libraries"].values()}
    coordinates |= {f"plugin:{plugin['id']}:{pins[plugin['version']['ref']]}"
                    for plugin in catalogue["plugins"].values()}
    wrapper = (APP / "gradle" / "wrapper" / "gradle-wrapper.properties").read_text()
    coordinates.add("gradle:" + re.search(r"gradle-([\d.]+)-bin\.zip", wrapper).group(1))
    listed = {}
    for line in (APP / "gradle" / "verified-coordinates.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            coordinate, _, evidence = line.partition(" ")
            assert evidence.strip(), f"{coordinate} has no record of where it is published"
            listed[coordinate] = evidence.strip()
    assert coordinates == set(listed)
    # LiteRT is the one artifact, which carries its GPU accelerator (no litert-gpu)
    assert {c.rsplit(":", 1)[0] for c in coordinates if ".litert:" in c} == \
        {"com.google.ai.edge.litert:litert"}

    # the build files take every library and plugin from the catalogue, and nothing else
    build = (APP / "app" / "build.gradle.kts").read_text()
    builds = build + (APP / "build.gradle.kts").read_text() + \
        (APP / "settings.gradle.kts").read_text()
    assert not re.search(r'"[\w.-]+:[\w.-]+:[\w.-]+"', builds)  # no inline coordinates
    used = set(re.findall(r"^\s*\w*[iI]mplementation\(libs\.([\w.]+)\)", build, re.M))
    assert used == {alias.replace("-", ".") for alias in catalogue["libraries"]}
    plugins = set(re.findall(r"alias\(libs\.plugins\.([\w.]+)\)", builds))
    assert plugins == {alias.replace("-", ".") for alias in catalogue["plugins"]}
