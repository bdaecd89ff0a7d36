"""Row reductions (max, float64 sum, float64 dot), compiled apart with reassoc.

They hold no transcendental code, so reassociation (which lets LLVM vectorize
the sums) cannot disturb the polynomial math of the kernels that call them.
"""
import numpy as np
from numba import njit

from .jit import REDUCE_FASTMATH

_OPTS = dict(fastmath=REDUCE_FASTMATH, error_model="numpy", nogil=True, cache=True)
_LANES = 16


@njit(**_OPTS)
def scaled_max(a, sign):
    """max_j sign * a[j] (NaN entries are skipped; the callers' sums see them)."""
    acc = np.full(_LANES, a.dtype.type(-np.inf))
    n = a.size - a.size % _LANES
    for j0 in range(0, n, _LANES):
        for k in range(_LANES):
            v = sign * a[j0 + k]
            acc[k] = v if v > acc[k] else acc[k]
    m = a.dtype.type(-np.inf)
    for k in range(_LANES):
        m = acc[k] if acc[k] > m else m
    for j in range(n, a.size):
        v = sign * a[j]
        m = v if v > m else m
    return m


@njit(**_OPTS)
def sum64(a):
    """sum_j a[j], accumulated in float64."""
    s = 0.0
    for j in range(a.size):
        s += np.float64(a[j])
    return s


@njit(**_OPTS)
def dot64(a, b):
    """sum_j a[j] * b[j], accumulated in float64."""
    s = 0.0
    for j in range(a.size):
        s += np.float64(a[j]) * np.float64(b[j])
    return s
