"""What an export makes: `ExportOptions`, settings as data (tfstyle.core.config).

Every field is one flag of `python -m export.generators` (generated with `define_flags`),
with its help, choices and bounds; the values are checked when the options are built, from
flags or from code, and a bad one raises `ConfigError` naming the flag. The list-valued
settings are parsed here too: `--styles` (NAME=PATH or PATH), `--min_psnr` (KIND=dB) and
`--tflite` (variants, `auto` for the default of each kind of model).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from tfstyle.core.config import ConfigError, flag_fields, setting
from tfstyle.core.images import ImageLimits
from tfstyle.deploy import checks, litert, saved_model
from tfstyle.style.stylizer import StylizeOptions

#: --tflite's value for "the default variants of each kind of model".
AUTO = "auto"
#: LiteRT variants of a style-transfer model under `auto`: full int8 quantizes the
#: whitening's matrix products too and is refused by its agreement check (docs/export.md).
STYLIZER_VARIANTS = ("float32", "float16", "dynamic")
DIRECTIONS = tuple(checks.SOURCE_DOMAIN)
OVERSIZE = ("resize", "refuse")


def sanitize(name: str) -> str:
    """Lower case, every run of characters outside [a-z0-9_] turned into one '_'."""
    cleaned = re.sub(r"_+", "_", re.sub(r"[^a-z0-9_]+", "_", name.lower())).strip("_")
    if not cleaned:
        raise ValueError(f"{name!r} has no letters or digits to make a model name from")
    return cleaned


def model_name(prefix: str, direction: str) -> str:
    """TF Serving / file name of one model: <sanitized prefix>_<direction>."""
    return f"{sanitize(prefix)}_{direction}"


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


def parse_min_psnr(items) -> dict[str, float]:
    """Threshold overrides 'KIND=dB' -> {kind: dB}; ValueError naming a bad item."""
    kinds = ", ".join(checks.DEFAULT_MIN_PSNR)
    out = {}
    for item in items:
        kind, sep, value = item.partition("=")
        if not sep or kind not in checks.DEFAULT_MIN_PSNR:
            raise ValueError(f"{item!r} is not KIND=dB with KIND in {kinds}")
        try:
            out[kind] = float(value)
        except ValueError:
            raise ValueError(f"{value!r} in {item!r} is not a number") from None
        if not 0.0 <= out[kind] < math.inf:
            raise ValueError(f"{item!r}: a threshold is a finite number of dB, at least 0")
    return out


@dataclass
class ExportOptions(ImageLimits):
    """What `export_generators` makes; each field is a flag of `python -m export.generators`
    (the image limits of ImageLimits apply to the check, calibration and style images)."""

    name: str = setting("", "Model name prefix (sanitized to [a-z0-9_]); default: the "
                        "model_dir's name. Models are <prefix>_AtoB, <prefix>_BtoA, "
                        "<prefix>_<style>.")
    directions: tuple[str, ...] = setting((), "Generators to export; default: all present.",
                                          choices=DIRECTIONS)
    serving: bool = setting(True, "Write the TF Serving SavedModels.")
    version: int = setting(0, "SavedModel version directory; 0: 1 + the highest existing one.",
                           min=0)
    overwrite: bool = setting(False, "Replace an existing --version.")
    serving_max_side: int = setting(1024, "Longest image side the SavedModel translates at; "
                                    "larger uploads are downscaled or refused "
                                    "(--serving_oversize).", min=saved_model.MIN_SIDE)
    serving_max_pixels: int = setting(0, "Most pixels per image in the SavedModel (0: no "
                                      "limit but the longest side, except a CycleDA "
                                      "generator's attention limit, which always applies).",
                                      min=0)
    serving_oversize: str = setting("resize", "What the SavedModel does with an image over "
                                    "the limits.", choices=OVERSIZE)
    tflite: tuple[str, ...] = setting(
        (AUTO,), "LiteRT variants to write (empty: none); auto: float32, float16, dynamic and "
        "int8 for generators, the first three for style-transfer models.",
        choices=(AUTO, *litert.VARIANTS))
    styles: tuple[str, ...] = setting(
        (), "Style images to bake into style-transfer models, NAME=PATH or PATH (named by its "
        "stem); one model <prefix>_<name> each. Needs an auto-encoder in --model_dir.")
    tflite_size: int = setting(256, "Fixed LiteRT input size S ([1, S, S, 3]); a multiple of "
                               "4.", min=16)
    calibration_images: int = setting(100, "Training images calibrating the int8 variant.",
                                      min=1)
    check_images: int = setting(4, "Test images each artifact is checked on.", min=1)
    dataroot: str = setting("", "Check and calibration images: the training data root "
                            "(trainA/ trainB/ [testA/ testB/]) of generators, default "
                            "info.json's dataroot; a folder of content images for "
                            "style-transfer models, default the auto-encoder's content_dir.")
    min_psnr: tuple[str, ...] = setting(
        (), "Threshold overrides, KIND=dB with KIND in savedmodel, float32, float16, dynamic, "
        "int8 (e.g. int8=22).")
    latency_runs: int = setting(10, "Timed runs per artifact (median and p90 reported).", min=1)
    num_threads: int = setting(0, "LiteRT interpreter threads (0: all cores).", min=0)
    batching: dict | None = setting(None, "TF Serving batching parameters (default "
                                    "saved_model.DEFAULT_BATCHING).", flag=False)
    stylize: StylizeOptions = setting(None, "The stylization baked into style-transfer "
                                      "models.", flag=False, default_factory=StylizeOptions)

    def __post_init__(self):
        # In code, None stands for a setting's default (as it did before settings were data)
        # and lists are taken as tuples.
        for field in flag_fields(type(self)):
            value = getattr(self, field.name)
            if value is None:
                setattr(self, field.name, field.default)
            elif isinstance(value, list):
                setattr(self, field.name, tuple(value))
        if self.stylize is None:
            self.stylize = StylizeOptions()
        super().__post_init__()

    def validate(self):
        super().validate()
        self.need(self.tflite_size % 4 == 0, "tflite_size", "must be a multiple of 4")
        self.need(not self.serving_max_pixels
                  or self.serving_max_pixels >= saved_model.MIN_SIDE ** 2, "serving_max_pixels",
                  f"must be 0 (no limit) or at least {saved_model.MIN_SIDE ** 2}")
        self.need(AUTO not in self.tflite or len(self.tflite) == 1, "tflite",
                  f"{AUTO} stands alone (it means the default variants)")
        self.need(len(set(self.tflite)) == len(self.tflite), "tflite", "a variant is listed twice")
        self.need(len(set(self.directions)) == len(self.directions), "directions",
                  "a direction is listed twice")
        self.need(self.serving or self.tflite != (), "tflite",
                  "nothing to export: --noserving and an empty --tflite")
        for flag, parse in (("name", sanitize), ("styles", parse_styles),
                            ("min_psnr", parse_min_psnr)):
            value = getattr(self, flag)
            if value:
                try:
                    parse(value)
                except ValueError as err:
                    raise ConfigError(f"--{flag}={value!r}: {err}") from None

    def variants(self, kind: str) -> tuple[str, ...]:
        """The LiteRT variants made for a model of `kind` ("generator" or "stylizer")."""
        if self.tflite == (AUTO,):
            return litert.VARIANTS if kind == "generator" else STYLIZER_VARIANTS
        return tuple(self.tflite)

    def thresholds(self, kind: str = "generator") -> dict[str, float]:
        """Minimum PSNR per artifact kind for a model of `kind` ("generator": checks.
        DEFAULT_MIN_PSNR, "stylizer": checks.DEFAULT_MIN_PSNR_STYLIZER), with --min_psnr's
        overrides (which apply to both)."""
        defaults = checks.DEFAULT_MIN_PSNR if kind == "generator" else \
            checks.DEFAULT_MIN_PSNR_STYLIZER
        return {**defaults, **parse_min_psnr(self.min_psnr)}

    def style_specs(self) -> list[tuple[str, str]]:
        """--styles as [(model name suffix, image path)]."""
        return parse_styles(self.styles)

    def prefix(self, model_dir) -> str:
        """The model name prefix: --name, or the model directory's name."""
        return self.name or Path(model_dir).resolve().name
