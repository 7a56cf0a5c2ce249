"""Peak memory (RSS) of `python -m tfstyle.translate` on a large photo.

    python bench/translate_memory.py                       # 6000x4000, this checkout
    python bench/translate_memory.py --width=8000 --height=6000 --tile=256
    python bench/translate_memory.py --repo=/tmp/before        # another checkout

Writes a generator with the measured checkout's code (--ngf, --n_blocks; the memory of the
tile blending does not depend on it, its compute does) and a smooth synthetic JPEG of
--width x --height into a temporary folder, then runs the translate command twice in fresh
processes, on a 512x512 crop of the photo and on the whole photo, and prints each run's peak
resident memory (os.wait4's ru_maxrss) and the difference per pixel. The small run is the
fixed cost (Python, TensorFlow, the model, one tile).
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import app, flags

flags.DEFINE_integer("width", 6000, "Photo width.")
flags.DEFINE_integer("height", 4000, "Photo height.")
flags.DEFINE_integer("tile", 512, "--tile of the translate command.")
flags.DEFINE_integer("ngf", 8, "Generator filters in the first layer.")
flags.DEFINE_integer("n_blocks", 2, "Generator residual blocks.")
flags.DEFINE_string("repo", str(Path(__file__).resolve().parents[1]),
                    "Checkout whose tfstyle.translate is measured.")
FLAGS = flags.FLAGS


def write_inputs(folder: Path, width: int, height: int) -> tuple[Path, Path]:
    import numpy as np
    from PIL import Image
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    pixels = np.stack([127 + 120 * np.sin(x / 97), 127 + 120 * np.cos(y / 71),
                       127 + 120 * np.sin((x + y) / 151)], -1).astype(np.uint8)
    big, small = folder / "photo.jpg", folder / "crop.jpg"
    Image.fromarray(pixels).save(big, quality=90)
    Image.fromarray(pixels[:512, :512]).save(small, quality=90)
    return small, big


def write_model(repo: str, model_dir: Path, ngf: int, n_blocks: int) -> None:
    """A generator with seed-0 weights, saved by `repo`'s own code (a checkout reads the files
    it writes)."""
    code = ("import keras\n"
            "from tfstyle.cyclegan.generators import save_generators\n"
            "from tfstyle.cyclegan.networks import ResnetGenerator\n"
            "keras.utils.set_random_seed(0)\n"
            f"g = ResnetGenerator({ngf}, {n_blocks}, name='G')\n"
            "g.build((None, None, None, 3))\n"
            f"save_generators({str(model_dir)!r}, {{'AtoB': g}}, {{'bench': 'memory'}})\n")
    subprocess.run([sys.executable, "-c", code], cwd=repo, env=_env(repo), check=True,
                   capture_output=True)


def _env(repo: str) -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
            "PYTHONPATH": repo}


def peak_rss(repo: str, model_dir: Path, image: Path, out_dir: Path, tile: int):
    """(peak RSS in bytes, seconds) of one translate run in a fresh process."""
    log = out_dir.with_name("translate.log")
    started = time.perf_counter()
    with open(log, "w") as stderr:  # a file, not a pipe: nothing blocks the child
        proc = subprocess.Popen([sys.executable, "-m", "tfstyle.translate",
                                 f"--model_dir={model_dir}", f"--out_dir={out_dir}",
                                 f"--tile={tile}", str(image)],
                                cwd=repo, env=_env(repo), stdout=subprocess.DEVNULL,
                                stderr=stderr)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"translate failed on {image}:\n{log.read_text()[-2000:]}")
    return usage.ru_maxrss * 1024, seconds  # ru_maxrss is in KiB on Linux


def main(argv):
    del argv
    with tempfile.TemporaryDirectory(prefix="tfstyle-translate-memory-") as tmp:
        tmp = Path(tmp)
        small, big = write_inputs(tmp, FLAGS.width, FLAGS.height)
        write_model(FLAGS.repo, tmp / "model", FLAGS.ngf, FLAGS.n_blocks)
        base, base_s = peak_rss(FLAGS.repo, tmp / "model", small, tmp / "out", FLAGS.tile)
        peak, peak_s = peak_rss(FLAGS.repo, tmp / "model", big, tmp / "out", FLAGS.tile)
    pixels = FLAGS.width * FLAGS.height
    mib = 2 ** 20
    print(f"repo {FLAGS.repo}; generator ngf={FLAGS.ngf} n_blocks={FLAGS.n_blocks}; "
          f"--tile={FLAGS.tile}")
    print(f"512x512 crop:   peak RSS {base / mib:8.0f} MiB  ({base_s:.0f} s)")
    print(f"{FLAGS.width}x{FLAGS.height}: peak RSS {peak / mib:8.0f} MiB  ({peak_s:.0f} s)")
    print(f"difference: {(peak - base) / mib:.0f} MiB = {(peak - base) / pixels:.1f} bytes "
          "per pixel of the photo")


if __name__ == "__main__":
    app.run(main)
