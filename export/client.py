r"""Translate images with a generator served by TF Serving.

    python -m export.client --url=http://HOST:8501 --model=NAME --out_dir=OUT IMAGE...
    python -m export.client --grpc=HOST:8500 --model=NAME --out_dir=OUT IMAGE...

Sends the images (base64 over REST, or a DT_STRING tensor over gRPC) to the model's
`translate_bytes` signature and writes OUT/<stem>.png for each. With --grpc, gRPC is used
(and --url ignored). Exit status 1 with a one-line message naming the server, model,
signature, file or folder when something fails; nothing is sent unless every file is a
readable image and OUT can be written, and a result is written only once it decodes as a
PNG. The flags are the fields of tfstyle.deploy.client.ClientOptions (`--helpfull` lists
them).
"""

from __future__ import annotations

import sys

from absl import app, flags

from tfstyle.core.config import define_flags, from_flags
from tfstyle.deploy.client import ClientOptions

FLAGS = flags.FLAGS

define_flags(ClientOptions)
flags.DEFINE_string("out_dir", None, "Folder for the translated PNGs.")
flags.mark_flag_as_required("out_dir")


def main(argv):
    from tfstyle.core.images import ImageError
    from tfstyle.deploy import client

    images = argv[1:]
    if not images:
        raise app.UsageError("give one or more IMAGE files after the flags")
    options, _ = from_flags(ClientOptions)
    try:
        written = client.translate_images(options, images, FLAGS.out_dir)
    except (client.ClientError, ImageError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
