"""CPU lowerings of ``fastact.mathlib`` (placeholder: libm calls, not vectorized)."""
import math

from numba.extending import overload

from .. import mathlib


def _libm(name, fn):
    @overload(getattr(mathlib, name), target="cpu")
    def _ov(x):
        def impl(x):
            return fn(x)
        return impl


for _name, _fn in (("exp", math.exp), ("expm1", math.expm1), ("log", math.log),
                   ("log1p", math.log1p), ("tanh", math.tanh), ("erfc", math.erfc)):
    _libm(_name, _fn)
