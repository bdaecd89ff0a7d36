"""Row-wise kernels of the softmax family on 2-D C-contiguous (rows, n) arrays.

With v = sign * x (sign = -1 gives softmin), m = max v, e = exp(v - m),
s = sum e (v - m <= 0, or NaN: exp_neg_abs takes it):  softmax p = e / s, log_softmax = (v - m) - log s.
Gradients (dy the upstream gradient, chain rule through sign):
  softmax:      dx = sign * p * (dy - sum(dy * p))
  log_softmax:  dx = sign * (dy - p * sum(dy))
Each row is read from memory once: the passes after the first run on data in
cache, e is kept in a per-thread row buffer, sums are float64.  Every output
element is written after the last read of the same index of every input, so
outputs may alias inputs exactly.
"""
import numpy as np
from numba import prange
from numba.extending import register_jitable

from ..mathlib import exp_neg_abs
from .jit import KernelPair
from .reduce import dot64, scaled_max, sum64


@register_jitable
def _chunks(rows):
    return max(1, min(rows, 64))


def _forward(x, y, sign, log_output):
    rows, n = x.shape
    nchunks = _chunks(rows)
    for c in prange(nchunks):
        e = np.empty(n, dtype=x.dtype)
        for r in range(c * rows // nchunks, (c + 1) * rows // nchunks):
            xr, yr = x[r], y[r]
            m = scaled_max(xr, sign)
            for j in range(n):
                e[j] = exp_neg_abs(sign * xr[j] - m)
            s = sum64(e)
            if log_output:
                ls = x.dtype.type(np.log(s))
                for j in range(n):
                    yr[j] = (sign * xr[j] - m) - ls
            else:
                inv = x.dtype.type(1.0 / s)
                for j in range(n):
                    yr[j] = e[j] * inv


def _backward(x, dy, y, dx, sign, log_output, write_y):
    """dx (and y when write_y; y is ignored otherwise) of each row."""
    rows, n = x.shape
    nchunks = _chunks(rows)
    for c in prange(nchunks):
        e = np.empty(n, dtype=x.dtype)
        # without write_y the y row goes to a scratch row: no condition in the
        # loops, which would keep LLVM from vectorizing them
        scratch = np.empty(0 if write_y else n, dtype=x.dtype)
        for r in range(c * rows // nchunks, (c + 1) * rows // nchunks):
            xr, dyr, dxr = x[r], dy[r], dx[r]
            yr = y[r] if write_y else scratch
            m = scaled_max(xr, sign)
            for j in range(n):
                e[j] = exp_neg_abs(sign * xr[j] - m)
            s = sum64(e)
            inv = x.dtype.type(1.0 / s)
            if log_output:
                ls = x.dtype.type(np.log(s))
                total = x.dtype.type(sum64(dyr))
                for j in range(n):
                    g = dyr[j] - e[j] * inv * total
                    yr[j] = (sign * xr[j] - m) - ls
                    dxr[j] = sign * g
            else:
                dot = x.dtype.type(dot64(dyr, e) / s)
                for j in range(n):
                    p = e[j] * inv
                    g = dyr[j]
                    yr[j] = p
                    dxr[j] = sign * p * (g - dot)


# The exp loop is one polynomial chain per vector: four interleaved vectors hide
# its latency (as in the elementwise kernels).  4096 x 4096 forward_backward on
# a 2-core AVX2 host (AMD Zen 3), ns per element, float32 / float64, LLVM's
# choice 1.32 / 2.78, two 1.24 / 2.41, four 1.18 / 2.20 (softmax).
INTERLEAVE = 4
FORWARD = KernelPair(_forward, interleave=INTERLEAVE)
BACKWARD = KernelPair(_backward, interleave=INTERLEAVE)
