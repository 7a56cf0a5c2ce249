"""Gatys et al. neural style transfer ("A neural algorithm of artistic style", 2015) on VGG19.

The generated image x (RGB in [0, 1]) is optimised directly to minimise

    L(x) = alpha * L_content + beta * L_style + gamma * L_tv

    L_content = 1/|C| sum_{l in C} mean_{h,w,c} (F^l(x) - F^l(x_c))^2
    L_style   = 1/|S| sum_{l in S} mean_{i,j} (G^l(x) - A^l)^2
    L_tv      = sum_{h,w,c} |x[h+1,w,c] - x[h,w,c]| + |x[h,w+1,c] - x[h,w,c]|

with F^l the VGG19 activations of layer l ([H_l, W_l, N_l]), G^l = F^l (F^l)^T / (H_l W_l) the
Gram matrix (:func:`tfstyle.style_vector.gram_matrix`) and A^l the style target: the Gram
matrix of a style image, or here the mean Gram matrix of a cluster of style images.  Gatys'
E_l = 1/(4 N_l^2 M_l^2) sum (G_raw - A_raw)^2 is mean((G - A)^2) / 4 in this normalisation, so
the style term is Gatys' up to a constant folded into beta.

Defaults follow the TensorFlow style-transfer reference (methods.md section 8): content layer
block5_conv2, style layers block1_conv1 ... block5_conv1 (relu1_1 ... relu5_1), alpha = 1e4,
beta = 1e-2, gamma = 30 (L_tv is a sum, so its pull grows with the image area; the default suits
~400-512 px), Adam(lr 0.02, beta_1 0.99, epsilon 0.1), 1,000 steps.  x starts from the content
image and is clipped to [0, 1] after every step.  L-BFGS (Gatys' choice) is not offered.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping

import keras
import numpy as np
import tensorflow as tf

from tfstyle.core import vgg
from tfstyle.core.config import Config, ConfigError, setting
from tfstyle.texture_words.style_vector import gram_matrix

#: Gatys' style layers conv1_1 ... conv5_1 (rectified; Keras names).
STYLE_LAYERS: tuple[str, ...] = (
    "block1_conv1",
    "block2_conv1",
    "block3_conv1",
    "block4_conv1",
    "block5_conv1",
)
#: Content layer (conv5_2 as in the TF reference; conv4_2 = "block4_conv2" is Gatys' paper).
CONTENT_LAYER = "block5_conv2"

OPTIMIZERS = ("adam", "rmsprop")
INITS = ("content", "noise")


@dataclasses.dataclass(frozen=True)
class GatysConfig(Config):
    """Settings of :func:`stylize` (see the module docstring for the loss); the flags of
    ``python -m tfstyle.texture`` are generated from these fields."""

    steps: int = setting(1000, "Optimisation steps.", min=0)
    optimizer: str = setting("adam", "Optimiser (adam: beta_1 0.99, epsilon 0.1).",
                             choices=OPTIMIZERS)
    learning_rate: float = setting(0.02, "Learning rate (image in [0, 1]).", above=0)
    content_weight: float = setting(1e4, "alpha, weight of the content loss.", min=0)
    style_weight: float = setting(1e-2, "beta, weight of the style loss.", min=0)
    tv_weight: float = setting(30.0, "gamma, weight of the total-variation loss.", min=0)
    content_layer: str = setting(CONTENT_LAYER, "Content layer (Keras or paper name).")
    style_layers: tuple[str, ...] = setting(STYLE_LAYERS, "Style layers (Keras or paper "
                                            "names).", flag=False)
    init: str = setting("content", "Starting image.", choices=INITS)
    seed: int = setting(0, "Seed of --init=noise.")
    log_every: int = setting(50, "Print progress every N steps (0: only the first and last).",
                             min=0)

    def validate(self):
        self.need(self.style_layers, "style_layers", "must not be empty")
        for name in ("content_layer", "style_layers"):
            value = getattr(self, name)
            for layer in value if isinstance(value, tuple) else (value,):
                try:
                    vgg.keras_layer_name(layer)
                except ValueError as err:
                    raise ConfigError(f"--{name}={value!r}: {err}") from None

    def make_optimizer(self) -> keras.optimizers.Optimizer:
        if self.optimizer == "adam":
            return keras.optimizers.Adam(self.learning_rate, beta_1=0.99, epsilon=0.1)
        return keras.optimizers.RMSprop(self.learning_rate)


@dataclasses.dataclass(frozen=True)
class StylizeResult:
    """``image``: ``[H, W, 3]`` uint8 RGB; ``history``: the logged loss dicts (with ``step``)."""

    image: np.ndarray
    history: list[dict]


def resize_longer_side(pixels, size: int, upscale: bool = False) -> tf.Tensor:
    """``[H, W, 3]`` -> float32 ``[H', W', 3]`` with max(H', W') = ``size`` (aspect kept).

    Bilinear with antialiasing.  Without ``upscale`` smaller images are returned unchanged.
    """
    x = tf.cast(tf.convert_to_tensor(pixels), tf.float32)
    h, w = int(x.shape[0]), int(x.shape[1])
    scale = size / max(h, w)
    if scale >= 1.0 and not upscale:
        return x
    new = (max(1, round(h * scale)), max(1, round(w * scale)))
    return tf.image.resize(x, new, method="bilinear", antialias=True)


def gatys_extractor(base: keras.Model, config: GatysConfig) -> keras.Model:
    """VGG19 feature model returning the content layer and the style layers of ``config``."""
    layers = list(dict.fromkeys([config.content_layer, *config.style_layers]))
    return vgg.vgg19_feature_extractor(layers, base=base, name="gatys_features")


def mean_gram_targets(
    images, extractor: keras.Model, layers, size: int | None = None
) -> dict[str, tf.Tensor]:
    """Style targets A^l = mean over images of G^l(image), ``{layer: [N_l, N_l]}``.

    Args:
      images: ``[H_i, W_i, 3]`` RGB arrays in [0, 255]; sizes may differ (G is normalised by
        H_l W_l, so images of different sizes average fairly).
      extractor: a model returning at least ``layers``.
      size: if given, each image is resized so its longer side is ``size`` first.
    """
    if len(images) == 0:
        raise ValueError("mean_gram_targets needs at least one image.")
    sums = {name: None for name in layers}
    for img in images:
        x = resize_longer_side(img, size, upscale=True) if size else tf.cast(img, tf.float32)
        feats = extractor(x[None], training=False)
        for name in layers:
            g = gram_matrix(feats[name])[0]
            sums[name] = g if sums[name] is None else sums[name] + g
    return {name: s / float(len(images)) for name, s in sums.items()}


def gatys_losses(
    features: Mapping[str, tf.Tensor],
    image01: tf.Tensor,
    content_target: tf.Tensor,
    style_targets: Mapping[str, tf.Tensor],
    config: GatysConfig,
) -> dict[str, tf.Tensor]:
    """The loss terms for one image.

    Args:
      features: the extractor's output for ``image01 * 255`` (batch of 1).
      image01: ``[1, H, W, 3]`` generated image in [0, 1] (for the TV term).
      content_target: ``[1, H_c, W_c, N_c]`` content-layer activations of the content image.
      style_targets: ``{layer: [N_l, N_l]}`` target Gram matrices A^l.

    Returns:
      ``{"content", "style", "tv", "total"}`` scalars; ``total`` is the weighted sum.
    """
    content = tf.reduce_mean(tf.square(features[config.content_layer] - content_target))
    style = tf.add_n(
        [
            tf.reduce_mean(tf.square(gram_matrix(features[name])[0] - style_targets[name]))
            for name in config.style_layers
        ]
    ) / float(len(config.style_layers))
    tv = tf.reduce_sum(tf.image.total_variation(image01))
    total = (
        config.content_weight * content + config.style_weight * style + config.tv_weight * tv
    )
    return {"total": total, "content": content, "style": style, "tv": tv}


ProgressFn = Callable[[int, int, Mapping[str, float], float], None]


def stylize(
    content_pixels,
    style_targets: Mapping[str, tf.Tensor],
    extractor: keras.Model,
    config: GatysConfig = GatysConfig(),
    progress: ProgressFn | None = None,
) -> StylizeResult:
    """Renders ``content_pixels`` with the style given by ``style_targets`` (Gatys).

    Args:
      content_pixels: ``[H, W, 3]`` RGB in [0, 255] (resize it beforehand to bound the cost).
      style_targets: ``{layer: [N_l, N_l]}`` for every layer in ``config.style_layers``, e.g.
        from :func:`mean_gram_targets`.
      extractor: from :func:`gatys_extractor` (any model returning the content and style
        layers for RGB [0, 255] input).  Runs on the GPU when TensorFlow sees one.
      progress: called as ``progress(step, steps, losses, seconds)`` at step 1, every
        ``config.log_every`` steps and at the last step.

    Returns:
      :class:`StylizeResult`; ``history`` holds the losses at the reported steps (step 0 is the
      initial image).
    """
    missing = [n for n in config.style_layers if n not in style_targets]
    if missing:
        raise KeyError(f"style_targets lacks layer(s) {missing}.")
    content = tf.cast(tf.convert_to_tensor(content_pixels), tf.float32)[None] / 255.0
    targets = {n: tf.convert_to_tensor(style_targets[n], tf.float32) for n in config.style_layers}
    content_target = extractor(content * 255.0, training=False)[config.content_layer]

    if config.init == "content":
        start = content
    else:
        rng = np.random.default_rng(config.seed)
        start = tf.constant(rng.uniform(0.0, 1.0, content.shape).astype(np.float32))
    image = tf.Variable(start, trainable=True, name="generated_image")
    optimizer = config.make_optimizer()

    def losses_of(x):
        feats = extractor(x * 255.0, training=False)
        return gatys_losses(feats, x, content_target, targets, config)

    @tf.function
    def evaluate():
        return losses_of(image)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            losses = losses_of(image)
        grad = tape.gradient(losses["total"], image)
        optimizer.apply_gradients([(grad, image)])
        image.assign(tf.clip_by_value(image, 0.0, 1.0))
        return losses

    def record(step_no, losses):
        entry = {k: float(v) for k, v in losses.items()}
        entry["step"] = step_no
        history.append(entry)
        return entry

    history: list[dict] = []
    record(0, evaluate())
    t0 = time.perf_counter()
    for i in range(1, config.steps + 1):
        step()
        if i == 1 or i == config.steps or (config.log_every > 0 and i % config.log_every == 0):
            entry = record(i, evaluate())  # losses of the image after update i
            if progress is not None:
                progress(i, config.steps, entry, time.perf_counter() - t0)
    result = tf.cast(tf.round(image[0] * 255.0), tf.uint8).numpy()
    return StylizeResult(image=result, history=history)
