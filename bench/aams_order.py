"""The figures behind the options kept beside AAMS's test-time order (docs/seeds.md):

    python bench/aams_order.py [--contents=6] [--draws=50]

litert     PSNR of the Newton-Schulz stylizer (what the LiteRT files are converted from)
           against the reference stylizer (eigen-decomposition), per --attention_on.
smoothing  how much the foreground mask (attention map >= 0.5) depends on the draw of
           AAMS's random smoothing kernel: pixels that differ between two draws, and
           between a draw and the box filter (the draws' expectation).
kmeans     AAMS's k-means initialisation (k random values) against ours (quantiles) on the
           same attention maps: runs ending with a NaN centroid (an empty cluster) or with a
           higher or lower within-cluster sum of squares than ours.

The model is tiny and untrained (relu3_1 CBAM, quarter-width decoder, random VGG19, its last
layer scaled so outputs span the pixel range) and the contents are the smooth pictures of
tests/test_export.py, as in tests/test_export_stylizer.py, whose content is the first one
here. It measures the pipeline's numerics, not a trained model's maps.
"""

import sys
from pathlib import Path

import numpy as np
from absl import app, flags

import tfstyle  # noqa: F401  (before TensorFlow: sets the CPU kernel options)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_export import smooth_image  # the export tests' pictures

flags.DEFINE_integer("contents", 6, "Content pictures.")
flags.DEFINE_integer("draws", 50, "AAMS smoothing kernels drawn per content.")
flags.DEFINE_integer("inits", 250, "AAMS k-means initialisations per content.")
FLAGS = flags.FLAGS


def tiny_model():
    import keras

    from tfstyle.style.autoencoder import AttentionAutoencoder
    keras.utils.set_random_seed(0)
    model = AttentionAutoencoder("relu3_1", "cbam", encoder_weights="random", width=0.25)
    last = model.decoder.steps[-1]
    kernel, bias = last.get_weights()
    last.set_weights([kernel * 60.0, bias])
    return model


def contents(n, size=None):
    """tests/test_export_stylizer.py's content (45 x 38), then n - 1 others."""
    shapes = [(45, 38)] + [(45 + 7 * i % 40, 38 + 11 * i % 50) for i in range(1, n)]
    for i, (h, w) in enumerate(shapes):
        yield smooth_image(np.random.default_rng(i + 1), *(size or (h, w)))


def litert_agreement(model):
    from tfstyle.deploy.checks import psnr
    from tfstyle.deploy.style_model import fixed_style_models
    from tfstyle.style.data import builtin_style_image
    from tfstyle.style.stylizer import ATTENTION_INPUTS, StylizeOptions, Stylizer

    style = builtin_style_image(64, 2)
    print("| attention_on | PSNR per content (dB) | min | median |\n|---|---|---:|---:|")
    for on in ATTENTION_INPUTS:
        options = StylizeOptions(attention_on=on, style_size=48, strokes=3, patch_size=3)
        _, lite = fixed_style_models(model, style, options)
        values = []
        for content in contents(FLAGS.contents):
            want = Stylizer(model)(content, style, options).image.astype(np.float32)
            got = (lite(content[None] / 127.5 - 1.0)[0].numpy() + 1.0) * 127.5
            values.append(psnr(got, want))
        print(f"| {on} | {' '.join(f'{v:.1f}' for v in values)} | {min(values):.1f} | "
              f"{np.median(values):.1f} |")


def attention_outputs(model):
    from tfstyle.style import wct
    from tfstyle.style.stylizer import Stylizer

    stylizer = Stylizer(model)
    for content in contents(FLAGS.contents, (96, 96)):
        features = stylizer._bottleneck(content)
        yield model.attend(wct.whiten(features[0])[None], training=False)[1][0]


def smoothing(model):
    from tfstyle.style import fusion

    negative = np.mean([(fusion.smoothing_kernel("aams", s) < 0).any() for s in range(1000)])
    print(f"AAMS kernels with a negative weight: {100 * negative:.0f}% of 1000 draws")
    between, to_box = [], []
    for o in attention_outputs(model):
        masks = np.stack([fusion.attention_map(o, fusion.smoothing_kernel("aams", s)).numpy()
                          for s in range(FLAGS.draws)]) >= 0.5
        box = fusion.attention_map(o, fusion.smoothing_kernel("box")).numpy() >= 0.5
        between.append((masks[::2] != masks[1::2]).mean())
        to_box.append((masks != box).mean())
    print(f"mask pixels that differ between two AAMS draws: {100 * np.mean(between):.1f}% "
          f"(per content {', '.join(f'{100 * v:.1f}' for v in between)}); between a draw "
          f"and the box filter: {100 * np.mean(to_box):.1f}%")


def kmeans(model):
    from tfstyle.style import fusion

    def lloyd(v, c):
        for _ in range(fusion.KMEANS_ITERATIONS):
            assign = np.argmin((v[:, None] - c[None]) ** 2, axis=1)
            c = np.array([v[assign == j].mean() if (assign == j).any() else np.nan
                          for j in range(len(c))])
        return c

    def sse(v, c):
        return ((v[:, None] - c[None]) ** 2).min(1).sum()

    counts = {"nan": 0, "higher": 0, "lower": 0, "runs": 0}
    for i, o in enumerate(attention_outputs(model)):
        v = fusion.attention_map(o).numpy().ravel().astype(np.float64)
        ours = sse(v, fusion.kmeans_1d(v, 4).numpy())
        rng = np.random.default_rng(i)
        for _ in range(FLAGS.inits):
            c = lloyd(v, v[rng.permutation(v.size)[:4]])
            counts["runs"] += 1
            if np.isnan(c).any():
                counts["nan"] += 1
            elif sse(v, c) > ours * 1.001:
                counts["higher"] += 1
            elif sse(v, c) < ours / 1.001:
                counts["lower"] += 1
    print(f"AAMS k-means initialisation, {counts['runs']} runs: {counts['nan']} NaN, "
          f"{counts['higher']} higher and {counts['lower']} lower sum of squares than the "
          "quantile initialisation")


def main(argv):
    del argv
    model = tiny_model()
    litert_agreement(model)
    smoothing(model)
    kmeans(model)


if __name__ == "__main__":
    app.run(main)
