"""LiteRT (TFLite) conversion of a generator at a fixed input size, builtin ops only.

Variants and their tensors (NHWC, batch 1, RGB; S = the export's size):

    variant  weights                    input [1, S, S, 3]        output [1, S, S, 3]
    float32  float32                    float32 pixels [0, 255]   float32 pixels [0, 255]
    float16  float16, dequantized       float32 pixels [0, 255]   float32 pixels [0, 255]
    dynamic  int8, activations float    float32 pixels [0, 255]   float32 pixels [0, 255]
    int8     int8, activations int8     uint8 pixels (scale 1,    uint8 tanh output [-1, 1]
                                        zero point 0)             (scale 1/128, zero pt 128)

The full-int8 model's output is the generator's tanh itself, whose int8 quantization TFLite
fixes (scale 1/128), so no calibrated range can clip bright outputs; pixel = 0.99609375 * q
(q = 255 gives 254). Its input range is pinned to exactly [0, 255] (one black and one white
pixel are written into the first calibration image), so the uint8 input is the raw pixel.
models.json records every tensor's range and quantization, and the affine maps
`from_pixels` / `to_pixels` between pixels and tensor values. Image decoding, resizing and
encoding stay outside the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfstyle.core.images import from_model_range, to_model_range

VARIANTS = ("float32", "float16", "dynamic", "int8")

SIGNATURE_KEY = "serving_default"
INPUT_NAME, OUTPUT_NAME = "image", "translated"


def write_fixed_savedmodel(generator, size: int, path, quantized_output: bool = False) -> Path:
    """A SavedModel with one signature at input [1, size, size, 3] float32 pixels [0, 255]:
    output float32 pixels [0, 255], or (quantized_output) the tanh output in [-1, 1]."""
    import keras
    import tensorflow as tf

    if size % 4 or size < 16:
        raise ValueError(f"size must be a multiple of 4 and at least 16, got {size}")

    def translate(image):
        y = generator(to_model_range(image), training=False)
        return {OUTPUT_NAME: y if quantized_output else from_model_range(y)}

    archive = keras.export.ExportArchive()
    archive.track(generator)
    archive.add_endpoint(SIGNATURE_KEY, translate, input_signature=[
        tf.TensorSpec([1, size, size, 3], tf.float32, name=INPUT_NAME)])
    archive.write_out(str(path), verbose=False)
    return Path(path)


def anchored(calibration: np.ndarray) -> np.ndarray:
    """A copy of the calibration batch whose first image holds one 0 and one 255 pixel, so
    the calibrated input range is exactly [0, 255]."""
    batch = np.array(calibration, dtype=np.float32, copy=True)
    batch[0, 0, 0, :] = 0.0
    batch[0, 0, -1, :] = 255.0
    return batch


def convert(saved_model_dir, variant: str, calibration: np.ndarray | None = None) -> bytes:
    """Convert a fixed-size SavedModel (`write_fixed_savedmodel`) to a LiteRT flatbuffer.

    `calibration`: float32 [N, S, S, 3] real pixels in [0, 255], required for "int8" (whose
    SavedModel must have been written with quantized_output=True).
    """
    import tensorflow as tf

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        if calibration is None or len(calibration) == 0:
            raise ValueError("the int8 variant needs calibration images")
        samples = anchored(calibration)
        converter.representative_dataset = lambda: ([s[None]] for s in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    return converter.convert()


@dataclass(frozen=True)
class GraphFacts:
    """What the flatbuffer holds: operator names, non-builtin (custom or Flex) operators and
    the largest tensor rank."""

    ops: tuple[str, ...]
    custom_ops: tuple[str, ...]
    max_rank: int
    high_rank_tensors: tuple[str, ...]


def inspect(content: bytes) -> GraphFacts:
    """Read operator codes and tensor shapes from the flatbuffer itself."""
    from tensorflow.lite.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAsModel(content, 0)
    ops, custom = set(), set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            custom.add((code.CustomCode() or b"?").decode())
        else:
            ops.add(names.get(builtin, f"BUILTIN_{builtin}"))
    max_rank, high = 0, []
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            rank = tensor.ShapeLength()
            max_rank = max(max_rank, rank)
            if rank > 4:
                high.append((tensor.Name() or b"?").decode())
    return GraphFacts(tuple(sorted(ops)), tuple(sorted(custom)), max_rank, tuple(high))


def _affine_to_pixels(lo: float, hi: float, scale: float | None, zero_point: int | None):
    """pixel = value * a + b for a raw tensor value (dequantized when quantized)."""
    a, b = 255.0 / (hi - lo), -lo * 255.0 / (hi - lo)
    if scale:
        return a * scale, b - a * scale * zero_point
    return a, b


class LiteModel:
    """A LiteRT model run on pixels, whatever its tensor types (ai_edge_litert Interpreter)."""

    def __init__(self, content: bytes, variant: str, num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.variant = variant
        self.interpreter = Interpreter(model_content=content, num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]
        out_lo, out_hi = (-1.0, 1.0) if variant == "int8" else (0.0, 255.0)
        self.input_range, self.output_range = (0.0, 255.0), (out_lo, out_hi)
        in_scale, in_zero = self._quant(self._in)
        out_scale, out_zero = self._quant(self._out)
        a, b = _affine_to_pixels(0.0, 255.0, in_scale, in_zero)
        self.from_pixels = (1.0 / a, -b / a)  # value = pixel * scale + offset
        self.to_pixels = _affine_to_pixels(out_lo, out_hi, out_scale, out_zero)

    @staticmethod
    def _quant(detail):
        if detail["dtype"] in (np.uint8, np.int8):
            scale, zero = detail["quantization"]
            return float(scale), int(zero)
        return None, None

    @property
    def size(self) -> int:
        return int(self._in["shape"][1])

    def run(self, pixels: np.ndarray) -> np.ndarray:
        """[S, S, 3] pixels in [0, 255] -> float32 [S, S, 3] output pixels in [0, 255]."""
        scale, offset = self.from_pixels
        x = np.asarray(pixels, np.float32)[None] * scale + offset
        if self._in["dtype"] != np.float32:
            info = np.iinfo(self._in["dtype"])
            x = np.clip(np.rint(x), info.min, info.max)
        self.interpreter.set_tensor(self._in["index"], x.astype(self._in["dtype"]))
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self._out["index"]).astype(np.float32)
        scale, offset = self.to_pixels
        return np.clip(y[0] * scale + offset, 0.0, 255.0)

    def io_description(self) -> dict:
        """The "input" and "output" entries of models.json."""
        signature = self.interpreter.get_signature_list().get(SIGNATURE_KEY, {})
        entries = {}
        for key, detail, value_range, affine, names, name in (
                ("input", self._in, self.input_range, self.from_pixels,
                 signature.get("inputs", []), INPUT_NAME),
                ("output", self._out, self.output_range, self.to_pixels,
                 signature.get("outputs", []), OUTPUT_NAME)):
            scale, zero = self._quant(detail)
            entries[key] = {
                "name": name if name in names else detail["name"],
                "tensor_name": detail["name"],
                "position": 0,
                "shape": [int(d) for d in detail["shape"]],
                "dtype": np.dtype(detail["dtype"]).name,
                "layout": "NHWC",
                "channels": "RGB",
                "range": [float(value_range[0]), float(value_range[1])],
                "quantization": None if scale is None else {"scale": scale, "zero_point": zero},
                ("from_pixels" if key == "input" else "to_pixels"):
                    {"scale": float(affine[0]), "offset": float(affine[1]) + 0.0},
            }
        return entries
