"""maxout on the GPU: the maximum of each run of ``pieces`` entries along an axis.

x is viewed as (rows, pieces, inner) with rows = outer * groups; one
grid-stride loop over the rows * inner outputs.  NaN counts as the largest
value and the first of equal maxima wins (as the CPU kernels, torch.max).
The backward routes dy to the winning entry and writes 0 to the others; each
thread reads dy and its x entries before it writes, so y may alias dy and dx
may alias x exactly.
"""
from numba import cuda

from .. import api
from ..mathlib import lit
from ..ops.axis_ops import best_of
from . import core

_KERNELS: dict = {}


def _forward(x, y):
    rows, pieces, inner = x.shape
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for t in range(start, rows * inner, stride):
        r = t // inner
        i = t - r * inner
        best, _ = best_of(x, r, i, pieces)
        y[r, i] = best


def _backward_template(write_y):
    def maxout_backward(x, dy, y, dx):
        rows, pieces, inner = x.shape
        start, stride = cuda.grid(1), cuda.gridsize(1)
        for t in range(start, rows * inner, stride):
            r = t // inner
            i = t - r * inner
            best, arg = best_of(x, r, i, pieces)
            d = dy[r, i]
            zero = lit(d, 0.0)
            if write_y:
                y[r, i] = best
            for q in range(pieces):
                dx[r, q, i] = d if q == arg else zero
    return maxout_backward


def kernel(pass_name):
    k = _KERNELS.get(pass_name)
    if k is None:
        fn = _forward if pass_name == "forward" else _backward_template(
            pass_name == "forward_backward")
        k = _KERNELS[pass_name] = cuda.jit(fn)
    return k


def run(spec, pass_name, inputs, roles, out, pieces, axis):
    """forward -> y, backward -> dx, forward_backward -> (y, dx); errors as on the CPU
    (``pieces`` is already checked by ``MaxoutOp``)."""
    name = f"{spec.name}.{pass_name}"
    if pass_name not in ("forward", "backward", "forward_backward"):
        raise NotImplementedError(f"{name} is not a pass of maxout")
    pieces = int(pieces)
    call = core.prepare(inputs, roles, name, same_shape=False, out=out)
    shape = tuple(call.arrays[0].shape)
    if len(shape) == 0:
        raise ValueError(f"{name}: a 0-d input has no axis to group")
    ax = api.normalize_axis(axis, len(shape), name)
    if shape[ax] % pieces:
        raise ValueError(f"{name}: pieces={pieces} does not divide the size "
                         f"{shape[ax]} of axis {ax}")
    groups = shape[ax] // pieces
    yshape = shape[:ax] + (groups,) + shape[ax + 1:]
    if len(call.arrays) > 1 and tuple(call.arrays[1].shape) != yshape:
        raise ValueError(f"{name}: dy has shape {tuple(call.arrays[1].shape)}, "
                         f"expected {yshape}")
    shapes = {"forward": [yshape], "backward": [shape],
              "forward_backward": [yshape, shape]}[pass_name]
    outs = call.outputs(shapes, out, name)
    outer, _, inner = api.split_axis(shape, ax)
    rows = outer * groups
    if rows * inner == 0:
        return outs.finish()
    x3 = call.arrays[0].reshape(rows, pieces, inner)
    blocks, threads = core.grid(rows * inner)
    if pass_name == "forward":
        core.launch(kernel(pass_name), blocks, threads, x3, outs.arrays[0].reshape(rows, inner))
    else:
        dy2 = call.arrays[1].reshape(rows, inner)
        dx3 = outs.arrays[-1].reshape(rows, pieces, inner)
        y2 = outs.arrays[0].reshape(rows, inner) if pass_name == "forward_backward" else dy2
        core.launch(kernel(pass_name), blocks, threads, x3, dy2, y2, dx3)
    return outs.finish()
