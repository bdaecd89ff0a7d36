"""Workloads, generated from the op registry.

Every op, every pass in ``spec.passes``, one workload per value of the op's
choice parameter (gelu approximate="none" and "tanh"), inputs from
``spec.example_call``: a new kind of op is covered as soon as it is
registered, with no change here.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

import numpy as np

from ..registry import REGISTRY, REQUIRED

# --quick: a representative handful (those registered), plus the first op of any
# kind none of them covers, so new kinds show up in the default run.
QUICK_OPS = ("relu", "sigmoid", "tanh", "gelu", "silu", "softplus", "softmax", "log_softmax",
             "swiglu", "sparse_softmax_cross_entropy", "sigmoid_binary_cross_entropy", "mse")
QUICK_SIZES = (1 << 22,)
FULL_SIZES = (1000, 100_000, 1 << 24)
QUICK_DTYPES = ("float32",)
FULL_DTYPES = ("float32", "float64")
DTYPES = ("float16", "float32", "float64")

# Value used for a required parameter that an example leaves out.
REQUIRED_FALLBACK = 0.0


class BenchError(Exception):
    """A problem a user can meet (bad option, missing device): one line, no traceback."""


@dataclass
class Workload:
    op: str
    kind: str
    pass_name: str
    variant: dict          # the choice parameter's value, e.g. {"approximate": "tanh"}
    dtype: str
    size: int              # requested number of elements of the main input
    args: tuple
    kwargs: dict
    notes: list = field(default_factory=list)
    bytes_read: int | None = None
    bytes_written: int | None = None

    @property
    def label(self) -> str:
        if not self.variant:
            return self.op
        return f"{self.op}[{','.join(str(v) for v in self.variant.values())}]"

    @property
    def shape(self) -> tuple:
        return tuple(self.args[0].shape) if self.args and hasattr(self.args[0], "shape") else ()

    @property
    def nbytes(self) -> int | None:
        if self.bytes_read is None:
            return None
        return self.bytes_read + self.bytes_written

    def key(self) -> tuple:
        return (self.label, self.pass_name, self.dtype, self.size)


def all_ops() -> list[str]:
    return list(REGISTRY)


def select_ops(names=None, quick=True) -> list[str]:
    """Op names to run: the given ones (validated), else the quick set or every op."""
    if names:
        out = []
        for n in names:
            if n not in REGISTRY:
                close = difflib.get_close_matches(n, REGISTRY, n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise BenchError(f"unknown op {n!r}{hint}; `fastact bench --list` shows the "
                                 f"{len(REGISTRY)} registered ops")
            if n not in out:
                out.append(n)
        return out
    if not quick:
        return all_ops()
    ops = [n for n in QUICK_OPS if n in REGISTRY]
    kinds = {REGISTRY[n].kind for n in ops}
    for name, spec in REGISTRY.items():
        if spec.kind not in kinds:
            ops.append(name)
            kinds.add(spec.kind)
    return ops


def passes_for(spec, wanted=None, quick=True) -> list[str]:
    """The passes of an op to time: ``wanted`` ∩ spec.passes, else (quick) the last,
    most fused one (forward_backward, value_and_grad; forward for argmax), else all."""
    if wanted:
        return [p for p in spec.passes if p in wanted]
    if quick:
        return list(spec.passes[-1:])
    return list(spec.passes)


def variants_of(spec) -> list[dict]:
    """One workload per value of the choice parameter when it selects different math
    (separate scalar definitions: gelu's approximate); options such as a loss's
    reduction keep the example's value."""
    choice = spec.choice
    if choice is None or len(spec.scalars) < 2:
        return [{}]
    return [{choice.name: v} for v in choice.choices]


def parse_size(text: str) -> int:
    """'1000', '1e5', '2^24', '2**24', '16M', '64k' (binary k/M/G) -> int."""
    t = text.strip().replace("_", "")
    m = re.fullmatch(r"(\d+)\s*(?:\^|\*\*)\s*(\d+)", t)
    if m:
        return int(m.group(1)) ** int(m.group(2))
    m = re.fullmatch(r"(\d+)([kKmMgG])", t)
    if m:
        return int(m.group(1)) << {"k": 10, "m": 20, "g": 30}[m.group(2).lower()]
    try:
        v = float(t)
    except ValueError:
        raise BenchError(f"bad size {text!r}: use e.g. 1000, 1e5, 2^24 or 16M") from None
    if v < 1 or v != int(v):
        raise BenchError(f"bad size {text!r}: a size is a positive number of elements")
    return int(v)


def parse_dtype(text: str) -> str:
    t = text.strip().lower()
    t = {"f16": "float16", "half": "float16", "f32": "float32", "single": "float32",
         "f64": "float64", "double": "float64"}.get(t, t)
    if t not in DTYPES:
        raise BenchError(f"unknown dtype {text!r}; choose from {', '.join(DTYPES)}")
    return t


def make_workload(op: str, pass_name: str, size: int, dtype: str, variant=None,
                  seed: int = 0) -> Workload:
    spec = REGISTRY[op]
    variant = dict(variant or {})
    rng = np.random.default_rng(seed)
    args, kwargs = spec.example_call(pass_name, int(size), np.dtype(dtype), rng)
    kwargs = {**dict(kwargs), **variant}
    notes = []
    for p in spec.params:
        if p.default is REQUIRED and p.name not in kwargs:
            kwargs[p.name] = REQUIRED_FALLBACK
            notes.append(f"{op}: example_call gave no value for required parameter "
                         f"{p.name!r}; used {REQUIRED_FALLBACK}")
    return Workload(op=op, kind=spec.kind, pass_name=pass_name, variant=variant,
                    dtype=str(np.dtype(dtype)), size=int(size), args=tuple(args),
                    kwargs=kwargs, notes=notes)


def plan(ops, sizes, dtypes, passes=None, quick=True) -> list[tuple]:
    """[(op, pass, size, dtype, variant)] in run order (op, variant, pass, dtype, size)."""
    out = []
    for op in ops:
        spec = REGISTRY[op]
        for variant in variants_of(spec):
            for p in passes_for(spec, passes, quick):
                for dt in dtypes:
                    for size in sizes:
                        out.append((op, p, size, dt, variant))
    return out


def copy_inputs(obj):
    """A fresh copy of the arrays in (args, kwargs) (other values shared)."""
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, tuple):
        return tuple(copy_inputs(o) for o in obj)
    if isinstance(obj, list):
        return [copy_inputs(o) for o in obj]
    if isinstance(obj, dict):
        return {k: copy_inputs(v) for k, v in obj.items()}
    return obj
