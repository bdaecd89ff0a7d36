"""Row reductions (max, float64 sums and dots, argmax), compiled apart with reassoc.

They hold no transcendental code, so reassociation (which lets LLVM vectorize
the sums) cannot disturb the polynomial math of the kernels that call them.
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, register_jitable

from .jit import REDUCE_FASTMATH, kernel_jit

_OPTS = dict(fastmath=REDUCE_FASTMATH, error_model="numpy", nogil=True, cache=True)


# Vector accumulators of _row_max: independent chains of compare-and-select.
_CHAINS = 4


@intrinsic
def _row_max(typingctx, a, sign):
    """max_j sign * a[j] over a contiguous 1-d float array, NaN skipped (-inf if
    none), in LLVM vectors of 64 bytes.

    Written in IR because no loop form of it vectorizes: without the nnan flag
    (which the kernels cannot have) LLVM keeps a floating-point max reduction
    scalar, and lane accumulators in an array stay in memory.  v > acc is
    false for a NaN v, which therefore never replaces acc.
    """
    if not (isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
            and a.dtype in (types.float32, types.float64) and sign == a.dtype):
        return None

    def keep_max(builder, slot, v):
        old = builder.load(slot)
        builder.store(builder.select(builder.fcmp_ordered(">", v, old), v, old), slot)

    def codegen(context, builder, sig, args):
        arr = context.make_array(sig.args[0])(context, builder, args[0])
        fty = context.get_value_type(sig.args[1])
        width = 64 // context.get_abi_sizeof(fty)
        vty = ir.VectorType(fty, width)
        ninf = ir.Constant(fty, float("-inf"))
        vsign = ir.Constant(vty, ir.Undefined)
        for k in range(width):
            vsign = builder.insert_element(vsign, args[1], ir.Constant(ir.IntType(32), k))
        accs = [cgutils.alloca_once_value(builder, ir.Constant(vty, [ninf] * width))
                for _ in range(_CHAINS)]
        n = arr.nitems
        step = ir.Constant(n.type, width * _CHAINS)
        nblocks = builder.udiv(n, step)
        with cgutils.for_range(builder, nblocks) as loop:
            base = builder.mul(loop.index, step)
            for c, acc in enumerate(accs):
                j = builder.add(base, ir.Constant(n.type, c * width))
                ptr = builder.bitcast(builder.gep(arr.data, [j]), vty.as_pointer())
                v = builder.fmul(builder.load(ptr, align=context.get_abi_sizeof(fty)), vsign)
                keep_max(builder, acc, v)
        for acc in accs[1:]:
            keep_max(builder, accs[0], builder.load(acc))
        best = builder.load(accs[0])
        m = cgutils.alloca_once_value(builder, ninf)
        for k in range(width):
            keep_max(builder, m, builder.extract_element(best, ir.Constant(ir.IntType(32), k)))
        with cgutils.for_range(builder, builder.sub(n, builder.mul(nblocks, step))) as loop:
            j = builder.add(builder.mul(nblocks, step), loop.index)
            keep_max(builder, m, builder.fmul(builder.load(builder.gep(arr.data, [j])), args[1]))
        return builder.load(m)

    return a.dtype(a, sign), codegen


@kernel_jit(**_OPTS)
def scaled_max(a, sign):
    """max_j sign * a[j] (NaN entries are skipped; the callers' sums see them).
    a: contiguous 1-d array."""
    return _row_max(a, sign)


@kernel_jit(**_OPTS)
def sum64(a):
    """sum_j a[j], accumulated in float64."""
    s = 0.0
    for j in range(a.size):
        s += np.float64(a[j])
    return s


@kernel_jit(**_OPTS)
def dot64(a, b):
    """sum_j a[j] * b[j], accumulated in float64."""
    s = 0.0
    for j in range(a.size):
        s += np.float64(a[j]) * np.float64(b[j])
    return s


@kernel_jit(**_OPTS)
def nonpositive_dot64(x, dy):
    """sum of dy[j] * x[j] over the j where x[j] > 0 does not hold (NaN
    included), accumulated in float64: prelu's weight gradient."""
    s = 0.0
    for j in range(x.size):
        v = x[j]
        s += 0.0 if v > 0 else np.float64(dy[j]) * np.float64(v)
    return s


@register_jitable
def _first_nan_and_max(a, m, n):
    """(first index of a NaN in a, first index of m in a), n where there is none;
    the indices have n's integer type."""
    first_nan = n
    first_max = n
    for j in range(a.size):
        v = a[j]
        i = type(n)(j)
        first_nan = min(first_nan, i if v != v else n)
        first_max = min(first_max, i if v == m else n)
    return first_nan, first_max


@kernel_jit(**_OPTS)
def first_argmax(a):
    """Index of the first maximum of a (size >= 1), NaN counting as the largest
    value (np.argmax, torch.argmax).

    Two vectorized sweeps instead of one loop with a dependent (max, index)
    pair: the maximum m of the non-NaN values, then the first index of a NaN
    and the first index of m as two integer min-reductions, in int32 where the
    size allows (30% faster than int64: twice the lanes per vector).  (A
    search that stopped at the first hit ran 2.5-3 times slower: its early
    exit kept the loop scalar.)
    """
    m = scaled_max(a, a.dtype.type(1.0))
    if a.size < 2 ** 31:
        first_nan, first_max = _first_nan_and_max(a, m, np.int32(a.size))
    else:
        first_nan, first_max = _first_nan_and_max(a, m, np.int64(a.size))
    return np.int64(first_nan if first_nan < a.size else first_max)
