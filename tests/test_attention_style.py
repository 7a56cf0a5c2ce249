"""Attention-aware style transfer: CBAM/AAMS VGG19 auto-encoder, WCT, style swap, fusion,
training, stylization and the CLIs (CPU, random VGG weights, tiny images)."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfstyle.core.data import DataError
from tfstyle.core.training import Checkpoints, NonFiniteLossError, checkpoints_on_disk
from tfstyle.core.vgg import VGG19_BLOCKS
from tfstyle.style import autoencoder, fusion, swap, wct
from tfstyle.style.attention import SelfAttention
from tfstyle.style.autoencoder import (
    CUTS,
    FULL_VGG19_PARAMETERS,
    SEED_PARAMETERS,
    AttentionAutoencoder,
    VGG19Encoder,
    load_autoencoder,
    parameter_counts,
    save_autoencoder,
)
from tfstyle.style.data import ContentData, builtin_style_image
from tfstyle.style.losses import autoencoder_losses
from tfstyle.style.stylizer import StylizeOptions, Stylizer
from tfstyle.style.trainer import AutoencoderConfig, AutoencoderTrainer, train

REPO = Path(__file__).resolve().parents[1]


def _images(n=2, size=64, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype(np.float32)


def _scene(size, seed):
    """A small picture with a few flat shapes (content images for the tiny runs)."""
    rng = np.random.default_rng(seed)
    image = np.zeros((size, size, 3), np.uint8) + rng.integers(0, 255, 3).astype(np.uint8)
    for _ in range(3):
        y, x = rng.integers(0, size - 8, 2)
        s = rng.integers(6, size // 2)
        image[y:y + s, x:x + s] = rng.integers(0, 255, 3)
    return image


@pytest.fixture(scope="module")
def content_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("content")
    for i in range(8):
        Image.fromarray(_scene(48, i)).save(root / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def tiny():
    """relu3_1 CBAM auto-encoder with a quarter-width decoder, random VGG."""
    keras.utils.set_random_seed(0)
    return AttentionAutoencoder("relu3_1", "cbam", encoder_weights="random", width=0.25)


# --------------------------------------------------------------------------------------------
# Encoder and model structure
# --------------------------------------------------------------------------------------------


def test_encoder_feature_shapes_per_cut():
    x = _images(2, 64)
    expected = {"relu1_1": (2, 64, 64, 64), "relu2_1": (2, 32, 32, 128),
                "relu3_1": (2, 16, 16, 256), "relu4_1": (2, 8, 8, 512), "relu5_1": (2, 4, 4, 512)}
    for depth, cut in enumerate(CUTS, start=3):
        encoder = VGG19Encoder(cut, weights="random")
        out = encoder(x)
        assert list(out) == [f"relu{b}_1" for b in range(1, depth + 1)]
        for name, value in out.items():
            assert tuple(value.shape) == expected[name], (cut, name)
            assert float(tf.reduce_min(value)) >= 0.0  # rectified features
        assert not encoder.trainable_weights
        convs = sum(1 for layer in encoder.features.layers if "_conv" in layer.name)
        assert convs == {3: 5, 4: 9, 5: 13}[depth]  # the seed's 5 / 9 / 13 conv layers


def test_encoder_weights_missing_file_and_random_warning(tmp_path):
    missing = tmp_path / "nope_vgg19.h5"
    with pytest.raises(FileNotFoundError, match="nope_vgg19.h5"):
        VGG19Encoder("relu3_1", weights=missing)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        VGG19Encoder("relu3_1", weights=None)
    assert any("RANDOM" in str(w.message) for w in caught)
    with pytest.raises(ValueError, match="relu2_1"):
        VGG19Encoder("relu2_1", weights="random")


def _conv(cin, cout, k=3):
    return k * k * cin * cout + cout


def _expected_counts(cut):
    """Encoder and mirror-decoder weights of VGG19 up to relu{depth}_1, from the VGG table."""
    depth = int(cut[4])
    convs, cin = [], 3
    for block, n, channels in VGG19_BLOCKS:
        for _ in range(n if block < depth else 1 if block == depth else 0):
            convs.append((cin, channels))
            cin = channels
    encoder = sum(_conv(a, b) for a, b in convs)
    decoder = sum(_conv(b, a) for a, b in convs)  # every conv mirrored: out -> in
    return encoder, decoder


def test_parameter_counts_per_component():
    for cut in CUTS:
        model = AttentionAutoencoder(cut, "cbam", encoder_weights="random")
        counts = parameter_counts(model)
        encoder, decoder = _expected_counts(cut)
        assert (counts["encoder"], counts["decoder"]) == (encoder, decoder)
        c = model.channels
        # CBAM: shared MLP C -> C/16 -> C with biases, 7x7x2 conv without bias, BN (2 + 2).
        assert counts["attention_trainable"] == 2 * c * (c // 16) + c // 16 + c + 98 + 2
        assert counts["attention"] == counts["attention_trainable"] + 2
        assert counts["total"] == encoder + decoder + counts["attention"]
    assert (encoder, decoder) == (12_944_960, 12_944_451)  # relu5_1
    aams = AttentionAutoencoder("relu3_1", "self", encoder_weights="random")
    assert parameter_counts(aams)["attention"] == 2 * 256 ** 2 + 2 * 256  # f, g: C/2; h: C
    assert parameter_counts(AttentionAutoencoder("relu3_1", "none",
                                                 encoder_weights="random"))["attention"] == 0
    # The seed's totals include a full VGG19 with its fc layers.
    assert SEED_PARAMETERS[("relu4_1", "cbam")] - FULL_VGG19_PARAMETERS == 10_912_625


def test_attention_outputs_follow_the_seed_and_aams(tiny):
    x = _images(1, 32)
    out = tiny.forward(x, training=False)
    f = out["features"]["relu3_1"]
    refined, mc, ms = tiny.attention_module(f, training=False, return_attention=True)
    np.testing.assert_allclose(out["attention"], refined, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["A"], f + refined, rtol=1e-5, atol=1e-4)  # A = f + F''
    assert mc.shape == (1, 1, 1, 256) and ms.shape == (1, 8, 8, 1)
    assert out["x_hat"].shape == (1, 32, 32, 3)

    keras.utils.set_random_seed(1)
    aams = AttentionAutoencoder("relu3_1", "self", encoder_weights="random", width=0.25)
    f = aams.encode(x)["relu3_1"]
    a, o = aams.attend(f)
    mean, var = tf.nn.moments(f, [1, 2], keepdims=True)
    n = (f - mean) / tf.sqrt(var + 1e-5)
    np.testing.assert_allclose(a, tf.sqrt(var) * (n * o + n) + mean, rtol=1e-4, atol=1e-3)
    plain = AttentionAutoencoder("relu3_1", "none", encoder_weights="random", width=0.25)
    f = plain.encode(x)["relu3_1"]
    a, o = plain.attend(f)
    assert o is None and np.array_equal(a, f)


def test_self_attention_matches_formula_and_chunks_exactly():
    keras.utils.set_random_seed(2)
    x = tf.random.normal([2, 6, 5, 8])
    full = SelfAttention(8)
    chunked = SelfAttention(8, max_attention_entries=60)  # 30 x 30 > 60: chunks of 2 queries
    full.build(x.shape)
    chunked.build(x.shape)
    chunked.set_weights(full.get_weights())
    out = full(x).numpy()
    np.testing.assert_allclose(chunked(x).numpy(), out, rtol=1e-5, atol=1e-6)
    flat = lambda t: t.numpy().reshape(2, 30, -1)  # noqa: E731
    s = flat(full.query(x)) @ flat(full.key(x)).transpose(0, 2, 1)
    beta = np.exp(s - s.max(-1, keepdims=True))
    beta /= beta.sum(-1, keepdims=True)
    np.testing.assert_allclose(out.reshape(2, 30, 8), beta @ flat(full.value(x)),
                               rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Whitening / colouring, style swap, fusion
# --------------------------------------------------------------------------------------------


def _cov(x):
    x = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
    c = x - x.mean(0)
    return c.T @ c / len(x), x.mean(0)


def test_whitening_gives_identity_and_colouring_gives_style_statistics():
    rng = np.random.default_rng(0)
    content = (rng.normal(size=(12, 10, 6)) @ rng.normal(size=(6, 6)) + 3.0).astype(np.float32)
    style = (rng.normal(size=(9, 11, 6)) @ rng.normal(size=(6, 6)) * 2 - 1).astype(np.float32)
    white = wct.whiten(content).numpy()
    cov, mean = _cov(white)
    np.testing.assert_allclose(cov, np.eye(6), atol=1e-4)
    np.testing.assert_allclose(mean, 0, atol=1e-4)
    coloured = wct.colour(white, style).numpy()
    cov_cs, mean_cs = _cov(coloured)
    cov_s, mean_s = _cov(style)
    np.testing.assert_allclose(cov_cs, cov_s, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(mean_cs, mean_s, atol=1e-4)
    # alpha blends coloured and original content.
    np.testing.assert_allclose(wct.wct(content, style, 0.25).numpy(),
                               0.25 * coloured + 0.75 * content, rtol=1e-4, atol=1e-4)
    # A dead channel (all zero, as many ReLU channels are) has a zero eigenvalue: dropped.
    content[..., 2] = 0
    cov, _ = _cov(wct.whiten(content).numpy())
    np.testing.assert_allclose(cov, np.diag([1, 1, 0, 1, 1, 1]), atol=1e-4)


def _brute_force_swap(content, style, p):
    r = p // 2
    hc, wc, channels = content.shape
    hs, ws, _ = style.shape
    padded = np.pad(content, ((r, p - 1 - r), (r, p - 1 - r), (0, 0)), mode="reflect")
    patches = np.stack([style[i:i + p, j:j + p].ravel()
                        for i in range(hs - p + 1) for j in range(ws - p + 1)]).astype(np.float64)
    unit = patches / np.linalg.norm(patches, axis=1, keepdims=True)
    index = np.zeros((hc, wc), int)
    acc = np.zeros((hc + p - 1, wc + p - 1, channels))
    count = np.zeros((hc + p - 1, wc + p - 1, 1))
    for y in range(hc):
        for x in range(wc):
            window = padded[y:y + p, x:x + p].ravel().astype(np.float64)
            ncc = unit @ (window / np.linalg.norm(window))  # normalised correlation
            index[y, x] = j = int(np.argmax(ncc))
            acc[y:y + p, x:x + p] += patches[j].reshape(p, p, channels)
            count[y:y + p, x:x + p] += 1
    return index, (acc / count)[r:r + hc, r:r + wc]


@pytest.mark.parametrize("patch_size,max_entries", [(3, 2 ** 25), (3, 200), (5, 2 ** 25)])
def test_style_swap_picks_highest_normalised_correlation(patch_size, max_entries):
    rng = np.random.default_rng(patch_size + max_entries % 7)
    content = rng.normal(size=(7, 9, 4)).astype(np.float32)
    style = rng.normal(size=(8, 10, 4)).astype(np.float32)
    index, expected = _brute_force_swap(content, style, patch_size)
    got_index = swap.style_swap_indices(content, style, patch_size, max_entries).numpy()
    np.testing.assert_array_equal(got_index, index)
    np.testing.assert_allclose(swap.style_swap(content, style, patch_size, max_entries).numpy(),
                               expected, rtol=1e-5, atol=1e-5)


def test_multi_scale_swap_gives_k_strokes_coarse_to_fine():
    assert swap.stroke_scales(4) == pytest.approx([0.5, 2 ** -0.5, 1.0])
    assert swap.stroke_scales(1) == []
    rng = np.random.default_rng(3)
    content = rng.normal(size=(6, 6, 3)).astype(np.float32)
    style = rng.normal(size=(12, 12, 3)).astype(np.float32)
    pyramid = swap.style_pyramid(style, swap.stroke_scales(4), 3)
    # floor(12 beta) = 6, 8, 12, zero-padded by 1 on every side (AAMS's SAME patches)
    assert [m.shape[:2] for m in pyramid] == [(8, 8), (10, 10), (14, 14)]
    np.testing.assert_array_equal(pyramid[-1][1:-1, 1:-1], style)
    assert not np.any(pyramid[-1][0]) and not np.any(pyramid[-1][:, -1])
    strokes = swap.swap_strokes(content, pyramid, 3)
    assert len(strokes) == 4 and all(s.shape == (6, 6, 3) for s in strokes)
    np.testing.assert_array_equal(strokes[-1], content)
    padded = np.pad(style, ((1, 1), (1, 1), (0, 0)))
    np.testing.assert_allclose(strokes[-2], swap.style_swap(content, padded, 3), atol=1e-6)


def test_fusion_weights_are_positive_and_sum_to_one():
    rng = np.random.default_rng(4)
    attention = np.clip(np.concatenate([rng.normal(0.05, 0.02, 40), rng.normal(0.4, 0.02, 40),
                                        rng.normal(0.7, 0.02, 40), rng.normal(0.95, 0.02, 24)]),
                        0, 1).reshape(12, 12).astype(np.float32)
    centroids = fusion.kmeans_1d(attention, 4).numpy()
    np.testing.assert_allclose(centroids, [0.05, 0.4, 0.7, 0.95], atol=0.02)
    strokes = [np.full((12, 12, 2), float(k), np.float32) for k in range(4)]
    fused, weights, _ = fusion.multi_stroke_fusion(strokes, attention, theta=50.0)
    weights = weights.numpy()
    assert weights.shape == (12, 12, 4)
    assert (weights > 0).all()
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    # Low attention takes the coarsest stroke (first), high attention the content (last).
    low, high = np.unravel_index(attention.argmin(), attention.shape), \
        np.unravel_index(attention.argmax(), attention.shape)
    assert weights[low].argmax() == 0 and weights[high].argmax() == 3
    np.testing.assert_allclose(fused.numpy()[..., 0], (weights * np.arange(4)).sum(-1),
                               rtol=1e-5, atol=1e-5)


def test_attention_map_is_normalised_and_finds_the_hot_spot():
    o = np.full((10, 10, 4), 0.1, np.float32)
    o[3:6, 4:7] = 5.0
    a = fusion.attention_map(o).numpy()
    assert a.shape == (10, 10) and a.min() == 0.0 and a.max() == pytest.approx(1.0)
    assert a[4, 5] == pytest.approx(1.0) and a[0, 0] == 0.0
    assert (fusion.attention_map(np.ones((4, 4, 2))).numpy() == 0).all()


# --------------------------------------------------------------------------------------------
# Stylization
# --------------------------------------------------------------------------------------------


def test_region_keeps_content_decoded_outside_the_mask(tiny):
    content, style = _scene(45, 7), builtin_style_image(64, 1)
    stylizer = Stylizer(tiny)
    small = dict(max_size=64, style_size=40, strokes=3, patch_size=3)
    whole = stylizer(content, style, StylizeOptions(**small))
    assert whole.image.shape == (45, 45, 3) and whole.mask is None
    assert whole.attention.shape == (45, 45)
    assert 0.0 <= whole.attention.min() and whole.attention.max() <= 1.0
    w = whole.fusion_weights
    assert w.shape[-1] == 3 and (w > 0).all() and np.allclose(w.sum(-1), 1, atol=1e-5)

    fg = stylizer(content, style, StylizeOptions(region="foreground", **small))
    mask = fg.mask
    assert mask.shape == (45, 45) and mask.any() and (~mask).any()
    np.testing.assert_array_equal(mask, whole.attention >= 0.5)
    np.testing.assert_array_equal(fg.image[~mask], fg.content_decoded[~mask])
    np.testing.assert_array_equal(fg.image[mask], whole.stylized[mask])
    assert not np.array_equal(fg.stylized, fg.content_decoded)

    bg = stylizer(content, style, StylizeOptions(region="background", unstylized="original",
                                                 **small))
    np.testing.assert_array_equal(bg.mask, ~mask)
    np.testing.assert_array_equal(bg.image[mask], content[mask])
    np.testing.assert_array_equal(bg.image[~mask], whole.stylized[~mask])

    # alpha = 0 (AAMS's inter_weight) is a plain WCT of the attended content: no strokes.
    zero = stylizer(content, style, StylizeOptions(alpha=0.0, **small))
    fewer = stylizer(content, style, StylizeOptions(alpha=0.0, **{**small, "strokes": 2}))
    np.testing.assert_array_equal(zero.image, fewer.image)
    assert not np.array_equal(zero.image, whole.image)
    # The content cap is applied (aspect kept).
    capped = stylizer(_scene(60, 1)[:, :48], style, StylizeOptions(**{**small, "max_size": 40}))
    assert capped.image.shape == (40, 32, 3)


def test_options_and_config_errors_name_the_flag(tmp_path):
    with pytest.raises(ValueError, match="--region"):
        StylizeOptions(region="sky")
    with pytest.raises(ValueError, match="--alpha"):
        StylizeOptions(alpha=1.5)
    with pytest.raises(ValueError, match="--crop_size.*multiple of 8"):
        AutoencoderConfig(content_dir="x", model_dir="y", cut="relu4_1", crop_size=36,
                          load_size=64)
    with pytest.raises(ValueError, match="--vgg_weights"):
        AutoencoderConfig(content_dir="x", model_dir="y", vgg_weights=str(tmp_path / "no.h5"))
    with pytest.raises(ValueError, match="--content_dir"):
        AutoencoderConfig(model_dir="y")
    plain = AttentionAutoencoder("relu3_1", "none", encoder_weights="random", width=0.25)
    with pytest.raises(ValueError, match="--region=foreground"):
        Stylizer(plain)(_scene(32, 0), _scene(32, 1), StylizeOptions(region="foreground"))


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def _config(content_dir, model_dir, **overrides):
    values = dict(content_dir=str(content_dir), model_dir=str(model_dir), cut="relu3_1",
                  attention="cbam", vgg_weights="random", width=0.25, load_size=48,
                  crop_size=32, batch_size=4, steps=3, lr=2e-3, adam_epsilon=1e-7,
                  strategy="one_device", save_every_steps=2, log_every_steps=1,
                  image_every_steps=2, sample_style="")
    values.update(overrides)
    return AutoencoderConfig(**values)


def test_content_data_is_deterministic_and_skips_unreadable_files(content_dir, tmp_path):
    files = sorted(content_dir.glob("*.png"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    data = ContentData([broken] + files[:3], 48, 32, seed=5)
    batches = [b.numpy() for b in data.dataset(0, 0, 2)]
    again = [b.numpy() for b in data.dataset(0, 1, 2)]  # resumed at step 1
    assert len(batches) == 2 and batches[0].shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(again[0], batches[1])
    assert list(data.skipped) == [str(broken)]


def test_short_training_lowers_the_reconstruction_loss(content_dir, tmp_path):
    config = _config(content_dir, tmp_path / "run", steps=25)
    trainer = AutoencoderTrainer(config, tf.distribute.OneDeviceStrategy("/cpu:0"), "random")
    data = ContentData(sorted(content_dir.glob("*.png")), 48, 32, seed=0)
    fixed = tf.constant(np.stack([data.load(i, (0.5, 0.5)) for i in range(8)]), tf.float32)

    def reconstruction():
        terms = autoencoder_losses(trainer.model, fixed, config.l_p, training=False)
        return float(tf.reduce_mean(terms["L_con"]))

    before = reconstruction()
    step = 0
    for epoch in range(20):
        for batch in data.dataset(epoch, 0, trainer.global_batch):
            trainer.train_step(batch)
            step += 1
            if step == config.steps:
                break
        if step == config.steps:
            break
    assert int(trainer.step.numpy()) == config.steps
    after = reconstruction()
    assert after < 0.6 * before, (before, after)

    # Checkpoint round trip: a fresh trainer (other initial weights) restores everything.
    checkpoints = Checkpoints(trainer.checkpoint, tmp_path / "ckpt")
    checkpoints.save(step)
    other = AutoencoderTrainer(_config(content_dir, tmp_path / "run", seed=9),
                               tf.distribute.OneDeviceStrategy("/cpu:0"), "random")
    assert not np.allclose(other.model.decoder.get_weights()[0],
                           trainer.model.decoder.get_weights()[0])
    assert Checkpoints(other.checkpoint, tmp_path / "ckpt").restore() is not None
    assert int(other.step.numpy()) == step
    assert int(other.optimizer.iterations.numpy()) == step
    for mine, theirs in ((trainer.model.decoder, other.model.decoder),
                         (trainer.model.attention_module, other.model.attention_module)):
        for a, b in zip(mine.get_weights(), theirs.get_weights()):
            np.testing.assert_array_equal(a, b)

    # Saved model round trip (MODEL_DIR/autoencoder/): same outputs after loading.
    save_autoencoder(tmp_path / "saved", trainer.model, {"step": step, "vgg_weights": "random"})
    loaded, info = load_autoencoder(tmp_path / "saved")
    assert info["step"] == step and info["cut"] == "relu3_1" and info["attention"] == "cbam"
    np.testing.assert_allclose(loaded(fixed[:2]).numpy(), trainer.model(fixed[:2]).numpy(),
                               rtol=1e-5, atol=1e-3)
    with pytest.raises(FileNotFoundError, match="autoencoder"):
        load_autoencoder(tmp_path / "empty")


def test_absurd_learning_rate_writes_no_checkpoint_and_no_autoencoder(content_dir, tmp_path):
    # One Adam step at lr 1e30 leaves finite weights of about 1e30, which overflow at once.
    config = _config(content_dir, tmp_path / "run", steps=1, lr=1e30, save_every_steps=1)
    with pytest.raises(NonFiniteLossError, match="step 1: non-finite losses from the updated"):
        train(config)
    assert not checkpoints_on_disk(tmp_path / "run" / "checkpoints")
    assert not (tmp_path / "run" / "autoencoder").exists()


def test_missing_content_dir_is_a_data_error_and_writes_nothing(tmp_path):
    with pytest.raises(DataError, match="--content_dir=.*no such folder"):
        train(_config(tmp_path / "missing", tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def _run(args, timeout=240):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=timeout)


def test_cli_train_resume_and_stylize(content_dir, tmp_path):
    model_dir = tmp_path / "model"
    args = ["train.autoencoder", f"--content_dir={content_dir}", f"--model_dir={model_dir}",
            "--cut=relu3_1", "--vgg_weights=random", "--width=0.25", "--load_size=48",
            "--crop_size=32", "--batch_size=4", "--lr=2e-3", "--adam_epsilon=1e-7",
            "--strategy=one_device", "--save_every_steps=2", "--sample_style=builtin",
            "--sample_size=48"]
    first = _run(args + ["--steps=2"])
    assert first.returncode == 0, first.stderr[-3000:]
    assert "RANDOM weights" in first.stderr and "not meaningful" in first.stdout
    for name in ("autoencoder/autoencoder.keras", "autoencoder/info.json", "config.json",
                 "flags.txt", "samples/overview.png", "samples/foreground.png"):
        assert (model_dir / name).is_file(), name
    assert list((model_dir / "logs").iterdir())

    # Resuming in-process with the same settings continues from the checkpoint at step 2.
    summary = train(_config(content_dir, model_dir, steps=3, lr=2e-3, save_every_steps=2,
                            log_every_steps=100, image_every_steps=1000))
    assert summary["resumed_from"].endswith("ckpt-2") and summary["steps"] == 3
    assert json.loads((model_dir / "autoencoder" / "info.json").read_text())["step"] == 3

    content, style, out = tmp_path / "c.png", tmp_path / "s.png", tmp_path / "out" / "o.png"
    Image.fromarray(_scene(44, 3)).save(content)
    Image.fromarray(builtin_style_image(48, 2)).save(style)
    result = _run(["tfstyle.stylize", f"--model_dir={model_dir}", f"--content={content}",
                   f"--style={style}", f"--out={out}", "--region=foreground",
                   "--save_attention", "--style_size=40", "--strokes=3"])
    assert result.returncode == 0, result.stderr[-3000:]
    image = np.asarray(Image.open(out))
    mask = np.asarray(Image.open(out.with_name("o_mask.png")))[..., 0] > 127
    assert image.shape == (44, 44, 3)
    assert np.asarray(Image.open(out.with_name("o_attention.png"))).shape == (44, 44, 3)
    model, _ = load_autoencoder(model_dir)
    decoded = Stylizer(model)(_scene(44, 3), builtin_style_image(48, 2),
                              StylizeOptions(style_size=40, strokes=3)).content_decoded
    assert np.abs(image[~mask].astype(int) - decoded[~mask]).max() <= 1


def _flagfile(name):
    values = {}
    fields = AutoencoderConfig.__dataclass_fields__
    for line in (REPO / "configs" / name).read_text().splitlines():
        if line.startswith("--"):
            key, value = line[2:].split("=", 1)
            kind = type(fields[key].default)  # every flag is a config field
            values[key] = (value.lower() == "true" if kind is bool else
                           tuple(value.split(",")) if kind is tuple else kind(value))
    return AutoencoderConfig(**values)


def test_flagfiles_hold_valid_configs():
    seed = _flagfile("autoencoder_seed.flags")
    assert (seed.steps, seed.batch_size, seed.lr, seed.vgg_weights) == (10_000, 8, 1e-4, "imagenet")
    assert (seed.l_con, seed.l_p, seed.l_att, seed.l_tv) == (1.0, 10.0, 6.0, 10.0)
    demo = _flagfile("autoencoder_demo.flags")
    assert demo.content_dir == "synthetic" and demo.vgg_weights == "auto" and demo.sample_style


def test_models_module_reexports_the_attention_classes():

    assert autoencoder.VGG19Encoder is VGG19Encoder
    assert autoencoder.AttentionAutoencoder is AttentionAutoencoder
