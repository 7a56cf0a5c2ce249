"""CycleGAN / CycleSE / CycleDA training (Zhu et al. 2017; the caricature and emotion seeds).

G: A -> B and F: B -> A with discriminators D_A (on A) and D_B (on B):

  L_G = GAN(D_B(G(a)), 1) + GAN(D_A(F(b)), 1)
        + lambda_cycle * (|F(G(a)) - a|_1 + |G(F(b)) - b|_1)
        + lambda_identity * lambda_cycle * (|G(b) - b|_1 + |F(a) - a|_1)
        + paired_l1 * (|G(a) - b|_1 + |F(b) - a|_1)           (Cyclepix, paired data only)
  L_D = 0.5 * (GAN(D_B(b), 1) + GAN(D_B(pool_B(G(a))), 0))
        + 0.5 * (GAN(D_A(a), 1) + GAN(D_A(pool_A(F(b))), 0))

One step updates G and F with Adam(lr, 0.5, 0.999), then D_A and D_B with the fakes made
before that update, as the official code does. The learning rate is constant for `epochs`
epochs, then decays linearly over `decay_epochs` more (the official "linear" rule).

The step is written once for every tf.distribute strategy: each replica computes its share
of the global-batch mean (tf.nn.compute_average_loss), Keras optimizers sum the replicas'
gradients, and the image pools are queried on the gathered global batch, so one device,
several GPUs and several machines follow the same trajectory for the same global batch.

--model=cut trains CUT/FastCUT instead (tfstyle.cyclegan.cut: G and D_B only, PatchNCE
instead of the cycle) on the same run machinery; --upsample=resize and --residual change
the generators (docs/quality.md).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf
from absl import logging

from tfstyle.core import synthetic
from tfstyle.core.config import setting
from tfstyle.core.data import DataError
from tfstyle.core.files import write_json_atomic
from tfstyle.core.images import (
    from_model_range,
    list_images,
    read_image,
    resize,
    to_model_range,
    write_image,
)
from tfstyle.core.training import (
    MAX_IMAGE_SIZE,
    Checkpoints,
    FiniteGuard,
    FusedAdam,
    Progress,
    RunSettings,
    StepHooks,
    run_epoch,
    start_run,
    summary_writer,
)
from tfstyle.cyclegan import generators, losses, translator
from tfstyle.cyclegan.blocks import BLOCKS
from tfstyle.cyclegan.data import UnalignedData, load_domain
from tfstyle.cyclegan.networks import PatchDiscriminator, ResnetGenerator
from tfstyle.cyclegan.pool import ImagePool

MIXED_PRECISION = {"none": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}

# Settings that shape the checkpoints: a resumed run must keep them.
RESUME_KEYS = ("block", "ngf", "ndf", "n_blocks", "n_layers_d", "crop_size", "batch_size",
               "pool_size", "seed", "norm_affine", "pam_kv_pool", "model", "upsample",
               "residual")
MODELS = ("cyclegan", "cut")

# The two image pools hold 2 x pool_size x crop_size^2 x 12 bytes of accelerator memory: at
# most POOL_BYTES (the data cache, load_size^2 x 3 bytes per image, is bounded by
# MAX_IMAGE_SIZE and the free disk).
POOL_BYTES = 8 * 2 ** 30


@dataclass
class GANRunSettings(RunSettings):
    """What the wing's GAN trainers (train.cyclegan, train.distill) share: the discriminator,
    the generator (a distillation's student), the discriminator, the crops, the epoch schedule
    with its linear decay, Adam, XLA and the step limit."""
    upsample: str = setting("transpose", "Generator upsampling: transpose (official) or "
                            "resize (nearest resize + conv, no checkerboard).",
                            choices=ResnetGenerator.UPSAMPLING)
    residual: bool = setting(False, "Generator output = input + tanh head (clipped): starts "
                             "as the identity.")
    block: str = setting("resnet", "Residual block: " + ", ".join(
        f"{name} ({b.label})" for name, b in BLOCKS.items()) + ".", choices=BLOCKS)
    ngf: int = setting(64, "Generator filters in the first layer.", min=1, max=512)
    n_blocks: int = setting(9, "Residual blocks (9 at 256 px, 6 at 128).", min=0, max=64)
    norm_affine: bool = setting(False, "Instance norm with scale/offset.")
    ndf: int = setting(64, "Discriminator filters in the first layer.", min=1, max=512)
    n_layers_d: int = setting(3, "PatchGAN layers (3: 70x70 patches).", min=1, max=8)
    gan_mode: str = setting("lsgan", "GAN objective.", choices=losses.GAN_MODES)
    load_size: int = setting(286, "Resize images to this square size.", min=1,
                             max=MAX_IMAGE_SIZE)
    crop_size: int = setting(256, "Random crop size (divisible by 4).", min=1,
                             max=MAX_IMAGE_SIZE)
    batch_size: int = setting(1, "Images per replica per step.", min=1, max=1024)
    epochs: int = setting(100, "Epochs at the initial learning rate.", min=0)
    decay_epochs: int = setting(100, "Epochs of linear learning-rate decay to 0 after "
                                "--epochs.", min=0)
    lr: float = setting(2e-4, "Adam learning rate.", above=0)
    beta1: float = setting(0.5, "Adam beta_1.", min=0, below=1)
    jit_compile: bool = setting(None, "Compile the per-replica forward/backward passes with "
                                "XLA; unset: on with a GPU, off on a CPU, where it is slower "
                                "(docs/benchmarks.md).")
    max_steps: int = setting(0, "Stop after this many steps in total (0: train all epochs).",
                             min=0)

    def validate(self):
        self.need(self.epochs + self.decay_epochs >= 1, "epochs",
                  "epochs + decay_epochs must be >= 1")
        self.need(self.crop_size % 4 == 0, "crop_size",
                  "must be divisible by 4 (the generators downsample twice)")
        self.need(self.crop_size <= self.load_size, "crop_size",
                  f"must not exceed --load_size={self.load_size}")
        self.need(self.crop_size >= 2 ** (self.n_layers_d + 2), "crop_size",
                  f"too small for a {self.n_layers_d}-layer PatchGAN (at least "
                  f"{2 ** (self.n_layers_d + 2)})")

    @property
    def parallel_ops(self) -> int:
        """Two streams of ops in every GAN step (docs/benchmarks.md, "Thread pools")."""
        return 2

    @property
    def block_options(self) -> dict:
        """The options of the chosen block type, from the fields of the same names."""
        return {k: getattr(self, k) for k in BLOCKS[self.block].option_names
                if hasattr(self, k)}

    def lr_factor(self, epoch: int) -> float:
        """Learning-rate multiplier during 0-based `epoch` (the official linear rule)."""
        return 1.0 - max(0, epoch + 1 - self.epochs) / (self.decay_epochs + 1)

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.decay_epochs


@dataclass
class CycleGANConfig(GANRunSettings):
    """Every setting of a CycleGAN run; `python -m train.cyclegan` has a flag for each."""
    dataroot: str = setting(
        "", "Folder with trainA/ and trainB/ (optional testA/, testB/); 'synthetic' trains on "
        "the built-in demo data.", required="give the folder holding trainA/ and trainB/ (or "
        "'synthetic' for the built-in demo data)")
    model: str = setting("cyclegan", "cyclegan: G and F with cycle losses; cut: CUT/FastCUT, "
                         "G alone with the PatchNCE loss (writes generators/AtoB only; see "
                         "tfstyle.cyclegan.cut).", choices=MODELS)
    pam_kv_pool: int = setting(1, "CycleDA: pool keys/values of the position attention by "
                               "this factor.", min=1)
    lr_d: float = setting(0.0, "Discriminators' learning rate (TTUR); 0: --lr.", min=0)
    lambda_cycle: float = setting(10.0, "Weight of the cycle losses.", min=0)
    lambda_identity: float = setting(0.5, "Identity loss weight, relative to --lambda_cycle "
                                     "(0 disables it).", min=0)
    paired_l1: float = setting(0.0, "Cyclepix: weight of an L1 loss to the paired target "
                               "(files with the same name in trainA/ and trainB/); 0 disables "
                               "it.", min=0)
    pool_size: int = setting(50, "Image pool size (0 disables it; CUT has none).", min=0,
                             max=10_000)
    lambda_nce: float = setting(1.0, "CUT: weight of the PatchNCE loss (FastCUT: 10).", min=0)
    nce_idt: bool = setting(True, "CUT: PatchNCE also on G(b) vs b (FastCUT: false).")
    num_patches: int = setting(256, "CUT: positions drawn per PatchNCE layer.", min=1,
                               max=65_536)
    nce_temperature: float = setting(0.07, "CUT: PatchNCE temperature.", above=0)
    mixed_precision: str = setting("none", "Mixed precision policy (float16 uses loss "
                                   "scaling).", choices=tuple(MIXED_PRECISION))
    num_samples: int = setting(8, "Test images translated per direction at the end of each "
                               "epoch.", min=0)

    def validate(self):
        super().validate()
        self.need(self.model == "cyclegan" or self.paired_l1 == 0, "paired_l1",
                  "is a CycleGAN loss (use --model=cyclegan)")
        pool_bytes = 2 * self.pool_size * self.crop_size ** 2 * 3 * 4
        self.need(pool_bytes <= POOL_BYTES, "pool_size",
                  f"the two pools of {self.crop_size}px images would take "
                  f"{pool_bytes / 2 ** 30:.1f} GiB (at most {POOL_BYTES // 2 ** 30})")


def _set_policy(name):
    keras.mixed_precision.set_dtype_policy(name)


def generator_options(c: GANRunSettings) -> dict:
    """The ResnetGenerator arguments of a run's settings (a CycleGAN's generators, a
    distillation's student)."""
    return dict(ngf=c.ngf, n_blocks=c.n_blocks, block=c.block, norm_affine=c.norm_affine,
                block_options=c.block_options, upsample=c.upsample, residual=c.residual)


class CycleGAN:
    """The four networks, two optimizers and two image pools of a run, and its train step."""

    def __init__(self, config: CycleGANConfig, strategy: tf.distribute.Strategy):
        self.config, self.strategy = config, strategy
        self.global_batch = config.batch_size * strategy.num_replicas_in_sync
        c = config
        keras.utils.set_random_seed(c.seed)  # the initial weights
        previous = keras.mixed_precision.dtype_policy().name
        _set_policy(MIXED_PRECISION[c.mixed_precision])
        try:
            with strategy.scope():
                gen = lambda name: ResnetGenerator(**generator_options(c), name=name)  # noqa: E731
                disc = lambda name: PatchDiscriminator(  # noqa: E731
                    c.ndf, c.n_layers_d, norm_affine=c.norm_affine, name=name)
                self.G, self.F = gen("G_AtoB"), gen("F_BtoA")
                self.D_A, self.D_B = disc("D_A"), disc("D_B")
                shape = (None, c.crop_size, c.crop_size, 3)
                for net in (self.G, self.F, self.D_A, self.D_B):
                    net.build(shape)
                self.g_vars = self.G.trainable_weights + self.F.trainable_weights
                self.d_vars = self.D_A.trainable_weights + self.D_B.trainable_weights
                self.opt_G, self.opt_D = self._optimizer(c.lr), self._optimizer(c.lr_d or c.lr)
                self.opt_G.build(self.g_vars)
                self.opt_D.build(self.d_vars)
                image_shape = (c.crop_size, c.crop_size, 3)
                self.pool_A = ImagePool(c.pool_size, image_shape, name="pool_A")
                self.pool_B = ImagePool(c.pool_size, image_shape, name="pool_B")
        finally:
            _set_policy(previous)
        # Progress counters live on the host; they are checkpointed with the networks.
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
        self.checkpoint = tf.train.Checkpoint(
            G=self.G, F=self.F, D_A=self.D_A, D_B=self.D_B, opt_G=self.opt_G, opt_D=self.opt_D,
            pool_A=self.pool_A, pool_B=self.pool_B, step=self.step, epoch=self.epoch,
            step_in_epoch=self.step_in_epoch)
        jit = c.jit_compile
        self._g_grads = tf.function(self._generator_gradients, jit_compile=jit)
        self._d_grads = tf.function(self._discriminator_gradients, jit_compile=jit)
        self.train_step = tf.function(self._train_step)

    def _optimizer(self, lr):
        c = self.config
        opt = FusedAdam(lr, beta_1=c.beta1, beta_2=0.999)
        if c.mixed_precision == "float16":
            opt = keras.optimizers.LossScaleOptimizer(opt)
        return opt

    def set_learning_rate(self, epoch: int) -> float:
        """Set both optimizers' rates for 0-based `epoch`; returns the generators' rate."""
        c, factor = self.config, self.config.lr_factor(epoch)
        self.opt_G.learning_rate.assign(c.lr * factor)
        self.opt_D.learning_rate.assign((c.lr_d or c.lr) * factor)
        return c.lr * factor

    @property
    def generators(self) -> dict:
        """The generators a finished run writes, by direction."""
        return {"AtoB": self.G, "BtoA": self.F}

    image_tag = "A_to_B_to_A__B_to_A_to_B"

    def image_grid(self, a, b):
        """[2, H, 3W, 3] uint8: (input, translated, reconstructed) for A->B and B->A."""
        fake_b, fake_a = self.G(a), self.F(b)
        rows = [tf.concat([a, fake_b, self.F(fake_b)], axis=2),
                tf.concat([b, fake_a, self.G(fake_a)], axis=2)]
        return tf.cast(tf.clip_by_value(from_model_range(tf.concat(rows, 0)), 0, 255), tf.uint8)

    # -- per-replica computations ---------------------------------------------------------
    def _mean(self, per_example):
        return tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch)

    def _generator_terms(self, a, b):
        """The generators' loss terms (each this replica's share of the global-batch mean)
        and the fakes G(a), F(b)."""
        c = self.config
        identity = c.lambda_identity > 0
        # With the identity loss, G(a) and G(b) share one batched call (likewise F): the
        # same arithmetic per image (instance norm is per image) in fewer, larger ops.
        if identity:
            fake_b, idt_b = tf.split(self.G(tf.concat([a, b], 0), training=True), 2)
            fake_a, idt_a = tf.split(self.F(tf.concat([b, a], 0), training=True), 2)
        else:
            fake_b = self.G(a, training=True)
            fake_a = self.F(b, training=True)
        rec_a = self.F(fake_b, training=True)
        rec_b = self.G(fake_a, training=True)
        terms = {
            "G_gan": losses.gan_loss(self.D_B(fake_b), True, c.gan_mode),
            "F_gan": losses.gan_loss(self.D_A(fake_a), True, c.gan_mode),
            "cycle_A": c.lambda_cycle * losses.l1(rec_a, a),
            "cycle_B": c.lambda_cycle * losses.l1(rec_b, b),
        }
        if identity:
            weight = c.lambda_identity * c.lambda_cycle
            terms["idt_A"] = weight * losses.l1(idt_b, b)
            terms["idt_B"] = weight * losses.l1(idt_a, a)
        if c.paired_l1 > 0:
            terms["pix_AtoB"] = c.paired_l1 * losses.l1(fake_b, b)
            terms["pix_BtoA"] = c.paired_l1 * losses.l1(fake_a, a)
        return {k: self._mean(v) for k, v in terms.items()}, fake_a, fake_b

    def _generator_gradients(self, a, b):
        with tf.GradientTape() as tape:
            terms, fake_a, fake_b = self._generator_terms(a, b)
            scaled = self.opt_G.scale_loss(tf.add_n(list(terms.values())))
        grads = tape.gradient(scaled, self.g_vars)
        return grads, terms, fake_a, fake_b

    def _discriminator_terms(self, a, b, fake_a, fake_b):
        mode = self.config.gan_mode

        def term(d, real, fake):  # real and fake in one batched call, as the generators
            score_real, score_fake = tf.split(d(tf.concat([real, fake], 0)), 2)
            return self._mean(0.5 * (losses.gan_loss(score_real, True, mode)
                                     + losses.gan_loss(score_fake, False, mode)))

        return {"D_A": term(self.D_A, a, fake_a), "D_B": term(self.D_B, b, fake_b)}

    def _discriminator_gradients(self, a, b, fake_a, fake_b):
        with tf.GradientTape() as tape:
            terms = self._discriminator_terms(a, b, fake_a, fake_b)
            scaled = self.opt_D.scale_loss(terms["D_A"] + terms["D_B"])
        return tape.gradient(scaled, self.d_vars), terms

    def probe_losses(self, a, b) -> dict:
        """Every loss term of the current weights on the batch (a, b), without an update and
        without the pools: what the next step would see (the FiniteGuard's probe)."""
        g_terms, fake_a, fake_b = self._generator_terms(a, b)
        return {**g_terms, **self._discriminator_terms(a, b, fake_a, fake_b)}

    @property
    def state_variables(self) -> list:
        """The float state a checkpoint holds: weights, optimizer slots and the pools."""
        return [*self.G.weights, *self.F.weights, *self.D_A.weights, *self.D_B.weights,
                *self.opt_G.variables, *self.opt_D.variables, self.pool_A.images,
                self.pool_B.images]

    def _generator_step(self, a, b):
        grads, terms, fake_a, fake_b = self._g_grads(a, b)
        self.opt_G.apply_gradients(zip(grads, self.g_vars))
        return terms, fake_a, fake_b

    def _discriminator_step(self, a, b, fake_a, fake_b):
        grads, terms = self._d_grads(a, b, fake_a, fake_b)
        self.opt_D.apply_gradients(zip(grads, self.d_vars))
        return terms

    # -- the distributed step -------------------------------------------------------------
    def _pooled(self, pool, fakes, seed):
        """Query `pool` with the global batch of `fakes` and hand each replica its slice."""
        if pool.size == 0:
            return fakes
        size = self.config.crop_size
        everything = tf.ensure_shape(self.strategy.gather(fakes, axis=0),
                                     [self.global_batch, size, size, 3])
        pooled = pool.query(everything, seed)
        per_replica = self.config.batch_size
        return self.strategy.experimental_distribute_values_from_function(
            lambda ctx: pooled[ctx.replica_id_in_sync_group * per_replica:
                               (ctx.replica_id_in_sync_group + 1) * per_replica])

    def _train_step(self, batch):
        a, b = batch
        g_terms, fake_a, fake_b = self.strategy.run(self._generator_step, args=(a, b))
        seed = tf.stack([tf.constant(self.config.seed, tf.int32),
                         tf.cast(self.step, tf.int32)])
        fake_a = self._pooled(self.pool_A, fake_a, seed)
        fake_b = self._pooled(self.pool_B, fake_b, seed + 1)
        d_terms = self.strategy.run(self._discriminator_step, args=(a, b, fake_a, fake_b))
        self.step.assign_add(1)
        reduce = lambda v: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)  # noqa: E731
        return {k: reduce(v) for k, v in {**g_terms, **d_terms}.items()}


def prepare_dataroot(config: CycleGANConfig) -> Path:
    """The data folder, checked to hold trainA/ and trainB/; 'synthetic' writes the built-in
    demo data under model_dir first. DataError naming the folder otherwise."""
    if config.dataroot == "synthetic":
        root = Path(config.model_dir) / "synthetic_data"
        synthetic.make_dataset(root, seed=config.seed)
        return root
    root = Path(config.dataroot)
    if not root.is_dir():
        raise DataError(f"--dataroot={config.dataroot}: no such folder")
    missing = [name for name in ("trainA", "trainB") if not (root / name).is_dir()]
    if missing:
        raise DataError(f"--dataroot={config.dataroot}: holds no {' or '.join(missing)} folder")
    return root


def _sample_images(folder: Path, count: int, size: int, limits):
    """Up to `count` readable images of `folder` (within the ImageLimits `limits`), shorter
    side resized to `size` (multiple of 4; the longer side at most 8 x size), for sample
    translations."""
    out = []
    if not folder.is_dir():
        return out
    for path in list_images(folder):
        if len(out) == count:
            break
        try:
            image = read_image(path, limits)
        except ValueError:
            continue
        h, w = image.shape[:2]
        scale = min(size / min(h, w), 8 * size / max(h, w))
        out.append((path.stem, resize(image, (max(4, round(h * scale / 4) * 4),
                                              max(4, round(w * scale / 4) * 4)))))
    return out


def _write_samples(model: CycleGAN, root: Path, out_dir: Path, count: int,
                   translators: dict) -> int:
    """Translate up to `count` test images per direction into out_dir; `translators` keeps
    one Translator (one traced function) per direction for the whole run."""
    written = 0
    for direction, generator in model.generators.items():
        source = direction[0]
        folder = root / f"test{source}"
        if not folder.is_dir():
            folder = root / f"train{source}"
        if direction not in translators:
            translators[direction] = translator.Translator(
                generator, tile=max(512, model.config.crop_size))
        translate = translators[direction]
        for stem, image in _sample_images(folder, count, model.config.crop_size, model.config):
            write_image(out_dir / direction / f"{stem}.png", translate(image))
            written += 1
    return written


def make_model(config: CycleGANConfig, strategy: tf.distribute.Strategy):
    """The run's networks, optimizers and step: CycleGAN, or CUT (which builds on it)."""
    if config.model == "cut":
        from tfstyle.cyclegan.cut import CUT  # cut.py imports this module
        return CUT(config, strategy)
    return CycleGAN(config, strategy)


def train(config: CycleGANConfig, strategy: tf.distribute.Strategy | None = None,
          flags_text: str | None = None) -> dict:
    """Train (or resume) a run in config.model_dir; returns a summary dict.

    Writes MODEL_DIR/config.json (+ flags.txt when `flags_text` is given), checkpoints/,
    logs/ (TensorBoard), samples/epoch_NNN/{AtoB,BtoA}/ and, at the end, generators/
    (see tfstyle.cyclegan.generators). Raises one of tfstyle.core.training.RUN_ERRORS for a
    problem of the data, settings or model_dir (before writing anything for a missing
    dataroot) and NonFiniteLossError when a loss or weight is NaN or infinite (nothing of
    that step is written).
    """
    c = config
    root = prepare_dataroot(c)  # before anything is written into model_dir
    strategy, chief, model_dir = start_run(c, RESUME_KEYS, flags_text, strategy)
    cache = model_dir / "cache"
    domain_a = load_domain(root / "trainA", c.load_size, cache, limits=c)
    domain_b = load_domain(root / "trainB", c.load_size, cache, limits=c)
    data = UnalignedData(domain_a, domain_b, c.crop_size, c.seed, paired=c.paired_l1 > 0)
    model = make_model(c, strategy)
    steps_per_epoch = data.steps_per_epoch(model.global_batch)
    total_steps = steps_per_epoch * c.total_epochs
    if c.max_steps:
        total_steps = min(total_steps, c.max_steps)
    logging.info("A: %d images (%d skipped), B: %d images (%d skipped); %d steps per epoch "
                 "of global batch %d", len(domain_a), len(domain_a.skipped), len(domain_b),
                 len(domain_b.skipped), steps_per_epoch, model.global_batch)

    grid_a = tf.constant(to_model_range(domain_a.images[:1, :c.crop_size, :c.crop_size]))
    grid_b = tf.constant(to_model_range(domain_b.images[:1, :c.crop_size, :c.crop_size]))
    grid = tf.function(model.image_grid)
    # Nothing non-finite is written: checkpoints (and so the generators, written after the
    # last one) need finite state and finite losses of these weights on the grid batch.
    guard = FiniteGuard(model.state_variables,
                        tf.function(lambda: model.probe_losses(grid_a, grid_b)))
    checkpoints = Checkpoints(model.checkpoint, model_dir / "checkpoints", chief,
                              c.keep_checkpoints, guard)
    resumed = checkpoints.restore()
    writer = summary_writer(model_dir, chief)

    step = int(model.step.numpy())
    lr = c.lr
    hooks = StepHooks(checkpoints, writer, Progress(total_steps, start=step, enabled=chief),
                      total_steps, c.log_every_steps, c.image_every_steps, c.save_every_steps,
                      images_fn=lambda: grid(grid_a, grid_b), image_tag=model.image_tag,
                      extra_scalars=lambda: {"learning_rate": lr})
    losses_now: dict = {}
    translators: dict = {}
    started = time.perf_counter()
    while step < total_steps:
        epoch, start = int(model.epoch.numpy()), int(model.step_in_epoch.numpy())
        epoch_started, epoch_first_step = time.perf_counter(), step
        lr = model.set_learning_rate(epoch)
        step, losses_now = run_epoch(
            model, strategy, lambda ctx, e=epoch, s=start: data.dataset(e, s, model.global_batch,
                                                                       ctx),
            hooks, step, total_steps, epoch, losses_now)
        epoch_done = int(model.step_in_epoch.numpy()) >= steps_per_epoch
        if epoch_done:
            seconds = time.perf_counter() - epoch_started
            logging.info("epoch %d done: %d steps in %.1f s (%.3f s/step)", epoch + 1,
                         step - epoch_first_step, seconds, seconds / max(1, step - epoch_first_step))
            model.epoch.assign_add(1)
            model.step_in_epoch.assign(0)
        checkpoints.save(step)  # the guard first: samples only of weights that passed it
        if epoch_done and chief and c.num_samples:
            _write_samples(model, root, model_dir / "samples" / f"epoch_{epoch + 1:03d}",
                           c.num_samples, translators)
    writer.flush()

    info = {"model": c.model, "block": c.block, "ngf": c.ngf, "n_blocks": c.n_blocks,
            "norm_affine": c.norm_affine,
            "load_size": c.load_size, "crop_size": c.crop_size, "dataroot": str(root.resolve()),
            "step": step, "epoch": int(model.epoch.numpy()), "config": dataclasses.asdict(c)}
    summary = {
        "steps": step, "epochs": int(model.epoch.numpy()),
        "resumed_from": resumed, "losses": losses_now,
        "images_A": len(domain_a), "images_B": len(domain_b),
        "skipped": [str(domain_a.folder / n) for n, _ in domain_a.skipped]
        + [str(domain_b.folder / n) for n, _ in domain_b.skipped],
        "seconds": time.perf_counter() - started,
    }
    if chief:
        generators.save_generators(model_dir, model.generators, info)
        if c.num_samples:
            summary["samples"] = _write_samples(model, root, model_dir / "samples" / "final",
                                                c.num_samples, translators)
        write_json_atomic(model_dir / "summary.json", summary, sort_keys=False)
    return summary
