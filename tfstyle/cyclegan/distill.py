"""Distillation of a trained CycleGAN-family generator (the teacher) into a smaller one (the
student; by default the mobile generator), after GAN Compression (Li et al., CVPR 2020).

For source images a of the direction (trainA for AtoB), with the teacher T frozen:

  L_S = lambda_recon * |S(a) - T(a)|_1
        + lambda_feature * sum_k mean((M_k(S_k(a)) - T_k(a))^2) / mean(T_k(a)^2)
        + lambda_gan * GAN(D(S(a)), 1)
  L_D = 0.5 * (GAN(D(T(a)), 1) + GAN(D(S(a)), 0))

S_k and T_k are bottleneck activations (`ResnetGenerator.call_with_activations`: index 0
after the downsampling, index i after residual block i) at `feature_layers` evenly spaced
depths, pair k = (round(k n_S / K), round(k n_T / K)) for k = 1..K; M_k is a learned 1x1
convolution from the student's 4 ngf channels to the teacher's; each feature error is taken
relative to the teacher activation's mean square, so its weight does not depend on the
teacher's activation scale (which grows along the residual stream). D is a PatchGAN that tells
the teacher's translations (real) from the student's (fake). Any tfstyle generator is a
teacher: it is loaded from MODEL_DIR/generators/<direction>.keras (resnet, se, da, one
imported from PyTorch). With --direction=both, one student per direction is trained in the
same steps (each on its own source domain), so the student's model dir is complete.

One step updates the students and maps with Adam(lr, beta1, 0.999), then the
discriminators with the translations made before that update, written once for every
tf.distribute strategy as the CycleGAN trainer's step (per-replica shares of the global-batch
mean, gradients summed by the optimizers). The learning rate follows the official linear
rule over epochs + decay_epochs. The run folder is the trainers' (config.json, flags.txt,
checkpoints/ with resume, logs/, samples/) and ends with a normal model dir:
generators/<direction>.keras (the student) and info.json, which translate, export and the
apps read like any trained generator.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tfstyle.core.config import setting
from tfstyle.core.data import DataError, replica_slots, slot_dataset
from tfstyle.core.files import write_json_atomic
from tfstyle.core.images import (
    ImageError,
    from_model_range,
    list_images,
    read_image,
    to_model_range,
    write_image,
)
from tfstyle.core.layers import conv2d
from tfstyle.core.training import (
    Checkpoints,
    FiniteGuard,
    Progress,
    StepHooks,
    run_epoch,
    start_run,
    summary_writer,
)
from tfstyle.cyclegan import generators, losses, translator
from tfstyle.cyclegan.blocks import BLOCKS
from tfstyle.cyclegan.data import Domain, EpochSlots, crop_flip, load_domain
from tfstyle.cyclegan.networks import PatchDiscriminator, ResnetGenerator
from tfstyle.cyclegan.trainer import GANRunSettings, generator_options

SOURCE = {"AtoB": "A", "BtoA": "B"}

# Settings that shape the checkpoints: a resumed run must keep them.
RESUME_KEYS = ("teacher", "direction", "block", "ngf", "n_blocks", "norm_affine",
               "se_reduction", "upsample", "residual", "feature_layers", "ndf", "n_layers_d",
               "crop_size", "batch_size", "seed")


class TeacherError(ValueError):
    """The teacher's model dir holds no generator that can be distilled."""


@dataclass
class DistillConfig(GANRunSettings):
    """Every setting of a distillation run; `python -m train.distill` has a flag for each."""
    teacher: str = setting("", "Model dir of the trained teacher (its generators/ hold "
                           "<direction>.keras and info.json).",
                           required="give the teacher's model dir (holding generators/)")
    direction: str = setting("AtoB", "The teacher's generator to distill; both: one student "
                             "per direction.", choices=generators.DIRECTIONS + ("both",))
    dataroot: str = setting("", "Folder with train<source>/ (and test<source>/ for the held-out "
                            "check and samples); empty: the teacher's, from its info.json.")
    block: str = setting("mobile", "Student's residual block: " + ", ".join(BLOCKS) + ".",
                         choices=BLOCKS)
    ngf: int = setting(32, "Student's filters in the first layer.", min=1, max=512)
    se_reduction: int = setting(16, "Squeeze-and-excitation reduction (se, mobile_se).", min=1)
    feature_layers: int = setting(3, "Bottleneck activations distilled (evenly spaced over "
                                  "the blocks, through learned 1x1 maps); 0: none.", min=0,
                                  max=65)
    lambda_recon: float = setting(10.0, "Weight of the L1 loss to the teacher's output.", min=0)
    lambda_feature: float = setting(1.0, "Weight of the feature losses (squared error relative "
                                    "to the teacher activation's mean square).", min=0)
    lambda_gan: float = setting(1.0, "Weight of the GAN loss against the teacher's outputs "
                                "(0: no discriminator training).", min=0)
    epochs: int = setting(50, "Epochs at the initial learning rate.", min=0)
    decay_epochs: int = setting(50, "Epochs of linear learning-rate decay to 0 after "
                                "--epochs.", min=0)
    check_images: int = setting(50, "Held-out images (test<source>/) on which the student is "
                                "checked against the teacher at the end (PSNR, SSIM).", min=0)
    num_samples: int = setting(8, "Of those, images written as [input | teacher | student] "
                               "strips.", min=0)

    @property
    def directions(self) -> tuple[str, ...]:
        return generators.DIRECTIONS if self.direction == "both" else (self.direction,)


def feature_pairs(n_student: int, n_teacher: int, count: int) -> list[tuple[int, int]]:
    """(student, teacher) activation indices of the distilled features: `count` evenly
    spaced depths, 0 the bottleneck before the blocks, i the output of block i; duplicates
    dropped."""
    pairs = [(round(k * n_student / count), round(k * n_teacher / count))
             for k in range(1, count + 1)]
    return list(dict.fromkeys(pairs))


def feature_loss(student, teacher):
    """Per-example squared error of a (mapped) student activation relative to the teacher's
    mean square, mean((s - t)^2) / (mean(t^2) + 1e-6), [B]: 1 for s = 0 whatever the
    teacher's activation scale (its residual stream grows with depth)."""
    s = tf.reshape(tf.cast(student, tf.float32), [tf.shape(student)[0], -1])
    t = tf.reshape(tf.cast(teacher, tf.float32), [tf.shape(teacher)[0], -1])
    return (tf.reduce_mean(tf.square(s - t), axis=1)
            / (tf.reduce_mean(tf.square(t), axis=1) + 1e-6))


def load_teacher(model_dir, direction: str) -> ResnetGenerator:
    """The teacher generator of `direction`, frozen; TeacherError when there is none."""
    try:
        teacher = generators.load_generator(model_dir, direction)
    except FileNotFoundError as err:
        raise TeacherError(f"--teacher={model_dir}: {err}") from err
    except (ValueError, TypeError, OSError) as err:
        raise TeacherError(f"--teacher={model_dir}: {direction}.keras cannot be loaded "
                           f"({str(err).splitlines()[0] if str(err) else type(err).__name__})"
                           ) from err
    if not isinstance(teacher, ResnetGenerator):
        raise TeacherError(f"--teacher={model_dir}: {direction}.keras holds a "
                           f"{type(teacher).__name__}, not a tfstyle generator")
    teacher.trainable = False
    return teacher


def check_teacher(config: DistillConfig) -> dict:
    """The teacher's info.json ({} without one), after checking that its model dir holds a
    generator file for each direction distilled; TeacherError otherwise."""
    folder = generators.generators_dir(config.teacher)
    missing = [d for d in config.directions if not (folder / f"{d}.keras").is_file()]
    if missing:
        raise TeacherError(f"--teacher={config.teacher}: no {', '.join(missing)} generator in "
                           f"{folder} (a model dir of python -m train.cyclegan)")
    try:
        return generators.load_info(config.teacher)
    except FileNotFoundError:
        return {}


def resolve_dataroot(config: DistillConfig, teacher_info: dict) -> Path:
    """--dataroot, or the teacher's training data root from its info.json, checked to hold
    the source folders (train<source>/) of the directions distilled."""
    root = config.dataroot or teacher_info.get("dataroot", "")
    if not root:
        raise DataError("--dataroot: not given, and the teacher's info.json names none")
    missing = [f"train{SOURCE[d]}" for d in config.directions
               if not (Path(root) / f"train{SOURCE[d]}").is_dir()]
    if not Path(root).is_dir() or missing:
        raise DataError(f"--dataroot={root}: " + (f"holds no {' or '.join(missing)} folder"
                                                   if Path(root).is_dir() else "no such folder"))
    return Path(root)


class SourceImages(EpochSlots):
    """The source-domain images of each direction, an epoch of max(|domain|) slots: each
    domain goes through its own shuffled order (wrapping around), with a random crop and
    flip per slot, all drawn from (seed, epoch), so a resumed run sees the same data and the
    replicas of a step together see the one-device global batch (as the CycleGAN data)."""

    def __init__(self, domains: list[Domain], crop_size: int, seed: int):
        super().__init__(domains[0].images.shape[1], crop_size, seed)
        self.domains = domains
        self.epoch_size = max(len(d) for d in domains)

    def plan(self, epoch: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(index, crop offset, flip) of every slot, per domain."""
        rng = np.random.default_rng([self.seed, epoch])
        n = self.epoch_size
        return [(rng.permutation(n) % len(d), rng.integers(0, self.span, (n, 2)),
                 rng.random(n) < 0.5) for d in self.domains]

    def dataset(self, epoch: int, start_step: int, global_batch: int,
                input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """Per-replica batches: a tuple with one float32 [b, crop, crop, 3] batch in [-1, 1]
        per domain, of one epoch from `start_step` on."""
        slots = replica_slots(self.steps_per_epoch(global_batch), global_batch, start_step,
                              input_context)
        shape = (slots.shape[1], self.crop_size, self.crop_size, 3)
        plan = self.plan(epoch)

        def load(batch_slots):
            return [crop_flip(domain.images, index[batch_slots], offset[batch_slots],
                              flip[batch_slots], self.crop_size)
                    for domain, (index, offset, flip) in zip(self.domains, plan)]

        def to_tensors(batch_slots):
            batches = tf.numpy_function(load, [batch_slots], [tf.uint8] * len(self.domains),
                                        stateful=False)
            return tuple(to_model_range(tf.ensure_shape(b, shape)) for b in batches)

        return slot_dataset(slots, to_tensors)


class Distiller:
    """Per direction the frozen teacher, the student, the feature maps and the
    discriminator; the two optimizers, the step counters and the train step."""

    def __init__(self, config: DistillConfig, strategy: tf.distribute.Strategy):
        self.config, self.strategy = config, strategy
        self.global_batch = config.batch_size * strategy.num_replicas_in_sync
        self.directions = config.directions
        c = config
        keras.utils.set_random_seed(c.seed)
        shape = (None, c.crop_size, c.crop_size, 3)
        self.teachers, self.students, self.maps, self.discriminators = {}, {}, {}, {}
        self.pairs = {}
        with strategy.scope():
            for d in self.directions:
                teacher = load_teacher(c.teacher, d)
                student = ResnetGenerator(**generator_options(c), name=f"student_{d}")
                student.build(shape)
                self.pairs[d] = feature_pairs(c.n_blocks, teacher.n_blocks, c.feature_layers)
                maps = [conv2d(teacher.ngf * 4, 1, name=f"map{k + 1}_{d}")
                        for k in range(len(self.pairs[d]))]
                for m in maps:
                    m.build((None, None, None, c.ngf * 4))
                disc = PatchDiscriminator(c.ndf, c.n_layers_d, name=f"D_{d}")
                disc.build(shape)
                self.teachers[d], self.students[d] = teacher, student
                self.maps[d], self.discriminators[d] = maps, disc
            self.s_vars = [w for d in self.directions for w in self.students[d].trainable_weights
                           + [v for m in self.maps[d] for v in m.trainable_weights]]
            self.d_vars = [w for d in self.directions
                           for w in self.discriminators[d].trainable_weights]
            self.opt_S = keras.optimizers.Adam(c.lr, beta_1=c.beta1, beta_2=0.999)
            self.opt_D = keras.optimizers.Adam(c.lr, beta_1=c.beta1, beta_2=0.999)
            self.opt_S.build(self.s_vars)
            self.opt_D.build(self.d_vars)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
        tracked = {}
        for d in self.directions:
            tracked.update({f"student_{d}": self.students[d], f"maps_{d}": self.maps[d],
                            f"D_{d}": self.discriminators[d]})
        self.checkpoint = tf.train.Checkpoint(
            opt_S=self.opt_S, opt_D=self.opt_D, step=self.step, epoch=self.epoch,
            step_in_epoch=self.step_in_epoch, **tracked)
        self._s_grads = tf.function(self._student_gradients, jit_compile=c.jit_compile)
        self._d_grads = tf.function(self._discriminator_gradients, jit_compile=c.jit_compile)
        self.train_step = tf.function(self._train_step)

    @property
    def state_variables(self) -> list:
        """The float state a checkpoint holds: weights and optimizer slots."""
        nets = [n for d in self.directions
                for n in (self.students[d], *self.maps[d], self.discriminators[d])]
        return [w for n in nets for w in n.weights] + [*self.opt_S.variables,
                                                       *self.opt_D.variables]

    def name(self, term: str, direction: str) -> str:
        return term if len(self.directions) == 1 else f"{term}_{direction}"

    def set_learning_rate(self, epoch: int) -> float:
        lr = self.config.lr * self.config.lr_factor(epoch)
        for opt in (self.opt_S, self.opt_D):
            opt.learning_rate.assign(lr)
        return lr

    # -- per-replica computations ---------------------------------------------------------
    def _mean(self, per_example):
        return tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch)

    def _teach(self, batch):
        """Per direction the teacher's output and its distilled activations (constants)."""
        taught = {}
        for d, a in zip(self.directions, batch):
            out, acts = self.teachers[d].call_with_activations(a)
            taught[d] = (tf.stop_gradient(out),
                         [tf.stop_gradient(acts[t]) for _, t in self.pairs[d]])
        return taught

    def terms(self, batch, taught):
        """Per-example student losses (a dict by name) and the students' outputs."""
        c = self.config
        terms, outputs = {}, {}
        for d, a in zip(self.directions, batch):
            target, features = taught[d]
            out, acts = self.students[d].call_with_activations(a)
            outputs[d] = out
            terms[self.name("recon", d)] = c.lambda_recon * losses.l1(out, target)
            if c.lambda_feature > 0 and self.pairs[d]:
                terms[self.name("feature", d)] = c.lambda_feature * tf.add_n([
                    feature_loss(m(acts[s]), t)
                    for m, (s, _), t in zip(self.maps[d], self.pairs[d], features)])
            if c.lambda_gan > 0:
                terms[self.name("gan", d)] = c.lambda_gan * losses.gan_loss(
                    self.discriminators[d](out), True, c.gan_mode)
        return terms, outputs

    def _student_gradients(self, batch):
        taught = self._teach(batch)
        with tf.GradientTape() as tape:
            terms, outputs = self.terms(batch, taught)
            terms = {k: self._mean(v) for k, v in terms.items()}
            total = tf.add_n(list(terms.values()))
        grads = tape.gradient(total, self.s_vars)
        return grads, terms, {d: taught[d][0] for d in self.directions}, outputs

    def _discriminator_gradients(self, targets, outputs):
        mode = self.config.gan_mode
        with tf.GradientTape() as tape:
            terms = {self.name("D", d): self._mean(0.5 * (
                losses.gan_loss(self.discriminators[d](targets[d]), True, mode)
                + losses.gan_loss(self.discriminators[d](outputs[d]), False, mode)))
                for d in self.directions}
            total = tf.add_n(list(terms.values()))
        return tape.gradient(total, self.d_vars), terms

    def _student_step(self, batch):
        grads, terms, targets, outputs = self._s_grads(batch)
        self.opt_S.apply_gradients(zip(grads, self.s_vars))
        return terms, targets, outputs

    def _discriminator_step(self, targets, outputs):
        grads, terms = self._d_grads(targets, outputs)
        self.opt_D.apply_gradients(zip(grads, self.d_vars))
        return terms

    # -- the distributed step -------------------------------------------------------------
    def _train_step(self, batch):
        terms, targets, outputs = self.strategy.run(self._student_step, args=(batch,))
        if self.config.lambda_gan > 0:
            terms = {**terms, **self.strategy.run(self._discriminator_step,
                                                  args=(targets, outputs))}
        self.step.assign_add(1)
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in terms.items()}

    def probe(self, batch):
        """The students' mean losses on `batch` (for the finite-weights guard)."""
        terms, _ = self.terms(batch, self._teach(batch))
        return {k: tf.reduce_mean(v) for k, v in terms.items()}


def heldout_images(root: Path, domain: str, count: int, limits=None
                   ) -> list[tuple[str, np.ndarray]]:
    """(stem, RGB uint8) of the first `count` readable images of test<domain> within the
    ImageLimits `limits` (others skipped with a warning)."""
    folder = root / f"test{domain}"
    out = []
    for path in (list_images(folder) if folder.is_dir() else []):
        if len(out) == count:
            break
        try:
            out.append((path.stem, read_image(path, limits)))
        except ImageError as err:
            logging.warning("skipped %s", err)
    return out


def heldout_check(teacher, student, images: list[tuple[str, np.ndarray]],
                  samples_dir: Path | None = None, samples: int = 0) -> dict:
    """Student against teacher on held-out (stem, RGB uint8) images, whole images as
    translate runs them: mean PSNR (dB, capped at 100) and SSIM of the uint8 outputs. The
    first `samples` are written to `samples_dir` as [input | teacher | student] strips."""
    if not images:
        return {"images": 0}
    t, s = translator.Translator(teacher), translator.Translator(student)
    psnr, ssim = [], []
    for i, (stem, image) in enumerate(images):
        ours, theirs = s(image), t(image)
        a, b = tf.constant(theirs, tf.float32), tf.constant(ours, tf.float32)
        psnr.append(min(100.0, float(tf.image.psnr(a, b, max_val=255.0))))
        size = int(min(11, image.shape[0], image.shape[1]))
        ssim.append(float(tf.image.ssim(a, b, max_val=255.0, filter_size=size)))
        if samples_dir is not None and i < samples:
            write_image(samples_dir / f"{stem}.png", np.concatenate([image, theirs, ours], 1))
    return {"psnr_db": round(float(np.mean(psnr)), 3), "ssim": round(float(np.mean(ssim)), 4),
            "images": len(images)}


def _image_grid(model: Distiller, batch):
    """[n_directions, H, 3W, 3] uint8: (input, teacher, student) of each direction."""
    rows = [tf.concat([a, model.teachers[d](a), model.students[d](a)], axis=2)
            for d, a in zip(model.directions, batch)]
    return tf.cast(tf.clip_by_value(from_model_range(tf.concat(rows, 0)), 0, 255), tf.uint8)


def train(config: DistillConfig, strategy: tf.distribute.Strategy | None = None,
          flags_text: str | None = None) -> dict:
    """Distill (or resume distilling) into config.model_dir; returns a summary dict.

    Writes MODEL_DIR/config.json (+ flags.txt when `flags_text` is given), checkpoints/,
    logs/, samples/final/<direction>/ and at the end generators/<direction>.keras (the
    students) with info.json, and summary.json (with the held-out agreement).
    """
    c = config
    teacher_info = check_teacher(c)  # before anything is written into model_dir
    root = resolve_dataroot(c, teacher_info)
    strategy, chief, model_dir = start_run(c, RESUME_KEYS, flags_text, strategy)
    domains = [load_domain(root / f"train{SOURCE[d]}", c.load_size, model_dir / "cache",
                           limits=c) for d in c.directions]
    data = SourceImages(domains, c.crop_size, c.seed)
    model = Distiller(c, strategy)
    steps_per_epoch = data.steps_per_epoch(model.global_batch)
    total_steps = steps_per_epoch * c.total_epochs
    if c.max_steps:
        total_steps = min(total_steps, c.max_steps)
    logging.info("%s: %d steps per epoch of global batch %d; feature pairs (student, teacher) %s",
                 ", ".join(f"{d.folder} {len(d)} images" for d in domains), steps_per_epoch,
                 model.global_batch, model.pairs)

    fixed = tuple(tf.constant(to_model_range(d.images[:1, :c.crop_size, :c.crop_size]))
                  for d in domains)
    probe = tf.function(lambda: model.probe(fixed))
    guard = FiniteGuard(model.state_variables, probe)
    checkpoints = Checkpoints(model.checkpoint, model_dir / "checkpoints", chief,
                              c.keep_checkpoints, guard=guard)
    resumed = checkpoints.restore()
    writer = summary_writer(model_dir, chief)
    grid = tf.function(lambda: _image_grid(model, fixed))

    step = int(model.step.numpy())
    lr = c.lr
    hooks = StepHooks(checkpoints, writer, Progress(total_steps, start=step, enabled=chief),
                      total_steps, c.log_every_steps, c.image_every_steps, c.save_every_steps,
                      images_fn=grid, image_tag="input__teacher__student",
                      extra_scalars=lambda: {"learning_rate": lr})
    losses_now: dict = {}
    started = time.perf_counter()
    while step < total_steps:
        epoch, start = int(model.epoch.numpy()), int(model.step_in_epoch.numpy())
        lr = model.set_learning_rate(epoch)
        step, losses_now = run_epoch(
            model, strategy, lambda ctx, e=epoch, s=start: data.dataset(e, s, model.global_batch,
                                                                       ctx),
            hooks, step, total_steps, epoch, losses_now)
        if int(model.step_in_epoch.numpy()) >= steps_per_epoch:
            model.epoch.assign_add(1)
            model.step_in_epoch.assign(0)
        checkpoints.save(step)
    writer.flush()

    samples = model_dir / "samples" / "final"
    heldout = {d: heldout_check(model.teachers[d], model.students[d],
                                heldout_images(root, SOURCE[d], c.check_images, c),
                                samples / d if chief else None, c.num_samples)
               for d in model.directions}
    info = {"block": c.block, "ngf": c.ngf, "n_blocks": c.n_blocks, "norm_affine": c.norm_affine,
            "load_size": c.load_size, "crop_size": c.crop_size, "dataroot": str(root.resolve()),
            "step": step, "epoch": int(model.epoch.numpy()), "config": dataclasses.asdict(c),
            "distilled_from": {"model_dir": str(Path(c.teacher).resolve()),
                               "directions": list(model.directions),
                               **{k: teacher_info[k] for k in ("block", "ngf", "n_blocks")
                                  if k in teacher_info}}}
    summary = {"steps": step, "epochs": int(model.epoch.numpy()), "resumed_from": resumed,
               "losses": losses_now, "first_losses": hooks.first_losses,
               "images": {d: len(dom) for d, dom in zip(model.directions, domains)},
               "skipped": [str(dom.folder / n) for dom in domains for n, _ in dom.skipped],
               "heldout": heldout, "seconds": time.perf_counter() - started}
    if chief:
        generators.save_generators(model_dir, model.students, info)
        write_json_atomic(model_dir / "summary.json", summary, sort_keys=False)
    return summary
