"""Export of the attention style-transfer models (an auto-encoder with a style baked in) to
TF Serving SavedModels and LiteRT files, through `python -m export.generators --styles=...`.

The auto-encoder is tiny and untrained (random VGG); its decoder's last layer is scaled up so
the outputs span the pixel range and the agreement checks compare real pictures, not
mid-grey."""

import io
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from test_export import run_export_cli, smooth_image  # noqa: E402  (shared test helpers)

from tfstyle.deploy import checks, litert, saved_model
from tfstyle.deploy.style_model import FixedStyleTransfer, fixed_style_models
from tfstyle.style import wct
from tfstyle.style.autoencoder import (
    AttentionAutoencoder,
    load_autoencoder,
    save_autoencoder,
)
from tfstyle.style.data import builtin_style_image
from tfstyle.style.stylizer import StylizeOptions, Stylizer

SIZE = 32
# attention_on="features": the LiteRT files' Newton-Schulz whitening then does not move the
# attention map (bench/aams_order.py; the AAMS order is checked in tests/test_seeds.py).
SMALL = dict(style_size=48, strokes=3, patch_size=3, attention_on="features")


def tiny_autoencoder(cut="relu3_1"):
    keras.utils.set_random_seed(0)
    model = AttentionAutoencoder(cut, "cbam", encoder_weights="random", width=0.25)
    model.build((None, None, None, 3))
    last = model.decoder.steps[-1]
    kernel, bias = last.get_weights()
    last.set_weights([kernel * 60.0, bias])
    return model


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("stylizer")
    content = root / "content"
    (content / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(5):
        folder = content / "sub" if i % 2 else content
        Image.fromarray(smooth_image(rng, int(rng.integers(36, 60)), 44)).save(folder / f"{i}.png")
    (content / "broken.jpg").write_bytes(b"not an image")
    Image.fromarray(builtin_style_image(64, 1)).save(root / "strokes.png")
    model_dir = root / "Ink Run"
    save_autoencoder(model_dir, tiny_autoencoder(),
                     {"vgg_weights": "random", "step": 1, "content_dir": str(content)})
    return {"root": root, "model_dir": model_dir, "content": content,
            "style": root / "strokes.png"}


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported")
    result = run_export_cli(f"--model_dir={run['model_dir']}", f"--out_dir={out}",
                        f"--styles=Ink Strokes={run['style']}", f"--tflite_size={SIZE}",
                        "--style_size=48", "--strokes=3", "--patch_size=3",
                        "--attention_on=features",
                        "--region=foreground", "--check_images=3", "--latency_runs=1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result.stdout


def reference(run, region="foreground"):
    model, _ = load_autoencoder(run["model_dir"])
    style = np.asarray(Image.open(run["style"]).convert("RGB"))
    return Stylizer(model), style, StylizeOptions(region=region, **SMALL)


def test_newton_schulz_whitening_converges_to_the_eigen_whitening():
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(6, 6))
    features = (rng.normal(size=(8, 9, 6)) @ mix).astype(np.float32)
    exact = wct.whiten(features).numpy()
    approx = wct.whiten(features, method="newton_schulz").numpy()
    assert np.linalg.norm(approx - exact) / np.linalg.norm(exact) < 1e-3
    flat = approx.reshape(-1, 6)
    np.testing.assert_allclose(flat.T @ flat / len(flat), np.eye(6), atol=2e-3)
    with pytest.raises(ValueError, match="whitening method"):
        wct.whiten(features, method="svd")


@pytest.mark.parametrize("region,unstylized", [("all", "decoded"), ("foreground", "decoded"),
                                               ("background", "original")])
def test_fixed_style_model_is_the_stylization(region, unstylized):
    """The exported model (style baked in, a graph) gives what python -m tfstyle.stylize
    gives, to the 8-bit rounding of the latter."""
    model = tiny_autoencoder()
    rng = np.random.default_rng(1)
    content, style = smooth_image(rng, 45, 38), builtin_style_image(64, 2)
    options = StylizeOptions(region=region, unstylized=unstylized, **SMALL)
    want = Stylizer(model)(content, style, options).image.astype(np.float32)
    assert want.std() > 10  # a picture, not mid-grey
    exact, lite = fixed_style_models(model, style, options)
    graph = tf.function(exact, input_signature=[tf.TensorSpec([None, None, None, 3])])
    got = (graph(content[None] / 127.5 - 1.0)[0].numpy() + 1.0) * 127.5
    assert np.abs(got - want).max() <= 0.51
    got_ns = (lite(content[None] / 127.5 - 1.0)[0].numpy() + 1.0) * 127.5
    assert checks.psnr(got_ns, want) > 40
    # Batches are stylized image by image.
    batch = np.stack([content, content[::-1]]) / 127.5 - 1.0
    both = graph(batch).numpy()
    np.testing.assert_allclose(both[1], graph(batch[1:])[0].numpy(), atol=1e-5)


def test_serving_pads_once_to_the_encoder_multiple():
    """A relu4_1 model downsamples by 8: the serving graph and the check's reference pad to
    8 (not 4 and then 8), so they give what tfstyle.stylize gives."""
    model = tiny_autoencoder("relu4_1")
    content = smooth_image(np.random.default_rng(4), 41, 50)
    options = StylizeOptions(**SMALL)
    want = Stylizer(model)(content, builtin_style_image(64, 3), options).image
    exact, _ = fixed_style_models(model, builtin_style_image(64, 3), options)
    assert exact.multiple == 8
    served = saved_model.translate_pixels(exact, saved_model.SizePolicy(), content[None] * 1.0)[0]
    assert np.abs(served.numpy() - want).max() <= 0.51
    assert np.abs(checks.KerasReference(exact)(content) - want).max() <= 0.51


def test_fixed_style_model_refuses_a_region_without_attention():
    keras.utils.set_random_seed(0)
    plain = AttentionAutoencoder("relu3_1", "none", encoder_weights="random", width=0.25)
    bank = Stylizer(plain).bank(builtin_style_image(32, 1), StylizeOptions(**SMALL))
    with pytest.raises(ValueError, match="--region"):
        FixedStyleTransfer(plain, bank, StylizeOptions(region="foreground", **SMALL))


def test_cli_layout_and_models_json(exported, run):
    out, stdout = exported
    name = "ink_run_ink_strokes"
    assert (out / "serving" / name / "1" / "saved_model.pb").is_file()
    assert f'name: "{name}"' in (out / "serving" / "models.config").read_text()
    listing = json.loads((out / "tflite" / "models.json").read_text())
    assert listing["refused"] == []
    assert sorted(m["variant"] for m in listing["models"]) == ["dynamic", "float16", "float32"]
    for entry in listing["models"]:
        assert entry["kind"] == "stylizer" and entry["model_name"] == name
        assert (entry["direction"], entry["source_domain"], entry["target_domain"]) == \
            ("ink_strokes", "content", "ink_strokes")
        assert entry["input"]["shape"] == entry["output"]["shape"] == [1, SIZE, SIZE, 3]
        assert entry["source"]["stylize"]["region"] == "foreground"
        assert entry["source"]["litert_whitening"].startswith("newton_schulz")
        assert entry["agreement"]["image_folder"] == str(run["content"])
    assert f"serving/{name}/1" in stdout and "PSNR vs Keras" in stdout


def test_served_stylizer_gives_the_stylization(exported, run):
    out, _ = exported
    stylizer, style, options = reference(run)
    loaded = saved_model.LoadedSavedModel(out / "serving" / "ink_run_ink_strokes" / "1")
    content = smooth_image(np.random.default_rng(5), 41, 50)
    want = stylizer(content, style, options).image.astype(np.float32)
    got = loaded.translate_pixels(content[None].astype(np.float32))[0]
    assert got.shape == want.shape and np.abs(got - want).max() <= 0.51
    png = loaded.translate_bytes([_png(content)])[0]
    decoded = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert np.abs(decoded.astype(np.float32) - want).max() <= 1.0


def test_oversized_content_is_downscaled_within_the_swap_limit(run):
    model, _ = load_autoencoder(run["model_dir"])
    options = StylizeOptions(max_swap_entries=40_000, **SMALL)
    exact, _ = fixed_style_models(model, builtin_style_image(64, 1), options)
    hs, ws, _ = exact.style_shapes[-1]
    m, p = exact.multiple, options.patch_size
    policy = saved_model.SizePolicy(max_side=200, max_pixels=exact.pixel_limit(200))
    for height, width in [(300, 200), (200, 37), (1000, 1000), (64, 199)]:
        h, w = policy.fit(height, width)
        volume = (-(-h // m) + p - 1) * (-(-w // m) + p - 1) * hs * ws
        assert volume <= options.max_swap_entries, (height, width, h, w)
    assert policy.fit(300, 200) != (300, 200)
    # Below the minimum side the served graph says so.
    with pytest.raises(ValueError, match="minimum side"):
        exact(np.zeros((1, 4, 40, 3), np.float32))
    traced = tf.function(exact, input_signature=[tf.TensorSpec([None, None, None, 3])])
    with pytest.raises(tf.errors.InvalidArgumentError, match="minimum side"):
        traced(np.zeros((1, 4, 40, 3), np.float32))


@pytest.mark.parametrize("variant", ["float32", "dynamic"])
def test_litert_stylizer_is_builtin_and_agrees(exported, run, variant):
    out, _ = exported
    listing = json.loads((out / "tflite" / "models.json").read_text())
    entry = next(m for m in listing["models"] if m["variant"] == variant)
    content = (out / "tflite" / entry["file"]).read_bytes()
    facts = litert.inspect(content)
    assert not facts.custom_ops and facts.max_rank <= 4
    assert "RESIZE_NEAREST_NEIGHBOR" in facts.ops and "ARG_MAX" in facts.ops
    stylizer, style, options = reference(run)
    image = checks.center_square(smooth_image(np.random.default_rng(9), 40, 52), SIZE)
    want = stylizer(image, style, options).image
    got = litert.LiteModel(content, variant).run(image)
    assert checks.psnr(got, want) >= checks.DEFAULT_MIN_PSNR_STYLIZER[variant]


def test_cli_errors_name_the_flag(run, tmp_path):
    result = run_export_cli(f"--model_dir={run['model_dir']}", f"--out_dir={tmp_path}")
    assert result.returncode != 0 and "--styles" in result.stderr
    result = run_export_cli(f"--model_dir={run['model_dir']}", f"--out_dir={tmp_path}",
                        f"--styles={tmp_path / 'missing.png'}")
    assert result.returncode != 0 and "--styles" in result.stderr
    assert "missing.png" in result.stderr
    result = run_export_cli(f"--model_dir={run['model_dir']}", f"--out_dir={tmp_path}",
                        f"--styles={run['style']}", "--patch_size=4")
    assert result.returncode != 0 and "--patch_size" in result.stderr
    result = run_export_cli(f"--model_dir={run['model_dir']}", f"--out_dir={tmp_path}",
                            f"--styles={run['style']},{run['style']}")
    assert result.returncode != 0 and "--styles" in result.stderr
    assert "same model name" in result.stderr
    assert not list(tmp_path.iterdir())


def _png(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
