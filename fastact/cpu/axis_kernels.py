"""Kernels of the ops that work across one axis: gated units, prelu, maxout, argmax.

Inputs are C-contiguous views (outer, n, inner) of the user's array with the
op's axis in the middle, so no axis is ever moved in memory.  Work is split in
blocks of at most BLOCK contiguous elements of the innermost axis, which keeps
both the parallel split and the inner loops' vectorization whatever the shape.
"""
import numpy as np
from numba import prange

from ..ops.axis_ops import best_of
from .jit import KernelPair, inline_scalar
from .reduce import first_argmax

BLOCK = 4096


# ------------------------------------------------------------ gated units
# x: (outer, 2, K); v = x[:, act, :] goes through the activation g, u = the other half.
# y = u * g(v);  du = dy * g(v);  dv = dy * u * g'(v).

def gated_forward_kernel(g):
    def gated_forward(x, y, act, p):
        outer, _, k = x.shape
        kb = (k + BLOCK - 1) // BLOCK
        for t in prange(outer * kb):
            o, k0 = t // kb, (t % kb) * BLOCK
            for i in range(k0, min(k, k0 + BLOCK)):
                gv, _ = g(x[o, act, i], p)
                y[o, i] = x[o, 1 - act, i] * gv
    return gated_forward


def gated_backward_kernel(g):
    def gated_backward(x, dy, y, dx, act, write_y, p):
        outer, _, k = x.shape
        kb = (k + BLOCK - 1) // BLOCK
        for t in prange(outer * kb):
            o, k0 = t // kb, (t % kb) * BLOCK
            for i in range(k0, min(k, k0 + BLOCK)):
                gv, dg = g(x[o, act, i], p)
                u = x[o, 1 - act, i]
                d = dy[o, i]
                if write_y:
                    y[o, i] = u * gv
                dx[o, 1 - act, i] = d * gv
                dx[o, act, i] = d * u * dg
    return gated_backward


_GATED: dict = {}


def gated_kernel(scalars, backward: bool, nparams: int, wide: bool = False) -> KernelPair:
    """wide: prefer 512-bit vectors (transcendental gates)."""
    key = (id(scalars), backward, wide)
    if key not in _GATED:
        make = gated_backward_kernel if backward else gated_forward_kernel
        _GATED[key] = KernelPair(make(inline_scalar(scalars.value_and_derivative, nparams,
                                                    wide=wide)))
    return _GATED[key]


# ------------------------------------------------------------ prelu
# x: (outer, C, inner), w: (C,).  y = x if x > 0 else w[c] x;  dx = dy or w[c] dy;
# dw[c] = sum over x <= 0 of dy * x, from float64 partial sums per block.

def _prelu_forward(x, w, y):
    outer, c, inner = x.shape
    ib = (inner + BLOCK - 1) // BLOCK
    for t in prange(outer * c * ib):
        r, i0 = t // ib, (t % ib) * BLOCK
        o, ch = r // c, r % c
        wc = w[ch]
        for i in range(i0, min(inner, i0 + BLOCK)):
            v = x[o, ch, i]
            y[o, ch, i] = v if v > 0 else wc * v


def _prelu_backward(x, dy, w, y, dx, partial, write_y):
    outer, c, inner = x.shape
    ib = (inner + BLOCK - 1) // BLOCK
    for t in prange(outer * c * ib):
        r, i0 = t // ib, (t % ib) * BLOCK
        o, ch = r // c, r % c
        wc = w[ch]
        acc = 0.0
        for i in range(i0, min(inner, i0 + BLOCK)):
            v = x[o, ch, i]
            d = dy[o, ch, i]
            if write_y:
                y[o, ch, i] = v if v > 0 else wc * v
            if v > 0:
                dx[o, ch, i] = d
            else:
                dx[o, ch, i] = wc * d
                acc += np.float64(d) * np.float64(v)
        partial[t] = acc


# inner == 1, x: (outer, C) (a dense layer's (N, C) activations): whole rows of
# channels, vectorized along them; dw from float64 partial sums per block of rows
# (partial: (blocks, C)).

def _prelu_forward_rows(x, w, y):
    for o in prange(x.shape[0]):
        for ch in range(x.shape[1]):
            v = x[o, ch]
            y[o, ch] = v if v > 0 else w[ch] * v


def _prelu_backward_rows(x, dy, w, y, dx, partial, write_y):
    outer, c = x.shape
    nb = partial.shape[0]
    per = (outer + nb - 1) // nb if nb else 0
    for b in prange(nb):
        for ch in range(c):
            partial[b, ch] = 0.0
        for o in range(b * per, min(outer, (b + 1) * per)):
            for ch in range(c):
                v = x[o, ch]
                d = dy[o, ch]
                wc = w[ch]
                if write_y:
                    y[o, ch] = v if v > 0 else wc * v
                dx[o, ch] = d if v > 0 else wc * d
                partial[b, ch] += 0.0 if v > 0 else np.float64(d) * np.float64(v)


PRELU_FORWARD = KernelPair(_prelu_forward)
PRELU_BACKWARD = KernelPair(_prelu_backward)
PRELU_FORWARD_ROWS = KernelPair(_prelu_forward_rows)
PRELU_BACKWARD_ROWS = KernelPair(_prelu_backward_rows)


# ------------------------------------------------------------ maxout and argmax
# x: (rows, pieces, inner); the maximum over the middle axis (ops.axis_ops.best_of).

def _maxout_forward(x, y):
    rows, pieces, inner = x.shape
    for r in prange(rows):
        for i in range(inner):
            y[r, i] = best_of(x, r, i, pieces)[0]


def _maxout_backward(x, dy, y, dx, write_y):
    rows, pieces, inner = x.shape
    for r in prange(rows):
        for i in range(inner):
            best, arg = best_of(x, r, i, pieces)
            d = dy[r, i]
            if write_y:
                y[r, i] = best
            for q in range(pieces):
                dx[r, q, i] = d if q == arg else 0


def _argmax(x, out):
    rows, n, inner = x.shape
    for r in prange(rows):
        for i in range(inner):
            out[r, i] = best_of(x, r, i, n)[1]


def _argmax_rows(x, out):
    """argmax over the last axis of a C-contiguous (rows, n) array."""
    for r in prange(x.shape[0]):
        out[r] = first_argmax(x[r])


MAXOUT_FORWARD = KernelPair(_maxout_forward)
MAXOUT_BACKWARD = KernelPair(_maxout_backward)
ARGMAX = KernelPair(_argmax)
ARGMAX_ROWS = KernelPair(_argmax_rows)
