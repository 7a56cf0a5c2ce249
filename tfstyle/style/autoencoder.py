"""The attention-aware VGG19 auto-encoder of the CBAM style-transfer seed (and of AAMS).

    x (RGB [0, 255]) --VGG19 trunk up to `cut` (frozen)--> f [B, h, w, C]
      --attention--> A [B, h, w, C] --mirror decoder--> x_hat (RGB, about [0, 255])

`cut` is relu3_1 (5 conv layers, C = 256, h = H/4), relu4_1 (9 layers, C = 512, h = H/8) or
relu5_1 (13 layers, C = 512, h = H/16): the seed's three encoders ("conv3_1/4_1/5_1": a
Keras VGG conv layer includes its ReLU, so the features are the rectified ones).

Attention (`attention=`):
  "cbam"  the seed (eqs. 1-3): F' = Mc(f) * f, F'' = Ms(F') * F', A = f + F''.
          The attention output o = F'' feeds L_att and the test-time attention map.
  "self"  AAMS (Yao et al. 2019, official code): n = IN(f) (mean mu, std sigma per channel),
          o = softmax(g(n) k(n)^T) h(n), A = sigma * (n * o + n) + mu (back to f's statistics,
          as the official code's AdaIN re-colouring).
  "none"  A = f (a plain WCT auto-encoder, for comparison).

Decoder: the encoder mirrored, conv3x3 (reflection padding) + ReLU per VGG conv, nearest x2
upsampling per pooling, a last conv to 3 channels without activation, plus 127.5 so an
untrained decoder starts at mid-grey. The AAMS code has zero padding, AdaIN skip connections
from the encoder and Xavier init; we follow the issue (reflection padding, no skips) and keep
Xavier (glorot) init. `width` scales the decoder's hidden channels (1.0: the exact mirror;
smaller only for tests and CPU demos).

Perceptual-loss layers (`loss_layers=`, default relu1_1 .. cut): AAMS compares relu1_1 ..
relu4_1 whatever the cut. Layers deeper than the cut (relu4_1 for a relu3_1 encoder) come
from a second frozen VGG19 trunk, `loss_encoder`, whose layers up to the cut hold the
encoder's weights. It serves training only: the saved model leaves it out.

The model directory written by training:
    MODEL_DIR/autoencoder/autoencoder.keras   the stylization model (encoder weights included)
    MODEL_DIR/autoencoder/info.json           cut, attention, width, VGG weights used, step, ...
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
from keras import ops

from tfstyle.core.files import atomic_path, write_json_atomic
from tfstyle.core.keras_files import load_keras_file
from tfstyle.core.layers import NearestUpsampling2D, ReflectionPadding2D, register
from tfstyle.core.vgg import (
    VGG19_CHANNELS,
    keras_layer_name,
    layer_channels,
    layers_up_to,
    vgg19_feature_extractor,
)
from tfstyle.style.attention import CBAM, DEFAULT_MAX_ATTENTION_ENTRIES, SelfAttention

CUTS = ("relu3_1", "relu4_1", "relu5_1")
ATTENTIONS = ("cbam", "self", "none")
#: Layers the perceptual loss may compare (any of them, whatever the cut).
LOSS_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
#: AAMS's perceptual-loss layers (official code), whatever the encoder's cut.
AAMS_LOSS_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")

#: Parameters of keras.applications.VGG19(include_top=True): the 16 convs + fc6, fc7, fc8.
FULL_VGG19_PARAMETERS = 143_667_240
#: Table 1 of the seed (whole model): (cut, attention) -> parameters. "self" is AAMS.
SEED_PARAMETERS = {
    ("relu3_1", "self"): 145_579_187, ("relu3_1", "cbam"): 145_432_793,
    ("relu4_1", "self"): 155_167_859, ("relu4_1", "cbam"): 154_579_865,
    ("relu5_1", "self"): 183_485_555, ("relu5_1", "cbam"): 182_897_561,
}

def _check_cut(cut):
    if cut not in CUTS:
        raise ValueError(f"cut must be one of {', '.join(CUTS)}, got {cut!r}")


def cut_depth(cut: str) -> int:
    """Block of the cut: relu3_1 -> 3 (the trunk has depth - 1 poolings)."""
    _check_cut(cut)
    return int(cut[4])


def downsampling(cut: str) -> int:
    """Input side / feature side: 4, 8 or 16. Inputs must be multiples of it."""
    return 2 ** (cut_depth(cut) - 1)


def feature_layers(cut: str) -> tuple[str, ...]:
    """The features the encoder returns: relu1_1 .. cut."""
    return tuple(f"relu{b}_1" for b in range(1, cut_depth(cut) + 1))


@register
class VGG19Encoder(keras.Model):
    """The frozen VGG19 convolutional trunk up to `cut`, input RGB in [0, 255] (Caffe
    preprocessing inside, see tfstyle.vgg).

    call(x [B, H, W, 3]) -> {"relu1_1": [B, H, W, 64], "relu2_1": [B, H/2, W/2, 128],
    "relu3_1": [B, H/4, W/4, 256], "relu4_1": [B, H/8, W/8, 512], "relu5_1": [B, H/16,
    W/16, 512]}, the entries up to `cut`.

    weights: "imagenet" (Keras cache or download; VGGWeightsUnavailableError otherwise), a
    local .h5/.keras path (FileNotFoundError when missing), "random" (quiet, tests) or None
    (random with a RuntimeWarning), exactly as tfstyle.vgg.load_vgg19.
    """

    def __init__(self, cut: str = "relu4_1", weights="imagenet", **kwargs):
        super().__init__(**kwargs)
        _check_cut(cut)
        self.cut = cut
        self.layer_names = feature_layers(cut)
        self.features = vgg19_feature_extractor(self.layer_names, weights=weights,
                                                name=f"vgg19_to_{cut}")
        self.features.trainable = False
        self.trainable = False

    @property
    def channels(self) -> int:
        return layer_channels(self.cut)

    def call(self, x):
        return self.features(x)

    def build(self, input_shape=None):
        self.built = True

    def get_config(self):
        # A saved encoder carries its weights in the file; rebuild it random and let the
        # loader fill them in (never download on load).
        return {**super().get_config(), "cut": self.cut, "weights": "random"}


def _decoder_plan(cut: str, width: float):
    """[(kind, filters, name)] of the mirror decoder, bottleneck first."""
    plan = []
    order = layers_up_to(keras_layer_name(cut))
    for i in range(len(order) - 1, -1, -1):
        name = order[i]
        if name.endswith("_pool"):
            plan.append(("up", None, f"up{name[5]}"))
            continue
        previous = [n for n in order[:i] if "_conv" in n]
        out = VGG19_CHANNELS[previous[-1]] if previous else 3
        if out != 3:
            out = max(1, int(round(out * width)))
        block, conv = name[5], name[-1]
        plan.append(("conv", out, f"inv_conv{block}_{conv}"))
    return plan


@register
class MirrorDecoder(keras.layers.Layer):
    """VGG19 trunk mirrored (AAMS decoder): [B, H/s, W/s, C_cut] -> RGB [B, H, W, 3], s =
    2^(depth-1). Per VGG conv (reverse order) reflection pad 1 + conv3x3 + ReLU (the mirror of
    conv1_1 has no ReLU and outputs 3 channels), per pooling nearest x2 upsampling; +127.5."""

    def __init__(self, cut: str = "relu4_1", width: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        _check_cut(cut)
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        self.cut, self.width = cut, float(width)
        self.steps = []
        for kind, filters, name in _decoder_plan(cut, self.width):
            if kind == "up":
                self.steps.append(NearestUpsampling2D(2, name=name))
            else:
                last = filters == 3
                self.steps.append(ReflectionPadding2D(1, name=f"{name}_pad"))
                self.steps.append(keras.layers.Conv2D(
                    filters, 3, padding="valid", activation=None if last else "relu",
                    kernel_initializer="glorot_uniform", name=name))

    def build(self, input_shape):
        shape = tuple(input_shape)
        for step in self.steps:
            step.build(shape)
            shape = step.compute_output_shape(shape)

    def call(self, x):
        for step in self.steps:
            x = step(x)
        return x + 127.5

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        s = downsampling(self.cut)
        return (b, None if h is None else h * s, None if w is None else w * s, 3)

    def get_config(self):
        return {**super().get_config(), "cut": self.cut, "width": self.width}


@register
class AttentionAutoencoder(keras.Model):
    """Frozen VGG19 encoder + attention module + mirror decoder (see the module docstring).

    call(x [B, H, W, 3] RGB [0, 255]) -> x_hat [B, H, W, 3]; H, W multiples of
    downsampling(cut). forward() also returns the features, A and the attention output.
    """

    def __init__(self, cut: str = "relu4_1", attention: str = "cbam",
                 encoder_weights="imagenet", width: float = 1.0, reduction: int = 16,
                 kernel_size: int = 7,
                 max_attention_entries: int = DEFAULT_MAX_ATTENTION_ENTRIES,
                 loss_layers=None, **kwargs):
        super().__init__(**kwargs)
        _check_cut(cut)
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)}, "
                             f"got {attention!r}")
        self.cut, self.attention = cut, attention
        self.width, self.reduction = float(width), int(reduction)
        self.kernel_size = int(kernel_size)
        self.max_attention_entries = int(max_attention_entries)
        self.encoder = VGG19Encoder(cut, encoder_weights, name="encoder")
        self._loss_layers = tuple(loss_layers or self.encoder.layer_names)
        unknown = [n for n in self._loss_layers if n not in LOSS_LAYERS]
        if unknown or not self._loss_layers:
            raise ValueError(f"loss_layers must be some of {', '.join(LOSS_LAYERS)}, "
                             f"got {loss_layers!r}")
        deepest = max(self._loss_layers, key=LOSS_LAYERS.index)
        self.loss_encoder = None
        if LOSS_LAYERS.index(deepest) > LOSS_LAYERS.index(cut):
            self.loss_encoder = VGG19Encoder(deepest, encoder_weights, name="loss_encoder")
            for layer in self.encoder.features.layers:  # the same trunk up to the cut
                if layer.weights:
                    self.loss_encoder.features.get_layer(layer.name).set_weights(
                        layer.get_weights())
        channels = self.encoder.channels
        if attention == "cbam":
            self.attention_module = CBAM(channels, self.reduction, self.kernel_size,
                                         name="cbam")
        elif attention == "self":
            self.attention_module = SelfAttention(channels, self.max_attention_entries,
                                                  name="self_attention")
        else:
            self.attention_module = None
        self.decoder = MirrorDecoder(cut, self.width, name="decoder")
        self.build((None, None, None, 3))

    @property
    def channels(self) -> int:
        return self.encoder.channels

    @property
    def loss_layers(self) -> tuple[str, ...]:
        """The layers of the perceptual loss (relu1_1 .. cut unless given)."""
        return self._loss_layers

    def build(self, input_shape=None):
        bottleneck = (None, None, None, self.channels)
        if self.attention_module is not None and not self.attention_module.built:
            self.attention_module.build(bottleneck)
        if not self.decoder.built:
            self.decoder.build(bottleneck)
        self.built = True

    def encode(self, x):
        """RGB [B, H, W, 3] -> {relu1_1 .. cut} features."""
        return self.encoder(x)

    def perceptual_features(self, x, features=None) -> dict:
        """RGB [B, H, W, 3] -> {loss layer: features}; `features` (x's encode()) is reused
        when every loss layer is within the cut."""
        if self.loss_encoder is not None:
            features = self.loss_encoder(x)
        elif features is None:
            features = self.encode(x)
        return {name: features[name] for name in self.loss_layers}

    def attend(self, f, training=None):
        """f [B, h, w, C] -> (A [B, h, w, C], o [B, h, w, C] or None): the decoder's input and
        the attention branch's output (F'' for CBAM, the self-attention o for AAMS)."""
        if self.attention == "cbam":
            refined = self.attention_module(f, training=training)
            return f + refined, refined
        if self.attention == "self":
            mean, variance = ops.moments(f, axes=[1, 2], keepdims=True)
            std = ops.sqrt(variance)
            normalised = (f - mean) / ops.sqrt(variance + 1e-5)
            o = self.attention_module(normalised)
            return std * (normalised * o + normalised) + mean, o
        return f, None

    def decode(self, a):
        """A [B, h, w, C] -> RGB [B, h*s, w*s, 3] (not clipped)."""
        return self.decoder(a)

    def forward(self, x, training=None) -> dict:
        """{"features": {relu1_1..cut}, "A": A, "attention": o or None, "x_hat": x_hat}."""
        features = self.encode(x)
        a, o = self.attend(features[self.cut], training=training)
        return {"features": features, "A": a, "attention": o, "x_hat": self.decode(a)}

    def call(self, x, training=None):
        return self.forward(x, training=training)["x_hat"]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (3,)

    def get_config(self):
        # No loss_layers: a saved model is for stylization (info.json records the loss).
        return {**super().get_config(), "cut": self.cut, "attention": self.attention,
                "encoder_weights": "random",  # the saved file holds the encoder's weights
                "width": self.width, "reduction": self.reduction,
                "kernel_size": self.kernel_size,
                "max_attention_entries": self.max_attention_entries}

    def without_loss_encoder(self) -> AttentionAutoencoder:
        """This model, or a copy of it without the training-only `loss_encoder` (same
        encoder, attention and decoder weights)."""
        if self.loss_encoder is None:
            return self
        copy = AttentionAutoencoder.from_config(self.get_config())
        for mine, theirs in ((self.encoder, copy.encoder), (self.decoder, copy.decoder),
                             (self.attention_module, copy.attention_module)):
            if mine is not None:
                theirs.set_weights(mine.get_weights())
        return copy


# --------------------------------------------------------------------------------------------
# Parameter counts
# --------------------------------------------------------------------------------------------


def _count(weights) -> int:
    return int(sum(int(np.prod(w.shape)) for w in weights))


def parameter_counts(model: AttentionAutoencoder) -> dict:
    """Weights per component: encoder, attention, decoder, total (all variables, as Keras
    count_params), and attention_trainable (without CBAM's 2 BatchNorm moving statistics)."""
    attention = model.attention_module
    counts = {
        "encoder": _count(model.encoder.weights),
        "attention": _count(attention.weights) if attention is not None else 0,
        "attention_trainable": _count(attention.trainable_weights) if attention is not None else 0,
        "decoder": _count(model.decoder.weights),
    }
    counts["total"] = counts["encoder"] + counts["attention"] + counts["decoder"]
    return counts


def parameter_table(width: float = 1.0) -> list[dict]:
    """Counts for every cut and attention type (random weights), with the seed's totals:
    rows of {cut, attention, encoder, attention, decoder, total, seed, seed_minus_vgg19}."""
    rows = []
    for cut in CUTS:
        for attention in ATTENTIONS:
            model = AttentionAutoencoder(cut, attention, encoder_weights="random", width=width)
            row = {"cut": cut, "attention_type": attention, **parameter_counts(model)}
            seed = SEED_PARAMETERS.get((cut, attention))
            row["seed"] = seed
            row["seed_minus_vgg19"] = None if seed is None else seed - FULL_VGG19_PARAMETERS
            rows.append(row)
            del model
    return rows


# --------------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------------

AUTOENCODER_DIR = "autoencoder"


def autoencoder_dir(model_dir) -> Path:
    return Path(model_dir) / AUTOENCODER_DIR


def save_autoencoder(model_dir, model: AttentionAutoencoder, info: dict) -> Path:
    """Write MODEL_DIR/autoencoder/autoencoder.keras (the model without its loss network)
    and info.json (each through a temporary file, so a reader never sees half a file).
    Returns the folder."""
    out = autoencoder_dir(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "autoencoder.keras") as tmp:
        model.without_loss_encoder().save(tmp)
    info = {"cut": model.cut, "attention": model.attention, "width": model.width,
            "reduction": model.reduction, "kernel_size": model.kernel_size, **info}
    write_json_atomic(out / "info.json", info)
    return out


def load_autoencoder(model_dir) -> tuple[AttentionAutoencoder, dict]:
    """(model, info) from MODEL_DIR/autoencoder/; FileNotFoundError naming what is missing."""
    folder = autoencoder_dir(model_dir)
    path, info_path = folder / "autoencoder.keras", folder / "info.json"
    remedy = "train one with python -m train.autoencoder --model_dir=..."
    if not info_path.is_file():
        raise FileNotFoundError(f"{info_path} not found: {model_dir} holds no trained attention "
                                f"auto-encoder ({remedy})")
    model = load_keras_file(path, "a trained attention auto-encoder", remedy)
    return model, json.loads(info_path.read_text())
