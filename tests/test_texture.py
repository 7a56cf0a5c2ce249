"""Texture words to styles: NSV, providers, clustering, Gatys, CLI (CPU, random tiny VGG19)."""

import dataclasses
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
import unicodedata
import urllib.parse
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import app, flags
from PIL import Image

from tfstyle import texture
from tfstyle.core import fetch, vgg
from tfstyle.evaluation import studies
from tfstyle.texture_words import clustering, gatys, pipeline, providers, style_vector
from tfstyle.texture_words.contact_sheet import contact_sheet

REPO = Path(__file__).resolve().parents[1]
WORD = "ふさふさ"


@pytest.fixture(scope="module")
def base():
    keras.utils.set_random_seed(7)
    return vgg.load_vgg19(weights="random")


@pytest.fixture(scope="module")
def descriptor_model(base):
    return pipeline.descriptor_extractor(base)


def stripes(size=32, period=6.0, phase=0.0, colors=((250, 120, 0), (0, 0, 230))):
    y = np.arange(size, dtype=np.float32)[:, None, None]
    t = 0.5 + 0.5 * np.sin(2 * np.pi * y / period + phase)
    img = t * np.array(colors[0], np.float32) + (1 - t) * np.array(colors[1], np.float32)
    return np.broadcast_to(img, (size, size, 3)).astype(np.uint8)


def noise(size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def png_bytes(pixels):
    import io

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Neural Style Vector
# --------------------------------------------------------------------------------------------


def test_nsv_length_is_n_n_plus_1_over_2_per_layer_with_unit_norm(descriptor_model):
    feats = descriptor_model(np.stack([noise(seed=1), stripes()]).astype(np.float32))
    parts = style_vector.neural_style_vector(feats, concat=False)
    assert list(parts) == list(style_vector.NSV_LAYERS)
    for name, v in parts.items():
        n = vgg.layer_channels(name)
        assert v.shape == (2, n * (n + 1) // 2), name
        np.testing.assert_allclose(tf.norm(v, axis=-1).numpy(), 1.0, rtol=1e-5)
    full = style_vector.neural_style_vector(feats)
    assert full.shape == (2, style_vector.style_vector_length()) == (2, 305888)
    np.testing.assert_allclose(tf.norm(full, axis=-1).numpy(), np.sqrt(5), rtol=1e-5)
    # The seed's example: 512 channels (conv5_1) -> 131,328 values.
    v512 = style_vector.layer_style_vector(tf.random.normal([1, 2, 2, 512]))
    assert v512.shape == (1, 131328)


def test_nsv_follows_its_definition():
    f = np.random.default_rng(0).normal(size=(1, 3, 3, 4)).astype(np.float32)
    v = style_vector.neural_style_vector({"x": f}).numpy()[0]
    flat = f.reshape(9, 4)
    g = flat.T @ flat / 9.0  # Gram normalised by H*W
    tri = np.array([g[i, j] for i in range(4) for j in range(i + 1)])  # G11, G21, G22, G31...
    expect = np.sign(tri) * np.sqrt(np.abs(tri))
    np.testing.assert_allclose(v, expect / np.linalg.norm(expect), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(style_vector.gram_matrix(f).numpy()[0], g, rtol=1e-4, atol=1e-5)


def test_signed_square_root_keeps_signs():
    got = style_vector.signed_sqrt(tf.constant([-4.0, -0.25, 0.0, 9.0])).numpy()
    np.testing.assert_allclose(got, [-2.0, -0.5, 0.0, 3.0])
    # Two anti-correlated channels: G_21 < 0 must stay negative in the vector.
    a = np.random.default_rng(3).normal(size=(1, 4, 4, 1)).astype(np.float32)
    v = style_vector.neural_style_vector({"x": np.concatenate([a, -a], -1)}).numpy()[0]
    g11 = float((a**2).mean())
    np.testing.assert_allclose(v, np.array([1.0, -1.0, 1.0]) * np.sqrt(g11) / np.sqrt(3 * g11),
                               rtol=1e-5)


# --------------------------------------------------------------------------------------------
# Clustering
# --------------------------------------------------------------------------------------------


def test_kmeans_is_deterministic_and_finds_blobs():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = np.concatenate([c + rng.normal(scale=0.5, size=(12, 2)) for c in centres])
    rng.shuffle(x)
    a = clustering.kmeans(x, k=3, seed=5)
    b = clustering.kmeans(x, k=3, seed=5)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.labels[0] == 0  # canonical numbering
    truth = np.argmin(((x[:, None] - centres[None]) ** 2).sum(-1), 1)
    for j in range(3):  # every found cluster is exactly one true blob
        assert len(set(truth[a.labels == j])) == 1 and (a.labels == j).sum() == 12
    with pytest.raises(ValueError):
        clustering.kmeans(x[:2], k=3)


def test_clustering_separates_two_texture_sets(descriptor_model):
    rng = np.random.default_rng(0)
    striped = [stripes(period=p, phase=ph) for p, ph in zip(rng.uniform(5, 8, 5),
                                                             rng.uniform(0, 6, 5))]
    noisy = [noise(seed=s) for s in range(5)]
    order = [0, 5, 1, 6, 2, 7, 3, 8, 4, 9]
    images = [(striped + noisy)[i] for i in order]
    truth = np.array([i >= 5 for i in order])
    desc = pipeline.describe_images(images, descriptor_model, style_size=32)
    assert desc.grams["block5_conv1"].shape == (10, 512, 512)
    for seed in (0, 1):
        labels = clustering.kmeans(pipeline.clustering_matrix(desc, "nsv"), k=2,
                                   seed=seed).labels
        assert {tuple(truth[labels == j]) for j in range(2)} == {(False,) * 5, (True,) * 5}


def test_auto_picks_the_most_coherent_cluster_of_useful_size():
    rng = np.random.default_rng(1)
    tight = 5 + rng.normal(scale=0.1, size=(4, 3))
    loose = rng.normal(scale=2.0, size=(5, 3))
    pair = -5 + rng.normal(scale=0.001, size=(2, 3))  # near-duplicates only
    vectors = np.concatenate([loose, tight, pair])
    labels = np.array([0] * 5 + [1] * 4 + [2] * 2)
    summaries = clustering.summarize_clusters(labels, vectors)
    assert [s.size for s in summaries] == [5, 4, 2]
    assert summaries[2].spread < summaries[1].spread < summaries[0].spread
    # 11 images, 3 clusters: clusters of >= 2 count, so the tightest (the pair) wins.
    assert clustering.min_cluster_size(11, 3) == 2
    assert clustering.pick_coherent_cluster(summaries) == 2
    # With more images the pair is too small to be a style and the tight 4 wins.
    many = clustering.summarize_clusters(np.array([0] * 15 + [1] * 4 + [2] * 2),
                                         np.concatenate([rng.normal(scale=2, size=(15, 3)),
                                                         tight, pair]))
    assert clustering.min_cluster_size(21, 3) == 4
    assert clustering.pick_coherent_cluster(many) == 1
    # Singletons are never "coherent".
    single = clustering.summarize_clusters(np.array([0, 1, 1, 1]),
                                           np.array([[0.0], [0.0], [1.0], [2.0]]))
    assert np.isnan(single[0].spread)
    assert clustering.pick_coherent_cluster(single) == 1


def test_cluster_style_target_is_the_mean_gram(descriptor_model, base):
    images = [stripes(), noise(seed=4), stripes(period=4.0)]
    desc = pipeline.describe_images(images, descriptor_model, style_size=None)
    targets = pipeline.cluster_style_targets(desc, [0, 2])
    feats = vgg.vgg19_feature_extractor(gatys.STYLE_LAYERS, base=base)
    for name in gatys.STYLE_LAYERS:
        grams = [style_vector.gram_matrix(feats(images[i][None].astype(np.float32))[name])[0]
                 for i in (0, 2)]
        np.testing.assert_allclose(targets[name].numpy(), (grams[0] + grams[1]).numpy() / 2,
                                   rtol=1e-4, atol=1e-6)


def test_fc6_features_and_combined_descriptors():
    keras.utils.set_random_seed(3)
    model = style_vector.fc6_extractor(weights="random")
    feats = style_vector.fc6_features([noise(40, 1), stripes(24)], model)
    assert feats.shape == (2, 4096) and np.isfinite(feats).all() and (feats >= 0).all()
    desc = pipeline.ImageDescriptors(
        style_vectors=np.ones((2, 5)), fc6=feats, grams={})
    both = pipeline.clustering_matrix(desc, "both")
    assert both.shape == (2, 5 + 4096)
    np.testing.assert_allclose(np.linalg.norm(both, axis=1), 1.0, rtol=1e-6)


def test_contact_sheet_png(tmp_path):
    images = [stripes(), noise(seed=1), noise(seed=2)]
    summaries = clustering.summarize_clusters(np.array([0, 1, 1]), np.eye(3))
    path = contact_sheet(images, summaries, tmp_path / "図" / "sheet.png", chosen=1, thumb=40)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.height >= 2 * 40
        pixels = np.asarray(im.convert("RGB"))
    assert (pixels == [220, 40, 40]).all(-1).any()  # the chosen cluster is framed


# --------------------------------------------------------------------------------------------
# Gatys
# --------------------------------------------------------------------------------------------


def test_the_defaults_are_the_papers():
    """Gatys et al. 2015: conv4_2, conv1_1..conv5_1, alpha / beta = 1e-3, L-BFGS, white
    noise, average pooling, the paper's normalisation, no TV term."""
    config = gatys.GatysConfig()
    assert vgg.paper_layer_name(config.content_layer) == "relu4_2"
    assert [vgg.paper_layer_name(n) for n in config.style_layers] == \
        ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    assert config.content_weight / config.style_weight == pytest.approx(1e-3)
    assert (config.optimizer, config.init, config.pooling, config.loss_form, config.tv_weight) \
        == ("lbfgs", "noise", "avg", "paper", 0.0)
    assert pipeline.TextureConfig().gatys_config == config


def test_loss_forms_follow_their_formulas():
    """paper: 1/2 sum (F - P)^2 and E_l = sum (G_raw - A_raw)^2 / (4 N^2 M^2), w_l = 1/|S|;
    mean: the TensorFlow tutorial's means of the same differences, on the normalised Grams."""
    rng = np.random.default_rng(4)
    shapes = {"block4_conv2": (3, 5, 6), "block1_conv1": (4, 4, 3), "block2_conv1": (2, 3, 5)}
    feats = {n: rng.normal(size=(1, *s)).astype(np.float32) for n, s in shapes.items()}
    content_target = rng.normal(size=(1, 3, 5, 6)).astype(np.float32)
    styles = ("block1_conv1", "block2_conv1")
    raw_targets = {}  # A_raw of a style image of the same size as x
    for n in styles:
        f = rng.normal(size=shapes[n]).reshape(-1, shapes[n][-1])
        raw_targets[n] = f.T @ f
    image = rng.uniform(size=(1, 4, 5, 3)).astype(np.float32)
    tv = np.abs(np.diff(image, axis=1)).sum() + np.abs(np.diff(image, axis=2)).sum()
    diff = (feats["block4_conv2"] - content_target).astype(np.float64)

    def raw_gram(n):
        f = feats[n][0].reshape(-1, shapes[n][-1]).astype(np.float64)
        return f.T @ f

    def positions(n):
        return shapes[n][0] * shapes[n][1]

    paper_style = np.mean([((raw_gram(n) - raw_targets[n]) ** 2).sum()
                           / (4 * shapes[n][-1] ** 2 * positions(n) ** 2) for n in styles])
    mean_style = np.mean([(((raw_gram(n) - raw_targets[n]) / positions(n)) ** 2).mean()
                          for n in styles])
    targets = {n: raw_targets[n] / positions(n) for n in styles}  # normalised A, as stored
    for form, content, style in (("paper", 0.5 * (diff ** 2).sum(), paper_style),
                                 ("mean", (diff ** 2).mean(), mean_style)):
        config = gatys.GatysConfig(loss_form=form, style_layers=styles, content_weight=2.0,
                                   style_weight=3.0, tv_weight=0.5)
        got = gatys.gatys_losses(feats, tf.constant(image), content_target, targets, config)
        np.testing.assert_allclose(float(got["content"]), content, rtol=1e-5)
        np.testing.assert_allclose(float(got["style"]), style, rtol=1e-4)
        np.testing.assert_allclose(float(got["tv"]), tv, rtol=1e-5)
        np.testing.assert_allclose(float(got["total"]), 2 * content + 3 * style + 0.5 * tv,
                                   rtol=1e-4)


@pytest.fixture(scope="module")
def noise_style(base):
    """A content image and noise-texture style targets on the default (avg-pool) network."""
    config = gatys.GatysConfig()
    extractor = gatys.gatys_extractor(base, config)
    targets = gatys.mean_gram_targets([noise(seed=1), noise(seed=2)], extractor,
                                      config.style_layers)
    return noise(32, seed=9), targets, extractor


def test_lbfgs_lowers_the_loss_and_keeps_the_image_in_its_bounds(noise_style, monkeypatch):
    content, targets, extractor = noise_style
    seen = []
    evaluate = gatys.Objective.for_scipy

    def spy(self, flat):
        seen.append((float(flat.min()), float(flat.max())))
        return evaluate(self, flat)

    monkeypatch.setattr(gatys.Objective, "for_scipy", spy)
    progress = []
    config = gatys.GatysConfig(steps=8, log_every=4)
    result = gatys.stylize(content, targets, extractor, config,
                           progress=lambda *a: progress.append(a[0]))
    assert [h["step"] for h in result.history] == [0, 1, 4, 8] and progress == [1, 4, 8]
    assert result.steps == 8 and 8 <= result.evaluations <= 10 + 3
    totals = [h["total"] for h in result.history]
    assert totals[-1] < 0.5 * totals[0]
    assert result.image.shape == (32, 32, 3) and result.image.dtype == np.uint8
    # Every image L-BFGS-B evaluated lies in [0, 1], and the bounds were reached: without
    # them this run steps out of [0, 1].
    assert len(seen) > 8
    assert min(lo for lo, _ in seen) >= 0.0 and max(hi for _, hi in seen) <= 1.0
    assert min(lo for lo, _ in seen) == 0.0 or max(hi for _, hi in seen) == 1.0
    # Started from white noise, not from the content image.
    assert result.history[0]["content"] > 0


def test_the_gradient_agrees_with_finite_differences(noise_style):
    content, targets, extractor = noise_style
    objective = gatys.Objective(content, targets, extractor, gatys.GatysConfig())
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.8, objective.shape).ravel()
    value, grad = objective.for_scipy(x)
    assert grad.shape == x.shape and grad.dtype == np.float64
    random_direction = rng.normal(size=x.shape)
    for d in (grad, random_direction):
        d = d / np.linalg.norm(d)
        eps = 1e-2
        slope = (objective.for_scipy(x + eps * d)[0] - objective.for_scipy(x - eps * d)[0]) \
            / (2 * eps)
        assert slope == pytest.approx(grad @ d, rel=0.05), (slope, grad @ d)
    assert objective.for_scipy(x)[0] == value  # the same image: the cached evaluation


def test_adam_and_the_tv_term_are_options(noise_style):
    """tfstyle 0.1's run (the TensorFlow tutorial's): Adam, the mean form, TV 30."""
    content, targets, extractor = noise_style
    config = gatys.GatysConfig(steps=6, log_every=3, optimizer="adam", loss_form="mean",
                               content_weight=1e4, style_weight=1e-2, tv_weight=30.0,
                               init="content")
    result = gatys.stylize(content, targets, extractor, config)
    assert [h["step"] for h in result.history] == [0, 1, 3, 6]
    totals = [h["total"] for h in result.history]
    assert totals[-1] < totals[0]
    assert result.history[0]["content"] == pytest.approx(0.0, abs=1e-6)  # starts at content
    assert result.history[0]["tv"] > 0 and result.steps == 6
    assert not np.array_equal(result.image, content)
    # The TV term alone smooths the image.
    smooth = dataclasses.replace(config, content_weight=0.0, style_weight=0.0, tv_weight=1.0)
    history = gatys.stylize(content, targets, extractor, smooth).history
    assert history[-1]["tv"] < 0.9 * history[0]["tv"]
    with pytest.raises(ValueError, match="optimizer"):
        gatys.GatysConfig(optimizer="sgd")


def test_average_pooling_shares_the_weights_and_makes_the_style_targets(base):
    avg = gatys.gatys_extractor(base, gatys.GatysConfig())
    top = gatys.gatys_extractor(base, gatys.GatysConfig(pooling="max"))
    kinds = {type(layer).__name__ for layer in avg.layers if "pool" in layer.name}
    assert kinds == {"AveragePooling2D"}
    assert {type(layer).__name__ for layer in top.layers if "pool" in layer.name} == \
        {"MaxPooling2D"}
    assert avg.get_layer("block3_conv1") is base.get_layer("block3_conv1")
    images = [stripes(), noise(seed=4)]
    want = gatys.mean_gram_targets(images, avg, gatys.STYLE_LAYERS)
    other = gatys.mean_gram_targets(images, top, gatys.STYLE_LAYERS)
    # The pipeline takes a cluster's Gram matrices from the network Gatys optimises with.
    desc = pipeline.describe_images(images, pipeline.descriptor_extractor(base, style_layers=()),
                                    style_size=None, style_extractor=avg)
    got = pipeline.cluster_style_targets(desc, [0, 1])
    for name in gatys.STYLE_LAYERS:
        np.testing.assert_allclose(got[name].numpy(), want[name].numpy(), rtol=1e-4, atol=1e-6)
    assert not np.allclose(want["block3_conv1"].numpy(), other["block3_conv1"].numpy())


def test_evaluation_flops_count_the_convolutions_and_grams():
    one = gatys.GatysConfig(content_layer="block1_conv2", style_layers=("block1_conv1",))
    h, w = 6, 4
    convs = 2 * 2 * 9 * (3 * 64 + 64 * 64) * h * w  # conv1_1 and conv1_2, forward and back
    assert gatys.evaluation_flops(h, w, one) == convs + 2 * 2 * 64 * 64 * h * w
    # All 16 convolutions at 224 x 224: VGG19's 19.5 billion multiply-adds (Simonyan &
    # Zisserman count 19.6 billion "FLOPs" with the fc layers).
    every = gatys.GatysConfig(content_layer="block5_conv4", style_layers=("block1_conv1",))
    gram = 2 * 2 * 64 * 64 * 224 * 224
    assert (gatys.evaluation_flops(224, 224, every) - gram) / 4 == pytest.approx(19.5e9, rel=0.01)
    assert gatys.evaluation_flops(128, 128) == 4 * gatys.evaluation_flops(64, 64)


# --------------------------------------------------------------------------------------------
# Providers
# --------------------------------------------------------------------------------------------


def test_local_provider_drops_broken_files_and_duplicates(tmp_path):
    # The word folder in decomposed Unicode (as macOS writes names) must still be found.
    word = "ざらざら"
    folder = tmp_path / "画像" / unicodedata.normalize("NFD", word)
    folder.mkdir(parents=True)
    Image.fromarray(stripes()).save(folder / "a.png")
    Image.fromarray(stripes()).save(folder / "a_copy.bmp")  # same pixels, other container
    Image.fromarray(noise(seed=2)).save(folder / "b.png")
    (folder / "broken.jpg").write_bytes(png_bytes(noise(seed=3))[:60])  # truncated
    (folder / "notes.png").write_text("not an image")
    (folder / "readme.txt").write_text("ignored")
    Image.fromarray(noise(8, seed=4)).save(folder / "tiny.png")  # below min_side
    provider = providers.LocalFolderProvider(tmp_path / "画像")
    images = providers.collect_images(provider, word, limit=10)
    assert [Path(i.source).name for i in images] == ["a.png", "b.png"]
    np.testing.assert_array_equal(images[0].pixels, stripes())
    assert providers.collect_images(provider, word, limit=1)[0].source.endswith("a.png")
    # --images may also point at the word folder itself.
    assert len(providers.collect_images(providers.LocalFolderProvider(folder), word)) == 2
    with pytest.raises(FileNotFoundError, match="もふもふ"):
        provider.candidates("もふもふ", 5)


class _FakeSearch(http.server.BaseHTTPRequestHandler):
    """A loopback image-search API plus image host."""

    files: dict = {}
    log: list = []
    throttle_once = False
    results: list | None = None  # result URLs instead of the usual ones

    def do_GET(self):  # noqa: N802
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        type(self).log.append((url.path, query, dict(self.headers)))
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        if url.path in ("/bing", "/google"):
            if type(self).throttle_once:
                type(self).throttle_once = False
                return self._send(429, b"slow down", "text/plain", {"Retry-After": "2"})
            names = ["a.png", "b.png", "dup.png", "broken.jpg", "missing.png", "c.png"]
            urls = [f"{base}/img/{n}" for n in names] + ["ftp://127.0.0.1/x.png"]
            urls = [u.replace("BASE", base) for u in type(self).results or []] or urls
            if url.path == "/bing":
                body = {"value": [{"contentUrl": u} for u in urls]}
            else:
                body = {"items": [{"link": u} for u in urls]}
            return self._send(200, json.dumps(body).encode(), "application/json")
        if url.path == "/to":
            return self._send(302, b"", "text/plain", {"Location": url.query})
        name = url.path.rsplit("/", 1)[-1]
        if url.path.startswith("/img/") and name in self.files:
            return self._send(200, self.files[name], "image/png")
        return self._send(404, b"not found", "text/plain")

    def _send(self, code, body, ctype, headers=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def web_settings(cache_dir, endpoint, **changes):
    return providers.WebSearchSettings(**{
        "cache_dir": str(cache_dir), "search_endpoint": endpoint,
        "api_key_env": "TEST_SEARCH_KEY", "request_interval": 0.0, "request_timeout": 2.0,
        **changes})


@pytest.fixture
def search_server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    a, b, c = stripes(), noise(seed=1), stripes(period=3.0, colors=((0, 200, 0), (90, 0, 90)))
    _FakeSearch.files = {"a.png": png_bytes(a), "b.png": png_bytes(b), "dup.png": png_bytes(a),
                         "broken.jpg": b"\xff\xd8\xff\xe0 this is no jpeg", "c.png": png_bytes(c)}
    _FakeSearch.log = []
    _FakeSearch.throttle_once = False
    _FakeSearch.results = None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeSearch)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", (a, b, c)
    server.shutdown()
    server.server_close()


def test_web_provider_skips_broken_files_and_caches(search_server, tmp_path, monkeypatch):
    endpoint, (a, b, c) = search_server
    monkeypatch.setenv("TEST_SEARCH_KEY", "secret-key")
    waits = []
    _FakeSearch.throttle_once = True

    slept = [0.0]

    def sleep(seconds):  # no real waiting; the clock moves on instead
        waits.append(seconds)
        slept[0] += seconds

    def make():
        return providers.WebSearchProvider(
            web_settings(tmp_path / "キャッシュ", endpoint + "/bing", request_interval=0.05),
            sleep=sleep, clock=lambda: time.monotonic() + slept[0])

    first = providers.collect_images(make(), WORD, limit=10)
    assert [img.source.rsplit("/", 1)[-1] for img in first] == ["a.png", "b.png", "c.png"]
    for img, want in zip(first, (a, b, c)):
        np.testing.assert_array_equal(img.pixels, want)
    searches = [entry for entry in _FakeSearch.log if entry[0] == "/bing"]
    assert len(searches) == 2  # throttled once (429), then answered
    assert 2.0 in waits  # Retry-After was honoured
    assert all(0 < w <= 0.05 for w in waits if w != 2.0)  # the rate limiter spaced requests
    path, query, headers = searches[-1]
    assert query["q"] == [WORD]
    assert headers.get("Ocp-Apim-Subscription-Key") == "secret-key"
    downloads = [entry[0] for entry in _FakeSearch.log if entry[0].startswith("/img/")]
    assert sorted(downloads) == sorted(f"/img/{n}" for n in
                                       ["a.png", "b.png", "dup.png", "broken.jpg",
                                        "missing.png", "c.png"])  # no ftp:// request
    requests_after_first = len(_FakeSearch.log)

    # Second run: everything (results, images, the 404) comes from the cache.
    monkeypatch.delenv("TEST_SEARCH_KEY")
    second_provider = make()
    second = providers.collect_images(second_provider, WORD, limit=10)
    assert [i.digest for i in second] == [i.digest for i in first]
    assert len(_FakeSearch.log) == requests_after_first
    assert second_provider.requests_made == 0


def test_web_provider_needs_its_key_and_speaks_google(search_server, tmp_path, monkeypatch):
    endpoint, _ = search_server
    monkeypatch.delenv("TEST_SEARCH_KEY", raising=False)
    provider = providers.WebSearchProvider(web_settings(tmp_path, endpoint + "/bing"))
    with pytest.raises(providers.SearchAPIError, match="TEST_SEARCH_KEY"):
        provider.candidates(WORD, 5)
    assert _FakeSearch.log == []

    monkeypatch.setenv("TEST_SEARCH_KEY", "k2")
    monkeypatch.setenv("TFSTYLE_SEARCH_CX", "engine-1")
    google = providers.WebSearchProvider(
        web_settings(tmp_path, endpoint + "/google", search_api="google"))
    assert len(providers.collect_images(google, WORD, limit=10)) == 3
    _, query, _ = _FakeSearch.log[0]
    assert query["key"] == ["k2"] and query["cx"] == ["engine-1"]
    assert query["searchType"] == ["image"] and query["q"] == [WORD]


def test_web_provider_refuses_redirects_into_the_local_network(search_server, tmp_path,
                                                              monkeypatch):
    """The texture provider has the BAM downloader's protection: one fetcher (issue 14)."""
    endpoint, (a, _, _) = search_server
    monkeypatch.setenv("TEST_SEARCH_KEY", "k")
    # The search server stands for a public host; `internal` for a service on the LAN.
    monkeypatch.setattr(fetch, "TREATED_AS_PUBLIC",
                        {("127.0.0.1", int(endpoint.rsplit(":", 1)[1]))})
    hits = []

    class Internal(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(png_bytes(noise(seed=5)))

        def log_message(self, *args):
            pass

    internal = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Internal)
    threading.Thread(target=internal.serve_forever, daemon=True).start()
    try:
        secret = f"http://localhost:{internal.server_address[1]}/secret.png"
        _FakeSearch.results = [f"BASE/to?{secret}", "BASE/to?ftp://127.0.0.1/x.png",
                               "BASE/to?file:///etc/passwd", "BASE/to?/img/a.png"]
        provider = providers.WebSearchProvider(web_settings(tmp_path, endpoint + "/bing"))
        images = providers.collect_images(provider, WORD, limit=10)
    finally:
        internal.shutdown()
        internal.server_close()
    assert hits == []
    assert [i.source.rsplit("/", 1)[-1] for i in images] == ["a.png"]
    np.testing.assert_array_equal(images[0].pixels, a)
    failed = sorted(p.read_text("utf8") for p in (tmp_path / "images").glob("*.failed"))
    assert len(failed) == 3 and all("redirect_refused" in f for f in failed)


# --------------------------------------------------------------------------------------------
# CLI (subprocesses: the absl flags stay out of the test process)
# --------------------------------------------------------------------------------------------


def _cli(*args, timeout=240):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "tfstyle.texture", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def word_folder(tmp_path):
    root = tmp_path / "テクスチャ画像"
    folder = root / WORD
    folder.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(stripes(period=5.0 + i, phase=i)).save(folder / f"しま{i}.png")
        Image.fromarray(noise(seed=10 + i)).save(folder / f"ノイズ{i}.png")
    (folder / "壊れた.jpg").write_bytes(b"broken")
    content = tmp_path / "内容.png"
    Image.fromarray(noise(48, seed=99)[:, :40]).save(content)
    return root, content


def test_cli_end_to_end_with_unicode_word_and_paths(word_folder, tmp_path):
    root, content = word_folder
    out = tmp_path / "結果" / "出力.png"
    # Adam runs exactly --steps steps; L-BFGS (tested above) may end a step early on the
    # random VGG weights, which are drawn afresh in each run.
    proc = _cli(f"--word={WORD}", f"--images={root}", f"--content={content}", f"--out={out}",
                "--weights=random", "--steps=3", "--log_every=1", "--clusters=2",
                "--features=nsv", "--style_size=32", "--max_size=32", "--optimizer=adam")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (27, 32)  # 40x48 scaled to longer side 32
    with Image.open(out.with_name("出力_clusters.png")) as im:
        assert im.format == "PNG"
    assert "step     3/3" in proc.stdout
    assert "6 distinct images" in proc.stdout and "<- chosen (auto)" in proc.stdout
    assert "random" in proc.stderr  # the random-weights warning


@pytest.mark.parametrize("args, message", [
    (["--content=MISSING"], "--content='MISSING': no such file"),
    (["--clusters=2", "--cluster=2"], "--cluster=2: must be in 0..1 (--clusters=2)"),
    (["--cluster=first"], "--cluster='first': 'auto' or a cluster number"),
    (["--weights=WEIGHTS"], "--weights=WEIGHTS: VGG19 weights file not found"),
    (["--steps=-1"], "--steps=-1: must be at least 0"),
    (["--learning_rate=0"], "--learning_rate=0.0: must be greater than 0"),
    (["--tv_weight=nan"], "--tv_weight=nan: must be a finite number"),
    (["--content_layer=block9_conv9"], "--content_layer='block9_conv9'"),
    (["--max_size=0"], "--max_size=0: must be at least 1"),
    (["--out=o.jpg"], "must end in .png"),
    (["--images=NOWHERE"], "--images='NOWHERE': no such folder"),
    (["--request_interval=-1"], "--request_interval=-1.0: must be at least 0"),
    (["--optimizer=sgd"], "--optimizer"),
    (["--loss_form=sum"], "--loss_form"),
    (["--pooling=min"], "--pooling"),
    (["--words=ざらざら"], "--words=('ざらざら',): only with --study_dir"),
    (["--word=", "--out="], "--word='': give the word (or --study_dir"),
])
def test_cli_errors_name_the_flag(word_folder, tmp_path, args, message):
    root, content = word_folder
    weights = tmp_path / "重み" / "vgg19.h5"
    args = [a.replace("MISSING", str(tmp_path / "missing.png")).replace("WEIGHTS", str(weights))
            .replace("NOWHERE", str(tmp_path / "nowhere")) for a in args]
    message = message.replace("MISSING", str(tmp_path / "missing.png")) \
        .replace("WEIGHTS", str(weights)).replace("NOWHERE", str(tmp_path / "nowhere"))
    argv = ["texture", f"--word={WORD}", f"--images={root}", f"--content={content}",
            f"--out={tmp_path / 'o.png'}", *args]
    with pytest.raises((app.UsageError, flags.Error)) as err:
        texture.settings(texture.parse_flags(argv))
    assert message in str(err.value)


def test_cli_flags_are_generated_from_the_settings_and_keep_their_names(word_folder, tmp_path):
    """Every flag of docs/texture.md's table is still there, generated from the settings."""
    fv = flags.FlagValues()
    texture.define_flags(fv)
    table = (REPO / "docs" / "texture.md").read_text("utf8").split("## Flags", 1)[1]
    documented = set(re.findall(r"`--(\w+)`", table.split("\n## ", 1)[0]))
    assert {"word", "steps", "request_interval", "search_api", "seed"} <= documented
    assert documented <= set(fv), documented - set(fv)
    root, content = word_folder
    command, config, web = texture.settings(texture.parse_flags([
        "texture", f"--word={WORD}", f"--images={root}", f"--content={content}",
        f"--out={tmp_path / 'o.png'}", "--seed=5", "--cluster=1", "--steps=7",
        "--request_interval=0.5", "--features=nsv"]))
    assert (config.seed, config.gatys_config.seed) == (5, 5)  # one --seed for both
    assert (config.cluster, config.features, config.gatys_config.steps) == (1, "nsv", 7)
    assert command.word == WORD and web.request_interval == 0.5
    assert (config.gatys_config.optimizer, config.gatys_config.content_layer) == \
        ("lbfgs", "block4_conv2")


@pytest.mark.parametrize("args, want", [
    ([], ("lbfgs", "paper", "avg", "noise", 0.0)),
    (["--optimizer=adam", "--loss_form=mean", "--pooling=max", "--init=content",
      "--tv_weight=30"], ("adam", "mean", "max", "content", 30.0)),
    (["--optimizer=rmsprop"], ("rmsprop", "paper", "avg", "noise", 0.0)),
])
def test_cli_optimizer_and_loss_choices_parse(word_folder, tmp_path, args, want):
    root, content = word_folder
    _, config, _ = texture.settings(texture.parse_flags([
        "texture", f"--word={WORD}", f"--images={root}", f"--content={content}",
        f"--out={tmp_path / 'o.png'}", *args]))
    g = config.gatys_config
    assert (g.optimizer, g.loss_form, g.pooling, g.init, g.tv_weight) == want


# --------------------------------------------------------------------------------------------
# The word-recognition study (seed 002): STUDY/<word>/<content>.png
# --------------------------------------------------------------------------------------------


def test_study_dir_writes_what_the_rating_app_lists_and_resumes(word_folder, tmp_path):
    root, content = word_folder
    other = root / "ざらざら"
    other.mkdir()
    for i in range(3):
        Image.fromarray(noise(seed=20 + i)).save(other / f"{i}.png")
    second = tmp_path / "コップ.jpg"
    Image.fromarray(stripes(40)).save(second)
    study = tmp_path / "研究"
    proc = _cli(f"--study_dir={study}", f"--words={WORD},ざらざら",
                f"--contents={content},{second}", f"--images={root}", "--weights=random",
                "--steps=2", "--clusters=2", "--features=nsv", "--style_size=32",
                "--max_size=32")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 images written, 0 kept" in proc.stdout
    assert f"--word_study={study}" in proc.stdout
    for word in (WORD, "ざらざら"):
        assert sorted(p.name for p in (study / word).iterdir()) == \
            sorted(["内容.png", "コップ.png", f"{word}_clusters.png"])
    manifest = studies.write_word_manifest(study)
    assert sorted(manifest.words) == sorted([WORD, "ざらざら"])
    assert manifest.contents == sorted(["内容", "コップ"])
    assert sorted((i.word, i.content, i.image) for i in manifest.items.values()) == sorted(
        (w, c, f"{w}/{c}.png") for w in (WORD, "ざらざら") for c in ("内容", "コップ"))
    # A rerun keeps what is there: no image is redone, no model is even loaded.
    kept_bytes = (study / WORD / "内容.png").read_bytes()
    logged = []
    config = pipeline.TextureConfig(weights=str(tmp_path / "no-such-weights.h5"))
    result = pipeline.word_study([WORD, "ざらざら"], providers.LocalFolderProvider(root),
                                 [content, second], study, config, log=logged.append)
    assert result.written == [] and len(result.kept) == 4 and result.contact_sheets == []
    assert (study / WORD / "内容.png").read_bytes() == kept_bytes
    assert logged == [f"{WORD!r}: all 2 images are there, kept.",
                      "'ざらざら': all 2 images are there, kept."]


@pytest.mark.parametrize("args, message", [
    (["--words=a/b"], "--words=a/b: 'a/b' cannot name a folder"),
    (["--words=.."], "--words=..: '..' cannot name a folder"),
    (["--words=ふさふさ,ふさふさ"], "the words must differ"),
    (["--contents=C,C2"], "the content files' names"),
    (["--contents=SHEET"], "may not end in '_clusters'"),
    (["--contents=NOFILE"], "--contents=('NOFILE',): no such file"),
    (["--words=もふもふ"], "--words: No folder for the word 'もふもふ'"),
    (["--word=ふさふさ"], "--word='ふさふさ': not used with --study_dir"),
    (["--out=o.png"], "--out='o.png': not used with --study_dir"),
])
def test_study_errors_name_the_flag(word_folder, tmp_path, args, message):
    root, content = word_folder
    twin = tmp_path / "twin" / content.name
    twin.parent.mkdir()
    twin.write_bytes(content.read_bytes())
    sheet = tmp_path / "a_clusters.png"
    sheet.write_bytes(content.read_bytes())
    swap = {"C2": str(twin), "C": str(content), "SHEET": str(sheet),
            "NOFILE": str(tmp_path / "none.png")}

    def fill(text):
        for key, value in swap.items():
            text = text.replace(key, value)
        return text

    argv = ["texture", f"--study_dir={tmp_path / 'study'}", f"--images={root}",
            f"--words={WORD}", f"--contents={content}", *[fill(a) for a in args]]
    with pytest.raises((app.UsageError, flags.Error)) as err:
        texture.settings(texture.parse_flags(argv))
    assert fill(message) in str(err.value)
    assert not (tmp_path / "study").exists()
