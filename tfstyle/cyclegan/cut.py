"""CUT and FastCUT (Park et al., "Contrastive Learning for Unpaired Image-to-Image
Translation", ECCV 2020): one generator G: A -> B and one discriminator D_B, no cycle.

Content is kept by the PatchNCE loss: a patch of the output G(x) must be recognisable as
the patch of the input x at the same place among the other patches of x. Both images go
through G's own encoder (`ResnetGenerator.call_with_activations`); at each of the NCE layers
(`nce_layers`: the pixels themselves, as the paper's layer 0, the bottleneck and two
residual-block outputs) `num_patches` positions are
drawn, shared by x and G(x), a small MLP (`ProjectionHead`, trained with G) maps the features
to 256-d unit vectors, and for each position

    PatchNCE = -log( exp(q.k+ / t) / (exp(q.k+ / t) + sum_k- exp(q.k- / t)) )

with q the output's vector, k+ the input's at the same position, k- the input's at the other
drawn positions of the same image (keys are not differentiated), t = nce_temperature (0.07).

    L_G = GAN(D_B(G(a)), 1) + lambda_nce * NCE(a, G(a))                       (FastCUT)
    L_G = GAN(D_B(G(a)), 1) + lambda_nce * (NCE(a, G(a)) + NCE(b, G(b))) / 2  (CUT, nce_idt)
    L_D = 0.5 * (GAN(D_B(b), 1) + GAN(D_B(G(a)), 0))

CUT: lambda_nce = 1 with nce_idt; FastCUT: lambda_nce = 10 without (the paper's settings;
its flip-equivariance augmentation is not included). As in the paper there is no image pool.
The step runs under every tf.distribute strategy like CycleGAN's (tfstyle.cyclegan.trainer),
and a CUT run writes the same model directory with generators/AtoB.keras only.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfstyle.core.images import from_model_range
from tfstyle.cyclegan import losses
from tfstyle.cyclegan.networks import PatchDiscriminator, ResnetGenerator
from tfstyle.cyclegan.trainer import MIXED_PRECISION, CycleGAN, generator_options

FEATURES = 256       # width of the projection head (the paper's netF_nc)
NEGATIVE_SELF = -10.0  # logit of a patch against itself, masked out of the negatives


def nce_layers(n_blocks: int) -> tuple[int, ...]:
    """The NCE layers as indices into [pixels, bottleneck, block 1 output, ..., block n
    output] (the image and `call_with_activations`' list): the pixels, the bottleneck and
    the outputs of blocks n/4 and n/2."""
    return tuple(sorted({0, 1, 1 + max(1, n_blocks // 4), 1 + n_blocks // 2}
                        & set(range(n_blocks + 2))))


def patch_nce_loss(q, k, temperature: float = 0.07):
    """Per-example PatchNCE loss [B] of queries q and keys k, [B, P, D] unit vectors (q[b, i]
    and k[b, i] from the same position; the other keys of image b are its negatives): the
    mean over the P positions of the cross-entropy of picking k[b, i] for q[b, i]."""
    q, k = tf.cast(q, tf.float32), tf.stop_gradient(tf.cast(k, tf.float32))
    positive = tf.reduce_sum(q * k, axis=-1, keepdims=True)                   # [B, P, 1]
    negative = tf.einsum("bpd,bqd->bpq", q, k)                                # [B, P, P]
    eye = tf.eye(tf.shape(q)[1], dtype=tf.bool)[None]
    negative = tf.where(eye, NEGATIVE_SELF, negative)
    logits = tf.concat([positive, negative], axis=-1) / temperature
    return tf.reduce_mean(-tf.nn.log_softmax(logits, axis=-1)[..., 0], axis=1)


def positions(features) -> tf.Tensor:
    """[B, H, W, C] -> [B, H*W, C]."""
    shape = tf.shape(features)
    return tf.reshape(features, [shape[0], shape[1] * shape[2], shape[3]])


def draw_positions(total, count: int, seed):
    """min(count, total) of the indices 0..total-1, drawn without replacement with the
    stateless `seed` (the same for the input and the output of one step)."""
    order = tf.argsort(tf.random.stateless_uniform([total], seed))
    return order[:tf.minimum(count, total)]


@keras.saving.register_keras_serializable(package="tfstyle")
class ProjectionHead(keras.Model):
    """One two-layer MLP (Dense, ReLU, Dense, L2 normalisation) per NCE layer: sampled
    features [B, P, C_l] -> [B, P, FEATURES] unit vectors."""

    def __init__(self, channels, features: int = FEATURES, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.features = [int(c) for c in channels], int(features)
        init = keras.initializers.RandomNormal(stddev=0.02)
        self.mlps = [[keras.layers.Dense(self.features, activation="relu", name=f"mlp{i}_1",
                                         kernel_initializer=init),
                      keras.layers.Dense(self.features, name=f"mlp{i}_2",
                                         kernel_initializer=init)]
                     for i in range(len(self.channels))]

    def build(self, input_shape=None):
        for mlp, c in zip(self.mlps, self.channels):
            mlp[0].build((None, None, c))
            mlp[1].build((None, None, self.features))
        self.built = True

    def project(self, index: int, x):
        first, second = self.mlps[index]
        x = tf.cast(second(first(x)), tf.float32)
        return tf.math.l2_normalize(x, axis=-1, epsilon=1e-7)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "features": self.features}


class CUT(CycleGAN):
    """G, D_B, the projection head and the two optimizers of a CUT run, and its train step.
    It builds its own networks (not CycleGAN's four) and keeps CycleGAN's run machinery:
    the optimizers, the learning-rate schedule and the per-replica loss reduction."""

    def __init__(self, config, strategy: tf.distribute.Strategy):
        self.config, self.strategy = config, strategy
        self.global_batch = config.batch_size * strategy.num_replicas_in_sync
        c = config
        self.layers = nce_layers(c.n_blocks)
        keras.utils.set_random_seed(c.seed)  # the initial weights
        previous = keras.mixed_precision.dtype_policy().name
        keras.mixed_precision.set_dtype_policy(MIXED_PRECISION[c.mixed_precision])
        try:
            with strategy.scope():
                self.G = ResnetGenerator(**generator_options(c), name="G_AtoB")
                self.D_B = PatchDiscriminator(c.ndf, c.n_layers_d, norm_affine=c.norm_affine,
                                              name="D_B")
                shape = (None, c.crop_size, c.crop_size, 3)
                self.G.build(shape)
                self.D_B.build(shape)
                self.head = ProjectionHead([3 if i == 0 else 4 * c.ngf for i in self.layers],
                                           name="projection")
                self.head.build()
                self.g_vars = self.G.trainable_weights + self.head.trainable_weights
                self.d_vars = self.D_B.trainable_weights
                self.opt_G, self.opt_D = self._optimizer(c.lr), self._optimizer(c.lr_d or c.lr)
                self.opt_G.build(self.g_vars)
                self.opt_D.build(self.d_vars)
        finally:
            keras.mixed_precision.set_dtype_policy(previous)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
        self.checkpoint = tf.train.Checkpoint(
            G=self.G, D_B=self.D_B, head=self.head, opt_G=self.opt_G, opt_D=self.opt_D,
            step=self.step, epoch=self.epoch, step_in_epoch=self.step_in_epoch)
        jit = c.jit_compile
        self._g_grads = tf.function(self._generator_gradients, jit_compile=jit)
        self._d_grads = tf.function(self._discriminator_gradients, jit_compile=jit)
        self.train_step = tf.function(self._train_step)

    @property
    def generators(self) -> dict:
        return {"AtoB": self.G}

    image_tag = "A_to_B__B_to_B"

    def image_grid(self, a, b):
        """[2, H, 2W, 3] uint8: (a, G(a)) and (b, G(b))."""
        rows = [tf.concat([a, self.G(a)], axis=2), tf.concat([b, self.G(b)], axis=2)]
        return tf.cast(tf.clip_by_value(from_model_range(tf.concat(rows, 0)), 0, 255), tf.uint8)

    # -- per-replica computations ---------------------------------------------------------
    def _nce(self, real_features, fake_features, seed):
        """Per-example PatchNCE [B], averaged over the NCE layers."""
        c = self.config
        total = 0.0
        for i, layer in enumerate(self.layers):
            real, fake = positions(real_features[layer]), positions(fake_features[layer])
            ids = draw_positions(tf.shape(real)[1], c.num_patches,
                                 seed + tf.constant([0, 7919], tf.int32) * (i + 1))
            q = self.head.project(i, tf.gather(fake, ids, axis=1))
            k = self.head.project(i, tf.gather(real, ids, axis=1))
            total += patch_nce_loss(q, k, c.nce_temperature)
        return total / len(self.layers)

    def _generator_terms(self, a, b, seed=None):
        c = self.config
        n = tf.shape(a)[0]
        if seed is None:
            seed = tf.stack([tf.constant(c.seed, tf.int32), tf.cast(self.step, tf.int32)])
        real = tf.concat([a, b], 0) if c.nce_idt else a
        out, real_features = self.G.call_with_activations(real)
        fake_b = out[:n]
        _, fake_features = self.G.call_with_activations(out)
        nce = self._nce([real, *real_features], [out, *fake_features], seed)
        terms = {"G_gan": losses.gan_loss(self.D_B(fake_b), True, c.gan_mode)}
        if c.nce_idt:
            terms["nce_A"] = 0.5 * c.lambda_nce * nce[:n]
            terms["nce_B"] = 0.5 * c.lambda_nce * nce[n:]
        else:
            terms["nce_A"] = c.lambda_nce * nce
        return {k: self._mean(v) for k, v in terms.items()}, fake_b

    def _generator_gradients(self, a, b, seed):
        with tf.GradientTape() as tape:
            terms, fake_b = self._generator_terms(a, b, seed)
            scaled = self.opt_G.scale_loss(tf.add_n(list(terms.values())))
        return tape.gradient(scaled, self.g_vars), terms, fake_b

    def _discriminator_terms(self, b, fake_b):
        mode = self.config.gan_mode
        score_real, score_fake = tf.split(self.D_B(tf.concat([b, fake_b], 0)), 2)
        return {"D_B": self._mean(0.5 * (losses.gan_loss(score_real, True, mode)
                                         + losses.gan_loss(score_fake, False, mode)))}

    def _discriminator_gradients(self, b, fake_b):
        with tf.GradientTape() as tape:
            terms = self._discriminator_terms(b, fake_b)
            scaled = self.opt_D.scale_loss(terms["D_B"])
        return tape.gradient(scaled, self.d_vars), terms

    def probe_losses(self, a, b) -> dict:
        g_terms, fake_b = self._generator_terms(a, b)
        return {**g_terms, **self._discriminator_terms(b, fake_b)}

    @property
    def state_variables(self) -> list:
        return [*self.G.weights, *self.D_B.weights, *self.head.weights,
                *self.opt_G.variables, *self.opt_D.variables]

    def _generator_step(self, a, b, seed):
        grads, terms, fake_b = self._g_grads(a, b, seed)
        self.opt_G.apply_gradients(zip(grads, self.g_vars))
        return terms, fake_b

    def _discriminator_step(self, b, fake_b):
        grads, terms = self._d_grads(b, fake_b)
        self.opt_D.apply_gradients(zip(grads, self.d_vars))
        return terms

    def _train_step(self, batch):
        a, b = batch
        seed = tf.stack([tf.constant(self.config.seed, tf.int32), tf.cast(self.step, tf.int32)])
        g_terms, fake_b = self.strategy.run(self._generator_step, args=(a, b, seed))
        d_terms = self.strategy.run(self._discriminator_step, args=(b, fake_b))
        self.step.assign_add(1)
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in {**g_terms, **d_terms}.items()}
