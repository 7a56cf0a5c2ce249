#!/usr/bin/env bash
# Copy the LiteRT models of an export (python -m export.generators) into the app's assets.
#
#   android_demo/fetch_models.sh EXPORT_DIR [--variants=float16,int8] \
#       [--names=PREFIX:A_NAME:B_NAME ...] [--dest=DIR]
#
# EXPORT_DIR is the exporter's --out_dir (or its tflite/ folder). Every file models.json names
# must be there with the size and sha256 it records, or nothing is copied. The destination
# (default: app/src/main/assets/models next to this script) is emptied of earlier *.tflite
# files and models.json first, then gets the files and a models.json listing exactly them.
#
#   --variants=float16,int8        keep only these variants (float32, float16, dynamic, int8)
#   --names=emotion:happy:scary    domain names of the models emotion_AtoB / emotion_BtoA, shown
#                                  by the app as "happy → scary"; repeat for several prefixes
#   --dest=DIR                     copy there instead of the app's assets
#
# Needs only bash and python3 (standard library).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec python3 - "$here" "$@" <<'PY'
import hashlib
import json
import os
import shutil
import sys
import tempfile

FORMAT, VERSION = "tfstyle.litert_models", 1
VARIANTS = ("float32", "float16", "dynamic", "int8")
USAGE = ("usage: fetch_models.sh EXPORT_DIR [--variants=float16,int8] "
         "[--names=PREFIX:A_NAME:B_NAME ...] [--dest=DIR]")


def fail(message):
    print(f"fetch_models.sh: error: {message}", file=sys.stderr)
    sys.exit(1)


def prefix_of(entry):
    """emotion for emotion_AtoB: the exporter names models <prefix>_<direction>."""
    name, direction = entry["model_name"], entry["direction"]
    return name[:-len(direction) - 1] if name.endswith("_" + direction) else name


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


here, args = sys.argv[1], sys.argv[2:]
export_dir, dest, variants, names = None, None, None, {}
for arg in args:
    if arg in ("-h", "--help"):
        print(USAGE)
        sys.exit(0)
    elif arg.startswith("--dest="):
        dest = arg.split("=", 1)[1]
    elif arg.startswith("--variants="):
        variants = [v.strip() for v in arg.split("=", 1)[1].split(",") if v.strip()]
        unknown = sorted(set(variants) - set(VARIANTS))
        if unknown or not variants:
            fail(f"--variants: unknown variant(s) {unknown or '(none given)'}; "
                 f"known: {', '.join(VARIANTS)}")
    elif arg.startswith("--names="):
        parts = arg.split("=", 1)[1].split(":")
        if len(parts) != 3 or not all(p.strip() for p in parts):
            fail(f"--names wants PREFIX:A_NAME:B_NAME (e.g. emotion:happy:scary), got {arg!r}")
        names[parts[0].strip()] = {"A": parts[1].strip(), "B": parts[2].strip()}
    elif arg.startswith("-"):
        fail(f"unknown option {arg!r}\n{USAGE}")
    elif export_dir is None:
        export_dir = arg
    else:
        fail(f"one EXPORT_DIR only, got {export_dir!r} and {arg!r}\n{USAGE}")
if export_dir is None:
    fail(f"EXPORT_DIR is missing\n{USAGE}")
dest = os.path.abspath(dest or os.path.join(here, "app", "src", "main", "assets", "models"))

source = None
for candidate in (os.path.join(export_dir, "tflite"), export_dir):
    if os.path.isfile(os.path.join(candidate, "models.json")):
        source = candidate
        break
if source is None:
    fail(f"no models.json in {os.path.join(export_dir, 'tflite')} or {export_dir}: export the "
         "generators first (python -m export.generators --model_dir=... --out_dir=EXPORT_DIR; "
         "without --tflite= or with a non-empty one)")
listing_path = os.path.join(source, "models.json")
try:
    with open(listing_path) as f:
        listing = json.load(f)
except ValueError as err:
    fail(f"{listing_path} is not valid JSON: {err}")
if listing.get("format") != FORMAT or listing.get("format_version") != VERSION:
    fail(f"{listing_path} has format {listing.get('format')!r} version "
         f"{listing.get('format_version')!r}; the app reads {FORMAT!r} version {VERSION}")
models = listing.get("models") or []
if not models:
    refused = listing.get("refused") or []
    why = "; ".join(f"{r.get('file')}: {r.get('reason')}" for r in refused)
    fail(f"{listing_path} lists no accepted models" + (f" (refused: {why})" if why else ""))

if variants is not None:
    models = [m for m in models if m.get("variant") in variants]
    if not models:
        have = sorted({m.get("variant") for m in listing["models"]})
        fail(f"no model of variant(s) {', '.join(variants)} in {listing_path} (it has: "
             f"{', '.join(map(str, have))})")

problems = []
for m in models:
    name = m.get("file")
    if not name or os.path.basename(name) != name:
        problems.append(f"entry {m.get('model_name')!r} {m.get('variant')!r} has no plain "
                        f"file name ({name!r})")
        continue
    path = os.path.join(source, name)
    if not os.path.isfile(path):
        problems.append(f"{path} is missing")
    elif os.path.getsize(path) != m.get("size_bytes"):
        problems.append(f"{path} has {os.path.getsize(path)} bytes, models.json says "
                        f"{m.get('size_bytes')}")
    elif m.get("sha256") and sha256(path) != m["sha256"]:
        problems.append(f"{path} does not match the sha256 in models.json")
if problems:
    fail("the export is incomplete, nothing was copied:\n  " + "\n  ".join(problems))

unused = set(names) - {prefix_of(m) for m in models}
if unused:
    fail(f"--names: no model with prefix {', '.join(sorted(unused))} (models: "
         f"{', '.join(sorted({m['model_name'] for m in models}))})")
for m in models:
    if prefix_of(m) in names:
        m["domain_names"] = names[prefix_of(m)]

os.makedirs(dest, exist_ok=True)
for old in os.listdir(dest):
    if old.endswith(".tflite") or old == "models.json":
        os.remove(os.path.join(dest, old))
for m in models:
    fd, tmp = tempfile.mkstemp(prefix=".fetch-", dir=dest)
    os.close(fd)
    shutil.copyfile(os.path.join(source, m["file"]), tmp)
    os.replace(tmp, os.path.join(dest, m["file"]))
document = dict(listing, models=models)
fd, tmp = tempfile.mkstemp(prefix=".fetch-", dir=dest)
with os.fdopen(fd, "w") as f:
    json.dump(document, f, indent=2)
    f.write("\n")
os.replace(tmp, os.path.join(dest, "models.json"))

total = sum(m["size_bytes"] for m in models)
print(f"copied {len(models)} model(s), {total / 1e6:.2f} MB, input {listing.get('size')} px, "
      f"into {dest}:")
for m in models:
    label = m.get("domain_names")
    arrow = (f" ({label.get(m['source_domain'], m['source_domain'])} -> "
             f"{label.get(m['target_domain'], m['target_domain'])})") if label else ""
    print(f"  {m['file']}{arrow}  {m['size_bytes'] / 1e6:.2f} MB")
PY
