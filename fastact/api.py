"""Public op objects: ``fa.<name>`` is one of these; calling it is the forward."""
from __future__ import annotations

import functools
import math

import numpy as np

from . import dispatch
from .cpu import elementwise as cpu_elementwise
from .cpu import rowwise as cpu_rowwise
from .cpu import streaming
from .dispatch import Outputs, flat, prepare, resolve_backend
from .ops.rowwise import numpy_rowwise
from .registry import baked_scalars, integer


def _kernel_params(numeric, dtype):
    return tuple(dtype.type(v) for v in numeric)


def records_autograd(forward):
    """Wrap an op's forward ``__call__``: on torch tensors that require grad
    (grad mode on, default backend) the call goes to ``fastact.torch``'s
    function of the same name and arguments, which records autograd
    (``dispatch.needs_autograd``); ``out=`` then raises, as torch's out= ops
    do.  Every other call is the forward itself."""
    @functools.wraps(forward)
    def call(self, *args, **kwargs):
        if kwargs.get("backend") is None and dispatch.needs_autograd(args):
            if kwargs.pop("out", None) is not None:
                raise RuntimeError(f"{self.spec.name}: out= is not differentiable: an input "
                                   "requires grad (call it under torch.no_grad(), or without "
                                   "out=)")
            kwargs.pop("backend", None)
            from . import torch as ft
            return getattr(ft, self.spec.name)(*args, **kwargs)
        return forward(self, *args, **kwargs)
    return call


class Op:
    """Base of every public op object: name, docstring, registry record."""

    def __init__(self, spec):
        self.spec = spec
        self.__name__ = spec.name
        self.__qualname__ = spec.name
        self.__doc__ = spec.doc

    def __repr__(self):
        params = ", ".join(f"{p.name}={p.default!r}" for p in self.spec.params)
        return f"<fastact {self.spec.kind} op {self.spec.name}({params})>"


class ElementwiseOp(Op):
    """An elementwise activation y = f(x) with its derivative, fused in one pass.

    ``op(x)``: y.   ``op.value_and_derivative(x)``: (y, dy/dx).
    ``op.backward(x, dy)``: dy * f'(x).   ``op.forward_backward(x, dy)``: (y, dy * f'(x)).
    ``op.backward_from_output(y, dy)`` where f' is a function of y alone (sigmoid,
    tanh, relu, elu): no transcendental work, but where y saturates (sigmoid
    near 1, tanh near +-1) f'(y) is only accurate to an ulp of 1, absolutely.
    Every call takes the op's parameters as keywords, ``out=`` and ``backend=``.
    """

    def __init__(self, spec):
        super().__init__(spec)
        self._plans = {}

    @records_autograd
    def __call__(self, x, *, out=None, backend=None, **params):
        return self._run("forward", (x,), ("x",), out, backend, params)

    def value_and_derivative(self, x, *, out=None, backend=None, **params):
        return self._run("value_and_derivative", (x,), ("x",), out, backend, params)

    def backward(self, x, dy, *, out=None, backend=None, **params):
        return self._run("backward", (x, dy), ("x", "dy"), out, backend, params)

    def forward_backward(self, x, dy, *, out=None, backend=None, **params):
        return self._run("forward_backward", (x, dy), ("x", "dy"), out, backend, params)

    def backward_from_output(self, y, dy, *, out=None, backend=None, **params):
        choice, _ = self.spec.bind(params)
        if self.spec.scalars_for(choice).derivative_from_output is None:
            raise NotImplementedError(f"{self.spec.name}: the derivative is not a function "
                                      "of the output; use backward(x, dy)")
        return self._run("backward_from_output", (y, dy), ("y", "dy"), out, backend, params)

    def _run(self, pass_name, inputs, roles, out, backend, params):
        if backend is None:
            result = dispatch.torch_call(inputs, out, lambda views, o: self._run(
                pass_name, views, roles, o, None, params))
            if result is None:
                result = self._run_plain(pass_name, inputs, params, out)
            if result is not None:
                return result
        name = f"{self.spec.name}.{pass_name}"
        b = resolve_backend(backend, *inputs)
        choice, numeric = self.spec.bind(params)
        scalars = self.spec.scalars_for(choice)
        if b == "cuda":
            from . import cuda
            return cuda.run_elementwise(self.spec, scalars, pass_name, inputs, roles, out,
                                        numeric)
        arrays, compute, result, container, originals = prepare(inputs, roles)
        n_out = cpu_elementwise.PASSES[pass_name][3]
        outs = Outputs([arrays[0].shape] * n_out, compute, result, container, out, arrays,
                       name, originals=originals)
        if b == "numpy":
            outs.put(_numpy_pass(scalars, pass_name, arrays, numeric))
        else:
            kernel, numeric = self._cpu_kernel(scalars, pass_name, numeric, compute)
            kernel([flat(a) for a in arrays], [flat(a) for a in outs.arrays],
                   _kernel_params(numeric, compute))
        return outs.finish()

    def _cpu_kernel(self, scalars, pass_name, numeric, dtype):
        """(kernel, the parameter values it takes).  With the op's default
        values, a kernel that has them as constants (``registry.baked_scalars``)
        and takes none."""
        if numeric and numeric == self.spec.default_numeric:
            scalars, numeric = baked_scalars(scalars, numeric), ()
        return cpu_elementwise.kernel(scalars, pass_name, len(numeric), self.spec.transcendental,
                                      self.spec.interleave_for(scalars, dtype)), numeric

    def _run_plain(self, pass_name, inputs, params, out=None):
        """The common call, with little Python work: NumPy float32/float64
        C-contiguous inputs of one dtype and shape, no out= or one the kernel
        can write directly (``dispatch.plain_out``), default backend on the
        CPU, parameters seen before (a plan per pass, dtype and parameter
        values).  None where any of that does not hold (the general path then
        handles the call, errors included)."""
        dt = plain_dtype(inputs)
        if dt is None or pass_name == "backward_from_output":
            return None
        key = plan_key(pass_name, dt, params)
        try:
            plan = self._plans.get(key)
        except TypeError:               # an unhashable parameter value
            return None
        if plan is None:
            choice, numeric = self.spec.bind(params)
            kernel, numeric = self._cpu_kernel(self.spec.scalars_for(choice), pass_name, numeric,
                                               dt)
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            plan = self._plans[key] = (kernel, _kernel_params(numeric, dt),
                                       cpu_elementwise.PASSES[pass_name][3])
        x = inputs[0]
        kernel, p, n_out = plan
        if out is not None:
            outs = dispatch.plain_out(out, n_out, x, inputs)
            if outs is None:
                return None
        elif x.nbytes < streaming.STREAM_MIN:
            outs = [np.empty_like(x) for _ in range(n_out)]
        else:
            outs = [streaming.empty(x.shape, x.dtype) for _ in range(n_out)]
        kernel([a.reshape(-1) for a in inputs], [o.reshape(-1) for o in outs], p)
        return outs[0] if n_out == 1 else tuple(outs)


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
# plans an elementwise op or loss keeps (pass, dtype and parameter values each)
MAX_PLANS = 64


def plan_key(pass_name, dtype, params: dict) -> tuple:
    """The key of a short-path plan: pass, dtype, and each keyword with its
    value and the value's type (True == 1.0 and hashes alike, but only one of
    them passes the argument checks).  Hashing it raises TypeError for an
    unhashable value."""
    return (pass_name, dtype, *((k, type(v), v) for k, v in params.items()))


def plain_dtype(inputs, same_shape=True):
    """The dtype of the common call that needs little Python work: NumPy
    float32/float64 C-contiguous arrays of one dtype (and one shape, with
    ``same_shape``), the default backend on the CPU.  None where any of that
    does not hold (the general path then handles the call, errors included)."""
    x = inputs[0]
    if type(x) is not np.ndarray or not x.flags.c_contiguous:
        return None
    dt = x.dtype
    if dt != _F32 and dt != _F64:
        return None
    for a in inputs[1:]:
        if type(a) is not np.ndarray or a.dtype != dt or not a.flags.c_contiguous \
                or (same_shape and a.shape != x.shape):
            return None
    if dispatch.get_backend() not in ("auto", "cpu"):
        return None
    return dt


def _numpy_pass(scalars, pass_name, arrays, numeric):
    with np.errstate(all="ignore"):
        if pass_name == "forward":
            return (scalars.numpy_value(arrays[0], *numeric),)
        if pass_name == "value_and_derivative":
            return scalars.numpy_value_and_derivative(arrays[0], *numeric)
        if pass_name == "backward_from_output":
            y, dy = arrays
            return (dy * scalars.numpy_derivative_from_output(y, *numeric),)
        x, dy = arrays
        y, d = scalars.numpy_value_and_derivative(x, *numeric)
        if pass_name == "backward":
            return (dy * d,)
        return y, dy * d


def info() -> dict:
    """Versions, threads, backends and devices."""
    import platform

    import numba

    from . import __version__
    from .cpu import jit
    from .cpu.jit import PARALLEL_MIN
    d = {
        "fastact": __version__,
        "numpy": np.__version__,
        "numba": numba.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": numba.get_num_threads(),
        "threading_layer": numba.config.THREADING_LAYER,
        "parallel_min": PARALLEL_MIN,
        # a forked child of a GNU OpenMP parent runs serial kernels only
        "serial_only": jit.SERIAL_ONLY,
        "backends": dispatch.available_backends(),
        "default_backend": dispatch.get_backend(),
    }
    if "cuda" in d["backends"]:
        from . import cuda
        d["cuda"] = cuda.device_info()
    return d


def normalize_axis(axis, ndim: int, name: str) -> int:
    """axis in [0, ndim), or TypeError (not an integer: a float, a string, a
    bool) / ValueError (out of range; a 0-d input counts as 1-d)."""
    axis = integer(axis, name, "axis")
    nd = max(ndim, 1)
    if not -nd <= axis < nd:
        raise ValueError(f"{name}: axis {axis} is out of range for a {ndim}-d input")
    return axis % nd


def split_axis(shape, axis: int):
    """(outer, n, inner): the sizes before, at and after `axis`."""
    shape = tuple(shape) or (1,)
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


class RowwiseOp(Op):
    """A row-wise activation along ``axis`` (softmax family).

    ``op(x, axis=-1)``: y.   ``op.backward(x, dy, axis=-1)``: dx (y recomputed from x).
    ``op.forward_backward(x, dy, axis=-1)``: (y, dx).   Also ``out=``, ``backend=``.
    """

    @records_autograd
    def __call__(self, x, *, axis=-1, out=None, backend=None):
        return self._run("forward", (x,), ("x",), axis, out, backend)

    def backward(self, x, dy, *, axis=-1, out=None, backend=None):
        return self._run("backward", (x, dy), ("x", "dy"), axis, out, backend)

    def forward_backward(self, x, dy, *, axis=-1, out=None, backend=None):
        return self._run("forward_backward", (x, dy), ("x", "dy"), axis, out, backend)

    def _run(self, pass_name, inputs, roles, axis, out, backend):
        n_out = 1 if pass_name != "forward_backward" else 2
        if backend is None:
            result = dispatch.torch_call(inputs, out, lambda views, o: self._run(
                pass_name, views, roles, axis, o, None))
            if result is not None:
                return result
        if backend is None and plain_dtype(inputs) is not None:
            x = inputs[0]
            if x.ndim and x.size and type(axis) is int and (axis == -1 or axis == x.ndim - 1):
                if out is None:
                    outs = [np.empty_like(x) for _ in range(n_out)]
                else:
                    outs = dispatch.plain_out(out, n_out, x, inputs)
                if outs is not None:
                    self._cpu_rows(pass_name, inputs, outs)
                    return outs[0] if n_out == 1 else tuple(outs)
        name = f"{self.spec.name}.{pass_name}"
        b = resolve_backend(backend, *inputs)
        if b == "cuda":
            from . import cuda
            return cuda.run_rowwise(self.spec, pass_name, inputs, roles, out, axis)
        arrays, compute, result, container, originals = prepare(inputs, roles)
        shape = arrays[0].shape
        ax = normalize_axis(axis, len(shape), name)
        if len(shape) and ax != len(shape) - 1:
            # Rows along another axis: compute on a moved copy, move the results back.
            moved = [np.ascontiguousarray(np.moveaxis(a, ax, -1)) for a in arrays]
            res = self._compute(b, pass_name, moved, -1,
                                Outputs([moved[0].shape] * n_out, compute, compute,
                                        container, None, moved, name))
            res = res if isinstance(res, tuple) else (res,)
            back = [np.ascontiguousarray(np.moveaxis(r, -1, ax)) for r in res]
            outs = Outputs([shape] * n_out, compute, result, container, out, arrays, name,
                           originals=originals, alias_ok=False)
            for dst, src in zip(outs.arrays, back):
                np.copyto(dst, src)
            return outs.finish()
        outs = Outputs([shape] * n_out, compute, result, container, out, arrays, name,
                       originals=originals)
        return self._compute(b, pass_name, arrays, ax, outs)

    def _compute(self, b, pass_name, arrays, ax, outs):
        if b == "numpy":
            dy = arrays[1] if len(arrays) > 1 else None
            outs.put(numpy_rowwise(self.spec, pass_name, arrays[0], dy, -1))
        else:
            self._cpu_rows(pass_name, arrays, outs.arrays)
        return outs.finish()

    def _cpu_rows(self, pass_name, arrays, out_arrays):
        """The CPU kernel over the last axis of C-contiguous arrays."""
        shape = arrays[0].shape or (1,)
        n, nrows = shape[-1], math.prod(shape[:-1])
        rows = [a.reshape(nrows, n) for a in arrays]
        outs2 = [a.reshape(nrows, n) for a in out_arrays]
        dt = arrays[0].dtype.type
        sign, log_output = dt(self.spec.extra["sign"]), self.spec.extra["log"]
        size = arrays[0].size
        if pass_name == "forward":
            cpu_rowwise.FORWARD.get(size)(rows[0], outs2[0], sign, log_output)
        elif pass_name == "backward":
            cpu_rowwise.BACKWARD.get(size)(rows[0], rows[1], outs2[0], outs2[0], sign,
                                           log_output, False)
        else:
            cpu_rowwise.BACKWARD.get(size)(rows[0], rows[1], outs2[0], outs2[1], sign,
                                           log_output, True)


OP_CLASSES = {"elementwise": ElementwiseOp, "rowwise": RowwiseOp}


def make_op(spec):
    """The public object of a registry record."""
    return OP_CLASSES[spec.kind](spec)
