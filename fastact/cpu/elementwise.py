"""Elementwise kernel templates: every pass of every elementwise op.

Each template turns a scalar function (from ``fastact.registry.Scalars``,
adapted by ``inline_scalar`` to g(x, p)) into a loop over flat contiguous
arrays; ``p`` is the tuple of numeric parameters, already in the array's dtype.  Every loop reads each input once and writes
each output once, at the same index, so outputs may alias inputs.

Outputs of at least ``streaming.STREAM_MIN`` bytes are written by a third
flavour (``streamed_kernel``): the pass's loop, run serially on one tile at a
time, fills cache-resident buffers that are then copied out with
non-temporal stores (``cpu.streaming``); only for ops without transcendental
functions, which are memory-bound.
"""
import numpy as np
from numba import prange

from ..mathlib import always_inline
from .jit import PARALLEL_MIN, KernelPair, inline_scalar
from .streaming import CHUNK_TILES, TILE, store_fence, stream_out, streams


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


def _uniform(pass_kernel, n_in: int, n_out: int):
    """pass_kernel(*inputs, *outputs, p) inlined as f(i0, i1, o0, o1, p); unused
    arrays are empty.  (Inlined: a call to its compiled dispatcher would put the
    dispatcher, which pickles with a per-process id, in the cache key.)"""
    serial = always_inline(pass_kernel)
    if n_in == 1 and n_out == 1:
        def f(i0, i1, o0, o1, p):
            serial(i0, o0, p)
    elif n_in == 1:
        def f(i0, i1, o0, o1, p):
            serial(i0, o0, o1, p)
    elif n_out == 1:
        def f(i0, i1, o0, o1, p):
            serial(i0, i1, o0, p)
    else:
        def f(i0, i1, o0, o1, p):
            serial(i0, i1, o0, o1, p)
    return always_inline(f)


def streamed_kernel(pass_kernel, n_in: int, n_out: int):
    """One pass over tiles of TILE elements: the pass's kernel (its loop runs
    serially inside) computes a tile into buffers, ``stream_out`` writes them
    with non-temporal stores.

    Signature f(i0, i1, o0, o1, p): unused inputs and outputs are empty arrays.
    """
    body = _uniform(pass_kernel, n_in, n_out)
    two = n_out == 2

    def streamed(i0, i1, o0, o1, p):
        n = i0.size
        ntiles = (n + TILE - 1) // TILE
        for c in prange((ntiles + CHUNK_TILES - 1) // CHUNK_TILES):
            # constant-size buffers: Numba allocates them once per thread
            b0 = np.empty(TILE, o0.dtype)
            b1 = np.empty(TILE if two else 0, o1.dtype)
            for t in range(c * CHUNK_TILES, min(ntiles, (c + 1) * CHUNK_TILES)):
                lo = t * TILE
                hi = min(lo + TILE, n)
                body(i0[lo:hi], i1[lo:hi], b0[:hi - lo], b1[:hi - lo], p)
                stream_out(o0, lo, b0, hi - lo)
                if two:
                    stream_out(o1, lo, b1, hi - lo)
            store_fence()
    return streamed


class PassKernel:
    """The kernels of one pass of one op: serial and parallel (``KernelPair``),
    and, with stream, streamed for outputs of at least ``STREAM_MIN`` bytes;
    compiled on first use."""

    __slots__ = ("_streamed", "n_in", "n_out", "pair", "pyfunc", "stream")

    def __init__(self, pyfunc, n_in: int, n_out: int, stream: bool = True,
                 interleave: int = 0):
        self.pyfunc = pyfunc
        self.pair = KernelPair(pyfunc, interleave=interleave)
        self.n_in, self.n_out = n_in, n_out
        self.stream = stream
        self._streamed = None

    def __call__(self, inputs, outputs, p):
        """Run on flat contiguous arrays (sequences of n_in inputs, n_out outputs)."""
        n = inputs[0].size
        if n < PARALLEL_MIN or not self.stream or not streams(n * outputs[0].itemsize):
            self.pair.get(n)(*inputs, *outputs, p)
            return
        if self._streamed is None:
            self._streamed = KernelPair(streamed_kernel(self.pyfunc, self.n_in,
                                                        self.n_out)).parallel
        empty = np.empty(0, outputs[0].dtype)
        i1 = inputs[1] if self.n_in == 2 else empty
        o1 = outputs[1] if self.n_out == 2 else empty
        self._streamed(inputs[0], i1, outputs[0], o1, p)


_KERNELS: dict = {}


def kernel(scalars, pass_name: str, nparams: int, transcendental: bool = False,
           interleave: int = 0) -> PassKernel:
    """The kernels of one pass of one Scalars record.

    Transcendental ops prefer 512-bit vectors (``jit.prefer_wide_vectors``);
    the others stream large outputs.  Measured at 2**24 float32 on the
    development machine: relu forward_backward 22.9 -> 11.5 ms streamed, while
    sigmoid value_and_derivative, whose arithmetic overlaps the plain stores,
    goes 9.9 -> 13.5 ms.
    """
    key = (id(scalars), pass_name, transcendental, interleave)
    k = _KERNELS.get(key)
    if k is None:
        template, which, n_in, n_out = PASSES[pass_name]
        scalar = inline_scalar(getattr(scalars, which), nparams, wide=transcendental)
        k = _KERNELS[key] = PassKernel(template(scalar), n_in, n_out,
                                       stream=not transcendental, interleave=interleave)
    return k
