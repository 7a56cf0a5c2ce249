"""Machinery shared by the trainers: checkpoints that survive a kill, progress output,
TensorBoard, non-finite loss detection and the run's configuration on disk."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf
from absl import logging

from tfstyle.core.config import Config, setting
from tfstyle.core.distribute import STRATEGIES
from tfstyle.core.files import write_json_atomic


@dataclass
class RunSettings(Config):
    """The settings every trainer has: where the run lives, how it is distributed, and how
    often it logs and checkpoints. A trainer's config subclasses this."""
    model_dir: str = setting("", "Folder for checkpoints, logs, samples and the final model; "
                             "re-running the same command resumes from it.",
                             required="give a folder for checkpoints and outputs")
    strategy: str = setting("auto", "tf.distribute strategy; auto: multi_worker with TF_CONFIG, "
                            "mirrored over several GPUs, else one device.", choices=STRATEGIES)
    logical_cpus: int = setting(0, "Split the CPU into this many logical devices (to try "
                                "--strategy=mirrored without GPUs); 0 leaves it whole.", min=0)
    jit_compile: bool = setting(False, "Compile the per-replica forward/backward passes with "
                                "XLA.")
    seed: int = setting(0, "Seed of the weights and the data order.")
    save_every_steps: int = setting(1000, "Checkpoint every N steps.", min=1)
    keep_checkpoints: int = setting(3, "Checkpoints kept.", min=1)
    log_every_steps: int = setting(100, "TensorBoard scalars every N steps.", min=1)
    image_every_steps: int = setting(1000, "TensorBoard image grids every N steps.", min=1)


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the last checkpoint on disk is from before."""


class ConfigMismatchError(ValueError):
    """A resumed run's settings differ from those of the checkpoints in model_dir."""


def check_finite(losses: dict, step: int, checkpoint_dir) -> None:
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    if bad:
        raise NonFiniteLossError(
            f"non-finite loss at step {step}: "
            + ", ".join(f"{k}={v}" for k, v in sorted(bad.items()))
            + f". Training stopped without saving; the last good checkpoint in {checkpoint_dir} "
            "is intact. Lower the learning rate or use float32 (--mixed_precision=none), "
            "then re-run the same command to resume from it.")


def start_run(config, resume_keys, flags_text: str | None = None, strategy=None):
    """(strategy, chief, model_dir) of a run: the strategy config.strategy names (unless one is
    given), whether this worker is the chief, and MODEL_DIR with config.json (checked against
    the run being resumed, see write_run_config) and flags.txt written by the chief."""
    from tfstyle.core.distribute import is_chief, make_strategy, split_cpu
    if strategy is None and config.logical_cpus:
        split_cpu(config.logical_cpus)
    strategy = strategy or make_strategy(config.strategy)
    chief = is_chief(strategy)
    model_dir = Path(config.model_dir)
    if chief:
        write_run_config(model_dir, config, resume_keys)
        if flags_text is not None:
            (model_dir / "flags.txt").write_text(flags_text)
    return strategy, chief, model_dir


def write_run_config(model_dir, config, resume_keys) -> None:
    """Write config.json, or check that a resumed run keeps the keys that shape the
    checkpoints (`resume_keys`); other settings may change between runs."""
    path = Path(model_dir) / "config.json"
    current = dataclasses.asdict(config)
    if path.is_file():
        previous = json.loads(path.read_text())
        changed = {k: (previous.get(k), current[k]) for k in resume_keys
                   if k in previous and previous[k] != current[k]}
        if changed:
            raise ConfigMismatchError(
                f"{model_dir} holds checkpoints of a run with other settings: "
                + ", ".join(f"--{k}={old} there, --{k}={new} now" for k, (old, new) in changed.items())
                + ". Use another --model_dir, or the same settings to resume.")
    write_json_atomic(path, current)


class Checkpoints:
    """tf.train.CheckpointManager with the two guarantees resuming needs.

    A checkpoint becomes "latest" only once all its files are written (TensorFlow writes the
    data, then the index, then the `checkpoint` state file), so a run killed mid-write
    resumes from the previous one; and a latest checkpoint that is unreadable anyway is
    skipped with a warning for the one before it. Non-chief workers of a multi-worker run
    save into a temporary directory that is deleted (all workers must take part in a save).
    """

    def __init__(self, checkpoint: tf.train.Checkpoint, directory, chief: bool = True,
                 max_to_keep: int = 3):
        self.chief = chief
        self.directory = Path(directory)
        target = self.directory if chief else Path(tempfile.mkdtemp(prefix="tfstyle-worker-"))
        self._target = target
        self.checkpoint = checkpoint
        self.manager = tf.train.CheckpointManager(checkpoint, str(target), max_to_keep=max_to_keep)

    def restore(self) -> str | None:
        """Restore the newest readable checkpoint of `directory`; None for a fresh start."""
        state = tf.train.get_checkpoint_state(str(self.directory))
        candidates = list(reversed(state.all_model_checkpoint_paths)) if state else []
        for path in candidates:
            try:
                self.checkpoint.restore(path).assert_existing_objects_matched()
            except Exception as err:  # noqa: BLE001  (any unreadable file: try an older one)
                logging.warning("checkpoint %s is unreadable (%s); trying an older one",
                                path, str(err).splitlines()[0])
                continue
            logging.info("resumed from %s", path)
            return path
        if candidates:
            raise RuntimeError(f"no readable checkpoint in {self.directory}: "
                               + ", ".join(candidates))
        return None

    def save(self, step: int) -> None:
        path = self.manager.save(checkpoint_number=step)
        if not self.chief:
            shutil.rmtree(self._target, ignore_errors=True)
            self._target.mkdir(parents=True, exist_ok=True)
        else:
            logging.info("saved %s", path)


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
    """What every trainer does after a step: fetch the losses, stop on a non-finite one,
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
        check_finite(losses, step, self.checkpoints.directory)
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


def summary_writer(model_dir, chief: bool):
    """A TensorBoard writer for MODEL_DIR/logs on the chief, a no-op writer elsewhere."""
    if not chief:
        return tf.summary.create_noop_writer()
    return tf.summary.create_file_writer(str(Path(model_dir) / "logs"))
