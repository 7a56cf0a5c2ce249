"""SavedModel of a generator for TF Serving, with two signatures.

`serving_default`
    images: float32 [batch, H, W, 3], RGB pixels in [0, 255], any H and W (at least 8)
    -> translated: float32 [batch, H', W', 3], RGB pixels in [0, 255] (clipped, not rounded)
`translate_bytes`
    image_bytes: string [batch], each an encoded JPEG, PNG, GIF (first frame) or BMP
    -> output_bytes: string [batch], each an encoded 8-bit RGB PNG (pixels rounded)
    Images in one batch may differ in size; each is translated on its own. TF Serving's REST
    API base64-encodes `output_bytes` because the name ends in `_bytes`.

Inside, an image is padded (reflection) to a multiple of 4 (of the model's `multiple`
attribute if it has one: 8 or 16 for a style-transfer model cut at relu4_1 / relu5_1, so the
image is padded once, as `tfstyle.stylize` pads it) and the output cropped back, so
H' x W' = H x W, except for an image over the size policy (`SizePolicy`): its longest side
over `max_side` or its pixel count over `max_pixels` (the attention limit of a CycleDA
generator). Such an image is downscaled, aspect kept (bilinear, antialiased; sides rounded
down to multiples of 4) and translated at that size (policy "resize", the default), or
refused with INVALID_ARGUMENT (policy "refuse"). Either way the server never runs the
generator on a map larger than the policy allows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfstyle.core.images import from_model_range, to_model_range

#: Smallest side the generators take: two stride-2 downsamplings then reflection padding 1.
MIN_SIDE = 8

SERVING_DEFAULT = "serving_default"
TRANSLATE_BYTES = "translate_bytes"
IMAGES_INPUT, IMAGES_OUTPUT = "images", "translated"
BYTES_INPUT, BYTES_OUTPUT = "image_bytes", "output_bytes"

#: TF Serving batching parameters written beside models.config (text protobuf).
DEFAULT_BATCHING = {
    "max_batch_size": 8,
    "batch_timeout_micros": 5000,
    "max_enqueued_batches": 64,
    "num_batch_threads": 4,
}


@dataclass(frozen=True)
class SizePolicy:
    """Largest image a served generator runs on; see the module docstring."""

    max_side: int = 1024
    max_pixels: int | None = None
    oversize: str = "resize"

    def __post_init__(self):
        if self.max_side < MIN_SIDE:
            raise ValueError(f"max_side must be at least {MIN_SIDE}, got {self.max_side}")
        if self.max_pixels is not None and self.max_pixels < MIN_SIDE * MIN_SIDE:
            raise ValueError(
                f"max_pixels must be at least {MIN_SIDE * MIN_SIDE}, got {self.max_pixels}")
        if self.oversize not in ("resize", "refuse"):
            raise ValueError(f"oversize must be 'resize' or 'refuse', got {self.oversize!r}")

    def scale(self, height: int, width: int) -> float:
        """Downscaling factor (1 when the image fits)."""
        scale = min(1.0, self.max_side / max(height, width))
        if self.max_pixels is not None:
            scale = min(scale, math.sqrt(self.max_pixels / (height * width)))
        return scale

    def fit(self, height: int, width: int) -> tuple[int, int]:
        """The size an image of height x width is translated at (same arithmetic as the
        serving graph, in float64)."""
        if min(height, width) < MIN_SIDE:
            raise ValueError(f"image of {height}x{width} is smaller than {MIN_SIDE} pixels")
        scale = self.scale(height, width)
        if scale >= 1.0:
            return height, width
        nh = max(MIN_SIDE, math.floor(height * scale / 4) * 4)
        nw = max(MIN_SIDE, math.floor(width * scale / 4) * 4)
        return nh, nw

    def as_dict(self) -> dict:
        return {"max_side": self.max_side, "max_pixels": self.max_pixels,
                "oversize": self.oversize, "min_side": MIN_SIDE}


def attention_pixel_limit(model) -> int | None:
    """Largest padded H*W that every position-attention layer of `model` accepts under its
    own `max_attention_size` (None for a model without position attention)."""
    from tfstyle.cyclegan.attention import PositionAttention

    limit = None
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if not isinstance(layer, PositionAttention):
            continue
        pool2 = layer.kv_pool ** 2
        # Queries N = H*W/16 at the bottleneck; the layer refuses N * (N // pool^2) > max.
        n = math.isqrt(layer.max_attention_size * pool2)
        while n * (n // pool2) > layer.max_attention_size:
            n -= 1
        pixels = 16 * n
        limit = pixels if limit is None else min(limit, pixels)
    return limit


def policy_for(model, max_side: int = 1024, max_pixels: int | None = None,
               oversize: str = "resize") -> SizePolicy:
    """The size policy for serving `model`: `max_side`, and the smaller of `max_pixels` and
    the model's own attention limit."""
    limit = attention_pixel_limit(model)
    if limit is not None:
        max_pixels = limit if max_pixels is None else min(max_pixels, limit)
    return SizePolicy(max_side=max_side, max_pixels=max_pixels, oversize=oversize)


def _target_size(height, width, policy: SizePolicy):
    """Graph version of SizePolicy.fit (after the min-side check): (nh, nw, oversize)."""
    import tensorflow as tf

    h = tf.cast(height, tf.float64)
    w = tf.cast(width, tf.float64)
    scale = tf.minimum(tf.constant(1.0, tf.float64),
                       tf.constant(float(policy.max_side), tf.float64) / tf.maximum(h, w))
    if policy.max_pixels is not None:
        scale = tf.minimum(scale, tf.sqrt(tf.constant(float(policy.max_pixels), tf.float64)
                                          / (h * w)))
    over = scale < 1.0
    def shrink(d):
        return tf.maximum(MIN_SIDE, tf.cast(tf.floor(d * scale / 4.0), tf.int32) * 4)

    nh = tf.where(over, shrink(h), height)
    nw = tf.where(over, shrink(w), width)
    return nh, nw, over


def translate_pixels(generator, policy: SizePolicy, images):
    """Graph function body: float32 [B, H, W, 3] pixels [0, 255] -> float32 [B, H', W', 3]
    pixels [0, 255], as `serving_default` computes it."""
    import tensorflow as tf

    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    tf.debugging.Assert(
        tf.minimum(height, width) >= MIN_SIDE,
        [f"image smaller than {MIN_SIDE} pixels on a side; height, width:", height, width])
    nh, nw, over = _target_size(height, width, policy)
    if policy.oversize == "refuse":
        limits = f"longest side {policy.max_side}" + (
            f", {policy.max_pixels} pixels" if policy.max_pixels is not None else "")
        tf.debugging.Assert(
            tf.logical_not(over),
            [f"image exceeds this model's serving size limit ({limits}); downscale it first. "
             "Height, width:", height, width])
    x = tf.cond(over,
                lambda: tf.image.resize(images, tf.stack([nh, nw]), method="bilinear",
                                        antialias=True),
                lambda: images)
    multiple = getattr(generator, "multiple", 4)  # a stylizer's encoder: 4, 8 or 16
    pad_h, pad_w = tf.math.floormod(-nh, multiple), tf.math.floormod(-nw, multiple)
    x = tf.pad(to_model_range(x), [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="REFLECT")
    y = generator(x, training=False)[:, :nh, :nw, :]
    return tf.clip_by_value(from_model_range(y), 0.0, 255.0)


def make_endpoints(generator, policy: SizePolicy, per_image: bool):
    """The two signature functions (Python callables to trace) and their input specs.

    `per_image`: translate the images of a `serving_default` batch one after another (used
    for attention generators, whose memory grows with the square of the pixel count).
    """
    import tensorflow as tf

    def one_image(image):
        return translate_pixels(generator, policy, image[None])[0]

    def serving_default(images):
        if per_image:
            out = tf.map_fn(one_image, images, parallel_iterations=1,
                            fn_output_signature=tf.TensorSpec([None, None, 3], tf.float32))
        else:
            out = translate_pixels(generator, policy, images)
        return {IMAGES_OUTPUT: out}

    def encode_one(data):
        image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
        translated = one_image(tf.cast(image, tf.float32))
        return tf.io.encode_png(tf.cast(tf.round(translated), tf.uint8))

    def translate_bytes(image_bytes):
        out = tf.map_fn(encode_one, image_bytes, parallel_iterations=1,
                        fn_output_signature=tf.TensorSpec([], tf.string))
        return {BYTES_OUTPUT: out}

    specs = {
        SERVING_DEFAULT: tf.TensorSpec([None, None, None, 3], tf.float32, name=IMAGES_INPUT),
        TRANSLATE_BYTES: tf.TensorSpec([None], tf.string, name=BYTES_INPUT),
    }
    return {SERVING_DEFAULT: serving_default, TRANSLATE_BYTES: translate_bytes}, specs


def write_savedmodel(generator, path, policy: SizePolicy, per_image: bool | None = None) -> Path:
    """Write `generator` as a SavedModel with both signatures to `path` (a new directory)."""
    import keras

    if per_image is None:
        per_image = attention_pixel_limit(generator) is not None
    functions, specs = make_endpoints(generator, policy, per_image)
    archive = keras.export.ExportArchive()
    archive.track(generator)
    for name in (SERVING_DEFAULT, TRANSLATE_BYTES):  # the first is also serving_default
        archive.add_endpoint(name, functions[name], input_signature=[specs[name]])
    archive.write_out(str(path), verbose=False)
    return Path(path)


def next_version(model_base) -> int:
    """1 + the highest integer version directory under `model_base` (1 if none)."""
    base = Path(model_base)
    versions = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()] \
        if base.is_dir() else []
    return max(versions, default=0) + 1


def directory_size(path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def models_config(model_names, container_base: str = "/models") -> str:
    """TF Serving model config (text protobuf) serving each model from
    `container_base`/<name> (the directory OUT/serving is mounted on)."""
    lines = ["model_config_list {"]
    for name in model_names:
        lines += ["  config {", f'    name: "{name}"',
                  f'    base_path: "{container_base.rstrip("/")}/{name}"',
                  '    model_platform: "tensorflow"', "  }"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def batching_parameters(params: dict | None = None) -> str:
    """TF Serving --batching_parameters_file contents (text protobuf)."""
    params = {**DEFAULT_BATCHING, **(params or {})}
    return "".join(f"{key} {{ value: {int(value)} }}\n" for key, value in params.items())


class LoadedSavedModel:
    """A written SavedModel's two signatures, called as TF Serving would."""

    def __init__(self, path):
        import tensorflow as tf

        self._tf = tf
        self.module = tf.saved_model.load(str(path))
        self.signatures = self.module.signatures

    def translate_pixels(self, images: np.ndarray) -> np.ndarray:
        fn = self.signatures[SERVING_DEFAULT]
        out = fn(**{IMAGES_INPUT: self._tf.constant(np.asarray(images, np.float32))})
        return out[IMAGES_OUTPUT].numpy()

    def translate_bytes(self, encoded: list[bytes]) -> list[bytes]:
        fn = self.signatures[TRANSLATE_BYTES]
        out = fn(**{BYTES_INPUT: self._tf.constant(list(encoded), dtype=self._tf.string)})
        return [bytes(b) for b in out[BYTES_OUTPUT].numpy()]



