"""Target-free scalar math used by every op definition.

Each name here is one function with a CPU lowering (vectorizable polynomials in
``fastact.cpu.vmath``) and a CUDA lowering (libdevice, in ``fastact.cuda``),
registered with ``numba.extending.overload(..., target=...)``.  The plain Python
bodies below are what runs under the CUDA simulator and in pure-Python calls;
they work on NumPy scalars and keep their dtype.

``chop`` is a bit operation, not math: it lets definitions split a value into
halves whose products are exact (double-word arithmetic that FMA contraction
cannot spoil).  Its one implementation (a bit mask) serves every target, as
do those of ``fma`` (llvm.fma: the exact error of a product in one
instruction), ``polynomial`` (Horner with coefficients per float type) and
``is_float32`` (a compile-time constant).

Targets.  Every function here, and every function an op definition marks
with ``jitable`` or ``helper``, has one overload per target, and none of them
is inlined at Numba IR level (``inline="always"``): LLVM inlines them
(``forceinline``).  Numba shares per-function typing state across targets:
its inlining pass takes an IR-inlined implementation from any template of the
function, whatever its target, so a CPU overload inlined at IR level was
inlined into CUDA kernels too (the CPU's polynomial exp in a CUDA kernel,
which then fails to type: ``add(omitted(default=Undefined), ...)``); and
Numba's IR inliner run on numba-cuda's IR made inlined code read a variable
before its last assignment (log_softmax's ``log(s)`` compiled to ``log(0)``).
``always_inline`` (IR-level inlining) is for CPU-only kernel code.  The CUDA
overloads are registered by ``fastact.cuda`` when its target loads
(``register_cuda``).

Op definitions must never write a bare float or int literal next to an
argument: Numba types ``0.5`` as float64 and would silently promote float32
math.  ``lit(x, 0.5)`` gives the constant in ``x``'s type.
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

_FORCEINLINE = {"forceinline": True}

# (function, typer) pairs waiting for the CUDA target, and the registrar once
# fastact.cuda has loaded it.
_CUDA_PENDING: list = []
_cuda_registrar = None


def _itself(fn):
    def typer(*args, **kwargs):
        return fn
    return typer


def _per_target(fn, typer, **cpu_options):
    """Overload fn with ``typer`` on the CPU now and on the CUDA target when that
    loads (``register_jitable``, one overload per target)."""
    overload(fn, target="cpu", strict=False, **cpu_options)(typer)
    if _cuda_registrar is None:
        _CUDA_PENDING.append((fn, typer))
    else:
        _cuda_registrar(fn, typer)
    return fn


def register_cuda(registrar):
    """Called by ``fastact.cuda`` once: ``registrar(fn, typer)`` overloads fn for
    the CUDA target, now for the functions defined so far and later for new ones."""
    global _cuda_registrar
    _cuda_registrar = registrar
    while _CUDA_PENDING:
        registrar(*_CUDA_PENDING.pop())


def jitable(fn):
    """Register fn as a function callable from kernels of every target."""
    return _per_target(fn, _itself(fn))


def always_inline(fn):
    """Register fn for CPU kernels only, inlined at Numba IR level.

    Kernel templates and their adapters use it so that each kernel is one loop
    body LLVM can vectorize (a helper left as a call inside the loop blocks
    that).  CUDA code must not call fn: Numba's inlining pass looks for inlined
    implementations in every template of a function, whatever its target, so
    an IR-inlined CPU overload would be inlined into CUDA kernels as well.
    """
    overload(fn, target="cpu", strict=False, inline="always")(_itself(fn))
    return fn


def cpu_inline(fn):
    """Register fn for CPU kernels only, inlined by LLVM (``forceinline``): the
    kernel templates' copies of op scalars (``cpu.jit.inline_scalar``)."""
    overload(fn, target="cpu", strict=False, jit_options=_FORCEINLINE)(_itself(fn))
    return fn


def helper(fn):
    """Register fn as a jitable helper that LLVM always inlines into its caller.

    For small functions shared by several op definitions (sigmoid_pair, ...):
    LLVM's own heuristics may keep a helper that holds an exp or a log1p as
    a call inside the kernel loop, which blocks vectorization; inlining at
    Numba IR level instead (always_inline) costs much more compile time when
    such calls nest.
    """
    return _per_target(fn, _itself(fn), jit_options=_FORCEINLINE)


def polynomial(name, coefficients):
    """A jitable p(x) = sum_k c_k x**k (Horner, written out for the vectorizer),
    its coefficients per float type: ``coefficients`` maps np.float32 and
    np.float64 to tuples, constant term first, so that each type evaluates a
    fit of its own degree."""
    impls = {}
    for ty, coeffs in coefficients.items():
        lines = [f"def {name}(x):", f"    p = C[{len(coeffs) - 1}]"]
        lines += [f"    p = C[{i}] + x * p" for i in range(len(coeffs) - 2, -1, -1)]
        lines.append("    return p")
        namespace = {"C": tuple(ty(c) for c in coeffs)}
        exec("\n".join(lines), namespace)
        impls[types.float32 if ty is np.float32 else types.float64] = namespace[name]

    def fn(x):
        return impls[types.float32 if isinstance(x, np.float32) else types.float64](x)

    fn.__name__ = fn.__qualname__ = name
    _per_target(fn, lambda x: impls.get(x), jit_options=_FORCEINLINE)
    return fn


def is_float32(x):
    """True for a float32 x: a compile-time constant in kernels, so that a
    definition can spend work on float32 rounding that float64 does not need."""
    return isinstance(x, np.float32)


def _is_float32_overload(x):
    if isinstance(x, types.Float):
        answer = x == types.float32

        def impl(x):
            return answer
        return impl
    return None


def lit(x, value):
    """``value`` converted to the floating type of ``x``."""
    return type(x)(value)


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


def _chop_overload(x):
    if x in _CHOP:
        def impl(x):
            return _chop_bits(x)
        return impl
    return None


def fma(a, b, c):
    """a*b + c rounded once (llvm.fma: the FMA instruction on both targets).
    fma(a, b, -(a*b)) is the exact rounding error of the product a*b."""
    from fractions import Fraction
    ty = type(a)
    if not all(np.isfinite([a, b, c])):
        return ty(float(a) * float(b) + float(c))
    return ty(float(Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))))


@intrinsic
def _fma_llvm(typingctx, a, b, c):
    if a not in _CHOP or b != a or c != a:
        return None

    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(args[0].type, [args[0].type] * 3)
        name = "llvm.fma.f32" if args[0].type == ir.FloatType() else "llvm.fma.f64"
        fn = cgutils.get_or_insert_function(builder.module, fnty, name)
        return builder.call(fn, list(args))

    return a(a, a, a), codegen


def _fma_overload(a, b, c):
    if a in _CHOP and b == a and c == a:
        def impl(a, b, c):
            return _fma_llvm(a, b, c)
        return impl
    return None


_per_target(lit, _lit_overload, jit_options=_FORCEINLINE)
_per_target(chop, _chop_overload, jit_options=_FORCEINLINE)
_per_target(fma, _fma_overload, jit_options=_FORCEINLINE)
_per_target(is_float32, _is_float32_overload, jit_options=_FORCEINLINE)


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
log1p_unit = _np1(np.log1p)
log1p_unit.__doc__ = ("log(1 + x) for x in [0, 1] (NaN kept; other x: unspecified on the CPU),\n"
                      "cheaper than log1p there: log1p(exp(-|x|)) in softplus and its kin.")
log1p_unit.__name__ = "log1p_unit"
log1m_unit = _np1(lambda x: np.log1p(-x))
log1m_unit.__doc__ = ("log(1 - x) for x in [0, 1] (NaN kept; other x: unspecified on the CPU),\n"
                      "exact near 0 and cheaper than log1p(-x) there: binary cross-entropy.")
log1m_unit.__name__ = "log1m_unit"
tanh = _np1(np.tanh)
tanh.__doc__ = "Hyperbolic tangent."
tanh.__name__ = "tanh"


def erfc(x):
    """Complementary error function 1 - erf(x), relative-accurate for large x."""
    import math
    return type(x)(math.erfc(float(x))) if x == x else x


def erfcx(x):
    """Scaled complementary error function exp(x**2) erfc(x) (about 1/(x sqrt(pi))
    for large x, where erfc itself underflows)."""
    import math
    v = float(x)
    if v != v:
        return x
    if v < 25.0:
        try:
            return type(x)(math.exp(v * v) * math.erfc(v))
        except OverflowError:
            return type(x)(math.inf)
    # asymptotic series, its terms below 1e-17 relative from here on
    w = 1.0 / (2.0 * v * v)
    s, term = 1.0, 1.0
    for k in range(1, 9):
        term *= -(2 * k - 1) * w
        s += term
    return type(x)(s / (v * math.sqrt(math.pi)))


# normal_pdf(x) rounds to 0 beyond these |x| (float32 e**-105.1, float64
# e**-748.8, against half the least denormal, e**-103.3 and e**-745.1)
PDF_CUTOFF_F32 = 14.5
PDF_CUTOFF_F64 = 38.7


def normal_pdf(x):
    """The standard normal density e**(-x**2/2) / sqrt(2 pi), with full relative
    accuracy in the tail (x**2 taken exactly, as a rounded value and its error)."""
    import math
    v = float(x)
    if v != v:
        return x
    if abs(v) > PDF_CUTOFF_F64:
        return type(x)(0.0)
    u = v * v
    e = float(fma(v, v, -u))
    return type(x)(math.exp(-0.5 * u) * (1.0 - 0.5 * e) / math.sqrt(2.0 * math.pi))


def exp_neg_abs(x):
    """e**(-|x|), in [0, 1]: the exponential of sigmoid, softplus and their kin,
    cheaper than exp because its argument is never positive."""
    with np.errstate(all="ignore"):
        return np.exp(-abs(x))


def expm1_neg_abs(x):
    """e**(-|x|) - 1, in (-1, 0], exact near 0 (+0 at x = +-0): with exp_neg_abs
    of the same x, one shared range reduction on the CPU (tanh)."""
    with np.errstate(all="ignore"):
        return np.expm1(-abs(x)) + type(x)(0.0)


def exp_neg(t, d):
    """e**(-t + d) for t >= 0 (+inf gives 0, NaN is kept) and a correction d of a
    few ulps of t: the exponential of an argument known as a value and its
    rounding error.  An absolute error of t is a relative error of e**-t, so
    d matters where t is large; the CPU adds it to the reduced argument, where
    it is taken in full."""
    with np.errstate(all="ignore"):
        e = np.exp(-t)
        return e + e * d


def pow_unit(x, y):
    """x**y for x in [0, 1] and finite y > 0 (NaN kept; other x or y:
    unspecified on the CPU), to full relative accuracy however small the
    result: the (1 - p_t)**gamma of the focal loss."""
    with np.errstate(all="ignore"):
        return x ** y


def bernoulli_log(p, t):
    """log p where t = 1, log(1 - p) elsewhere, for p in [0, 1] (NaN kept):
    the log-likelihood of an outcome t in {0, 1} of probability p, one log
    whichever it takes (binary cross-entropy with 0/1 targets).  The CPU takes
    log(1 - p) as ``log1m_unit`` does, exact near 0."""
    with np.errstate(all="ignore"):
        return np.log(p) if t == 1 else np.log1p(-p)


MATH_FUNCTIONS = ("exp", "exp_neg_abs", "expm1_neg_abs", "expm1", "log", "log1p", "log1p_unit",
                  "log1m_unit", "tanh", "erfc",
                  "erfcx", "normal_pdf")
# functions of two arguments, both of the same float type
MATH_FUNCTIONS_2 = ("exp_neg", "pow_unit", "bernoulli_log")


def _register_cpu():
    from .cpu import vmath  # noqa: F401  (registers the CPU overloads)


_register_cpu()
