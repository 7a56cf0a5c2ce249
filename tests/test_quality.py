"""The known-truth translation task (tfstyle.evaluation.known_truth) and the quality
benchmark's pieces: an unpaired split whose truth is the look applied to the test input, the
closed-gap / PSNR / SSIM scores, the grid, and the recipe flagfile's settings."""

import sys
from pathlib import Path

import numpy as np
import pytest

from tfstyle.core.data import DataError
from tfstyle.core.images import list_images, read_image, write_image
from tfstyle.cyclegan.trainer import CycleGANConfig
from tfstyle.evaluation import known_truth

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Three small 'photos' with smooth gradients and edges (tiles differ from each other)."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate(((24, 40), (32, 32), (40, 24))):
        y, x = np.mgrid[0:h, 0:w] / max(h, w)
        image = np.stack([x, y, 1 - x * y], -1) * 200 + rng.uniform(0, 55, (h, w, 3))
        image[h // 3: h // 2] = rng.uniform(0, 255, 3)
        write_image(folder / f"photo{i}.png", image)
        paths.append(folder / f"photo{i}.png")
    return paths


def test_split_is_unpaired_and_the_truth_is_the_look_of_the_input(photos, tmp_path):
    manifest = known_truth.make_task(tmp_path, tile=8, tiles_across=3, photos=photos)
    names = {split: {p.name for p in list_images(tmp_path / split)}
             for split in known_truth.SPLITS}
    assert manifest["testA"] == len(names["testA"]) > 0
    assert manifest["trainA"] == manifest["trainB"] == len(names["trainA"]) > 0
    assert not (names["trainA"] & names["trainB"] or names["trainA"] & names["testA"]
                or names["trainB"] & names["testA"])
    test = known_truth.load_test_set(tmp_path)
    assert test.inputs.shape[1:] == (8, 8, 3)
    np.testing.assert_array_equal(test.truths, known_truth.apply_look(test.inputs))
    assert np.abs(test.truths.astype(int) - test.inputs).mean() > 5  # the look is visible
    # Domain B is the look of tiles that are in no other split: no tile of trainB, undone,
    # equals a tile of trainA (the tiles of these photos all differ).
    a = {read_image(p).tobytes() for p in list_images(tmp_path / "trainA")}
    b = {p.name: read_image(p) for p in list_images(tmp_path / "trainB")}
    looks_of_a = {known_truth.apply_look(read_image(p)).tobytes()
                  for p in list_images(tmp_path / "trainA")}
    assert not looks_of_a & {v.tobytes() for v in b.values()} and a
    # The same call keeps the task; another task in the same folder is refused.
    assert known_truth.make_task(tmp_path, tile=8, tiles_across=3, photos=photos) == manifest
    with pytest.raises(DataError, match="different known-truth task"):
        known_truth.make_task(tmp_path, tile=8, tiles_across=3, photos=photos, seed=1)


def test_look_is_per_pixel_and_deterministic():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    look = known_truth.apply_look(pixels)
    assert look.dtype == np.uint8 and look.shape == pixels.shape
    np.testing.assert_array_equal(known_truth.apply_look(pixels[2:3, 4:5]), look[2:3, 4:5])
    grey = known_truth.apply_look(np.full((1, 1, 3), 40, np.uint8))[0, 0]
    assert grey[2] > grey[0]  # teal shadows
    light = known_truth.apply_look(np.full((1, 1, 3), 220, np.uint8))[0, 0]
    assert light[0] > light[2]  # orange highlights


def test_scores_on_tiny_images():
    rng = np.random.default_rng(2)
    inputs = rng.integers(0, 256, (3, 12, 12, 3), dtype=np.uint8)
    truths = known_truth.apply_look(inputs)
    same = known_truth.scores(inputs, inputs, truths)
    assert same["closed_gap"] == 0.0 and same["l1"] == same["l1_input"] > 0
    assert same["psnr"] == same["psnr_input"] and same["ssim"] == same["ssim_input"]
    perfect = known_truth.scores(inputs, truths, truths)
    assert perfect["closed_gap"] == 1.0 and perfect["l1"] == 0 and perfect["ssim"] > 0.999
    halfway = ((inputs.astype(np.float64) + truths) / 2).round().astype(np.uint8)
    half = known_truth.scores(inputs, halfway, truths)
    assert 0.45 < half["closed_gap"] < 0.55 and half["psnr"] > same["psnr"]
    worse = known_truth.scores(inputs, 255 - truths, truths)
    assert worse["closed_gap"] < 0
    with pytest.raises(ValueError, match="equal"):
        known_truth.scores(inputs, inputs[:2], truths)


def test_grid_rows_are_input_output_truth():
    inputs = np.zeros((4, 4, 4, 3), np.uint8)
    outputs, truths = inputs + 100, inputs + 200
    picture = known_truth.grid(inputs, outputs, truths, count=2, zoom=2, gap=1)
    assert picture.shape == (3 * 8 + 2, 2 * 8 + 1, 3)
    assert (picture[:8, :8] == 0).all() and (picture[9:17, :8] == 100).all()
    assert (picture[18:, 9:] == 200).all() and (picture[8] == 255).all()


def test_no_photos_is_a_one_line_error(tmp_path):
    with pytest.raises(DataError, match="scikit-image"):
        known_truth.make_task(tmp_path, photos=[])


def test_recipe_flagfile_gives_valid_settings_for_the_benchmark():
    sys.path.insert(0, str(REPO / "bench"))
    import quality_runs
    recipe = REPO / "configs" / "recommended.flags"
    settings = quality_runs.run_settings("recipe", recipe)
    assert settings["model"] == "cut" and settings["upsample"] == "resize"
    assert settings["residual"] is True
    assert not set(settings) & set(quality_runs.SIZE_KEYS)
    assert CycleGANConfig(dataroot="d", model_dir="m", **settings).model == "cut"
    for name in quality_runs.OPTIONS:
        CycleGANConfig(dataroot="d", model_dir="m", **quality_runs.run_settings(name, recipe))
    with pytest.raises(ValueError, match="unknown run"):
        quality_runs.run_settings("nope", recipe)
