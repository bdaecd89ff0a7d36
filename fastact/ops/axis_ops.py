"""Ops across one axis: gated units (glu, swiglu, geglu), prelu, maxout, argmax.

Gated units split x along ``axis`` into halves a, b and reuse the elementwise
definitions of their activation: glu = a * sigmoid(b), swiglu = silu(a) * b,
geglu = gelu(a) * b.  ``extra["act"]`` is the half that goes through the
activation.  Kernels are in ``fastact.cpu.axis_kernels``.
"""
import numpy as np

from ..mathlib import helper, jitable
from ..registry import REGISTRY, OpSpec, Param, register

AXIS = Param("axis", -1, kernel=False)


def gated_example(pass_name, size, dtype, rng):
    """x of shape (rows, 2 * 512); dy of the output's shape (rows, 512)."""
    h = int(min(512, max(1, size // 2)))
    rows = max(1, size // (2 * h))
    x = rng.standard_normal((rows, 2 * h)).astype(dtype)
    if pass_name == "forward":
        return (x,), {}
    return (x, rng.uniform(-1, 1, (rows, h)).astype(dtype)), {}


def numpy_gated(spec, scalars, pass_name, x, dy, axis, numeric):
    """NumPy baseline of a gated unit."""
    a, b = np.split(x, 2, axis=axis)
    act = spec.extra["act"]
    v, u = (a, b) if act == 0 else (b, a)
    with np.errstate(all="ignore"):
        if pass_name == "forward":
            return (u * scalars.numpy_value(v, *numeric),)
        g, dg = scalars.numpy_value_and_derivative(v, *numeric)
        du, dv = dy * g, dy * u * dg
        dx = np.concatenate((dv, du) if act == 0 else (du, dv), axis=axis)
        return (dx,) if pass_name == "backward" else (u * g, dx)


def _gated(name, act_name, act_half, doc):
    act = REGISTRY[act_name]
    register(OpSpec(name=name, kind="gated", doc=doc, params=(AXIS,) + act.params,
                    passes=("forward", "backward", "forward_backward"),
                    scalars=act.scalars, example=gated_example, transcendental=True,
                    extra={"act": act_half}))


_gated("glu", "sigmoid", 1,
       "glu(x) = a * sigmoid(b), a and b the first and second halves of x along `axis`.\n"
       "backward(x, dy) = concat(dy * sigmoid(b), dy * a * sigmoid'(b)).")
_gated("swiglu", "silu", 0,
       "swiglu(x) = silu(a) * b, a and b the halves of x along `axis`.\n"
       "backward(x, dy) = concat(dy * b * silu'(a), dy * silu(a)).")
_gated("geglu", "gelu", 0,
       "geglu(x) = gelu(a) * b, a and b the halves of x along `axis`; "
       "approximate='none'|'tanh' as in gelu.\n"
       "backward(x, dy) = concat(dy * b * gelu'(a), dy * gelu(a)).")


# ------------------------------------------------------------ prelu

def prelu_example(pass_name, size, dtype, rng):
    """NCHW-like x (rows, 64 channels, rest) with one weight per channel."""
    c = 64 if size >= 64 else 1
    inner = max(1, size // (16 * c)) if size >= 16 * c else 1
    outer = max(1, size // (c * inner))
    x = rng.standard_normal((outer, c, inner)).astype(dtype)
    w = rng.uniform(0.0, 0.5, c).astype(dtype)
    if pass_name == "forward":
        return (x, w), {}
    return (x, rng.uniform(-1, 1, x.shape).astype(dtype), w), {}


def numpy_prelu(pass_name, x, dy, w, axis):
    """NumPy baseline: w broadcast along `axis` (or a single weight)."""
    shape = [1] * x.ndim
    if w.size != 1:         # one per channel (none for 0 channels)
        shape[axis] = w.size
    wb = w.reshape(shape) if x.ndim else w.reshape(())
    pos = x > 0
    y = np.where(pos, x, wb * x)
    if pass_name == "forward":
        return (y,)
    dx = np.where(pos, dy, wb * dy)
    other = tuple(i for i in range(x.ndim) if w.size == 1 or i != axis)
    dw = np.where(pos, 0, dy * x).sum(axis=other)
    dw = np.asarray(dw, dtype=np.float64).reshape(w.shape)
    return (dx, dw) if pass_name == "backward" else (y, dx, dw)


register(OpSpec(
    name="prelu", kind="prelu",
    doc="prelu(x, weight, axis=1) = x if x > 0 else weight[c] * x, c the index along "
        "`axis` (PyTorch's channel dim 1); weight has one value or one per channel.\n"
        "backward(x, dy, weight) -> (dx, dweight): dx = dy (x > 0) or weight * dy; "
        "dweight[c] = sum of dy * x over x <= 0 across every other axis.",
    params=(Param("axis", 1, kernel=False),),
    passes=("forward", "backward", "forward_backward"), example=prelu_example))


# ------------------------------------------------------------ maxout, argmax

@helper
def beats(v, best):
    """v replaces best as the running maximum: it is larger, or it is the first
    NaN (NaN counts as the largest value, and the first of equal maxima wins:
    torch.max, np.argmax).  Bitwise & and |, so that vector loops hold no
    branch.  The one rule of every maxout and argmax kernel, on both targets."""
    return (v > best) | ((v != v) & (best == best))


@jitable
def best_of(x, r, i, n):
    """(max, index of it) of x[r, :n, i] by the rule of ``beats``."""
    best = x[r, 0, i]
    arg = 0
    for q in range(1, n):
        v = x[r, q, i]
        if beats(v, best):
            best = v
            arg = q
    return best, arg


def maxout_example(pass_name, size, dtype, rng):
    """x of shape (rows, 1024), pieces=4; dy of the output's shape (rows, 256)."""
    n = int(min(1024, max(4, size - size % 4)))
    rows = max(1, size // n)
    x = rng.standard_normal((rows, n)).astype(dtype)
    if pass_name == "forward":
        return (x, 4), {}
    return (x, rng.uniform(-1, 1, (rows, n // 4)).astype(dtype), 4), {}


def numpy_maxout(pass_name, x4, dy3):
    """NumPy baseline on the (rows, groups, pieces, inner)-shaped view."""
    y = x4.max(axis=2)
    if pass_name == "forward":
        return (y,)
    arg = np.argmax(x4, axis=2)
    mask = np.arange(x4.shape[2])[None, None, :, None] == arg[:, :, None, :]
    dx = np.where(mask, dy3[:, :, None, :], 0).astype(x4.dtype)
    return (dx,) if pass_name == "backward" else (y, dx)


register(OpSpec(
    name="maxout", kind="maxout",
    doc="maxout(x, pieces, axis=-1): the maximum of each run of `pieces` consecutive "
        "entries along `axis` (size C -> C // pieces).  NaN wins, then the first "
        "maximum.\nbackward(x, dy, pieces) routes dy to the winning entry, 0 elsewhere.",
    params=(Param("axis", -1, kernel=False),),
    passes=("forward", "backward", "forward_backward"), example=maxout_example))


def argmax_example(pass_name, size, dtype, rng):
    n = int(min(1024, max(1, size)))
    return (rng.standard_normal((max(1, size // n), n)).astype(dtype),), {}


register(OpSpec(
    name="argmax", kind="argmax",
    doc="argmax(x, axis=-1): int64 index of the maximum along `axis` (NaN counts as "
        "the maximum, the first one wins; as torch.argmax).  Forward only.",
    params=(Param("axis", -1, kernel=False),), passes=("forward",), example=argmax_example))
