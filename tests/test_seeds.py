"""The seeds as written (issue 15): the CBAM/AAMS auto-encoder's loss terms against their
formulas, the AAMS test-time order against an independent numpy version of the official
code's steps, and the seed flagfiles (CBAM seed, caricature trio, emotion seed). CPU, random
VGG weights, tiny tensors."""

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from tfstyle.core.config import define_flags, from_flags
from tfstyle.core.images import resize
from tfstyle.cyclegan.trainer import CycleGANConfig
from tfstyle.deploy.style_model import fixed_style_models
from tfstyle.style import fusion, swap
from tfstyle.style.autoencoder import (
    AAMS_LOSS_LAYERS,
    AttentionAutoencoder,
    load_autoencoder,
    save_autoencoder,
)
from tfstyle.style.data import builtin_style_image
from tfstyle.style.losses import attention_l1, autoencoder_losses, mse, total_variation
from tfstyle.style.stylizer import (
    StylizeOptions,
    Stylizer,
    style_bank,
    stylize_features,
)
from tfstyle.style.trainer import AutoencoderConfig, AutoencoderTrainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _images(n, size, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def aams_layers_model():
    """relu3_1 CBAM auto-encoder whose perceptual loss takes AAMS's relu1_1..relu4_1."""
    keras.utils.set_random_seed(0)
    return AttentionAutoencoder("relu3_1", "cbam", encoder_weights="random", width=0.25,
                                loss_layers=AAMS_LOSS_LAYERS)


# --------------------------------------------------------------------------------------------
# Item 1: each loss term against its formula
# --------------------------------------------------------------------------------------------


def test_each_term_on_a_known_tensor():
    ramp = np.arange(24, dtype=np.float32).reshape(2, 3, 4, 1)  # x[b, i, j] = 12b + 4i + j
    # TV: rows differ by 4, columns by 1, everywhere: mean |dy| + mean |dx| = 5 per image.
    np.testing.assert_allclose(total_variation(ramp), [5.0, 5.0])
    np.testing.assert_allclose(mse(ramp, ramp + 3.0), [9.0, 9.0])
    a = np.array([[[[-1.0, 2.0]], [[3.0, -4.0]]], [[[0.5, 0.5]], [[0.0, -1.0]]]], np.float32)
    # ||a||_1 over the whole batch (AAMS: tf.norm(o, 1)) = 10 + 2 = 12.
    for global_batch in (2, 8):  # this batch alone, or one replica's share of 8 images
        share = attention_l1(a, "sum", global_batch=global_batch)
        np.testing.assert_allclose(share, [10.0 * global_batch, 2.0 * global_batch])
        # What this replica adds to the global-batch mean: the sum over its images.
        np.testing.assert_allclose(
            tf.nn.compute_average_loss(share, global_batch_size=global_batch), 12.0)
    np.testing.assert_allclose(tf.nn.compute_average_loss(attention_l1(a), global_batch_size=2),
                               float(tf.norm(a, 1)))
    np.testing.assert_allclose(attention_l1(a, "mean"), [2.5, 0.5])
    with pytest.raises(ValueError, match="attention norm"):
        attention_l1(a, "max")


def test_loss_terms_follow_the_seed_and_aams_formulas(aams_layers_model):
    model = aams_layers_model
    x = tf.constant(_images(2, 32))
    terms = autoencoder_losses(model, x, 10.0)  # defaults: the seed's (AAMS's) reductions
    out = model.forward(x)
    x_hat, a = out["x_hat"].numpy(), out["A"].numpy()
    # Perceptual: relu1_1..relu4_1 although the encoder stops at relu3_1; the loss network's
    # first layers are the encoder's.
    assert model.loss_layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
    phi_x, phi_hat = model.loss_encoder(x), model.loss_encoder(x_hat)
    for name, value in model.encode(x).items():
        np.testing.assert_allclose(phi_x[name], value, rtol=1e-5, atol=1e-4)
    per_layer = {n: ((phi_hat[n].numpy() - phi_x[n].numpy()) ** 2).reshape(2, -1).mean(1)
                 for n in model.loss_layers}
    assert per_layer["relu4_1"].min() > 0
    np.testing.assert_allclose(terms["perceptual"], sum(per_layer.values()), rtol=1e-4)
    pixel = ((x_hat - x.numpy()) ** 2).reshape(2, -1).mean(1)
    np.testing.assert_allclose(terms["pixel"], pixel, rtol=1e-5)
    tv = (np.abs(np.diff(x_hat, axis=1)).reshape(2, -1).mean(1)
          + np.abs(np.diff(x_hat, axis=2)).reshape(2, -1).mean(1))
    np.testing.assert_allclose(terms["tv"], tv, rtol=1e-5)
    # The seed's weights on the batch give AAMS's total: 10 * pixel MSE + perceptual MSEs
    # (means over the batch) + 10 * TV (mean) + 6 * ||A||_1 (a sum over the batch).
    c = AutoencoderConfig(content_dir="x", model_dir="y")
    per_example = (c.l_con * terms["L_con"] + c.l_att * terms["attention"]
                   + c.l_tv * terms["tv"])
    total = float(tf.nn.compute_average_loss(per_example, global_batch_size=2))
    aams = (10 * pixel.mean() + sum(v.mean() for v in per_layer.values()) + 10 * tv.mean()
            + 6 * np.abs(a.astype(np.float64)).sum())
    assert total == pytest.approx(aams, rel=1e-4)
    # mean: the element mean, 1 / (h w C) per image of the sum.
    means = autoencoder_losses(model, x, 10.0, attention_norm="mean")["attention"]
    np.testing.assert_allclose(means, np.abs(a).reshape(2, -1).mean(1), rtol=1e-5)


def test_trainer_step_takes_the_seed_reductions(tmp_path):
    config = AutoencoderConfig(content_dir="x", model_dir=str(tmp_path), cut="relu3_1",
                               vgg_weights="random", width=0.25, load_size=32, crop_size=32,
                               batch_size=2, strategy="one_device")
    assert (config.attention_norm, config.perceptual_layers) == ("sum", AAMS_LOSS_LAYERS)
    trainer = AutoencoderTrainer(config, tf.distribute.OneDeviceStrategy("/cpu:0"), "random")
    x = _images(2, 32, seed=3)
    _, report = trainer._grads(tf.constant(x))
    a = trainer.model.forward(x, training=True)["A"].numpy()  # CBAM's BN: batch statistics
    assert float(report["attention"]) == pytest.approx(np.abs(a).sum(), rel=1e-4)
    assert trainer.model.loss_layers == AAMS_LOSS_LAYERS


def test_the_saved_model_leaves_the_loss_network_out(aams_layers_model, tmp_path):
    save_autoencoder(tmp_path, aams_layers_model, {"step": 0})
    loaded, _ = load_autoencoder(tmp_path)
    assert loaded.loss_encoder is None and aams_layers_model.loss_encoder is not None
    x = _images(1, 32, seed=4)
    np.testing.assert_allclose(loaded(x), aams_layers_model(x), rtol=1e-5, atol=1e-3)
    # A deeper cut takes AAMS's layers from its own encoder (no second network).
    deep = AttentionAutoencoder("relu5_1", "none", encoder_weights="random", width=0.1,
                                loss_layers=AAMS_LOSS_LAYERS)
    assert deep.loss_encoder is None and "relu5_1" not in deep.perceptual_features(x)
    with pytest.raises(ValueError, match="loss_layers"):
        AttentionAutoencoder("relu3_1", "none", encoder_weights="random", loss_layers=["fc6"])


# --------------------------------------------------------------------------------------------
# Item 2: AAMS's test-time order (AAMS.transfer), step by step in numpy
# --------------------------------------------------------------------------------------------


def _zca(features):
    """AAMS's zca_normalization in float64: (whitened, colouring kernel, mean)."""
    x = features.reshape(-1, features.shape[-1]).astype(np.float64)
    mean = x.mean(0)
    d, e = np.linalg.eigh((x - mean).T @ (x - mean) / len(x))
    keep = d > 1e-5
    whiten = (e * np.where(keep, 1 / np.sqrt(np.maximum(d, 1e-5)), 0)) @ e.T
    colour = (e * np.where(keep, np.sqrt(np.maximum(d, 1e-5)), 0)) @ e.T
    return ((x - mean) @ whiten).reshape(features.shape), colour, mean


def _resize_tf1(image, height, width):
    """tf.image.resize_images(BILINEAR) of TF1: no half-pixel centres, no corner alignment."""
    h, w = image.shape[:2]
    ys, xs = np.arange(height) * h / height, np.arange(width) * w / width
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = image[y0][:, x0] * (1 - fx) + image[y0][:, x1] * fx
    bottom = image[y1][:, x0] * (1 - fx) + image[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def _aams_swap(content, style, p):
    """AAMS's style swap: SAME (zero-padded) style patches, reflect-padded content,
    normalised correlation, argmax, transposed convolution with the raw patches, divided by
    the overlap count."""
    r = p // 2
    hc, wc, c = content.shape
    hs, ws, _ = style.shape
    padded_style = np.pad(style, ((r, r), (r, r), (0, 0)))
    patches = np.stack([padded_style[i:i + p, j:j + p].ravel()
                        for i in range(hs) for j in range(ws)]).astype(np.float64)
    kernels = patches / (np.linalg.norm(patches, axis=1, keepdims=True) + 1e-7)
    net = np.pad(content, ((r, r), (r, r), (0, 0)), mode="reflect")
    acc = np.zeros((hc + p - 1, wc + p - 1, c))
    count = np.zeros((hc + p - 1, wc + p - 1, 1))
    for y in range(hc):
        for x in range(wc):
            best = int(np.argmax(kernels @ net[y:y + p, x:x + p].ravel()))
            acc[y:y + p, x:x + p] += patches[best].reshape(p, p, c)
            count[y:y + p, x:x + p] += 1
    return (acc / count)[r:r + hc, r:r + wc]


def _kmeans(values, k, iterations):
    v = np.sort(values.ravel().astype(np.float64))
    c = v[np.minimum(((np.arange(k) + 0.5) / k * len(v)).astype(int), len(v) - 1)]
    flat = values.ravel().astype(np.float64)
    for _ in range(iterations):
        assign = np.argmin(np.abs(flat[:, None] - c[None]), axis=1)
        c = np.array([flat[assign == j].mean() if (assign == j).any() else c[j]
                      for j in range(k)])
    return np.sort(c)


def _aams_transfer(model, f_c, f_s, alpha, p, strokes, kernel, theta=50.0):
    """AAMS.transfer's steps on bottleneck features [h, w, C] (numpy; the model's attention
    module as a black box)."""
    c_hat, _, _ = _zca(f_c)
    s_hat, colour, mean = _zca(f_s)
    attended, o = model.attend(c_hat[None].astype(np.float32), training=False)
    attended, o = attended[0].numpy().astype(np.float64), np.abs(o[0].numpy())
    mask = (o > 2 * o.mean()).astype(np.float64).mean(-1)
    smooth = np.zeros_like(mask)
    padded = np.pad(mask, 1)
    for dy in range(3):
        for dx in range(3):
            smooth += kernel[dy, dx] * padded[dy:dy + mask.shape[0], dx:dx + mask.shape[1]]
    a = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    maps = []
    for beta in swap.stroke_scales(strokes):
        size = (int(s_hat.shape[0] * beta), int(s_hat.shape[1] * beta))
        maps.append(_aams_swap(attended, _resize_tf1(s_hat, *size), p))
    maps.append(attended)
    centroids = _kmeans(a, strokes, 80)
    logits = theta * (1 - np.abs(a[..., None] - centroids))
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    fused = sum(w[..., i:i + 1] * m for i, m in enumerate(maps))
    mixed = alpha * fused + (1 - alpha) * attended
    return mixed @ colour + mean, a


@pytest.mark.parametrize("attention", ["cbam", "self"])
def test_stylize_features_follow_the_aams_order(attention):
    keras.utils.set_random_seed(5)
    model = AttentionAutoencoder("relu3_1", attention, encoder_weights="random", width=0.25)
    rng = np.random.default_rng(6)
    f_c = rng.gamma(1.0, 1.0, (7, 6, 256)).astype(np.float32) * (rng.random(256) < 0.8)
    f_s = rng.gamma(1.5, 1.0, (9, 10, 256)).astype(np.float32)
    options = StylizeOptions(alpha=0.6, strokes=3, patch_size=3)
    bank = style_bank(f_s, options.strokes, options.patch_size)
    styled = stylize_features(model, f_c[None], bank, options)
    kernel = fusion.smoothing_kernel("aams", 0)
    want, a = _aams_transfer(model, f_c, f_s, 0.6, 3, 3, kernel)
    np.testing.assert_allclose(styled.attention, a, atol=1e-5)
    np.testing.assert_allclose(styled.blended, want, rtol=2e-3, atol=2e-3 * np.abs(want).max())
    # The reconstruction's input is the auto-encoder's own: attend(f_c), unwhitened.
    np.testing.assert_allclose(styled.content, model.attend(f_c[None])[0][0], rtol=1e-5,
                               atol=1e-5)
    # Our variant attends before whitening: a different map.
    ours = stylize_features(model, f_c[None], bank, options.replace(attention_on="features"))
    assert np.abs(ours.blended.numpy() - want).max() > 1e-2 * np.abs(want).max()


def test_style_pyramid_is_resized_as_aams_and_zero_padded():
    style = np.random.default_rng(7).normal(size=(11, 9, 4)).astype(np.float32)
    pyramid = swap.style_pyramid(style, swap.stroke_scales(4), patch_size=5)
    for beta, level in zip(swap.stroke_scales(4), pyramid):
        h, w = int(11 * beta), int(9 * beta)  # floor, as AAMS's tf.cast
        assert level.shape == (h + 4, w + 4, 4)
        np.testing.assert_allclose(level[2:-2, 2:-2], _resize_tf1(style, h, w), atol=1e-5)
        assert not np.any(level[:2]) and not np.any(level[:, -2:])


def test_style_swap_uses_zero_padded_style_patches():
    rng = np.random.default_rng(8)
    content = rng.normal(size=(6, 7, 3)).astype(np.float32)
    style = rng.normal(size=(5, 6, 3)).astype(np.float32)
    (padded,) = swap.style_pyramid(style, [1.0], patch_size=3)
    got = swap.swap_strokes(content, [padded], 3)[0]
    np.testing.assert_allclose(got, _aams_swap(content, style, 3), rtol=1e-5, atol=1e-5)


def test_kmeans_runs_aams_80_iterations():
    rng = np.random.default_rng(109)  # a mixture on which Lloyd needs 46 iterations
    n1 = rng.integers(50, 400)
    values = np.concatenate([rng.uniform(0, 1, n1), rng.uniform(0, rng.uniform(0.05, 0.3),
                                                                rng.integers(100, 600))])
    got = fusion.kmeans_1d(values.astype(np.float32), 4).numpy()
    np.testing.assert_allclose(got, _kmeans(values, 4, 80), atol=1e-5)
    assert np.abs(_kmeans(values, 4, 30) - _kmeans(values, 4, 80)).max() > 1e-3


def test_smoothing_kernel_is_drawn_as_aams_draws_it():
    draws = np.stack([fusion.smoothing_kernel("aams", s) for s in range(2000)])
    np.testing.assert_allclose(draws.sum((1, 2)), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(draws[3], fusion.smoothing_kernel("aams", 3))
    assert not np.array_equal(draws[3], draws[4])
    # Truncated normal(6, 5) / sum: about 6% of the weights are negative (AAMS's too), the
    # mean kernel is the box filter.
    assert 0.03 < (draws < 0).mean() < 0.15
    np.testing.assert_allclose(draws.mean(0), fusion.smoothing_kernel("box"), atol=0.01)
    np.testing.assert_allclose(fusion.smoothing_kernel("box"), np.full((3, 3), 1 / 9))


def test_style_is_resized_to_its_shorter_side_and_centre_cropped():
    keras.utils.set_random_seed(9)
    model = AttentionAutoencoder("relu3_1", "cbam", encoder_weights="random", width=0.25)
    style = builtin_style_image(120, 3)[:72]                       # 72 x 120
    options = StylizeOptions(style_size=40, style_crop=32, strokes=2, patch_size=3)
    bank = Stylizer(model).bank(style, options)
    resized = Stylizer(model).bank(style, options.replace(style_crop=0))
    # 40 x 66 (floor of 120 * 40 / 72), padded to 40 x 68 for the encoder: 10 x 17 + 2 r
    assert resized.pyramid[-1].shape[:2] == (10 + 2, 17 + 2)
    assert bank.pyramid[-1].shape[:2] == (32 // 4 + 2, 32 // 4 + 2)
    crop = resize(style, (40, 66))[4:36, 17:49]                    # the centre 32 x 32
    expected = style_bank(model.encode(crop[None].astype(np.float32))["relu3_1"][0], 2, 3)
    np.testing.assert_allclose(bank.pyramid[-1], expected.pyramid[-1], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bank.mean, expected.mean, rtol=1e-4, atol=1e-4)


def test_exported_graph_is_the_aams_order_stylization():
    keras.utils.set_random_seed(0)
    model = AttentionAutoencoder("relu3_1", "cbam", encoder_weights="random", width=0.25)
    content, style = builtin_style_image(44, 4)[:, :40], builtin_style_image(64, 2)
    options = StylizeOptions(style_size=48, strokes=3, patch_size=3, alpha=0.8)
    assert options.attention_on == "whitened" and options.smoothing == "aams"
    want = Stylizer(model)(content, style, options).image.astype(np.float32)
    exact, _ = fixed_style_models(model, style, options)
    graph = tf.function(exact, input_signature=[tf.TensorSpec([None, None, None, 3])])
    got = (graph(content[None] / 127.5 - 1.0)[0].numpy() + 1.0) * 127.5
    assert np.abs(got - want).max() <= 0.51


# --------------------------------------------------------------------------------------------
# Items 1 and 3: the seed flagfiles
# --------------------------------------------------------------------------------------------


def _parse(name, cls):
    fv = flags.FlagValues()
    define_flags(cls, fv)
    fv(["prog", f"--flagfile={CONFIGS / name}"])
    return from_flags(cls, fv)[0]


def test_cbam_seed_flagfile_keeps_the_aams_balance():
    seed = _parse("autoencoder_seed.flags", AutoencoderConfig)
    assert (seed.steps, seed.batch_size, seed.crop_size, seed.load_size) == (10_000, 8, 256, 512)
    assert (seed.l_con, seed.l_p, seed.l_att, seed.l_tv) == (1.0, 10.0, 6.0, 10.0)
    assert (seed.attention_norm, seed.perceptual_layers) == ("sum", AAMS_LOSS_LAYERS)
    assert (seed.lr, seed.beta1, seed.beta2, seed.adam_epsilon) == (1e-4, 0.9, 0.99, 1.0)


def test_caricature_flagfiles_make_the_seeds_three_way_comparison():
    runs = {name: _parse(f"caricature_{name}.flags", CycleGANConfig)
            for name in ("cyclegan", "se", "da")}
    assert {n: (c.block, c.lambda_cycle) for n, c in runs.items()} == {
        "cyclegan": ("resnet", 1.4), "se": ("se", 1.35), "da": ("da", 1.4)}
    differ = {"block", "lambda_cycle", "model_dir"}
    base = {k: v for k, v in vars(runs["cyclegan"]).items() if k not in differ}
    for config in runs.values():
        assert {k: v for k, v in vars(config).items() if k not in differ} == base
    assert len({c.model_dir for c in runs.values()}) == 3


def test_emotion_flagfile_is_the_seeds_cyclegan():
    c = _parse("bam_happy_scary.flags", CycleGANConfig)
    assert (c.block, c.gan_mode, c.load_size, c.crop_size, c.batch_size) == (
        "resnet", "lsgan", 286, 256, 1)
    assert (c.epochs, c.decay_epochs, c.lr, c.lambda_cycle) == (100, 100, 2e-4, 10.0)
