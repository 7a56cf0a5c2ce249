"""FID, KID, PSNR, SSIM, L1 and the InceptionV3 feature extractor."""

import warnings

import h5py
import keras
import numpy as np
import pytest

from tfstyle.core import synthetic
from tfstyle.core.images import list_images, read_image
from tfstyle.evaluation import inception, metrics


def noisy(images, sigma, seed):
    rng = np.random.default_rng(seed)
    return [np.clip(np.rint(i + rng.normal(0, sigma, i.shape)), 0, 255).astype(np.uint8)
            for i in images]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = synthetic.make_dataset(tmp_path_factory.mktemp("data"), train=1, test=6, size=40)
    return [read_image(p) for p in list_images(root / "testA")]


# ------------------------------------------------------------------------------------------
# FID
# ------------------------------------------------------------------------------------------


def test_frechet_distance_closed_form_and_both_routes_agree():
    rng = np.random.default_rng(0)
    # Diagonal covariances commute: distance = |mu1 - mu2|^2 + sum (s1 - s2)^2 (s: std devs).
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = rng.uniform(0.5, 2, 5), rng.uniform(0.5, 2, 5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((s1 - s2) ** 2)
    assert metrics.frechet_distance(mu1, np.diag(s1 ** 2), mu2, np.diag(s2 ** 2)) \
        == pytest.approx(expected, rel=1e-10)
    # A full-rank, non-commuting case against sqrtm via the eigendecomposition of S1 S2.
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    c1, c2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    eig = np.linalg.eigvals(c1 @ c2)
    assert np.abs(eig.imag).max() < 1e-8
    direct = np.trace(c1) + np.trace(c2) - 2 * np.sqrt(eig.real).sum()
    assert metrics.frechet_distance(np.zeros(6), c1, np.zeros(6), c2) \
        == pytest.approx(direct, rel=1e-9)
    # fid() takes the n1 x n2 route when the sets are small, the D x D route otherwise.
    for n1, n2, d in ((5, 7, 64), (80, 60, 6)):
        x = rng.normal(size=(n1, d))
        y = rng.normal(size=(n2, d)) * 1.3 + 0.4
        via_cov = metrics.frechet_distance(*metrics.feature_statistics(x),
                                           *metrics.feature_statistics(y))
        assert metrics.fid(x, y) == pytest.approx(via_cov, rel=1e-8)
    with pytest.raises(ValueError):
        metrics.fid(x[:1], y)


def small_features(images):
    """A tiny fixed feature extractor: random ReLU projection of 8x8 colour thumbnails."""
    from PIL import Image

    thumbs = np.stack([np.asarray(Image.fromarray(i).resize((8, 8), Image.BILINEAR),
                                  np.float64).ravel() / 255.0 for i in images])
    w = np.random.default_rng(42).normal(size=(thumbs.shape[1], 64))
    return np.maximum(thumbs @ w, 0.0)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise(images):
    sets = images * 4  # 24 images
    clean = small_features(sets)
    assert metrics.fid(clean, clean) == pytest.approx(0.0, abs=1e-9)
    values = [metrics.fid(clean, small_features(noisy(sets, sigma, 1)))
              for sigma in (4, 16, 48)]
    assert 0 < values[0] < values[1] < values[2]


def test_fid_with_random_inception_weights(images):
    """The real InceptionV3 (random weights, 299 px): plumbing, self ~0, grows with noise."""
    keras.utils.set_random_seed(3)
    features = inception.InceptionFeatures("random", batch_size=18)
    both = features(images + noisy(images, 12, 1) + noisy(images, 48, 2))
    assert both.shape == (18, inception.FEATURE_DIM) and both.dtype == np.float64
    assert np.isfinite(both).all() and both.std() > 0
    clean, light, heavy = both[:6], both[6:12], both[12:]
    far = metrics.fid(clean, heavy)
    assert metrics.fid(clean, clean) <= 1e-9 * far
    assert 0 < metrics.fid(clean, light) < far
    # Features of a batch do not depend on the batching; any input size works.
    again = inception.InceptionFeatures(model=features.model, batch_size=4)(images[:5])
    np.testing.assert_allclose(again, clean[:5], rtol=1e-4, atol=1e-9)
    assert features([np.zeros((13, 71, 3), np.uint8)]).shape == (1, 2048)


# ------------------------------------------------------------------------------------------
# KID
# ------------------------------------------------------------------------------------------


def direct_mmd2(x, y):
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, by explicit loops."""
    d = x.shape[1]
    k = lambda a, b: (np.dot(a, b) / d + 1.0) ** 3  # noqa: E731
    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


def test_kid_matches_a_direct_numpy_computation():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 12)), rng.normal(size=(40, 12)) * 1.2 + 0.3
    # Subsets: the same draws as kid() makes, evaluated by loops.
    result = metrics.kid(x, y, num_subsets=5, subset_size=10, seed=7)
    draws = np.random.default_rng(7)
    expected = []
    for _ in range(5):
        xs = x[draws.choice(30, 10, replace=False)]
        ys = y[draws.choice(40, 10, replace=False)]
        expected.append(direct_mmd2(xs, ys))
    assert result.value == pytest.approx(np.mean(expected), rel=1e-10)
    assert result.se == pytest.approx(np.std(expected, ddof=1), rel=1e-10)
    assert (result.se_method, result.subset_size, result.num_subsets) == ("subsets", 10, 5)

    # Whole sets (n <= subset size): the full estimate, and the jackknife standard error by
    # actually leaving each image out.
    x, y = x[:9], y[:11]
    full = metrics.kid(x, y, num_subsets=3, subset_size=1000)
    assert full.subset_size == 9 and full.se_method == "subsets"  # y is still subsampled
    same = metrics.kid(x, y[:9], num_subsets=3)
    assert same.value == pytest.approx(direct_mmd2(x, y[:9]), rel=1e-10)
    assert same.se_method == "jackknife"
    n, m = len(x), 9
    loo_x = np.array([direct_mmd2(np.delete(x, i, 0), y[:9]) for i in range(n)])
    loo_y = np.array([direct_mmd2(x, np.delete(y[:9], j, 0)) for j in range(m)])
    jack = np.sqrt((n - 1) / n * np.sum((loo_x - loo_x.mean()) ** 2)
                   + (m - 1) / m * np.sum((loo_y - loo_y.mean()) ** 2))
    assert same.se == pytest.approx(jack, rel=1e-9)
    # Same distribution: KID near 0 within a few standard errors; shifted: clearly positive.
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    k0 = metrics.kid(a, b, num_subsets=20, subset_size=100)
    assert abs(k0.value) < 4 * k0.se
    k1 = metrics.kid(a, b + 1.0, num_subsets=20, subset_size=100)
    assert k1.value > 10 * k1.se


# ------------------------------------------------------------------------------------------
# Per-image metrics
# ------------------------------------------------------------------------------------------


def test_psnr_ssim_l1(images):
    a = images[0]
    assert metrics.psnr(a, a) == metrics.PSNR_CAP
    b = a.astype(np.int16) + 10
    b = np.clip(b, 0, 255).astype(np.uint8)
    mse = np.mean((a.astype(float) - b) ** 2)
    assert metrics.psnr(a, b) == pytest.approx(10 * np.log10(255 ** 2 / mse))
    assert metrics.l1(a, b) == pytest.approx(np.mean(np.abs(a.astype(float) - b)) / 255)
    assert metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    s1, s2 = metrics.ssim(a, noisy([a], 10, 0)[0]), metrics.ssim(a, noisy([a], 40, 0)[0])
    assert 1.0 > s1 > s2 > 0.0
    assert metrics.ssim(a[:6, :7], a[:6, :7]) == pytest.approx(1.0, abs=1e-6)  # tiny images
    # The batched mean equals the mean of single SSIMs, also over mixed shapes.
    firsts = [a, a, a[:20, :30], images[1]]
    seconds = noisy(firsts, 20, 3)
    assert metrics.mean_ssim(firsts, seconds) == pytest.approx(
        np.mean([metrics.ssim(x, y) for x, y in zip(firsts, seconds)]), rel=1e-5)
    assert np.isnan(metrics.mean_ssim([], []))
    with pytest.raises(ValueError):
        metrics.psnr(a, a[:10])
    assert np.isnan(metrics.mean_of(metrics.psnr, [], []))


# ------------------------------------------------------------------------------------------
# InceptionV3 weights
# ------------------------------------------------------------------------------------------


def write_legacy_h5(path, model, with_top):
    """Writes `model`'s weights in the legacy Keras HDF5 layout keras.applications ships."""
    layers = [(layer.name, [np.asarray(w) for w in
                            layer.trainable_weights + layer.non_trainable_weights])
              for layer in model.layers if layer.weights]
    if with_top:
        layers.append(("predictions", [np.zeros((2048, 1000), np.float32),
                                       np.zeros(1000, np.float32)]))
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [n.encode() for n, _ in layers]
        for name, arrays in layers:
            group = f.create_group(name)
            names = [f"{name}/w{i}:0" for i in range(len(arrays))]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for n, array in zip(names, arrays):
                group.create_dataset(n, data=array)


def test_inception_weight_rules(tmp_path, monkeypatch):
    keras.utils.set_random_seed(5)
    source = inception.load_inception("random", input_size=75)
    expected = [np.asarray(w) for w in source.weights]
    target = inception.load_inception("random", input_size=75)
    assert not np.array_equal(np.asarray(target.weights[0]), expected[0])
    write_legacy_h5(tmp_path / "notop.h5", source, with_top=False)
    write_legacy_h5(tmp_path / "full.h5", source, with_top=True)
    source.save_weights(tmp_path / "v3.weights.h5")
    for name in ("full.h5", "v3.weights.h5"):
        for w in target.weights:  # scramble, then load
            w.assign(np.zeros(w.shape, w.dtype))
        inception.load_weights_into(target, tmp_path / name)
        for w, e in zip(target.weights, expected):
            np.testing.assert_array_equal(np.asarray(w), e)
    loaded = inception.load_inception(tmp_path / "notop.h5", input_size=75)
    for w, e in zip(loaded.weights, expected):
        np.testing.assert_array_equal(np.asarray(w), e)
    assert not loaded.trainable
    # Wrong files and missing files say what is wrong.
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        inception.load_inception(tmp_path / "missing.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["layer_names"] = [b"dense"]
        f.create_group("dense").attrs["weight_names"] = [b"dense/kernel:0"]
        f["dense"].create_dataset("dense/kernel:0", data=np.zeros((3, 3)))
    with pytest.raises(inception.InceptionWeightsMismatchError, match="InceptionV3"):
        inception.load_weights_into(target, tmp_path / "other.h5")
    # imagenet: the Keras cache or a download; without either, a message with both remedies.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(inception.InceptionWeightsUnavailableError) as err:
        inception.load_inception("imagenet")
    message = str(err.value)
    assert str(tmp_path / "keras_home" / "models" / inception.imagenet_weights_file()[0]) \
        in message and "--inception_weights=" in message
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        inception.load_inception(None, input_size=75)
    assert any("RANDOM" in str(w.message) for w in caught)
    with pytest.raises(ValueError, match="75"):
        inception.load_inception("random", input_size=32)
