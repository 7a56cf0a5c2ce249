r"""Translate images with a generator served by TF Serving.

    python -m export.client --url=http://HOST:8501 --model=NAME --out_dir=OUT IMAGE...
    python -m export.client --grpc=HOST:8500 --model=NAME --out_dir=OUT IMAGE...

Sends the images (base64 over REST, or a DT_STRING tensor over gRPC) to the model's
`translate_bytes` signature and writes OUT/<stem>.png for each. With --grpc, gRPC is used
(and --url ignored). Exit status 1 with a message naming the server, model, signature or
file when something fails; nothing is sent unless every file is a readable image.
"""

from __future__ import annotations

import sys

from absl import app, flags

FLAGS = flags.FLAGS

flags.DEFINE_string("url", None, "TF Serving REST address, e.g. http://localhost:8501.")
flags.DEFINE_string("grpc", None, "TF Serving gRPC target HOST:PORT, e.g. localhost:8500 "
                    "(needs tfstyle[serving]).")
flags.DEFINE_string("model", None, "Served model name, e.g. horse2zebra_AtoB.")
flags.DEFINE_integer("version", None, "Model version (default: the latest the server has).")
flags.DEFINE_string("signature", "translate_bytes", "Signature taking image_bytes.")
flags.DEFINE_string("out_dir", None, "Folder for the translated PNGs.")
flags.DEFINE_float("timeout", 60.0, "Seconds to wait for each request.")
flags.DEFINE_integer("batch_size", 4, "Images per request.")


def main(argv):
    from tfstyle.core.images import ImageError
    from tfstyle.deploy import client

    images = argv[1:]
    if not images:
        raise app.UsageError("give one or more IMAGE files after the flags")
    if not FLAGS.url and not FLAGS.grpc:
        raise app.UsageError("--url: required (or --grpc=HOST:PORT for gRPC)")
    if not FLAGS.model:
        raise app.UsageError("--model: required (the served model's name)")
    if not FLAGS.out_dir:
        raise app.UsageError("--out_dir: required")
    if FLAGS.version is not None and FLAGS.version < 1:
        raise app.UsageError(f"--version: must be positive, got {FLAGS.version}")
    if FLAGS.timeout <= 0:
        raise app.UsageError(f"--timeout: must be positive, got {FLAGS.timeout}")
    if FLAGS.batch_size < 1:
        raise app.UsageError(f"--batch_size: must be at least 1, got {FLAGS.batch_size}")
    if FLAGS.grpc and ":" not in FLAGS.grpc:
        raise app.UsageError(f"--grpc: expected HOST:PORT, got {FLAGS.grpc!r}")
    try:
        if FLAGS.grpc:
            server = client.GrpcClient(FLAGS.grpc, FLAGS.model, FLAGS.version, FLAGS.signature,
                                       FLAGS.timeout)
        else:
            server = client.RestClient(FLAGS.url, FLAGS.model, FLAGS.version, FLAGS.signature,
                                       FLAGS.timeout)
        written = client.translate_files(server, images, FLAGS.out_dir, FLAGS.batch_size)
    except (ImageError, FileNotFoundError, client.ServingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    app.run(main)
