"""prelu on the GPU: y = x if x > 0 else w[c] x, one weight or one per channel.

x is viewed as (outer, C, inner) (C = 1, inner = x.size for a single weight).

* forward: one grid-stride loop over the elements, channel (e // inner) % C.
* backward / forward_backward: dx (and y) elementwise, and the weight gradient
  dw[c] = sum of dy x over x <= 0 as a block reduction: the elements of each
  channel are cut in ``nseg`` segments; a block takes a (channel, segment)
  task, its threads accumulate dy x over the segment in the compute dtype,
  ``reduce.block_sum`` gives the block's partial sum, written to ``partial[task]``; one
  small finishing kernel (one thread per channel) sums the ``nseg`` partials
  of each channel into dw.  No atomics, so the result is deterministic.

The CPU accumulates dw in float64; here float32 inputs accumulate in float32
(with a tree over threads and segments, the error is a few ulp times
log2 of the count).  Each thread reads x and dy at an index before writing
there, so y / dx may alias x / dy exactly.
"""
import numpy as np
from numba import cuda, types

from .. import api
from ..mathlib import lit
from . import core
from .reduce import SLOTS, block_sum

_KERNELS: dict = {}


@cuda.jit
def _forward(x, w, y, c, inner):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, x.size, stride):
        ch = (e // inner) % c
        v = x[e]
        y[e] = v if v > lit(v, 0.0) else w[ch] * v


def _backward_template(dtype, write_y):
    nt = core.THREADS
    nbdt = types.float32 if np.dtype(dtype) == np.float32 else types.float64

    def prelu_backward(x, dy, w, y, dx, partial, c, inner, nseg, seglen):
        sh = cuda.shared.array(SLOTS, nbdt)
        tid = cuda.threadIdx.x
        m = x.size // c                      # elements per channel
        for task in range(cuda.blockIdx.x, c * nseg, cuda.gridDim.x):
            ch = task // nseg
            seg = task - ch * nseg
            wc = w[ch]
            acc = lit(wc, 0.0)
            lo = seg * seglen
            hi = min(m, lo + seglen)
            for j in range(lo + tid, hi, nt):
                o = j // inner
                e = (o * c + ch) * inner + (j - o * inner)
                v = x[e]
                d = dy[e]
                if write_y:
                    y[e] = v if v > lit(v, 0.0) else wc * v
                if v > lit(v, 0.0):
                    dx[e] = d
                else:
                    dx[e] = wc * d
                    acc += d * v
            tot = block_sum(sh, acc)
            if tid == 0:
                partial[task] = tot
    return prelu_backward


@cuda.jit
def _finish(partial, dw, nseg):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for ch in range(start, dw.size, stride):
        s = partial[ch * nseg]
        for k in range(1, nseg):
            s += partial[ch * nseg + k]
        dw[ch] = s


def backward_kernel(dtype, write_y):
    key = (np.dtype(dtype), write_y)
    k = _KERNELS.get(key)
    if k is None:
        k = _KERNELS[key] = cuda.jit(_backward_template(dtype, write_y))
    return k


def segments(m: int, c: int) -> tuple[int, int]:
    """(nseg, seglen): enough (channel, segment) tasks to fill the device, each at
    least one element per thread."""
    nt = core.THREADS
    want = max(1, -(-core.max_blocks() // c))
    nseg = max(1, min(-(-m // (nt * 4)), want))
    seglen = max(1, -(-m // nseg))
    nseg = max(1, -(-m // seglen))
    return nseg, seglen


def run(spec, pass_name, inputs, roles, out, axis):
    """forward -> y, backward -> (dx, dweight), forward_backward -> (y, dx, dweight)."""
    name = f"{spec.name}.{pass_name}"
    if pass_name not in ("forward", "backward", "forward_backward"):
        raise NotImplementedError(f"{name} is not a pass of prelu")
    call = core.prepare(inputs, roles, name, same_shape=False, out=out)
    x, w = call.arrays[0], call.arrays[-1]
    xs, ws = tuple(x.shape), tuple(w.shape)
    if len(call.arrays) == 3 and tuple(call.arrays[1].shape) != xs:
        raise ValueError(f"{name}: dy has shape {tuple(call.arrays[1].shape)}, expected {xs}")
    if w.size == 1:
        c, inner = 1, max(1, x.size)
    else:
        if w.ndim != 1:
            raise ValueError(f"{name}: weight must have one value or be 1-d, got shape {ws}")
        ax = api.normalize_axis(axis, len(xs), name)
        if len(xs) == 0 or xs[ax] != w.size:
            raise ValueError(f"{name}: weight has {w.size} values but axis {axis} of x "
                             f"has size {xs[ax] if len(xs) else 1}")
        _, c, inner = api.split_axis(xs, ax)
    shapes = {"forward": [xs], "backward": [xs, ws],
              "forward_backward": [xs, xs, ws]}[pass_name]
    outs = call.outputs(shapes, out, name)
    xf, wf = core.flat(x), core.flat(w)
    n = x.size
    if pass_name == "forward":
        if n:
            blocks, threads = core.grid(n)
            core.launch(_forward, blocks, threads, xf, wf, core.flat(outs.arrays[0]), c,
                        max(1, inner))
        return outs.finish()
    dwf = core.flat(outs.arrays[-1])
    if n == 0 or inner == 0:
        if dwf.size:
            b0, t0 = core.grid(dwf.size)
            core.launch(_zero, b0, t0, dwf)
        return outs.finish()
    m = n // c
    nseg, seglen = segments(m, c)
    partial = core.device_empty((c * nseg,), call.compute)
    dyf = core.flat(call.arrays[1])
    dxf = core.flat(outs.arrays[-2])
    yf = core.flat(outs.arrays[0]) if pass_name == "forward_backward" else dxf
    tasks = c * nseg
    blocks = min(tasks, core.max_blocks() if core.SIM else 2 ** 31 - 1)
    core.launch(backward_kernel(call.compute, pass_name == "forward_backward"), blocks,
                core.THREADS, xf, dyf, wf, yf, dxf, partial, c, inner, nseg, seglen)
    b2, t2 = core.grid(c)
    core.launch(_finish, b2, t2, partial, dwf, nseg)
    return outs.finish()


@cuda.jit
def _zero(a):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, a.size, stride):
        a[i] = 0
