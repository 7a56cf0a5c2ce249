"""A whole short training, end to end: `python -m train.cyclegan` against the official PyTorch
CycleGAN's own `train.py`, on the same data, start-up and sample writing included.

    python bench/train_compare.py --reference_dir=PATH/pytorch-CycleGAN-and-pix2pix \
        --reference_python=PATH/python --work_dir=/tmp/tfstyle-train-compare

The data: the built-in synthetic scenes (60 training images per domain, 80 px), so an epoch
is 60 steps; the setting: 64 px crops of 72 px images, ngf = ndf = 32, 6 blocks, batch 1,
--epochs (20) + --decay_epochs (15) epochs = 2,100 steps. Each run is the command its users
type, with its own defaults otherwise: ours writes 8 sample translations per direction after
every epoch, TensorBoard logs every 100 steps and checkpoints every 1,000; the reference
(which needs torch, torchvision and dominate in --reference_python) loads images with its 4
data-loader workers, saves its HTML visuals and its networks every 5 epochs. The runs
alternate (--rounds times), each timed as a whole (wall clock, and the CPU seconds of the
process and its children); the load average is recorded before and after each, since the
comparison means something only on a machine doing nothing else. --threads=1 limits both
to one thread (TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS, OMP_NUM_THREADS); 0 leaves
their defaults (all cores).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from absl import app, flags

REPO = Path(__file__).resolve().parent.parent

flags.DEFINE_string("reference_dir", None, "Checkout of the official PyTorch CycleGAN.")
flags.DEFINE_string("reference_python", sys.executable, "Python with torch, torchvision and "
                    "dominate, for the reference's train.py.")
flags.DEFINE_string("work_dir", "/tmp/tfstyle-train-compare", "Data and run folders (runs "
                    "are deleted before they start).")
flags.DEFINE_list("runs", ["ours", "reference"], "Runs, in this order each round.")
flags.DEFINE_integer("rounds", 1, "How many times each run trains.")
flags.DEFINE_integer("epochs", 20, "Epochs at the initial learning rate.")
flags.DEFINE_integer("decay_epochs", 15, "Epochs of learning-rate decay.")
flags.DEFINE_integer("threads", 0, "Threads per run (0: the libraries' defaults).")
FLAGS = flags.FLAGS

SETTING = dict(ngf=32, ndf=32, n_blocks=6, load_size=72, crop_size=64)


def ours(data: Path, run: Path) -> list[str]:
    s = SETTING
    return [sys.executable, "-m", "train.cyclegan", f"--dataroot={data}", f"--model_dir={run}",
            f"--ngf={s['ngf']}", f"--ndf={s['ndf']}", f"--n_blocks={s['n_blocks']}",
            f"--load_size={s['load_size']}", f"--crop_size={s['crop_size']}",
            f"--epochs={FLAGS.epochs}", f"--decay_epochs={FLAGS.decay_epochs}"]


def reference(data: Path, run: Path) -> list[str]:
    s = SETTING
    return [FLAGS.reference_python, "train.py", "--dataroot", str(data), "--name", "compare",
            "--model", "cycle_gan", "--ngf", str(s["ngf"]), "--ndf", str(s["ndf"]),
            "--netG", f"resnet_{s['n_blocks']}blocks", "--load_size", str(s["load_size"]),
            "--crop_size", str(s["crop_size"]), "--n_epochs", str(FLAGS.epochs),
            "--n_epochs_decay", str(FLAGS.decay_epochs), "--display_id", "0",
            "--gpu_ids", "-1", "--checkpoints_dir", str(run)]


def timed(command, cwd, env, log: Path):
    """(wall seconds, CPU seconds of the process and its children, exit code)."""
    with open(log, "w") as out:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    return wall, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status)


def load_average() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main(argv):
    del argv
    if "reference" in FLAGS.runs and not (
            FLAGS.reference_dir and Path(FLAGS.reference_dir, "train.py").is_file()):
        sys.exit(f"--reference_dir={FLAGS.reference_dir}: give a checkout of "
                 "pytorch-CycleGAN-and-pix2pix (with train.py) for the reference run")
    unknown = set(FLAGS.runs) - {"ours", "reference"}
    if unknown:
        sys.exit(f"--runs: unknown {', '.join(sorted(unknown))} (ours, reference)")
    sys.path.insert(0, str(REPO))
    from tfstyle.core import synthetic  # no TensorFlow: the runs pay their own start-up
    work = Path(FLAGS.work_dir)
    data = synthetic.make_dataset(work / "data")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if FLAGS.threads:
        env.update(OMP_NUM_THREADS=str(FLAGS.threads), TF_NUM_INTRAOP_THREADS=str(FLAGS.threads),
                   TF_NUM_INTEROP_THREADS=str(FLAGS.threads))
    steps = 60 * (FLAGS.epochs + FLAGS.decay_epochs)
    print(f"{steps} steps ({FLAGS.epochs} + {FLAGS.decay_epochs} epochs of 60), 64 px, "
          f"ngf = ndf = 32, 6 blocks, batch 1; threads: {FLAGS.threads or 'default'}\n")
    print("| run | round | wall s | CPU s | s/step (wall) | load before -> after |")
    print("|---|---:|---:|---:|---:|---|")
    for round_ in range(1, FLAGS.rounds + 1):
        for name in FLAGS.runs:
            run = work / f"{name}_{round_}"
            shutil.rmtree(run, ignore_errors=True)
            run.mkdir(parents=True)
            command, cwd = ((ours(data, run), REPO) if name == "ours"
                            else (reference(data, run), FLAGS.reference_dir))
            before = load_average()
            wall, cpu, code = timed(command, cwd, env, run / "log.txt")
            if code:
                sys.exit(f"{name} failed (exit code {code}); see {run / 'log.txt'}")
            print(f"| {name} | {round_} | {wall:.0f} | {cpu:.0f} | {wall / steps:.3f} "
                  f"| {before} -> {load_average()} |", flush=True)


if __name__ == "__main__":
    app.run(main)
