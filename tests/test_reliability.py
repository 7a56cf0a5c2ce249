"""Reliability of image reading, translation and checkpoints (issue 14): hostile images are
skipped and counted, translate writes one distinct file per input with bounded memory, and
damaged checkpoint state or non-finite weights never cost a good checkpoint."""

import gc
import os
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfstyle.core.images import (
    ImageError,
    ImageLimits,
    read_image,
    to_model_range,
    to_uint8,
)
from tfstyle.core.training import (
    CheckpointError,
    Checkpoints,
    FiniteGuard,
    NonFiniteLossError,
    checkpoints_on_disk,
    write_run_config,
)
from tfstyle.core.keras_files import ModelFileError
from tfstyle.cyclegan import data as cyclegan_data
from tfstyle.cyclegan import generators, translator
from tfstyle.cyclegan.data import load_domain
from tfstyle.cyclegan.networks import ResnetGenerator
from tfstyle.cyclegan.trainer import CycleGANConfig
from tfstyle.style.data import ContentData, random_crop
from tfstyle.style.trainer import AutoencoderConfig

REPO = Path(__file__).resolve().parents[1]


def png_header_only(width, height):
    """A tiny PNG file whose header declares width x height RGB pixels (a decompression
    bomb as far as any reader that trusts the header is concerned)."""
    def chunk(kind, payload):
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0,
                                                                0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def save_rgb(path, height, width, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def cli(*args, timeout=120):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=timeout, check=False)


# --------------------------------------------------------------------------------------------
# Image limits
# --------------------------------------------------------------------------------------------


def test_decompression_bomb_header_is_an_image_error(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(30000, 30000))
    assert bomb.stat().st_size < 100
    with pytest.raises(ImageError, match="bomb.png.*max_image_pixels"):
        read_image(bomb)
    # Over tfstyle's limit (80 MP) but under Pillow's own: refused before decoding.
    big = tmp_path / "big.png"
    big.write_bytes(png_header_only(9000, 9000))
    with pytest.raises(ImageError, match="9000x9000 pixels, more than the limit of 80,000,000"):
        read_image(big)


def test_image_limits_are_configurable_and_checked_first(tmp_path):
    image = save_rgb(tmp_path / "a.png", 20, 30)
    assert read_image(image).shape == (20, 30, 3)
    with pytest.raises(ImageError, match="20 pixels"):
        read_image(image, ImageLimits(max_image_pixels=599))
    assert read_image(image, ImageLimits(max_image_pixels=600)).shape == (20, 30, 3)
    with pytest.raises(ImageError, match="max_image_bytes"):
        read_image(image, ImageLimits(max_image_bytes=100))
    with pytest.raises(ImageError, match="not a regular file"):
        read_image(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="--max_image_pixels"):
        ImageLimits(max_image_pixels=10 ** 12)  # beyond what Pillow opens at all


def test_training_data_skips_and_counts_bombs_and_leaves_no_temp_file(tmp_path, monkeypatch):
    folder = tmp_path / "trainA"
    folder.mkdir()
    for i in range(3):
        save_rgb(folder / f"{i}.png", 20, 24, seed=i)
    (folder / "bomb.png").write_bytes(png_header_only(30000, 30000))
    domain = load_domain(folder, 16, tmp_path / "cache")
    assert len(domain) == 3 and [name for name, _ in domain.skipped] == ["bomb.png"]
    assert "max_image_pixels" in domain.skipped[0][1]

    # A decoding that fails half-way (here: an unexpected error) leaves no temporary file.
    calls = []

    def failing(path, limits=None):
        calls.append(path)
        if len(calls) == 2:
            raise RuntimeError("disk vanished")
        return np.zeros((20, 24, 3), np.uint8)

    monkeypatch.setattr(cyclegan_data, "read_image", failing)
    with pytest.raises(RuntimeError):
        load_domain(folder, 17, tmp_path / "cache2", workers=1)
    assert not [p.name for p in (tmp_path / "cache2").iterdir() if "tmp" in p.name]


def test_content_images_skip_bombs_and_crop_panoramas_in_bounded_memory(tmp_path):
    files = [save_rgb(tmp_path / f"{i}.png", 40, 50, seed=i) for i in range(2)]
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(30000, 30000))
    data = ContentData([bomb, *files], load_size=48, crop_size=32, seed=0)
    assert data.load(0, (0.5, 0.5)).shape == (32, 32, 3)
    assert list(data.skipped) == [str(bomb)]
    # A 2 x 20000 strip resized to a 512 shorter side would be 512 x 5,120,000 (7.3 GiB);
    # only the crop is resampled.
    strip = np.random.default_rng(0).integers(0, 256, (2, 20000, 3), np.uint8)
    tracemalloc.start()
    crop = random_crop(strip, 512, 256, (0.5, 0.5))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert crop.shape == (256, 256, 3) and peak < 16 * 2 ** 20


def test_cache_larger_than_the_free_disk_is_refused_before_writing(tmp_path, monkeypatch):
    folder = tmp_path / "trainA"
    folder.mkdir()
    save_rgb(folder / "0.png", 20, 24)
    monkeypatch.setattr(cyclegan_data.shutil, "disk_usage",
                        lambda path: type("usage", (), {"free": 1000})())
    with pytest.raises(cyclegan_data.DataError, match="free"):
        load_domain(folder, 64, tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir())


@pytest.mark.parametrize("field", ["load_size", "crop_size"])
def test_sizes_have_upper_bounds(field):
    with pytest.raises(ValueError, match=f"--{field}=100000: must be at most 2048"):
        CycleGANConfig(dataroot="d", model_dir="m", **{"load_size": 2048, "crop_size": 256,
                                                        field: 100000})
    with pytest.raises(ValueError, match=f"--{field}=100000: must be at most 2048"):
        AutoencoderConfig(content_dir="c", model_dir="m", vgg_weights="random",
                          **{"load_size": 2048, "crop_size": 256, field: 100000})
    with pytest.raises(ValueError, match="--sample_size=100000: must be at most 2048"):
        AutoencoderConfig(content_dir="c", model_dir="m", vgg_weights="random",
                          sample_size=100000)


def test_memory_settings_are_bounded_and_lr_must_be_finite():
    with pytest.raises(ValueError, match="--pool_size"):
        CycleGANConfig(dataroot="d", model_dir="m", load_size=2048, crop_size=2048,
                       pool_size=1000)
    with pytest.raises(ValueError, match="--lr=inf: must be a finite number"):
        CycleGANConfig(dataroot="d", model_dir="m", lr=float("inf"))


# --------------------------------------------------------------------------------------------
# Translation
# --------------------------------------------------------------------------------------------


def _tiny_generator():
    keras.utils.set_random_seed(0)
    generator = ResnetGenerator(4, 1, name="G")
    generator.build((None, None, None, 3))
    return generator


@pytest.mark.parametrize("shape", [(1, 1), (1, 40), (3, 3), (5, 2), (17, 9)])
def test_tiny_and_thin_images_translate(shape):
    translate = translator.Translator(_tiny_generator(), tile=16, overlap=4)
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), np.uint8)
    out = translate(image)
    assert out.shape == (*shape, 3) and out.dtype == np.uint8


def _statistics_generator(x, training=False):
    """A generator whose output depends on each tile's statistics (as instance norm does), so
    overlapping tiles disagree and the blending shows."""
    return tf.tanh(x * 0.8 + tf.reduce_mean(x, axis=[1, 2], keepdims=True) * 3.0)


def test_tiled_blending_matches_the_float64_reference():
    translate = translator.Translator(_statistics_generator, tile=32, overlap=6)
    image = np.random.default_rng(1).integers(0, 256, (75, 101, 3), np.uint8)
    got = translate(image)
    out = np.zeros((75, 101, 3))
    weight = np.zeros((75, 101, 1))
    for top in translator._starts(75, 32, 6):
        for left in translator._starts(101, 32, 6):
            patch = image[top:top + 32, left:left + 32]
            h, w = patch.shape[:2]
            ramp = (translator._ramp(h, 6, top > 0, top + 32 < 75)[:, None]
                    * translator._ramp(w, 6, left > 0, left + 32 < 101)[None])[..., None]
            y = _statistics_generator(to_model_range(patch)[None]).numpy()[0]
            out[top:top + h, left:left + w] += y * ramp
            weight[top:top + h, left:left + w] += ramp
    reference = to_uint8(out / weight)
    assert np.abs(got.astype(int) - reference).max() <= 1
    assert (got != translator.Translator(_statistics_generator, tile=128)(image)).any()


def test_tiled_translation_memory_is_bounded():
    height, width = 1200, 1000
    image = np.random.default_rng(2).integers(0, 256, (height, width, 3), np.uint8)
    translate = translator.Translator(_statistics_generator, tile=64, overlap=8)
    translate(image[:100, :100])  # trace the function outside the measurement
    tracemalloc.start()
    out = translate(image)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert out.shape == image.shape
    # The uint8 output (3 bytes per pixel) and one band of tiles; the float64 full-size
    # buffers before issue 14 took over 100 bytes per pixel.
    assert peak < 8 * height * width, peak / (height * width)


def test_output_names_are_distinct_and_never_an_input(tmp_path):
    inputs = [tmp_path / "in" / n for n in ("a.jpg", "a.png", "b.jpg", "A.jpeg")]
    other = tmp_path / "other" / "b.jpg"
    names = [p.name for p in translator.output_paths(inputs + [other], tmp_path / "out")]
    assert names == ["a.jpg.png", "a.png", "b.png", "A.jpeg.png", "b.jpg.png"]
    # Translating a folder into itself keeps the inputs.
    same = translator.output_paths([tmp_path / "in" / "a.png"], tmp_path / "in")
    assert same == [tmp_path / "in" / "a.png.png"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("model")
    generator = _tiny_generator()
    generators.save_generators(root, {"AtoB": generator, "BtoA": generator}, {"step": 0})
    return root


def test_translate_cli_writes_one_file_per_input_and_skips_hostile_ones(model_dir, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    save_rgb(folder / "a.png", 20, 28, seed=1)
    Image.fromarray(np.full((24, 20, 3), 90, np.uint8)).save(folder / "a.jpg")
    save_rgb(folder / "dot.png", 1, 1)
    (folder / "bomb.png").write_bytes(png_header_only(30000, 30000))
    out = tmp_path / "out"
    result = cli("tfstyle.translate", f"--model_dir={model_dir}", f"--out_dir={out}",
                 str(folder))
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg.png", "a.png", "dot.png"]
    assert read_image(out / "a.png").shape == (20, 28, 3)
    assert read_image(out / "a.jpg.png").shape == (24, 20, 3)
    assert read_image(out / "dot.png").shape == (1, 1, 3)
    assert "translated 3 images" in result.stdout and "skipped 1" in result.stdout
    assert "bomb.png" in result.stdout and "Traceback" not in result.stderr


def test_translate_cli_refuses_an_unwritable_out_dir_before_loading(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    save_rgb(tmp_path / "a.png", 8, 8)
    result = cli("tfstyle.translate", f"--model_dir={tmp_path / 'no_model'}",
                 f"--out_dir={blocker / 'out'}", str(tmp_path / "a.png"))
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--out_dir" in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    huge_tile = cli("tfstyle.translate", f"--model_dir={tmp_path}", f"--out_dir={tmp_path}",
                    "--tile=4096", str(tmp_path / "a.png"))
    assert huge_tile.returncode != 0 and "--tile=4096: must be a multiple of 4 from 16 to 2048" \
        in huge_tile.stderr


def test_truncated_generator_file_is_called_damaged(model_dir, tmp_path):
    broken = tmp_path / "broken"
    (broken / "generators").mkdir(parents=True)
    data = (model_dir / "generators" / "AtoB.keras").read_bytes()
    (broken / "generators" / "AtoB.keras").write_bytes(data[:len(data) // 2])
    with pytest.raises(ModelFileError, match="AtoB.keras: damaged"):
        generators.load_generator(broken, "AtoB")
    save_rgb(tmp_path / "a.png", 8, 8)
    result = cli("tfstyle.translate", f"--model_dir={broken}", f"--out_dir={tmp_path / 'o'}",
                 str(tmp_path / "a.png"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "damaged" in result.stderr and "not found" not in result.stderr


# --------------------------------------------------------------------------------------------
# Checkpoints: damaged state files, non-finite weights
# --------------------------------------------------------------------------------------------


def test_truncated_autoencoder_file_is_called_damaged(tmp_path):
    import shutil

    from tfstyle.style.autoencoder import load_autoencoder
    old = Path(__file__).parent / "data" / "layout_v0_1" / "autoencoder"
    run = shutil.copytree(old, tmp_path / "run")
    path = run / "autoencoder" / "autoencoder.keras"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ModelFileError, match="autoencoder.keras: damaged"):
        load_autoencoder(run)
    result = subprocess.run(
        [sys.executable, "-m", "tfstyle.stylize", f"--model_dir={run}",
         f"--content={old.parent / 'README.md'}", f"--style={old.parent / 'README.md'}",
         f"--out={tmp_path / 'out.png'}"], capture_output=True, text=True,
        cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 2 and "damaged" in result.stderr
    assert "Traceback" not in result.stderr


def _saved_run(directory, steps=(2, 4, 6)):
    value = tf.Variable(0.0)
    checkpoints = Checkpoints(tf.train.Checkpoint(value=value), directory, max_to_keep=3)
    for step in steps:
        value.assign(float(step))
        checkpoints.save(step)
    return sorted(p.name for p in Path(directory).iterdir())


def _index_bytes(directory):
    return {p.name: p.read_bytes() for p in Path(directory).glob("ckpt-*")}


@pytest.mark.parametrize("damage", ["half", "empty", "garbage"])
def test_damaged_state_file_resumes_from_the_newest_checkpoint(tmp_path, damage):
    directory = tmp_path / "checkpoints"
    _saved_run(directory)
    state = directory / "checkpoint"
    text = state.read_bytes()
    cut = text.index(b"all_model_checkpoint_timestamps") + 10  # in the middle of a field
    state.write_bytes({"half": text[:cut], "empty": b"",
                       "garbage": b"\x00\xff{{ not a proto"}[damage])
    before = _index_bytes(directory)

    value = tf.Variable(-1.0)
    checkpoints = Checkpoints(tf.train.Checkpoint(value=value), directory, max_to_keep=3)
    assert checkpoints.restore().endswith("ckpt-6") and float(value.numpy()) == 6.0
    assert _index_bytes(directory) == before  # nothing overwritten
    assert (directory / "checkpoint.damaged").is_file()
    assert tf.train.latest_checkpoint(str(directory)).endswith("ckpt-6")
    # The rebuilt state adopts the older checkpoints: --keep_checkpoints applies to them.
    value.assign(8.0)
    checkpoints.save(8)
    assert [s for s, _ in checkpoints_on_disk(directory)] == [8, 6, 4]


def test_no_resumable_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    directory = tmp_path / "checkpoints"
    _saved_run(directory)
    for data in directory.glob("ckpt-*.data-*"):
        data.write_bytes(b"damaged")
    (directory / "checkpoint").write_bytes(b"")
    before = _index_bytes(directory)
    checkpoints = Checkpoints(tf.train.Checkpoint(value=tf.Variable(0.0)), directory)
    with pytest.raises(CheckpointError, match="ckpt-6, ckpt-4, ckpt-2"):
        checkpoints.restore()
    assert _index_bytes(directory) == before


def test_guard_refuses_to_write_non_finite_state_and_skips_it_on_resume(tmp_path):
    directory = tmp_path / "checkpoints"
    value = tf.Variable([1.0, 2.0])
    scale = tf.Variable(1.0)
    guard = FiniteGuard([value], probe=lambda: {"loss": tf.reduce_sum(value) * scale})
    checkpoints = Checkpoints(tf.train.Checkpoint(value=value), directory, guard=guard)
    checkpoints.save(1)
    value.assign([1.0, np.inf])
    with pytest.raises(NonFiniteLossError, match=r"step 2: non-finite weights.*ckpt-1"):
        checkpoints.save(2)
    value.assign([3e38, 3e38])  # finite, but the loss they give overflows
    with pytest.raises(NonFiniteLossError, match=r"step 3: .*fixed batch: loss=inf"):
        checkpoints.save(3)
    assert [s for s, _ in checkpoints_on_disk(directory)] == [1]

    # A checkpoint holding NaN (written by an older version) is skipped on resume.
    unguarded = Checkpoints(tf.train.Checkpoint(value=value), directory)
    value.assign([np.nan, 0.0])
    unguarded.save(5)
    value.assign([0.0, 0.0])
    resumed = Checkpoints(tf.train.Checkpoint(value=value), directory, guard=guard)
    assert resumed.restore().endswith("ckpt-1")
    np.testing.assert_array_equal(value.numpy(), [1.0, 2.0])


def test_a_worker_checkpoint_folder_is_removed_when_the_run_ends(tmp_path):
    checkpoints = Checkpoints(tf.train.Checkpoint(value=tf.Variable(1.0)), tmp_path / "c",
                              chief=False)
    checkpoints.save(1)
    folder = checkpoints._target
    assert folder.is_dir() and not (tmp_path / "c").exists()
    del checkpoints
    gc.collect()
    assert not folder.exists()


def test_run_config_is_checked_only_against_a_run_with_checkpoints(tmp_path):
    first = CycleGANConfig(dataroot="d", model_dir=str(tmp_path), crop_size=256)
    other = CycleGANConfig(dataroot="d", model_dir=str(tmp_path), crop_size=128)
    write_run_config(tmp_path, first, ("crop_size",))
    write_run_config(tmp_path, other, ("crop_size",))  # no checkpoint: nothing to protect
    _saved_run(tmp_path / "checkpoints", steps=(1,))
    with pytest.raises(ValueError, match="--crop_size=128 there, --crop_size=256 now"):
        write_run_config(tmp_path, first, ("crop_size",))
