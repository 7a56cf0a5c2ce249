"""The runs of bench/quality.py: the sizes of each preset and the settings of each run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

PRESETS = {
    "cpu": {"tile": 40, "tiles_across": 5, "ngf": 32, "ndf": 32, "n_blocks": 6,
            "load_size": 40, "crop_size": 32, "epochs": 3, "decay_epochs": 2},
    "gpu": {"tile": 144, "tiles_across": 4, "ngf": 64, "ndf": 64, "n_blocks": 9,
            "load_size": 144, "crop_size": 128, "epochs": 100, "decay_epochs": 100},
}
# Settings the preset owns; a recipe's flagfile keeps the rest.
SIZE_KEYS = ("ngf", "ndf", "n_blocks", "load_size", "crop_size", "epochs", "decay_epochs",
             "dataroot", "model_dir", "num_samples", "max_steps")
# The options alone on top of the official settings, and some combinations.
OPTIONS = {
    "official": {},
    "resize": {"upsample": "resize"},
    "residual": {"residual": True},
    "ttur": {"lr": 1e-4, "lr_d": 4e-4},
    "cut": {"model": "cut"},
    "fastcut": {"model": "cut", "nce_idt": False, "lambda_nce": 10.0},
    "resize+residual": {"upsample": "resize", "residual": True},
    "cut+resize": {"model": "cut", "upsample": "resize"},
    "cut+resize+residual": {"model": "cut", "upsample": "resize", "residual": True},
    "cut+resize+residual+ttur": {"model": "cut", "upsample": "resize", "residual": True,
                                 "lr": 1e-4, "lr_d": 4e-4},
}


def read_flagfile(path, booleans) -> dict:
    """--name=value lines of a flagfile (comments and blank lines skipped) as strings; the
    boolean flags among `booleans` may be written --name or --noname."""
    settings = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line.startswith("--"):
            continue
        name, equals, value = line[2:].partition("=")
        if not equals and name in booleans:
            value = "true"
        elif not equals and name.startswith("no") and name[2:] in booleans:
            name, value = name[2:], "false"
        settings[name] = value
    return settings


def run_settings(name: str, recipe) -> dict:
    """The CycleGANConfig settings of run `name` other than the sizes (the preset's); the
    "recipe" run's are those of the flagfile `recipe`."""
    if name == "reference":
        return {}
    if name == "recipe":
        from tfstyle.cyclegan.trainer import CycleGANConfig
        kinds = {f.name: f.type for f in dataclasses.fields(CycleGANConfig)}
        out = {}
        booleans = {field for field, kind in kinds.items() if kind in ("bool", bool)}
        for key, value in read_flagfile(recipe, booleans).items():
            if key in SIZE_KEYS:
                continue
            if key not in kinds:
                raise ValueError(f"{recipe}: unknown setting --{key}")
            kind = kinds[key]
            out[key] = (value.lower() in ("true", "1") if kind in ("bool", bool) else
                        int(value) if kind in ("int", int) else
                        float(value) if kind in ("float", float) else value)
        return out
    if name not in OPTIONS:
        raise ValueError(f"unknown run {name!r} (reference, recipe, {', '.join(OPTIONS)})")
    return dict(OPTIONS[name])
