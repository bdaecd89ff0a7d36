"""Public op objects of the ops across one axis: gated units, prelu, maxout, argmax."""
from __future__ import annotations

import numpy as np

from . import dispatch
from .api import Op, normalize_axis, plain_dtype, records_autograd, split_axis
from .cpu import axis_kernels as K
from .cpu.jit import PARALLEL_MIN
from .dispatch import GivenOutputs, NewOutputs, Outputs, prepare, resolve_backend
from .ops import axis_ops


class _Call:
    """A call of an axis op on the host: its backend, its inputs as arrays of
    the compute dtype, and its outputs (``outputs``).  ``plain`` (the roles of
    the inputs): NumPy float32/float64 C-contiguous inputs of one dtype, the
    default backend on the CPU: the inputs as they are, and new outputs or
    ``out=`` arrays the kernels can write directly (``dispatch.plain_outs``),
    with none of ``prepare``'s and ``Outputs``' conversions."""

    __slots__ = ("arrays", "backend", "compute", "container", "originals", "plain", "result")

    def __init__(self, backend, arrays, compute, result=None, container=None, originals=(),
                 plain=None):
        self.backend, self.arrays, self.compute = backend, arrays, compute
        self.result, self.container, self.originals = result, container, originals
        self.plain = plain

    def outputs(self, shapes, out, name):
        if self.plain:
            if out is None:
                return NewOutputs(shapes, self.compute)
            outs = dispatch.plain_outs(out, [tuple(s) for s in shapes], self.compute,
                                       self.arrays, alias_inputs=False)
            if outs is not None:
                return GivenOutputs(outs)
            # any other out=: Outputs' checks, conversions and aliasing (prepare
            # returns plain inputs as they are)
            _, _, self.result, self.container, self.originals = prepare(
                self.arrays, self.plain, same_shape=False)
        return Outputs(shapes, self.compute, self.result, self.container, out, self.arrays,
                       name, originals=self.originals)


def _begin(inputs, roles, out, backend, rerun, run_cuda):
    """(result, None) for a call handled whole: torch CPU tensors as NumPy views
    (``rerun(views, out)``), or the CUDA backend (``run_cuda()``); else (None,
    the ``_Call``)."""
    if backend is None:
        result = dispatch.torch_call(inputs, out, rerun)
        if result is not None:
            return result, None
        dt = plain_dtype(inputs, same_shape=False)
        if dt is not None:
            return None, _Call("cpu", inputs, dt, plain=roles)
    b = resolve_backend(backend, *inputs)
    if b == "cuda":
        return run_cuda(), None
    arrays, compute, result, container, originals = prepare(inputs, roles, same_shape=False)
    return None, _Call(b, arrays, compute, result, container, originals)


def _cuda():
    from . import cuda
    return cuda


def _with_axis_size(shape, axis, n):
    s = list(shape)
    s[axis] = n
    return tuple(s)


class GatedOp(Op):
    """A gated linear unit: x split in halves a, b along ``axis``.

    ``op(x, axis=-1)``: y (half the size along axis).  ``op.backward(x, dy)``: dx.
    ``op.forward_backward(x, dy)``: (y, dx).  Also ``out=``, ``backend=``.
    """

    @records_autograd
    def __call__(self, x, *, axis=-1, out=None, backend=None, **params):
        return self._run("forward", (x,), axis, out, backend, params)

    def backward(self, x, dy, *, axis=-1, out=None, backend=None, **params):
        return self._run("backward", (x, dy), axis, out, backend, params)

    def forward_backward(self, x, dy, *, axis=-1, out=None, backend=None, **params):
        return self._run("forward_backward", (x, dy), axis, out, backend, params)

    def _run(self, pass_name, inputs, axis, out, backend, params):
        name = f"{self.spec.name}.{pass_name}"
        roles = ("x", "dy")[:len(inputs)]
        choice, numeric = self.spec.bind(params)
        scalars = self.spec.scalars_for(choice)
        done, call = _begin(
            inputs, roles, out, backend,
            lambda views, o: self._run(pass_name, views, axis, o, None, params),
            lambda: _cuda().run_gated(self.spec, scalars, pass_name, inputs, roles, out, axis,
                                      numeric))
        if call is None:
            return done
        b, arrays, compute = call.backend, call.arrays, call.compute
        x = arrays[0]
        if x.ndim == 0:
            raise ValueError(f"{name}: a 0-d input cannot be split in halves")
        ax = normalize_axis(axis, x.ndim, name)
        if x.shape[ax] % 2:
            raise ValueError(f"{name}: the size {x.shape[ax]} of axis {ax} is odd; "
                             "it must split in two halves")
        half = _with_axis_size(x.shape, ax, x.shape[ax] // 2)
        if len(arrays) > 1 and arrays[1].shape != half:
            raise ValueError(f"{name}: dy has shape {arrays[1].shape}, expected {half}")
        shapes = {"forward": [half], "backward": [x.shape],
                  "forward_backward": [half, x.shape]}[pass_name]
        outs = call.outputs(shapes, out, name)
        if b == "numpy":
            dy = arrays[1] if len(arrays) > 1 else None
            outs.put(axis_ops.numpy_gated(self.spec, scalars, pass_name, x, dy, ax,
                                                     numeric))
            return outs.finish()
        outer, n, inner = split_axis(x.shape, ax)
        k = (n // 2) * inner
        x3 = x.reshape(outer, 2, k)
        act = self.spec.extra["act"]
        p = tuple(compute.type(v) for v in numeric)
        wide = self.spec.transcendental
        if pass_name == "forward":
            K.gated_kernel(scalars, False, len(p), wide).get(x.size)(
                x3, outs.arrays[0].reshape(outer, k), act, p)
        else:
            dy2 = arrays[1].reshape(outer, k)
            dx3 = outs.arrays[-1].reshape(outer, 2, k)
            # without y, an empty array of the same kind stands in (never
            # written; dy may be read-only)
            y2 = outs.arrays[0].reshape(outer, k) if pass_name == "forward_backward" else \
                np.empty((outer, 0), compute)
            K.gated_kernel(scalars, True, len(p), wide).get(x.size)(
                x3, dy2, y2, dx3, act, pass_name == "forward_backward", p)
        return outs.finish()


class PreluOp(Op):
    """prelu(x, weight, axis=1): a learnable slope per channel.

    ``op(x, weight)``: y.  ``op.backward(x, dy, weight)``: (dx, dweight).
    ``op.forward_backward(x, dy, weight)``: (y, dx, dweight).
    """

    @records_autograd
    def __call__(self, x, weight, *, axis=1, out=None, backend=None):
        return self._run("forward", (x, weight), axis, out, backend)

    def backward(self, x, dy, weight, *, axis=1, out=None, backend=None):
        return self._run("backward", (x, dy, weight), axis, out, backend)

    def forward_backward(self, x, dy, weight, *, axis=1, out=None, backend=None):
        return self._run("forward_backward", (x, dy, weight), axis, out, backend)

    def _run(self, pass_name, inputs, axis, out, backend):
        name = f"{self.spec.name}.{pass_name}"
        roles = ("x", "weight") if len(inputs) == 2 else ("x", "dy", "weight")
        done, call = _begin(
            inputs, roles, out, backend,
            lambda views, o: self._run(pass_name, views, axis, o, None),
            lambda: _cuda().run_prelu(self.spec, pass_name, inputs, roles, out, axis))
        if call is None:
            return done
        b, arrays = call.backend, call.arrays
        x, w = arrays[0], arrays[-1]
        if len(arrays) == 3 and arrays[1].shape != x.shape:
            raise ValueError(f"{name}: dy has shape {arrays[1].shape}, expected {x.shape}")
        if w.size == 1:
            # one weight for every channel: axis names none, but it is still
            # checked (as an integer, in range for an input of at least 2-d,
            # so that the default axis=1 suits 0-d and 1-d inputs too)
            normalize_axis(axis, max(x.ndim, 2), name)
            ax, (outer, c, inner) = 0, (1, 1, x.size)
        else:
            if w.ndim != 1:
                raise ValueError(f"{name}: weight must have one value or be 1-d, "
                                 f"got shape {w.shape}")
            ax = normalize_axis(axis, x.ndim, name)
            if x.ndim == 0 or x.shape[ax] != w.size:
                raise ValueError(f"{name}: weight has {w.size} values but axis {axis} of x "
                                 f"has size {x.shape[ax] if x.ndim else 1}")
            outer, c, inner = split_axis(x.shape, ax)
        shapes = {"forward": [x.shape], "backward": [x.shape, w.shape],
                  "forward_backward": [x.shape, x.shape, w.shape]}[pass_name]
        outs = call.outputs(shapes, out, name)
        if b == "numpy":
            dy = arrays[1] if len(arrays) == 3 else None
            outs.put(axis_ops.numpy_prelu(pass_name, x, dy, w,
                                                     ax if w.size > 1 else 0))
            return outs.finish()
        w1 = w.reshape(c)
        if inner == 1 and c > 1:
            return self._rows(pass_name, arrays, w1, outer, c, outs)
        x3 = x.reshape(outer, c, inner)
        if pass_name == "forward":
            K.PRELU_FORWARD.get(x.size)(x3, w1, outs.arrays[0].reshape(outer, c, inner))
            return outs.finish()
        ib = (inner + K.BLOCK - 1) // K.BLOCK
        partial = np.empty(outer * c * ib, dtype=np.float64)
        dx3 = outs.arrays[-2].reshape(outer, c, inner)
        y3 = outs.arrays[0].reshape(outer, c, inner) if pass_name == "forward_backward" else dx3
        K.PRELU_BACKWARD.get(x.size)(x3, arrays[1].reshape(outer, c, inner), w1, y3, dx3,
                                     partial, pass_name == "forward_backward")
        dw = partial.reshape(outer, c, ib).sum(axis=(0, 2))
        outs.arrays[-1][...] = dw.reshape(w.shape)
        return outs.finish()

    @staticmethod
    def _rows(pass_name, arrays, w1, outer, c, outs):
        """The (outer, C) layout: row kernels vectorized along the channels."""
        x2 = arrays[0].reshape(outer, c)
        size = x2.size
        if pass_name == "forward":
            K.PRELU_FORWARD_ROWS.get(size)(x2, w1, outs.arrays[0].reshape(outer, c))
            return outs.finish()
        blocks = min(outer, 64) if size >= PARALLEL_MIN else min(outer, 1)
        partial = np.empty((blocks, c), dtype=np.float64)
        dx2 = outs.arrays[-2].reshape(outer, c)
        y2 = outs.arrays[0].reshape(outer, c) if pass_name == "forward_backward" else dx2
        K.PRELU_BACKWARD_ROWS.get(size)(x2, arrays[1].reshape(outer, c), w1, y2, dx2, partial,
                                        pass_name == "forward_backward")
        outs.arrays[-1][...] = partial.sum(axis=0).reshape(outs.arrays[-1].shape)
        return outs.finish()


class MaxoutOp(Op):
    """maxout(x, pieces, axis=-1): max over runs of ``pieces`` entries along ``axis``.

    ``op(x, pieces)``: y.  ``op.backward(x, dy, pieces)``: dx.
    ``op.forward_backward(x, dy, pieces)``: (y, dx).
    """

    @records_autograd
    def __call__(self, x, pieces, *, axis=-1, out=None, backend=None):
        return self._run("forward", (x,), pieces, axis, out, backend)

    def backward(self, x, dy, pieces, *, axis=-1, out=None, backend=None):
        return self._run("backward", (x, dy), pieces, axis, out, backend)

    def forward_backward(self, x, dy, pieces, *, axis=-1, out=None, backend=None):
        return self._run("forward_backward", (x, dy), pieces, axis, out, backend)

    def _run(self, pass_name, inputs, pieces, axis, out, backend):
        name = f"{self.spec.name}.{pass_name}"
        roles = ("x", "dy")[:len(inputs)]
        if isinstance(pieces, bool) or not isinstance(pieces, (int, np.integer)) or pieces < 1:
            raise ValueError(f"{name}: pieces must be a positive integer, got {pieces!r}")
        pieces = int(pieces)
        done, call = _begin(
            inputs, roles, out, backend,
            lambda views, o: self._run(pass_name, views, pieces, axis, o, None),
            lambda: _cuda().run_maxout(self.spec, pass_name, inputs, roles, out, pieces, axis))
        if call is None:
            return done
        b, arrays = call.backend, call.arrays
        x = arrays[0]
        if x.ndim == 0:
            raise ValueError(f"{name}: a 0-d input has no axis to group")
        ax = normalize_axis(axis, x.ndim, name)
        if x.shape[ax] % pieces:
            raise ValueError(f"{name}: pieces={pieces} does not divide the size "
                             f"{x.shape[ax]} of axis {ax}")
        groups = x.shape[ax] // pieces
        yshape = _with_axis_size(x.shape, ax, groups)
        if len(arrays) > 1 and arrays[1].shape != yshape:
            raise ValueError(f"{name}: dy has shape {arrays[1].shape}, expected {yshape}")
        shapes = {"forward": [yshape], "backward": [x.shape],
                  "forward_backward": [yshape, x.shape]}[pass_name]
        outs = call.outputs(shapes, out, name)
        outer, _, inner = split_axis(x.shape, ax)
        x4 = x.reshape(outer * groups, pieces, inner)
        if b == "numpy":
            dy3 = arrays[1].reshape(outer, groups, inner) if len(arrays) > 1 else None
            res = axis_ops.numpy_maxout(pass_name, x.reshape(outer, groups, pieces, inner), dy3)
            outs.put([r.reshape(a.shape) for r, a in zip(res, outs.arrays)])
            return outs.finish()
        rows = outer * groups
        if inner == 1:     # flat views: the group loop unrolls (K.maxout_rows)
            forward, backward = K.maxout_rows(pieces)
            x4, shape_y, shape_x = x.reshape(-1), (rows,), (rows * pieces,)
        else:
            forward, backward = K.MAXOUT_FORWARD, K.MAXOUT_BACKWARD
            shape_y, shape_x = (rows, inner), x4.shape
        if pass_name == "forward":
            forward.get(x.size)(x4, outs.arrays[0].reshape(shape_y))
        else:
            dx4 = outs.arrays[-1].reshape(shape_x)
            dy2 = arrays[1].reshape(shape_y)
            write_y = pass_name == "forward_backward"
            # without y, an empty array of the same kind stands in (never
            # written; dy may be read-only)
            y2 = outs.arrays[0].reshape(shape_y) if write_y else \
                np.empty(shape_y[:-1] + (0,), dy2.dtype)
            backward.get(x.size)(x4, dy2, y2, dx4, write_y)
        return outs.finish()


class ArgmaxOp(Op):
    """argmax(x, axis=-1): int64 indices of the maxima (NaN counts as the maximum)."""

    def __call__(self, x, *, axis=-1, out=None, backend=None):
        if backend is None:
            result = dispatch.torch_call((x,), out, lambda views, o: self(
                views[0], axis=axis, out=o))
            if result is not None:
                return result
        if out is None and backend is None and plain_dtype((x,)) is not None \
                and x.ndim and x.shape[-1] and type(axis) is int \
                and (axis == -1 or axis == x.ndim - 1):
            y = np.empty(x.shape[:-1], np.int64)
            K.ARGMAX_ROWS.get(x.size)(x.reshape(-1, x.shape[-1]), y.reshape(-1))
            return y
        name = f"{self.spec.name}"
        b = resolve_backend(backend, x)
        if b == "cuda":
            from . import cuda
            return cuda.run_argmax(self.spec, x, out, axis)
        arrays, _, _, container, originals = prepare((x,), ("x",))
        a = arrays[0]
        if a.ndim == 0:
            a = a.reshape(1)
        ax = normalize_axis(axis, a.ndim, name)
        if a.shape[ax] == 0:
            raise ValueError(f"{name}: argmax of an empty axis")
        yshape = a.shape[:ax] + a.shape[ax + 1:]
        idx = np.dtype(np.int64)
        # an out= overlapping x is filled from a temporary (its int64 view of
        # x's memory is never the kernel's output)
        outs = Outputs([yshape], idx, idx, container, out, (a,), name, originals=originals)
        if b == "numpy":
            outs.put([np.argmax(a, axis=ax)])
            return outs.finish()
        outer, n, inner = split_axis(a.shape, ax)
        if inner == 1:
            K.ARGMAX_ROWS.get(a.size)(a.reshape(outer, n), outs.arrays[0].reshape(outer))
        else:
            K.ARGMAX.get(a.size)(a.reshape(outer, n, inner),
                                 outs.arrays[0].reshape(outer, inner))
        return outs.finish()


def _register_classes():
    from .api import OP_CLASSES
    OP_CLASSES.update(gated=GatedOp, prelu=PreluOp, maxout=MaxoutOp, argmax=ArgmaxOp)


_register_classes()
