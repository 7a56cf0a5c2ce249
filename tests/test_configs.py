"""Every flagfile in configs/ parses into its trainer's settings (flags generated from the
settings dataclasses), and the settings machinery checks values and names the flag."""

from dataclasses import dataclass
from pathlib import Path

import pytest
from absl import flags

from tfstyle.core.config import Config, ConfigError, define_flags, from_flags, setting
from tfstyle.cyclegan.trainer import CycleGANConfig
from tfstyle.style.trainer import AutoencoderConfig

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.flags"))


def settings_class(path):
    """The settings of the trainer a flagfile is for: the one its comment runs it with
    (`python -m train.X --flagfile=configs/NAME`), else train.cyclegan."""
    import re
    found = re.search(r"python -m train\.(\w+) --flagfile=configs/" + re.escape(path.name),
                      path.read_text())
    trainer = found.group(1) if found else "cyclegan"
    if trainer == "autoencoder":
        return AutoencoderConfig
    if trainer == "distill":
        from tfstyle.cyclegan.distill import DistillConfig
        return DistillConfig
    assert trainer == "cyclegan", f"{path.name}: unknown trainer {trainer}"
    return CycleGANConfig


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_flagfile_parses_into_its_settings(path):
    fv = flags.FlagValues()
    cls = settings_class(path)
    define_flags(cls, fv)
    fv(["prog", f"--flagfile={path}"])
    config, text = from_flags(cls, fv)
    assert isinstance(config, cls)
    assert f"--model_dir={config.model_dir}\n" in text


@dataclass
class Example(Config):
    name: str = setting("", "A name.", required="give a name")
    rate: float = setting(0.5, "A rate.", above=0, max=1)
    kind: str = setting("a", "A kind.", choices=("a", "b"))
    count: int = setting(1, "A count.", min=0)
    tags: tuple = setting((), "Tags.", choices=("x", "y"))

    def validate(self):
        self.need(self.count != 3, "count", "must not be 3")


@pytest.mark.parametrize("changes, message", [
    (dict(name=""), "--name='': give a name"),
    (dict(rate=0.0), "--rate=0.0: must be greater than 0"),
    (dict(rate=float("nan")), "--rate=nan: must be a finite number"),
    (dict(rate=2.0), "--rate=2.0: must be at most 1"),
    (dict(kind="c"), "--kind='c': must be one of a, b"),
    (dict(count=-1), "--count=-1: must be at least 0"),
    (dict(count=3), "--count=3: must not be 3"),
    (dict(tags=("x", "z")), "must be one of x, y"),
])
def test_settings_are_checked_and_errors_name_the_flag(changes, message):
    with pytest.raises(ConfigError) as err:
        Example(**{"name": "n", **changes})
    assert message in str(err.value)


def test_generated_flags_carry_help_choices_and_required():
    fv = flags.FlagValues()
    define_flags(Example, fv)
    assert fv["kind"].help.endswith("A kind.") and set(fv["kind"].parser.enum_values) == {"a", "b"}
    with pytest.raises(flags.IllegalFlagValueError):
        fv(["prog", "--kind=c"])
    fv2 = flags.FlagValues()
    define_flags(Example, fv2)
    with pytest.raises(flags.IllegalFlagValueError, match="name"):
        fv2(["prog"])  # --name is required
    fv3 = flags.FlagValues()
    define_flags(Example, fv3)
    fv3(["prog", "--name=x", "--rate=0.25", "--tags=x,y"])
    config, _ = from_flags(Example, fv3)
    assert (config.name, config.rate, config.tags) == ("x", 0.25, ("x", "y"))
