"""CUDA lowerings of ``fastact.mathlib``: each name maps to libdevice.

float32 arguments call the float32 libdevice function (``__nv_expf`` ...), so
float32 kernels never widen to float64; float64 arguments call the float64
one.  ``__nv_expf`` is already the fast hardware path (a range reduction in
two FMAs, then one ``ex2.approx`` on the SFU) with <= 2 ulp error;
``__nv_fast_expf`` (``__expf``) skips the range reduction and its error grows
with |x| (about 2 + 1.2|x| ulp: 1e-5 relative at |x| = 80), beyond the 2e-6
float32 bound of DESIGN.md, so it is not used for the public elementwise
functions.  Kernels are compiled without ``fastmath=True`` because that sets
LLVM ``nnan``/``ninf`` and flush-to-zero, which break the NaN/inf/denormal
semantics.

Under the CUDA simulator the plain Python bodies of ``fastact.mathlib`` run
instead, and this module registers nothing.  ``register`` also gives the
CUDA target its own overloads of ``mathlib.lit``, ``mathlib.chop`` and of
every function marked ``jitable`` or ``helper`` (``mathlib.register_cuda``).
Every overload here is a device function marked ``forceinline`` (inlined by
NVVM), never inlined at Numba IR level: see ``fastact.mathlib`` for why.
``tests/cuda_lowering.py`` compiles every kernel for the CUDA target (no GPU
needed) and checks that float32 kernels hold no float64 arithmetic.
"""
import numpy as np
from numba import types
from numba.cuda import libdevice
from numba.extending import overload

from .. import mathlib

# mathlib name -> (float32 libdevice function, float64 libdevice function)
_LIBDEVICE = {
    "exp": (libdevice.expf, libdevice.exp),
    "expm1": (libdevice.expm1f, libdevice.expm1),
    "log": (libdevice.logf, libdevice.log),
    "log1p": (libdevice.log1pf, libdevice.log1p),
    "log1p_unit": (libdevice.log1pf, libdevice.log1p),
    "tanh": (libdevice.tanhf, libdevice.tanh),
    "erfc": (libdevice.erfcf, libdevice.erfc),
    "erfcx": (libdevice.erfcxf, libdevice.erfcx),
}

_registered = False
_OPTIONS = {"jit_options": {"forceinline": True}}

# Functions composed from libdevice: name -> (float32 implementation, float64
# implementation).  normal_pdf: e**(-u/2) (1 - e/2) / sqrt(2 pi) with x**2 =
# u + e exactly; the neglected e**2/8 is far below either type's precision.
# The cutoff keeps inf from making e NaN (beyond it the density is 0).
def _normal_pdf(ty, fma, exp, cutoff):
    """normal_pdf for float type ty from libdevice's fma and exp of that type."""
    half, one, c, cut = (ty(v) for v in (0.5, 1.0, 1.0 / np.sqrt(2.0 * np.pi), cutoff))

    def normal_pdf(x):
        ax = abs(x)
        t = cut if ax > cut else ax            # (NaN passes)
        u = t * t
        e = fma(t, t, -u)
        return exp(-half * u) * (one - half * e) * c
    return normal_pdf


def _exp_neg_abs(exp):
    def exp_neg_abs(x):
        return exp(-abs(x))
    return exp_neg_abs


# (the two-argument functions take (a, b), the names their overload declares)
def _exp_neg(exp, fma):
    def exp_neg(a, b):
        e = exp(-a)
        return fma(e, b, e)                   # e**-a (1 + b)
    return exp_neg


def _pow_unit(pow_):
    def pow_unit(a, b):
        return pow_(a, b)
    return pow_unit


def _bernoulli_log(log, log1p, one):
    def bernoulli_log(a, b):
        return log(a) if b == one else log1p(-a)
    return bernoulli_log


def _expm1_neg_abs(expm1, zero):
    def expm1_neg_abs(x):
        return expm1(-abs(x)) + zero          # (+0 at x = +-0)
    return expm1_neg_abs


def _log1m(log1p):
    def log1m_unit(x):
        return log1p(-x)
    return log1m_unit


_COMPOSED = {"exp_neg_abs": (_exp_neg_abs(libdevice.expf), _exp_neg_abs(libdevice.exp)),
             "log1m_unit": (_log1m(libdevice.log1pf), _log1m(libdevice.log1p)),
             "expm1_neg_abs": (_expm1_neg_abs(libdevice.expm1f, np.float32(0.0)),
                               _expm1_neg_abs(libdevice.expm1, np.float64(0.0))),
             "normal_pdf": (
    _normal_pdf(np.float32, libdevice.fmaf, libdevice.expf, mathlib.PDF_CUTOFF_F32),
    _normal_pdf(np.float64, libdevice.fma, libdevice.exp, mathlib.PDF_CUTOFF_F64))}


def _register(name, f32, f64):
    @overload(getattr(mathlib, name), target="cuda", **_OPTIONS)
    def _ov(x):
        if x == types.float32:
            def impl32(x):
                return f32(x)
            return impl32
        if x == types.float64:
            def impl64(x):
                return f64(x)
            return impl64
        return None
    return _ov


def _register_composed(name, f32, f64):
    @overload(getattr(mathlib, name), target="cuda", **_OPTIONS)
    def _ov(x):
        return {types.float32: f32, types.float64: f64}.get(x)
    return _ov


# two-argument functions: name -> (float32, float64 implementation)
_COMPOSED_2 = {"exp_neg": (_exp_neg(libdevice.expf, libdevice.fmaf),
                           _exp_neg(libdevice.exp, libdevice.fma)),
               "pow_unit": (_pow_unit(libdevice.powf), _pow_unit(libdevice.pow)),
               "bernoulli_log": (_bernoulli_log(libdevice.logf, libdevice.log1pf, np.float32(1.0)),
                                 _bernoulli_log(libdevice.log, libdevice.log1p, np.float64(1.0)))}


def _register_composed_2(name, f32, f64):
    @overload(getattr(mathlib, name), target="cuda", **_OPTIONS)
    def _ov(a, b):
        if b != a:
            return None
        return {types.float32: f32, types.float64: f64}.get(a)
    return _ov


def register():
    """Register the overloads once (idempotent)."""
    global _registered
    if _registered:
        return
    missing = (set(mathlib.MATH_FUNCTIONS) - set(_LIBDEVICE) - set(_COMPOSED)
               | set(mathlib.MATH_FUNCTIONS_2) - set(_COMPOSED_2))
    if missing:
        raise NotImplementedError(f"no CUDA lowering for mathlib functions {sorted(missing)}")
    for name, (f32, f64) in _LIBDEVICE.items():
        _register(name, f32, f64)
    for name, (f32, f64) in _COMPOSED.items():
        _register_composed(name, f32, f64)
    for name, (f32, f64) in _COMPOSED_2.items():
        _register_composed_2(name, f32, f64)
    mathlib.register_cuda(
        lambda fn, typer: overload(fn, target="cuda", strict=False, **_OPTIONS)(typer))
    _registered = True
