#!/usr/bin/env bash
# The prepared GPU check (issues 14 and 21), one call of at most 8 minutes on the device
# machine: run from the repository root. Where a python3 already has JAX with a GPU backend
# (the device machine: nothing can be installed there, it has no network), that one runs
# the project from the checkout; otherwise a venv installs it (with JAX's CUDA backend when
# nvidia-smi is present). Times brute force and culling (the sign program and --exact) at
# 1024², 4096², 16384², the gradient's compile and run, the seed's CuPy approach, and the
# bear's and colonnade's heightmaps. Results: $OUT/gpu_check.json (or experiments/results/).
# The shared inputs come from PROSPERO_SHARED (default ../shared); the device gets a copy in
# an ignored, carried folder: `mkdir -p .gpu && cp -r ../shared/prospero.vm ../shared/models .gpu/`
# and `PROSPERO_SHARED=.gpu bash experiments/gpu_check.sh` with carry [".gpu"].
# On a CPU machine, `SIZES=64,128 bash experiments/gpu_check.sh` checks the script itself.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES="${SIZES:-1024,4096,16384}"
OUT_DIR="${OUT:-experiments/results}"
if [ -n "${PROSPERO_SHARED:-}" ]; then
  PROSPERO_SHARED="$(cd "$PROSPERO_SHARED" && pwd)"
  export PROSPERO_SHARED
fi
# JAX and CuPy share the card: no preallocation of 75% of it by JAX.
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"
if python3 -c 'import jax, sys; sys.exit(jax.default_backend() != "gpu")' 2> /dev/null; then
  PYTHON=python3
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  if command -v nvidia-smi > /dev/null; then
    .venv/bin/pip install -q -e '.[cuda]'
  else
    .venv/bin/pip install -q -e .
  fi
  PYTHON=.venv/bin/python
fi
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
"$PYTHON" -c 'import jax, numpy; print("jax", jax.__version__, "numpy", numpy.__version__, jax.devices())'
timeout 450 "$PYTHON" experiments/gpu_check.py --sizes "$SIZES" --budget "${BUDGET:-15}" \
  --heightmap "${HEIGHTMAP:-1024}" --out "$OUT_DIR/gpu_check.json"
