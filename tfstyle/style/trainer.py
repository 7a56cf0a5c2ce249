"""Training the attention-aware VGG19 auto-encoder (the CBAM seed; AAMS for comparison).

With the frozen encoder E (VGG19 up to the cut), the attention module and the decoder D, for
a content image x (RGB [0, 255]):

  A, o  = attend(E(x)[cut]);  x_hat = D(A)
  L_con = sum_l mean((phi_l(x_hat) - phi_l(x))^2) + l_p * mean((x_hat - x)^2)
          l in perceptual_layers (AAMS: relu1_1 .. relu4_1 whatever the cut; a layer deeper
          than the cut comes from a second frozen VGG19, see tfstyle.style.autoencoder)
  L_att = ||A||_1 = sum over the global batch, height, width and channels of |A|
          (seed eq. 6 with A = f + F'' for CBAM; AAMS: 6 * tf.norm(o, 1) on its
          self-attention output o, so "self" uses o); attention_norm=mean takes mean(|A|)
  L_tv  = mean(|x_hat[i+1, j] - x_hat[i, j]|) + mean(|x_hat[i, j+1] - x_hat[i, j]|)
  L     = l_con * L_con + l_att * L_att + l_tv * L_tv

The MSE and TV terms are means over all elements of the global batch, the attention term a
sum, exactly as the AAMS code reduces them (tf.losses means, tf.norm), so the seed's weights
keep AAMS's balance of terms: at batch 8 and 256 px crops the attention term is B*h*w*C
(8.4M at relu3_1, 4.2M at relu4_1, 1M at relu5_1) times what a mean would give. For CBAM,
f = E(x) >= 0 and F'' >= 0, so ||A||_1 = ||f||_1 + ||F''||_1 and, f being frozen, its
gradient is that of ||F''||_1: the term makes the refined features sparse (the logged value
includes the constant ||f||_1).

Defaults are the official AAMS settings, which the seed says it kept: l_con = 1, l_p = 10,
l_att = 6, l_tv = 10, Adam(lr 1e-4, beta 0.9, 0.99, epsilon 1.0), shorter side 512, random
256 crops; the seed trains 10,000 iterations of batch 8 on MS-COCO.

The step runs under any tf.distribute strategy as the CycleGAN trainer's does: per-replica
losses are shares of the global-batch mean (tf.nn.compute_average_loss), the Keras optimizer
sums the replicas' gradients in apply_gradients, and the per-replica forward/backward can be
XLA-compiled (jit_compile) with the optimizer outside it. Checkpoints, resume, progress,
TensorBoard and config.json come from tfstyle.core.training; the loss terms are in
tfstyle.style.losses.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tfstyle.core.config import setting
from tfstyle.core.files import write_json_atomic
from tfstyle.core.images import ImageError, read_image, resize, write_image
from tfstyle.core.training import (
    MAX_IMAGE_SIZE,
    Checkpoints,
    ConfigMismatchError,
    FiniteGuard,
    Progress,
    RunSettings,
    StepHooks,
    run_epoch,
    checkpoints_on_disk,
    start_run,
    summary_writer,
)
from tfstyle.core.vgg import VGGWeightsUnavailableError, imagenet_weights_file
from tfstyle.style.autoencoder import (
    AAMS_LOSS_LAYERS,
    ATTENTIONS,
    CUTS,
    LOSS_LAYERS,
    AttentionAutoencoder,
    downsampling,
    save_autoencoder,
)
from tfstyle.style.data import ContentData, builtin_style_image, prepare_content
from tfstyle.style.losses import ATTENTION_NORMS, autoencoder_losses

# Settings that shape the checkpoints (or the data order): a resumed run must keep them.
RESUME_KEYS = ("cut", "attention", "width", "reduction", "vgg_weights", "crop_size",
               "load_size", "batch_size", "seed")
VGG_WEIGHT_CHOICES = ("imagenet", "auto", "random")

RANDOM_VGG_WARNING = (
    "The VGG19 encoder has RANDOM weights: the auto-encoder will train, but its attention "
    "maps and stylizations are NOT meaningful. To use ImageNet weights, put {file} in "
    "~/.keras/models/ (download it from {url}) and pass --vgg_weights=imagenet, or pass "
    "--vgg_weights=/path/to/{file}.")


@dataclass
class AutoencoderConfig(RunSettings):
    """Every setting of an auto-encoder run; `python -m train.autoencoder` has a flag for each."""
    content_dir: str = setting(
        "", "Folder of content images, searched recursively (MS-COCO train2014 in the seed); "
        "'synthetic' trains on built-in demo scenes.", required="give a folder of content "
        "images (searched recursively, e.g. MS-COCO train2014) or 'synthetic' for the built-in "
        "demo set")
    cut: str = setting("relu4_1", "Encoder depth: VGG19 up to this layer (the seed's conv3_1 / "
                       "conv4_1 / conv5_1 encoders).", choices=CUTS)
    attention: str = setting("cbam", "Attention module: cbam (the seed), self (AAMS "
                             "self-attention), none.", choices=ATTENTIONS)
    vgg_weights: str = setting("imagenet", "VGG19 weights: imagenet (Keras cache or download), "
                               "auto (imagenet, else random with a warning), random (warns: "
                               "results not meaningful), or a path to a .h5/.keras weights "
                               "file.")
    width: float = setting(1.0, "Decoder channel multiplier (1.0: the exact mirror of VGG19; "
                           "smaller only for quick CPU demos).", above=0)
    reduction: int = setting(16, "CBAM channel MLP reduction r.", min=1)
    load_size: int = setting(512, "Resize the shorter side to this.", min=1,
                             max=MAX_IMAGE_SIZE)
    crop_size: int = setting(256, "Random square crop (a multiple of 4/8/16 for "
                             "relu3_1/4_1/5_1).", min=1, max=MAX_IMAGE_SIZE)
    batch_size: int = setting(8, "Images per replica per step.", min=1, max=1024)
    steps: int = setting(10_000, "Training iterations in total.", min=1)
    lr: float = setting(1e-4, "Adam learning rate.", above=0)
    beta1: float = setting(0.9, "Adam beta_1.", min=0, below=1)
    beta2: float = setting(0.99, "Adam beta_2.", min=0, below=1)
    adam_epsilon: float = setting(1.0, "Adam epsilon (AAMS: 1.0).", above=0)
    l_con: float = setting(1.0, "Weight of the content loss L_con.", min=0)
    l_p: float = setting(10.0, "Weight of the pixel MSE inside L_con.", min=0)
    l_att: float = setting(6.0, "Weight of the attention sparsity L_att.", min=0)
    l_tv: float = setting(10.0, "Weight of the total variation L_tv.", min=0)
    attention_norm: str = setting("sum", "L_att = sum of |A| over the global batch, height, "
                                  "width and channels (sum: the seed's ||A||_1, AAMS's "
                                  "tf.norm) or its mean over elements per image (mean: weights "
                                  "independent of batch and crop size).",
                                  choices=ATTENTION_NORMS)
    perceptual_layers: tuple = setting(AAMS_LOSS_LAYERS, "VGG19 layers of the perceptual "
                                       "loss (AAMS: relu1_1..relu4_1 whatever the cut; deeper "
                                       "than the cut costs a second frozen VGG19).",
                                       choices=LOSS_LAYERS)
    sample_content: str = setting("", "Content image of the final stylized example ('' or "
                                  "builtin: a training image).")
    sample_style: str = setting("builtin", "Style image of the final example: a path, "
                                "'builtin' (a drawn stroke pattern) or '' for no example.")
    sample_size: int = setting(512, "Longer side of the final example's content and style.",
                               min=1, max=MAX_IMAGE_SIZE)

    def validate(self):
        self.need(self.vgg_weights in VGG_WEIGHT_CHOICES
                  or Path(self.vgg_weights).expanduser().is_file(), "vgg_weights",
                  f"must be one of {', '.join(VGG_WEIGHT_CHOICES)} or an existing .h5/.keras "
                  "VGG19 weights file (file not found)")
        self.need(self.perceptual_layers, "perceptual_layers", "name at least one layer")
        step = downsampling(self.cut)
        self.need(self.crop_size % step == 0, "crop_size",
                  f"must be a multiple of {step} (the {self.cut} encoder downsamples by {step})")
        self.need(self.crop_size >= 2 * step, "crop_size",
                  f"must be at least {2 * step} for --cut={self.cut}")
        self.need(self.crop_size <= self.load_size, "crop_size",
                  f"must not exceed --load_size={self.load_size}")
        for name in ("sample_content", "sample_style"):
            value = getattr(self, name)
            if value and value != "builtin":
                self.need(Path(value).is_file(), name, "file not found")


class AutoencoderTrainer:
    """The model, its optimizer and progress counter, and the distributed train step."""

    def __init__(self, config: AutoencoderConfig, strategy: tf.distribute.Strategy,
                 encoder_weights):
        self.config, self.strategy = config, strategy
        c = config
        self.global_batch = c.batch_size * strategy.num_replicas_in_sync
        keras.utils.set_random_seed(c.seed)
        with strategy.scope():
            self.model = AttentionAutoencoder(c.cut, c.attention, encoder_weights=encoder_weights,
                                              width=c.width, reduction=c.reduction,
                                              loss_layers=c.perceptual_layers)
            self.variables = self.model.trainable_weights
            self.optimizer = keras.optimizers.Adam(c.lr, beta_1=c.beta1, beta_2=c.beta2,
                                                   epsilon=c.adam_epsilon)
            self.optimizer.build(self.variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        tracked = {"decoder": self.model.decoder, "optimizer": self.optimizer, "step": self.step}
        if self.model.attention_module is not None:
            tracked["attention"] = self.model.attention_module
        self.checkpoint = tf.train.Checkpoint(**tracked)
        self._grads = tf.function(self._gradients, jit_compile=c.jit_compile)
        self.train_step = tf.function(self._train_step)

    def _mean(self, per_example):
        return tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch)

    def _gradients(self, x):
        c = self.config
        with tf.GradientTape() as tape:
            terms = autoencoder_losses(self.model, x, c.l_p, training=True,
                                       attention_norm=c.attention_norm)
            per_example = (c.l_con * terms["L_con"] + c.l_att * terms["attention"]
                           + c.l_tv * terms["tv"])
            total = self._mean(per_example)
        grads = tape.gradient(total, self.variables)
        report = {k: self._mean(terms[k]) for k in ("perceptual", "pixel", "attention", "tv")}
        report["total"] = total
        return grads, report

    def _replica_step(self, x):
        grads, report = self._grads(tf.cast(x, tf.float32))
        self.optimizer.apply_gradients(zip(grads, self.variables))
        return report

    def _train_step(self, batch):
        report = self.strategy.run(self._replica_step, args=(batch,))
        self.step.assign_add(1)
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in report.items()}


def build_trainer(config: AutoencoderConfig, strategy) -> tuple[AutoencoderTrainer, str]:
    """The trainer and the VGG weights actually used ('imagenet', a path or 'random');
    vgg_weights=auto falls back to random weights, with a warning, when ImageNet weights
    cannot be had."""
    spec = config.vgg_weights
    if spec in ("imagenet", "auto"):
        try:
            return AutoencoderTrainer(config, strategy, "imagenet"), "imagenet"
        except VGGWeightsUnavailableError as err:
            if spec == "imagenet":
                raise
            logging.warning("ImageNet VGG19 weights unavailable: %s", str(err).splitlines()[0])
            spec = "random"
    if spec == "random":
        return AutoencoderTrainer(config, strategy, "random"), "random"
    path = str(Path(spec).expanduser().resolve())
    return AutoencoderTrainer(config, strategy, path), path


def _warn_random():
    file, url = imagenet_weights_file(False)
    message = RANDOM_VGG_WARNING.format(file=file, url=url)
    logging.warning(message)


def _check_encoder(model_dir: Path, used: str):
    """A resumed run must use the VGG weights its checkpoints were trained with."""
    path = model_dir / "encoder.json"
    if path.is_file() and checkpoints_on_disk(model_dir / "checkpoints"):
        before = json.loads(path.read_text())["vgg_weights"]
        if before != used:
            raise ConfigMismatchError(
                f"{model_dir} holds checkpoints trained with VGG19 weights {before!r}, this run "
                f"has {used!r} (--vgg_weights). Use another --model_dir or the same weights.")
    else:
        write_json_atomic(path, {"vgg_weights": used})


def _image_grid(model: AttentionAutoencoder, x):
    """[B, H, 3W, 3] uint8: input | reconstruction | attention map (grey, upsampled)."""
    out = model.forward(x, training=False)
    size = tf.shape(x)[1:3]
    if out["attention"] is None:
        att = tf.zeros_like(x)
    else:
        mag = tf.reduce_mean(tf.abs(out["attention"]), axis=-1, keepdims=True)
        low = tf.reduce_min(mag, axis=[1, 2, 3], keepdims=True)
        high = tf.reduce_max(mag, axis=[1, 2, 3], keepdims=True)
        att = tf.image.resize((mag - low) / tf.maximum(high - low, 1e-12), size, "nearest")
        att = tf.tile(att * 255.0, [1, 1, 1, 3])
    grid = tf.concat([x, out["x_hat"], att], axis=2)
    return tf.cast(tf.clip_by_value(grid, 0, 255), tf.uint8)


def write_samples(model: AttentionAutoencoder, out_dir: Path, content: np.ndarray,
                  style: np.ndarray, size: int) -> Path:
    """Stylize `content` with `style` and write content, style, stylized, attention,
    foreground, background, reconstruction and overview (all side by side, enlarged to at
    least 256 px tall) PNGs; returns overview's path."""
    from tfstyle.style.stylizer import (
        StylizeOptions,
        Stylizer,
        attention_image,
        with_region,
    )

    result = Stylizer(model)(content, style, StylizeOptions(max_size=size, style_size=size))
    images = {"content": result.content, "stylized": result.stylized,
              "reconstruction": result.content_decoded,
              "attention": attention_image(result.attention)}
    if model.attention != "none":
        for region in ("foreground", "background"):
            images[region] = with_region(result, region).image
    h = images["content"].shape[0]
    images["style"] = resize(style, (h, max(1, round(style.shape[1] * h / style.shape[0]))))
    for name, image in images.items():
        write_image(out_dir / f"{name}.png", image)
    order = [n for n in ("content", "style", "stylized", "attention", "foreground",
                         "background", "reconstruction") if n in images]
    gap = np.full((h, 4, 3), 255, np.uint8)
    strip = np.concatenate(sum(([images[n], gap] for n in order), [])[:-1], axis=1)
    zoom = -(-256 // h)  # small demo images: enlarge (nearest) to at least 256 px tall
    write_image(out_dir / "overview.png", strip.repeat(zoom, axis=0).repeat(zoom, axis=1))
    return out_dir / "overview.png"


def _sample_inputs(config: AutoencoderConfig, files: list[Path]):
    if config.sample_content and config.sample_content != "builtin":
        content = read_image(config.sample_content, config)
    else:
        test = Path(config.model_dir) / "synthetic_data" / "testA"
        candidates = sorted(test.glob("*.png")) if config.content_dir == "synthetic" else []
        content = None
        for path in (candidates or files)[:20]:
            try:
                content = read_image(path, config)
                break
            except ImageError:
                continue
    if config.sample_style and config.sample_style != "builtin":
        style = read_image(config.sample_style, config)
    else:
        style = builtin_style_image(max(64, min(config.sample_size, 256)), config.seed)
    return content, style


def train(config: AutoencoderConfig, strategy: tf.distribute.Strategy | None = None,
          flags_text: str | None = None) -> dict:
    """Train (or resume) a run in config.model_dir; returns a summary dict.

    Writes MODEL_DIR/config.json (+ flags.txt), encoder.json, checkpoints/, logs/
    (TensorBoard), at the end autoencoder/ (autoencoder.keras + info.json, see
    tfstyle.attention_models) and samples/ (a stylized example when sample_style is set).
    """
    c = config
    files = prepare_content(c.content_dir, c.model_dir, c.seed)  # before writing model_dir
    strategy, chief, model_dir = start_run(c, RESUME_KEYS, flags_text, strategy)
    data = ContentData(files, c.load_size, c.crop_size, c.seed, limits=c)
    trainer, vgg_used = build_trainer(c, strategy)
    if vgg_used == "random":
        _warn_random()
    if chief:
        _check_encoder(model_dir, vgg_used)
    model = trainer.model
    steps_per_epoch = data.steps_per_epoch(trainer.global_batch)
    logging.info("%d content images; %d steps per epoch of global batch %d; %d steps in all",
                 len(data), steps_per_epoch, trainer.global_batch, c.steps)

    grid_batch = tf.constant(np.stack([data.load(i, (0.5, 0.5)) for i in range(min(4, len(data)))]),
                             tf.float32)
    # Nothing non-finite is written: checkpoints (and so the auto-encoder, written after the
    # last one) need finite weights and finite losses of these weights on the grid batch.
    guard = FiniteGuard(trainer.variables + trainer.optimizer.variables,
                        tf.function(lambda: trainer._gradients(grid_batch)[1]))
    checkpoints = Checkpoints(trainer.checkpoint, model_dir / "checkpoints", chief,
                              c.keep_checkpoints, guard)
    resumed = checkpoints.restore()
    writer = summary_writer(model_dir, chief)
    grid = tf.function(lambda x: _image_grid(model, x))

    step = int(trainer.step.numpy())
    hooks = StepHooks(checkpoints, writer, Progress(c.steps, start=step, enabled=chief), c.steps,
                      c.log_every_steps, c.image_every_steps, c.save_every_steps,
                      images_fn=lambda: grid(grid_batch),
                      image_tag="input__reconstruction__attention")
    losses_now: dict = {}
    started = time.perf_counter()
    while step < c.steps:
        epoch, start = divmod(step, steps_per_epoch)
        step, losses_now = run_epoch(
            trainer, strategy,
            lambda ctx, e=epoch, s=start: data.dataset(e, s, trainer.global_batch, ctx),
            hooks, step, c.steps, epoch, losses_now)
    checkpoints.save(step)
    writer.flush()

    summary = {"steps": step, "resumed_from": resumed, "losses": losses_now,
               "first_losses": hooks.first_losses, "images": len(data),
               "skipped": sorted(data.skipped), "vgg_weights": vgg_used,
               "seconds": time.perf_counter() - started}
    if chief:
        info = {"vgg_weights": vgg_used, "step": step, "crop_size": c.crop_size,
                "loss_layers": list(model.loss_layers), "content_dir": c.content_dir,
                "config": dataclasses.asdict(c)}
        summary["autoencoder"] = str(save_autoencoder(model_dir, model, info))
        if c.sample_style:
            content, style = _sample_inputs(c, files)
            if content is not None:
                summary["samples"] = str(write_samples(model, model_dir / "samples", content,
                                                       style, c.sample_size))
        (model_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
