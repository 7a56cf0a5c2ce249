#!/usr/bin/env bash
# The GPU check of issue 19 (docs/benchmarks.md, "Training step"). On one GPU, in under 8
# minutes (each part has a time limit; their sum is 7.8 minutes), it prints, at 256 px,
# ngf = ndf = 64, 9 blocks, batch 1:
#   1. ours float32 (XLA by the default rule, on with a GPU, and off) against the official
#      PyTorch CycleGAN (float32), in interleaved rounds;
#   2. ours with XLA + bfloat16;
#   3. ours on the GPU split in two logical devices: a two-replica MirroredStrategy step
#      (global batch 2), float32, XLA by the default rule.
#
# usage: bench/gpu_check.sh REFERENCE_DIR     (a checkout of zenml-io/pytorch-CycleGAN-and-pix2pix)
#        bench/gpu_check.sh --dry_run [REFERENCE_DIR]
#        --part=N runs part N alone (part 1 needs REFERENCE_DIR).
# PYTHON (default: python3) must import tensorflow and tfstyle; REFERENCE_PYTHON (default:
# PYTHON) a CUDA build of torch. --dry_run runs the same commands on the CPU at a tiny size
# (32 px, ngf 4, one step): a check of the script, not a measurement; without REFERENCE_DIR
# part 1 measures ours alone. The script fails with a message naming the part, never hangs.
set -u -o pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
REFERENCE_PYTHON=${REFERENCE_PYTHON:-$PYTHON}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

fail() { echo "gpu_check: $*" >&2; exit 1; }

dry_run=0 reference="" part=all
for arg in "$@"; do
  case "$arg" in
    --dry_run) dry_run=1 ;;
    --part=[123]) part=${arg#--part=} ;;
    -*) fail "unknown option $arg (usage: bench/gpu_check.sh [--dry_run] [--part=1|2|3] REFERENCE_DIR)" ;;
    *) reference=$arg ;;
  esac
done
wants() { [ "$part" = all ] || [ "$part" = "$1" ]; }
if [ -z "$reference" ] && [ $dry_run = 0 ] && wants 1; then
  fail "give the reference checkout: bench/gpu_check.sh REFERENCE_DIR (zenml-io/pytorch-CycleGAN-and-pix2pix)"
fi
if [ -n "$reference" ] && [ ! -f "$reference/models/cycle_gan_model.py" ]; then
  fail "$reference is not a pytorch-CycleGAN-and-pix2pix checkout (no models/cycle_gan_model.py)"
fi

# Time limits in seconds: each preflight (TensorFlow, torch), parts 1, 2 and 3.
if [ $dry_run = 1 ]; then
  device=cpu limits=(60 240 120 120) rounds=1
  model=(--sizes=32 --ngf=4 --ndf=4 --n_blocks=$( [ -n "$reference" ] && echo 6 || echo 1) --warmup=1 --steps=1)
else
  device=gpu limits=(30 210 100 100) rounds=3
  model=(--sizes=256 --ngf=64 --ndf=64 --n_blocks=9 --warmup=3 --steps=10)
fi

if [ $device = gpu ]; then
  echo "== preflight"
  timeout "${limits[0]}" "$PYTHON" - <<'EOF' || fail "preflight failed or took over ${limits[0]} s"
import sys
import tensorflow as tf
import tfstyle  # noqa: F401
gpus = tf.config.list_physical_devices("GPU")
if not gpus:
    sys.exit("gpu_check: TensorFlow sees no GPU (this check needs one; --dry_run checks the "
             "script on the CPU)")
print(f"TensorFlow {tf.__version__}, GPUs: {[g.name for g in gpus]}")
EOF
fi
if [ -n "$reference" ] && wants 1; then
  timeout "${limits[0]}" "$REFERENCE_PYTHON" - "$device" <<'EOF' || fail "REFERENCE_PYTHON=$REFERENCE_PYTHON cannot run the reference (it needs torch, with CUDA on a GPU)"
import sys
import torch
if sys.argv[1] == "gpu" and not torch.cuda.is_available():
    sys.exit("gpu_check: this torch sees no CUDA device")
print(f"PyTorch {torch.__version__}")
EOF
fi

if wants 1; then
  echo
  echo "== 1. ours float32 (XLA by the default rule, and off) against the reference"
  if [ -n "$reference" ]; then
    timeout "${limits[1]}" "$PYTHON" bench/cyclegan_step.py --reference_dir="$reference" \
      --reference_python="$REFERENCE_PYTHON" "${model[@]}" --jit=auto,false \
      --rounds=$rounds --worker_timeout="${limits[1]}" \
      || fail "part 1 failed or took over ${limits[1]} s"
  else
    echo "(dry run without REFERENCE_DIR: ours alone)"
    timeout "${limits[1]}" "$PYTHON" bench/cyclegan_step.py "${model[@]}" --jit=auto \
      || fail "part 1 failed or took over ${limits[1]} s"
  fi
fi

if wants 2; then
  echo
  echo "== 2. ours, XLA + bfloat16"
  timeout "${limits[2]}" "$PYTHON" bench/cyclegan_step.py "${model[@]}" --precisions=bfloat16 \
    --jit=true || fail "part 2 failed or took over ${limits[2]} s"
fi

if wants 3; then
  echo
  echo "== 3. two logical devices on one $device: a two-replica MirroredStrategy step"
  timeout "${limits[3]}" "$PYTHON" bench/cyclegan_step.py "${model[@]}" --logical_devices=2 \
    --strategy=mirrored --jit=auto || fail "part 3 failed or took over ${limits[3]} s"
fi
echo
echo "gpu_check: done"
