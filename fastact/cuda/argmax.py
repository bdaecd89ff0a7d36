"""argmax on the GPU: int64 index of the maximum along an axis.

x is viewed as (outer, n, inner); NaN counts as the maximum and the first
maximum wins (``axis_ops.beats``, the rule of the CPU kernel and torch.argmax).
Along the last axis (inner = 1) one warp takes a row: its lanes read the row
together (coalesced), each keeps the best of its elements, and
``reduce.warp_argmax`` merges them.  Otherwise one thread per (outer, inner)
result scans its column, and neighbouring threads read neighbouring
addresses.  The result is int64 on the device (device mode) or copied back
into a NumPy / torch CPU int64 array (host mode).
"""
import numba
import numpy as np
from numba import cuda, types

from .. import api, dispatch
from ..ops.axis_ops import beats, best_of
from . import core
from .reduce import SLOTS, WARP, warp_argmax


@cuda.jit
def _argmax(x, out):
    outer, n, inner = x.shape
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for t in range(start, outer * inner, stride):
        r = t // inner
        i = t - r * inner
        _, arg = best_of(x, r, i, n)
        out[r, i] = arg


@cuda.jit(device=True)
def _keep(best, arg, v, j):
    """The running (max, index) after element j, by the rule of ``beats``."""
    if beats(v, best):
        return v, j
    return best, arg


_ROWS: dict = {}


def _rows_kernel(dtype):
    """argmax of each row of x (rows, n), one warp per row."""
    k = _ROWS.get(np.dtype(dtype))
    if k is not None:
        return k
    nbdt = numba.from_dtype(np.dtype(dtype))

    def argmax_rows(x, out):
        shv = cuda.shared.array(SLOTS, nbdt)
        shi = cuda.shared.array(SLOTS, types.int64)
        rows, n = x.shape
        lane = cuda.threadIdx.x % WARP
        warp = cuda.grid(1) // WARP
        for r in range(warp, rows, cuda.gridsize(1) // WARP):
            j0 = lane if lane < n else 0
            best = x[r, j0]
            arg = np.int64(j0)
            # four loads in flight per lane, compared in index order
            j = lane + WARP
            while j + 3 * WARP < n:
                v0 = x[r, j]
                v1 = x[r, j + WARP]
                v2 = x[r, j + 2 * WARP]
                v3 = x[r, j + 3 * WARP]
                best, arg = _keep(best, arg, v0, j)
                best, arg = _keep(best, arg, v1, j + WARP)
                best, arg = _keep(best, arg, v2, j + 2 * WARP)
                best, arg = _keep(best, arg, v3, j + 3 * WARP)
                j += 4 * WARP
            while j < n:
                best, arg = _keep(best, arg, x[r, j], j)
                j += WARP
            best, arg = warp_argmax(shv, shi, best, arg)
            if lane == 0:
                out[r] = arg

    k = _ROWS[np.dtype(dtype)] = cuda.jit(argmax_rows)
    return k


def _launch(a, res, outer, n, inner):
    """res (outer, inner) = argmax of a viewed as (outer, n, inner)."""
    if inner == 1:
        blocks, threads = core.grid(outer * WARP)      # a warp per row
        core.launch(_rows_kernel(a.dtype), blocks, threads, a.reshape(outer, n),
                    res.reshape(outer))
        return
    blocks, threads = core.grid(outer * inner)
    core.launch(_argmax, blocks, threads, a.reshape(outer, n, inner),
                res.reshape(outer, inner))


def run(spec, x, out, axis):
    name = f"{spec.name}"
    idx = np.dtype(np.int64)
    call = core.prepare((x,), ("x",), name, out=out)
    a = call.arrays[0]
    shape = tuple(a.shape) or (1,)
    if a.ndim == 0:
        a = a.reshape(1)
    ax = api.normalize_axis(axis, len(shape), name)
    if shape[ax] == 0:
        raise ValueError(f"{name}: argmax of an empty axis")
    yshape = shape[:ax] + shape[ax + 1:]
    outer, n, inner = api.split_axis(shape, ax)
    if call.mode == "host":
        host = dispatch.Outputs([yshape], idx, idx, call.host_container, out, (), name)
        res = core.device_empty(yshape, idx)
        if outer * inner:
            _launch(a, res, outer, n, inner)
            res.copy_to_host(host.arrays[0])
        return host.finish()
    outs = core.DeviceOutputs([yshape], call, out, name, dtypes=[idx])
    if outer * inner:
        _launch(a, outs.arrays[0], outer, n, inner)
    return outs.finish()
