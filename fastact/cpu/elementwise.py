"""Elementwise kernel templates: every pass of every elementwise op.

Each template turns a scalar function (from ``fastact.registry.Scalars``,
adapted by ``inline_scalar`` to g(x, p)) into a loop over flat contiguous
arrays; ``p`` is the tuple of numeric parameters, already in the array's dtype.  Every loop reads each input once and writes
each output once, at the same index, so outputs may alias inputs.
"""
from numba import prange

from .jit import KernelPair, inline_scalar


def forward_kernel(f):
    def forward(x, y, p):
        for i in prange(x.size):
            y[i] = f(x[i], p)[0]
    return forward


def value_and_derivative_kernel(fd):
    def value_and_derivative(x, y, d, p):
        for i in prange(x.size):
            y[i], d[i] = fd(x[i], p)
    return value_and_derivative


def backward_kernel(fd):
    def backward(x, dy, dx, p):
        for i in prange(x.size):
            _, d = fd(x[i], p)
            dx[i] = dy[i] * d
    return backward


def forward_backward_kernel(fd):
    def forward_backward(x, dy, y, dx, p):
        for i in prange(x.size):
            v, d = fd(x[i], p)
            y[i] = v
            dx[i] = dy[i] * d
    return forward_backward


def backward_from_output_kernel(fo):
    def backward_from_output(y, dy, dx, p):
        for i in prange(y.size):
            dx[i] = dy[i] * fo(y[i], p)
    return backward_from_output


# pass name -> (template, which scalar it needs, inputs, outputs)
PASSES = {
    "forward": (forward_kernel, "value_and_derivative", 1, 1),
    "value_and_derivative": (value_and_derivative_kernel, "value_and_derivative", 1, 2),
    "backward": (backward_kernel, "value_and_derivative", 2, 1),
    "forward_backward": (forward_backward_kernel, "value_and_derivative", 2, 2),
    "backward_from_output": (backward_from_output_kernel, "derivative_from_output", 2, 1),
}

_KERNELS: dict = {}


def kernel(scalars, pass_name: str, nparams: int, wide: bool = False) -> KernelPair:
    """The (lazily compiled) kernel pair of one pass of one Scalars record;
    wide: prefer 512-bit vectors (transcendental ops)."""
    key = (id(scalars), pass_name, wide)
    pair = _KERNELS.get(key)
    if pair is None:
        template, which, _, _ = PASSES[pass_name]
        pair = _KERNELS[key] = KernelPair(template(inline_scalar(getattr(scalars, which),
                                                                 nparams, wide=wide)))
    return pair
