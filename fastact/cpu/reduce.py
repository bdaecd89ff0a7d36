"""Row reductions (max, float64 sum, float64 dot, argmax), compiled apart with reassoc.

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


@njit(**_OPTS)
def first_argmax(a):
    """Index of the first maximum of a (size >= 1), NaN counting as the largest
    value (np.argmax, torch.argmax).

    Vectorized in two sweeps instead of one loop with a dependent (max, index)
    pair: the maximum m of the non-NaN values and whether any is NaN, then the
    first block of _LANES elements holding the target (m, or a NaN), and the
    first match inside it.
    """
    m = scaled_max(a, a.dtype.type(1.0))
    nan = False
    for j in range(a.size):
        nan |= a[j] != a[j]
    n = a.size - a.size % _LANES
    for j0 in range(0, n, _LANES):
        hit = False
        for k in range(_LANES):
            v = a[j0 + k]
            hit |= (v != v) if nan else (v == m)
        if hit:
            for k in range(_LANES):
                v = a[j0 + k]
                if (v != v) if nan else (v == m):
                    return j0 + k
    for j in range(n, a.size):
        v = a[j]
        if (v != v) if nan else (v == m):
            return j
    return 0
