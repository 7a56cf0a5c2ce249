r"""A teacher generator against its distilled mobile students, measured in one run.

    python bench/mobile.py --teacher=runs/teacher64 --students=runs/student64 \
        --work_dir=/tmp/mobile_bench [--runs=5] [--threads=0] [--markdown_out=FILE]

For the teacher and each student (model dirs with generators/<direction>.keras):

- parameters, and multiply-accumulates (MACs) of the convolutions and matrix products at
  --size x --size, counted from the operators and tensor shapes of the float32 LiteRT file
  (CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV, FULLY_CONNECTED, BATCH_MATMUL; normalisation,
  padding and element-wise operators are not counted);
- the LiteRT files of python -m export.generators at --size (builtin operators only; each
  checked against its Keras model by the export, which refuses one below its threshold), and
  their latency (interpreter.invoke on a held-out image): one warm-up round, then --runs
  rounds that each run every file once, so the load of a shared machine falls on all alike;
  the load average (as `uptime` shows it) is recorded at the start, the end and every round;
- the student against the teacher on the held-out source images (test<source>/ of the
  teacher's data root, whole images as python -m tfstyle.translate runs them): PSNR and SSIM
  of the uint8 outputs (tfstyle.evaluation.metrics).

Writes WORK_DIR/<name>/ (the exports) and WORK_DIR/mobile_bench.json; prints markdown tables.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
WARMUP = 1
flags.DEFINE_string("teacher", None, "Model dir of the teacher.")
flags.DEFINE_list("students", [], "Model dirs of the distilled students.")
flags.DEFINE_enum("direction", "AtoB", ["AtoB", "BtoA"], "The generators compared.")
flags.DEFINE_string("work_dir", "/tmp/mobile_bench", "Where the exports and the JSON go.")
flags.DEFINE_list("variants", ["float32", "float16", "int8"], "LiteRT variants timed.")
flags.DEFINE_integer("size", 256, "LiteRT input size and MAC count size.", lower_bound=16)
flags.DEFINE_integer("calibration_images", 32, "int8 calibration images (train<source>/).",
                     lower_bound=1)
flags.DEFINE_integer("runs", 5, "Timed rounds.", lower_bound=1)
flags.DEFINE_integer("threads", 0, "LiteRT threads (0: all cores).", lower_bound=0)
flags.DEFINE_boolean("reuse_exports", False, "Time the exports already in --work_dir instead "
                     "of exporting again.")
flags.DEFINE_string("markdown_out", None, "Also write the tables to this file.")
flags.DEFINE_string("known_truth", None, "Instead: score the teacher and students, trained on "
                    "this known-truth task (bench/quality.py's OUT/task_PRESET), against its "
                    "truth, and the students against the teacher on its test tiles.")

MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED", "BATCH_MATMUL")


def conv_macs(content: bytes) -> dict[str, int]:
    """Multiply-accumulates per operator kind of a LiteRT flatbuffer (batch included), from
    its weight and output tensor shapes."""
    from tensorflow.lite.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAsModel(content, 0)
    graph = model.Subgraphs(0)

    def shape(index):
        return [int(d) for d in graph.Tensors(index).ShapeAsNumpy()]

    macs = dict.fromkeys(MAC_OPS, 0)
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
        if kind not in MAC_OPS:
            continue
        inputs, out = op.InputsAsNumpy(), shape(op.OutputsAsNumpy()[0])
        if kind == "CONV_2D":             # weights [O, kh, kw, I], output [N, H, W, O]
            _, kh, kw, cin = shape(inputs[1])
            macs[kind] += int(np.prod(out)) * kh * kw * cin
        elif kind == "DEPTHWISE_CONV_2D":  # weights [1, kh, kw, C*m], output [N, H, W, C*m]
            _, kh, kw, _ = shape(inputs[1])
            macs[kind] += int(np.prod(out)) * kh * kw
        elif kind == "TRANSPOSE_CONV":    # (output shape, weights [O, kh, kw, I], input)
            cout, kh, kw, _ = shape(inputs[1])
            macs[kind] += int(np.prod(shape(inputs[2]))) * kh * kw * cout
        elif kind == "FULLY_CONNECTED":   # weights [O, I]
            macs[kind] += int(np.prod(out)) * shape(inputs[1])[1]
        else:                             # BATCH_MATMUL: [..., M, K] x [..., K, N]
            options = schema.BatchMatMulOptions()
            table = op.BuiltinOptions()
            options.Init(table.Bytes, table.Pos)
            a = shape(inputs[0])
            macs[kind] += int(np.prod(out)) * (a[-2] if options.AdjX() else a[-1])
    return macs


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def export(model_dir: Path, out: Path, direction: str) -> dict:
    """The export's report of the model's LiteRT files (refused files are listed there)."""
    from tfstyle.deploy.checks import ExportError
    from tfstyle.deploy.exporter import ExportOptions, export_generators

    report_path = out / "export_report.json"
    if not (FLAGS.reuse_exports and report_path.is_file()):
        options = ExportOptions(directions=(direction,), serving=False,
                                tflite=tuple(FLAGS.variants), tflite_size=FLAGS.size,
                                calibration_images=FLAGS.calibration_images, check_images=4,
                                latency_runs=1, overwrite=True)
        try:
            export_generators(model_dir, out, options, log=lambda m: print(m, file=sys.stderr))
        except ExportError as err:  # refused files are reported, the others are timed
            print(f"export of {model_dir}: {err}", file=sys.stderr)
    return json.loads(report_path.read_text())


def describe(model_dir: Path, direction: str, out: Path) -> dict:
    from tfstyle.cyclegan.generators import load_generator, load_info
    from tfstyle.cyclegan.networks import count_params

    generator = load_generator(model_dir, direction)
    report = export(model_dir, out, direction)
    files = {a["variant"]: a for a in report["artifacts"] if a["kind"] == "tflite"}
    float32 = files.get("float32", {})
    macs = conv_macs((out / "tflite" / float32["file"]).read_bytes()) \
        if float32.get("status") == "ok" else {}
    return {"model_dir": str(model_dir), "name": model_dir.name, "info": load_info(model_dir),
            "generator": generator, "params": count_params(generator),
            "macs": sum(macs.values()), "macs_by_op": macs,
            "files": {v: {"status": a["status"], "path": str(out / "tflite" / a["file"])
                          if a["status"] == "ok" else None,
                          "size_bytes": a.get("size_bytes"),
                          "psnr_db": a.get("agreement", {}).get("psnr_db"),
                          "threshold_db": a.get("threshold_db"), "reason": a.get("reason"),
                          "ops": a.get("ops")}
                      for v, a in files.items()}}


def time_rounds(models: list[dict], probe: np.ndarray, runs: int, threads: int) -> dict:
    """Interleaved latency of every accepted LiteRT file; the load averages seen."""
    from tfstyle.deploy.litert import LiteModel

    items = []
    for m in models:
        for variant, f in m["files"].items():
            if f["status"] == "ok":
                lite = LiteModel(Path(f["path"]).read_bytes(), variant, threads or os.cpu_count())
                lite.run(probe)  # fills the input tensor; the timed part is invoke()
                items.append((m["name"], variant, lite.interpreter.invoke))
    times = {(name, variant): [] for name, variant, _ in items}
    loads = []
    for round_ in range(WARMUP + runs):
        loads.append(os.getloadavg()[0])
        for name, variant, invoke in items:
            start = time.perf_counter()
            invoke()
            if round_ >= WARMUP:
                times[(name, variant)].append((time.perf_counter() - start) * 1000.0)
        print(f"round {round_ + 1}/{WARMUP + runs} done", file=sys.stderr, flush=True)
    return {"latency_ms": {f"{n}/{v}": {"median": float(np.median(t)),
                                        "p90": float(np.percentile(t, 90)), "runs": len(t)}
                           for (n, v), t in times.items()},
            "load_1min": {"min": min(loads), "max": max(loads), "per_round": loads}}


def agreement(teacher, student, images) -> dict:
    from tfstyle.cyclegan.translator import Translator
    from tfstyle.evaluation import metrics

    t, s = Translator(teacher), Translator(student)
    ours = [s(im) for im in images]
    theirs = [t(im) for im in images]
    return {"psnr_db": metrics.mean_of(metrics.psnr, ours, theirs),
            "ssim": metrics.mean_ssim(ours, theirs), "images": len(images)}


def known_truth_result(dirs: list[Path], direction: str, root: Path) -> dict:
    """Known-truth scores (tfstyle.evaluation.known_truth) of each model on the task's test
    tiles, and each student's agreement with the teacher there."""
    from tfstyle.core.images import to_model_range, to_uint8
    from tfstyle.cyclegan.generators import load_generator
    from tfstyle.evaluation import known_truth, metrics

    test = known_truth.load_test_set(root)
    outputs = {}
    for d in dirs:
        g = load_generator(d, direction)
        outputs[d.name] = np.concatenate([to_uint8(g(to_model_range(test.inputs[i:i + 16])))
                                          for i in range(0, len(test.inputs), 16)])
    teacher = outputs[dirs[0].name]
    return {"task": str(root), "tiles": len(test.inputs),
            "scores": {n: known_truth.scores(test.inputs, o, test.truths)
                       for n, o in outputs.items()},
            "agreement": {n: {"psnr_db": metrics.mean_of(metrics.psnr, list(o), list(teacher)),
                              "ssim": metrics.mean_ssim(list(o), list(teacher))}
                          for n, o in outputs.items() if n != dirs[0].name}}


def known_truth_table(result: dict) -> str:
    scores = result["scores"]
    teacher = next(iter(scores))
    lines = [f"Known-truth task {result['task']} ({result['tiles']} test tiles): closed gap "
             "1 - L1(G(x), truth) / L1(x, truth), PSNR and SSIM against the truth.", "",
             "| model | closed gap | of the teacher's | PSNR (dB) | SSIM | PSNR / SSIM vs "
             "teacher |", "|---|---:|---:|---:|---:|---|"]
    for name, s in scores.items():
        share = s["closed_gap"] / scores[teacher]["closed_gap"]
        agree = result["agreement"].get(name)
        vs = f"{agree['psnr_db']:.2f} dB / {agree['ssim']:.3f}" if agree else ""
        lines.append(f"| {name} | {s['closed_gap']:.3f} | {share:.2f} | {s['psnr']:.2f} | "
                     f"{s['ssim']:.3f} | {vs} |")
    first = scores[teacher]
    lines.append(f"\nDoing nothing (the input itself): PSNR {first['psnr_input']:.2f} dB, SSIM "
                 f"{first['ssim_input']:.3f} (closed gap 0).")
    return "\n".join(lines) + "\n"


def tables(result: dict) -> str:
    models, teacher = result["models"], result["models"][0]
    lines = [(f"Machine: {result['cpus']} CPUs; LiteRT threads {result['threads']}; "
             f"`uptime` at the start: {result['uptime_start']}; at the end: "
             f"{result['uptime_end']}; 1-min load during the rounds "
             f"{result['timing']['load_1min']['min']:.2f}-{result['timing']['load_1min']['max']:.2f}."),
             "", (f"| model | block | ngf | blocks | parameters | GMACs at {result['size']} px "
             "| teacher / model MACs |"), "|---|---|---:|---:|---:|---:|---:|"]
    for m in models:
        info = m["info"]
        ratio = teacher["macs"] / m["macs"] if m["macs"] else float("nan")
        lines.append(f"| {m['name']} | {info.get('block')} | {info.get('ngf')} | "
                     f"{info.get('n_blocks')} | {m['params']:,} | {m['macs'] / 1e9:.2f} | "
                     f"{ratio:.1f}x |")
    lines += ["", (f"LiteRT at {result['size']}x{result['size']}, batch 1, {result['runs']} "
              f"interleaved rounds after {WARMUP} warm-up round."), "",
              ("| model | variant | size (MB) | median (ms) | p90 (ms) | teacher / model "
              "(median) | PSNR vs its Keras model (dB) | export threshold (dB) |"),
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    latency = result["timing"]["latency_ms"]
    for m in models:
        for variant, f in m["files"].items():
            key = f"{m['name']}/{variant}"
            if key not in latency:
                lines.append(f"| {m['name']} | {variant} | | | | | refused: {f['reason']} | "
                             f"{f['threshold_db']} |")
                continue
            base = latency.get(f"{teacher['name']}/{variant}")
            speedup = f"{base['median'] / latency[key]['median']:.1f}x" if base else ""
            lines.append(f"| {m['name']} | {variant} | {f['size_bytes'] / 1e6:.2f} | "
                         f"{latency[key]['median']:.0f} | {latency[key]['p90']:.0f} | {speedup} | "
                         f"{f['psnr_db']:.1f} | {f['threshold_db']:g} |")
    lines += ["", f"Student against teacher on {result['heldout_folder']} (whole images, uint8):",
              "", "| student | PSNR (dB) | SSIM | images |", "|---|---:|---:|---:|"]
    for name, a in result["agreement"].items():
        lines.append(f"| {name} | {a['psnr_db']:.2f} | {a['ssim']:.4f} | {a['images']} |")
    return "\n".join(lines) + "\n"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.teacher or not FLAGS.students:
        raise app.UsageError("--teacher and --students are required")
    bad = set(FLAGS.variants) - {"float32", "float16", "dynamic", "int8"}
    if bad or "float32" not in FLAGS.variants:
        raise app.UsageError(f"--variants: {sorted(bad) or 'float32 is needed (MACs)'}")
    dirs = [Path(FLAGS.teacher)] + [Path(s) for s in FLAGS.students]
    for d in dirs:
        if not (d / "generators" / f"{FLAGS.direction}.keras").is_file():
            raise app.UsageError(f"{d}: no generators/{FLAGS.direction}.keras")
    from tfstyle.core.images import list_images, read_image
    from tfstyle.cyclegan.generators import load_info
    from tfstyle.deploy.checks import center_square

    work = Path(FLAGS.work_dir)
    start = uptime()
    names = [d.name for d in dirs]
    if len(set(names)) != len(names):
        raise app.UsageError(f"model dirs need distinct names, got {names}")
    if FLAGS.known_truth:
        result = known_truth_result(dirs, FLAGS.direction, Path(FLAGS.known_truth))
        text = known_truth_table(result)
        print(text)
        work.mkdir(parents=True, exist_ok=True)
        (work / "known_truth.json").write_text(json.dumps(result, indent=2))
        if FLAGS.markdown_out:
            Path(FLAGS.markdown_out).write_text(text)
        return
    models = [describe(d, FLAGS.direction, work / d.name) for d in dirs]
    source = FLAGS.direction[0]
    folder = Path(load_info(dirs[0])["dataroot"]) / f"test{source}"
    heldout = [read_image(p) for p in list_images(folder)]
    if not heldout:
        raise app.UsageError(f"{folder}: no held-out images")
    probe = center_square(heldout[0], FLAGS.size).astype(np.float32)
    timing = time_rounds(models, probe, FLAGS.runs, FLAGS.threads)
    result = {
        "size": FLAGS.size, "runs": FLAGS.runs, "cpus": os.cpu_count(),
        "threads": FLAGS.threads or os.cpu_count(), "uptime_start": start,
        "timing": timing, "heldout_folder": str(folder),
        "agreement": {m["name"]: agreement(models[0]["generator"], m["generator"], heldout)
                      for m in models[1:]},
        "uptime_end": uptime(),
        "models": [{k: v for k, v in m.items() if k != "generator"} for m in models],
    }
    text = tables(result)
    print(text)
    (work / "mobile_bench.json").write_text(json.dumps(result, indent=2, default=str))
    if FLAGS.markdown_out:
        Path(FLAGS.markdown_out).write_text(text)


if __name__ == "__main__":
    app.run(main)
