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

# Functions of two arguments, composed from libdevice: name -> (float32
# implementation, float64 implementation).  exp_hilo(hi, lo) = e**hi (1 + lo):
# lo is at most a few ulps of hi, so the neglected lo**2/2 is far below either
# type's precision.
_ONE32, _ONE64 = np.float32(1.0), np.float64(1.0)


def _exp_hilo32(hi, lo):
    return libdevice.expf(hi) * (_ONE32 + lo)


def _exp_hilo64(hi, lo):
    return libdevice.exp(hi) * (_ONE64 + lo)


_COMPOSED_2 = {"exp_hilo": (_exp_hilo32, _exp_hilo64)}


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


def _register_2(name, f32, f64):
    # (argument names as in the mathlib function: Numba matches them)
    @overload(getattr(mathlib, name), target="cuda", **_OPTIONS)
    def _ov(hi, lo):
        if lo != hi:
            return None
        return {types.float32: f32, types.float64: f64}.get(hi)
    return _ov


def register():
    """Register the overloads once (idempotent)."""
    global _registered
    if _registered:
        return
    missing = (set(mathlib.MATH_FUNCTIONS) - set(_LIBDEVICE)
               | set(mathlib.MATH_FUNCTIONS_2) - set(_COMPOSED_2))
    if missing:
        raise NotImplementedError(f"no CUDA lowering for mathlib functions {sorted(missing)}")
    for name, (f32, f64) in _LIBDEVICE.items():
        _register(name, f32, f64)
    for name, (f32, f64) in _COMPOSED_2.items():
        _register_2(name, f32, f64)
    mathlib.register_cuda(
        lambda fn, typer: overload(fn, target="cuda", strict=False, **_OPTIONS)(typer))
    _registered = True
