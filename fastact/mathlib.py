"""Target-free scalar math used by every op definition.

Each name here is one function with a CPU lowering (vectorizable polynomials in
``fastact.cpu.vmath``) and a CUDA lowering (libdevice, in ``fastact.cuda``),
registered with ``numba.extending.overload(..., target=...)``.  The plain Python
bodies below are what runs under the CUDA simulator and in pure-Python calls;
they work on NumPy scalars and keep their dtype.

``chop`` is a bit operation, not math: it lets definitions split a value into
halves whose products are exact (double-word arithmetic that FMA contraction
cannot spoil).  Its one lowering serves every target.

Op definitions must never write a bare float or int literal next to an
argument: Numba types ``0.5`` as float64 and would silently promote float32
math.  ``lit(x, 0.5)`` gives the constant in ``x``'s type.
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload, register_jitable


def always_inline(fn):
    """Register fn as a jitable function that Numba inlines at IR level.

    Op definitions and their helpers use it so that each kernel is one loop
    body LLVM can vectorize (a helper left as a call inside the loop blocks
    that).  Each function needs its own ``register_jitable(inline="always")``
    call: Numba pops ``inline`` from the decorator's keyword dict, so a
    decorator object reused for a second function silently registers it as
    inline="never".
    """
    return register_jitable(inline="always")(fn)


def helper(fn):
    """Register fn as a jitable helper that LLVM always inlines into its caller.

    For small functions shared by several op definitions (sigmoid_pair, ...):
    LLVM's own heuristics may keep a helper that holds an exp or a log1p as
    a call inside the kernel loop, which blocks vectorization; inlining at
    Numba IR level instead (always_inline) costs much more compile time when
    such calls nest.
    """
    return register_jitable(forceinline=True)(fn)


def lit(x, value):
    """``value`` converted to the floating type of ``x``."""
    return type(x)(value)


@overload(lit, inline="always")
def _lit_overload(x, value):
    if isinstance(x, types.Float):
        ty = x

        def impl(x, value):
            return ty(value)

        return impl
    return None


# bit width -> mask keeping the sign, the exponent and the leading mantissa
# bits: 12 significant bits for float32, 26 for float64
_CHOP_MASK = {32: (1 << 32) - (1 << 12), 64: (1 << 64) - (1 << 27)}
_CHOP = {types.float32: (32, _CHOP_MASK[32]), types.float64: (64, _CHOP_MASK[64])}


def chop(x):
    """x with its low mantissa bits cleared: 12 significant bits (float32) or
    26 (float64).  x = chop(x) + (x - chop(x)) exactly, and the product of two
    high halves, or of a high and a low half, is exact in x's type."""
    a = np.asarray(x)
    u = a.view(np.uint32 if a.itemsize == 4 else np.uint64)
    return type(x)((u & u.dtype.type(_CHOP_MASK[8 * a.itemsize])).view(a.dtype))


@intrinsic
def _chop_bits(typingctx, x):
    if x not in _CHOP:
        return None
    bits, mask = _CHOP[x]

    def codegen(context, builder, sig, args):
        ity = ir.IntType(bits)
        i = builder.and_(builder.bitcast(args[0], ity), ir.Constant(ity, mask))
        return builder.bitcast(i, args[0].type)

    return x(x), codegen


@overload(chop, target="generic", inline="always")
def _chop_overload(x):
    if x in _CHOP:
        def impl(x):
            return _chop_bits(x)
        return impl
    return None


def _np1(fn):
    def scalar(x):
        with np.errstate(all="ignore"):
            return fn(x)
    return scalar


exp = _np1(np.exp)
exp.__doc__ = "e**x."
exp.__name__ = "exp"
expm1 = _np1(np.expm1)
expm1.__doc__ = "e**x - 1, exact near 0."
expm1.__name__ = "expm1"
log = _np1(np.log)
log.__doc__ = "Natural logarithm."
log.__name__ = "log"
log1p = _np1(np.log1p)
log1p.__doc__ = "log(1 + x), exact near 0."
log1p.__name__ = "log1p"
tanh = _np1(np.tanh)
tanh.__doc__ = "Hyperbolic tangent."
tanh.__name__ = "tanh"


def erfc(x):
    """Complementary error function 1 - erf(x), relative-accurate for large x."""
    import math
    return type(x)(math.erfc(float(x))) if x == x else x


MATH_FUNCTIONS = ("exp", "expm1", "log", "log1p", "tanh", "erfc")


def _register_cpu():
    from .cpu import vmath  # noqa: F401  (registers the CPU overloads)


_register_cpu()
