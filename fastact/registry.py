"""The op registry: one record per op, holding its scalar definitions.

Kernel templates (``fastact.cpu.templates``, ``fastact.cuda``) turn the scalar
functions of a record into loops; the NumPy baseline of each op sits beside
its scalars.  Tests and benchmarks iterate over ``REGISTRY``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import numpy as np


class _Required:
    def __repr__(self):
        return "<required>"



def real_number(v, owner: str, name: str) -> float:
    """v as a float, or TypeError naming the parameter: a real number (Python
    or NumPy int or float, or a 0-d array of one), never a bool, string or None."""
    if isinstance(v, (bool, np.bool_, str, bytes)) or v is None \
            or (isinstance(v, np.ndarray) and (v.ndim or v.dtype.kind not in "iuf")):
        raise TypeError(f"{owner}: {name} must be a real number, got {v!r}")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{owner}: {name} must be a real number, got {v!r}") from None


def integer(v, owner: str, name: str) -> int:
    """v as an int in the range of int64, or TypeError (not an integer: a bool,
    a float, a string) / ValueError (outside int64) naming the parameter."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{owner}: {name} must be an integer, got {v!r}")
    v = int(v)
    if not -2**63 <= v < 2**63:
        raise ValueError(f"{owner}: {name}={v} is outside the range of int64")
    return v

REQUIRED = _Required()



def require(param, ok, condition):
    """A parameter check (``OpSpec.check``): ValueError where ok(value of param)
    is false, saying that param must be ``condition``."""
    def check(op, values):
        if not ok(values[param]):
            raise ValueError(f"{op}: {param} must be {condition}, got {values[param]}")
    return check


def require_finite_nonnegative(param):
    """``require``: param >= 0 and finite."""
    return require(param, lambda v: 0.0 <= v < math.inf, ">= 0 and finite")


def require_all(*checks):
    """One parameter check made of several (each in turn)."""
    def check(op, values):
        for c in checks:
            c(op, values)
    return check

@dataclass(frozen=True)
class Param:
    """A keyword parameter of an op.

    ``choices`` marks a string-valued one; ``kernel=False`` one that the op
    object handles itself (axis, weight arrays) and that kernels never see.
    """
    name: str
    default: object
    choices: Optional[tuple] = None
    kernel: bool = True


@dataclass(frozen=True)
class Scalars:
    """Definitions of one elementwise function.

    value(x, *p) -> y;  value_and_derivative(x, *p) -> (y, dy/dx);
    derivative_from_output(y, *p) -> dy/dx where the output alone suffices
    (all three jitable scalars).  The numpy_* entries are the NumPy baseline
    of the same things on whole arrays.
    """
    value: Callable
    value_and_derivative: Callable
    numpy_value: Callable
    numpy_value_and_derivative: Callable
    derivative_from_output: Optional[Callable] = None
    numpy_derivative_from_output: Optional[Callable] = None
    # Interleave count of the CPU kernels per dtype name, where it differs from
    # the op's on hosts with 512-bit vectors (``OpSpec.interleave_for``).
    interleave: dict = field(default_factory=dict)


@dataclass(frozen=True)
class OpSpec:
    """Common part of every record.

    kind: "elementwise" | "rowwise" | "gated" | "prelu" | "maxout" | "argmax" | "loss"
    params: keyword parameters, numeric ones passed to kernels in this order.
    numpy: the NumPy baseline (what a NumPy user would write).
    """
    name: str
    kind: str
    doc: str
    params: tuple = ()
    numpy: Optional[Callable] = None
    # Elementwise ops: Scalars per value of the choice parameter (key None if none).
    scalars: dict = field(default_factory=dict)
    # Test domain (lo, hi) of finite inputs where the accuracy bound is checked.
    domain: tuple = (-20.0, 20.0)
    # True if the definition calls exp/log/tanh/erfc (vectorization is checked).
    transcendental: bool = False
    # Vector iterations the CPU kernels' loops interleave (``cpu.jit.KernelPair``;
    # 0: LLVM's choice); Scalars.interleave overrides it per dtype.
    interleave: int = 0
    # Public passes (method names; "forward" is calling the op).
    passes: tuple = ("forward", "value_and_derivative", "backward", "forward_backward")
    # example(pass_name, size, dtype, rng) -> (args, kwargs): valid arguments for that
    # pass with about `size` elements in the main input (tests and benchmarks use it).
    example: Optional[Callable] = None
    # Free-form extra data for templates of other kinds.
    extra: dict = field(default_factory=dict)
    # check(op name, {parameter name: value}): raises ValueError for values the
    # op does not take (``require`` makes one).  ``bind`` calls it with the
    # numeric parameters (floats); a loss's ``losses.op.bind_options`` with all
    # of its options.
    check: Optional[Callable] = None

    def example_call(self, pass_name, size, dtype, rng):
        """(args, kwargs) for ``getattr(op, pass_name)`` (or ``op`` for "forward")."""
        return (self.example or elementwise_example)(pass_name, size, dtype, rng)

    @property
    def choice(self) -> Optional[Param]:
        for p in self.params:
            if p.choices is not None:
                return p
        return None

    @property
    def numeric_params(self) -> tuple:
        return tuple(p for p in self.params if p.choices is None and p.kernel)

    def bind(self, kwargs: dict) -> tuple:
        """Split call keywords into (choice value or None, numeric values in order).

        Unknown keywords raise TypeError; bad choices, and numeric values that
        ``check`` refuses, raise ValueError.
        """
        known = {p.name for p in self.params}
        unknown = set(kwargs) - known
        if unknown:
            raise TypeError(f"{self.name}() got unexpected keyword argument(s) "
                            f"{sorted(unknown)}; accepted: {sorted(known) or 'none'}")
        choice_value = None
        numeric = []
        for p in self.params:
            if not p.kernel:
                continue
            v = kwargs.get(p.name, p.default)
            if v is REQUIRED:
                raise TypeError(f"{self.name}() missing required keyword argument {p.name!r}")
            if p.choices is not None:
                if v not in p.choices:
                    raise ValueError(f"{self.name}: {p.name}={v!r} is not one of {p.choices}")
                choice_value = v
            else:
                numeric.append(real_number(v, self.name, p.name))
        if self.check is not None:
            self.check(self.name, {p.name: v for p, v in zip(self.numeric_params, numeric)})
        return choice_value, tuple(numeric)

    def scalars_for(self, choice_value) -> Scalars:
        return self.scalars[choice_value]

    @property
    def default_numeric(self) -> Optional[tuple]:
        """The default values of the numeric parameters, in kernel order (None
        where one is required)."""
        values = tuple(p.default for p in self.numeric_params)
        if any(v is REQUIRED for v in values):
            return None
        return tuple(float(v) for v in values)

    def interleave_for(self, scalars: Scalars, dtype) -> int:
        """The interleave count of the CPU kernels of scalars for dtype.

        The per-dtype counts (Scalars.interleave) were measured on a host with
        512-bit vectors and streaming stores in the loop that computes; on
        other hosts (16 vector registers, tiled streaming) the op's count
        held for every op and dtype (``fastact.cpu.jit.WIDE_VECTORS``)."""
        from .cpu.jit import WIDE_VECTORS
        if not WIDE_VECTORS:
            return self.interleave
        return scalars.interleave.get(np.dtype(dtype).name, self.interleave)


_BAKED: dict = {}


def _bake(f, values):
    """g(x) = f(x, *values), the values as constants of x's type (``lit``)."""
    from .mathlib import lit
    namespace = {"f": f, "lit": lit, **{f"P{k}": v for k, v in enumerate(values)}}
    args = "".join(f", lit(x, P{k})" for k in range(len(values)))
    exec(f"def {f.__name__}_baked(x):\n    return f(x{args})\n", namespace)
    return namespace[f"{f.__name__}_baked"]


def baked_scalars(scalars: Scalars, values: tuple) -> Scalars:
    """scalars with the numeric parameters fixed at values: functions of x
    alone, whose CPU kernels take no parameters and fold the values in
    (beta * x with beta = 1 is x; a constant needs no register).  The CPU
    kernels of calls with an op's default parameters use them.  One record per
    (scalars, values), kept, so that kernels cached by record stay found."""
    key = (id(scalars), values)
    baked = _BAKED.get(key)
    if baked is None:
        dfo = scalars.derivative_from_output
        baked = _BAKED[key] = (scalars, replace(
            scalars, value=_bake(scalars.value, values),
            value_and_derivative=_bake(scalars.value_and_derivative, values),
            derivative_from_output=None if dfo is None else _bake(dfo, values)))
    return baked[1]


def elementwise_example(pass_name, size, dtype, rng):
    """Inputs of an elementwise pass: x standard normal, dy uniform in [-1, 1)."""
    x = rng.standard_normal(size).astype(dtype)
    if pass_name in ("backward", "forward_backward"):
        return (x, rng.uniform(-1, 1, size).astype(dtype)), {}
    return (x,), {}


REGISTRY: dict[str, OpSpec] = {}


def register(spec: OpSpec) -> OpSpec:
    if spec.name in REGISTRY:
        raise ValueError(f"op {spec.name!r} registered twice")
    REGISTRY[spec.name] = spec
    return spec


def ops_of_kind(*kinds: str) -> list[OpSpec]:
    return [s for s in REGISTRY.values() if s.kind in kinds]
