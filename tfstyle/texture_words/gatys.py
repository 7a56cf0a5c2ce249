"""Gatys et al. neural style transfer ("A neural algorithm of artistic style", 2015) on VGG19.

The generated image x (RGB in [0, 1]) is optimised directly to minimise

    L(x) = alpha * L_content + beta * L_style + gamma * L_tv

with F^l the VGG19 activations of layer l (N_l channels at M_l = H_l W_l positions), the raw
Gram matrix F^l (F^l)^T, G^l = F^l (F^l)^T / M_l the normalised one
(:func:`tfstyle.texture_words.style_vector.gram_matrix`) and A^l the style target: the
normalised Gram matrix of a style image, or here the mean over a cluster of style images.

``loss_form="paper"`` (default), the paper's equations:

    L_content = 1/2 sum_{i,p} (F_ip(x) - F_ip(x_c))^2                  (content layer)
    L_style   = sum_{l in S} w_l E_l,  w_l = 1 / |S|
    E_l       = 1/(4 N_l^2 M_l^2) sum_{i,j} (G_raw^l(x) - A_raw^l)^2 = 1/4 mean_{i,j} (G^l - A^l)^2

(the two forms of E_l agree when the style image and x have the same size; the normalised one
also compares images of other sizes fairly).  ``loss_form="mean"``, the TensorFlow tutorial's
(methods.md section 8; tfstyle 0.1's only form):

    L_content = mean_{i,p} (F_ip(x) - F_ip(x_c))^2
    L_style   = 1/|S| sum_{l in S} mean_{i,j} (G^l(x) - A^l)^2

and in both L_tv = sum_{h,w,c} |x[h+1,w,c] - x[h,w,c]| + |x[h,w+1,c] - x[h,w,c]| (a sum: its
pull grows with the image area).

The defaults are the paper's: content layer conv4_2, style layers conv1_1 ... conv5_1 (equal
weights), alpha / beta = 1e-3 (alpha 1, beta 1e3; the paper's figures use 1e-3 and 1e-4), no TV
term, x started from white noise, max pooling replaced by average pooling, and L-BFGS: scipy's
L-BFGS-B with x bounded to [0, 1] by its bounds, the loss and its gradient from one TensorFlow
function.  Options: Adam (lr 0.02, beta_1 0.99, epsilon 0.1, x clipped to [0, 1] after every
step: the tutorial's, and tfstyle 0.1's default) or RMSprop, a TV weight, the content image as
the start, max pooling, the "mean" form.  What stays different from the paper: Keras' VGG19
ImageNet weights, not the paper's copy rescaled so that every filter's mean activation over
images and positions is 1, so a weight ratio does not give the paper's balance of terms exactly.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping

import keras
import numpy as np
import tensorflow as tf
from scipy import optimize

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
#: Gatys' content layer conv4_2 (the TensorFlow tutorial takes block5_conv2).
CONTENT_LAYER = "block4_conv2"

OPTIMIZERS = ("lbfgs", "adam", "rmsprop")
INITS = ("noise", "content")
LOSS_FORMS = ("paper", "mean")
POOLINGS = ("avg", "max")
#: L-BFGS evaluates the loss at most this many times per iteration on average (the limit of
#: torch.optim.LBFGS and of Lua torch's optim.lbfgs, which Gatys-style code commonly uses).
EVALUATIONS_PER_ITERATION = 1.25


@dataclasses.dataclass(frozen=True)
class GatysConfig(Config):
    """Settings of :func:`stylize` (see the module docstring for the loss); the flags of
    ``python -m tfstyle.texture`` are generated from these fields."""

    steps: int = setting(1000, "Optimisation steps (L-BFGS: iterations, at most 1.25 loss "
                         "evaluations each on average).", min=0)
    optimizer: str = setting("lbfgs", "Optimiser: lbfgs (the paper's; scipy's L-BFGS-B, the "
                             "image bounded to [0, 1]), adam (beta_1 0.99, epsilon 0.1) or "
                             "rmsprop (both clip to [0, 1] after every step).",
                             choices=OPTIMIZERS)
    learning_rate: float = setting(0.02, "Learning rate of adam and rmsprop (image in [0, 1]).",
                                   above=0)
    content_weight: float = setting(1.0, "alpha, weight of the content loss.", min=0)
    style_weight: float = setting(1e3, "beta, weight of the style loss (alpha / beta = 1e-3 "
                                  "as in the paper).", min=0)
    tv_weight: float = setting(0.0, "gamma, weight of the total-variation loss (not in the "
                               "paper).", min=0)
    loss_form: str = setting("paper", "How the terms are normalised: paper (1/2 sum, "
                             "1/(4 N^2 M^2) sum) or mean (the TensorFlow tutorial's).",
                             choices=LOSS_FORMS)
    content_layer: str = setting(CONTENT_LAYER, "Content layer (Keras or paper name).")
    style_layers: tuple[str, ...] = setting(STYLE_LAYERS, "Style layers (Keras or paper "
                                            "names).", flag=False)
    pooling: str = setting("avg", "VGG19 pooling: avg (the paper's) or max (the network's).",
                           choices=POOLINGS)
    init: str = setting("noise", "Starting image: white noise (the paper's) or the content "
                        "image.", choices=INITS)
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
        """The Keras optimiser of ``adam`` / ``rmsprop`` (``lbfgs`` is scipy's)."""
        if self.optimizer == "adam":
            return keras.optimizers.Adam(self.learning_rate, beta_1=0.99, epsilon=0.1)
        if self.optimizer == "rmsprop":
            return keras.optimizers.RMSprop(self.learning_rate)
        raise ValueError(f"optimizer {self.optimizer!r} is not a Keras optimiser")


@dataclasses.dataclass(frozen=True)
class StylizeResult:
    """``image``: ``[H, W, 3]`` uint8 RGB; ``history``: the logged loss dicts (with ``step``);
    ``steps``: the steps taken (L-BFGS may stop before ``config.steps`` when no line search
    along its direction lowers the loss further; ``message`` says why it stopped);
    ``evaluations``: loss-and-gradient evaluations and ``seconds`` the time after the start
    image's."""

    image: np.ndarray
    history: list[dict]
    steps: int = 0
    evaluations: int = 0
    seconds: float = 0.0
    message: str = ""


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


def _average_pooling(layer):
    """``clone_model`` hook: VGG's max pooling -> average pooling, every other layer shared."""
    if isinstance(layer, keras.layers.MaxPooling2D):
        return keras.layers.AveragePooling2D(layer.pool_size, layer.strides,
                                             padding=layer.padding, name=layer.name)
    return layer


def gatys_extractor(base: keras.Model, config: GatysConfig) -> keras.Model:
    """VGG19 feature model returning the content layer and the style layers of ``config``,
    with ``config.pooling`` (``avg``: the same convolution layers and weights as ``base``,
    average pooling in place of max pooling)."""
    layers = list(dict.fromkeys([config.content_layer, *config.style_layers]))
    model = vgg.vgg19_feature_extractor(layers, base=base, name="gatys_features")
    if config.pooling == "max":
        return model
    return keras.models.clone_model(model, clone_function=_average_pooling)


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
    """The loss terms for one image, in ``config.loss_form`` (module docstring).

    Args:
      features: the extractor's output for ``image01 * 255`` (batch of 1).
      image01: ``[1, H, W, 3]`` generated image in [0, 1] (for the TV term).
      content_target: ``[1, H_c, W_c, N_c]`` content-layer activations of the content image.
      style_targets: ``{layer: [N_l, N_l]}`` target Gram matrices A^l (normalised by M_l).

    Returns:
      ``{"content", "style", "tv", "total"}`` scalars; ``total`` is the weighted sum.
    """
    content_sq = tf.square(features[config.content_layer] - content_target)
    style_sq = [tf.square(gram_matrix(features[name])[0] - style_targets[name])
                for name in config.style_layers]
    if config.loss_form == "paper":
        content = 0.5 * tf.reduce_sum(content_sq)
        per_layer = [0.25 * tf.reduce_mean(sq) for sq in style_sq]  # E_l
    else:
        content = tf.reduce_mean(content_sq)
        per_layer = [tf.reduce_mean(sq) for sq in style_sq]
    style = tf.add_n(per_layer) / float(len(per_layer))
    tv = tf.reduce_sum(tf.image.total_variation(image01))
    total = (
        config.content_weight * content + config.style_weight * style + config.tv_weight * tv
    )
    return {"total": total, "content": content, "style": style, "tv": tv}


def evaluation_flops(height: int, width: int, config: GatysConfig = GatysConfig()) -> int:
    """Floating-point operations of one loss-and-gradient evaluation on a ``height`` x
    ``width`` image, for planning: VGG19's convolutions up to the deepest layer used, forward
    and back to the image (2 x 2 x 9 x C_in x C_out per output position), and each style
    layer's Gram matrix and its gradient (2 x 2 x N_l^2 per position); element-wise work is
    left out."""
    used = [vgg.keras_layer_name(n) for n in (config.content_layer, *config.style_layers)]
    order = vgg.VGG19_FEATURE_LAYERS
    deepest = max(order.index(n) for n in used)
    styles = {vgg.keras_layer_name(n) for n in config.style_layers}
    flops, h, w, channels_in = 0, height, width, 3
    for name in order[: deepest + 1]:
        if name.endswith("_pool"):
            h, w = h // 2, w // 2
            continue
        channels = vgg.layer_channels(name)
        flops += 2 * 2 * 9 * channels_in * channels * h * w
        if name in styles:
            flops += 2 * 2 * channels * channels * h * w
        channels_in = channels
    return flops


ProgressFn = Callable[[int, int, Mapping[str, float], float], None]


class Objective:
    """The loss of :func:`stylize` for one content image and style: its terms and its
    gradient with respect to the image, from one ``tf.function``.

    ``function(x)``, the ``tf.function``, takes ``[1, H, W, 3]`` float32 in [0, 1] and
    returns (terms, gradient); :meth:`value_and_gradient` calls it and counts the call in
    ``evaluations``; :meth:`for_scipy` is the same on a flat float64 vector, as
    ``scipy.optimize.minimize(jac=True)`` calls it.
    """

    def __init__(self, content_pixels, style_targets: Mapping[str, tf.Tensor],
                 extractor: keras.Model, config: GatysConfig):
        missing = [n for n in config.style_layers if n not in style_targets]
        if missing:
            raise KeyError(f"style_targets lacks layer(s) {missing}.")
        content = tf.cast(tf.convert_to_tensor(content_pixels), tf.float32)[None] / 255.0
        self.content01 = content
        self.shape = tuple(int(d) for d in content.shape)
        targets = {n: tf.convert_to_tensor(style_targets[n], tf.float32)
                   for n in config.style_layers}
        content_target = extractor(content * 255.0, training=False)[config.content_layer]
        self.evaluations = 0
        self._last: tuple[np.ndarray, dict, np.ndarray] | None = None

        @tf.function(input_signature=[tf.TensorSpec(self.shape, tf.float32)])
        def value_and_gradient(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                feats = extractor(x * 255.0, training=False)
                losses = gatys_losses(feats, x, content_target, targets, config)
            return losses, tape.gradient(losses["total"], x)

        self.function = value_and_gradient

    def value_and_gradient(self, x) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        """(loss terms, d total / d x) at ``x`` ``[1, H, W, 3]`` in [0, 1]."""
        self.evaluations += 1
        return self.function(tf.convert_to_tensor(x, tf.float32))

    def losses_at(self, flat: np.ndarray) -> dict[str, float]:
        """The loss terms at a flat image (the last evaluation's, when it was there)."""
        if self._last is None or not np.array_equal(self._last[0], flat):
            self.for_scipy(flat)
        return dict(self._last[1])

    def for_scipy(self, flat: np.ndarray) -> tuple[float, np.ndarray]:
        """(total, gradient) at a flat float64 image: the function L-BFGS-B minimises."""
        if self._last is not None and np.array_equal(self._last[0], flat):
            return self._last[1]["total"], self._last[2]
        losses, grad = self.value_and_gradient(np.reshape(flat, self.shape))
        values = {k: float(v) for k, v in losses.items()}
        gradient = grad.numpy().astype(np.float64).ravel()
        self._last = (np.array(flat, copy=True), values, gradient)
        return values["total"], gradient


def initial_image(content01: tf.Tensor, config: GatysConfig) -> np.ndarray:
    """The starting image ``[1, H, W, 3]`` in [0, 1]: the content, or uniform white noise
    drawn with ``config.seed``."""
    if config.init == "content":
        return np.asarray(content01, np.float32)
    rng = np.random.default_rng(config.seed)
    return rng.uniform(0.0, 1.0, tuple(content01.shape)).astype(np.float32)


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
        from :func:`mean_gram_targets`, computed with the same ``extractor``.
      extractor: from :func:`gatys_extractor` (any model returning the content and style
        layers for RGB [0, 255] input).  Runs on the GPU when TensorFlow sees one.
      progress: called as ``progress(step, steps, losses, seconds)`` at step 1, every
        ``config.log_every`` steps and at the last step.

    Returns:
      :class:`StylizeResult`; ``history`` holds the losses at the reported steps (step 0 is the
      initial image).
    """
    objective = Objective(content_pixels, style_targets, extractor, config)
    start = initial_image(objective.content01, config)
    run = _lbfgs if config.optimizer == "lbfgs" else _keras_optimizer
    return run(objective, start, config, progress)


class _Recorder:
    """The history and the progress calls both optimisers share."""

    def __init__(self, config: GatysConfig, progress: ProgressFn | None):
        self.config, self.progress = config, progress
        self.history: list[dict] = []
        self.t0 = time.perf_counter()

    def due(self, step: int) -> bool:
        every = self.config.log_every
        return step == 1 or step == self.config.steps or (every > 0 and step % every == 0)

    def record(self, step: int, losses: Mapping) -> None:
        entry = {k: float(v) for k, v in losses.items()}
        entry["step"] = step
        self.history.append(entry)
        if step > 0 and self.progress is not None:
            self.progress(step, self.config.steps, entry, self.seconds())

    def restart(self, objective: Objective) -> None:
        """Time and evaluations count from here (the start image's losses are recorded)."""
        self.t0 = time.perf_counter()
        objective.evaluations = 0

    def seconds(self) -> float:
        return time.perf_counter() - self.t0


def _lbfgs(objective: Objective, start: np.ndarray, config: GatysConfig,
           progress: ProgressFn | None) -> StylizeResult:
    """scipy's L-BFGS-B from ``start`` with every pixel bounded to [0, 1].  ``steps``
    iterations at most, and 1 + 1.25 x ``steps`` evaluations; the tolerances are 0 (as
    Gatys-style code runs a fixed number of iterations), so it ends earlier only where an
    iteration no longer lowers the loss or its line search fails."""
    x0 = start.astype(np.float64).ravel()
    recorder = _Recorder(config, progress)
    recorder.record(0, objective.losses_at(x0))
    recorder.restart(objective)
    done = [0]

    def callback(intermediate_result):  # scipy passes the iterate under this name
        done[0] += 1
        if recorder.due(done[0]):
            recorder.record(done[0], objective.losses_at(intermediate_result.x))

    if config.steps == 0:
        flat, message = x0, "no steps"
    else:
        result = optimize.minimize(
            objective.for_scipy, x0, jac=True, method="L-BFGS-B",
            bounds=optimize.Bounds(0.0, 1.0), callback=callback,
            options={"maxiter": config.steps,
                     "maxfun": 1 + math.ceil(EVALUATIONS_PER_ITERATION * config.steps),
                     "ftol": 0.0, "gtol": 0.0})
        flat, message = result.x, str(result.message)
        if recorder.history[-1]["step"] != done[0]:  # stopped early: report where
            recorder.record(done[0], objective.losses_at(flat))
    image = np.reshape(flat, objective.shape)[0]
    return StylizeResult(image=_to_uint8(image), history=recorder.history, steps=done[0],
                         evaluations=objective.evaluations, seconds=recorder.seconds(),
                         message=message)


def _keras_optimizer(objective: Objective, start: np.ndarray, config: GatysConfig,
                     progress: ProgressFn | None) -> StylizeResult:
    """Adam / RMSprop on the image, clipped to [0, 1] after every step."""
    image = tf.Variable(start, trainable=True, name="generated_image")
    optimizer = config.make_optimizer()
    @tf.function
    def step():
        losses, grad = objective.function(tf.convert_to_tensor(image))
        optimizer.apply_gradients([(grad, image)])
        image.assign(tf.clip_by_value(image, 0.0, 1.0))
        return losses

    recorder = _Recorder(config, progress)
    recorder.record(0, objective.value_and_gradient(image)[0])
    recorder.restart(objective)
    for i in range(1, config.steps + 1):
        step()
        objective.evaluations += 1
        if recorder.due(i):  # the losses of the image after update i
            recorder.record(i, objective.value_and_gradient(image)[0])
    return StylizeResult(image=_to_uint8(image[0].numpy()), history=recorder.history,
                         steps=config.steps, evaluations=objective.evaluations,
                         seconds=recorder.seconds(), message="")


def _to_uint8(image01: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(image01) * 255.0), 0, 255).astype(np.uint8)
