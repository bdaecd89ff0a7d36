"""argmax on the GPU: int64 index of the maximum along an axis.

x is viewed as (outer, n, inner); one grid-stride loop over the outer * inner
results, NaN counting as the maximum and the first maximum winning (the CPU
kernel, torch.argmax).  The result is int64 on the device (device mode) or
copied back into a NumPy / torch CPU int64 array (host mode).
"""
import numpy as np
from numba import cuda

from .. import api, dispatch
from . import core
from ..ops.axis_ops import best_of


@cuda.jit
def _argmax(x, out):
    outer, n, inner = x.shape
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for t in range(start, outer * inner, stride):
        r = t // inner
        i = t - r * inner
        _, arg = best_of(x, r, i, n)
        out[r, i] = arg


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
            blocks, threads = core.grid(outer * inner)
            _argmax[blocks, threads](a.reshape(outer, n, inner), res.reshape(outer, inner))
            res.copy_to_host(host.arrays[0])
        return host.finish()
    outs = core.DeviceOutputs([yshape], call, out, name, dtypes=[idx])
    if outer * inner:
        blocks, threads = core.grid(outer * inner)
        _argmax[blocks, threads](a.reshape(outer, n, inner),
                                 outs.arrays[0].reshape(outer, inner))
    return outs.finish()
