#!/usr/bin/env bash
# The one test command: the CPU suite, then the CUDA suite under the Numba CUDA
# simulator (no GPU needed).  Extra arguments go to both pytest runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
"$PY" -m pytest -q -m "not cudasim" "$@"
NUMBA_ENABLE_CUDASIM=1 "$PY" -m pytest -q -m cudasim "$@"
