"""Settings as data: every setting is one dataclass field that carries its help text,
choices and bounds. The absl flags of the command-line tools are generated from the fields,
and the values are checked in one place, whether they come from flags or from code.

    @dataclass
    class RunConfig(Config):
        model_dir: str = setting("", "Folder for checkpoints and outputs.", required=True)
        lr: float = setting(2e-4, "Adam learning rate.", above=0)
        block: str = setting("resnet", "Residual block.", choices=("resnet", "se", "da"))

        def validate(self):          # rules between fields, after the per-field checks
            self.need(self.crop_size <= self.load_size, "crop_size", "must not exceed ...")

    define_flags(RunConfig)              # --model_dir, --lr, --block with help, enum, bounds
    config, text = from_flags(RunConfig)  # app.UsageError naming the flag on a bad value

A bad value raises `ConfigError` (a ValueError) whose message starts with the flag:
`--lr=0.0: must be greater than 0`.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Any

_NO_DEFAULT = object()


class ConfigError(ValueError):
    """A setting with a value it may not have; the message names the flag."""


def setting(default: Any, help: str, *, choices=None, min=None, max=None, above=None,
            below=None, required: bool | str = False, flag: bool = True, finite: bool = True,
            default_factory=None):
    """A dataclass field with its help text, allowed `choices`, inclusive bounds `min` and
    `max`, exclusive bounds `above` and `below`, `required` (must not be empty; a string is
    the message that says what to give) and whether it becomes a command-line flag. Numbers
    must be finite unless `finite=False`."""
    # `choices` is read when checked, so a registry (a dict) admits what is registered later.
    meta = dict(help=help, choices=choices, min=min,
                max=max, above=above, below=below, required=required, flag=flag, finite=finite)
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _kind(field: dataclasses.Field) -> str:
    """'bool', 'int', 'float', 'str' or 'list', from the field's annotation."""
    t = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    t = t.replace(" ", "")
    for kind in ("bool", "int", "float", "str"):
        if t == kind:
            return kind
    if t.startswith(("tuple", "list", "Sequence")):
        return "list"
    raise TypeError(f"setting {field.name} has a type ({field.type}) that flags cannot carry")


def check_field(config, field: dataclasses.Field) -> None:
    """Check one field's value against its metadata; ConfigError naming the flag."""
    meta, name = field.metadata, field.name
    value = getattr(config, name)

    def fail(message):
        raise ConfigError(f"--{name}={value!r}: {message}")

    required = meta.get("required")
    if required and value in ("", None, (), []):
        fail(required if isinstance(required, str) else "is required")
    if value in (None, ""):
        return
    if isinstance(value, float) and meta.get("finite", True) and not math.isfinite(value):
        fail("must be a finite number")
    choices = meta.get("choices")
    items = value if isinstance(value, (list, tuple)) else [value]
    if choices is not None:
        choices = tuple(choices)
        bad = [v for v in items if v not in choices]
        if bad:
            fail(f"must be one of {', '.join(map(str, choices))}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if meta.get("min") is not None and value < meta["min"]:
            fail(f"must be at least {meta['min']}")
        if meta.get("max") is not None and value > meta["max"]:
            fail(f"must be at most {meta['max']}")
        if meta.get("above") is not None and not value > meta["above"]:
            fail(f"must be greater than {meta['above']}")
        if meta.get("below") is not None and not value < meta["below"]:
            fail(f"must be less than {meta['below']}")


class Config:
    """Base of the settings dataclasses: per-field checks from the metadata, then the
    class's own `validate()` for rules between fields."""

    def __post_init__(self):
        for field in dataclasses.fields(self):
            if field.metadata:
                check_field(self, field)
        self.validate()

    def validate(self) -> None:
        """Rules that involve several fields; raise with `self.need(...)`."""

    def need(self, ok, name: str, message: str) -> None:
        if not ok:
            raise ConfigError(f"--{name}={getattr(self, name)!r}: {message}")

    def replace(self, **changes):
        """A copy with `changes`, checked again."""
        return dataclasses.replace(self, **changes)


def flag_fields(config_cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(config_cls) if f.metadata.get("flag", False)]


def define_flags(config_cls, flag_values=None, *, skip=()) -> None:
    """Define one absl flag per flag field of `config_cls` (same name, the field's default,
    help, enum choices and bounds). Required fields have no default and are marked
    required, so absl names them when they are missing."""
    from absl import flags
    fv = flag_values if flag_values is not None else flags.FLAGS
    # The flags belong to the calling entry point, so that its --help lists them.
    caller = sys._getframe(1).f_globals.get("__name__", "")
    module = sys.argv[0] if caller == "__main__" else caller
    for field in flag_fields(config_cls):
        if field.name in skip:
            continue
        meta, kind = field.metadata, _kind(field)
        default = field.default
        if default is dataclasses.MISSING:
            default = field.default_factory()  # type: ignore[misc]
        help_text = meta["help"]
        if meta.get("required"):
            default = None
        if kind == "bool":
            flags.DEFINE_boolean(field.name, default, help_text, flag_values=fv,
                                 module_name=module)
        elif kind == "list":  # comma-separated; choices are checked with the other settings
            if meta.get("choices") is not None:
                help_text += f" (comma-separated, of: {', '.join(map(str, meta['choices']))})"
            flags.DEFINE_list(field.name, list(default or []), help_text, flag_values=fv,
                              module_name=module)
        elif kind == "str" and meta.get("choices") is not None:
            flags.DEFINE_enum(field.name, default, list(meta["choices"]), help_text,
                              flag_values=fv, module_name=module)
        elif kind == "str":
            flags.DEFINE_string(field.name, default, help_text, flag_values=fv,
                                module_name=module)
        else:
            define = flags.DEFINE_integer if kind == "int" else flags.DEFINE_float
            define(field.name, default, help_text, flag_values=fv, module_name=module)
        if meta.get("required"):
            flags.mark_flag_as_required(field.name, flag_values=fv)


def from_flags(config_cls, flag_values=None, **overrides):
    """(config, flagfile text): `config_cls` built from the flags of the same names (plus
    `overrides` for fields that are not flags); a bad value stops with an absl UsageError
    naming the flag. The text holds every flag field as a flagfile line."""
    from absl import app, flags
    fv = flag_values if flag_values is not None else flags.FLAGS
    values = {}
    for field in flag_fields(config_cls):
        if field.name not in fv:
            continue
        value = fv[field.name].value
        if _kind(field) == "list":
            value = tuple(value or ())
        if value is None and not field.metadata.get("required"):
            continue
        values[field.name] = "" if value is None else value
    try:
        config = config_cls(**{**values, **overrides})
    except ValueError as err:
        raise app.UsageError(str(err)) from err
    return config, flagfile_text(config)


def flagfile_text(config) -> str:
    """The flag fields of `config` as flagfile lines (`--name=value`), for run records."""
    lines = []
    for field in flag_fields(type(config)):
        value = getattr(config, field.name)
        if isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        lines.append(f"--{field.name}={value}\n")
    return "".join(lines)


def run_job(argv, config_cls, job, errors=()):
    """What an entry point's main does before printing its summary: refuse positional
    arguments, build `config_cls` from the flags (see from_flags), and return `(config,
    job(config, flags_text))`. An exception of the types in `errors` (the user's mistakes:
    data, files, settings) becomes one line `error: ...` on stderr and exit status 2."""
    from absl import app
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config, flags_text = from_flags(config_cls)
    try:
        return config, job(config, flags_text)
    except tuple(errors) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
