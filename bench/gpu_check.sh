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
#        bench/gpu_check.sh --reference_only REFERENCE_DIR
#        times the reference alone on the GPU, at the check's size and at the CPU table's
#        (64 px, ngf = ndf = 32, 6 blocks), three runs each (each at most 60 s, so under 7
#        minutes), for a machine where TensorFlow cannot run on the GPU; it first prints
#        what the machine has (PYTHON's TensorFlow, CUDA 12's runtime, which TensorFlow
#        2.21's GPU build loads, and REFERENCE_PYTHON's torch).
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

dry_run=0 reference="" part=all reference_only=0
for arg in "$@"; do
  case "$arg" in
    --dry_run) dry_run=1 ;;
    --reference_only) reference_only=1 ;;
    --part=[123]) part=${arg#--part=} ;;
    -*) fail "unknown option $arg (usage: bench/gpu_check.sh [--dry_run] [--part=1|2|3] [--reference_only] REFERENCE_DIR)" ;;
    *) reference=$arg ;;
  esac
done
wants() { [ "$part" = all ] || [ "$part" = "$1" ]; }
if [ $reference_only = 1 ] && [ "$part" != all ]; then
  fail "--reference_only times the reference alone; --part=$part does not apply to it"
fi
if [ -z "$reference" ] && { [ $reference_only = 1 ] || { [ $dry_run = 0 ] && wants 1; }; }; then
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

if [ $reference_only = 1 ]; then
  echo "== the machine"
  "$PYTHON" - <<'EOF'
import ctypes, importlib.util, platform, sys
print(f"PYTHON: Python {platform.python_version()} ({sys.executable})")
print("TensorFlow:", "importable" if importlib.util.find_spec("tensorflow") else "not installed")
for lib in ("libcudart.so.12", "libcublas.so.12", "libcudnn.so.9", "libcudart.so.13"):
    try:
        ctypes.CDLL(lib)
        print(f"{lib}: loads")
    except OSError:
        print(f"{lib}: not found")
EOF
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
  timeout "${limits[0]}" "$REFERENCE_PYTHON" - "$device" <<'EOF' || fail "REFERENCE_PYTHON=$REFERENCE_PYTHON cannot run the reference (it needs torch, with CUDA on a GPU)"
import sys
import torch
if sys.argv[1] == "gpu" and not torch.cuda.is_available():
    sys.exit("gpu_check: this torch sees no CUDA device")
print(f"PyTorch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version() if torch.cuda.is_available() else '-'}")
EOF
  torch_device=$( [ $device = gpu ] && echo cuda || echo cpu )
  steps=$( [ $dry_run = 1 ] && echo 1 || echo 30 )
  log=$(mktemp) && trap 'rm -f "$log"' EXIT
  for setting in "256 64 64 9" "64 32 32 6"; do
    read -r size ngf ndf blocks <<<"$setting"
    [ $dry_run = 1 ] && size=32 ngf=4 ndf=4 blocks=6
    for round in $(seq $rounds); do
      echo "== reference on the $device: $size px, ngf $ngf, ndf $ndf, $blocks blocks, round $round"
      # The reference prints all its options; its log keeps them, the table line is shown.
      timeout 60 "$REFERENCE_PYTHON" bench/pytorch_reference_step.py \
        --reference_dir="$reference" --device=$torch_device --size=$size --ngf=$ngf --ndf=$ndf \
        --n_blocks=$blocks --warmup=5 --steps=$steps >"$log" 2>&1 \
        || { tail -20 "$log"; fail "the reference run failed or took over 60 s"; }
      tail -1 "$log"
    done
  done
  echo
  echo "gpu_check: done"
  exit 0
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
