"""Flags and plumbing shared by the training entry points (train.cyclegan, train.autoencoder).

The flags a trainer shares with the others (strategy, logging, checkpoints) are defined here
once; every flag carries the name of its field in the trainer's config dataclass.
"""

import dataclasses

from absl import app, flags

from tfstyle.distribute import STRATEGIES

FLAGS = flags.FLAGS


def define_run_flags(config_cls) -> None:
    """Define the run flags (defaults from `config_cls`'s fields) and --logical_cpus."""
    d = {f.name: f.default for f in dataclasses.fields(config_cls)}
    flags.DEFINE_enum("strategy", d["strategy"], STRATEGIES,
                      "tf.distribute strategy; auto: multi_worker with TF_CONFIG, mirrored over "
                      "several GPUs, else one device.")
    flags.DEFINE_integer("logical_cpus", 0, "Split the CPU into this many logical devices "
                         "(to try --strategy=mirrored without GPUs).")
    flags.DEFINE_boolean("jit_compile", d["jit_compile"],
                         "Compile the per-replica forward/backward passes with XLA.")
    flags.DEFINE_integer("seed", d["seed"], "Seed of the weights and the data order.")
    flags.DEFINE_integer("save_every_steps", d["save_every_steps"], "Checkpoint every N steps.")
    flags.DEFINE_integer("keep_checkpoints", d["keep_checkpoints"], "Checkpoints kept.")
    flags.DEFINE_integer("log_every_steps", d["log_every_steps"],
                         "TensorBoard scalars every N steps.")
    flags.DEFINE_integer("image_every_steps", d["image_every_steps"],
                         "TensorBoard image grids every N steps.")


def config_from_flags(config_cls):
    """(config, flags_text): the config built from the flags of the same names (a bad value
    stops with a usage error naming its flag) and the effective flags as a flagfile."""
    if FLAGS.logical_cpus:
        from tfstyle.distribute import split_cpu
        split_cpu(FLAGS.logical_cpus)
    names = [f.name for f in dataclasses.fields(config_cls)]
    try:
        config = config_cls(**{name: FLAGS[name].value for name in names})
    except ValueError as err:
        raise app.UsageError(str(err)) from err
    return config, "".join(f"--{name}={FLAGS[name].value}\n" for name in names)
