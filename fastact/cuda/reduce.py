"""Block reductions through shared memory.

The CUDA simulator has no warp shuffles, so every reduction here is a
shared-memory tree (one path for the simulator and the GPU).  The callers
allocate the shared arrays (``cuda.shared.array(core.THREADS, dtype)``,
dtype a compile-time constant) and launch ``core.THREADS`` threads per block
(a power of two).  Each function ends with a barrier, so the shared arrays
may be reused right away.
"""
import math

from numba import cuda

from ..mathlib import exp, lit


@cuda.jit(device=True)
def softmax_combine(m1, s1, t1, m2, s2, t2, scale_t):
    """Merge two online-softmax partials: max m, s = sum exp(v - m), and t,
    which is rescaled like s when ``scale_t`` (t = sum dy exp(v - m)) and
    plainly added otherwise (t = sum dy)."""
    m = m1 if m1 > m2 else m2
    if m == lit(m, -math.inf):
        return m, s1 + s2, t1 + t2
    a = exp(m1 - m)
    b = exp(m2 - m)
    if scale_t:
        return m, s1 * a + s2 * b, t1 * a + t2 * b
    return m, s1 * a + s2 * b, t1 + t2


@cuda.jit(device=True)
def block_softmax_stats(sm, ss, st, m, s, t, scale_t):
    """Block-wide merge of per-thread (m, s, t); every thread gets the total."""
    tid = cuda.threadIdx.x
    sm[tid] = m
    ss[tid] = s
    st[tid] = t
    cuda.syncthreads()
    step = cuda.blockDim.x // 2
    while step > 0:
        if tid < step:
            mm, s2, t2 = softmax_combine(sm[tid], ss[tid], st[tid],
                                         sm[tid + step], ss[tid + step], st[tid + step],
                                         scale_t)
            sm[tid] = mm
            ss[tid] = s2
            st[tid] = t2
        cuda.syncthreads()
        step //= 2
    rm, rs, rt = sm[0], ss[0], st[0]
    cuda.syncthreads()
    return rm, rs, rt


@cuda.jit(device=True)
def block_sum(sh, v):
    """Block-wide sum of one value per thread; every thread gets the total."""
    tid = cuda.threadIdx.x
    sh[tid] = v
    cuda.syncthreads()
    step = cuda.blockDim.x // 2
    while step > 0:
        if tid < step:
            sh[tid] += sh[tid + step]
        cuda.syncthreads()
        step //= 2
    r = sh[0]
    cuda.syncthreads()
    return r
