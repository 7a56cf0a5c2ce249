"""Translation quality on a task whose truth is known: the PyTorch reference, tfstyle's
official recipe, each option of the better recipe, and the recommended recipe.

    python bench/quality.py --runs=reference,official,resize,cut,recipe --seeds=1,2,3 \
        --reference_dir=/tmp/pytorch-CycleGAN-and-pix2pix --out=/tmp/tfstyle-quality

(docs/quality.md has the results and the reading.)

The task (`tfstyle.evaluation.known_truth`): domain A is 40 px tiles of the photos that
scikit-image and matplotlib ship, domain B other tiles with a fixed film-like look, and the
truth of a translated test tile is the look applied to it. Every run trains from scratch on
trainA/trainB and is scored on testA against the truth: the share of the gap closed
(1 - L1(G(x), truth) / L1(x, truth)), PSNR and SSIM; it also writes a grid (input / output /
truth) to OUT/grids/. Runs already in OUT are kept, so the command can be split over
processes (one per --runs) and re-run to finish or to print the table; --table_only prints
it without training. The table gives the mean and sample standard deviation over seeds, and
the CPU seconds per iteration (threads: --threads; record `uptime` beside any timing, the
machine is shared).

Runs (tfstyle runs go through tfstyle.cyclegan.trainer.train, the code behind
train.cyclegan): `reference` the official PyTorch CycleGAN (needs torch and --reference_dir;
see bench/quality_reference.py); `official` tfstyle with the official settings; the options
on top of official, alone or together (OPTIONS in bench/quality_runs.py, e.g. `resize`,
`cut`, `resize+residual`); `recipe` configs/recommended.flags (its
settings other than the sizes, which come from --preset). The CPU preset: ngf = ndf = 32,
6 blocks, 32 px crops of the 40 px tiles, batch 1, 3 + 2 epochs of 96 iterations (480); the
GPU preset: ngf = ndf = 64, 9 blocks, 128 px crops of 144 px tiles, 100 + 100 epochs.
--schedule=EPOCHS,DECAY changes the number of epochs (e.g. for equal-time comparisons).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import app, flags

import tfstyle  # noqa: F401  (before TensorFlow: sets the CPU kernel options)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from quality_runs import OPTIONS, PRESETS, run_settings  # noqa: E402

flags.DEFINE_list("runs", ["reference", "official", "recipe"],
                  "Runs: reference, recipe, " + ", ".join(OPTIONS) + ".")
flags.DEFINE_list("seeds", ["1", "2", "3"], "Seeds; each run is trained once per seed.")
flags.DEFINE_enum("preset", "cpu", list(PRESETS), "Sizes: cpu (this machine) or gpu.")
flags.DEFINE_list("schedule", [], "EPOCHS,DECAY_EPOCHS instead of the preset's.")
flags.DEFINE_string("out", os.path.join(tempfile.gettempdir(), "tfstyle-quality"),
                    "Output folder: task_PRESET/, runs/RUN_sSEED/result.json, "
                    "grids/, table.md.")
flags.DEFINE_string("recipe", str(REPO / "configs" / "recommended.flags"),
                    "Flagfile of the recipe run.")
flags.DEFINE_string("reference_dir", None, "Checkout of the official PyTorch CycleGAN.")
flags.DEFINE_integer("threads", 1, "TensorFlow / PyTorch threads per process.")
flags.DEFINE_bool("jit_compile", False, "tfstyle runs: XLA (compiling takes minutes of CPU "
                  "on a loaded machine; the PyTorch reference has none).")
flags.DEFINE_bool("table_only", False, "Print the table of the runs in --out; train nothing.")
FLAGS = flags.FLAGS


def train_tfstyle(name, root, run_dir, preset, seed):
    """Train one tfstyle run; (translate, cpu s, wall s, iterations)."""
    import numpy as np

    from tfstyle.core.images import to_model_range, to_uint8
    from tfstyle.cyclegan import generators
    from tfstyle.cyclegan.trainer import CycleGANConfig, train
    sizes = {k: preset[k] for k in ("ngf", "ndf", "n_blocks", "load_size", "crop_size",
                                    "epochs", "decay_epochs")}
    config = CycleGANConfig(**{
        "batch_size": 1, "jit_compile": FLAGS.jit_compile, "num_samples": 0, "save_every_steps": 100_000,
        "log_every_steps": 100, "image_every_steps": 100_000,
        **run_settings(name, FLAGS.recipe), **sizes,
        "dataroot": str(root), "model_dir": str(run_dir), "seed": seed})
    cpu, wall = time.process_time(), time.perf_counter()
    summary = train(config)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    generator = generators.load_generator(run_dir, "AtoB")

    def translate(images):
        return np.concatenate([to_uint8(generator(to_model_range(images[i:i + 16])))
                               for i in range(0, len(images), 16)])

    return translate, cpu, wall, summary["steps"]


def one_run(name, seed, root, out, preset, tag):
    from tfstyle.core.files import write_json_atomic
    from tfstyle.core.images import write_image
    from tfstyle.evaluation import known_truth
    result_path = out / "runs" / f"{tag}_s{seed}" / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    run_dir = result_path.parent
    load_before = _load()
    if name == "reference":
        import quality_reference
        if not FLAGS.reference_dir:
            sys.exit("--reference_dir: give a checkout of the official PyTorch CycleGAN for "
                     "the reference run")
        translate, cpu, wall, iterations = quality_reference.train(
            FLAGS.reference_dir, root, run_dir, {**preset, "batch_size": 1}, seed,
            FLAGS.threads)
    else:
        translate, cpu, wall, iterations = train_tfstyle(name, root, run_dir, preset, seed)
    test = known_truth.load_test_set(root)
    outputs = translate(test.inputs)
    result = {"run": tag, "seed": seed, "iterations": iterations, "cpu_seconds": cpu,
              "wall_seconds": wall, "threads": FLAGS.threads,
              "load_before": load_before, "load_after": _load(),
              **known_truth.scores(test.inputs, outputs, test.truths)}
    write_image(out / "grids" / f"{tag}_s{seed}.png",
                known_truth.grid(test.inputs, outputs, test.truths))
    write_json_atomic(result_path, result)
    print(f"{tag} seed {seed}: closed gap {result['closed_gap']:.3f}, PSNR "
          f"{result['psnr']:.2f}, SSIM {result['ssim']:.3f}, {cpu / iterations:.3f} CPU "
          f"s/iteration ({iterations} iterations; load {load_before})", flush=True)
    return result


def _load() -> str:
    """The load averages from `uptime` (the machine is shared)."""
    return subprocess.run(["uptime"], capture_output=True, text=True,
                          check=False).stdout.strip()


def table(results) -> str:
    import numpy as np
    groups: dict[str, list] = {}
    for r in results:
        groups.setdefault(r["run"], []).append(r)
    lines = [("| run | seeds | iterations | closed gap (mean ± sd) | per seed | PSNR dB "
              "| SSIM | CPU s/iteration |"), "|---|---:|---:|---:|---|---:|---:|---:|"]
    sd = lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0  # noqa: E731
    for tag, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        gap, psnr, ssim = ([r[k] for r in rs] for k in ("closed_gap", "psnr", "ssim"))
        cpu = [r["cpu_seconds"] / r["iterations"] for r in rs]
        lines.append(
            f"| {tag} | {len(rs)} | {rs[0]['iterations']} | {np.mean(gap):.3f} ± {sd(gap):.3f} "
            f"| {', '.join(f'{g:.3f}' for g in gap)} | {np.mean(psnr):.2f} ± {sd(psnr):.2f} "
            f"| {np.mean(ssim):.3f} ± {sd(ssim):.3f} | {np.mean(cpu):.3f} |")
    first = results[0] if results else {}
    lines.append(f"\nDoing nothing (the input itself): L1 {first.get('l1_input', 0):.4f}, PSNR "
                 f"{first.get('psnr_input', 0):.2f} dB, SSIM {first.get('ssim_input', 0):.3f}.")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    import tensorflow as tf

    from tfstyle.core.files import write_text_atomic
    from tfstyle.evaluation import known_truth
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
    out = Path(FLAGS.out)
    preset = dict(PRESETS[FLAGS.preset])
    suffix = ""
    if FLAGS.schedule:
        if len(FLAGS.schedule) != 2:
            raise app.UsageError("--schedule: give EPOCHS,DECAY_EPOCHS")
        preset["epochs"], preset["decay_epochs"] = map(int, FLAGS.schedule)
        suffix = f"@{preset['epochs']}+{preset['decay_epochs']}"
    root = out / f"task_{FLAGS.preset}"
    known_truth.make_task(root, tile=preset["tile"], tiles_across=preset["tiles_across"])
    if not FLAGS.table_only:
        for name in FLAGS.runs:  # unknown names stop before any training
            try:
                run_settings(name, FLAGS.recipe)
            except (ValueError, OSError) as err:
                raise app.UsageError(str(err)) from err
        for name in FLAGS.runs:
            for seed in map(int, FLAGS.seeds):
                one_run(name, seed, root, out, preset, name + suffix)
    results = [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/result.json"))]
    order = {name: i for i, name in enumerate(["reference", *OPTIONS, "recipe"])}
    results.sort(key=lambda r: (order.get(r["run"].split("@")[0], 99), r["run"], r["seed"]))
    text = table(results)
    write_text_atomic(out / "table.md", text + "\n")
    print(text)


if __name__ == "__main__":
    app.run(main)
