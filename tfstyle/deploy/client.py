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

What comes back is not trusted: a REST answer over `max_response_bytes` is not read, JSON
nested too deeply, invalid base64 and results that are not PNG images decoding whole within
the image limits (`tfstyle.core.images.ImageLimits`) are refused, and nothing of a request is
written unless all its results decode. Messages quoted from a server are cut to one line.

Errors are `ClientError`s with a one-line message that says what went wrong and where:
`OutputError` (the output folder cannot be written; checked before anything is sent),
`ServingError` and its kinds `ServerUnreachable` (connection refused, timeout; names the URL
or target), `UnknownModel` (HTTP 404 / NOT_FOUND), `UnknownSignature`, or a plain
`ServingError` with the server's message or what was wrong with its answer. A file that is
not a readable image raises `tfstyle.core.images.ImageError` naming it, before anything is
sent. `ClientOptions` holds the settings of `python -m export.client`, one flag each.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import io
import json
import os
import re
import socket
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from tfstyle.core.config import setting
from tfstyle.core.files import write_bytes_atomic
from tfstyle.core.images import DEFAULT_LIMITS, ImageLimits, read_image

DEFAULT_SIGNATURE = "translate_bytes"
INPUT_KEY, OUTPUT_KEY = "image_bytes", "output_bytes"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Largest message sent, and (unless told otherwise) answer read: REST body, gRPC message.
#: Translated PNGs of large images are big.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024


class ClientError(RuntimeError):
    """The images could not be translated and written; the message (one line) says why."""


class OutputError(ClientError):
    """The output folder cannot be written."""


class ServingError(ClientError):
    """TF Serving could not translate the images, or its answer is unusable."""


class ServerUnreachable(ServingError):
    """No answer from the server (refused, unreachable, timed out)."""


class UnknownModel(ServingError):
    """The server does not serve this model (or version)."""


class UnknownSignature(ServingError):
    """The model has no signature of this name."""


_SIGNATURE_NOT_FOUND = re.compile(r"signature.*not found", re.IGNORECASE | re.DOTALL)


@dataclass
class ClientOptions(ImageLimits):
    """Where to send images and what to accept back; each field is a flag of `python -m
    export.client` (the image limits apply to the files sent and the results received)."""

    url: str = setting("", "TF Serving REST address, e.g. http://localhost:8501.")
    grpc: str = setting("", "TF Serving gRPC target HOST:PORT, e.g. localhost:8500 (needs "
                        "tfstyle[serving]); used instead of --url.")
    model: str = setting("", "Served model name, e.g. horse2zebra_AtoB.",
                         required="required (the served model's name)")
    version: int = setting(0, "Model version (0: the latest the server has).", min=0)
    signature: str = setting(DEFAULT_SIGNATURE, "Signature taking image_bytes.")
    timeout: float = setting(60.0, "Seconds to wait for each request.", above=0)
    batch_size: int = setting(4, "Images per request.", min=1)
    max_response_bytes: int = setting(MAX_MESSAGE_BYTES, "Largest answer read from the "
                                      "server, in bytes (REST body or gRPC message).", min=1)

    def validate(self):
        super().validate()
        self.need(self.url or self.grpc, "url", "required (or --grpc=HOST:PORT for gRPC)")
        self.need(not self.grpc or re.fullmatch(r".+:\d+", self.grpc), "grpc",
                  "expected HOST:PORT")
        self.need(self.signature, "signature", "must name a signature")


def one_line(text, limit: int = 300) -> str:
    """`text` (from a server) as one printable line of at most `limit` characters."""
    text = " ".join(str(text).split())
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[:limit] + "..."


def image_payload(path, limits: ImageLimits | None = None) -> bytes:
    """What to send for the image file at `path`.

    The file itself when the server decodes it exactly as `tfstyle.core.images.read_image` does
    (8-bit RGB or grayscale JPEG or PNG without an EXIF rotation); otherwise (WebP, TIFF,
    16-bit, alpha, palette, CMYK, rotated photos, ...) the image as `read_image` decodes it,
    re-encoded as PNG. Raises ImageError naming the file if it is not a readable image
    within `limits` (default DEFAULT_LIMITS).
    """
    pixels = read_image(path, limits)  # ImageError (naming the file) for anything unreadable
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


def decode_rest_predictions(document, count: int) -> list[bytes]:
    """The result bytes of a REST predict response (row format), `count` of them."""
    predictions = document.get("predictions") if isinstance(document, dict) else None
    if not isinstance(predictions, list):
        raise ServingError(f"response has no 'predictions' list: {one_line(document, 200)}")
    out = []
    for item in predictions:
        if isinstance(item, dict) and OUTPUT_KEY in item:  # several outputs: named
            item = item[OUTPUT_KEY]
        if not (isinstance(item, dict) and isinstance(item.get("b64"), str)):
            raise ServingError(
                f"prediction is not base64 bytes ({one_line(item, 80)}): is the signature's "
                f"output named '{OUTPUT_KEY}'?")
        try:
            out.append(base64.b64decode(item["b64"], validate=True))
        except (binascii.Error, ValueError) as err:
            raise ServingError(f"prediction {len(out) + 1} is not valid base64 ({err})") \
                from None
    return _check_count(out, count)


def _check_count(outputs: list[bytes], count: int) -> list[bytes]:
    if len(outputs) != count:
        raise ServingError(f"sent {count} images, got {len(outputs)} results")
    return outputs


def check_result(data: bytes, limits: ImageLimits | None = None) -> tuple[int, int]:
    """(width, height) of a result after decoding it whole; ServingError unless it is a PNG
    image within `limits` (bytes, then pixels, checked before decoding)."""
    limits = limits or DEFAULT_LIMITS
    if len(data) > limits.max_image_bytes:
        raise ServingError(f"the server's result has {len(data):,} bytes, more than the limit "
                           f"of {limits.max_image_bytes:,} (max_image_bytes)")
    if not data.startswith(PNG_MAGIC):
        raise ServingError("the server's result is not a PNG image")
    try:
        with warnings.catch_warnings():  # the pixel limit below replaces Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=["PNG"])
        with image:
            width, height = image.size
            if width * height > limits.max_image_pixels:
                raise ServingError(
                    f"the server's result is {width}x{height} pixels, more than the limit "
                    f"of {limits.max_image_pixels:,} (max_image_pixels)")
            image.load()
    except ServingError:
        raise
    except Exception as err:  # noqa: BLE001  (whatever the decoder makes of hostile bytes)
        raise ServingError(f"the server's result is not a valid PNG image "
                           f"({one_line(err, 120) or type(err).__name__})") from None
    return width, height


def _read_json(stream, limit: int, where: str):
    """The JSON document of an HTTP body, read up to `limit` bytes."""
    payload = stream.read(limit + 1)
    if len(payload) > limit:
        raise ServingError(f"{where} answered with more than {limit:,} bytes "
                           "(max_response_bytes)")
    try:
        return json.loads(payload)
    except RecursionError:
        raise ServingError(f"{where} answered with JSON nested too deeply") from None
    except ValueError:
        raise ServingError(f"{where} answered with something other than JSON: "
                           f"{one_line(repr(payload[:200]))}") from None


class RestClient:
    """`translate(images)` through TF Serving's REST API (port 8501)."""

    def __init__(self, url: str, model: str, version: int | None = None,
                 signature: str = DEFAULT_SIGNATURE, timeout: float = 60.0,
                 max_response_bytes: int = MAX_MESSAGE_BYTES):
        self.url, self.model, self.version = url, model, version
        self.signature, self.timeout = signature, timeout
        self.max_response_bytes = max_response_bytes
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
                document = _read_json(response, self.max_response_bytes, self.endpoint)
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
                f"cannot reach TF Serving at {self.endpoint}: {one_line(reason)}") from err
        except (http.client.HTTPException, ConnectionError) as err:
            raise ServerUnreachable(f"connection to TF Serving at {self.endpoint} failed: "
                                    f"{one_line(repr(err))}") from err
        return decode_rest_predictions(document, len(images))

    def _http_error(self, err: urllib.error.HTTPError) -> ServingError:
        try:
            raw = err.read(min(self.max_response_bytes, 1 << 20))
        except (OSError, http.client.HTTPException):
            raw = b""
        try:
            message = json.loads(raw).get("error", "")
        except (ValueError, AttributeError, RecursionError):
            message = raw.decode("utf-8", "replace")
        message = one_line(message or err.reason)
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
                 signature: str = DEFAULT_SIGNATURE, timeout: float = 60.0,
                 max_response_bytes: int = MAX_MESSAGE_BYTES):
        grpc, _, services = _serving_apis()
        self._grpc = grpc
        self.target, self.model, self.version = target, model, version
        self.signature, self.timeout = signature, timeout
        self.channel = grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", max_response_bytes)])
        self.stub = services.PredictionServiceStub(self.channel)

    def close(self):
        self.channel.close()

    def translate(self, images: Sequence[bytes]) -> list[bytes]:
        request = grpc_request(images, self.model, self.version, self.signature)
        code = self._grpc.StatusCode
        try:
            response = self.stub.Predict(request, timeout=self.timeout)
        except self._grpc.RpcError as err:
            status, details = err.code(), one_line(err.details() or "")
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
        return _check_count(list(response.outputs[OUTPUT_KEY].string_val), len(images))


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


def writable_folder(folder) -> Path:
    """`folder`, created if needed, after writing and removing a probe file in it;
    OutputError naming it otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as err:
        raise OutputError(f"output folder {folder} cannot be written: "
                          f"{err.strerror or err}") from None
    return folder


def translate_files(client, paths: Sequence, out_dir, batch_size: int = 4,
                    limits: ImageLimits | None = None) -> list[Path]:
    """Translate image files through `client` (RestClient or GrpcClient), `batch_size`
    images a request, writing OUT_DIR/<stem>.png. Every file is read and checked, and the
    output folder checked writable, before the first request; each request's results are
    all decoded (`check_result`) before any of them is written."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    paths = [Path(p) for p in paths]
    payloads = [image_payload(p, limits) for p in paths]
    out_dir = writable_folder(out_dir)
    names = output_names(paths)
    written = []
    for start in range(0, len(payloads), batch_size):
        batch = slice(start, start + batch_size)
        results = client.translate(payloads[batch])
        for path, data in zip(paths[batch], results):
            try:
                check_result(data, limits)
            except ServingError as err:
                raise ServingError(f"{path}: {err}; nothing of its request was written") \
                    from None
        for name, data in zip(names[batch], results):
            write_bytes_atomic(out_dir / name, data)
            written.append(out_dir / name)
    return written


def connect(options: ClientOptions):
    """The client the options name: GrpcClient for --grpc, else RestClient."""
    version = options.version or None
    if options.grpc:
        return GrpcClient(options.grpc, options.model, version, options.signature,
                          options.timeout, options.max_response_bytes)
    return RestClient(options.url, options.model, version, options.signature, options.timeout,
                      options.max_response_bytes)


def translate_images(options: ClientOptions, paths: Sequence, out_dir) -> list[Path]:
    """What `python -m export.client` does: connect, translate `paths` into `out_dir`."""
    client = connect(options)
    try:
        return translate_files(client, paths, out_dir, options.batch_size, options)
    finally:
        if isinstance(client, GrpcClient):
            client.close()
