"""Training the attention-aware VGG19 auto-encoder (the CBAM seed; AAMS for comparison).

With the frozen encoder E (features phi_l = relu{l}_1, l = 1..depth of the cut), the
attention module and the decoder D, for a content image x (RGB [0, 255]):

  A, o  = attend(E(x)[cut]);  x_hat = D(A)
  L_con = sum_l mean((phi_l(x_hat) - phi_l(x))^2) + l_p * mean((x_hat - x)^2)
  L_att = mean(|A|)          (seed eq. 6, ||A_x||_1 with A = f + F'' for CBAM;
                              AAMS penalises its self-attention output o, so "self" uses o)
  L_tv  = mean(|x_hat[i+1, j] - x_hat[i, j]|) + mean(|x_hat[i, j+1] - x_hat[i, j]|)
  L     = l_con * L_con + l_att * L_att + l_tv * L_tv

Norms are means over elements (per example, then over the global batch), so the weights do
not depend on the crop size; the AAMS code uses means for the MSE and TV terms too (its
attention term is a sum, which is why its 6 is not comparable). For CBAM, f = E(x) >= 0 and
F'' >= 0, so ||A||_1 = ||f||_1 + ||F''||_1 and, f being frozen, its gradient is that of
||F''||_1: the term makes the refined features sparse.

Defaults are the official AAMS settings, which the seed says it kept: l_con = 1, l_p = 10,
l_att = 6, l_tv = 10, Adam(lr 1e-4, beta 0.9, 0.99, epsilon 1.0), shorter side 512, random
256 crops; the seed trains 10,000 iterations of batch 8 on MS-COCO.

The step runs under any tf.distribute strategy as the CycleGAN trainer's does: per-replica
losses are shares of the global-batch mean (tf.nn.compute_average_loss), the Keras optimizer
sums the replicas' gradients in apply_gradients, and the per-replica forward/backward can be
XLA-compiled (jit_compile) with the optimizer outside it. Checkpoints, resume, progress,
TensorBoard and config.json come from tfstyle.training.
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
from PIL import Image, ImageDraw, ImageFilter

from tfstyle import synthetic
from tfstyle.attention_models import (ATTENTIONS, CUTS, AttentionAutoencoder, downsampling,
                                      save_autoencoder)
from tfstyle.data import DataError, replica_slots
from tfstyle.images import IMAGE_EXTENSIONS, ImageError, read_image, resize, write_image
from tfstyle.training import (Checkpoints, ConfigMismatchError, Progress, StepHooks,
                              start_run, summary_writer)
from tfstyle.vgg import VGGWeightsUnavailableError, imagenet_weights_file

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
class AutoencoderConfig:
    """Every setting of an auto-encoder run; the command-line flags carry the same names."""
    content_dir: str = ""
    model_dir: str = ""
    cut: str = "relu4_1"
    attention: str = "cbam"
    vgg_weights: str = "imagenet"
    width: float = 1.0
    reduction: int = 16
    load_size: int = 512
    crop_size: int = 256
    batch_size: int = 8
    steps: int = 10_000
    lr: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.99
    adam_epsilon: float = 1.0
    l_con: float = 1.0
    l_p: float = 10.0
    l_att: float = 6.0
    l_tv: float = 10.0
    strategy: str = "auto"
    jit_compile: bool = False
    seed: int = 0
    save_every_steps: int = 1000
    keep_checkpoints: int = 3
    log_every_steps: int = 100
    image_every_steps: int = 1000
    sample_content: str = ""
    sample_style: str = "builtin"
    sample_size: int = 512

    def __post_init__(self):
        def need(ok, flag, message):
            if not ok:
                raise ValueError(f"--{flag}={getattr(self, flag)!r}: {message}")
        need(self.content_dir, "content_dir", "give a folder of content images (searched "
             "recursively, e.g. MS-COCO train2014) or 'synthetic' for the built-in demo set")
        need(self.model_dir, "model_dir", "give a folder for checkpoints and outputs")
        need(self.cut in CUTS, "cut", f"must be one of {', '.join(CUTS)}")
        need(self.attention in ATTENTIONS, "attention", f"must be one of {', '.join(ATTENTIONS)}")
        need(self.vgg_weights in VGG_WEIGHT_CHOICES
             or Path(self.vgg_weights).expanduser().is_file(), "vgg_weights",
             f"must be one of {', '.join(VGG_WEIGHT_CHOICES)} or an existing .h5/.keras "
             "VGG19 weights file (file not found)")
        need(self.width > 0, "width", "must be positive")
        for flag in ("reduction", "load_size", "crop_size", "batch_size", "steps",
                     "save_every_steps", "keep_checkpoints", "log_every_steps",
                     "image_every_steps", "sample_size"):
            need(getattr(self, flag) >= 1, flag, "must be at least 1")
        for flag in ("l_con", "l_p", "l_att", "l_tv"):
            need(getattr(self, flag) >= 0, flag, "must not be negative")
        need(self.lr > 0, "lr", "must be positive")
        need(self.adam_epsilon > 0, "adam_epsilon", "must be positive")
        need(0 <= self.beta1 < 1, "beta1", "must be in [0, 1)")
        need(0 <= self.beta2 < 1, "beta2", "must be in [0, 1)")
        step = downsampling(self.cut)
        need(self.crop_size % step == 0, "crop_size",
             f"must be a multiple of {step} (the {self.cut} encoder downsamples by {step})")
        need(self.crop_size >= 2 * step, "crop_size",
             f"must be at least {2 * step} for --cut={self.cut}")
        need(self.crop_size <= self.load_size, "crop_size",
             f"must not exceed --load_size={self.load_size}")
        if self.sample_content and self.sample_content != "builtin":
            need(Path(self.sample_content).is_file(), "sample_content", "file not found")
        if self.sample_style and self.sample_style != "builtin":
            need(Path(self.sample_style).is_file(), "sample_style", "file not found")


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def list_content_images(folder) -> list[Path]:
    """Image files under `folder` (recursively, by extension), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"--content_dir={folder}: no such folder")
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataError(f"--content_dir={folder}: holds no image files")
    return files


def random_crop(image: np.ndarray, load_size: int, crop_size: int, offset) -> np.ndarray:
    """Resize the shorter side to max(load_size, crop_size) (bicubic, aspect kept), then crop
    crop_size x crop_size at relative offset (u, v) in [0, 1)^2."""
    h, w = image.shape[:2]
    short = max(load_size, crop_size)
    scale = short / min(h, w)
    nh, nw = max(crop_size, round(h * scale)), max(crop_size, round(w * scale))
    image = resize(image, (nh, nw))
    top = int(offset[0] * (nh - crop_size + 1))
    left = int(offset[1] * (nw - crop_size + 1))
    return image[top:top + crop_size, left:left + crop_size]


class ContentData:
    """Content images decoded on the fly (MS-COCO does not fit a cache): every epoch is a
    permutation of the files and a crop offset per slot, drawn from (seed, epoch) with numpy,
    so a resumed run sees the data the interrupted one would have seen, and each
    tf.distribute replica reads its slice of the same global batch as a one-device run.
    An unreadable file is replaced by the next readable one in the file list (a warning
    names it once) and counted in `skipped`."""

    def __init__(self, files, load_size: int, crop_size: int, seed: int):
        self.files = [Path(f) for f in files]
        if not self.files:
            raise DataError("no content images")
        self.load_size, self.crop_size, self.seed = load_size, crop_size, seed
        self.skipped: dict[str, str] = {}

    def __len__(self):
        return len(self.files)

    def steps_per_epoch(self, global_batch: int) -> int:
        steps = len(self.files) // global_batch
        if steps == 0:
            raise DataError(f"{len(self.files)} content images are fewer than the global "
                            f"batch size {global_batch}")
        return steps

    def plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(file order [N], crop offsets [N, 2] in [0, 1)) of `epoch`."""
        rng = np.random.default_rng([self.seed, epoch])
        return rng.permutation(len(self.files)), rng.random((len(self.files), 2))

    def load(self, index: int, offset) -> np.ndarray:
        """uint8 crop [crop, crop, 3] of file `index` (or of the next readable one)."""
        for k in range(len(self.files)):
            path = self.files[(index + k) % len(self.files)]
            if str(path) in self.skipped:
                continue
            try:
                return random_crop(read_image(path), self.load_size, self.crop_size, offset)
            except (ImageError, OSError) as err:
                self.skipped[str(path)] = str(err)
                logging.warning("skipped %s: %s", path, err)
        raise DataError("none of the content images could be read: "
                        + "; ".join(list(self.skipped.values())[:3]))

    def dataset(self, epoch: int, start_step: int, global_batch: int,
                input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """Per-replica batches, uint8 [b, crop, crop, 3], of one epoch from `start_step` on
        (with an input context: this pipeline's replicas, in replica order)."""
        slots = replica_slots(self.steps_per_epoch(global_batch), global_batch, start_step,
                              input_context)
        per_replica = slots.shape[1]
        order, offsets = self.plan(epoch)

        def load(batch_slots):
            return np.stack([self.load(int(order[s]), offsets[s]) for s in batch_slots])

        def to_tensor(batch_slots):
            x = tf.numpy_function(load, [batch_slots], tf.uint8, stateful=False)
            return tf.ensure_shape(x, (per_replica, self.crop_size, self.crop_size, 3))

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return (tf.data.Dataset.from_tensor_slices(slots)
                .map(to_tensor, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                .prefetch(tf.data.AUTOTUNE)
                .with_options(options))


def builtin_style_image(size: int = 256, seed: int = 0) -> np.ndarray:
    """A built-in style image for demos: bold brush-like strokes in a saturated palette on a
    warm ground, drawn with Pillow (deterministic from seed). RGB uint8 [size, size, 3]."""
    rng = np.random.default_rng(seed)
    palette = [(230, 57, 70), (29, 53, 87), (69, 123, 157), (244, 162, 97), (42, 157, 143),
               (233, 196, 106), (38, 70, 83), (255, 255, 255)]
    image = Image.new("RGB", (size, size), (241, 226, 190))
    draw = ImageDraw.Draw(image)
    for _ in range(90):
        colour = palette[rng.integers(len(palette))]
        x, y = rng.uniform(0, size, 2)
        angle = rng.uniform(0, np.pi) if rng.random() < 0.3 else rng.normal(np.pi / 4, 0.3)
        length = rng.uniform(0.1, 0.35) * size
        points = [(x, y)]
        for _ in range(4):  # a slightly curved stroke
            angle += rng.normal(0, 0.25)
            x, y = x + np.cos(angle) * length / 4, y + np.sin(angle) * length / 4
            points.append((x, y))
        draw.line(points, fill=colour, width=int(rng.uniform(0.015, 0.05) * size), joint="curve")
    return np.asarray(image.filter(ImageFilter.GaussianBlur(0.6)), dtype=np.uint8)


def prepare_content(config: AutoencoderConfig) -> list[Path]:
    """The content files; 'synthetic' writes the built-in demo scenes under model_dir first
    (tfstyle.synthetic, 128 px; train and test of both domains)."""
    if config.content_dir == "synthetic":
        root = synthetic.make_dataset(Path(config.model_dir) / "synthetic_data", size=128,
                                      seed=config.seed)
        return sorted(list_content_images(root / "trainA") + list_content_images(root / "trainB"))
    return list_content_images(config.content_dir)


# --------------------------------------------------------------------------------------------
# Losses and the trainer
# --------------------------------------------------------------------------------------------


def _per_example_mean(x):
    return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def total_variation(x):
    """Per-example anisotropic L1 total variation (AAMS): [B, H, W, C] -> [B]."""
    return (_per_example_mean(tf.abs(x[:, 1:] - x[:, :-1]))
            + _per_example_mean(tf.abs(x[:, :, 1:] - x[:, :, :-1])))


def autoencoder_losses(model: AttentionAutoencoder, x, l_p: float, training=None) -> dict:
    """Per-example [B] loss terms of a batch x (RGB [0, 255]): perceptual, pixel, L_att
    (attention), tv, plus x_hat, the attention output o and A (see the module docstring)."""
    out = model.forward(x, training=training)
    x_hat = out["x_hat"]
    features_hat = model.encode(x_hat)
    perceptual = tf.add_n([_per_example_mean(tf.square(features_hat[name] - out["features"][name]))
                           for name in model.loss_layers])
    pixel = _per_example_mean(tf.square(x_hat - x))
    if model.attention == "cbam":
        attention = _per_example_mean(tf.abs(out["A"]))
    elif model.attention == "self":
        attention = _per_example_mean(tf.abs(out["attention"]))
    else:
        attention = tf.zeros_like(pixel)
    return {"perceptual": perceptual, "pixel": pixel, "attention": attention,
            "tv": total_variation(x_hat), "x_hat": x_hat, "o": out["attention"],
            "A": out["A"], "L_con": perceptual + l_p * pixel}


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
                                              width=c.width, reduction=c.reduction)
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
            terms = autoencoder_losses(self.model, x, c.l_p, training=True)
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
    if path.is_file():
        before = json.loads(path.read_text())["vgg_weights"]
        if before != used:
            raise ConfigMismatchError(
                f"{model_dir} holds checkpoints trained with VGG19 weights {before!r}, this run "
                f"has {used!r} (--vgg_weights). Use another --model_dir or the same weights.")
    else:
        path.write_text(json.dumps({"vgg_weights": used}))


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
    from tfstyle.stylize_lib import StylizeOptions, Stylizer, attention_image, with_region

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
        content = read_image(config.sample_content)
    else:
        test = Path(config.model_dir) / "synthetic_data" / "testA"
        candidates = sorted(test.glob("*.png")) if config.content_dir == "synthetic" else []
        content = None
        for path in (candidates or files)[:20]:
            try:
                content = read_image(path)
                break
            except ImageError:
                continue
    if config.sample_style and config.sample_style != "builtin":
        style = read_image(config.sample_style)
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
    strategy, chief, model_dir = start_run(c, RESUME_KEYS, flags_text, strategy)
    files = prepare_content(c)
    data = ContentData(files, c.load_size, c.crop_size, c.seed)
    trainer, vgg_used = build_trainer(c, strategy)
    if vgg_used == "random":
        _warn_random()
    if chief:
        _check_encoder(model_dir, vgg_used)
    model = trainer.model
    steps_per_epoch = data.steps_per_epoch(trainer.global_batch)
    logging.info("%d content images; %d steps per epoch of global batch %d; %d steps in all",
                 len(data), steps_per_epoch, trainer.global_batch, c.steps)

    checkpoints = Checkpoints(trainer.checkpoint, model_dir / "checkpoints", chief,
                              c.keep_checkpoints)
    resumed = checkpoints.restore()
    writer = summary_writer(model_dir, chief)
    grid_batch = tf.constant(np.stack([data.load(i, (0.5, 0.5)) for i in range(min(4, len(data)))]),
                             tf.float32)
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
        dataset = strategy.distribute_datasets_from_function(
            lambda ctx, e=epoch, s=start: data.dataset(e, s, trainer.global_batch, ctx))
        for batch in dataset:
            out = trainer.train_step(batch)
            step += 1
            losses_now = hooks(step, out, trainer.global_batch, {"epoch": epoch + 1})
            if step >= c.steps:
                break
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
