#!/usr/bin/env bash
# GPU check of the cuda backend, on a machine with an NVIDIA GPU and numba-cuda
# (pip install -e ".[test,cuda]"; CUDA 13 driver stacks: ".[test,cuda13]").
#   1. the CUDA tests on the real GPU (simulator off)
#   2. every kernel compiled for the CUDA target (typing + lowering, float32 purity)
#   3. the GPU benchmark table (tests/cuda_bench.py): fused elementwise passes at
#      2^26 float32 as % of a device-to-device copy, and
#      sparse_softmax_cross_entropy.value_and_grad on 16384x32768 float32 logits
#      (% of copy bandwidth, target >= 70%) against torch.cuda F.cross_entropy
#      forward+backward when torch with CUDA is installed.
# Extra arguments go to the benchmark (e.g. --reps 50 --log2n 24).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export NUMBA_ENABLE_CUDASIM=0
"$PY" - <<'PYEOF'
import sys
from fastact import cuda
if not cuda.is_available() or cuda.simulator_enabled():
    sys.exit("gpu_check: no usable CUDA GPU here (numba-cuda + driver needed)")
print("device:", cuda.device_info())
PYEOF
echo "== CUDA tests (real GPU) =="
"$PY" -m pytest -q -m cudasim tests/test_cuda.py
echo "== CUDA target lowering of every kernel =="
"$PY" tests/cuda_lowering.py | grep -v '^ok ' 
echo "== GPU benchmark =="
"$PY" tests/cuda_bench.py "$@"
