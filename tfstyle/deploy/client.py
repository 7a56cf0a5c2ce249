"""Client for the generators served by TF Serving (signature `translate_bytes`).

REST (standard library only):

    POST {url}/v1/models/{model}[/versions/{version}]:predict
    {"signature_name": "translate_bytes", "instances": [{"b64": "<image file>"}, ...]}
    -> {"predictions": [{"b64": "<PNG>"}, ...]}

The signature has one input (`image_bytes`), so TF Serving's row format takes each instance
as that input's value; a `{"b64": ...}` object is a binary string. Its one output,
`output_bytes`, ends in `_bytes`, so TF Serving returns it base64-encoded the same way.

gRPC (`pip install tfstyle[serving]`: tensorflow-serving-api, grpcio): a PredictRequest
with inputs["image_bytes"] a DT_STRING tensor of shape [n], read back from
outputs["output_bytes"].

Errors are `ServingError`s that say what went wrong and where: `ServerUnreachable` (connection
refused, timeout; names the URL or target), `UnknownModel` (HTTP 404 / NOT_FOUND),
`UnknownSignature`, or a plain `ServingError` with the server's message. A file that is not
a readable image raises `tfstyle.images.ImageError` naming it, before anything is sent.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from tfstyle.core.images import read_image

DEFAULT_SIGNATURE = "translate_bytes"
INPUT_KEY, OUTPUT_KEY = "image_bytes", "output_bytes"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Largest gRPC message sent or accepted (translated PNGs of large images are big).
GRPC_MAX_MESSAGE = 256 * 1024 * 1024


class ServingError(RuntimeError):
    """TF Serving could not translate the images; the message says why."""


class ServerUnreachable(ServingError):
    """No answer from the server (refused, unreachable, timed out)."""


class UnknownModel(ServingError):
    """The server does not serve this model (or version)."""


class UnknownSignature(ServingError):
    """The model has no signature of this name."""


_SIGNATURE_NOT_FOUND = re.compile(r"signature.*not found", re.IGNORECASE | re.DOTALL)


def image_payload(path) -> bytes:
    """What to send for the image file at `path`.

    The file itself when the server decodes it exactly as `tfstyle.images.read_image` does
    (8-bit RGB or grayscale JPEG or PNG without an EXIF rotation); otherwise (WebP, TIFF,
    16-bit, alpha, palette, CMYK, rotated photos, ...) the image as `read_image` decodes it,
    re-encoded as PNG. Raises ImageError naming the file if it is not a readable image.
    """
    pixels = read_image(path)  # ImageError (naming the file) for anything unreadable
    with Image.open(path) as image:
        fmt, mode = image.format, image.mode
        orientation = image.getexif().get(0x0112, 1)
        transparent = "transparency" in image.info
    if fmt in ("JPEG", "PNG") and mode in ("RGB", "L") and orientation == 1 and not transparent:
        return Path(path).read_bytes()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def predict_url(url: str, model: str, version: int | None = None) -> str:
    """TF Serving's REST predict URL for `model` (a version, or the latest)."""
    base = url.rstrip("/")
    if "://" not in base:
        base = "http://" + base
    path = f"/v1/models/{urllib.parse.quote(model, safe='')}"
    if version is not None:
        path += f"/versions/{int(version)}"
    return f"{base}{path}:predict"


def rest_request_body(images: Sequence[bytes], signature: str = DEFAULT_SIGNATURE) -> dict:
    """The JSON body of a REST predict request (row format) for encoded images."""
    return {"signature_name": signature,
            "instances": [{"b64": base64.b64encode(data).decode("ascii")} for data in images]}


def decode_rest_predictions(document: dict, count: int) -> list[bytes]:
    """The PNGs of a REST predict response (row format), checked to be `count` PNGs."""
    predictions = document.get("predictions") if isinstance(document, dict) else None
    if not isinstance(predictions, list):
        raise ServingError(f"response has no 'predictions' list: {str(document)[:200]}")
    out = []
    for item in predictions:
        if isinstance(item, dict) and OUTPUT_KEY in item:  # several outputs: named
            item = item[OUTPUT_KEY]
        if not (isinstance(item, dict) and isinstance(item.get("b64"), str)):
            raise ServingError(
                f"prediction is not base64 bytes ({str(item)[:80]}): is the signature's output "
                f"named '{OUTPUT_KEY}'?")
        out.append(base64.b64decode(item["b64"]))
    return _check_pngs(out, count)


def _check_pngs(outputs: list[bytes], count: int) -> list[bytes]:
    if len(outputs) != count:
        raise ServingError(f"sent {count} images, got {len(outputs)} results")
    for data in outputs:
        if not data.startswith(PNG_MAGIC):
            raise ServingError("the server's result is not a PNG image")
    return outputs


class RestClient:
    """`translate(images)` through TF Serving's REST API (port 8501)."""

    def __init__(self, url: str, model: str, version: int | None = None,
                 signature: str = DEFAULT_SIGNATURE, timeout: float = 60.0):
        self.url, self.model, self.version = url, model, version
        self.signature, self.timeout = signature, timeout
        self.endpoint = predict_url(url, model, version)

    def _model_label(self) -> str:
        return f"{self.model!r}" + (f" version {self.version}" if self.version else "")

    def translate(self, images: Sequence[bytes]) -> list[bytes]:
        """Encoded images -> translated PNGs, one request."""
        body = json.dumps(rest_request_body(images, self.signature)).encode()
        request = urllib.request.Request(
            self.endpoint, data=body, method="POST",
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as err:
            raise self._http_error(err) from None
        except (socket.timeout, TimeoutError) as err:
            raise ServerUnreachable(
                f"TF Serving at {self.endpoint} did not answer within {self.timeout:g} s") from err
        except urllib.error.URLError as err:
            reason = err.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise ServerUnreachable(f"TF Serving at {self.endpoint} did not answer within "
                                        f"{self.timeout:g} s") from err
            raise ServerUnreachable(
                f"cannot reach TF Serving at {self.endpoint}: {reason}") from err
        except (http.client.HTTPException, ConnectionError) as err:
            raise ServerUnreachable(
                f"connection to TF Serving at {self.endpoint} failed: {err!r}") from err
        try:
            document = json.loads(payload)
        except ValueError as err:
            raise ServingError(f"{self.endpoint} answered with something other than JSON: "
                               f"{payload[:200]!r}") from err
        return decode_rest_predictions(document, len(images))

    def _http_error(self, err: urllib.error.HTTPError) -> ServingError:
        try:
            raw = err.read()
        except OSError:
            raw = b""
        try:
            message = json.loads(raw).get("error", "")
        except (ValueError, AttributeError):
            message = raw.decode("utf-8", "replace")[:300]
        message = message or err.reason
        if err.code == 404:
            return UnknownModel(f"TF Serving at {self.url} has no model {self._model_label()} "
                                f"(HTTP 404: {message})")
        if err.code == 400 and _SIGNATURE_NOT_FOUND.search(str(message)):
            return UnknownSignature(f"model {self._model_label()} has no signature "
                                    f"{self.signature!r} (HTTP 400: {message})")
        return ServingError(f"TF Serving at {self.endpoint} answered HTTP {err.code}: {message}")


def _serving_apis():
    try:
        import grpc
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    except ImportError as err:
        raise ServingError(
            "gRPC needs the packages tensorflow-serving-api and grpcio: "
            f"pip install 'tfstyle[serving]' ({err})") from err
    return grpc, predict_pb2, prediction_service_pb2_grpc


def grpc_request(images: Sequence[bytes], model: str, version: int | None = None,
                 signature: str = DEFAULT_SIGNATURE):
    """The PredictRequest for encoded images (inputs['image_bytes']: DT_STRING [n])."""
    _, predict_pb2, _ = _serving_apis()
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = int(version)
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(images))]),
        string_val=list(images))
    request.inputs[INPUT_KEY].CopyFrom(tensor)
    return request


class GrpcClient:
    """`translate(images)` through TF Serving's gRPC PredictionService (port 8500)."""

    def __init__(self, target: str, model: str, version: int | None = None,
                 signature: str = DEFAULT_SIGNATURE, timeout: float = 60.0):
        grpc, _, services = _serving_apis()
        self._grpc = grpc
        self.target, self.model, self.version = target, model, version
        self.signature, self.timeout = signature, timeout
        self.channel = grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", GRPC_MAX_MESSAGE),
            ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE)])
        self.stub = services.PredictionServiceStub(self.channel)

    def close(self):
        self.channel.close()

    def translate(self, images: Sequence[bytes]) -> list[bytes]:
        request = grpc_request(images, self.model, self.version, self.signature)
        code = self._grpc.StatusCode
        try:
            response = self.stub.Predict(request, timeout=self.timeout)
        except self._grpc.RpcError as err:
            status, details = err.code(), err.details() or ""
            label = f"{self.model!r}" + (f" version {self.version}" if self.version else "")
            if status == code.UNAVAILABLE:
                raise ServerUnreachable(
                    f"cannot reach TF Serving gRPC at {self.target}: {details}") from None
            if status == code.DEADLINE_EXCEEDED:
                raise ServerUnreachable(f"TF Serving gRPC at {self.target} did not answer "
                                        f"within {self.timeout:g} s") from None
            if status == code.NOT_FOUND:
                raise UnknownModel(f"TF Serving at {self.target} has no model {label} "
                                   f"(NOT_FOUND: {details})") from None
            if status in (code.INVALID_ARGUMENT, code.FAILED_PRECONDITION) \
                    and _SIGNATURE_NOT_FOUND.search(details):
                raise UnknownSignature(f"model {label} has no signature {self.signature!r} "
                                       f"({status.name}: {details})") from None
            raise ServingError(
                f"TF Serving gRPC at {self.target} failed: {status.name}: {details}") from None
        if OUTPUT_KEY not in response.outputs:
            raise ServingError(f"response has no output '{OUTPUT_KEY}' "
                               f"(outputs: {sorted(response.outputs)})")
        return _check_pngs(list(response.outputs[OUTPUT_KEY].string_val), len(images))


def output_names(paths: Sequence[Path]) -> list[str]:
    """<stem>.png for each input; inputs sharing a stem get their extension (then an index)
    added, so no result overwrites another."""
    paths = [Path(p) for p in paths]
    stems = Counter(p.stem for p in paths)
    names, seen = [], Counter()
    for p in paths:
        name = p.stem if stems[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower()}"
        seen[name] += 1
        if seen[name] > 1:
            name = f"{name}_{seen[name]}"
        names.append(f"{name}.png")
    return names


def translate_files(client, paths: Sequence, out_dir, batch_size: int = 4) -> list[Path]:
    """Translate image files through `client` (RestClient or GrpcClient), `batch_size`
    images a request, writing OUT_DIR/<stem>.png. Every file is read and checked before the
    first request, so a non-image fails before anything is sent."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    paths = [Path(p) for p in paths]
    payloads = [image_payload(p) for p in paths]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    names = output_names(paths)
    for start in range(0, len(payloads), batch_size):
        results = client.translate(payloads[start:start + batch_size])
        for name, data in zip(names[start:start + batch_size], results):
            target = out_dir / name
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_bytes(data)
            tmp.replace(target)
            written.append(target)
    return written
