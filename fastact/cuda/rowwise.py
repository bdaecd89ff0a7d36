"""Row-wise kernels of the softmax family (softmax, log_softmax, softmin) for CUDA.

One block per row (grid-stride over rows).  With v = sign * x, the first pass
over a row keeps per thread an online (max m, sum s of exp(v - m), t) where
t = sum dy exp(v - m) for softmax's gradient (rescaled with m) or t = sum dy
for log_softmax's; ``reduce.block_softmax_stats`` merges the threads'
partials; the second pass writes y and/or dx in the same kernel:

  softmax:      p = exp(v - m) / s,   dx = sign * p * (dy - t / s)
  log_softmax:  y = v - (m + log s),  dx = sign * (dy - p * t)

Sums are accumulated in the compute dtype (float32 for float32/float16
inputs, float64 for float64).  The row is addressed through a 3-D
(outer, n, inner) view of the C-contiguous input, so ``axis`` needs no
transpose.  Each thread writes only indices it has read itself after the
block barrier, so outputs may alias inputs exactly.  Special values follow the
CPU kernels: NaN anywhere in a row gives a NaN row, -inf entries give 0
(log: -inf), a +inf entry gives a NaN row, an all -inf row gives NaN.
"""
import math

import numpy as np
from numba import cuda, types

from .. import api
from ..mathlib import exp, lit, log
from . import core
from .reduce import SLOTS, block_softmax_stats

_KERNELS: dict = {}


def make_kernel(dtype, sign_value, log_output, need_dy, write_y, write_dx,
                threads=core.THREADS):
    key = (np.dtype(dtype), sign_value, log_output, need_dy, write_y, write_dx, threads)
    k = _KERNELS.get(key)
    if k is not None:
        return k
    nt = threads
    nbdt = types.float32 if np.dtype(dtype) == np.float32 else types.float64

    def rowwise(x, dy, y, dx):
        outer, n, inner = x.shape
        rows = outer * inner
        sm = cuda.shared.array(SLOTS, nbdt)
        ss = cuda.shared.array(SLOTS, nbdt)
        st = cuda.shared.array(SLOTS, nbdt)
        tid = cuda.threadIdx.x
        for r in range(cuda.blockIdx.x, rows, cuda.gridDim.x):
            o = r // inner
            i = r - o * inner
            x0 = x[o, 0, i]
            sign = lit(x0, sign_value)
            zero = lit(x0, 0.0)
            one = lit(x0, 1.0)
            ninf = lit(x0, -math.inf)
            m = ninf
            s = zero
            t = zero
            for j in range(tid, n, nt):
                v = sign * x[o, j, i]
                g = dy[o, j, i] if need_dy else zero
                if v > m:
                    a = exp(m - v)
                    s = s * a + one
                    if log_output:
                        t = t + g
                    else:
                        t = t * a + g
                    m = v
                else:
                    e = zero if v == ninf else exp(v - m)
                    s = s + e
                    if log_output:
                        t = t + g
                    else:
                        t = t + g * e
            m, s, t = block_softmax_stats(sm, ss, st, m, s, t, not log_output)
            if m == -ninf:
                s = s * (m - m)           # exp(inf - inf): NaN, as on the CPU
            inv = one / s
            shift = m + log(s)
            dot = t * inv
            for j in range(tid, n, nt):
                v = sign * x[o, j, i]
                if log_output:
                    # dy is read before y is written: y may be dy's memory
                    g = dy[o, j, i] if write_dx else zero
                    if write_y:
                        y[o, j, i] = v - shift
                    if write_dx:
                        p = exp(v - m) * inv
                        dx[o, j, i] = sign * (g - p * t)
                else:
                    p = exp(v - m) * inv
                    if write_dx:
                        g = dy[o, j, i]
                        dx[o, j, i] = sign * p * (g - dot)
                    if write_y:
                        y[o, j, i] = p
            cuda.syncthreads()

    k = _KERNELS[key] = core.jit(rowwise, nt)
    return k


def run(spec, pass_name, inputs, roles, out, axis):
    """One pass (forward, backward, forward_backward) of a row-wise op on the GPU.

    Containers as for elementwise ops: device arrays in, device arrays out;
    NumPy in with ``backend="cuda"``: copied in and out.
    """
    name = f"{spec.name}.{pass_name}"
    if pass_name not in ("forward", "backward", "forward_backward"):
        raise NotImplementedError(f"{name} is not a pass of a row-wise op")
    call = core.prepare(inputs, roles, name, out=out)
    shape = call.shape
    ax = api.normalize_axis(axis, len(shape), name)
    outer, n, inner = api.split_axis(shape, ax)
    n_out = 2 if pass_name == "forward_backward" else 1
    outs = call.outputs([shape] * n_out, out, name)
    if outer * n * inner == 0:
        return outs.finish()
    view = [a.reshape(outer, n, inner) for a in call.arrays]
    res = [a.reshape(outer, n, inner) for a in outs.arrays]
    x = view[0]
    dy = view[1] if pass_name != "forward" else x
    if pass_name == "forward":
        y, dx = res[0], x
    elif pass_name == "backward":
        y, dx = x, res[0]
    else:
        y, dx = res
    nt = core.row_threads(n)
    k = make_kernel(call.compute, float(spec.extra["sign"]), bool(spec.extra["log"]),
                    pass_name != "forward", pass_name != "backward", pass_name != "forward", nt)
    rows = outer * inner
    blocks = min(rows, core.max_blocks() if core.SIM else 2 ** 31 - 1)
    core.launch(k, blocks, nt, x, dy, y, dx)
    return outs.finish()
