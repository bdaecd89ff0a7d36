#!/usr/bin/env bash
# GPU check of the cuda backend, on a machine with an NVIDIA GPU and numba-cuda
# (pip install -e ".[test,cuda]"; CUDA 13 driver stacks: ".[test,cuda13]").
#   1. the CUDA tests on the real GPU (simulator off)
#      (they include the CUDA-target lowering check of every kernel,
#      tests/cuda_lowering.py)
#   2. the GPU benchmark table (tests/cuda_bench.py): fused elementwise passes at
#      2^26 float32 as % of a device-to-device copy, and
#      sparse_softmax_cross_entropy.value_and_grad on 16384x32768 float32 logits
#      (% of copy bandwidth) against torch.cuda F.cross_entropy forward+backward
#      when torch with CUDA is installed
#   3. `fastact bench --device cuda` with the torch and JAX peers where installed
# Every step runs even when one before it fails; each step's output is also
# written to $GPU_CHECK_LOGS/<step>.log (default gpu_check_logs/).  Exits 1 if
# any step failed; GPU_CHECK_TIMEOUT (seconds, default 900) bounds each step.
# Extra arguments go to step 2 (e.g. --reps 50 --log2n 24).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
LOGS=${GPU_CHECK_LOGS:-gpu_check_logs}
WORKERS=${FASTACT_TEST_WORKERS:-8}
PEERS=${GPU_CHECK_PEERS:-numpy,torch,jax}
mkdir -p "$LOGS"
export NUMBA_ENABLE_CUDASIM=0
failed=()

step() {        # step NAME COMMAND...: run, tee to the log, remember a failure
    local name=$1; shift
    echo "== $name =="
    timeout "${GPU_CHECK_TIMEOUT:-900}" "$@" 2>&1 | tee "$LOGS/$name.log"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" != 0 ]; then echo "!! $name: exit $rc"; failed+=("$name"); fi
}

"$PY" - <<'PYEOF' || exit 1
import sys
from fastact import cuda
if not cuda.is_available() or cuda.simulator_enabled():
    sys.exit("gpu_check: no usable CUDA GPU here (numba-cuda + driver needed)")
import numba, numpy
try:
    import numba_cuda
    nc = numba_cuda.__version__
except Exception:
    nc = "?"
print("device:", cuda.device_info())
print(f"numba {numba.__version__}, numba-cuda {nc}, numpy {numpy.__version__}")
PYEOF

PAR=()
if [ "$WORKERS" != 0 ] && "$PY" -c "import xdist" 2>/dev/null; then PAR=(-n "$WORKERS"); fi
step tests "$PY" -m pytest -q -p no:cacheprovider "${PAR[@]}" -m cudasim tests/test_cuda.py
step bench "$PY" tests/cuda_bench.py "$@"
step peers "$PY" -m fastact bench --device cuda --sizes 2^25 --peers "$PEERS" \
    --no-progress --json "$LOGS/peers.json"
if [ ${#failed[@]} != 0 ]; then echo "gpu_check: failed: ${failed[*]}"; exit 1; fi
echo "gpu_check: all steps passed"
