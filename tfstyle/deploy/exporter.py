"""`export_generators`: every trained generator of a model directory to TF Serving and LiteRT,
each artifact checked against the Keras generator before it is kept.

Layout written under OUT:

    OUT/serving/<model_name>/<version>/saved_model.pb, variables/   (TF Serving)
    OUT/serving/models.config                                        (--model_config_file)
    OUT/serving/batching_parameters.txt                              (--batching_parameters_file)
    OUT/tflite/<model_name>_<variant>.tflite
    OUT/tflite/models.json                                           (what the apps read)
    OUT/export_report.json                                           (every artifact, refused too)

An artifact whose agreement (PSNR against the Keras generator) is below its threshold, or a
LiteRT file with custom/Flex operators or tensors of rank > 4, is refused: it is deleted (a
file of the same name from an earlier export too), listed under "refused" in models.json and
the report, and `export_generators` raises ExportError naming it once everything else is
written.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from tfstyle.core.files import write_text_atomic
from tfstyle.deploy import checks, litert, saved_model
from tfstyle.deploy.checks import ExportError

if TYPE_CHECKING:
    from tfstyle.style.stylizer import StylizeOptions

#: LiteRT variants of a style-transfer model unless asked otherwise: full int8 quantizes the
#: whitening's matrix products too and is refused by its agreement check (docs/export.md).
STYLIZER_VARIANTS = ("float32", "float16", "dynamic")

MODELS_JSON_FORMAT = "tfstyle.litert_models"
MODELS_JSON_VERSION = 1


def sanitize(name: str) -> str:
    """Lower case, every run of characters outside [a-z0-9_] turned into one '_'."""
    cleaned = re.sub(r"_+", "_", re.sub(r"[^a-z0-9_]+", "_", name.lower())).strip("_")
    if not cleaned:
        raise ValueError(f"{name!r} has no letters or digits to make a model name from")
    return cleaned


def parse_styles(specs) -> list[tuple[str, str]]:
    """Style specs 'NAME=PATH' or 'PATH' (named by the file's stem) -> [(sanitized name,
    path)]; ValueError when a name has nothing to sanitize or two specs share one."""
    out, seen = [], {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec).stem, spec
        clean = sanitize(name)
        if clean in seen:
            raise ValueError(f"{seen[clean]!r} and {spec!r} give the same model name "
                             f"{clean!r}; name them: NAME=PATH")
        seen[clean] = spec
        out.append((clean, path))
    return out


def model_name(prefix: str, direction: str) -> str:
    """TF Serving / file name of one generator: <sanitized prefix>_<direction>."""
    return f"{sanitize(prefix)}_{direction}"


@dataclass
class ExportOptions:
    """What `export_generators` makes; the defaults are `python -m export.generators`'s."""

    name: str | None = None                     # model name prefix; default: model_dir's name
    directions: tuple[str, ...] | None = None   # default: every generator in model_dir
    serving: bool = True
    version: int | None = None                  # default: 1 + the highest existing version
    overwrite: bool = False
    serving_max_side: int = 1024
    serving_max_pixels: int | None = None       # lowered to a DA generator's attention limit
    serving_oversize: str = "resize"
    batching: dict | None = None
    tflite: tuple[str, ...] | None = None       # default: per kind (`variants`)
    tflite_size: int = 256
    calibration_images: int = 100
    check_images: int = 4
    dataroot: str | None = None                 # default: info.json's dataroot
    min_psnr: dict = field(default_factory=dict)  # overrides of checks.DEFAULT_MIN_PSNR
    latency_runs: int = 10
    num_threads: int | None = None              # LiteRT threads; default: all cores
    styles: tuple[str, ...] = ()                # style images to bake in (NAME=PATH or PATH)
    stylize: StylizeOptions | None = None       # the stylization; default StylizeOptions()

    def variants(self, kind: str) -> tuple[str, ...]:
        """The LiteRT variants made for a target of `kind` ("generator" or "stylizer"):
        `tflite`, or when it is None every variant for generators and STYLIZER_VARIANTS for
        stylizers."""
        if self.tflite is not None:
            return tuple(self.tflite)
        return litert.VARIANTS if kind == "generator" else STYLIZER_VARIANTS

    def thresholds(self, kind: str = "generator") -> dict:
        """Minimum PSNR per artifact kind for a target of `kind` ("generator": checks.
        DEFAULT_MIN_PSNR, "stylizer": checks.DEFAULT_MIN_PSNR_STYLIZER), with min_psnr's
        overrides (which apply to both)."""
        unknown = set(self.min_psnr) - set(checks.DEFAULT_MIN_PSNR)
        if unknown:
            raise ValueError(f"min_psnr has unknown artifact kinds {sorted(unknown)}; "
                             f"known: {sorted(checks.DEFAULT_MIN_PSNR)}")
        defaults = checks.DEFAULT_MIN_PSNR if kind == "generator" else \
            checks.DEFAULT_MIN_PSNR_STYLIZER
        return {**defaults, **{k: float(v) for k, v in self.min_psnr.items()}}

    def validate(self) -> None:
        bad = set(self.tflite or ()) - set(litert.VARIANTS)
        if bad:
            raise ValueError(f"unknown TFLite variants {sorted(bad)}; known: {litert.VARIANTS}")
        if self.tflite_size % 4 or self.tflite_size < 16:
            raise ValueError(f"tflite_size must be a multiple of 4 and at least 16, got "
                             f"{self.tflite_size}")
        if self.version is not None and self.version < 1:
            raise ValueError(f"version must be a positive integer, got {self.version}")
        for name, value in (("calibration_images", self.calibration_images),
                            ("check_images", self.check_images),
                            ("latency_runs", self.latency_runs)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        saved_model.SizePolicy(self.serving_max_side, self.serving_max_pixels, self.serving_oversize)
        self.thresholds()
        parse_styles(self.styles)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _encode_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def serving_check_images(images, policy: saved_model.SizePolicy) -> list[np.ndarray]:
    """The evaluation images brought inside the size policy (so the check compares the
    generator, not the downscaling) and trimmed by 1-3 pixels, so the padding to a multiple
    of 4 and the crop back are exercised."""
    from tfstyle.core.images import resize

    out = []
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        fh, fw = policy.fit(h, w)
        if (fh, fw) != (h, w):
            image = resize(image, (fh, fw))
        trim = 1 + i % 3
        th = image.shape[0] - trim if image.shape[0] - trim >= saved_model.MIN_SIDE else image.shape[0]
        tw = image.shape[1] - trim if image.shape[1] - trim >= saved_model.MIN_SIDE else image.shape[1]
        out.append(np.ascontiguousarray(image[:th, :tw]))
    return out


@dataclass
class Target:
    """One exported model: a generator direction, or the auto-encoder with one style.

    `model` has the generators' contract ([B, H, W, 3] in [-1, 1] -> the same) and is the
    reference every artifact is compared with; LiteRT files are converted from `lite_model`
    (the same model, or one that needs only builtin operators)."""

    name: str                     # TF Serving / file name
    kind: str                     # "generator" | "stylizer"
    direction: str                # AtoB, BtoA, or the style's name
    source_domain: str            # A, B, or "content"
    target_domain: str            # B, A, or the style's name
    model: object
    lite_model: object
    images: list                  # check images (RGB uint8)
    folder: Path                  # where they came from
    calibration: Callable         # (n, size) -> (float32 [n, size, size, 3], folder)
    policy: saved_model.SizePolicy
    source: dict                  # what the model was trained as (for the records)
    variants: tuple = ()          # LiteRT variants to make
    per_image: bool = False       # serving_default maps over the batch one image at a time


def _generator_targets(model_dir: Path, options: ExportOptions) -> list[Target]:
    """The CycleGAN generators of MODEL_DIR/generators (none if there are none)."""
    from tfstyle.cyclegan import generators

    info_path = generators.generators_dir(model_dir) / "info.json"
    if not info_path.is_file():
        if options.directions:
            raise ExportError(f"{model_dir} has no generators/ (train with python -m "
                              "train.cyclegan), so --directions has nothing to export")
        return []
    info = generators.load_info(model_dir)
    dataroot = options.dataroot or info.get("dataroot")
    if not dataroot or not Path(dataroot).is_dir():
        raise ExportError(
            f"training data root {dataroot!r} (info.json's dataroot) is not a directory: "
            "pass --dataroot=<folder with trainA/ trainB/ [testA/ testB/]> for the check "
            "and calibration images")
    dataroot = Path(dataroot)
    available = [d for d in generators.DIRECTIONS
                 if (generators.generators_dir(model_dir) / f"{d}.keras").is_file()]
    directions = list(options.directions or available)
    missing = [d for d in directions if d not in available]
    if missing or not directions:
        raise ExportError(f"{model_dir} has no generator for {missing or 'any direction'}"
                          f" (found: {available})")
    variants = options.variants("generator")
    for d in directions:
        domain = checks.SOURCE_DOMAIN[d]
        if not checks.image_folders(dataroot, domain):
            raise ExportError(
                f"{dataroot} has no images in test{domain}/ or train{domain}/ to check "
                f"the {d} generator against (pass --dataroot=<training data root>)")
        if "int8" in variants and not checks.image_folders(dataroot, domain, ("train",)):
            raise ExportError(
                f"{dataroot}/train{domain} holds no images to calibrate the int8 {d} "
                "model (pass --dataroot=<training data root>, or leave int8 out of --tflite)")
    prefix = options.name or model_dir.resolve().name
    keys = ("block", "ngf", "n_blocks", "crop_size", "load_size", "step", "epoch")
    source = {"model_dir": str(model_dir.resolve()), "dataroot": str(dataroot),
              **{k: info[k] for k in keys if k in info}}
    targets = []
    for d in directions:
        generator = generators.load_generator(model_dir, d)
        domain = checks.SOURCE_DOMAIN[d]
        images, folder = checks.evaluation_images(dataroot, domain, options.check_images)
        policy = saved_model.policy_for(generator, options.serving_max_side,
                                    options.serving_max_pixels, options.serving_oversize)
        targets.append(Target(
            name=model_name(prefix, d), kind="generator", direction=d, source_domain=domain,
            target_domain="B" if domain == "A" else "A", model=generator,
            lite_model=generator, images=images, folder=folder,
            calibration=lambda n, size, domain=domain: checks.calibration_images(
                dataroot, domain, n, size),
            policy=policy, source=source, variants=variants,
            per_image=saved_model.attention_pixel_limit(generator) is not None))
    return targets


def _content_folder(model_dir: Path, info: dict, options: ExportOptions) -> Path:
    """Where an auto-encoder's check and calibration images come from: --dataroot, else the
    training's content_dir (the synthetic demo scenes under MODEL_DIR for "synthetic")."""
    folder = options.dataroot or info.get("content_dir")
    if folder == "synthetic":
        folder = model_dir / "synthetic_data"
    if not folder or not Path(folder).is_dir():
        raise ExportError(
            f"content folder {str(folder)!r} (the auto-encoder's content_dir) is not a "
            "directory: pass --dataroot=<folder of content images> for the check and "
            "calibration images")
    return Path(folder)


def _stylizer_targets(model_dir: Path, options: ExportOptions) -> list[Target]:
    """The auto-encoder of MODEL_DIR/autoencoder with each of options.styles baked in (none
    if there is no auto-encoder)."""
    from tfstyle.core.images import ImageError, read_image
    from tfstyle.deploy import style_model
    from tfstyle.style.autoencoder import autoencoder_dir, load_autoencoder
    from tfstyle.style.data import list_content_images
    from tfstyle.style.stylizer import StylizeOptions
    from tfstyle.style.wct import NEWTON_SCHULZ_ITERATIONS

    if not (autoencoder_dir(model_dir) / "info.json").is_file():
        if options.styles:
            raise ExportError(f"{model_dir} has no autoencoder/ (train with python -m "
                              "train.autoencoder), so --styles has nothing to stylize with")
        return []
    if not options.styles:
        raise ExportError(
            f"{autoencoder_dir(model_dir)} holds a style-transfer auto-encoder: pass "
            "--styles=NAME=IMAGE[,...] with the style images to bake into the exported models")
    autoencoder, info = load_autoencoder(model_dir)
    folder = _content_folder(model_dir, info, options)
    paths = list_content_images(folder)
    images, _ = checks.read_some(paths, options.check_images)
    if not images:
        raise ExportError(f"no readable content images in {folder} to check the stylizers "
                          "against (pass --dataroot=<folder of content images>)")

    def calibration(n, size):
        picked, _ = checks.read_some(paths, n)
        return np.stack([checks.center_square(im, size) for im in picked]).astype(
            np.float32), folder

    stylize = options.stylize or StylizeOptions()
    prefix = options.name or model_dir.resolve().name
    keys = ("cut", "attention", "width", "step", "vgg_weights", "crop_size")
    targets = []
    for name, path in parse_styles(options.styles):
        try:
            style = read_image(path)
        except (ImageError, FileNotFoundError) as err:
            raise ExportError(f"--styles: {err}") from err
        reference, lite = style_model.fixed_style_models(autoencoder, style, stylize)
        max_side = min(options.serving_max_side, stylize.max_size)
        limit = reference.pixel_limit(max_side)
        policy = saved_model.SizePolicy(
            max_side=max_side, max_pixels=min(options.serving_max_pixels or limit, limit),
            oversize=options.serving_oversize)
        targets.append(Target(
            name=model_name(prefix, name), kind="stylizer", direction=name,
            source_domain="content", target_domain=name, model=reference, lite_model=lite,
            images=images, folder=folder, calibration=calibration, policy=policy,
            source={"model_dir": str(model_dir.resolve()), "style_image": str(Path(path)),
                    "stylize": dataclasses.asdict(stylize),
                    "litert_whitening": f"newton_schulz x{NEWTON_SCHULZ_ITERATIONS}",
                    **{k: info[k] for k in keys if k in info}},
            variants=options.variants("stylizer"), per_image=True))
    return targets


class _Exporter:
    def __init__(self, model_dir, out_dir, options: ExportOptions, log):
        self.model_dir = Path(model_dir)
        self.out = Path(out_dir)
        self.options = options
        self.log = log
        self.thresholds = {kind: options.thresholds(kind) for kind in ("generator", "stylizer")}
        self.targets = (_generator_targets(self.model_dir, options)
                        + _stylizer_targets(self.model_dir, options))
        if not self.targets:
            raise ExportError(f"{self.model_dir} holds no trained model: neither generators/ "
                              "(python -m train.cyclegan) nor autoencoder/ "
                              "(python -m train.autoencoder)")
        self.versions = {}
        if options.serving:
            for t in self.targets:
                base = self.out / "serving" / t.name
                version = options.version or saved_model.next_version(base)
                if (base / str(version)).exists() and not options.overwrite:
                    raise ExportError(
                        f"{base / str(version)} exists: pass another --version, or --overwrite")
                self.versions[t.name] = version
        self.artifacts: list[dict] = []
        self.size = options.tflite_size

    # -- helpers --------------------------------------------------------------------------
    def _record(self, target: Target, entry: dict, value: float | None, threshold: float,
                reason: str = ""):
        if not reason and value is not None and value < threshold:
            reference = "Keras generator" if target.kind == "generator" else "Keras stylizer"
            reason = f"PSNR {value:.2f} dB against the {reference} is below {threshold:g} dB"
        entry.update(status="refused" if reason else "ok", threshold_db=threshold)
        if reason:
            entry["reason"] = reason
        entry["source"] = target.source
        self.artifacts.append(entry)
        label = entry["artifact"]
        if reason:
            self.log(f"REFUSED {label}: {reason}")
        else:
            self.log(f"ok {label}: PSNR {value:.2f} dB (min {threshold:g} dB)")
        return not reason

    def _entry(self, target: Target, artifact: str, kind: str, variant: str, path) -> dict:
        return {"artifact": artifact, "kind": kind, "variant": variant,
                "model_name": target.name, "model_kind": target.kind,
                "direction": target.direction, "source_domain": target.source_domain,
                "target_domain": target.target_domain,
                "path": str(Path(path).relative_to(self.out))}

    # -- SavedModel -----------------------------------------------------------------------
    def export_serving(self, target: Target, reference):
        name, version = target.name, self.versions[target.name]
        base = self.out / "serving" / name
        base.mkdir(parents=True, exist_ok=True)
        final = base / str(version)
        tmp = base / f".tmp-{version}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        self.log(f"writing SavedModel {name} version {version} ...")
        try:
            self._write_and_check_savedmodel(target, reference, tmp, final)
        finally:
            if tmp.exists():  # refused, or an error on the way: nothing half-written stays
                shutil.rmtree(tmp, ignore_errors=True)

    def _write_and_check_savedmodel(self, target: Target, reference, tmp, final):
        opts = self.options
        version = self.versions[target.name]
        saved_model.write_savedmodel(target.model, tmp, target.policy, per_image=target.per_image)
        loaded = saved_model.LoadedSavedModel(tmp)
        check = serving_check_images(target.images, target.policy)
        refs = [reference(im) for im in check]
        pixels = checks.agreement([loaded.translate_pixels(im[None])[0] for im in check], refs)
        encoded = loaded.translate_bytes([_encode_png(im) for im in check])
        png = checks.agreement([_decode_png(b) for b in encoded], [np.rint(r) for r in refs])
        worst = min(pixels["psnr_db"], png["psnr_db"])
        probe = np.asarray(checks.center_square(target.images[0], self.size), np.float32)
        probe_png = _encode_png(probe.astype(np.uint8))
        latency = checks.measure_latency(lambda: loaded.translate_pixels(probe[None]),
                                         opts.latency_runs)
        latency_bytes = checks.measure_latency(lambda: loaded.translate_bytes([probe_png]),
                                               opts.latency_runs)
        entry = self._entry(target, f"serving/{target.name}/{version}", "savedmodel",
                            "savedmodel", final)
        entry.update({
            "version": version,
            "size_bytes": saved_model.directory_size(tmp),
            "signatures": {
                saved_model.SERVING_DEFAULT: {
                    "inputs": {saved_model.IMAGES_INPUT: "float32 [-1, -1, -1, 3] pixels 0..255"},
                    "outputs": {saved_model.IMAGES_OUTPUT: "float32 [-1, -1, -1, 3] pixels 0..255"}},
                saved_model.TRANSLATE_BYTES: {
                    "inputs": {saved_model.BYTES_INPUT: "string [-1] JPEG/PNG/GIF/BMP"},
                    "outputs": {saved_model.BYTES_OUTPUT: "string [-1] PNG"}}},
            "size_policy": target.policy.as_dict(),
            "agreement": {"reference": "keras", "metric": "psnr_db", "psnr_db": worst,
                          saved_model.SERVING_DEFAULT: pixels, saved_model.TRANSLATE_BYTES: png,
                          "image_folder": str(target.folder)},
            "latency_ms": {**latency.as_dict(), "signature": saved_model.SERVING_DEFAULT,
                           "input": f"1x{probe.shape[0]}x{probe.shape[1]}x3"},
            "latency_bytes_ms": {**latency_bytes.as_dict(),
                                 "signature": saved_model.TRANSLATE_BYTES},
        })
        if self._record(target, entry, worst, self.thresholds[target.kind]["savedmodel"]):
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)

    # -- LiteRT ---------------------------------------------------------------------------
    def export_tflite(self, target: Target, reference):
        opts, size = self.options, self.size
        out = self.out / "tflite"
        out.mkdir(parents=True, exist_ok=True)
        check = [checks.center_square(im, size) for im in target.images]
        refs = list(reference(np.stack(check)))
        work = Path(tempfile.mkdtemp(prefix=".work-", dir=self.out))
        try:
            calibration = calib_folder = None
            if "int8" in target.variants:
                calibration, calib_folder = target.calibration(opts.calibration_images, size)
            saved = {}
            for variant in target.variants:
                quantized = variant == "int8"
                if quantized not in saved:
                    saved[quantized] = litert.write_fixed_savedmodel(
                        target.lite_model, size, work / ("int8" if quantized else "float"),
                        quantized)
                self.log(f"converting {target.name} to LiteRT {variant} at {size}x{size} ...")
                self._one_variant(target, variant, saved[quantized], calibration,
                                  calib_folder, check, refs, out)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _one_variant(self, target: Target, variant, saved_model, calibration, calib_folder,
                     check, refs, out):
        opts = self.options
        path = out / f"{target.name}_{variant}.tflite"
        entry = {**self._entry(target, f"tflite/{path.name}", "tflite", variant, path),
                 "file": path.name}
        threshold = self.thresholds[target.kind][variant]
        try:
            content = litert.convert(saved_model, variant, calibration)
        except Exception as err:  # noqa: BLE001  (a converter error refuses this variant)
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            self._record(target, entry, None, threshold, f"conversion failed: {first}")
            path.unlink(missing_ok=True)
            return
        facts = litert.inspect(content)
        entry.update(size_bytes=len(content), sha256=hashlib.sha256(content).hexdigest(),
                     ops=list(facts.ops), max_tensor_rank=facts.max_rank)
        reason = ""
        if facts.custom_ops:
            reason = f"custom/Flex operators {list(facts.custom_ops)} (builtins only allowed)"
        elif facts.max_rank > 4:
            reason = f"tensors of rank > 4: {list(facts.high_rank_tensors)[:5]}"
        value = None
        if not reason:
            try:
                lite = litert.LiteModel(content, variant, opts.num_threads or os.cpu_count())
                outputs = [lite.run(c) for c in check]
            except (RuntimeError, ValueError) as err:  # the interpreter refuses to run it
                first = str(err).strip().splitlines()[0] if str(err).strip() else \
                    type(err).__name__
                reason = f"the LiteRT interpreter failed to run it: {first}"
        if not reason:
            value_agreement = checks.agreement(outputs, refs)
            value = value_agreement["psnr_db"]
            lite.run(check[0])
            latency = checks.measure_latency(lite.interpreter.invoke, opts.latency_runs)
            entry.update(lite.io_description())
            entry["signature_key"] = litert.SIGNATURE_KEY
            entry["agreement"] = {"reference": "keras", "metric": "psnr_db", **value_agreement,
                                  "image_folder": str(target.folder)}
            entry["latency_ms"] = {**latency.as_dict(),
                                   "threads": opts.num_threads or os.cpu_count()}
            if variant == "int8":
                entry["calibration"] = {"images": int(len(calibration)),
                                        "folder": str(calib_folder),
                                        "input_range_anchored": [0, 255]}
        if self._record(target, entry, value, threshold, reason):
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(content)
            os.replace(tmp, path)
        else:
            path.unlink(missing_ok=True)

    # -- outputs --------------------------------------------------------------------------
    def run(self):
        reference_latency = {}
        for target in self.targets:
            reference = checks.KerasReference(target.model)
            self.log(f"{target.name}: checking against {len(target.images)} images of "
                     f"{target.folder}")
            probe = checks.center_square(target.images[0], self.size).astype(np.float32)
            reference_latency[target.name] = checks.measure_latency(
                lambda: reference(probe[None]), self.options.latency_runs).as_dict()
            if self.options.serving:
                self.export_serving(target, reference)
            if target.variants:
                self.export_tflite(target, reference)
        self.write_serving_files()
        self.write_models_json()
        report = self.write_report(reference_latency)
        self.log(format_table(report))
        refused = [a for a in self.artifacts if a["status"] == "refused"]
        if refused:
            raise ExportError("export refused " + "; ".join(
                f"{a['artifact']} ({a['reason']})" for a in refused))
        return report

    def write_serving_files(self):
        root = self.out / "serving"
        if not root.is_dir():
            return
        names = sorted(p.name for p in root.iterdir() if p.is_dir() and any(
            v.is_dir() and v.name.isdigit() and (v / "saved_model.pb").is_file()
            for v in p.iterdir()))
        if names:
            write_text_atomic(root / "models.config", saved_model.models_config(names))
            write_text_atomic(root / "batching_parameters.txt",
                                      saved_model.batching_parameters(self.options.batching))

    def write_models_json(self):
        entries = [a for a in self.artifacts if a["kind"] == "tflite"]
        if not entries:
            return
        path = self.out / "tflite" / "models.json"
        models = [_models_json_entry(a) for a in entries if a["status"] == "ok"]
        done = {(m["model_name"], m["variant"]) for m in models} | {
            (a["model_name"], a["variant"]) for a in entries}
        if path.is_file():  # keep files of earlier exports at the same size that still exist
            try:
                old = json.loads(path.read_text())
            except ValueError:
                old = {}
            if old.get("size") == self.size:
                models += [m for m in old.get("models", [])
                           if (m.get("model_name"), m.get("variant")) not in done
                           and (path.parent / m.get("file", "")).is_file()]
        document = {
            "format": MODELS_JSON_FORMAT,
            "format_version": MODELS_JSON_VERSION,
            "created_utc": _now(),
            "size": self.size,
            "models": sorted(models, key=lambda m: (m["model_name"], m["variant"])),
            "refused": [{k: a.get(k) for k in ("file", "model_name", "direction", "variant",
                                                "reason", "threshold_db")}
                        | {"psnr_db": a.get("agreement", {}).get("psnr_db")}
                        for a in entries if a["status"] != "ok"],
        }
        write_text_atomic(path, json.dumps(document, indent=2) + "\n")

    def write_report(self, reference_latency) -> dict:
        import tensorflow as tf

        import tfstyle

        path = self.out / "export_report.json"
        artifacts, keras_latency = list(self.artifacts), dict(reference_latency)
        if path.is_file():  # keep what earlier exports of other models into OUT reported
            try:
                old = json.loads(path.read_text())
            except ValueError:
                old = {}
            if old.get("tflite_size") == self.size:
                ours = {t.name for t in self.targets}
                artifacts += [a for a in old.get("artifacts", [])
                              if a.get("model_name") not in ours]
                keras_latency.update({k: v for k, v in old.get("keras_latency_ms", {}).items()
                                      if k not in ours})
        report = {"created_utc": _now(), "tfstyle_version": tfstyle.__version__,
                  "tensorflow_version": tf.__version__, "tflite_size": self.size,
                  "thresholds_db": self.thresholds, "cpu_count": os.cpu_count(),
                  "keras_latency_ms": keras_latency, "artifacts": artifacts}
        write_text_atomic(path, json.dumps(report, indent=2, default=str) + "\n")
        return {**report, "artifacts": self.artifacts, "keras_latency_ms": reference_latency}


def _models_json_entry(artifact: dict) -> dict:
    """One accepted LiteRT file as models.json describes it (keys in a fixed order)."""
    entry = {
        "file": artifact["file"],
        "model_name": artifact["model_name"],
        "kind": artifact["model_kind"],
        "direction": artifact["direction"],
        "source_domain": artifact["source_domain"],
        "target_domain": artifact["target_domain"],
        "variant": artifact["variant"],
        "size_bytes": artifact["size_bytes"],
        "sha256": artifact["sha256"],
        "signature_key": artifact["signature_key"],
        "input": artifact["input"],
        "output": artifact["output"],
        "agreement": {**artifact["agreement"], "threshold_db": artifact["threshold_db"]},
        "latency_ms": artifact["latency_ms"],
        "ops": artifact["ops"],
        "max_tensor_rank": artifact["max_tensor_rank"],
        "source": artifact["source"],
    }
    if "calibration" in artifact:
        entry["calibration"] = artifact["calibration"]
    return entry


def format_table(report: dict) -> str:
    """Markdown table of an export report: size, agreement and CPU latency per artifact."""
    rows = ["| artifact | size (MB) | PSNR vs Keras (dB) | min (dB) "
            "| CPU latency median / p90 (ms) | status |",
            "|---|---:|---:|---:|---:|---|"]
    for name, lat in report.get("keras_latency_ms", {}).items():
        rows.append(f"| keras {name} (reference) | | | | "
                    f"{lat['median_ms']:.1f} / {lat['p90_ms']:.1f} | |")
    for a in report["artifacts"]:
        size = f"{a['size_bytes'] / 1e6:.2f}" if a.get("size_bytes") else ""
        value = a.get("agreement", {}).get("psnr_db")
        lat = a.get("latency_ms")
        latency = f"{lat['median_ms']:.1f} / {lat['p90_ms']:.1f}" if lat else ""
        rows.append(f"| {a['artifact']} | {size} | {'' if value is None else f'{value:.2f}'} | "
                    f"{a['threshold_db']:g} | {latency} | {a['status']} |")
        if a.get("latency_bytes_ms"):
            lb = a["latency_bytes_ms"]
            rows.append(f"| {a['artifact']} translate_bytes | | | | "
                        f"{lb['median_ms']:.1f} / {lb['p90_ms']:.1f} | |")
    return "\n".join(rows)


def export_generators(model_dir, out_dir, options: ExportOptions | None = None,
                      log=print) -> dict:
    """Export every generator of `model_dir` under `out_dir` (layout in the module docstring)
    and return the report; raises ExportError if any artifact was refused (after writing the
    accepted ones and the report)."""
    options = options or ExportOptions()
    options.validate()
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return _Exporter(model_dir, out_dir, options, log).run()
