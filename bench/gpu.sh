#!/usr/bin/env bash
# The whole GPU check in one go, on a lent CUDA machine with no network (README, "GPU").
#
#   here, once, with network:    bench/gpu_wheels.sh            # -> .whl/ (git-ignored)
#   on the GPU machine:          OUT=/some/folder bench/gpu.sh  # carry .whl with the tree
#   here, on the CPU, first:     OUT=/tmp/gpu-dry bench/gpu.sh --dry-run
#
# The GPU machine's own python3 holds the CUDA torch: a venv that sees it
# (--system-site-packages) gets the wheels of .whl/ with --no-index --no-deps; the project's
# torch pin does not apply there. Then: pytest -m gpu; bench/train.py on CelebA's training-split
# size (162,770 images 64x64x3, made there) in fp32 and bf16, floor vs vaelab's path vs the JPEG
# DataLoader; bench/gpu.py: torch.compile, peak GPU memory, a torch.profiler summary of one
# epoch and one evaluation pass over CelebA's 19,962 test images. Every output goes to $OUT.
# The dry run does all of it on the CPU with small sizes and this checkout's .venv, and checks
# that the wheels of .whl/ install on Python 3.12 without installing them.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/gpu-out}
mkdir -p "$OUT"
if [[ "${1:-}" == "--dry-run" ]]; then
  PY=${PYTHON:-.venv/bin/python}
  IMAGES=1024 JPEGS=256 TEST=512 DEVICE=cpu PRECISIONS=fp32
  "$PY" -m pip install -q --dry-run --no-index --no-deps --ignore-installed --target "$(mktemp -d)" \
    --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    .whl/*.whl
  echo "dry run: the wheels of .whl/ install on cp312 manylinux" | tee "$OUT/env.txt"
else
  VENV=${VENV:-/tmp/vaelab-gpu}
  python3 -m venv --system-site-packages "$VENV"
  "$VENV/bin/python" -m pip install -q --no-index --no-deps --no-cache-dir .whl/*.whl
  PY=$VENV/bin/python
  IMAGES=162770 JPEGS=20000 TEST=19962 DEVICE=cuda PRECISIONS="fp32 bf16"
  nvidia-smi | tee "$OUT/env.txt"
fi
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
  | tee -a "$OUT/env.txt"
# The GPU tests (skipped on the CPU: the dry run checks that they are collected and run).
"$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py tests/test_eval.py \
  2>&1 | tee "$OUT/pytest_gpu.txt"
# Seven files in all, few enough for any copy-back limit.
: > "$OUT/train.txt"
for precision in $PRECISIONS; do
  "$PY" bench/train.py --images "$IMAGES" --jpegs "$JPEGS" --device "$DEVICE" \
    --precision "$precision" 2>&1 | tee -a "$OUT/train.txt"
done
"$PY" bench/gpu.py --images "$IMAGES" --test-images "$TEST" --device "$DEVICE" --out "$OUT" \
  2>&1 | tee "$OUT/gpu.txt"
ls -l "$OUT"
