"""The networks of tfstyle: CycleGAN / CycleSE / CycleDA generators and the PatchGAN critic.

One place builds every architecture, as the official PyTorch CycleGAN's networks.py does.
Layer for layer these are the official networks (reflection padding, instance norm without
affine parameters, convs with biases, N(0, 0.02) init); padding is written out explicitly so
that a PyTorch checkpoint's weights give the same outputs here.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from tfstyle.core.layers import (
    CropTopLeft2D,
    InstanceNormalization,
    ReflectionPadding2D,
    conv2d,
    register,
    weight_init,
)
from tfstyle.cyclegan.blocks import BLOCKS


def _check_size(model, x, multiple):
    h, w = x.shape[1], x.shape[2]
    for name, d in (("height", h), ("width", w)):
        if d is not None and d % multiple:
            raise ValueError(
                f"{type(model).__name__} needs image {name} divisible by {multiple}, got "
                f"{h}x{w}; pad the image first (tfstyle.translate pads and crops back)")


@register
class RepeatUpsampling2D(keras.layers.Layer):
    """Nearest-neighbour 2x upsampling written as the channels repeated 4 times and
    depth_to_space: out[2i + di, 2j + dj] = in[i, j]. Unlike resize_nearest_neighbor its
    gradient compiles with XLA, and it exports to LiteRT as builtin CONCATENATION and
    DEPTH_TO_SPACE ops."""

    def call(self, x):
        return tf.nn.depth_to_space(ops.concatenate([x, x, x, x], axis=-1), 2)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, None if h is None else 2 * h, None if w is None else 2 * w, c)


@register
class ResnetGenerator(keras.Model):
    """CycleGAN's ResNet generator (Johnson et al.), with plain, SE or DA residual blocks.

    c7s1-ngf, d2ngf, d4ngf, n_blocks x R4ngf, u2ngf, ungf, c7s1-3, tanh:
      pad3 reflect, conv7x7 ngf, IN, ReLU                          [B, H, W, ngf]
      2 x (conv3x3 stride 2, zero pad 1, IN, ReLU)                 [B, H/4, W/4, 4ngf]
      n_blocks x block  (a registered block: "resnet", "se", "da")  [B, H/4, W/4, 4ngf]
      2 x (convT3x3 stride 2, pad 1, output_padding 1, IN, ReLU)   [B, H, W, ngf]
      pad3 reflect, conv7x7 output_channels, tanh                  [B, H, W, 3]
    Input and output in [-1, 1]; H and W divisible by 4. Defaults (ngf 64, 9 resnet blocks)
    have 11,378,179 parameters, as the official implementation.

    Options beyond the official architecture (docs/quality.md measures them):
    upsample="resize": each u-layer is a nearest-neighbour 2x resize, reflection pad 1 and a
    conv3x3 instead of the transposed convolution (Odena et al. 2016: no checkerboard
    patterns from uneven kernel overlap); residual=True: the output is the input plus the
    tanh head, clipped to [-1, 1], so that the generator starts as the identity and learns
    the change.
    """

    UPSAMPLING = ("transpose", "resize")

    def __init__(self, ngf=64, n_blocks=9, block="resnet", output_channels=3,
                 norm_affine=False, block_options=None, se_reduction=None, pam_reduction=None,
                 pam_kv_pool=None, pam_max_attention_size=None, upsample="transpose",
                 residual=False, **kwargs):
        super().__init__(**kwargs)
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {', '.join(BLOCKS)}, got {block!r}")
        if upsample not in self.UPSAMPLING:
            raise ValueError(f"upsample must be one of {', '.join(self.UPSAMPLING)}, got "
                             f"{upsample!r}")
        self.upsample, self.residual = upsample, bool(residual)
        self.ngf, self.n_blocks, self.block = int(ngf), int(n_blocks), block
        self.output_channels, self.norm_affine = int(output_channels), bool(norm_affine)
        # se_reduction and pam_*: the block options as keyword arguments (files saved by
        # tfstyle 0.1 carry them so); a block keeps only the options it takes.
        legacy = dict(se_reduction=se_reduction, pam_reduction=pam_reduction,
                      pam_kv_pool=pam_kv_pool, pam_max_attention_size=pam_max_attention_size)
        options = {**{k: v for k, v in legacy.items() if v is not None}, **(block_options or {})}
        self.block_type = BLOCKS[block]
        unknown = sorted(set(options) - set(self.block_type.option_names) - set(legacy))
        if unknown:
            raise ValueError(f"block {block!r} takes the options "
                             f"{', '.join(self.block_type.option_names) or '(none)'}; got {unknown}")
        self.block_options = {k: v for k, v in options.items()
                              if k in self.block_type.option_names}
        norm = lambda name: InstanceNormalization(affine=self.norm_affine, name=name)  # noqa: E731
        self.stem = [ReflectionPadding2D(3), conv2d(self.ngf, 7, name="stem_conv"),
                     norm("stem_norm"), keras.layers.ReLU()]
        self.down = []
        for i, mult in enumerate((2, 4)):
            self.down += [keras.layers.ZeroPadding2D(1),
                          conv2d(self.ngf * mult, 3, strides=2, name=f"down{i + 1}_conv"),
                          norm(f"down{i + 1}_norm"), keras.layers.ReLU()]
        self.blocks = [self.block_type.make(self.ngf * 4, self.block_options, self.norm_affine,
                                            f"block{i + 1}") for i in range(self.n_blocks)]
        self.up = []
        for i, mult in enumerate((2, 1)):
            if upsample == "resize":
                self.up += [RepeatUpsampling2D(name=f"up{i + 1}_resize"),
                            ReflectionPadding2D(1),
                            conv2d(self.ngf * mult, 3, name=f"up{i + 1}_conv"),
                            norm(f"up{i + 1}_norm"), keras.layers.ReLU()]
                continue
            self.up += [
                keras.layers.Conv2DTranspose(
                    self.ngf * mult, 3, strides=2, padding="valid",
                    kernel_initializer=weight_init(), name=f"up{i + 1}_conv"),
                # PyTorch's padding=1, output_padding=1 is the VALID output minus its first
                # row and column: output 2H x 2W.
                CropTopLeft2D(1),
                norm(f"up{i + 1}_norm"), keras.layers.ReLU()]
        self.head = [ReflectionPadding2D(3),
                     conv2d(self.output_channels, 7, name="head_conv"),
                     keras.layers.Activation("tanh", dtype="float32", name="tanh")]

    def build(self, input_shape=(None, None, None, 3)):
        shape = tuple(input_shape)
        for layer in self.stem + self.down + self.blocks + self.up + self.head:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.built = True

    def call(self, x):
        _check_size(self, x, 4)
        inputs = x
        for layer in self.stem + self.down + self.blocks + self.up + self.head:
            x = layer(x)
        return self._output(inputs, x)

    def _output(self, inputs, head):
        if not self.residual:
            return head
        return ops.clip(ops.cast(inputs, head.dtype) + head, -1.0, 1.0)

    def call_with_activations(self, x):
        """(output, activations) for feature distillation: activations[0] is the bottleneck
        after the downsampling and activations[i] the output of residual block i, each
        [B, H/4, W/4, 4ngf]; the output is call(x)'s."""
        _check_size(self, x, 4)
        inputs = x
        for layer in self.stem + self.down:
            x = layer(x)
        activations = [x]
        for block in self.blocks:
            x = block(x)
            activations.append(x)
        for layer in self.up + self.head:
            x = layer(x)
        return self._output(inputs, x), activations

    def get_config(self):
        return {**super().get_config(), "ngf": self.ngf, "n_blocks": self.n_blocks,
                "block": self.block, "output_channels": self.output_channels,
                "norm_affine": self.norm_affine, "block_options": dict(self.block_options),
                "upsample": self.upsample, "residual": self.residual}


@register
class PatchDiscriminator(keras.Model):
    """PatchGAN discriminator (Isola et al.): 70x70 receptive field with n_layers = 3.

    C64 (no norm) - C128 - C256 (conv4x4 stride 2, zero pad 1) - C512 (stride 1) - conv4x4
    stride 1 to 1 channel; LeakyReLU 0.2 and instance norm between. Output: raw scores
    (no sigmoid), [B, H/8 - 2, W/8 - 2, 1] for n_layers = 3, i.e. 30x30 at 256x256.
    Defaults have 2,764,737 parameters.
    """

    def __init__(self, ndf=64, n_layers=3, norm_affine=False, **kwargs):
        super().__init__(**kwargs)
        self.ndf, self.n_layers, self.norm_affine = int(ndf), int(n_layers), bool(norm_affine)
        pad = keras.layers.ZeroPadding2D
        act = lambda: keras.layers.LeakyReLU(negative_slope=0.2)  # noqa: E731
        self.body = [pad(1), conv2d(self.ndf, 4, strides=2, name="conv0"), act()]
        for n in range(1, self.n_layers + 1):
            stride = 2 if n < self.n_layers else 1
            self.body += [pad(1),
                          conv2d(self.ndf * min(2 ** n, 8), 4, strides=stride, name=f"conv{n}"),
                          InstanceNormalization(affine=self.norm_affine, name=f"norm{n}"),
                          act()]
        self.body += [pad(1), conv2d(1, 4, name="score"),
                      keras.layers.Activation("linear", dtype="float32", name="out")]

    def build(self, input_shape=(None, None, None, 3)):
        shape = tuple(input_shape)
        for layer in self.body:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.built = True

    def call(self, x):
        for layer in self.body:
            x = layer(x)
        return x

    def get_config(self):
        return {**super().get_config(), "ndf": self.ndf, "n_layers": self.n_layers,
                "norm_affine": self.norm_affine}


def count_params(model, input_shape=(1, 64, 64, 3)):
    """Number of weights of `model`, building it on `input_shape` first if needed."""
    if not model.built:
        model.build(input_shape)
    return int(sum(ops.size(w) for w in model.weights))
