"""Elementwise kernel templates: every pass of every elementwise op.

Each template turns a scalar function (from ``fastact.registry.Scalars``,
adapted by ``inline_scalar`` to g(x, p)) into a loop over flat contiguous
arrays; ``p`` is the tuple of numeric parameters, already in the array's dtype.  Every loop reads each input once and writes
each output once, at the same index, and reads every input at an index before
it writes any output there, so outputs may alias inputs exactly, in any
permutation.

Outputs of at least ``streaming.STREAM_MIN`` bytes are written by a third
flavour, with non-temporal stores (``streaming.store_nt``), for every op: the
same loop over blocks of aligned outputs storing non-temporally
(``streamed_kernel``), or computing tiles into buffers in L1 that a second
loop copies out (``tiled_kernel``), as ``streaming.TILED`` says for the host.
"""
import numpy as np
from numba import prange

from ..mathlib import always_inline, cpu_inline
from .jit import PARALLEL_MIN, KernelPair, inline_scalar
from . import streaming
from .streaming import BLOCK, NT_RUN, TILE, aligned_head, store_fence, store_nt, streams


@always_inline
def put(a, i, v):
    """a[i] = v: the plain store of the kernel templates (the streamed kernels
    pass ``put_nt``)."""
    a[i] = v


@always_inline
def put_nt(a, i, v):
    """a[i] = v with ``streaming.store_nt`` (a plain function around the
    intrinsic: kernel closures must pickle the same way in every process, for
    Numba's disk cache)."""
    store_nt(a, i, v)


# Elements per block of the pass templates' parallel loop.
EBLOCK = 4096


@always_inline
def block_bounds(b, n):
    """(lo, hi): the elements of block b of a pass over n elements."""
    lo = b * EBLOCK
    return lo, min(lo + EBLOCK, n)


# Each template loops over blocks of EBLOCK elements (in parallel), and over
# the elements of a block through slices of the arrays.  The slices are what
# keeps the loop correct when outputs alias inputs: Numba compiles a parallel
# loop whose body makes no array views with its arrays marked ``noalias``,
# and LLVM then moved the load of dy[i] below the store of y[i] (y being dy's
# memory gave dx = y * f'(x)).  With views in the body it makes no such claim.

def forward_kernel(f, put=put):
    def forward(x, y, p):
        n = x.size
        for b in prange((n + EBLOCK - 1) // EBLOCK):
            lo, hi = block_bounds(b, n)
            xs, ys = x[lo:hi], y[lo:hi]
            for i in range(hi - lo):
                put(ys, i, f(xs[i], p)[0])
    return forward


def value_and_derivative_kernel(fd, put=put):
    def value_and_derivative(x, y, d, p):
        n = x.size
        for b in prange((n + EBLOCK - 1) // EBLOCK):
            lo, hi = block_bounds(b, n)
            xs, ys, ds = x[lo:hi], y[lo:hi], d[lo:hi]
            for i in range(hi - lo):
                v, dv = fd(xs[i], p)
                put(ys, i, v)
                put(ds, i, dv)
    return value_and_derivative


def backward_kernel(fd, put=put):
    def backward(x, dy, dx, p):
        n = x.size
        for b in prange((n + EBLOCK - 1) // EBLOCK):
            lo, hi = block_bounds(b, n)
            xs, dys, dxs = x[lo:hi], dy[lo:hi], dx[lo:hi]
            for i in range(hi - lo):
                g = dys[i]
                _, d = fd(xs[i], p)
                put(dxs, i, g * d)
    return backward


def forward_backward_kernel(fd, put=put):
    def forward_backward(x, dy, y, dx, p):
        n = x.size
        for b in prange((n + EBLOCK - 1) // EBLOCK):
            lo, hi = block_bounds(b, n)
            xs, dys, ys, dxs = x[lo:hi], dy[lo:hi], y[lo:hi], dx[lo:hi]
            for i in range(hi - lo):
                # dy[i] is read before y[i] is written: y may be dy's memory
                g = dys[i]
                v, d = fd(xs[i], p)
                put(ys, i, v)
                put(dxs, i, g * d)
    return forward_backward


def backward_from_output_kernel(fo, put=put):
    """The backward template on y, with f' a function of y (``fo``)."""
    return backward_kernel(_from_output(fo), put)


def _from_output(fo):
    """(y, f'(y)) from fo(y, p), in the shape of a value_and_derivative scalar
    (the value is unused by the backward template)."""
    @always_inline
    def value_and_derivative(y, p):
        return y, fo(y, p)
    return value_and_derivative


# pass name -> (template, which scalar it needs, inputs, outputs)
PASSES = {
    "forward": (forward_kernel, "value_and_derivative", 1, 1),
    "value_and_derivative": (value_and_derivative_kernel, "value_and_derivative", 1, 2),
    "backward": (backward_kernel, "value_and_derivative", 2, 1),
    "forward_backward": (forward_backward_kernel, "value_and_derivative", 2, 2),
    "backward_from_output": (backward_from_output_kernel, "derivative_from_output", 2, 1),
}


def _uniform(pass_kernel, n_in: int, n_out: int):
    """pass_kernel(*inputs, *outputs, p) as f(i0, i1, o0, o1, p), serial (its
    prange runs as a range); unused arrays are empty.

    f is compiled once per signature and inlined by LLVM (``cpu_inline``), so
    its loop is vectorized in f itself, with the scalar's 512-bit hint
    (``jit.prefer_wide_vectors``).  The tiled kernel calls it from two places
    (each tile, the last elements); inlining it and the layers around it at
    Numba IR level instead (``always_inline``) typed and lowered them again at
    each call site of each layer: the first relu value_and_derivative
    float32 call on a streamed output took 7.2 s (tiled) and 4.2 s (in the
    loop), against 4.0 and 3.2 with these layers compiled once (1.3 s
    unstreamed).  (Called through ``cpu_inline`` or ``always_inline``, not as
    a jitted dispatcher: a dispatcher pickles with a per-process id, which
    would put it in the cache key.)"""
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
    return cpu_inline(f)


def _over_blocks(block, rest):
    """f(i0, i1, o0, o1, p): ``block`` on each block of BLOCK elements of the
    first n - n % NT_RUN (in parallel, a store fence after each), ``rest`` on
    the last n % NT_RUN.  Outputs start 64-byte aligned (the caller runs the
    plain kernel on the elements before), so every block does, and every block
    but the last covers a multiple of NT_RUN elements, as the last does too."""
    def over_blocks(i0, i1, o0, o1, p):
        n = i0.size
        m = n - n % NT_RUN
        nblocks = (m + BLOCK - 1) // BLOCK
        for b in prange(nblocks):
            lo = b * BLOCK
            hi = min(lo + BLOCK, m)
            block(i0[lo:hi], i1[lo:hi], o0[lo:hi], o1[lo:hi], p)
            store_fence()
        rest(i0[m:], i1[m:], o0[m:], o1[m:], p)
    return over_blocks


def streamed_kernel(pass_kernel, plain_kernel, n_in: int, n_out: int):
    """The pass over blocks (``_over_blocks``), its loop (serial inside each
    block) storing with ``streaming.store_nt``: non-temporal vector stores
    in the loop that computes them.  Each block covers a multiple of NT_RUN
    elements, which the vector loop covers without a scalar remainder: every
    non-temporal store is a vector store at an aligned address, as
    ``store_nt`` declares.  The last n % NT_RUN elements go through
    ``plain_kernel`` (the same pass, plain stores).  Signature f(i0, i1, o0,
    o1, p): unused inputs and outputs are empty arrays.
    """
    return _over_blocks(_uniform(pass_kernel, n_in, n_out),
                        _uniform(plain_kernel, n_in, n_out))


@always_inline
def copy_nt(dst, src):
    """dst[:] = src with ``streaming.store_nt`` (dst 64-byte aligned, a multiple
    of NT_RUN elements)."""
    for j in range(src.size):
        store_nt(dst, j, src[j])


def tiled_kernel(plain_kernel, n_in: int, n_out: int):
    """The pass over blocks (``_over_blocks``), each block in tiles of TILE
    elements: the plain loop computes a tile into buffers in L1, and
    ``copy_nt`` writes each buffer out with non-temporal stores.  The last
    n % NT_RUN elements go through the plain loop straight into the outputs.
    Signature f(i0, i1, o0, o1, p): unused inputs and outputs are empty
    arrays."""
    body = _uniform(plain_kernel, n_in, n_out)

    def tiles(i0, i1, o0, o1, p):
        n = i0.size
        t0 = np.empty(TILE, o0.dtype)
        t1 = np.empty(TILE if o1.size else 0, o1.dtype)
        for s in range(0, n, TILE):
            e = min(s + TILE, n)
            body(i0[s:e], i1[s:e], t0[:e - s], t1[:e - s], p)
            copy_nt(o0[s:e], t0[:e - s])
            if o1.size:
                copy_nt(o1[s:e], t1[:e - s])
    return _over_blocks(cpu_inline(tiles), body)


class PassKernel:
    """The kernels of one pass of one op: serial and parallel (``KernelPair``),
    and streamed (``tiled_kernel`` or ``streamed_kernel``) for outputs of at
    least ``STREAM_MIN`` bytes; compiled on first use."""

    __slots__ = ("_streamed", "n_in", "n_out", "pair", "pyfunc", "streamed_pyfunc")

    def __init__(self, pyfunc, streamed_pyfunc, n_in: int, n_out: int, interleave: int = 0):
        self.pair = KernelPair(pyfunc, interleave=interleave)
        self.pyfunc = pyfunc
        self.streamed_pyfunc = streamed_pyfunc
        self.n_in, self.n_out = n_in, n_out
        self._streamed = {}       # streaming.TILED -> its streamed KernelPair

    def streamed_pair(self, **options) -> KernelPair:
        """The streamed kernel of this pass (``tiled_kernel`` or
        ``streamed_kernel``, as ``streaming.TILED`` says), with its interleave;
        options as for ``KernelPair`` (the tests compile it uncached)."""
        if streaming.TILED:
            pyfunc = tiled_kernel(self.pyfunc, self.n_in, self.n_out)
        else:
            pyfunc = streamed_kernel(self.streamed_pyfunc, self.pyfunc, self.n_in, self.n_out)
        return KernelPair(pyfunc, interleave=self.pair.interleave_count, **options)

    def __call__(self, inputs, outputs, p):
        """Run on flat contiguous arrays (sequences of n_in inputs, n_out outputs)."""
        n = inputs[0].size
        head = aligned_head(outputs) if n >= PARALLEL_MIN and streams(
            n * outputs[0].itemsize) else -1
        if head < 0:
            self.pair.get(n)(*inputs, *outputs, p)
            return
        if head:
            self.pair.serial(*[a[:head] for a in inputs], *[o[:head] for o in outputs], p)
        streamed = self._streamed.get(streaming.TILED)
        if streamed is None:
            streamed = self._streamed[streaming.TILED] = self.streamed_pair()
        # (the pair, not its parallel kernel: a forked child may have to run serial ones)
        streamed = streamed.get(n)
        empty = np.empty(0, outputs[0].dtype)
        i1 = inputs[1][head:] if self.n_in == 2 else empty
        o1 = outputs[1][head:] if self.n_out == 2 else empty
        streamed(inputs[0][head:], i1, outputs[0][head:], o1, p)


_KERNELS: dict = {}


def kernel(scalars, pass_name: str, nparams: int, transcendental: bool = False,
           interleave: int = 0) -> PassKernel:
    """The kernels of one pass of one Scalars record.  Transcendental ops
    prefer 512-bit vectors (``jit.prefer_wide_vectors``)."""
    key = (id(scalars), pass_name, transcendental, interleave)
    k = _KERNELS.get(key)
    if k is None:
        k = _KERNELS[key] = pass_kernel(scalars, pass_name, nparams, transcendental,
                                        interleave)
    return k


def pass_kernel(scalars, pass_name: str, nparams: int, transcendental: bool = False,
                interleave: int = 0) -> PassKernel:
    """A new PassKernel of one pass of one Scalars record (``kernel`` keeps one
    per key)."""
    template, which, n_in, n_out = PASSES[pass_name]
    scalar = inline_scalar(getattr(scalars, which), nparams, wide=transcendental)
    return PassKernel(template(scalar), template(scalar, put_nt), n_in, n_out,
                      interleave=interleave)
