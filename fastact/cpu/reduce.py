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


# Vector accumulators of _row_max and _row_argmax: independent chains of
# compare-and-select.
_CHAINS = 4
_SUFFIX = {4: "f32", 8: "f64"}        # LLVM's name of a float type, by size


def _splat(builder, vty, value):
    """The vector of type vty with value in every lane."""
    vec = ir.Constant(vty, ir.Undefined)
    for k in range(vty.count):
        vec = builder.insert_element(vec, value, ir.Constant(ir.IntType(32), k))
    return vec


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
        vsign = _splat(builder, vty, args[1])
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
def all_binary(a):
    """Whether every a[j] is 0 or 1: the sum of |a (1 - a)| is 0 exactly then
    (NaN and inf give NaN or inf).  Summed in runs of 256, stopping at the
    first run that has another value."""
    one = a.dtype.type(1.0)
    for lo in range(0, a.size, 256):
        run = a[lo:lo + 256]
        s = a.dtype.type(0.0)
        for j in range(run.size):
            v = run[j]
            s += abs(v * (one - v))
        if s != 0:
            return False
    return True


@kernel_jit(**_OPTS)
def nonpositive_dot64(x, dy):
    """sum of dy[j] * x[j] over the j where x[j] > 0 does not hold (NaN
    included), accumulated in float64: prelu's weight gradient."""
    s = 0.0
    for j in range(x.size):
        v = x[j]
        s += 0.0 if v > 0 else np.float64(dy[j]) * np.float64(v)
    return s


@intrinsic
def _row_argmax(typingctx, a):
    """Index of the first maximum of a contiguous 1-d float array a (size >= 1,
    below 2**31), NaN skipped: 0 if every entry is -inf; -1 if a holds a NaN.

    One sweep in LLVM vectors of 64 bytes (_CHAINS accumulators): per lane
    the largest value so far and its int32 index, replaced only by a strictly
    larger value (so each lane keeps its first maximum), and an OR of the lanes'
    NaN tests; then the lanes are merged, ties going to the smaller index, and
    the tail is scanned.  (In loop form LLVM keeps the index reduction scalar.)
    """
    if not (isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
            and a.dtype in (types.float32, types.float64)):
        return None

    def codegen(context, builder, sig, args):
        arr = context.make_array(sig.args[0])(context, builder, args[0])
        fty = context.get_value_type(sig.args[0].dtype)
        size = context.get_abi_sizeof(fty)
        width = 64 // size
        i32, i64 = ir.IntType(32), ir.IntType(64)
        vty, ivty = ir.VectorType(fty, width), ir.VectorType(i32, width)
        n = arr.nitems
        ninf = ir.Constant(fty, float("-inf"))
        accs = [cgutils.alloca_once_value(builder, ir.Constant(vty, [ninf] * width))
                for _ in range(_CHAINS)]
        idxs = [cgutils.alloca_once_value(builder, _splat(builder, ivty, builder.trunc(n, i32)))
                for _ in range(_CHAINS)]
        nan_seen = cgutils.alloca_once_value(
            builder, ir.Constant(ir.VectorType(ir.IntType(1), width), [0] * width))
        step = ir.Constant(n.type, width * _CHAINS)
        nblocks = builder.udiv(n, step)

        def sweep(base, c):
            """Chain c takes the vector at base + c * width."""
            j = builder.add(base, ir.Constant(n.type, c * width))
            ptr = builder.bitcast(builder.gep(arr.data, [j]), vty.as_pointer())
            v = builder.load(ptr, align=size)
            jv = builder.add(_splat(builder, ivty, builder.trunc(base, i32)),
                             ir.Constant(ivty, [c * width + k for k in range(width)]))
            acc = builder.load(accs[c])
            gt = builder.fcmp_ordered(">", v, acc)
            builder.store(builder.select(gt, v, acc), accs[c])
            builder.store(builder.select(gt, jv, builder.load(idxs[c])), idxs[c])
            builder.store(builder.or_(builder.load(nan_seen),
                                      builder.fcmp_unordered("uno", v, v)), nan_seen)

        with cgutils.for_range(builder, nblocks) as loop:
            base = builder.mul(loop.index, step)
            for c in range(_CHAINS):
                sweep(base, c)
        # the vectors left over, in chain 0
        start = builder.mul(nblocks, step)
        vstep = ir.Constant(n.type, width)
        nvec = builder.udiv(builder.sub(n, start), vstep)
        with cgutils.for_range(builder, nvec) as loop:
            sweep(builder.add(start, builder.mul(loop.index, vstep)), 0)
        # merge the chains lane by lane, then the lanes: the largest value,
        # and the smallest index holding it
        acc, idx = builder.load(accs[0]), builder.load(idxs[0])
        for c in range(1, _CHAINS):
            a2, i2 = builder.load(accs[c]), builder.load(idxs[c])
            take = builder.or_(builder.fcmp_ordered(">", a2, acc), builder.and_(
                builder.fcmp_ordered("==", a2, acc), builder.icmp_signed("<", i2, idx)))
            acc, idx = builder.select(take, a2, acc), builder.select(take, i2, idx)
        mod = builder.module
        top = builder.call(cgutils.get_or_insert_function(
            mod, ir.FunctionType(fty, [vty]), f"llvm.vector.reduce.fmax.v{width}{_SUFFIX[size]}"),
            [acc])
        at_top = builder.select(builder.fcmp_ordered("==", acc, _splat(builder, vty, top)), idx,
                                _splat(builder, ivty, builder.trunc(n, i32)))
        first = builder.call(cgutils.get_or_insert_function(
            mod, ir.FunctionType(i32, [ivty]), f"llvm.vector.reduce.smin.v{width}i32"), [at_top])
        m = cgutils.alloca_once_value(builder, top)
        best = cgutils.alloca_once_value(builder, builder.sext(first, i64))

        def consider(v, i):
            old, bi = builder.load(m), builder.load(best)
            take = builder.fcmp_ordered(">", v, old)
            builder.store(builder.select(take, v, old), m)
            builder.store(builder.select(take, i, bi), best)

        nan_bits = builder.bitcast(builder.load(nan_seen), ir.IntType(width))
        nan = cgutils.alloca_once_value(
            builder, builder.icmp_unsigned("!=", nan_bits, ir.Constant(ir.IntType(width), 0)))
        start = builder.add(start, builder.mul(nvec, vstep))
        with cgutils.for_range(builder, builder.sub(n, start)) as loop:
            j = builder.add(start, loop.index)
            v = builder.load(builder.gep(arr.data, [j]))
            consider(v, j)               # later indices: a tie never replaces
            builder.store(builder.or_(builder.load(nan), builder.fcmp_unordered("uno", v, v)),
                          nan)
        bi = builder.load(best)
        bi = builder.select(builder.icmp_signed("==", bi, n), ir.Constant(i64, 0), bi)
        return builder.select(builder.load(nan), ir.Constant(i64, -1), bi)

    return types.int64(a), codegen


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


@register_jitable
def _argmax_two_sweeps(a):
    """first_argmax for rows of any size: the maximum m of the non-NaN values,
    then the first index of a NaN and of m as two int64 min-reductions."""
    m = scaled_max(a, a.dtype.type(1.0))
    first_nan, first_max = _first_nan_and_max(a, m, np.int64(a.size))
    return np.int64(first_nan if first_nan < a.size else first_max)


@kernel_jit(**_OPTS)
def first_argmax(a):
    """Index of the first maximum of a (size >= 1), NaN counting as the largest
    value (np.argmax, torch.argmax).

    One vectorized sweep (``_row_argmax``); a row holding a NaN takes a second
    one for its first NaN.  Rows of 2**31 elements or more, whose indices do
    not fit the sweep's int32 lanes, take ``_argmax_two_sweeps``.
    """
    if a.size >= 2 ** 31:
        return _argmax_two_sweeps(a)
    i = _row_argmax(a)
    if i >= 0:
        return i
    first_nan, _ = _first_nan_and_max(a, a[0], np.int64(a.size))
    return first_nan
