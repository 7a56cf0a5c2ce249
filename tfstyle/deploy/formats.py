"""Export formats, each behind one small interface: write, then check.

The exporter (tfstyle.deploy.exporter) asks every format for its `candidates(target)` (the
artifacts it makes of one model, and where each goes under OUT), then for each candidate
calls `write(candidate)`, which writes it under the export's work folder, and
`check(candidate)`, which compares it with the Keras model, fills `candidate.entry` for the
records and returns the agreement (PSNR, dB) that the candidate's threshold applies to.
Either may raise `Refused(reason)`. Nothing here writes outside the work folder: the
exporter moves accepted candidates into place once every one is checked.

Adding a format is one subclass of ExportFormat, added to FORMATS.
"""

from __future__ import annotations

import abc
import hashlib
import io
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfstyle.deploy import checks, litert, saved_model
from tfstyle.deploy.checks import ExportError
from tfstyle.deploy.options import ExportOptions
from tfstyle.deploy.targets import Target


class Refused(Exception):
    """A candidate that must not be kept; the message is the reason."""


@dataclass
class Candidate:
    """One artifact of one target: where it is written, where it goes, what is recorded."""

    target: Target
    variant: str                  # "savedmodel", or a LiteRT variant
    artifact: str                 # its path under OUT (serving/NAME/VERSION, tflite/FILE)
    work: Path                    # where it is written and checked
    threshold: float              # minimum PSNR (dB) against the Keras model
    entry: dict = field(default_factory=dict)


def _encode_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


class ExportFormat(abc.ABC):
    """One kind of artifact (see the module docstring)."""

    kind = ""

    def __init__(self, options: ExportOptions, out: Path, work: Path, thresholds: dict):
        self.options, self.out, self.work = options, out, work
        self.thresholds = thresholds  # {"generator" | "stylizer": {variant: dB}}

    @staticmethod
    @abc.abstractmethod
    def wanted(options: ExportOptions) -> bool:
        """Whether the options ask for this format at all."""

    @abc.abstractmethod
    def candidates(self, target: Target) -> list[Candidate]:
        """The artifacts made of `target`; ExportError if one cannot be made (called for
        every target before anything is written)."""

    @abc.abstractmethod
    def write(self, candidate: Candidate) -> None:
        """Write the artifact to candidate.work."""

    @abc.abstractmethod
    def check(self, candidate: Candidate) -> float | None:
        """Compare the written artifact with the Keras model; fill candidate.entry; return
        the PSNR (dB, None when not finite) that candidate.threshold applies to."""

    def _candidate(self, target: Target, variant: str, artifact: str) -> Candidate:
        entry = {"artifact": artifact, "kind": self.kind, "variant": variant,
                 "model_name": target.name, "model_kind": target.kind,
                 "direction": target.direction, "source_domain": target.source_domain,
                 "target_domain": target.target_domain, "path": artifact}
        return Candidate(target, variant, artifact, self.work / artifact,
                         self.thresholds[target.kind][variant], entry)


def serving_check_images(images, policy: saved_model.SizePolicy) -> list[np.ndarray]:
    """The check images brought inside the size policy (so the check compares the model,
    not the downscaling) and trimmed by 1-3 pixels, so the padding to a multiple of 4 and
    the crop back are exercised."""
    from tfstyle.core.images import resize

    out = []
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        fh, fw = policy.fit(h, w)
        if (fh, fw) != (h, w):
            image = resize(image, (fh, fw))
        trim = 1 + i % 3
        th = image.shape[0] - trim if image.shape[0] - trim >= saved_model.MIN_SIDE else \
            image.shape[0]
        tw = image.shape[1] - trim if image.shape[1] - trim >= saved_model.MIN_SIDE else \
            image.shape[1]
        out.append(np.ascontiguousarray(image[:th, :tw]))
    return out


class SavedModelFormat(ExportFormat):
    """A TF Serving SavedModel (serving_default and translate_bytes) per target, as a new
    version directory serving/NAME/VERSION."""

    kind = "savedmodel"

    @staticmethod
    def wanted(options):
        return options.serving

    def candidates(self, target):
        base = self.out / "serving" / target.name
        version = self.options.version or saved_model.next_version(base)
        if (base / str(version)).exists() and not self.options.overwrite:
            raise ExportError(f"{base / str(version)} exists: pass another --version, or "
                              "--overwrite")
        candidate = self._candidate(target, "savedmodel", f"serving/{target.name}/{version}")
        candidate.entry["version"] = version
        return [candidate]

    def write(self, candidate):
        target = candidate.target
        saved_model.write_savedmodel(target.model, candidate.work, target.policy,
                                     per_image=target.per_image)

    def check(self, candidate):
        target, runs = candidate.target, self.options.latency_runs
        loaded = saved_model.LoadedSavedModel(candidate.work)
        images = serving_check_images(target.images, target.policy)
        refs = [target.reference(im) for im in images]
        pixels = checks.agreement([loaded.translate_pixels(im[None])[0] for im in images], refs)
        encoded = loaded.translate_bytes([_encode_png(im) for im in images])
        png = checks.agreement([_decode_png(b) for b in encoded], [np.rint(r) for r in refs])
        values = (pixels["psnr_db"], png["psnr_db"])
        worst = None if None in values else min(values)
        probe = np.asarray(checks.center_square(target.images[0], self.options.tflite_size),
                           np.float32)
        probe_png = _encode_png(probe.astype(np.uint8))
        latency = checks.measure_latency(lambda: loaded.translate_pixels(probe[None]), runs)
        latency_bytes = checks.measure_latency(lambda: loaded.translate_bytes([probe_png]), runs)
        sd, tb = saved_model.SERVING_DEFAULT, saved_model.TRANSLATE_BYTES
        candidate.entry.update({
            "size_bytes": saved_model.directory_size(candidate.work),
            "signatures": {
                sd: {"inputs": {saved_model.IMAGES_INPUT: "float32 [-1, -1, -1, 3] pixels 0..255"},
                     "outputs": {saved_model.IMAGES_OUTPUT:
                                 "float32 [-1, -1, -1, 3] pixels 0..255"}},
                tb: {"inputs": {saved_model.BYTES_INPUT: "string [-1] JPEG/PNG/GIF/BMP"},
                     "outputs": {saved_model.BYTES_OUTPUT: "string [-1] PNG"}}},
            "size_policy": target.policy.as_dict(),
            "agreement": {"reference": "keras", "metric": "psnr_db", "psnr_db": worst,
                          sd: pixels, tb: png, "image_folder": str(target.folder)},
            "latency_ms": {**latency.as_dict(), "signature": sd,
                           "input": f"1x{probe.shape[0]}x{probe.shape[1]}x3"},
            "latency_bytes_ms": {**latency_bytes.as_dict(), "signature": tb},
        })
        return worst


class LiteRTFormat(ExportFormat):
    """LiteRT files at a fixed input size, one per variant: tflite/NAME_VARIANT.tflite."""

    kind = "tflite"

    def __init__(self, *args):
        super().__init__(*args)
        self._target = None        # the target whose intermediates these are
        self._sources: dict = {}   # int8 or not -> its fixed-size SavedModel
        self._calibration = None   # (images, folder) for its int8 variant

    @staticmethod
    def wanted(options):
        return options.tflite != ()

    def candidates(self, target):
        return [self._candidate(target, variant, f"tflite/{target.name}_{variant}.tflite")
                for variant in target.variants]

    def write(self, candidate):
        target, size = candidate.target, self.options.tflite_size
        if target is not self._target:  # the previous target's variants are all done
            for path in self._sources.values():
                shutil.rmtree(path, ignore_errors=True)
            self._target, self._sources, self._calibration = target, {}, None
        quantized = candidate.variant == "int8"
        if quantized not in self._sources:
            self._sources[quantized] = litert.write_fixed_savedmodel(
                target.lite_model, size,
                self.work / "litert" / target.name / ("int8" if quantized else "float"),
                quantized)
        if quantized and self._calibration is None:
            self._calibration = target.calibration(self.options.calibration_images, size)
        calibration = self._calibration[0] if quantized else None
        try:
            content = litert.convert(self._sources[quantized], candidate.variant, calibration)
        except Exception as err:  # noqa: BLE001  (a converter error refuses this variant)
            raise Refused(f"conversion failed: {checks.first_line(err)}") from err
        candidate.work.parent.mkdir(parents=True, exist_ok=True)
        candidate.work.write_bytes(content)

    def check(self, candidate):
        target, opts = candidate.target, self.options
        content = candidate.work.read_bytes()
        facts = litert.inspect(content)
        entry = candidate.entry
        entry.update(file=candidate.work.name, size_bytes=len(content),
                     sha256=hashlib.sha256(content).hexdigest(), ops=list(facts.ops),
                     max_tensor_rank=facts.max_rank)
        if facts.custom_ops:
            raise Refused(f"custom/Flex operators {list(facts.custom_ops)} (builtins only "
                          "allowed)")
        if facts.max_rank > 4:
            raise Refused(f"tensors of rank > 4: {list(facts.high_rank_tensors)[:5]}")
        crops, refs = target.squares(opts.tflite_size)
        threads = opts.num_threads or os.cpu_count()
        try:
            lite = litert.LiteModel(content, candidate.variant, threads)
            outputs = [lite.run(c) for c in crops]
        except (RuntimeError, ValueError) as err:  # the interpreter refuses to run it
            raise Refused(f"the LiteRT interpreter failed to run it: {checks.first_line(err)}") \
                from err
        agreement = checks.agreement(outputs, refs)
        lite.run(crops[0])
        latency = checks.measure_latency(lite.interpreter.invoke, opts.latency_runs)
        entry.update(lite.io_description())
        entry["signature_key"] = litert.SIGNATURE_KEY
        entry["agreement"] = {"reference": "keras", "metric": "psnr_db", **agreement,
                              "image_folder": str(target.folder)}
        entry["latency_ms"] = {**latency.as_dict(), "threads": threads}
        if candidate.variant == "int8":
            images, folder = self._calibration
            entry["calibration"] = {"images": int(len(images)), "folder": str(folder),
                                    "input_range_anchored": [0, 255]}
        return agreement["psnr_db"]


#: Every format, in the order the exporter runs them for each target.
FORMATS = (SavedModelFormat, LiteRTFormat)
