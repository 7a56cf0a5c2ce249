"""Attention-aware multi-stroke stylization with a trained AttentionAutoencoder: the AAMS
test-time pipeline in the order of the official code (`AAMS.transfer`), with the seed's CBAM
attention and its foreground/background goal.

For a content image x_c and a style image x_s (RGB uint8):

  1. f_c = E(x_c)[cut];  f_s = E(x_s)[cut]          (no attention on the style, as AAMS)
  2. Whitening: C_hat = whiten(f_c);  S_hat = whiten(f_s)
  3. Attention on the whitened content: A_hat, o = attend(C_hat)
     (CBAM: A_hat = C_hat + F''; self: the IN + self-attention of training, which on
     whitened features is AAMS's C_hat * o + C_hat). attention_on="features" instead
     attends before whitening: A_c, o = attend(f_c), A_hat = whiten(A_c)
  4. a = attention_map(o) in [0, 1], [h, w]: AAMS's filter and smoothing kernel (zeros for
     attention="none")
  5. Multi-scale style swap of A_hat against S_hat resized by beta_i = 2^(-(k-2-i)/2),
     i = 0..k-2 (k = `strokes`; k = 4: 1/2, 1/sqrt2, 1) and zero-padded (every style
     position a patch centre), plus A_hat itself: k strokes
  6. Multi-stroke fusion: F = sum_k w_k F_k, w = softmax_k(theta (1 - |a - c_k|)),
     c = k-means(a) (80 iterations)
  7. Blend with the attended content, then colour: f = colour(alpha F + (1 - alpha) A_hat)
     with f_s's covariance and mean (AAMS's inter_weight, before the colouring)
  8. y = D(f), clipped to [0, 255]
  9. region: "all" -> y;  "foreground" -> y where m, D(A_c) (or the content) elsewhere;
     "background" -> the opposite; m = bilinear_upsample(a) >= mask_threshold, and
     A_c = attend(f_c) (unwhitened) is what the auto-encoder reconstructs.

Sizes and memory: the content is resized so its longer side is at most `max_size` (800, as
AAMS), the style so its shorter side is `style_size` (512) and then centre-cropped to at most
`style_crop` (448) a side, as AAMS's frozen graph; both are reflection-padded to a multiple
of the encoder's downsampling and cropped back. The output has the working size of the
content. The N^2 parts are bounded, not tiled: the style-swap correlation volume is
computed in chunks of at most `max_swap_entries` floats (tfstyle.style.swap), and AAMS
self-attention in query chunks of at most the model's max_attention_entries. Whitening and
colouring are C x C (at most 512 x 512).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from absl import logging

from tfstyle.core.config import Config, setting
from tfstyle.core.images import resize
from tfstyle.style import fusion, swap, wct
from tfstyle.style.autoencoder import AttentionAutoencoder, downsampling

REGIONS = ("all", "foreground", "background")
#: Where the attention module runs at test time: on the whitened content (AAMS) or on the
#: encoder's features before whitening (ours: independent of the whitening's precision).
ATTENTION_INPUTS = ("whitened", "features")
UNSTYLIZED = ("decoded", "original")


@dataclass
class StylizeOptions(Config):
    """Settings of one stylization; `python -m tfstyle.stylize` and `python -m
    export.generators` (which bakes them into style-transfer models) have a flag for each."""
    alpha: float = setting(1.0, "AAMS's inter_weight: the fused strokes blended with the "
                           "attended whitened content before colouring, alpha * fused + "
                           "(1 - alpha) * content (0: a plain WCT of the content).", min=0,
                           max=1)
    strokes: int = setting(4, "Multi-stroke fusion levels k: k - 1 style-swap scales (1/2, "
                           "1/sqrt2, 1 for k = 4) plus the content.", min=1)
    patch_size: int = setting(5, "Style-swap patch side (odd).", min=1)
    theta: float = setting(50.0, "Sharpness of the fusion weights.", above=0)
    attention_on: str = setting("whitened", "Input of the attention module: the whitened "
                                "content (AAMS) or the encoder's features, whitened after the "
                                "attention (keeps a LiteRT export, whose whitening is "
                                "approximate, closer to the reference).",
                                choices=ATTENTION_INPUTS)
    smoothing: str = setting("aams", "Smoothing kernel of the attention map: aams (a 3x3 "
                             "kernel drawn as AAMS draws it, from --smoothing_seed) or box "
                             "(1/9 everywhere, the expectation of those draws).",
                             choices=fusion.SMOOTHINGS)
    smoothing_seed: int = setting(0, "Seed of the AAMS smoothing kernel's draw (AAMS draws "
                                  "a new one for every image).", min=0)
    region: str = setting("all", "What to stylize: all, foreground (the salient object of the "
                          "attention mask) or background.", choices=REGIONS)
    mask_threshold: float = setting(0.5, "Foreground = upsampled attention map >= this (in "
                                    "[0, 1]).", min=0, max=1)
    unstylized: str = setting("decoded", "What the region left unstylized shows: the content "
                              "decoded by the auto-encoder, or the original content pixels.",
                              choices=UNSTYLIZED)
    max_size: int = setting(800, "Cap on the content's longer side; larger contents are "
                            "downscaled.", min=16)
    style_size: int = setting(512, "The style's shorter side (AAMS: 512).", min=16)
    style_crop: int = setting(448, "Centre-crop the resized style to at most this many pixels "
                              "a side (AAMS: 448 x 448); 0 keeps the whole style.", min=0)
    max_swap_entries: int = setting(swap.DEFAULT_MAX_SWAP_ENTRIES, "Largest chunk of the "
                                    "style-swap correlation volume held at once (floats).",
                                    min=1)

    def validate(self):
        self.need(self.patch_size % 2 == 1, "patch_size", "must be a positive odd number")


@dataclass
class StylizeResult:
    image: np.ndarray            # uint8 [H, W, 3]: the output (region applied)
    stylized: np.ndarray         # uint8 [H, W, 3]: the whole image stylized
    content: np.ndarray          # uint8 [H, W, 3]: the content at working size
    content_decoded: np.ndarray  # uint8 [H, W, 3]: D(A_c), the content reconstructed
    attention: np.ndarray        # float32 [H, W] in [0, 1]: the attention map, upsampled
    mask: np.ndarray | None      # bool [H, W]: the stylized region (None for region=all)
    fusion_weights: np.ndarray   # float32 [h, w, k]
    centroids: np.ndarray        # float32 [k]


def fit_size(shape, longest: int) -> tuple[int, int]:
    """(height, width) with the longer side at most `longest` (shrunk, aspect kept)."""
    h, w = shape[:2]
    scale = longest / max(h, w)
    if scale >= 1:
        return h, w
    return max(1, round(h * scale)), max(1, round(w * scale))


def style_input(style: np.ndarray, size: int, crop: int) -> np.ndarray:
    """The style image as AAMS feeds it (`preprocessing_for_eval`): resized so its shorter
    side is `size` (the longer one floor(longer * size / shorter)), then the centre
    min(crop, side) pixels of each side (crop 0: no crop)."""
    h, w = style.shape[:2]
    scale = size / min(h, w)
    nh, nw = (size, max(1, int(w * scale))) if h <= w else (max(1, int(h * scale)), size)
    style = resize(style, (nh, nw))
    if crop:
        ch, cw = min(crop, nh), min(crop, nw)
        top, left = (nh - ch) // 2, (nw - cw) // 2
        style = style[top:top + ch, left:left + cw]
    return style


def _pad_to(x: np.ndarray, multiple: int) -> np.ndarray:
    h, w = x.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    if not (ph or pw):
        return x
    mode = "reflect" if h > ph and w > pw else "edge"
    return np.pad(x, [(0, ph), (0, pw), (0, 0)], mode=mode)


def to_uint8(x) -> np.ndarray:
    return np.clip(np.rint(np.asarray(x)), 0, 255).astype(np.uint8)


@dataclass
class StyleBank:
    """What one style image contributes to a stylization (steps 2, 5 and 7 for the style):
    its colouring transform E_s diag(d_s^1/2) E_s^T [C, C] and mean mu_s [C], and its
    whitened feature map resized for each style-swap scale and zero-padded by
    patch_size // 2 (`swap.style_pyramid`), coarse to fine."""

    colour_transform: tf.Tensor
    mean: tf.Tensor
    pyramid: list


def style_bank(style_features, strokes: int = 4, patch_size: int = 5) -> StyleBank:
    """The StyleBank of a style's bottleneck features [Hs, Ws, C] (eigen-decompositions in
    float64)."""
    transform, mean = wct.colouring(style_features)
    pyramid = swap.style_pyramid(wct.whiten(style_features), swap.stroke_scales(strokes),
                                patch_size)
    return StyleBank(transform, mean, pyramid)


@dataclass
class StyledFeatures:
    blended: tf.Tensor     # [h, w, C]: colour(alpha F + (1 - alpha) A_hat), the decoder's input
    content: tf.Tensor     # [h, w, C]: A_c = attend(f_c), what reconstructs the content
    attention: tf.Tensor   # [h, w] in [0, 1]: the attention map (zeros without attention)
    weights: tf.Tensor     # [h, w, k]: fusion weights
    centroids: tf.Tensor   # [k]: k-means centroids of the attention map


def stylize_features(model: AttentionAutoencoder, content_features, bank: StyleBank,
                     options: StylizeOptions, whitening: str = "eigh") -> StyledFeatures:
    """Steps 2-7 of the module docstring for one content's bottleneck features
    [1, h, w, C], in TensorFlow operations that also trace into a graph (the exported
    models), in AAMS's order: whitening (`whitening`: "eigh", or "newton_schulz" for builtin
    LiteRT operators only), attention on the whitened content, the attention map,
    multi-scale style swap, fusion, the blend and the colouring."""
    a_c, out_c = model.attend(content_features, training=False)
    if options.attention_on == "whitened":
        content_hat = wct.whiten(content_features[0], method=whitening)
        attended, out = model.attend(content_hat[None], training=False)
        attended = attended[0]
    else:
        attended, out = wct.whiten(a_c[0], method=whitening), out_c
    if out is None:
        attention = tf.zeros(tf.shape(attended)[:2])
    else:
        kernel = fusion.smoothing_kernel(options.smoothing, options.smoothing_seed)
        attention = fusion.attention_map(out[0], kernel)
    strokes = swap.swap_strokes(attended, bank.pyramid, options.patch_size,
                               options.max_swap_entries)
    fused, weights, centroids = fusion.multi_stroke_fusion(strokes, attention, options.theta)
    mixed = options.alpha * fused + (1.0 - options.alpha) * attended
    blended = wct.apply_colouring(mixed, bank.colour_transform, bank.mean)
    return StyledFeatures(blended, a_c[0], attention, weights, centroids)


def region_composite(stylized, keep, attention, region: str, mask_threshold: float = 0.5):
    """(image, mask): `stylized` where the region's mask m holds, `keep` elsewhere;
    m = attention >= mask_threshold ("foreground") or its complement ("background").
    Images [H, W, 3], attention [H, W]; numpy or tensors (TensorFlow operations)."""
    if region not in ("foreground", "background"):
        raise ValueError(f"--region={region!r}: must be foreground or background here")
    mask = tf.convert_to_tensor(attention) >= mask_threshold
    if region == "background":
        mask = tf.logical_not(mask)
    return tf.where(mask[..., None], stylized, keep), mask


class Stylizer:
    """Stylizes content images with a trained AttentionAutoencoder (see the module docstring)."""

    def __init__(self, model: AttentionAutoencoder):
        self.model = model
        self.multiple = downsampling(model.cut)

    def _bottleneck(self, image: np.ndarray) -> tf.Tensor:
        x = _pad_to(image.astype(np.float32), self.multiple)
        return self.model.encode(x[None])[self.model.cut]

    def _decode(self, features, size) -> np.ndarray:
        h, w = size
        return to_uint8(self.model.decode(features[None])[0, :h, :w].numpy())

    def bank(self, style: np.ndarray, options: StylizeOptions | None = None) -> StyleBank:
        """The StyleBank of a style image (RGB uint8) prepared by `style_input`."""
        o = options or StylizeOptions()
        style = style_input(style, o.style_size, o.style_crop)
        return style_bank(self._bottleneck(style)[0], o.strokes, o.patch_size)

    def __call__(self, content: np.ndarray, style, options: StylizeOptions | None = None
                 ) -> StylizeResult:
        """content: RGB uint8 [H, W, 3]; style: RGB uint8 [Hs, Ws, 3], or the StyleBank of
        one (`bank`) -> StylizeResult at the content's working size."""
        o = options or StylizeOptions()
        if o.region != "all" and self.model.attention == "none":
            raise ValueError(f"--region={o.region}: the model has no attention module "
                             "(attention='none'); use --region=all or a cbam/self model")
        bank = style if isinstance(style, StyleBank) else self.bank(style, o)
        content = resize(content, fit_size(content.shape, o.max_size))
        size = content.shape[:2]
        f_c = self._bottleneck(content)
        finest = bank.pyramid[-1].shape if bank.pyramid else f_c.shape[1:]
        logging.info("style swap: content %s, style %s, %d scales; full correlation volume "
                     "%s entries, computed in chunks of at most %s", f_c.shape[1:3],
                     finest[:2], len(bank.pyramid),
                     f"{swap.entries(f_c.shape[1:], finest, o.patch_size):,}",
                     f"{o.max_swap_entries:,}")
        styled = stylize_features(self.model, f_c, bank, o)
        stylized = self._decode(styled.blended, size)
        decoded = self._decode(styled.content, size)
        padded = (size[0] + (-size[0] % self.multiple), size[1] + (-size[1] % self.multiple))
        att_image = fusion.resize_map(styled.attention, padded).numpy()[:size[0], :size[1]]
        att_image = np.clip(att_image, 0.0, 1.0).astype(np.float32)

        result = StylizeResult(image=stylized, stylized=stylized, content=content,
                               content_decoded=decoded, attention=att_image, mask=None,
                               fusion_weights=styled.weights.numpy(),
                               centroids=styled.centroids.numpy())
        return with_region(result, o.region, o.mask_threshold, o.unstylized)


def with_region(result: StylizeResult, region: str, mask_threshold: float = 0.5,
                unstylized: str = "decoded") -> StylizeResult:
    """`result` with its image restricted to `region` (`region_composite`): stylized where
    the mask holds, else the content decoded (or the original content). region="all" gives
    the stylized image, mask None."""
    if region == "all":
        return dataclasses.replace(result, image=result.stylized, mask=None)
    if region not in REGIONS:
        raise ValueError(f"--region={region!r}: must be one of {', '.join(REGIONS)}")
    keep = result.content_decoded if unstylized == "decoded" else result.content
    image, mask = region_composite(result.stylized, keep, result.attention, region,
                                   mask_threshold)
    return dataclasses.replace(result, image=image.numpy(), mask=mask.numpy())


def attention_image(attention: np.ndarray) -> np.ndarray:
    """An attention map [H, W] in [0, 1] as a grey RGB uint8 image."""
    grey = to_uint8(np.asarray(attention) * 255.0)
    return np.repeat(grey[..., None], 3, axis=-1)


def options_from(values: dict) -> StylizeOptions:
    """StylizeOptions from a dict holding (at least) its field names."""
    return StylizeOptions(**{f.name: values[f.name] for f in dataclasses.fields(StylizeOptions)
                             if f.name in values})
