"""TF Serving client: REST against a loopback server that answers as TF Serving's REST API
does, gRPC against an in-process PredictionService, and the export.client CLI."""

import base64
import io
import json
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfstyle.core.images import ImageError
from tfstyle.deploy import client

REPO = Path(__file__).resolve().parents[1]
SIGNATURES = {"translate_bytes": "image_bytes"}


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data))


def declared_png(width: int, height: int) -> bytes:
    """A 60-byte PNG whose header declares width x height RGB pixels (a decompression bomb
    when large: its data would inflate to that many pixels)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (client.PNG_MAGIC + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b""))


def predictions(*results: bytes) -> bytes:
    return json.dumps({"predictions": [{"b64": base64.b64encode(r).decode()}
                                       for r in results]}).encode()


def truncated_png() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), np.uint8)).save(
        out, format="PNG")
    return out.getvalue()[:-300]


#: Models of the fake server that answer (HTTP 200) with hostile bodies, given the images
#: sent; "garbage" translates the first image right and the others into garbage.
HOSTILE = {
    "garbage": lambda sent: predictions(invert_png(sent[0]), *[
        client.PNG_MAGIC + bytes(range(256)) * 4] * (len(sent) - 1)),
    "truncated": lambda sent: predictions(*[truncated_png()] * len(sent)),
    "badb64": lambda sent: b'{"predictions": [{"b64": "iVBORw0KGgo$$not*base64!"}]}',
    "deep": lambda sent: b"[" * 100_000 + b"]" * 100_000,
    "huge": lambda sent: b'{"predictions": ["' + b"A" * 3_000_000 + b'"]}',
    "bomb": lambda sent: predictions(*[declared_png(10_000, 10_000)] * len(sent)),
}
MODELS = {"demo": {1, 2}, "slow": {1}, **{name: {1} for name in HOSTILE}}


def invert_png(data: bytes) -> bytes:
    """What the fake servers' model does: decode, invert, encode PNG."""
    with Image.open(io.BytesIO(data)) as image:
        pixels = 255 - np.asarray(image.convert("RGB"))
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


class FakeServing(BaseHTTPRequestHandler):
    """TF Serving's REST predict endpoint: row-format instances, b64 strings, errors as
    {"error": ...} with TF Serving's status codes and messages."""

    requests: list = []
    path_re = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?:predict$")

    def log_message(self, *args):
        pass

    def reply(self, code, document):
        self.send_body(code, json.dumps(document).encode())

    def send_body(self, code, body: bytes):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # a client that stopped reading
            pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append((self.path, body))
        match = self.path_re.match(self.path)
        if not match:
            return self.reply(404, {"error": "Malformed request: POST " + self.path})
        name, version = match.group(1), match.group(2)
        if name not in MODELS or (version and int(version) not in MODELS[name]):
            spec = f"Specific({name}, {version})" if version else f"Latest({name})"
            return self.reply(404, {"error": f"Servable not found for request: {spec}"})
        if name == "slow":
            time.sleep(3)
        if name in HOSTILE:
            sent = [base64.b64decode(item["b64"]) for item in json.loads(body)["instances"]]
            return self.send_body(200, HOSTILE[name](sent))
        document = json.loads(body)
        signature = document.get("signature_name", "serving_default")
        if signature not in SIGNATURES:
            return self.reply(400, {"error": f'Serving signature name: "{signature}" not found '
                                             "in signature def"})
        outputs = []
        for item in document["instances"]:
            if set(item) != {"b64"}:  # named form {"image_bytes": {"b64": ...}}
                item = item[SIGNATURES[signature]]
            try:
                outputs.append(invert_png(base64.b64decode(item["b64"])))
            except OSError:
                return self.reply(400, {"error": "Unknown image file format. One of JPEG, PNG, "
                                                 "GIF, BMP required."})
        self.reply(200, {"predictions": [{"b64": base64.b64encode(o).decode()} for o in outputs]})


@pytest.fixture(scope="module")
def rest_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeServing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def clear_requests():
    FakeServing.requests.clear()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:40, 0:56] / 56.0
    base = np.stack([xx, yy, xx * yy], -1) * 255
    paths = {}
    for name, fmt in (("photo.jpg", "JPEG"), ("drawing.png", "PNG"), ("scan.webp", "WEBP")):
        pixels = np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / name, format=fmt)
        paths[name] = folder / name
    gray = Image.fromarray((base[..., 0]).astype(np.uint8), mode="L")
    gray.save(folder / "gray.png")
    paths["gray.png"] = folder / "gray.png"
    rotated = Image.fromarray(base.astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    rotated.save(folder / "rotated.jpg", exif=exif.tobytes())
    paths["rotated.jpg"] = folder / "rotated.jpg"
    (folder / "notes.png").write_text("not an image")
    paths["notes.png"] = folder / "notes.png"
    return paths


def test_payload_sends_jpeg_and_png_as_is_and_reencodes_the_rest(images):
    for name in ("photo.jpg", "drawing.png", "gray.png"):
        assert client.image_payload(images[name]) == images[name].read_bytes()
    for name in ("scan.webp", "rotated.jpg"):
        payload = client.image_payload(images[name])
        assert payload.startswith(client.PNG_MAGIC)
    # EXIF rotation applied as tfstyle.images.read_image does: 40x56 becomes 56x40.
    assert decode(client.image_payload(images["rotated.jpg"])).shape == (56, 40, 3)
    with pytest.raises(ImageError, match="notes.png"):
        client.image_payload(images["notes.png"])


def test_request_body_and_url_follow_tf_serving_rest_api():
    body = client.rest_request_body([b"\x00\x01abc", b"xyz"])
    assert body == {"signature_name": "translate_bytes",
                    "instances": [{"b64": "AAFhYmM="}, {"b64": "eHl6"}]}
    assert client.predict_url("http://h:8501/", "m") == "http://h:8501/v1/models/m:predict"
    assert client.predict_url("h:8501", "m", 3) == "http://h:8501/v1/models/m/versions/3:predict"


def test_rest_translates_images_and_writes_pngs(rest_server, images, tmp_path):
    rest = client.RestClient(rest_server, "demo")
    paths = [images["photo.jpg"], images["drawing.png"], images["scan.webp"]]
    written = client.translate_files(rest, paths, tmp_path, batch_size=2)
    assert [p.name for p in written] == ["photo.png", "drawing.png", "scan.png"]
    assert len(FakeServing.requests) == 2  # batches of 2 and 1
    path, body = FakeServing.requests[0]
    assert path == "/v1/models/demo:predict"
    document = json.loads(body)
    assert document["signature_name"] == "translate_bytes"
    assert base64.b64decode(document["instances"][0]["b64"]) == images["photo.jpg"].read_bytes()
    for source, result in zip(paths, written):
        sent = decode(client.image_payload(source))
        np.testing.assert_array_equal(decode(result.read_bytes()), 255 - sent)


def test_rest_with_version(rest_server, images, tmp_path):
    rest = client.RestClient(rest_server, "demo", version=2)
    client.translate_files(rest, [images["drawing.png"]], tmp_path)
    assert FakeServing.requests[0][0] == "/v1/models/demo/versions/2:predict"
    with pytest.raises(client.UnknownModel, match=r"'demo' version 7.*Specific\(demo, 7\)"):
        client.RestClient(rest_server, "demo", version=7).translate([b"x"])


def test_rest_server_down_names_the_url():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(client.ServerUnreachable, match=re.escape(url)):
        client.RestClient(url, "demo", timeout=5).translate([b"x"])


def test_rest_timeout_names_the_url(rest_server):
    with pytest.raises(client.ServerUnreachable, match=f"{re.escape(rest_server)}.*within 0.5 s"):
        client.RestClient(rest_server, "slow", timeout=0.5).translate([b"x"])


def test_rest_unknown_model_and_signature(rest_server, images):
    payload = client.image_payload(images["drawing.png"])
    with pytest.raises(client.UnknownModel, match=r"no model 'nope'.*Latest\(nope\)"):
        client.RestClient(rest_server, "nope").translate([payload])
    with pytest.raises(client.UnknownSignature, match="no signature 'bogus'"):
        client.RestClient(rest_server, "demo", signature="bogus").translate([payload])


def test_rest_other_server_errors_carry_the_message(rest_server):
    with pytest.raises(client.ServingError, match="HTTP 400: Unknown image file format"):
        client.RestClient(rest_server, "demo").translate([b"definitely not an image"])


def test_non_image_fails_before_anything_is_sent(rest_server, images, tmp_path):
    rest = client.RestClient(rest_server, "demo")
    with pytest.raises(ImageError, match="notes.png"):
        client.translate_files(rest, [images["photo.jpg"], images["notes.png"]], tmp_path)
    assert FakeServing.requests == []
    assert not list(tmp_path.iterdir())


def test_output_names_do_not_collide():
    assert client.output_names([Path("a/x.jpg"), Path("b/x.png"), Path("y.gif")]) == \
        ["x_jpg.png", "x_png.png", "y.png"]
    assert client.output_names([Path("a/x.jpg"), Path("b/x.jpg")]) == ["x_jpg.png", "x_jpg_2.png"]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "export.client", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_cli_translates_over_rest(rest_server, images, tmp_path):
    result = run_cli(f"--url={rest_server}", "--model=demo", f"--out_dir={tmp_path}",
                     images["photo.jpg"], images["gray.png"])
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gray.png", "photo.png"]
    gray = decode(client.image_payload(images["gray.png"]))
    np.testing.assert_array_equal(decode((tmp_path / "gray.png").read_bytes()), 255 - gray)


def test_cli_errors(rest_server, images, tmp_path):
    down = f"http://127.0.0.1:{free_port()}"
    result = run_cli(f"--url={down}", "--model=demo", f"--out_dir={tmp_path}", images["photo.jpg"])
    assert result.returncode == 1 and down in result.stderr
    result = run_cli(f"--url={rest_server}", "--model=nope", f"--out_dir={tmp_path}",
                     images["photo.jpg"])
    assert result.returncode == 1 and "no model 'nope'" in result.stderr
    result = run_cli(f"--url={rest_server}", "--model=demo", f"--out_dir={tmp_path}",
                     images["notes.png"])
    assert result.returncode == 1 and "notes.png" in result.stderr


# -- what a server answers is not trusted ---------------------------------------------------

@pytest.mark.parametrize("model, message", [
    ("garbage", "not a valid PNG image"),
    ("truncated", "not a valid PNG image"),
    ("badb64", "prediction 1 is not valid base64"),
    ("deep", "JSON nested too deeply"),
    ("bomb", "10000x10000 pixels, more than the limit of 80,000,000 .max_image_pixels."),
])
def test_hostile_answers_are_refused_and_nothing_is_written(rest_server, images, tmp_path,
                                                            model, message):
    rest = client.RestClient(rest_server, model)
    with pytest.raises(client.ServingError, match=message):
        client.translate_files(rest, [images["photo.jpg"], images["drawing.png"]], tmp_path)
    assert not list(tmp_path.iterdir())


def test_an_answer_over_the_size_limit_is_not_read(rest_server):
    rest = client.RestClient(rest_server, "huge", max_response_bytes=1_000_000)
    with pytest.raises(client.ServingError, match=r"more than 1,000,000 bytes"):
        rest.translate([b"x"])


def test_results_are_decoded_within_the_limits():
    good = io.BytesIO()
    Image.fromarray(np.zeros((40, 56, 3), np.uint8)).save(good, format="PNG")
    assert client.check_result(good.getvalue()) == (56, 40)
    small = client.ClientOptions(model="m", url="http://h", max_image_pixels=1000)
    with pytest.raises(client.ServingError, match="56x40 pixels, more than the limit of 1,000"):
        client.check_result(good.getvalue(), small)
    with pytest.raises(client.ServingError, match="not a PNG"):
        client.check_result(b"GIF89a...")
    assert client.one_line("two\nlines\x1b[31m  red") == "two lines?[31m red"


def test_an_unwritable_output_folder_fails_before_anything_is_sent(rest_server, images,
                                                                   tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("in the way")
    rest = client.RestClient(rest_server, "demo")
    for out in (blocker, blocker / "out"):
        with pytest.raises(client.OutputError, match=f"output folder {re.escape(str(out))} "
                                                     "cannot be written"):
            client.translate_files(rest, [images["photo.jpg"]], out)
    result = run_cli(f"--url={rest_server}", "--model=demo", f"--out_dir={blocker / 'out'}",
                     images["photo.jpg"])
    assert result.returncode == 1 and "cannot be written" in result.stderr
    assert FakeServing.requests == []


@pytest.mark.parametrize("args", [["--model=garbage"], ["--model=badb64"], ["--model=deep"],
                                  ["--model=huge", "--max_response_bytes=1000000"]])
def test_cli_reports_a_hostile_answer_in_one_line(rest_server, images, tmp_path, args):
    result = run_cli(f"--url={rest_server}", *args, f"--out_dir={tmp_path}",
                     images["photo.jpg"], images["drawing.png"])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("args, flag", [([], "--url"), (["--url=h", "--timeout=0"], "--timeout"),
                                        (["--grpc=localhost"], "--grpc")])
def test_cli_flags_are_checked(tmp_path, images, args, flag):
    result = run_cli("--model=demo", *args, f"--out_dir={tmp_path}", images["photo.jpg"])
    assert result.returncode != 0 and flag in result.stderr


# -- gRPC ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def grpc_server():
    grpc = pytest.importorskip("grpc")
    apis = pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc")
    from tensorflow_serving.apis import predict_pb2

    class Servicer(apis.PredictionServiceServicer):
        def Predict(self, request, context):
            spec = request.model_spec
            if spec.name not in MODELS:
                context.abort(grpc.StatusCode.NOT_FOUND,
                              f"Servable not found for request: Latest({spec.name})")
            if spec.signature_name not in SIGNATURES:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              f'Serving signature key "{spec.signature_name}" not found.')
            tensor = request.inputs["image_bytes"]
            assert [d.size for d in tensor.tensor_shape.dim] == [len(tensor.string_val)]
            response = predict_pb2.PredictResponse()
            out = response.outputs["output_bytes"]
            out.CopyFrom(tensor)
            del out.string_val[:]
            out.string_val.extend(invert_png(b) for b in tensor.string_val)
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    apis.add_PredictionServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


def test_grpc_translates_images(grpc_server, images, tmp_path):
    stub = client.GrpcClient(grpc_server, "demo", version=1)
    try:
        written = client.translate_files(stub, [images["photo.jpg"], images["scan.webp"]], tmp_path)
    finally:
        stub.close()
    for source, result in zip([images["photo.jpg"], images["scan.webp"]], written):
        sent = decode(client.image_payload(source))
        np.testing.assert_array_equal(decode(result.read_bytes()), 255 - sent)


def test_grpc_request_carries_model_version_and_signature():
    pytest.importorskip("tensorflow_serving.apis")
    request = client.grpc_request([b"a", b"bc"], "demo", 3, "translate_bytes")
    assert request.model_spec.name == "demo" and request.model_spec.version.value == 3
    assert request.model_spec.signature_name == "translate_bytes"
    assert list(request.inputs["image_bytes"].string_val) == [b"a", b"bc"]


def test_grpc_errors(grpc_server, images):
    payload = client.image_payload(images["drawing.png"])
    with pytest.raises(client.UnknownModel, match="'nope'"):
        client.GrpcClient(grpc_server, "nope").translate([payload])
    with pytest.raises(client.UnknownSignature, match="'bogus'"):
        client.GrpcClient(grpc_server, "demo", signature="bogus").translate([payload])
    down = f"127.0.0.1:{free_port()}"
    with pytest.raises(client.ServerUnreachable, match=re.escape(down)):
        client.GrpcClient(down, "demo", timeout=5).translate([payload])
