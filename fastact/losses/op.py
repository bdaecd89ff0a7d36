"""The public loss object and the argument handling shared by every backend.

``bind_options(spec, kwargs)`` checks the keywords of a loss (pure Python, no
array data: a CUDA lowering can reuse it), ``prepare_call(spec, pass_name,
pred, target, opts)`` turns host inputs into kernel-ready arrays and validates
them (shapes, dtypes, labels, BCE ranges) before any kernel runs.
"""
from __future__ import annotations

import math

import numpy as np

from .. import api, dispatch
from ..cpu import streaming
from ..cpu.streaming import aligned_head, streams
from ..dispatch import Outputs, dtypes_for, resolve_backend, to_host_array
from ..registry import integer, real_number
from . import kernels

REDUCTIONS = ("mean", "sum", "none")
NCHUNKS = 64
_F64 = np.dtype(np.float64)
# the class weights of an unweighted call (the kernels only read them)
_UNIT_WEIGHT = {np.dtype(t): np.ones(1, t) for t in (np.float32, np.float64)}


# ------------------------------------------------------------ options

def bind_options(spec, kwargs: dict) -> dict:
    """All options of a call (defaults filled in), checked; no array data is read.

    Raises TypeError for unknown keywords or wrong types, ValueError for bad values.
    """
    params = {p.name: p for p in spec.params}
    unknown = set(kwargs) - set(params)
    if unknown:
        raise TypeError(f"{spec.name}() got unexpected keyword argument(s) {sorted(unknown)}; "
                        f"accepted: {sorted(params)}")
    opts = {}
    for name, p in params.items():
        v = kwargs.get(name, p.default)
        if p.choices is not None:
            if not any(v is c or (type(v) is type(c) and v == c) for c in p.choices):
                raise ValueError(f"{spec.name}: {name}={v!r} is not one of {p.choices}")
        elif name in ("weight", "pos_weight"):
            pass
        elif name in ("axis", "ignore_index"):
            v = integer(v, spec.name, name)
        elif name == "softcap" and v is None:
            pass
        else:
            v = real_number(v, spec.name, name)
        opts[name] = v
    if spec.check is not None:
        spec.check(spec.name, opts)
    return opts


def _float_array(x, role, compute=None):
    a, c = to_host_array(x, role)
    cd, rd = dtypes_for(a.dtype)   # TypeError for complex / object / strings
    return a, c, cd, rd


def promoted_dtypes(compute, result, target_dtype):
    """(compute, result) dtypes of a prediction's (compute, result) with a
    target of target_dtype: a floating target promotes as in NumPy (float32
    with float64 computes and returns float64); an integer or bool target
    (0/1 or -1/1 labels, exact in any float dtype) takes the prediction's
    dtypes, as in PyTorch."""
    if np.dtype(target_dtype).kind != "f":
        return compute, result
    t_compute, t_result = dtypes_for(target_dtype)
    return np.promote_types(compute, t_compute), np.promote_types(result, t_result)


def smoothing_weight_sum(name, opts, w64, n_classes) -> float:
    """The class-weight sum of the label-smoothing term of a cross-entropy
    (w64: the float64 class weights, None when unweighted): 0 without
    smoothing, so that an infinite weight of a class absent from the batch is
    harmless (as in PyTorch) instead of giving 0 * inf = NaN.  With smoothing
    every weight enters every row: ValueError for a non-finite one."""
    if opts.get("label_smoothing", 0.0) == 0.0:
        return 0.0
    if w64 is None:
        return float(n_classes)
    if not np.isfinite(w64).all():
        k = int(np.argmax(~np.isfinite(w64)))
        raise ValueError(f"{name}: class weight {w64[k]} of class {k} is not finite; with "
                         "label_smoothing > 0 every class's weight enters every row's loss "
                         "(PyTorch returns an infinite loss)")
    return float(w64.sum())


class LossCall:
    """Kernel-ready arrays and scalars of one call (host backends)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def prepare_call(spec, pass_name, pred, target, opts) -> LossCall:
    """Convert and validate the inputs of a host call (cpu / numpy backends)."""
    family = spec.extra["family"]
    name = f"{spec.name}.{pass_name}"
    a, container, compute, result = _float_array(pred, "prediction")
    if family in ("sparse", "nll"):
        return _prepare_labels(spec, name, a, container, compute, result, target, opts)
    b, _, _, _ = _float_array(target, "target")
    compute, result = promoted_dtypes(compute, result, b.dtype)
    if b.shape != a.shape:
        raise ValueError(f"{name}: target has shape {b.shape}, expected {a.shape} "
                         "(the shape of the prediction)")
    if family == "dense":
        return _prepare_dense(spec, name, a, b, container, compute, result, opts)
    p = np.ascontiguousarray(a, dtype=compute)
    t = np.ascontiguousarray(b, dtype=compute)
    extra_arrays = {}
    for key in ("weight", "pos_weight"):
        v = opts.get(key)
        if v is None:
            continue
        wa, _, _, _ = _float_array(v, key)
        try:
            wb = np.broadcast_to(wa, a.shape)
        except ValueError:
            raise ValueError(f"{name}: {key} of shape {wa.shape} does not broadcast to "
                             f"the prediction's shape {a.shape}") from None
        extra_arrays[key] = np.ascontiguousarray(wb, dtype=compute)
    validate = spec.extra.get("validate")
    if validate is not None:
        validate(name, p, t)
    reduction = opts["reduction"]
    divisor = _divisor(reduction, a.shape)
    return LossCall(family=family, name=name, pred=p, target=t, arrays=extra_arrays,
                    shape=a.shape, compute=compute, result=result, container=container,
                    originals=(a, b), reduction=reduction, divisor=divisor, opts=opts,
                    moved_axis=None)


def _divisor(reduction, shape) -> float:
    """What an elementwise loss's sum is divided by: the number of elements
    ("mean"), the batch size ("batchmean"; 1 for a 0-d input), else 1."""
    if reduction == "mean":
        return float(math.prod(shape))
    if reduction == "batchmean":
        return float(shape[0]) if shape else 1.0
    return 1.0


def _class_axis(spec, name, a, opts):
    if a.ndim == 0:
        raise ValueError(f"{name}: the prediction needs a class axis (got a 0-d array)")
    return api.normalize_axis(opts.get("axis", -1), a.ndim, name)


def _moved(a, ax, compute):
    if ax != a.ndim - 1:
        a = np.moveaxis(a, ax, -1)
    return np.ascontiguousarray(a, dtype=compute)


def _prepare_labels(spec, name, a, container, compute, result, target, opts):
    ax = _class_axis(spec, name, a, opts)
    lab, _ = to_host_array(target, "labels")
    if lab.dtype.kind not in "iu":
        raise TypeError(f"{name}: labels must be integers (class indices), got dtype "
                        f"{lab.dtype}" + ("; for probability targets use "
                                          "softmax_cross_entropy" if lab.dtype.kind == "f"
                                          else ""))
    x = _moved(a, ax, compute)
    if lab.shape != x.shape[:-1]:
        raise ValueError(f"{name}: labels have shape {lab.shape}, expected {x.shape[:-1]} "
                         f"(the prediction's shape {a.shape} without the class axis {ax})")
    n_classes = x.shape[-1]
    y = np.ascontiguousarray(lab.reshape(-1), dtype=np.int64)
    if lab.dtype.kind == "u" and lab.size and lab.max() > np.iinfo(np.int64).max:
        bad = int(np.argmax(lab.reshape(-1) > np.iinfo(np.int64).max))
        raise ValueError(f"{name}: label {lab.reshape(-1)[bad]} at row {bad} is outside "
                         f"[0, {n_classes})")
    w = opts.get("weight")
    weighted = w is not None
    if weighted:
        wa, _, _, _ = _float_array(w, "weight")
        if wa.shape != (n_classes,):
            raise ValueError(f"{name}: weight has shape {wa.shape}, expected ({n_classes},) "
                             "(one per class)")
        w64 = np.ascontiguousarray(wa, dtype=np.float64)
        wc = np.ascontiguousarray(wa, dtype=compute)
    else:
        w64 = _UNIT_WEIGHT[_F64]
        wc = _UNIT_WEIGHT[compute]
    ign = opts["ignore_index"]
    wtot = smoothing_weight_sum(name, opts, w64 if weighted else None, n_classes)
    bad, count, wsum = kernels.check_labels(y, n_classes, ign, w64, weighted)
    if bad >= 0:
        idx = np.unravel_index(bad, lab.shape) if lab.ndim > 1 else bad
        raise ValueError(f"{name}: label {y[bad]} at row {bad}"
                         + (f" (index {tuple(int(i) for i in idx)})" if lab.ndim > 1 else "")
                         + f" is outside [0, {n_classes}) and is not ignore_index={ign}")
    reduction = opts["reduction"]
    divisor = (wsum if weighted else float(count)) if reduction == "mean" else 1.0
    return LossCall(family=spec.extra["family"], name=name, pred=x, target=y, shape=a.shape,
                    compute=compute, result=result, container=container, originals=(a, lab),
                    reduction=reduction, divisor=divisor, opts=opts, axis=ax,
                    moved_axis=ax if ax != a.ndim - 1 else None, weighted=weighted,
                    w=wc, w64=w64, n_classes=n_classes, label_shape=lab.shape,
                    count=count, wtot=wtot, arrays={})


def _prepare_dense(spec, name, a, b, container, compute, result, opts):
    ax = _class_axis(spec, name, a, opts)
    x = _moved(a, ax, compute)
    t = _moved(b, ax, compute)
    rows = x.size // x.shape[-1] if x.shape[-1] else math.prod(x.shape[:-1])
    reduction = opts["reduction"]
    divisor = float(rows) if reduction == "mean" else 1.0
    return LossCall(family="dense", name=name, pred=x, target=t, shape=a.shape,
                    compute=compute, result=result, container=container, originals=(a, b),
                    reduction=reduction, divisor=divisor, opts=opts, axis=ax,
                    moved_axis=ax if ax != a.ndim - 1 else None, label_shape=x.shape[:-1],
                    arrays={})


# ------------------------------------------------------------ running

def _grad_may_share_target(family) -> bool:
    """Whether the gradient buffer may share the target's memory: not for the
    dense cross-entropy, whose kernel overwrites a gradient row before its last
    read of the target row (only the logits may be the gradient buffer)."""
    return family != "dense"


def _grad_outputs(call, out):
    """(kernel gradient array, finish() -> user gradient)."""
    if call.moved_axis is None:
        inputs = [call.pred, call.target, *call.arrays.values()]
        alias_ok = True
        if not _grad_may_share_target(call.family) and out is not None:
            o = dispatch.split_out(out, 1, call.name)[0]
            if isinstance(o, np.ndarray) or hasattr(o, "detach"):
                oa = dispatch._out_array(o, f"{call.name}: out")
                alias_ok = not any(np.may_share_memory(oa, t)
                                   for t in (call.target, call.originals[1]))
        outs = Outputs([call.shape], call.compute, call.result, call.container, out,
                       inputs, call.name, originals=call.originals, alias_ok=alias_ok)
        return outs.arrays[0], outs.finish
    g = np.empty(call.pred.shape, call.compute)

    def finish():
        back = np.moveaxis(g, -1, call.moved_axis)
        if out is None:
            return call.container.wrap(np.ascontiguousarray(back, dtype=call.result))
        o = dispatch.split_out(out, 1, call.name)[0]
        oa = dispatch._out_array(o, f"{call.name}: out")
        if oa.shape != tuple(call.shape):
            raise ValueError(f"{call.name}: out has shape {oa.shape}, expected {call.shape}")
        if oa.dtype != call.result:
            raise TypeError(f"{call.name}: out has dtype {oa.dtype}, expected {call.result}")
        if not oa.flags.writeable:
            raise ValueError(f"{call.name}: out is read-only")
        np.copyto(oa, back, casting="unsafe")
        return o
    return g, finish


def _quotient(a, b) -> float:
    """a / b as IEEE float64 division gives it (b = 0: +-inf, or NaN for 0/0),
    without NumPy's error-state machinery."""
    a, b = float(a), float(b)
    if b != 0.0:
        return a / b
    if a == 0.0 or a != a:
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _finish_loss(call, total=None, per=None):
    if call.reduction == "none":
        # (np.require keeps a 0-d loss 0-d; ascontiguousarray would make it 1-d)
        v = np.require(np.asarray(per).astype(call.result, copy=False), requirements="C")
        return call.container.wrap(v)
    if call.reduction in ("mean", "batchmean"):
        total = _quotient(total, call.divisor)
    return call.container.wrap(np.array(total, dtype=call.result))


def _scale(call):
    if call.reduction in ("mean", "batchmean"):
        return _quotient(1.0, call.divisor)
    return 1.0


def run_host(spec, pass_name, call, backend, out):
    want_grad = pass_name == "value_and_grad"
    if want_grad:
        g, finish_grad = _grad_outputs(call, out)
    else:
        if out is not None:
            raise TypeError(f"{call.name}: out= is the gradient buffer; the forward pass "
                            "takes none")
        g, finish_grad = None, None
    if backend == "numpy":
        with np.errstate(all="ignore"):
            loss, grad = spec.numpy(call, want_grad)
        if want_grad:
            # (the row-wise baselines give the gradient as (rows, classes))
            np.copyto(g, np.asarray(grad).reshape(g.shape), casting="unsafe")
        if call.reduction == "none":
            res = _finish_loss(call, per=np.asarray(loss).reshape(_loss_shape(call)))
        else:
            # the baseline returns the reduced value already
            res = call.container.wrap(np.array(loss, dtype=call.result))
    else:
        res = _run_cpu(spec, call, want_grad, g)
    return (res, finish_grad()) if want_grad else res


def _loss_shape(call):
    if call.family in ("sparse", "nll", "dense"):
        return call.label_shape
    return call.shape


def _streams(gf):
    """Whether the flat gradient gf is written with non-temporal stores: large,
    and 64-byte aligned (fastact allocates it so; an ``out=`` may not be)."""
    return streams(gf.nbytes) and aligned_head([gf]) == 0


def _elementwise_terms(spec, fd, prm, p, t, aux, w, gf, per, scale):
    """Run the elementwise loss kernel on flat compute-dtype arrays (aux, w
    optional): writes the gradient (times ``scale``) into gf unless it is
    None, the per-element losses into ``per`` unless it is None; returns the
    float64 sum of the losses (None with ``per``)."""
    n = p.size
    empty = p[:0]
    want_grad = gf is not None
    mode = "none" if per is not None else "reduce"
    # large gradients stream (as the elementwise activations do), except
    # those of transcendental losses (512-bit vectors; log_cosh and
    # sigmoid_focal_loss ran 3-10% slower with non-temporal stores)
    stream = want_grad and not spec.transcendental and _streams(gf)
    kern = kernels.elementwise_kernel_for(n, fd, 0 if aux is None else 1, w is not None,
                                          want_grad, mode, len(prm), spec.transcendental,
                                          stream, spec.extra["block_variant"])
    partial = np.empty((n + kernels.BLOCK - 1) // kernels.BLOCK if per is None else 0,
                       np.float64)
    kern(p, t, empty if aux is None else aux, empty if w is None else w,
         gf if want_grad else empty, empty if per is None else per, partial, p.dtype.type(scale), prm)
    return None if per is not None else partial.sum()


def _run_cpu(spec, call, want_grad, g):
    fam = call.family
    scale = _scale(call)
    dt = call.compute.type
    if fam == "elementwise":
        p, t = call.pred.reshape(-1), call.target.reshape(-1)
        red = call.reduction
        two_pass = spec.extra["two_pass"]
        if two_pass is not None and red != "none":
            value = _two_pass(two_pass, p, t, g.reshape(-1) if want_grad else None, red)
            return call.container.wrap(np.array(value, dtype=call.result))
        fd, prm = spec.extra["scalar"](call.opts, red)
        aux = call.arrays.get("pos_weight")
        w = call.arrays.get("weight")
        gf = g.reshape(-1) if want_grad else None
        per = np.empty(p.size, call.compute) if red == "none" else None
        total = _elementwise_terms(spec, fd, tuple(dt(v) for v in prm), p, t,
                                   None if aux is None else aux.reshape(-1),
                                   None if w is None else w.reshape(-1), gf, per, scale)
        if per is not None:
            return _finish_loss(call, per=per.reshape(call.shape))
        return _finish_loss(call, total=total)
    x = call.pred
    n_classes = x.shape[-1]
    rows = math.prod(x.shape[:-1])
    x2 = x.reshape(rows, n_classes)
    rl = np.zeros(rows, np.float64)
    g2 = g.reshape(rows, n_classes) if want_grad else np.empty((0, n_classes), call.compute)
    if rows and n_classes:
        size = x.size
        o = call.opts
        # the labelled kernels check the labels again (they may have changed
        # since _prepare_labels read them): (first bad row or -1, its label)
        bad = (-1, 0)
        if fam == "sparse":
            cap = o["softcap"]
            bad = kernels.SPARSE_CE[want_grad].get(size)(
                x2, call.target, call.w, call.w64, call.weighted, g2, rl, scale,
                o["label_smoothing"], o["z_loss"], 0.0 if cap is None else float(cap), call.wtot,
                o["ignore_index"], NCHUNKS)
        elif fam == "dense":
            t2 = call.target.reshape(rows, n_classes)
            kernels.DENSE_CE[want_grad].get(size)(x2, t2, g2, rl, scale,
                                                  o["label_smoothing"], NCHUNKS)
        else:
            bad = kernels.NLL.get(size)(x2, call.target, call.w64, call.weighted, g2, rl,
                                        scale, o["ignore_index"], want_grad, NCHUNKS)
        if bad[0] >= 0:
            raise kernels.bad_label_error(call.name, bad[1], bad[0], call.label_shape,
                                          n_classes, o["ignore_index"])
    if call.reduction == "none":
        return _finish_loss(call, per=rl.reshape(call.label_shape))
    return _finish_loss(call, total=rl.sum())


def _two_pass(two_pass, p, t, gf, reduction):
    """The reduced value (float64) of a two-pass loss (``defs.TwoPass``) of
    flat compute-dtype p, t; its gradient into gf unless that is None."""
    n = p.size
    dt = p.dtype.type
    empty = p[:0]
    partial = np.empty((n + kernels.BLOCK - 1) // kernels.BLOCK, np.float64)
    kernels.elementwise_kernel(two_pass.terms, 0, False, False, "reduce", 0).get(n)(
        p, t, empty, empty, empty, empty, partial, dt(1.0), ())
    value, scale = two_pass.finish(partial.sum(), n, reduction)
    if gf is not None:
        kernels.elementwise_kernel(two_pass.grad, 0, False, True, "skip", 0,
                                   stream=_streams(gf)).get(n)(
            p, t, empty, empty, gf, empty, partial, dt(scale), ())
    return value


# ------------------------------------------------------------ the public object

class LossOp(api.Op):
    """A loss with its gradient fused in one pass.

    ``op(pred, target, reduction=..., **options)``: the loss.
    ``op.value_and_grad(pred, target, reduction=..., **options, out=None, backend=None)``:
    (loss, d loss / d pred).  ``out=`` receives the gradient and may be the
    prediction array itself (the gradient then overwrites the predictions).
    The loss is a 0-d array (same container as pred) for "mean"/"sum", per
    sample for "none"; with "none" the gradient is that of the sum of the
    per-sample losses.
    """

    def __init__(self, spec):
        super().__init__(spec)
        self._plans = {}

    @api.records_autograd
    def __call__(self, pred, target, *, backend=None, **options):
        return self._run("forward", pred, target, None, backend, options)

    def value_and_grad(self, pred, target, *, out=None, backend=None, **options):
        return self._run("value_and_grad", pred, target, out, backend, options)

    def _run(self, pass_name, pred, target, out, backend, options):
        if backend is None:
            result = dispatch.torch_call((pred, target), out, lambda views, o: self._run(
                pass_name, *views, o, None, options))
            if result is None:
                result = self._run_plain(pass_name, pred, target, options, out)
            if result is not None:
                return result
        opts = bind_options(self.spec, options)
        arrays = [pred, target, opts.get("weight"), opts.get("pos_weight")]
        b = resolve_backend(backend, *arrays)
        if b == "cuda":
            from .. import cuda
            kwargs = dict(options)
            if out is not None:
                kwargs["out"] = out
            return cuda.run_loss(self.spec, pass_name, (pred, target), kwargs)
        call = prepare_call(self.spec, pass_name, pred, target, opts)
        return run_host(self.spec, pass_name, call, b, out)

    def _run_plain(self, pass_name, pred, target, options, out=None):
        """The common call, with little Python work: a NumPy float32/float64
        C-contiguous prediction with at least one element, a NumPy target (of
        the same dtype and shape for elementwise losses), no out= or a
        gradient buffer the kernel can write directly (``dispatch.plain_out``),
        default backend on the CPU, no weight arrays, options seen before (a
        plan per pass, dtype and option values).  None where any of that does
        not hold (the general path then handles the call, errors included)."""
        spec = self.spec
        rows = spec.extra["family"] != "elementwise"
        dt = api.plain_dtype((pred,) if rows else (pred, target))
        if dt is None or pred.size == 0 or rows and type(target) is not np.ndarray \
                or out is not None and pass_name != "value_and_grad" \
                or spec.extra["family"] == "dense" and target.dtype != dt:
            return None
        g = None
        if out is not None:
            apart = () if _grad_may_share_target(spec.extra["family"]) else (target,)
            outs = dispatch.plain_out(out, 1, pred, (pred, target), apart=apart)
            if outs is None:
                return None
            g = outs[0]
        key = api.plan_key(pass_name, dt, options)
        try:
            plan = self._plans.get(key)
        except TypeError:               # an unhashable option value (an array)
            return None
        if plan is None:
            opts = bind_options(spec, options)
            if opts.get("weight") is not None or opts.get("pos_weight") is not None:
                plan = False
            elif rows:
                plan = opts
            else:
                red = opts["reduction"]
                fd, prm = spec.extra["scalar"](opts, red)
                validate = spec.extra.get("validate")
                # a reduced loss that is finite shows that every input was valid
                after = validate is not None and red != "none" and spec.extra["nan_if_invalid"]
                plan = (fd, tuple(dt.type(v) for v in prm), red, validate, after,
                        f"{spec.name}.{pass_name}")
            if len(self._plans) >= api.MAX_PLANS:
                self._plans.clear()
            self._plans[key] = plan
        if plan is False:
            return None
        if rows:
            return self._run_plain_rows(pass_name, pred, target, plan, g)
        fd, prm, red, validate, validate_after, name = plan
        # (with out= on an input, checked first: no input is overwritten when it raises)
        validate_after = validate_after and (g is None or not (
            np.may_share_memory(g, pred) or np.may_share_memory(g, target)))
        p, t = pred.reshape(-1), target.reshape(-1)
        if validate is not None and not validate_after:
            validate(name, p, t)
        divisor = _divisor(red, pred.shape)
        if g is None and pass_name == "value_and_grad":
            g = streaming.empty(pred.shape, dt)
        two_pass = spec.extra["two_pass"]
        if two_pass is not None and red != "none":
            loss = np.array(_two_pass(two_pass, p, t, None if g is None else g.reshape(-1), red),
                            dt)
            return loss if g is None else (loss, g)
        per = np.empty_like(pred) if red == "none" else None
        total = _elementwise_terms(spec, fd, prm, p, t, None, None,
                                   None if g is None else g.reshape(-1),
                                   None if per is None else per.reshape(-1), 1.0 / divisor)
        if validate_after and not math.isfinite(total):
            validate(name, p, t)         # raises unless the inputs hold a NaN
        loss = per if per is not None else np.array(total / divisor, dt)
        return loss if g is None else (loss, g)

    def _run_plain_rows(self, pass_name, pred, target, opts, g=None):
        """The common call of a row-wise loss (classes on the last axis): the
        inputs are checked and converted as on the general path, the rest of
        its Python work skipped.  g: the gradient buffer of out=, or None."""
        if opts.get("axis", -1) not in (-1, pred.ndim - 1):
            return None
        call = prepare_call(self.spec, pass_name, pred, target, opts)
        want_grad = pass_name == "value_and_grad"
        if g is None and want_grad:
            g = streaming.empty(call.pred.shape, call.compute)
        loss = _run_cpu(self.spec, call, want_grad, g)
        return (loss, g) if want_grad else loss


api.OP_CLASSES["loss"] = LossOp
