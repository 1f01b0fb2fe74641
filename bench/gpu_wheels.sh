#!/usr/bin/env bash
# Here, with network: download what bench/gpu.sh needs on a GPU machine that has no network
# and its own Python 3.12 with a CUDA torch, numpy, pandas, scikit-image, scikit-learn,
# matplotlib, torchmetrics, pytest, tqdm, PyYAML and pillow (its image's package list), into
# .whl/ (git-ignored). What vaelab imports beyond those: pydantic and its core, pytorch-msssim,
# focal-frequency-loss, simplejpeg — the versions of constraints.txt and of this venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
version() { "$PY" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }
PACKAGES=(pydantic pydantic-core annotated-types typing-inspection pytorch-msssim
          focal-frequency-loss simplejpeg)
PINS=()
for name in "${PACKAGES[@]}"; do
  v=$(version "$name"); [[ -n "$v" ]] || { echo "gpu_wheels: $name is not installed in $PY" >&2; exit 2; }
  PINS+=("$name==$v")
done
rm -rf .whl && mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "${PINS[@]}"
ls -1 .whl
du -sh .whl
