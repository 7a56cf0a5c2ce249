"""Machinery shared by the trainers: checkpoints that survive a kill or a damaged state file,
the guard that writes nothing non-finite, progress output, TensorBoard and the run's
configuration on disk."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf
from absl import logging

from tfstyle.core.config import setting
from tfstyle.core.data import DataError
from tfstyle.core.distribute import STRATEGIES
from tfstyle.core.files import write_json_atomic, write_text_atomic
from tfstyle.core.images import ImageError, ImageLimits

# The largest load and crop sizes a trainer accepts: a 2048 x 2048 RGB image is 12 MiB of
# uint8 and 48 MiB of float32, before a network's activations; larger sizes are refused
# before anything is allocated (today's GPUs train 256-1024 px crops).
MAX_IMAGE_SIZE = 2048


@dataclass
class RunSettings(ImageLimits):
    """The settings every trainer has: where the run lives, how it is distributed, how often
    it logs and checkpoints, and the limits of the image files it reads (ImageLimits). A
    trainer's config subclasses this."""
    model_dir: str = setting("", "Folder for checkpoints, logs, samples and the final model; "
                             "re-running the same command resumes from it.",
                             required="give a folder for checkpoints and outputs")
    strategy: str = setting("auto", "tf.distribute strategy; auto: multi_worker with TF_CONFIG, "
                            "mirrored over several GPUs, else one device.", choices=STRATEGIES)
    logical_cpus: int = setting(0, "Split the CPU into this many logical devices (to try "
                                "--strategy=mirrored without GPUs); 0 leaves it whole.", min=0)
    jit_compile: bool = setting(False, "Compile the per-replica forward/backward passes with "
                                "XLA.")
    intra_op_threads: int = setting(-1, "Threads one CPU op may use; -1: the measured rule "
                                    "(docs/training.md), 0: TensorFlow's default (all cores).",
                                    min=-1)
    inter_op_threads: int = setting(-1, "CPU ops that may run side by side; -1: the measured "
                                    "rule, 0: TensorFlow's default (one per core).", min=-1)
    seed: int = setting(0, "Seed of the weights and the data order.")
    save_every_steps: int = setting(1000, "Checkpoint every N steps.", min=1)
    keep_checkpoints: int = setting(3, "Checkpoints kept.", min=1)
    log_every_steps: int = setting(100, "TensorBoard scalars every N steps.", min=1)
    image_every_steps: int = setting(1000, "TensorBoard image grids every N steps.", min=1)

    @property
    def parallel_ops(self) -> int:
        """How many of a training step's ops can usefully run side by side on a CPU, as
        measured for the trainer (docs/benchmarks.md, "Thread pools"): the thread-pool rule
        shares the cores among them. One unless a trainer says otherwise."""
        return 1

    def cpu_threads(self) -> tuple[int, int]:
        """(intra-op, inter-op) threads this run asks for, 0 meaning TensorFlow's default:
        the flags, with -1 resolved by tfstyle.core.distribute.default_cpu_threads on this
        machine (so a flags.txt taken elsewhere asks for the rule again, not for the pools of
        the machine that wrote it)."""
        from tfstyle.core.distribute import default_cpu_threads
        rule = default_cpu_threads(self.parallel_ops, jit_compile=self.jit_compile) or (0, 0)
        return (rule[0] if self.intra_op_threads == -1 else self.intra_op_threads,
                rule[1] if self.inter_op_threads == -1 else self.inter_op_threads)

    def __post_init__(self):
        # A trainer whose jit_compile defaults to None (unset) gets the measured rule of
        # tfstyle.core.distribute.default_jit_compile; the settings hold what will run.
        if self.jit_compile is None:
            from tfstyle.core.distribute import default_jit_compile
            self.jit_compile = default_jit_compile()
        super().__post_init__()


class FusedAdam(keras.optimizers.Adam):
    """keras.optimizers.Adam whose update is TensorFlow's fused ResourceApplyAdam kernel: one
    op and one pass over the weights per variable instead of about ten (docs/benchmarks.md,
    "Training step"). The same rule, m / (sqrt(v) + epsilon) with bias correction, the same
    variables and checkpoint keys; amsgrad falls back to Keras's."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].value.handle,
            v=self._velocities[index].value.handle, beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype), beta1=beta_1,
            beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype))


class NonFiniteLossError(RuntimeError):
    """A loss or a weight became NaN or infinite; nothing was written after the last
    checkpoint that holds finite values (the message names it and the step)."""


class ConfigMismatchError(ValueError):
    """A resumed run's settings differ from those of the checkpoints in model_dir."""


class CheckpointError(RuntimeError):
    """model_dir holds checkpoints, none of which can be resumed from; nothing is
    overwritten until the user moves them away."""


# What a trainer raises for a problem of the user's data, settings or run folder (never a
# bug): entry points print these as one line and exit non-zero.
RUN_ERRORS = (DataError, ImageError, ConfigMismatchError, NonFiniteLossError, CheckpointError)

_CHECKPOINT_INDEX = re.compile(r"ckpt-(\d+)\.index")


def checkpoints_on_disk(directory) -> list[tuple[int, str]]:
    """(step, path prefix) of the checkpoints whose index file is in `directory`, newest
    first; found from the files themselves, not from the `checkpoint` state file."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), str(directory / f"ckpt-{m.group(1)}"))
             for m in map(_CHECKPOINT_INDEX.fullmatch, (p.name for p in directory.iterdir()))
             if m]
    return sorted(found, reverse=True)


def start_run(config, resume_keys, flags_text: str | None = None, strategy=None):
    """(strategy, chief, model_dir) of a run: TensorFlow's CPU thread pools set as the config
    says (when the runtime has not started yet), the strategy config.strategy names (unless
    one is given), whether this worker is the chief, and MODEL_DIR with config.json (checked
    against the run being resumed, see write_run_config) and flags.txt written by the
    chief."""
    from tfstyle.core.distribute import is_chief, make_strategy, set_cpu_threads, split_cpu
    pools = config.cpu_threads()
    if any(pools):
        set_cpu_threads(*pools)
    if strategy is None and config.logical_cpus:
        split_cpu(config.logical_cpus)
    strategy = strategy or make_strategy(config.strategy)
    chief = is_chief(strategy)
    model_dir = Path(config.model_dir)
    if chief:
        write_run_config(model_dir, config, resume_keys)
        if flags_text is not None:
            write_text_atomic(model_dir / "flags.txt", flags_text)
    return strategy, chief, model_dir


def write_run_config(model_dir, config, resume_keys) -> None:
    """Write config.json, checking first that a run resuming checkpoints keeps the keys that
    shape them (`resume_keys`); other settings may change between runs. Without checkpoints
    in model_dir/checkpoints there is nothing to resume and any settings are accepted."""
    path = Path(model_dir) / "config.json"
    current = dataclasses.asdict(config)
    if path.is_file() and checkpoints_on_disk(Path(model_dir) / "checkpoints"):
        try:
            previous = json.loads(path.read_text())
        except ValueError:  # a damaged file: keep it aside, the checkpoints are checked anyway
            path.replace(path.with_name("config.json.damaged"))
            logging.warning("%s was damaged; kept it as config.json.damaged", path)
            previous = {}
        changed = {k: (previous.get(k), current[k]) for k in resume_keys
                   if k in previous and previous[k] != current[k]}
        if changed:
            raise ConfigMismatchError(
                f"{model_dir} holds checkpoints of a run with other settings: "
                + ", ".join(f"--{k}={old} there, --{k}={new} now" for k, (old, new) in changed.items())
                + ". Use another --model_dir, or the same settings to resume.")
    write_json_atomic(path, current)


class FiniteGuard:
    """The one gate in front of everything a trainer writes: the float `variables` (weights,
    optimizer slots, ...) are all finite, and so are the losses that the current weights give
    on a fixed batch (`probe()`, a dict of scalar tensors). The probe catches weights that are
    finite but so large that the next step overflows (an absurd learning rate)."""

    def __init__(self, variables, probe=None):
        self.variables = [v for v in variables if tf.as_dtype(v.dtype).is_floating]
        self.probe = probe
        # Every step: one read of each variable, a sum, which is finite unless an element is
        # NaN or infinite (or finite elements overflow float32; the exact check then clears
        # them). Only when a sum is not finite does the exact check name the variables.
        self._sums_finite = tf.function(lambda: tf.reduce_all(tf.math.is_finite(tf.stack(
            [tf.reduce_sum(tf.cast(v, tf.float32)) for v in self.variables]))))
        self._finite = tf.function(lambda: tf.stack(
            [tf.reduce_all(tf.math.is_finite(tf.convert_to_tensor(v))) for v in self.variables]))

    def bad_variables(self) -> list[str]:
        if not self.variables or bool(self._sums_finite()):
            return []
        finite = self._finite().numpy()
        return [getattr(v, "path", v.name) for v, ok in zip(self.variables, finite) if not ok]

    def problem(self, losses: dict | None = None, probe: bool = True) -> str | None:
        """What is non-finite (the given `losses`, the weights, or with `probe` the losses of
        the current weights), or None when everything is finite."""
        problem = _losses_problem(losses or {})
        if problem:
            return problem
        names = self.bad_variables()
        if names:
            return (f"weights in {len(names)} variables: {', '.join(names[:3])}"
                    + (", ..." if len(names) > 3 else ""))
        if probe and self.probe is not None:
            bad = {k: v for k, v in ((k, float(v)) for k, v in self.probe().items())
                   if not math.isfinite(v)}
            if bad:
                return "losses from the updated weights on a fixed batch: " + _values(bad)
        return None


def _values(values: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(values.items()))


def _losses_problem(losses: dict) -> str | None:
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    return "loss: " + _values(bad) if bad else None


class Checkpoints:
    """tf.train.CheckpointManager with the guarantees resuming needs.

    - Checkpoints are found from their index files (`ckpt-N.index`), not from the
      `checkpoint` state file, so a truncated, empty or garbled state file loses nothing: the
      newest readable checkpoint is resumed from and the state file is rebuilt (a damaged one
      is kept as `checkpoint.damaged`). A checkpoint that cannot be read (a write killed
      half-way, a damaged file) or holds non-finite weights is skipped with a warning for the
      one before it; when none can be resumed from, CheckpointError says so and nothing is
      overwritten.
    - With a FiniteGuard, a checkpoint is written only when every variable is finite and the
      guard's probe is, else NonFiniteLossError names the step and the last good checkpoint.
    - Non-chief workers of a multi-worker run save into a temporary directory that is deleted
      (all workers must take part in a save).
    """

    def __init__(self, checkpoint: tf.train.Checkpoint, directory, chief: bool = True,
                 max_to_keep: int = 3, guard: FiniteGuard | None = None):
        self.chief = chief
        self.directory = Path(directory)
        self._target = self.directory if chief else Path(tempfile.mkdtemp(prefix="tfstyle-worker-"))
        if not chief:  # removed when the run ends, however it ends (short of a kill)
            weakref.finalize(self, shutil.rmtree, str(self._target), True)
        self.checkpoint = checkpoint
        self.max_to_keep = max_to_keep
        self.guard = guard
        self.last_good: str | None = None
        self._manager: tf.train.CheckpointManager | None = None

    @property
    def manager(self) -> tf.train.CheckpointManager:
        if self._manager is None:
            if self.chief:
                self._set_aside_damaged_state()
            self._manager = tf.train.CheckpointManager(self.checkpoint, str(self._target),
                                                       max_to_keep=self.max_to_keep)
        return self._manager

    def restore(self) -> str | None:
        """Restore the newest readable checkpoint of `directory` that holds finite values;
        None for a fresh start (no checkpoint files at all)."""
        found = checkpoints_on_disk(self.directory)
        for step, path in found:
            try:
                self.checkpoint.restore(path).assert_existing_objects_matched()
            except Exception as err:  # noqa: BLE001  (any unreadable file: try an older one)
                logging.warning("checkpoint %s is unreadable (%s); trying an older one",
                                path, str(err).splitlines()[0])
                continue
            # The weights only: a probe failing here may be the loss's fault, not the file's.
            problem = self.guard.problem(probe=False) if self.guard else None
            if problem:
                logging.warning("checkpoint %s holds non-finite %s; trying an older one",
                                path, problem)
                continue
            logging.info("resumed from %s", path)
            self.last_good = path
            if self.chief:
                self._rebuild_state(step, [p for s, p in found if s <= step])
            return path
        if found:
            raise CheckpointError(
                f"no checkpoint in {self.directory} can be resumed from (unreadable or "
                f"non-finite: {', '.join(Path(p).name for _, p in found)}); move them away or "
                "use another --model_dir to start afresh")
        return None

    def _state_file(self) -> Path:
        return self.directory / "checkpoint"

    def _state_is_damaged(self) -> bool:
        if not self._state_file().exists():
            return False
        try:
            return tf.train.get_checkpoint_state(str(self.directory)) is None
        except Exception:  # noqa: BLE001  (an empty or garbled state file)
            return True

    def _set_aside_damaged_state(self) -> None:
        if self._state_is_damaged():
            kept = self._state_file().with_name("checkpoint.damaged")
            self._state_file().replace(kept)
            logging.warning("the checkpoint state file %s was damaged; kept it as %s",
                            self._state_file(), kept)

    def _rebuild_state(self, step: int, paths: list[str]) -> None:
        """Make the state file name the resumed checkpoint as the latest and the older ones
        on disk as kept (so that --keep_checkpoints applies to them), if it does not."""
        latest, names = Path(paths[0]).name, [Path(p).name for p in reversed(paths)]
        if not self._state_is_damaged() and self._state_file().exists():
            state = tf.train.get_checkpoint_state(str(self.directory))
            if (Path(state.model_checkpoint_path).name == latest
                    and [Path(p).name for p in state.all_model_checkpoint_paths] == names):
                return
        self._set_aside_damaged_state()
        stamps = [Path(p + ".index").stat().st_mtime for p in reversed(paths)]
        write_text_atomic(self._state_file(), "".join(
            [f'model_checkpoint_path: "{latest}"\n']
            + [f'all_model_checkpoint_paths: "{n}"\n' for n in names]
            + [f"all_model_checkpoint_timestamps: {t}\n" for t in stamps]
            + ["last_preserved_timestamp: 0.0\n"]))
        logging.info("rebuilt %s from the checkpoint files (latest: ckpt-%d)",
                     self._state_file(), step)

    def check(self, step: int, losses: dict | None = None, probe: bool = True) -> None:
        """Raise NonFiniteLossError, naming `step` and the last good checkpoint, when the
        `losses` of step `step`, the weights after it or (with `probe`) the losses they give
        are not finite. Without a guard only `losses` are checked."""
        problem = (self.guard.problem(losses, probe) if self.guard
                   else _losses_problem(losses or {}))
        if problem is None:
            return
        advice = "lower the learning rate or use float32 (--mixed_precision=none)"
        last = (f"the last good checkpoint is {self.last_good}; {advice}, then re-run the same "
                "command to resume from it" if self.last_good
                else f"there is no checkpoint yet; {advice}")
        raise NonFiniteLossError(f"training stopped at step {step}: non-finite {problem}. "
                                 f"Nothing of this step was written; {last}.")

    def save(self, step: int) -> None:
        """Write the checkpoint of step `step`, after the guard's checks."""
        self.check(step)
        path = self.manager.save(checkpoint_number=step)
        if not self.chief:
            shutil.rmtree(self._target, ignore_errors=True)
            self._target.mkdir(parents=True, exist_ok=True)
        else:
            logging.info("saved %s", path)
        self.last_good = str(self.directory / f"ckpt-{step}")


class Progress:
    """One-line progress: step/total, values, images/s and ETA.

    On a terminal the line is redrawn in place; otherwise (logs, CI) a line is written every
    `interval` seconds and at the last step.
    """

    def __init__(self, total: int, start: int = 0, interval: float = 10.0, stream=None,
                 enabled: bool = True):
        self.total, self.start, self.interval = total, start, interval
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._t0 = time.perf_counter()
        self._last = 0.0
        self._images = 0

    def update(self, step: int, values: dict, images: int) -> None:
        """`step` done (1-based), `images` processed by this step."""
        self._images += images
        if not self.enabled:
            return
        now = time.perf_counter()
        last = step >= self.total
        if not (self.tty or last or now - self._last >= self.interval):
            return
        self._last = now
        elapsed = now - self._t0
        done = step - self.start
        rate = self._images / elapsed if elapsed > 0 else 0.0
        eta = (self.total - step) * elapsed / done if done else 0.0
        width = len(str(self.total))
        text = (f"step {step:>{width}}/{self.total} "
                + " ".join(f"{k} {v:.3f}" for k, v in values.items())
                + f" | {rate:.2f} img/s | ETA {_duration(eta)}")
        if self.tty:
            self.stream.write("\r" + text + ("\n" if last else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class StepHooks:
    """What every trainer does after a step: fetch the losses, stop on a non-finite loss or
    weight (Checkpoints.check),
    update the progress line, write TensorBoard scalars every `log_every` steps and image
    grids every `image_every` steps, and checkpoint every `save_every` steps.

    `images_fn()` returns the uint8 image batch for TensorBoard; `extra_scalars()` returns
    more scalars (e.g. the learning rate) when they are written.
    """

    def __init__(self, checkpoints: Checkpoints, writer, progress: Progress, total_steps: int,
                 log_every: int, image_every: int, save_every: int, images_fn=None,
                 image_tag: str = "images", extra_scalars=None):
        self.checkpoints, self.writer, self.progress = checkpoints, writer, progress
        self.total_steps = total_steps
        self.log_every, self.image_every, self.save_every = log_every, image_every, save_every
        self.images_fn, self.image_tag = images_fn, image_tag
        self.extra_scalars = extra_scalars or dict
        self.first_losses: dict | None = None

    def __call__(self, step: int, out: dict, images: int, shown: dict | None = None) -> dict:
        """After step `step` (1-based) that returned the loss tensors `out` for `images`
        images; `shown` adds values to the progress line. Returns the losses as floats."""
        losses = {k: float(v) for k, v in out.items()}
        self.first_losses = self.first_losses or losses
        self.checkpoints.check(step, losses, probe=False)
        self.progress.update(step, {**(shown or {}), **losses}, images)
        last = step >= self.total_steps
        if step % self.log_every == 0 or last:
            with self.writer.as_default(step=step):
                for k, v in {**{f"loss/{k}": v for k, v in losses.items()},
                             **self.extra_scalars()}.items():
                    tf.summary.scalar(k, v)
        if self.images_fn is not None and (step % self.image_every == 0 or last):
            with self.writer.as_default(step=step):
                tf.summary.image(self.image_tag, self.images_fn(), max_outputs=4)
        if step % self.save_every == 0 and not last:
            self.checkpoints.save(step)
        return losses


# Every epoch's input iterator. Tearing a tf.data iterator down (TF 2.21) blocked the
# training loop for 10-80 s at the end of most epochs (docs/benchmarks.md, "A whole
# training"); a finished iterator holds no batches, so they are kept until the process ends.
_EPOCH_ITERATORS: list = []


def run_epoch(model, strategy, dataset_fn, hooks: StepHooks, step: int, last_step: int,
              epoch: int, losses: dict) -> tuple[int, dict]:
    """The steps of one epoch (or of its rest) of a trainer's loop: model.train_step on each
    distributed batch of dataset_fn(input_context); after each, the model's data position
    (step_in_epoch, where the model keeps one) before `hooks` may checkpoint it; stops at
    `last_step`. Returns the step reached and the losses last returned by `hooks`."""
    batches = iter(strategy.distribute_datasets_from_function(dataset_fn))
    _EPOCH_ITERATORS.append(batches)
    for batch in batches:
        out = model.train_step(batch)
        step += 1
        if hasattr(model, "step_in_epoch"):
            model.step_in_epoch.assign_add(1)  # before a checkpoint: the data position
        losses = hooks(step, out, model.global_batch, {"epoch": epoch + 1})
        if step >= last_step:
            break
    return step, losses


def summary_writer(model_dir, chief: bool):
    """A TensorBoard writer for MODEL_DIR/logs on the chief, a no-op writer elsewhere."""
    if not chief:
        return tf.summary.create_noop_writer()
    return tf.summary.create_file_writer(str(Path(model_dir) / "logs"))
