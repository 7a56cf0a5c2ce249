"""Residual blocks of the CycleGAN-family generator, and the registry that names them.

`BLOCKS` maps a block name (the `--block` flag, `ResnetGenerator(block=...)`) to its class
and the label reports and tables show. Everything that lists block types reads it: the
generator, `python -m tfstyle.params`, the evaluation report, the benchmarks and the tests.
A new block type is one class here with `@block_type(...)`: its constructor takes
`(dim, <options>, norm_affine=False, **kwargs)`; the options (keyword arguments with
defaults) reach it from `ResnetGenerator(block_options={...})`, and the CycleGAN trainer
fills them from the run-config fields of the same names.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import keras

from tfstyle.core.layers import (
    InstanceNormalization,
    ReflectionPadding2D,
    conv2d,
    register,
)
from tfstyle.cyclegan.attention import (
    DEFAULT_MAX_ATTENTION_SIZE,
    ChannelAttention,
    PositionAttention,
    SqueezeExcitation,
)


@dataclass(frozen=True)
class BlockType:
    """A registered residual block: its class, the model name it makes (CycleGAN, CycleSE,
    ...) and a one-line description."""
    name: str
    cls: type
    label: str
    description: str

    @property
    def option_names(self) -> tuple[str, ...]:
        """The block's own options: its constructor's keyword arguments after `dim`."""
        skip = {"self", "dim", "norm_affine", "kwargs"}
        return tuple(p for p in inspect.signature(self.cls.__init__).parameters if p not in skip)

    def make(self, dim: int, options: dict, norm_affine: bool, name: str):
        return self.cls(dim, norm_affine=norm_affine, name=name,
                        **{k: v for k, v in options.items() if k in self.option_names})


BLOCKS: dict[str, BlockType] = {}


def block_type(name: str, label: str, description: str):
    """Class decorator: register a residual block (also for Keras serialization)."""
    def add(cls):
        if name in BLOCKS:
            raise ValueError(f"block type {name!r} is registered twice")
        BLOCKS[name] = BlockType(name, register(cls), label, description)
        return cls
    return add


@block_type("resnet", "CycleGAN", "plain residual block (Johnson et al.; the official CycleGAN)")
class ResnetBlock(keras.layers.Layer):
    """CycleGAN residual block: y = x + R(x), no activation after the addition.

    R(x) = IN(conv3x3(pad1(ReLU(IN(conv3x3(pad1(x)))))))  (reflection padding)
    Shapes: [B, H, W, dim] -> [B, H, W, dim].
    """

    def __init__(self, dim, norm_affine=False, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.norm_affine = bool(norm_affine)
        self.branch = self.branch_layers()

    def branch_layers(self) -> list:
        """The layers of the residual branch R, in order (a block type with other
        convolutions overrides this)."""
        return [
            ReflectionPadding2D(1), conv2d(self.dim, 3, name="conv1"),
            InstanceNormalization(affine=self.norm_affine, name="norm1"),
            keras.layers.ReLU(),
            ReflectionPadding2D(1), conv2d(self.dim, 3, name="conv2"),
            InstanceNormalization(affine=self.norm_affine, name="norm2"),
        ]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.branch:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def residual(self, x):
        """R(x), the residual branch."""
        for layer in self.branch:
            x = layer(x)
        return x

    def call(self, x):
        return x + self.residual(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "norm_affine": self.norm_affine}


@block_type("se", "CycleSE", "squeeze-and-excitation on the residual branch (caricature seed)")
class SEResnetBlock(ResnetBlock):
    """CycleSE's SE-residual block: y = x + SE(R(x)).

    The squeeze-and-excitation gate (reduction r = 16) rescales the residual branch's channels
    before the addition. Shapes: [B, H, W, dim] -> [B, H, W, dim].
    """

    def __init__(self, dim, se_reduction=16, norm_affine=False, **kwargs):
        super().__init__(dim, norm_affine=norm_affine, **kwargs)
        self.se_reduction = int(se_reduction)
        self.se = SqueezeExcitation(self.dim, self.se_reduction, name="se")

    def build(self, input_shape):
        super().build(input_shape)
        self.se.build(input_shape)

    def call(self, x):
        return x + self.se(self.residual(x))

    def get_config(self):
        return {**super().get_config(), "se_reduction": self.se_reduction}


@block_type("da", "CycleDA", "DANet position + channel attention on the residual branch (caricature seed)")
class DAResnetBlock(ResnetBlock):
    """CycleDA's DA-residual block: y = x + (PAM(R(x)) + CAM(R(x))) / 2.

    DANet's position (PAM) and channel (CAM) attention modules both read the residual branch.
    DANet fuses its two branches by a sum; we take their mean, so that with DANet's gamma = 0
    initialisation the block starts as the plain residual block (the seed's figure shows the
    two modules side by side on the branch and gives no fusion weight).
    Shapes: [B, H, W, dim] -> [B, H, W, dim].
    """

    def __init__(self, dim, pam_reduction=8, pam_kv_pool=1,
                 pam_max_attention_size=DEFAULT_MAX_ATTENTION_SIZE, norm_affine=False,
                 **kwargs):
        super().__init__(dim, norm_affine=norm_affine, **kwargs)
        self.pam_reduction = int(pam_reduction)
        self.pam_kv_pool = int(pam_kv_pool)
        self.pam_max_attention_size = int(pam_max_attention_size)
        self.pam = PositionAttention(self.dim, self.pam_reduction, self.pam_kv_pool,
                                     self.pam_max_attention_size, name="pam")
        self.cam = ChannelAttention(name="cam")

    def build(self, input_shape):
        super().build(input_shape)
        self.pam.build(input_shape)
        self.cam.build(input_shape)

    def call(self, x):
        r = self.residual(x)
        return x + 0.5 * (self.pam(r) + self.cam(r))

    def get_config(self):
        return {**super().get_config(), "pam_reduction": self.pam_reduction,
                "pam_kv_pool": self.pam_kv_pool,
                "pam_max_attention_size": self.pam_max_attention_size}



#: Standard deviation of the depthwise kernels: 1/3 = 1/sqrt(fan-in 9), unit gain per channel.
#: With the N(0, 0.02) of the other convolutions (fan-in 9 here, not 9 x channels) the branch
#: would enter each instance norm ~100x smaller than a full convolution's; the float model does
#: not mind (the norm rescales), but int8 quantizes the norm's variance per tensor and could not
#: resolve it (a distilled student's int8 file fell to 12 dB against its Keras model at 256 px).
DEPTHWISE_INIT_STDDEV = 1.0 / 3.0


def depthwise_conv3x3(name: str):
    """A 3x3 depthwise convolution (one filter per channel, no bias: the pointwise
    convolution after it has one), weights N(0, DEPTHWISE_INIT_STDDEV)."""
    return keras.layers.DepthwiseConv2D(
        3, padding="valid", use_bias=False, name=name,
        depthwise_initializer=keras.initializers.RandomNormal(0.0, DEPTHWISE_INIT_STDDEV))


@block_type("mobile", "CycleMobile", "depthwise-separable convolutions on the residual branch "
            "(the mobile generator of GAN Compression)")
class MobileResnetBlock(ResnetBlock):
    """The plain residual block with each 3x3 convolution made depthwise-separable:
    y = x + R(x), no activation after the addition,

    R(x) = IN(pw2(dw2(pad1(ReLU(IN(pw1(dw1(pad1(x)))))))))

    dw: 3x3 depthwise convolution (reflection padding, no bias, weights N(0, 1/3)); pw: 1x1
    convolution dim -> dim with bias (N(0, 0.02)); IN: instance norm as in the plain block. Per pixel this is 9 * dim + dim^2
    multiply-adds per convolution instead of 9 * dim^2 (8.7x fewer at dim 256, 8.4x at 128).
    Shapes: [B, H, W, dim] -> [B, H, W, dim]; LiteRT: DEPTHWISE_CONV_2D and CONV_2D.
    """

    def branch_layers(self) -> list:
        return [
            ReflectionPadding2D(1), depthwise_conv3x3("dw1"), conv2d(self.dim, 1, name="pw1"),
            InstanceNormalization(affine=self.norm_affine, name="norm1"),
            keras.layers.ReLU(),
            ReflectionPadding2D(1), depthwise_conv3x3("dw2"), conv2d(self.dim, 1, name="pw2"),
            InstanceNormalization(affine=self.norm_affine, name="norm2"),
        ]


@block_type("mobile_se", "CycleMobileSE", "depthwise-separable residual branch with "
            "squeeze-and-excitation (mobile + CycleSE)")
class MobileSEResnetBlock(SEResnetBlock, MobileResnetBlock):
    """CycleSE's gate on the mobile block's branch: y = x + SE(R_mobile(x)), SE reduction 16
    (at dim 128: 2 * 128 * 8 weights and 136 biases, a global mean and a [B, 1, 1, dim]
    product per block; negligible against the branch). Shapes: [B, H, W, dim] -> the same.
    """
