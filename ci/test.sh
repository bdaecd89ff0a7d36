#!/usr/bin/env bash
# The one test command: the CPU suite, then the CUDA suite under the Numba CUDA
# simulator (no GPU needed).  Extra arguments go to both pytest runs.
# Tests run in FASTACT_TEST_WORKERS pytest-xdist processes (default: one per
# core; 0 runs them in this process).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
WORKERS=${FASTACT_TEST_WORKERS:-auto}
if [ "$WORKERS" = "0" ] || ! "$PY" -c "import xdist" 2>/dev/null; then
    PAR=()
else
    PAR=(-n "$WORKERS")
fi
"$PY" -m pytest -q "${PAR[@]}" -m "not cudasim" "$@"
rc=0
NUMBA_ENABLE_CUDASIM=1 "$PY" -m pytest -q "${PAR[@]}" -m cudasim "$@" || rc=$?
# 5: no test collected, which is what an environment without numba-cuda gives
# (tests/test_cuda.py skips itself); anything else non-zero is a failure.
if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then
    exit "$rc"
fi
