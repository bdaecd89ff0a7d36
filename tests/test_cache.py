"""Compiled kernels are reused from Numba's disk cache by a new process."""
import os
import subprocess
import sys

SCRIPT = r"""
import numpy as np
import fastact as fa
from fastact.cpu import axis_kernels, elementwise
from fastact.losses import kernels as loss_kernels

x = np.linspace(-3, 3, 64).astype(np.float32)
fa.relu.value_and_derivative(x)                        # 256-bit kernel
fa.gelu.value_and_derivative(x, approximate="tanh")    # prefer_wide_vectors kernels
fa.swiglu.forward_backward(x.reshape(8, 8), np.ones((8, 4), np.float32))
fa.sigmoid_binary_cross_entropy.value_and_grad(x, (x > 0).astype(np.float32))
big = np.linspace(-3, 3, 40000).astype(np.float32)     # streamed (FASTACT_STREAM_MIN=0)
fa.hardtanh.forward_backward(big, big)
fa.mse.value_and_grad(big, big)
passes = elementwise._KERNELS.values()
pairs = [*(k.pair for k in passes), *(p for k in passes for p in k._streamed.values()),
         *axis_kernels._GATED.values(), *loss_kernels._ELEMENTWISE.values()]
dispatchers = [d for p in pairs for d in (p._serial, p._parallel) if d is not None]
hits = sum(sum(d.stats.cache_hits.values()) for d in dispatchers)
misses = sum(sum(d.stats.cache_misses.values()) for d in dispatchers)
print(len(dispatchers), hits, misses)
"""


def _run(cache_dir):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "FASTACT_STREAM_MIN": "0"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, check=True)
    return tuple(int(v) for v in out.stdout.split())


def test_kernels_load_from_disk_cache_in_a_new_process(tmp_path):
    n, hits, misses = _run(tmp_path)
    assert n >= 6 and hits == 0 and misses == n       # compiled and saved
    n2, hits, misses = _run(tmp_path)
    assert (n2, hits, misses) == (n, n, 0), "a kernel was compiled again instead of loaded"
