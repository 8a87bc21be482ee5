#!/usr/bin/env bash
# The prepared GPU check (issue 14), one call of at most 8 minutes on the device machine:
#   run from the repository root; installs the project with JAX's CUDA backend, then times
#   brute force and culling at 1024², 4096², 16384², the gradient compile, and the seed's
#   CuPy approach side by side. Results: $OUT/gpu_check.json (or experiments/results/).
# On a CPU machine, `SIZES=64,128 bash experiments/gpu_check.sh` checks the script itself.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES="${SIZES:-1024,4096,16384}"
OUT_DIR="${OUT:-experiments/results}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if command -v nvidia-smi > /dev/null; then
  .venv/bin/pip install -q -e '.[cuda]'
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
else
  .venv/bin/pip install -q -e .
fi
timeout 450 .venv/bin/python experiments/gpu_check.py --sizes "$SIZES" --budget 15 \
  --out "$OUT_DIR/gpu_check.json"
