"""Gated units (glu, swiglu, geglu) on the GPU.

x is viewed as (outer, 2, K) (the op's axis split in its two halves, K = half
size * inner), so no axis is moved in memory.  One grid-stride loop over the
outer * K output positions; each position reads both halves of x (and dy)
once and writes y and/or both halves of dx, calling the activation's
``Scalars.value_and_derivative`` (the same scalar as the CPU kernels and the
elementwise lowering):

    v = x[:, act, :], u = x[:, 1 - act, :];  y = u g(v);
    dx[:, 1 - act, :] = dy g(v),  dx[:, act, :] = dy u g'(v).

Each thread reads x and dy at a position before writing there, so dx may
alias x exactly (a partial overlap goes through a temporary, see
``core.DeviceOutputs``).
"""
from numba import cuda

from .. import api
from . import core

_KERNELS: dict = {}


def _forward_template(g, act):
    other = 1 - act

    def gated_forward(x, y, p):
        outer, _, k = x.shape
        start, stride = cuda.grid(1), cuda.gridsize(1)
        for t in range(start, outer * k, stride):
            o = t // k
            i = t - o * k
            gv, _ = g(x[o, act, i], *p)
            y[o, i] = x[o, other, i] * gv
    return gated_forward


def _backward_template(g, act, write_y):
    other = 1 - act

    def gated_backward(x, dy, y, dx, p):
        outer, _, k = x.shape
        start, stride = cuda.grid(1), cuda.gridsize(1)
        for t in range(start, outer * k, stride):
            o = t // k
            i = t - o * k
            v = x[o, act, i]
            u = x[o, other, i]
            d = dy[o, i]
            gv, dg = g(v, *p)
            if write_y:
                y[o, i] = u * gv
            dx[o, other, i] = d * gv
            dx[o, act, i] = d * u * dg
    return gated_backward


def kernel(scalars, act, pass_name):
    key = (id(scalars), act, pass_name)
    k = _KERNELS.get(key)
    if k is None:
        g = scalars.value_and_derivative
        if pass_name == "forward":
            fn = _forward_template(g, act)
        else:
            fn = _backward_template(g, act, pass_name == "forward_backward")
        k = _KERNELS[key] = cuda.jit(fn)
    return k


def _with_axis_size(shape, axis, n):
    s = list(shape)
    s[axis] = n
    return tuple(s)


def run(spec, scalars, pass_name, inputs, roles, out, axis, numeric):
    """forward -> y, backward -> dx, forward_backward -> (y, dx); errors as on the CPU."""
    name = f"{spec.name}.{pass_name}"
    if pass_name not in ("forward", "backward", "forward_backward"):
        raise NotImplementedError(f"{name} is not a pass of a gated unit")
    call = core.prepare(inputs, roles, name, same_shape=False, out=out)
    x = call.arrays[0]
    shape = tuple(x.shape)
    if len(shape) == 0:
        raise ValueError(f"{name}: a 0-d input cannot be split in halves")
    ax = api.normalize_axis(axis, len(shape), name)
    if shape[ax] % 2:
        raise ValueError(f"{name}: the size {shape[ax]} of axis {ax} is odd; "
                         "it must split in two halves")
    half = _with_axis_size(shape, ax, shape[ax] // 2)
    if len(call.arrays) > 1 and tuple(call.arrays[1].shape) != half:
        raise ValueError(f"{name}: dy has shape {tuple(call.arrays[1].shape)}, expected {half}")
    shapes = {"forward": [half], "backward": [shape],
              "forward_backward": [half, shape]}[pass_name]
    outs = call.outputs(shapes, out, name)
    outer, n, inner = api.split_axis(shape, ax)
    k = (n // 2) * inner
    if outer * k == 0:
        return outs.finish()
    x3 = x.reshape(outer, 2, k)
    p = call.scalars(numeric)
    blocks, threads = core.grid(outer * k)
    kern = kernel(scalars, int(spec.extra["act"]), pass_name)
    if pass_name == "forward":
        core.launch(kern, blocks, threads, x3, outs.arrays[0].reshape(outer, k), p)
    else:
        dy2 = call.arrays[1].reshape(outer, k)
        dx3 = outs.arrays[-1].reshape(outer, 2, k)
        y2 = outs.arrays[0].reshape(outer, k) if pass_name == "forward_backward" else dy2
        core.launch(kern, blocks, threads, x3, dy2, y2, dx3, p)
    return outs.finish()
