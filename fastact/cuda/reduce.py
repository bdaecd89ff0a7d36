"""Block and warp reductions of floating-point values.

On a GPU a warp reduces with butterfly shuffles (``shfl_xor``: every lane ends
with the result), then the warps' results meet in shared memory and one warp's
worth of them is reduced again by every warp: two barriers per reduction, not
one per halving of the block.  The simulator has no shuffles: there a "warp" is
the whole block (``core.THREADS`` threads), reduced through the shared array
the caller passes; the block functions above the warp ones are the same code
on both.

Callers allocate ``cuda.shared.array(SLOTS, dtype)`` per reduced quantity
(dtype a compile-time constant) and launch a multiple of ``WARP`` threads per
block, at most ``WARP * SLOTS``.  Every thread of the block must call; each
function ends with a barrier, so the shared arrays may be reused right away.
"""
import math

from numba import cuda

from ..mathlib import exp, lit
from ..ops.axis_ops import beats
from .core import SIM, THREADS

WARP = THREADS if SIM else 32
SLOTS = WARP
_FULL = 0xFFFFFFFF


@cuda.jit(device=True)
def _bigger(a, b):
    return a if a > b else b


@cuda.jit(device=True)
def beats_pair(v1, i1, v2, i2):
    """(v2, i2) replaces (v1, i1) as the (max, first index of it): v2 beats v1
    (``axis_ops.beats``: larger, or the first NaN), or they are equal (or both
    NaN) and i2 comes first."""
    same = (v2 == v1) | ((v2 != v2) & (v1 != v1))
    return beats(v2, v1) | (same & (i2 < i1))


if SIM:
    # The simulator's warp is the block: each lane publishes its value and
    # reads all of them in the same order (two barriers, the same result in
    # every lane).
    @cuda.jit(device=True)
    def _publish_all(sh, v):
        cuda.syncthreads()
        sh[cuda.threadIdx.x] = v
        cuda.syncthreads()

    @cuda.jit(device=True)
    def warp_max(sh, v):
        """Max of v over the warp (no NaN expected); every lane gets it."""
        _publish_all(sh, v)
        for k in range(WARP):
            v = _bigger(v, sh[k])
        return v

    @cuda.jit(device=True)
    def warp_sum(sh, v):
        """Sum of v over the warp; every lane gets it."""
        _publish_all(sh, v)
        v = sh[0]
        for k in range(1, WARP):
            v += sh[k]
        return v

    @cuda.jit(device=True)
    def warp_argmax(shv, shi, v, i):
        """(max, first index of it) of the lanes' (v, i) (``beats_pair``); every
        lane gets it."""
        cuda.syncthreads()
        shv[cuda.threadIdx.x] = v
        shi[cuda.threadIdx.x] = i
        cuda.syncthreads()
        for k in range(WARP):
            if beats_pair(v, i, shv[k], shi[k]):
                v = shv[k]
                i = shi[k]
        return v, i
else:
    # butterfly shuffles: after log2(32) exchanges every lane holds the result
    @cuda.jit(device=True)
    def warp_max(sh, v):
        """Max of v over the warp (no NaN expected); every lane gets it."""
        k = WARP // 2
        while k > 0:
            v = _bigger(v, cuda.shfl_xor_sync(_FULL, v, k))
            k //= 2
        return v

    @cuda.jit(device=True)
    def warp_sum(sh, v):
        """Sum of v over the warp; every lane gets it."""
        k = WARP // 2
        while k > 0:
            v += cuda.shfl_xor_sync(_FULL, v, k)
            k //= 2
        return v

    @cuda.jit(device=True)
    def warp_argmax(shv, shi, v, i):
        """(max, first index of it) of the lanes' (v, i) (``beats_pair``); every
        lane gets it."""
        k = WARP // 2
        while k > 0:
            v2 = cuda.shfl_xor_sync(_FULL, v, k)
            i2 = cuda.shfl_xor_sync(_FULL, i, k)
            if beats_pair(v, i, v2, i2):
                v = v2
                i = i2
            k //= 2
        return v, i


@cuda.jit(device=True)
def _publish(sh, v):
    """Slot w of sh = warp w's (already warp-reduced) v; then a barrier.  Returns
    whether this lane's slot (its lane number) holds a warp's value."""
    tid = cuda.threadIdx.x
    if SIM:
        cuda.syncthreads()            # lanes may still read the exchange slots
    if tid % WARP == 0:
        sh[tid // WARP] = v
    cuda.syncthreads()
    return tid % WARP < cuda.blockDim.x // WARP


@cuda.jit(device=True)
def block_max(sh, v):
    """Block-wide max of one value per thread (no NaN expected); every thread gets it."""
    v = warp_max(sh, v)
    lane = cuda.threadIdx.x % WARP
    have = _publish(sh, v)
    v = warp_max(sh, sh[lane] if have else lit(v, -math.inf))
    cuda.syncthreads()
    return v


@cuda.jit(device=True)
def block_sum(sh, v):
    """Block-wide sum of one value per thread; every thread gets the total."""
    v = warp_sum(sh, v)
    lane = cuda.threadIdx.x % WARP
    have = _publish(sh, v)
    v = warp_sum(sh, sh[lane] if have else lit(v, 0.0))
    cuda.syncthreads()
    return v


@cuda.jit(device=True)
def block_sum2(sa, sb, a, b):
    """Block-wide sums of two values per thread, sharing the barriers."""
    tid = cuda.threadIdx.x
    lane = tid % WARP
    a = warp_sum(sa, a)
    b = warp_sum(sb, b)
    if SIM:
        cuda.syncthreads()            # lanes may still read sb's exchange slots
    if lane == 0:
        sb[tid // WARP] = b           # before _publish's barrier
    have = _publish(sa, a)
    a = warp_sum(sa, sa[lane] if have else lit(a, 0.0))
    b = warp_sum(sb, sb[lane] if have else lit(b, 0.0))
    cuda.syncthreads()
    return a, b


@cuda.jit(device=True)
def block_softmax_stats(sm, ss, st, m, s, t, scale_t):
    """Block-wide merge of per-thread online-softmax partials: max m, s = sum
    exp(v - m), and t, which is rescaled like s when ``scale_t`` (t = sum dy
    exp(v - m)) and plainly summed otherwise (t = sum dy).  Every thread gets
    the totals.  The block max comes first, so each thread rescales once by
    exp(m - M) (1 where m == M, also for M = +-inf) and the sums are plain."""
    big = block_max(sm, m)
    f = lit(s, 1.0) if m == big else exp(m - big)
    s = s * f
    if scale_t:
        t = t * f
    s, t = block_sum2(ss, st, s, t)
    return big, s, t
