"""CPU kernel templates of the losses (Numba, serial/parallel pairs).

Elementwise losses (``elementwise_kernel``): one pass over blocks of BLOCK
elements; each element's loss term and gradient come from one scalar call,
the gradient (times the reduction's scale) is written at once, the loss terms
go to a block buffer (compute dtype) that a reassociating helper sums in
float64 (so the sum vectorizes while the elementwise code keeps strict float
semantics), one partial sum per block.  With reduction "none" the terms are written out
instead.  Every write is at the index just read, so the gradient may alias
the prediction.  Large gradients are written with non-temporal stores, in the
loop that computes them or tiled, as for the activations (``cpu.streaming``).

Row-wise losses (softmax family, nll): rows of a 2-D C-contiguous array, a
chunk of rows per parallel task; each row is read from memory once, and the
further sweeps (sum of exp, gradient) run on the row in cache.  Row losses are
float64 values in ``rl``; the gradient row may alias the logits row (the
values still needed are read before the row is overwritten).

The labelled kernels (sparse cross-entropy, nll) read each row's label once
and index with it only after checking it themselves (the labels may be the
caller's memory, changed by another thread after ``check_labels`` read them):
a row whose label is outside [0, C) and is not ignore_index gets a NaN loss
and a NaN gradient row, and the kernel returns (first such row, its label),
or (-1, 0), for the caller to raise (``bad_label_error``).
"""
import numpy as np
from numba import prange
from numba.extending import register_jitable as jitable

from ..cpu.jit import JIT_OPTIONS, PARALLEL_MIN, KernelPair, always_inline, inline_scalar, kernel_jit
from ..cpu.reduce import dot64, scaled_max, sum64
from ..cpu import streaming
from ..cpu.elementwise import copy_nt, put, put_nt
from ..cpu.streaming import NT_RUN, TILE, store_fence
from ..mathlib import cpu_inline, exp, exp_neg_abs, log, tanh

# Elements per block (a multiple of NT_RUN: blocks of an aligned gradient start
# aligned; the loss terms of a block go to a buffer in cache), blocks per
# parallel task (one store fence per task).
BLOCK = 4096
CHUNK_BLOCKS = 32
# Vector iterations interleaved in the loops of transcendental losses
# (``KernelPair``); measured on the development machine at 2**22 float32,
# value_and_grad in ms for 1 / 2 / 4: binary_cross_entropy 5.31 / 4.90 / 4.92,
# sigmoid_binary_cross_entropy 2.39 / 2.28 / 2.08, sigmoid_focal_loss 2.91 /
# 2.73 / 2.37, log_cosh 3.10 / 2.78 / 2.38.
INTERLEAVE = 4

# ------------------------------------------------------------ elementwise


def _element(fd, n_aux, weighted, nparams, wide):
    """elem(p, t, a, w, i, prm) -> (loss, grad) for element i, aux array and weights.

    The scalar is inlined (``inline_scalar``) so that the loop vectorizes;
    wide: prefer 512-bit vectors (transcendental losses)."""
    f = inline_scalar(fd, nparams, 2 + n_aux, wide)
    if n_aux == 0 and not weighted:
        def elem(p, t, a, w, i, prm):
            return f(p[i], t[i], prm)
    elif n_aux == 0:
        def elem(p, t, a, w, i, prm):
            v, d = f(p[i], t[i], prm)
            return v * w[i], d * w[i]
    elif not weighted:
        def elem(p, t, a, w, i, prm):
            return f(p[i], t[i], a[i], prm)
    else:
        def elem(p, t, a, w, i, prm):
            v, d = f(p[i], t[i], a[i], prm)
            return v * w[i], d * w[i]
    return always_inline(elem)


def elementwise_template(fd, n_aux=0, weighted=False, want_grad=True, mode="reduce",
                         nparams=0, wide=False, stream=False, tiled=False, variant=None):
    """Loop over flat arrays: p, t (same size), a (aux, e.g. pos_weight), w (weights).

    mode "reduce": partial[b] = float64 sum of the terms of block b;
    mode "none": l[i] = term;  mode "skip": no loss.  want_grad: g[i] = grad * scale.
    The flags are compile-time constants (each variant is compiled on first use:
    one variant compiles several times faster than a kernel holding them all).
    Unused arrays may be empty.  wide: prefer 512-bit vectors.  stream: the
    gradient is stored non-temporally (``cpu.streaming.store_nt``) over a
    multiple of NT_RUN elements of each block, the rest of the block with plain
    stores; g must start 64-byte aligned (every block then does).  tiled (with
    stream): the loop stores tiles of TILE gradient elements into a buffer in
    L1, and ``copy_nt`` writes them out (``cpu.streaming.TILED``).  variant:
    (holds(t block), fd2), a cheaper scalar fd2 for the blocks whose targets
    ``holds`` (the loss's ``block_variant``).

    The loop of a block (``run``) and the block (``block``) are compiled once
    per signature and inlined by LLVM (``cpu_inline``), as the streamed
    activation kernels' layers (``cpu.elementwise._uniform``): inlined at
    Numba IR level at each of their call sites, they took about half of the
    compile time: the first mse float32 value_and_grad call on 394253 elements
    took 5.8 s, against 3.5 s now, binary_cross_entropy 11.2 s against 6.3.
    """
    reduce_ = mode == "reduce"
    write_l = mode == "none"

    def runner(elem, store):
        def run(pb, tb, ab, wb, gb, lb, tm, scale, prm):
            # Slices indexed from 0: an index i - lo (or i in range(lo, hi)) may be
            # negative as far as Numba knows, and the wraparound it adds turns the
            # vectorized loads and stores into gathers and scatters.
            for i in range(pb.size):
                v, d = elem(pb, tb, ab, wb, i, prm)
                if reduce_:
                    tm[i] = v
                if write_l:
                    lb[i] = v
                if want_grad:
                    store(gb, i, d * scale)
        return cpu_inline(run)

    def blocks(fd_):
        """block(...): the loop of one block with scalar fd_, its gradient
        streamed as the flags say."""
        elem = _element(fd_, n_aux, weighted, nparams, wide)
        run = runner(elem, put)
        run_nt = runner(elem, put_nt) if stream and not tiled else run

        def block(pb, tb, ab, wb, gb, lb, tm, gtile, scale, prm):
            if stream:
                m = pb.size - pb.size % NT_RUN
                if tiled:
                    for s in range(0, m, TILE):
                        e = min(s + TILE, m)
                        gt = gtile[:e - s]
                        run(pb[s:e], tb[s:e], ab[s:e], wb[s:e], gt, lb[s:e], tm[s:e], scale, prm)
                        copy_nt(gb[s:e], gt)
                else:
                    run_nt(pb[:m], tb[:m], ab[:m], wb[:m], gb[:m], lb[:m], tm[:m], scale, prm)
                run(pb[m:], tb[m:], ab[m:], wb[m:], gb[m:], lb[m:], tm[m:], scale, prm)
            else:
                run(pb, tb, ab, wb, gb, lb, tm, scale, prm)
        return cpu_inline(block)

    block_all = blocks(fd)
    if variant is None:
        holds, block_variant = _never, block_all
    else:
        holds, block_variant = variant[0], blocks(variant[1])

    def loss_kernel(p, t, a, w, g, l, partial, scale, prm):
        n = p.size
        nb = (n + BLOCK - 1) // BLOCK
        for c in prange((nb + CHUNK_BLOCKS - 1) // CHUNK_BLOCKS):
            # a constant-size buffer: Numba allocates it once per thread.  Loss
            # terms stay in the compute dtype (a widening store would stop LLVM
            # from vectorizing the loop); sum64 accumulates them in float64.
            terms = np.empty(BLOCK if reduce_ else 0, p.dtype)
            gtile = np.empty(TILE if tiled else 0, p.dtype)
            for b in range(c * CHUNK_BLOCKS, min(nb, (c + 1) * CHUNK_BLOCKS)):
                lo = b * BLOCK
                hi = min(lo + BLOCK, n)
                # (unused arrays are empty; their slices are empty too)
                pb, tb, ab, wb, gb, lb = p[lo:hi], t[lo:hi], a[lo:hi], w[lo:hi], g[lo:hi], l[lo:hi]
                tm = terms[:hi - lo]
                if holds(tb):
                    block_variant(pb, tb, ab, wb, gb, lb, tm, gtile, scale, prm)
                else:
                    block_all(pb, tb, ab, wb, gb, lb, tm, gtile, scale, prm)
                if reduce_:
                    partial[b] = sum64(tm)
            if stream:
                store_fence()
    return loss_kernel


@jitable
def _never(t):
    return False


_ELEMENTWISE: dict = {}


def elementwise_kernel(fd, n_aux, weighted, want_grad, mode, nparams,
                       wide=False, stream=False, variant=None) -> KernelPair:
    """The kernels of ``elementwise_template``; a streamed one is tiled where
    ``cpu.streaming.TILED`` says."""
    tiled = stream and streaming.TILED
    key = (id(fd), n_aux, weighted, want_grad, mode, nparams, wide, stream, tiled,
           None if variant is None else tuple(map(id, variant)))
    pair = _ELEMENTWISE.get(key)
    if pair is None:
        pair = _ELEMENTWISE[key] = KernelPair(
            elementwise_template(fd, n_aux, weighted, want_grad, mode, nparams, wide, stream,
                                 tiled, variant),
            interleave=INTERLEAVE if wide else 0)
    return pair



def elementwise_kernel_for(n, fd, n_aux, weighted, want_grad, mode, nparams, wide=False,
                           stream=False, variant=None):
    """The kernel of ``elementwise_kernel`` that runs n elements (serial or
    parallel).  Only the parallel kernels (from PARALLEL_MIN elements) take the
    block variant: on fewer elements it saves microseconds, and a second loop
    doubles the kernel's compile time."""
    if n < PARALLEL_MIN:
        variant = None
    return elementwise_kernel(fd, n_aux, weighted, want_grad, mode, nparams, wide, stream,
                              variant).get(n)

# ------------------------------------------------------------ row-wise

@jitable
def _chunks(rows, nchunks):
    return max(1, min(rows, nchunks))


@jitable
def _sparse_row(x, yi, g, tmp, w, w64, weighted, scale, eps, zl, cap, wtot, ign):
    """One row of sparse softmax cross-entropy; g is written (may be x itself).

    Returns the row loss (float64).  cap > 0: softcap; tmp holds tanh(x / cap).
    yi is ign or in [0, x.size): the caller has checked it (``_bad_label``).
    """
    dt = x.dtype.type
    n = x.size
    if yi == ign:
        for j in range(n):
            g[j] = dt(0.0)
        return 0.0
    wy = w64[yi] if weighted else 1.0
    sx = 0.0
    if cap > 0.0:
        capt = dt(cap)
        inv = dt(1.0 / cap)
        for j in range(n):
            tmp[j] = tanh(x[j] * inv)
        m = capt * scaled_max(tmp, dt(1.0))
        if eps > 0.0:
            sx = cap * (dot64(tmp, w) if weighted else sum64(tmp))
        xy = cap * np.float64(tmp[yi])
        for j in range(n):
            g[j] = exp(capt * tmp[j] - m)          # (a rounded product may pass m by an ulp)
    else:
        m = scaled_max(x, dt(1.0))
        if eps > 0.0:
            sx = dot64(x, w) if weighted else sum64(x)
        xy = np.float64(x[yi])
        for j in range(n):
            g[j] = exp_neg_abs(x[j] - m)         # (x - m <= 0, or NaN)
    s = sum64(g)
    lse = np.float64(m) + log(s)
    loss = (1.0 - eps) * wy * (lse - xy) + (eps / n) * (wtot * lse - sx) + zl * lse * lse
    # gradient: e_j A - B w_j - D [j = y], times 1 - tanh^2 under softcap
    a64 = scale * ((1.0 - eps) * wy + eps * wtot / n + 2.0 * zl * lse) / s
    b64 = scale * eps / n
    d64 = scale * (1.0 - eps) * wy
    ey = np.float64(g[yi])
    gy = ey * a64 - d64 - b64 * (w64[yi] if weighted else 1.0)
    A, B = dt(a64), dt(b64)
    if cap > 0.0:
        one = dt(1.0)
        if eps > 0.0 and weighted:
            for j in range(n):
                g[j] = (g[j] * A - B * w[j]) * ((one - tmp[j]) * (one + tmp[j]))
        else:
            for j in range(n):
                g[j] = (g[j] * A - B) * ((one - tmp[j]) * (one + tmp[j]))
        ty = np.float64(tmp[yi])
        g[yi] = dt(gy * ((1.0 - ty) * (1.0 + ty)))
    else:
        if eps > 0.0 and weighted:
            for j in range(n):
                g[j] = g[j] * A - B * w[j]
        else:
            for j in range(n):
                g[j] = g[j] * A - B
        g[yi] = dt(gy)
    return loss


@jitable
def _bad_label(yi, n, ign):
    """Whether label yi is outside [0, n) and is not ign."""
    return yi != ign and (yi < 0 or yi >= n)


@jitable
def _nan_row(gr, rl, r):
    """The row of a bad label: NaN gradient gr and loss rl[r]."""
    for j in range(gr.size):
        gr[j] = np.nan
    rl[r] = np.nan


@jitable
def _first_bad(bad):
    """(row, label) of the first chunk's entry of bad (first bad row or -1,
    its label) that holds one, else (-1, 0): chunks cover increasing rows."""
    for c in range(bad.shape[0]):
        if bad[c, 0] >= 0:
            return bad[c, 0], bad[c, 1]
    return np.int64(-1), np.int64(0)


def _sparse_template(want_grad):
    def sparse_ce(x, y, w, w64, weighted, g, rl, scale, eps, zl, cap, wtot, ign, nchunks):
        rows, n = x.shape
        nc = _chunks(rows, nchunks)
        bad = np.empty((nc, 2), np.int64)
        for c in prange(nc):
            tmp = np.empty(n, x.dtype)
            buf = np.empty(n if not want_grad else 0, x.dtype)
            first, label = -1, 0
            for r in range(c * rows // nc, (c + 1) * rows // nc):
                gr = g[r] if want_grad else buf
                yi = y[r]           # read once: y may change while the kernel runs
                if _bad_label(yi, n, ign):
                    if first < 0:
                        first, label = r, yi
                    _nan_row(gr, rl, r)
                    continue
                rl[r] = _sparse_row(x[r], yi, gr, tmp, w, w64, weighted, scale, eps, zl,
                                    cap, wtot, ign)
            bad[c, 0], bad[c, 1] = first, label
        return _first_bad(bad)
    return sparse_ce


SPARSE_CE = {True: KernelPair(_sparse_template(True)),
             False: KernelPair(_sparse_template(False))}


@jitable
def _dense_row(x, t, g, scale, eps):
    dt = x.dtype.type
    n = x.size
    m = scaled_max(x, dt(1.0))
    st = sum64(t)
    stx = dot64(t, x)
    sx = sum64(x) if eps > 0.0 else 0.0
    for j in range(n):
        g[j] = exp_neg_abs(x[j] - m)             # (x - m <= 0, or NaN)
    s = sum64(g)
    lse = np.float64(m) + log(s)
    tsum = (1.0 - eps) * st + eps
    loss = lse * tsum - ((1.0 - eps) * stx + (eps / n) * sx)
    A = dt(scale * tsum / s)
    B1 = dt(scale * (1.0 - eps))
    B0 = dt(scale * eps / n)
    for j in range(n):
        g[j] = g[j] * A - (B1 * t[j] + B0)
    return loss


def _dense_template(want_grad):
    def dense_ce(x, t, g, rl, scale, eps, nchunks):
        rows, n = x.shape
        nc = _chunks(rows, nchunks)
        for c in prange(nc):
            buf = np.empty(n if not want_grad else 0, x.dtype)
            for r in range(c * rows // nc, (c + 1) * rows // nc):
                gr = g[r] if want_grad else buf
                rl[r] = _dense_row(x[r], t[r], gr, scale, eps)
    return dense_ce


DENSE_CE = {True: KernelPair(_dense_template(True)),
            False: KernelPair(_dense_template(False))}


def _nll(x, y, w64, weighted, g, rl, scale, ign, want_grad, nchunks):
    rows, n = x.shape
    nc = _chunks(rows, nchunks)
    bad = np.empty((nc, 2), np.int64)
    for c in prange(nc):
        buf = np.empty(0, x.dtype)
        first, label = -1, 0
        for r in range(c * rows // nc, (c + 1) * rows // nc):
            yi = y[r]               # read once: y may change while the kernel runs
            if _bad_label(yi, n, ign):
                if first < 0:
                    first, label = r, yi
                _nan_row(g[r] if want_grad else buf, rl, r)
                continue
            if yi == ign:
                rl[r] = 0.0
                if want_grad:
                    for j in range(n):
                        g[r, j] = x.dtype.type(0.0)
                continue
            wy = w64[yi] if weighted else 1.0
            rl[r] = -wy * np.float64(x[r, yi])
            if want_grad:
                for j in range(n):
                    g[r, j] = x.dtype.type(0.0)
                g[r, yi] = x.dtype.type(-wy * scale)
        bad[c, 0], bad[c, 1] = first, label
    return _first_bad(bad)


NLL = KernelPair(_nll)


# ------------------------------------------------------------ label checks

@kernel_jit(**JIT_OPTIONS)
def check_labels(y, n_classes, ign, w64, weighted):
    """(first bad row or -1, number of non-ignored rows, sum of w[y] over them)."""
    count = 0
    wsum = 0.0
    for r in range(y.size):
        v = y[r]
        if v == ign:
            continue
        if v < 0 or v >= n_classes:
            return r, count, wsum
        count += 1
        wsum += w64[v] if weighted else 1.0
    return -1, count, wsum


def bad_label_error(name, label, row, label_shape, n_classes, ign) -> ValueError:
    """The error of a label outside [0, n_classes) that is not ign, at flat row
    ``row`` of labels of shape label_shape."""
    msg = f"{name}: label {label} at row {row}"
    if len(label_shape) > 1:
        idx = np.unravel_index(row, label_shape)
        msg += f" (index {tuple(int(i) for i in idx)})"
    return ValueError(msg + f" is outside [0, {n_classes}) and is not ignore_index={ign}")


# ------------------------------------------------------------ range checks

def _count_outside_unit(p, t, counts):
    """counts[b] = elements of block b of p and of t outside [0, 1] (NaN is not
    counted): one parallel pass over both arrays."""
    n = p.size
    for b in prange((n + BLOCK - 1) // BLOCK):
        lo = b * BLOCK
        hi = min(lo + BLOCK, n)
        pb, tb = p[lo:hi], t[lo:hi]
        c = 0
        for i in range(pb.size):
            c += (pb[i] < 0) | (pb[i] > 1) | (tb[i] < 0) | (tb[i] > 1)
        counts[b] = c


_OUTSIDE_UNIT = KernelPair(_count_outside_unit)


def any_outside_unit(p, t) -> bool:
    """Whether an element of p or t (flat, same size and dtype) lies outside [0, 1]."""
    counts = np.empty((p.size + BLOCK - 1) // BLOCK, np.int64)
    _OUTSIDE_UNIT.get(p.size)(p, t, counts)
    return bool(counts.any())
