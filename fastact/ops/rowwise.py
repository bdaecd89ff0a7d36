"""Row-wise activations: softmax, log_softmax, softmin along one axis.

Their Jacobian is not diagonal, so they have forward, backward(x, dy) and
forward_backward(x, dy) but no value_and_derivative.  Kernels are in
``fastact.cpu.rowwise``; ``extra`` holds the two switches they take.
"""
import numpy as np

from ..registry import OpSpec, Param, register


def _np_softmax(x, axis, sign):
    v = sign * x
    e = np.exp(v - v.max(axis=axis, keepdims=True, initial=-np.inf))
    return e / e.sum(axis=axis, keepdims=True)


def _np_log_softmax(x, axis, sign):
    v = sign * x
    m = v.max(axis=axis, keepdims=True, initial=-np.inf)
    return v - m - np.log(np.exp(v - m).sum(axis=axis, keepdims=True))


def numpy_rowwise(spec, pass_name, x, dy, axis):
    """The NumPy baseline of every pass of a row-wise op."""
    sign, log_output = spec.extra["sign"], spec.extra["log"]
    with np.errstate(all="ignore"):
        if log_output:
            y = _np_log_softmax(x, axis, sign)
            if pass_name == "forward":
                return (y,)
            dx = sign * (dy - np.exp(y) * dy.sum(axis=axis, keepdims=True))
        else:
            y = _np_softmax(x, axis, sign)
            if pass_name == "forward":
                return (y,)
            dx = sign * y * (dy - (dy * y).sum(axis=axis, keepdims=True))
    return (dx,) if pass_name == "backward" else (y, dx)


def rowwise_example(pass_name, size, dtype, rng):
    """A (rows, 1024) batch of logits (fewer columns for small sizes)."""
    n = int(min(1024, max(1, size)))
    rows = max(1, size // n)
    x = (rng.standard_normal((rows, n)) * 3).astype(dtype)
    if pass_name == "forward":
        return (x,), {}
    return (x, rng.uniform(-1, 1, (rows, n)).astype(dtype)), {}


def _define(name, doc, sign, log_output):
    register(OpSpec(name=name, kind="rowwise", doc=doc, params=(Param("axis", -1, kernel=False),),
                    passes=("forward", "backward", "forward_backward"),
                    example=rowwise_example, transcendental=True,
                    extra={"sign": sign, "log": log_output}))


_define("softmax",
        "softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m), m = max_j x_j, along `axis`.\n"
        "backward(x, dy) = p * (dy - sum(dy * p)).", 1.0, False)
_define("log_softmax",
        "log_softmax(x)_i = x_i - m - log sum_j exp(x_j - m), along `axis`.\n"
        "backward(x, dy) = dy - softmax(x) * sum(dy).", 1.0, True)
_define("softmin",
        "softmin(x) = softmax(-x) along `axis`.\n"
        "backward(x, dy) = -p * (dy - sum(dy * p)), p = softmin(x).", -1.0, False)
