r"""CPU latency of every artifact of an export (python -m export.generators output).

    python bench/export_latency.py --export_dir=OUT [--runs=10] [--threads=0] \
        [--markdown_out=FILE]

For each model of OUT: the Keras generator it came from (when its model_dir is still there),
the SavedModel's serving_default (float32 [1, S, S, 3]) and translate_bytes (one S x S PNG),
and each LiteRT file (interpreter.invoke only), all at the export's LiteRT size S. The runs
are interleaved (each round runs every artifact once, after one warm-up round), so that load
from other processes on a shared machine hits all artifacts alike. Prints a markdown table
of median and 90th-percentile latency.

To make a realistically sized export to measure, with random-initialised generators
(ngf 64, 9 blocks) and/or the full-width CBAM auto-encoder cut at relu4_1 (random VGG19) with
a built-in style at --style_size; latency does not depend on the weights, agreement does:

    python bench/export_latency.py --setup=resnet,se,da,stylizer --work_dir=/tmp/export_bench \
        --export_dir=/tmp/export_bench/out
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
WARMUP = 1
flags.DEFINE_string("export_dir", None, "An export's OUT directory.")
flags.DEFINE_integer("runs", 5, "Timed runs per artifact (interleaved rounds).")
flags.DEFINE_integer("threads", 0, "LiteRT threads (0: all cores).")
flags.DEFINE_string("markdown_out", None, "Also write the table to this file.")
flags.DEFINE_list("setup", [], "First make random-initialised model dirs with these blocks "
                  "(resnet, se, da) or the relu4_1 CBAM auto-encoder (stylizer) under "
                  "--work_dir and export them to --export_dir.")
flags.DEFINE_integer("style_size", 256, "--setup=stylizer: the baked style's longer side.")
flags.DEFINE_string("work_dir", "/tmp/export_bench", "Where --setup writes model dirs and data.")
flags.DEFINE_integer("size", 256, "--setup: LiteRT size and image size.")
flags.DEFINE_integer("calibration_images", 32, "--setup: int8 calibration images.")
flags.DEFINE_list("min_psnr", [], "--setup: threshold overrides KIND=dB, as export.generators.")


def _pictures(folder: Path, count: int, size: int, rng) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        yy, xx = np.mgrid[0:size + 32, 0:size + 64] / size
        pic = np.stack([np.sin(xx * rng.uniform(2, 8) + rng.uniform(0, 6)),
                        np.cos(yy * rng.uniform(2, 8)), np.sin((xx + yy) * 3)], -1)
        pic = np.clip((pic * 0.5 + 0.5) * 255 + rng.normal(0, 6, pic.shape), 0, 255)
        Image.fromarray(pic.astype(np.uint8)).save(folder / f"{i}.png")


def setup(kinds, work_dir: Path, export_dir: Path, size: int, calibration: int, min_psnr,
          style_size: int):
    """Random-initialised full-size generators (AtoB only) and/or the relu4_1 CBAM
    auto-encoder with a built-in style, smooth synthetic images, exported to export_dir."""
    from PIL import Image

    from tfstyle.deploy.exporter import ExportOptions, export_generators

    rng = np.random.default_rng(0)
    data = work_dir / "data"
    _pictures(data / "trainA", max(calibration, 4), size, rng)
    _pictures(data / "testA", 4, size, rng)
    common = dict(tflite_size=size, calibration_images=calibration, overwrite=True, version=1,
                  latency_runs=2, min_psnr=tuple(min_psnr))
    for kind in kinds:
        if kind == "stylizer":
            from tfstyle.style.autoencoder import AttentionAutoencoder, save_autoencoder
            from tfstyle.style.data import builtin_style_image
            from tfstyle.style.stylizer import StylizeOptions

            model = AttentionAutoencoder("relu4_1", "cbam", encoder_weights="random")
            model.build((None, None, None, 3))
            model_dir = work_dir / "random_cbam_relu4_1"
            save_autoencoder(model_dir, model, {"vgg_weights": "random", "step": 0,
                                                "content_dir": str(data / "testA")})
            style = work_dir / "style.png"
            Image.fromarray(builtin_style_image(style_size)).save(style)
            export_generators(model_dir, export_dir, ExportOptions(
                styles=(f"strokes={style}",), stylize=StylizeOptions(style_size=style_size),
                **common))
            continue
        from tfstyle.cyclegan.generators import save_generators
        from tfstyle.cyclegan.networks import ResnetGenerator

        generator = ResnetGenerator(ngf=64, n_blocks=9, block=kind)
        generator.build((None, None, None, 3))
        model_dir = work_dir / f"random_{kind}"
        save_generators(model_dir, {"AtoB": generator},
                        {"block": kind, "ngf": 64, "n_blocks": 9, "crop_size": size,
                         "load_size": size, "dataroot": str(data), "step": 0, "epoch": 0})
        export_generators(model_dir, export_dir, ExportOptions(**common))


def keras_reference(artifact: dict):
    """The Keras model an exported artifact came from, when its model_dir is still there:
    a generator, or the auto-encoder with the artifact's style baked in; else None."""
    source = artifact.get("source", {})
    model_dir = source.get("model_dir")
    if not model_dir:
        return None
    if artifact.get("model_kind") == "stylizer":
        from tfstyle.core.images import read_image
        from tfstyle.deploy.style_model import fixed_style_models
        from tfstyle.style.autoencoder import autoencoder_dir, load_autoencoder
        from tfstyle.style.stylizer import options_from

        style = source.get("style_image")
        if not (autoencoder_dir(model_dir) / "autoencoder.keras").is_file() or \
                not style or not Path(style).is_file():
            return None
        model, _ = load_autoencoder(model_dir)
        return fixed_style_models(model, read_image(style), options_from(source["stylize"]))[0]
    from tfstyle.cyclegan.generators import load_generator

    direction = artifact.get("direction")
    if not (Path(model_dir) / "generators" / f"{direction}.keras").is_file():
        return None
    return load_generator(model_dir, direction)


def _latest_versions(serving_root: Path):
    for model in sorted(p for p in serving_root.iterdir() if p.is_dir()):
        versions = [int(v.name) for v in model.iterdir() if v.name.isdigit()]
        if versions:
            yield model.name, model / str(max(versions))


def measure(export_dir: Path, runs: int, threads: int):
    import tensorflow as tf
    from PIL import Image

    from tfstyle.core.images import to_model_range
    from tfstyle.deploy import checks
    from tfstyle.deploy.litert import LiteModel

    report = json.loads((export_dir / "export_report.json").read_text())
    size = report["tflite_size"]
    agreement = {a["artifact"]: a.get("agreement", {}).get("psnr_db") for a in report["artifacts"]}
    pixels = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray(pixels[0].astype(np.uint8)).save(buffer, format="PNG")
    png = buffer.getvalue()
    items = []  # (model, artifact, size_bytes, psnr_db, callable)
    listing = export_dir / "tflite" / "models.json"
    lite_models = json.loads(listing.read_text())["models"] if listing.is_file() else []
    serving_root = export_dir / "serving"
    serving_paths = dict(_latest_versions(serving_root)) if serving_root.is_dir() else {}
    names = sorted({m["model_name"] for m in lite_models} | set(serving_paths))
    artifacts = {a["model_name"]: a for a in report["artifacts"]}
    for name in names:
        generator = keras_reference(artifacts.get(name, {}))
        if generator is not None:
            run = tf.function(lambda x, g=generator: g(to_model_range(x), training=False))
            items.append((name, "keras", None, None, lambda r=run: r(pixels)))
        if name in serving_paths:
            path = serving_paths[name]
            loaded = tf.saved_model.load(str(path))
            fn, fb = loaded.signatures["serving_default"], loaded.signatures["translate_bytes"]
            size_bytes = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            items.append((name, "savedmodel serving_default", size_bytes,
                          agreement.get(f"serving/{name}/{path.name}"),
                          lambda f=fn: f(images=tf.constant(pixels))))
            items.append((name, "savedmodel translate_bytes (PNG in/out)", None, None,
                          lambda f=fb: f(image_bytes=tf.constant([png]))))
        for entry in (m for m in lite_models if m["model_name"] == name):
            lite = LiteModel((export_dir / "tflite" / entry["file"]).read_bytes(),
                             entry["variant"], threads or os.cpu_count())
            lite.run(pixels[0])  # fills the input tensor; the timed part is invoke()
            items.append((name, f"tflite {entry['variant']}", entry["size_bytes"],
                          entry["agreement"]["psnr_db"], lite.interpreter.invoke))
    # Interleaved: every timed round runs each artifact once, so a change of load on a
    # shared machine affects all artifacts alike rather than the ones measured at that time.
    times = [[] for _ in items]
    for round_ in range(WARMUP + runs):
        for i, item in enumerate(items):
            start = time.perf_counter()
            item[-1]()
            if round_ >= WARMUP:
                times[i].append((time.perf_counter() - start) * 1000.0)
        print(f"round {round_ + 1}/{WARMUP + runs} done", file=sys.stderr, flush=True)
    rows = [(model, artifact, size_bytes,
             checks.Latency(float(np.median(t)), float(np.percentile(t, 90)), len(t)), psnr_db)
            for (model, artifact, size_bytes, psnr_db, _), t in zip(items, times)]
    return size, rows


def table(size, rows, runs, threads) -> str:
    lines = [f"Input {size}x{size}, batch 1; {runs} timed rounds after {WARMUP} warm-up round "
             "(each round runs every artifact once); LiteRT "
             f"threads: {threads or os.cpu_count()}; CPU count: {os.cpu_count()}.", "",
             "| model | artifact | size (MB) | median (ms) | p90 (ms) | PSNR vs Keras (dB) |",
             "|---|---|---:|---:|---:|---:|"]
    for model, artifact, size_bytes, latency, psnr_db in rows:
        mb = f"{size_bytes / 1e6:.1f}" if size_bytes else ""
        value = "" if psnr_db is None else f"{psnr_db:.1f}"
        lines.append(f"| {model} | {artifact} | {mb} | {latency.median_ms:.0f} | "
                     f"{latency.p90_ms:.0f} | {value} |")
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    if not FLAGS.export_dir:
        raise app.UsageError("--export_dir: required")
    if FLAGS.runs < 1:
        raise app.UsageError("--runs: must be at least 1")
    export_dir = Path(FLAGS.export_dir)
    if FLAGS.setup:
        for kind in FLAGS.setup:
            if kind not in ("resnet", "se", "da", "stylizer"):
                raise app.UsageError(f"--setup: {kind!r} is not resnet, se, da or stylizer")
        setup(FLAGS.setup, Path(FLAGS.work_dir), export_dir, FLAGS.size,
              FLAGS.calibration_images, FLAGS.min_psnr, FLAGS.style_size)
    if not (export_dir / "export_report.json").is_file():
        raise app.UsageError(f"--export_dir: {export_dir} holds no export_report.json")
    size, rows = measure(export_dir, FLAGS.runs, FLAGS.threads)
    text = table(size, rows, FLAGS.runs, FLAGS.threads)
    print(text)
    if FLAGS.markdown_out:
        Path(FLAGS.markdown_out).write_text(text)


if __name__ == "__main__":
    app.run(main)
