"""Losses (kind "loss") on the GPU: the loss and its gradient in one kernel.

Contract: ``fastact.losses.LossOp`` calls ``run(spec, pass_name, (pred, target),
kwargs)``; ``kwargs`` holds the loss options and, for ``value_and_grad``, ``out``.
Options go through the loss package's ``bind_options`` (same errors as the CPU).

Host inputs (``backend="cuda"`` with NumPy / torch CPU): the loss package's
``prepare_call`` converts and validates them exactly as on the CPU (labels,
BCE ranges, weight broadcasting, class axis moved last); the arrays are copied
to the device, the kernels below run, and the results come back through the
CPU path's own output handling (``out=``, containers, float64 division of the
reduced value).  Device inputs: the same conversions and checks on the device
(the labels are range-checked by a kernel whose result is copied back before
any kernel reads them as indices), results as device arrays of the input's
kind (the reduced loss is a 0-d device array).  The loss kernels check every
label again before indexing with it (host labels may change between their
check and their copy, device labels between the two kernels): a bad one
gives a NaN row and a flag, read back after the kernel, that raises the
check's error (one 8-byte device-to-host copy per labelled call).

Kernels, all from the loss package's definitions:

* elementwise losses (regression, binary, hinge, focal, kl_divergence): a
  grid-stride loop calling the loss's scalar ``*_lg(p, t, ...)`` (the same
  function as the CPU template; ``_element`` applies weights and pos_weight),
  writing the gradient times the reduction's scale, and summing the
  loss terms per thread, then per block (``reduce.block_sum``); one small
  single-block kernel sums the block partials.  Two-pass losses (rmse,
  ``losses.defs.TwoPass``): that sum first, then a second grid-stride pass
  for the gradient, as on the CPU.
* sparse / dense softmax cross-entropy and nll: one block per row (grid-stride
  over rows) of the (outer, C, inner) view of the logits, so no axis is moved on
  the device.  Pass 1: per thread an online (max, sum of exp) in the compute
  dtype (float32 for float32/float16) plus the plain sums the loss needs,
  merged by ``reduce.block_softmax_stats`` / ``block_sum``; pass 2 writes the
  gradient.  Row losses go to the per-row output ("none") or to per-block
  partial sums, finished by the same small kernel.  The formulas are those of
  ``fastact.losses.kernels._sparse_row`` / ``_dense_row`` / ``_nll``.

Sums run in the compute dtype (float32 for float32 inputs) where the CPU uses
float64: losses agree to ~1e-6 relative for the test sizes.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
from numba import cuda, types

from .. import api, dispatch
from ..losses import kernels as lkernels
from ..losses import op as lop
from ..mathlib import exp, lit, log, tanh
from . import core
from .reduce import SLOTS, block_max, block_softmax_stats, block_sum, block_sum2

_KERNELS: dict = {}


def _nbtype(dtype):
    return types.float32 if np.dtype(dtype) == np.float32 else types.float64


def _cached(key, make, threads=None):
    k = _KERNELS.get(key)
    if k is None:
        k = _KERNELS[key] = core.jit(make(), threads)
    return k


def _row_blocks(rows):
    return max(1, min(rows, core.max_blocks() if core.SIM else 65535 * 16))


# ------------------------------------------------------------ elementwise losses

def _element(fd, n_aux, weighted):
    """elem(p, t, a, w, i, prm) -> (loss term, d term / d p) of element i, from the
    loss's scalar ``fd(p, t[, a], *prm)`` (weights multiply both)."""
    if n_aux == 0 and not weighted:
        def elem(p, t, a, w, i, prm):
            return fd(p[i], t[i], *prm)
    elif n_aux == 0:
        def elem(p, t, a, w, i, prm):
            v, d = fd(p[i], t[i], *prm)
            return v * w[i], d * w[i]
    elif not weighted:
        def elem(p, t, a, w, i, prm):
            return fd(p[i], t[i], a[i], *prm)
    else:
        def elem(p, t, a, w, i, prm):
            v, d = fd(p[i], t[i], a[i], *prm)
            return v * w[i], d * w[i]
    return cuda.jit(device=True)(elem)


def elementwise_template(fd, n_aux, weighted, want_grad, mode, dtype):
    """Grid-stride loop over flat p, t (a: pos_weight, w: weight; unused ones empty).

    mode "reduce": partial[block] = the block's sum of loss terms;
    "none": l[i] = term;  "skip": no loss.  want_grad: g[i] = grad * scale.
    """
    elem = _element(fd, n_aux, weighted)
    nbdt = _nbtype(dtype)
    reduce_ = mode == "reduce"
    write_l = mode == "none"

    def loss_kernel(p, t, a, w, g, l, partial, scale, prm):
        sh = cuda.shared.array(SLOTS, nbdt)
        start, stride = cuda.grid(1), cuda.gridsize(1)
        acc = lit(scale, 0.0)
        for i in range(start, p.size, stride):
            v, d = elem(p, t, a, w, i, prm)
            if reduce_:
                acc += v
            if write_l:
                l[i] = v
            if want_grad:
                g[i] = d * scale
        if reduce_:
            tot = block_sum(sh, acc)
            if cuda.threadIdx.x == 0:
                partial[cuda.blockIdx.x] = tot
    return loss_kernel


def elementwise_kernel(fd, n_aux, weighted, want_grad, mode, dtype):
    key = ("elem", id(fd), n_aux, weighted, want_grad, mode, np.dtype(dtype))
    return _cached(key, lambda: elementwise_template(fd, n_aux, weighted, want_grad, mode,
                                                     dtype))


def finish_template(dtype):
    """One block: out[0] = sum(partial) / div."""
    nbdt = _nbtype(dtype)

    def finish(partial, out, div):
        sh = cuda.shared.array(SLOTS, nbdt)
        acc = lit(div, 0.0)
        for k in range(cuda.threadIdx.x, partial.size, cuda.blockDim.x):
            acc += partial[k]
        tot = block_sum(sh, acc)
        if cuda.threadIdx.x == 0:
            out[0] = tot / div
    return finish


def finish_kernel(dtype):
    return _cached(("finish", np.dtype(dtype)), lambda: finish_template(dtype))


# ------------------------------------------------------------ row-wise losses

@cuda.jit(device=True)
def _block_label(y, r, sy, k, tid):
    """y[r] read once for the whole block (its k-th row) and shared: every
    thread checks and indexes with the same value, and takes the same branches
    and barriers, however y changes meanwhile.  Two slots: the slot of row k is
    written again only at row k + 2, after every thread has passed the barrier
    of row k + 1, so after it read row k's."""
    if tid == 0:
        sy[k & 1] = y[r]
    cuda.syncthreads()
    return sy[k & 1]


@cuda.jit(device=True)
def _bad_row(g, rl, bad, o, i, r, n, tid, nt, want_grad, write_rows, zero):
    """Row r has a label outside [0, n) (changed after ``check_labels``): NaN
    gradient row and row loss, bad[0] = min(bad[0], r); nothing is indexed by
    the label."""
    nan = lit(zero, math.nan)
    if want_grad:
        for j in range(tid, n, nt):
            g[o, j, i] = nan
    if tid == 0:
        if write_rows:
            rl[r] = nan
        cuda.atomic.min(bad, 0, r)


@cuda.jit
def reset_flag(bad, rows):
    """bad[0] = rows (no bad row yet) before a labelled row kernel."""
    if cuda.grid(1) == 0:
        bad[0] = rows


def sparse_template(nt, dtype, want_grad, write_rows, weighted, smoothing, capped):
    """One block per row of x (outer, C, inner); labels y (outer * inner,), int64.

    Loss per row (``losses.kernels._sparse_row``):
      (1 - eps) w[y] (lse - v_y) + (eps / C) (wtot lse - sum_c w_c v_c) + zl lse**2,
    v = x, or cap tanh(x / cap) with softcap; gradient
      (e_c A - B w_c - D [c = y]) (1 - tanh**2 under softcap),
      e_c = exp(v_c - m), A = scale ((1 - eps) w[y] + eps wtot / C + 2 zl lse) / s,
      B = scale eps / C, D = scale (1 - eps) w[y].
    A label outside [0, C) that is not ign (``_block_label``): NaN loss and
    gradient row, and bad[0] = the smallest such row.
    """
    nbdt = _nbtype(dtype)

    def sparse_ce(x, y, w, g, rl, partial, scale, eps, zl, cap, wtot, ign, bad):
        outer, n, inner = x.shape
        rows = outer * inner
        sm = cuda.shared.array(SLOTS, nbdt)
        ss = cuda.shared.array(SLOTS, nbdt)
        st = cuda.shared.array(SLOTS, nbdt)
        sy = cuda.shared.array(2, types.int64)
        tid = cuda.threadIdx.x
        zero = lit(scale, 0.0)
        one = lit(scale, 1.0)
        two = lit(scale, 2.0)
        ninf = lit(scale, -math.inf)
        inv = one / cap if capped else one
        nf = lit(scale, n)
        acc = zero
        k = 0
        for r in range(cuda.blockIdx.x, rows, cuda.gridDim.x):
            o = r // inner
            i = r - o * inner
            yi = _block_label(y, r, sy, k, tid)
            k += 1
            if yi == ign:
                if want_grad:
                    for j in range(tid, n, nt):
                        g[o, j, i] = zero
                if write_rows and tid == 0:
                    rl[r] = zero
                continue
            if yi < 0 or yi >= n:
                _bad_row(g, rl, bad, o, i, r, n, tid, nt, want_grad, write_rows, zero)
                if tid == 0:
                    acc += lit(scale, math.nan)     # the partial sum too
                continue
            # read before the barrier below: g may alias x
            vy = x[o, yi, i]
            ty = zero
            if capped:
                ty = tanh(vy * inv)
                vy = cap * ty
            m = ninf
            s = zero
            t = zero
            for j in range(tid, n, nt):
                v = x[o, j, i]
                if capped:
                    v = cap * tanh(v * inv)
                if smoothing:
                    t += w[j] * v if weighted else v
                if v > m:
                    s = s * exp(m - v) + one
                    m = v
                else:
                    s += zero if v == ninf else exp(v - m)
            m, s, t = block_softmax_stats(sm, ss, st, m, s, t, False)
            if m == -ninf:
                s = s * (m - m)           # exp(inf - inf): NaN, as on the CPU
            lse = m + log(s)
            wy = w[yi] if weighted else one
            loss = (one - eps) * wy * (lse - vy) + (eps / nf) * (wtot * lse - t) \
                + zl * lse * lse
            if tid == 0:
                acc += loss
                if write_rows:
                    rl[r] = loss
            if want_grad:
                A = scale * ((one - eps) * wy + eps * wtot / nf + two * zl * lse) / s
                B = scale * eps / nf
                D = scale * (one - eps) * wy
                for j in range(tid, n, nt):
                    v = x[o, j, i]
                    th = zero
                    if capped:
                        th = tanh(v * inv)
                        v = cap * th
                    # (B = 0 without smoothing: w[j] is not read, it may be inf)
                    gj = exp(v - m) * A - (B * w[j] if weighted and smoothing else B)
                    if j == yi:
                        gj -= D
                    if capped:
                        gj *= (one - th) * (one + th)
                    g[o, j, i] = gj
        if not write_rows and tid == 0:
            partial[cuda.blockIdx.x] = acc
    return sparse_ce


def dense_template(nt, dtype, want_grad, write_rows, smoothing):
    """One block per row; ``losses.kernels._dense_row``:
      loss = lse tsum - ((1 - eps) sum t x + (eps / C) sum x), tsum = (1 - eps) sum t + eps;
      grad = scale (e_c tsum / s - (1 - eps) t_c - eps / C).
    """
    nbdt = _nbtype(dtype)

    def dense_ce(x, tg, g, rl, partial, scale, eps):
        outer, n, inner = x.shape
        rows = outer * inner
        sm = cuda.shared.array(SLOTS, nbdt)
        ss = cuda.shared.array(SLOTS, nbdt)
        st = cuda.shared.array(SLOTS, nbdt)
        tid = cuda.threadIdx.x
        zero = lit(scale, 0.0)
        one = lit(scale, 1.0)
        ninf = lit(scale, -math.inf)
        nf = lit(scale, n)
        acc = zero
        for r in range(cuda.blockIdx.x, rows, cuda.gridDim.x):
            o = r // inner
            i = r - o * inner
            m = ninf
            s = zero
            tsum = zero
            stx = zero
            sx = zero
            for j in range(tid, n, nt):
                v = x[o, j, i]
                tv = tg[o, j, i]
                tsum += tv
                stx += tv * v
                if smoothing:
                    sx += v
                if v > m:
                    s = s * exp(m - v) + one
                    m = v
                else:
                    s += zero if v == ninf else exp(v - m)
            m, s, tsum = block_softmax_stats(sm, ss, st, m, s, tsum, False)
            stx, sx = block_sum2(sm, ss, stx, sx)
            if m == -ninf:
                s = s * (m - m)
            lse = m + log(s)
            ts = (one - eps) * tsum + eps
            loss = lse * ts - ((one - eps) * stx + (eps / nf) * sx)
            if tid == 0:
                acc += loss
                if write_rows:
                    rl[r] = loss
            if want_grad:
                A = scale * ts / s
                B1 = scale * (one - eps)
                B0 = scale * eps / nf
                for j in range(tid, n, nt):
                    v = x[o, j, i]
                    g[o, j, i] = exp(v - m) * A - (B1 * tg[o, j, i] + B0)
        if not write_rows and tid == 0:
            partial[cuda.blockIdx.x] = acc
    return dense_ce


def nll_template(nt, dtype, want_grad, write_rows, weighted):
    """One block per row: loss -w[y] x_y (0 for ignore_index), gradient -w[y] scale at y;
    a label outside [0, C) that is not ign as in ``sparse_template``."""
    def nll(x, y, w, g, rl, partial, scale, ign, bad):
        outer, n, inner = x.shape
        rows = outer * inner
        sy = cuda.shared.array(2, types.int64)
        tid = cuda.threadIdx.x
        zero = lit(scale, 0.0)
        one = lit(scale, 1.0)
        acc = zero
        k = 0
        for r in range(cuda.blockIdx.x, rows, cuda.gridDim.x):
            o = r // inner
            i = r - o * inner
            yi = _block_label(y, r, sy, k, tid)
            k += 1
            if yi != ign and (yi < 0 or yi >= n):
                _bad_row(g, rl, bad, o, i, r, n, tid, nt, want_grad, write_rows, zero)
                if tid == 0:
                    acc += lit(scale, math.nan)     # the partial sum too
                continue
            loss = zero
            gy = zero
            if yi != ign:
                wy = w[yi] if weighted else one
                loss = -wy * x[o, yi, i]
                gy = -wy * scale
            cuda.syncthreads()            # x_y read by all before g (may alias x) is written
            if tid == 0:
                acc += loss
                if write_rows:
                    rl[r] = loss
            if want_grad:
                for j in range(tid, n, nt):
                    g[o, j, i] = gy if j == yi else zero
        if not write_rows and tid == 0:
            partial[cuda.blockIdx.x] = acc
    return nll


@cuda.jit
def check_labels(y, n_classes, ign, w, weighted, res):
    """Per block k: res[0, k] = the smallest row with a label outside [0, C) that
    is not ign (y.size if none), res[1, k] = the number of non-ignored rows,
    res[2, k] = their sum of w[y] (float64, as the CPU).  One host copy of res
    answers the whole check."""
    sb = cuda.shared.array(SLOTS, types.float64)
    sc = cuda.shared.array(SLOTS, types.float64)
    start, stride = cuda.grid(1), cuda.gridsize(1)
    bad = np.float64(y.size)
    c = 0.0
    s = 0.0
    for r in range(start, y.size, stride):
        v = y[r]
        if v == ign:
            continue
        if v < 0 or v >= n_classes:
            bad = min(bad, np.float64(r))
            continue
        c += 1.0
        s += np.float64(w[v]) if weighted else 1.0
    bad = -block_max(sb, -bad)
    c, s = block_sum2(sb, sc, c, s)
    if cuda.threadIdx.x == 0:
        k = cuda.blockIdx.x
        res[0, k] = bad
        res[1, k] = c
        res[2, k] = s


@cuda.jit
def check_unit_range(a, out):
    """out[0] = min flat index with a outside [0, 1]; out[1] = 1 if a holds a NaN."""
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, a.size, stride):
        v = a[i]
        if v != v:
            out[1] = 1
        elif v < lit(v, 0.0) or v > lit(v, 1.0):
            cuda.atomic.min(out, 0, i)


def row_kernel(family, threads, dtype, want_grad, write_rows, **flags):
    """The row kernel of ``family`` for blocks of ``threads`` (``core.row_threads``)."""
    key = (family, threads, np.dtype(dtype), want_grad, write_rows,
           tuple(sorted(flags.items())))
    make = {"sparse": sparse_template, "dense": dense_template, "nll": nll_template}[family]
    return _cached(key, lambda: make(threads, dtype, want_grad, write_rows, **flags), threads)


# ------------------------------------------------------------ preparing a call

def _split_kwargs(spec, pass_name, kwargs):
    kwargs = dict(kwargs)
    out = kwargs.pop("out", None)
    name = f"{spec.name}.{pass_name}"
    if out is not None and pass_name != "value_and_grad":
        raise TypeError(f"{name}: out= is the gradient buffer; the forward pass takes none")
    return name, lop.bind_options(spec, kwargs), out


def _dev_input(x, role):
    """(Numba device view, container kind or None) of a device or host input."""
    if core.is_device_array(x):
        d, kind, _ = core.as_device(x, role)
        return d, kind
    a, _ = dispatch.to_host_array(x, role)
    if a.dtype.kind in "OSUV":
        raise TypeError(f"fastact does not support dtype {a.dtype} for {role}")
    return cuda.to_device(np.ascontiguousarray(a)), None


def _host_copy(d):
    return d.copy_to_host() if hasattr(d, "copy_to_host") else np.asarray(d)


def _empty(dtype):
    return core.device_empty((0,), dtype)


def _prepare_device(spec, name, pred, target, opts):
    """Device-mode counterpart of ``losses.op.prepare_call`` (same checks and errors)."""
    family = spec.extra["family"]
    a, kind = _dev_input(pred, "prediction")
    compute, result = dispatch.dtypes_for(a.dtype)
    container = core.DeviceContainer(kind or "numba", pred if kind else None)
    shape = tuple(a.shape)
    red = opts["reduction"]
    ns = SimpleNamespace(family=family, name=name, shape=shape, compute=compute, result=result,
                         container=container, reduction=red, opts=opts, originals=[a],
                         arrays={})
    if family == "elementwise":
        b, _ = _dev_input(target, "target")
        ns.compute, ns.result = compute, result = lop.promoted_dtypes(compute, result, b.dtype)
        if tuple(b.shape) != shape:
            raise ValueError(f"{name}: target has shape {tuple(b.shape)}, expected {shape} "
                             "(the shape of the prediction)")
        ns.originals.append(b)
        ns.pred = core.to_contiguous(a, compute)
        ns.target = core.to_contiguous(b, compute)
        ns.kernel_inputs = [ns.pred, ns.target]
        for key in ("weight", "pos_weight"):
            v = opts.get(key)
            if v is None:
                continue
            if core.is_device_array(v):
                wd, _ = _dev_input(v, key)
                dispatch.dtypes_for(wd.dtype)
                if tuple(wd.shape) == shape:
                    ns.arrays[key] = core.to_contiguous(wd, compute)
                    continue
                wa = _host_copy(wd)
            else:
                wa, _, _, _ = lop._float_array(v, key)
            try:
                wb = np.broadcast_to(wa, shape)
            except ValueError:
                raise ValueError(f"{name}: {key} of shape {wa.shape} does not broadcast to "
                                 f"the prediction's shape {shape}") from None
            ns.arrays[key] = cuda.to_device(np.ascontiguousarray(wb, dtype=compute))
        if spec.extra.get("validate") is not None:
            _validate_unit_range(name, ns.pred, ns.target)
        n = int(np.prod(shape))
        ns.divisor = (float(n) if red == "mean" else
                      (float(shape[0]) if shape else 1.0) if red == "batchmean" else 1.0)
        return ns
    if len(shape) == 0:
        raise ValueError(f"{name}: the prediction needs a class axis (got a 0-d array)")
    ax = api.normalize_axis(opts.get("axis", -1), len(shape), name)
    outer, n_classes, inner = api.split_axis(shape, ax)
    label_shape = shape[:ax] + shape[ax + 1:]
    ns.label_shape, ns.n_classes = label_shape, n_classes
    if family == "dense":
        b, _ = _dev_input(target, "target")
        ns.compute, ns.result = compute, result = lop.promoted_dtypes(compute, result, b.dtype)
    pred_nd = core.to_contiguous(a, compute)
    ns.kernel_inputs = [pred_nd]
    ns.pred = pred_nd.reshape(outer, n_classes, inner)
    if family == "dense":
        if tuple(b.shape) != shape:
            raise ValueError(f"{name}: target has shape {tuple(b.shape)}, expected {shape} "
                             "(the shape of the prediction)")
        ns.originals.append(b)
        t_nd = core.to_contiguous(b, compute)
        ns.kernel_inputs.append(t_nd)
        ns.target = t_nd.reshape(outer, n_classes, inner)
        ns.divisor = float(outer * inner) if red == "mean" else 1.0
        return ns
    lab, _ = _dev_input(target, "labels")
    ldt = np.dtype(lab.dtype)
    if ldt.kind not in "iu":
        raise TypeError(f"{name}: labels must be integers (class indices), got dtype {ldt}"
                        + ("; for probability targets use softmax_cross_entropy"
                           if ldt.kind == "f" else ""))
    if tuple(lab.shape) != label_shape:
        raise ValueError(f"{name}: labels have shape {tuple(lab.shape)}, expected "
                         f"{label_shape} (the prediction's shape {shape} without the "
                         f"class axis {ax})")
    ns.originals.append(lab)
    y = core.flat(core.to_contiguous(lab, np.int64))
    w = opts.get("weight")
    ns.weighted = w is not None
    if ns.weighted:
        if core.is_device_array(w):
            wd, _ = _dev_input(w, "weight")
            dispatch.dtypes_for(wd.dtype)
            wshape = tuple(wd.shape)
        else:
            wa, _, _, _ = lop._float_array(w, "weight")
            wshape = wa.shape
            wd = cuda.to_device(np.ascontiguousarray(wa))
        if wshape != (n_classes,):
            raise ValueError(f"{name}: weight has shape {wshape}, expected ({n_classes},) "
                             "(one per class)")
        ns.w = core.to_contiguous(wd, compute)
        ns.wtot = lop.smoothing_weight_sum(name, opts, _host_copy(wd).astype(np.float64),
                                          n_classes)
    else:
        ns.w = core.device_empty((1,), compute)
        ns.wtot = lop.smoothing_weight_sum(name, opts, None, n_classes)
    ign = opts["ignore_index"]
    count, wsum = _check_labels(name, y, n_classes, ign, ns.w, ns.weighted, label_shape)
    ns.target = y
    ns.count = count
    ns.divisor = (wsum if ns.weighted else float(count)) if red == "mean" else 1.0
    return ns


def _check_labels(name, y, n_classes, ign, w, weighted, label_shape):
    rows = y.size
    if rows == 0:
        return 0, 0.0
    blocks, threads = core.grid(rows)
    res = core.device_empty((3, blocks), np.float64)
    core.launch(check_labels, blocks, threads, y, np.int64(n_classes), np.int64(ign), w,
                weighted, res)
    h = res.copy_to_host()
    b = int(h[0].min())
    if b < rows:
        v = int(y[b:b + 1].copy_to_host()[0])
        raise lkernels.bad_label_error(name, v, b, label_shape, n_classes, ign)
    return int(h[1].sum()), float(h[2].sum())


def _validate_unit_range(name, p, t):
    """``losses.defs._bce_validate`` on the device: same errors (and, like it, no
    error when the array holds a NaN)."""
    for arr, what in ((t, "targets must be in [0, 1]; found"),
                      (p, "probabilities must be in [0, 1]; found")):
        n = arr.size
        if n == 0:
            return
        res = cuda.to_device(np.array([n, 0], np.int64))
        blocks, threads = core.grid(n)
        core.launch(check_unit_range, blocks, threads, core.flat(arr), res)
        bad, has_nan = (int(v) for v in res.copy_to_host())
        if bad < n and not has_nan:
            v = core.flat(arr)[bad:bad + 1].copy_to_host()[0]
            raise ValueError(f"{name}: {what} {v} at flat index {bad}")


def _upload_host_call(call):
    """Device copies of the arrays of a host ``LossCall`` (class axis already last)."""
    fam = call.family
    ns = SimpleNamespace(family=fam, name=call.name, compute=call.compute,
                         reduction=call.reduction, opts=call.opts, divisor=call.divisor,
                         arrays={k: cuda.to_device(v) for k, v in call.arrays.items()})
    if fam == "elementwise":
        ns.pred = cuda.to_device(call.pred)
        ns.target = cuda.to_device(call.target)
        return ns
    n_classes = call.pred.shape[-1]
    rows = call.pred.size // n_classes if n_classes else int(np.prod(call.pred.shape[:-1]))
    ns.n_classes = n_classes
    ns.label_shape = call.label_shape
    ns.pred = cuda.to_device(call.pred.reshape(rows, n_classes, 1))
    if fam == "dense":
        ns.target = cuda.to_device(call.target.reshape(rows, n_classes, 1))
    else:
        ns.target = cuda.to_device(call.target)
        ns.weighted = call.weighted
        ns.w = cuda.to_device(call.w)
        ns.wtot = call.wtot
    return ns


# ------------------------------------------------------------ computing

def _scale(dc):
    if dc.reduction in ("mean", "batchmean"):
        with np.errstate(divide="ignore"):
            return float(np.float64(1.0) / np.float64(dc.divisor))
    return 1.0


def _compute(spec, dc, g, total=None):
    """Run the kernels.  g: device gradient buffer (pred's layout) or None;
    total: where a reduced loss goes (device (1,) array of the compute dtype), or
    None for a new one.

    Returns ("total", device (1,) array with the undivided sum), ("per", device
    array of per-sample losses), or ("value", host float64 value) for a two-pass
    loss (rmse).
    """
    ct = dc.compute.type
    want_grad = g is not None
    red = dc.reduction
    scale = ct(_scale(dc))
    empty = _empty(dc.compute)
    if dc.family == "elementwise":
        p, t = core.flat(dc.pred), core.flat(dc.target)
        n = p.size
        gf = core.flat(g) if want_grad else empty
        two_pass = spec.extra["two_pass"]
        if two_pass is not None and red != "none":
            return _two_pass(two_pass, dc, p, t, gf, want_grad)
        fd, prm = spec.extra["scalar"](dc.opts, red)
        aux = dc.arrays.get("pos_weight")
        w = dc.arrays.get("weight")
        mode = "none" if red == "none" else "reduce"
        per = core.device_empty((n,), dc.compute) if mode == "none" else empty
        blocks, threads = core.grid(max(n, 1))
        partial = core.device_empty((blocks,), dc.compute)
        if n:
            core.launch(
                elementwise_kernel(fd, 0 if aux is None else 1, w is not None, want_grad, mode,
                                   dc.compute), blocks, threads,
                p, t, empty if aux is None else core.flat(aux),
                empty if w is None else core.flat(w), gf, per, partial, scale,
                tuple(ct(v) for v in prm))
        if mode == "none":
            return "per", per
        return "total", _finish(partial, n > 0, dc, total)
    x = dc.pred
    outer, n_classes, inner = x.shape
    rows = outer * inner
    write_rows = red == "none"
    per = core.device_empty((rows,), dc.compute) if write_rows else empty
    blocks = _row_blocks(rows)
    nt = core.row_threads(n_classes)
    partial = core.device_empty((blocks,), dc.compute)
    g3 = (g.reshape(outer, n_classes, inner) if want_grad
          else core.device_empty((0, 0, 0), dc.compute))
    o = dc.opts
    if rows:
        if dc.family != "dense":
            # the kernels check the labels again (they may have changed since
            # check_labels read them, or since the host copy was checked)
            bad = core.device_empty((1,), np.int64)
            core.launch(reset_flag, 1, 1, bad, np.int64(rows))
        if dc.family == "sparse":
            cap = o["softcap"]
            eps = o["label_smoothing"]
            k = row_kernel("sparse", nt, dc.compute, want_grad, write_rows, weighted=dc.weighted,
                           smoothing=eps > 0, capped=cap is not None)
            core.launch(k, blocks, nt, x, dc.target, dc.w, g3, per, partial, scale, ct(eps),
                        ct(o["z_loss"]), ct(1.0 if cap is None else cap), ct(dc.wtot),
                        np.int64(o["ignore_index"]), bad)
        elif dc.family == "dense":
            eps = o["label_smoothing"]
            k = row_kernel("dense", nt, dc.compute, want_grad, write_rows, smoothing=eps > 0)
            core.launch(k, blocks, nt, x, dc.target, g3, per, partial, scale, ct(eps))
        else:
            k = row_kernel("nll", nt, dc.compute, want_grad, write_rows, weighted=dc.weighted)
            core.launch(k, blocks, nt, x, dc.target, dc.w, g3, per, partial, scale,
                        np.int64(o["ignore_index"]), bad)
        if dc.family != "dense":
            _raise_bad_label(dc, bad, rows)
    if write_rows:
        return "per", per
    return "total", _finish(partial, rows > 0, dc, total)


def _raise_bad_label(dc, bad, rows):
    """The pre-check's ValueError if a labelled row kernel flagged a row in bad
    (its label is read back from the device labels the kernel read)."""
    row = int(bad.copy_to_host()[0])
    if row < rows:
        label = int(dc.target[row:row + 1].copy_to_host()[0])
        raise lkernels.bad_label_error(dc.name, label, row, dc.label_shape, dc.n_classes,
                                       dc.opts["ignore_index"])


def _finish(partial, ran, dc, total=None):
    """total (device (1,) array, a new one if None) = sum(partial) /
    dc.final_div in the compute dtype; returns it.

    A zero divisor (empty or all-ignored batch with "mean") is divided on the host,
    giving NaN (or +-inf) as on the CPU."""
    compute = dc.compute
    div = float(getattr(dc, "final_div", 1.0))
    # the kernel writes total[0] (0 for no partials): no host-to-device copy,
    # which through numba-cuda costs about 0.2 ms per call
    if total is None:
        total = core.device_empty((1,), compute)
    core.launch(finish_kernel(compute), 1, core.THREADS, partial if ran else partial[:0],
                total, compute.type(div if div != 0 else 1.0))
    if div == 0:
        with np.errstate(all="ignore"):
            v = total.copy_to_host().astype(np.float64) / np.float64(0.0)
        total = cuda.to_device(v.astype(compute))
    return total


def _two_pass(two_pass, dc, p, t, gf, want_grad):
    """A two-pass loss (``losses.defs.TwoPass``): the terms summed, the value and
    gradient scale on the host, then the gradient pass."""
    n = p.size
    ct = dc.compute.type
    empty = _empty(dc.compute)
    ss = 0.0
    if n:
        blocks, threads = core.grid(n)
        partial = core.device_empty((blocks,), dc.compute)
        core.launch(
            elementwise_kernel(two_pass.terms, 0, False, False, "reduce", dc.compute),
            blocks, threads, p, t, empty, empty, empty, empty, partial, ct(1.0), ())
        ss = float(_finish(partial, True, SimpleNamespace(compute=dc.compute))
                   .copy_to_host()[0])
    value, scale = two_pass.finish(ss, n, dc.reduction)
    if want_grad and n:
        blocks, threads = core.grid(n)
        core.launch(
            elementwise_kernel(two_pass.grad, 0, False, True, "skip", dc.compute),
            blocks, threads, p, t, empty, empty, gf, empty, empty, ct(scale), ())
    return "value", value


# ------------------------------------------------------------ entry point

def run(spec, pass_name, args, kwargs):
    """``LossOp.__call__`` (pass "forward") or ``value_and_grad`` on the GPU."""
    name, opts, out = _split_kwargs(spec, pass_name, kwargs)
    pred, target = args
    want_grad = pass_name == "value_and_grad"
    inputs = [pred, target, opts.get("weight"), opts.get("pos_weight")]
    outs = out if isinstance(out, (tuple, list)) else (out,)
    device_mode = any(core.is_device_array(v) for v in inputs) or any(
        core.is_device_array(o) for o in outs)
    if not device_mode:
        return _run_host(spec, pass_name, pred, target, opts, out, want_grad)
    return _run_device(spec, name, pred, target, opts, out, want_grad)


def _run_host(spec, pass_name, pred, target, opts, out, want_grad):
    call = lop.prepare_call(spec, pass_name, pred, target, opts)
    dc = _upload_host_call(call)
    g_host, finish_grad = lop._grad_outputs(call, out) if want_grad else (None, None)
    g = core.device_empty(call.pred.shape, call.compute) if want_grad else None
    kind, res = _compute(spec, dc, g)
    if want_grad and g.size:
        g.copy_to_host(g_host)
    if kind == "value":
        loss = call.container.wrap(np.array(res, dtype=call.result))
    elif kind == "per":
        per = res.copy_to_host() if res.size else np.zeros(0, call.compute)
        loss = lop._finish_loss(call, per=per.reshape(lop._loss_shape(call)))
    else:
        loss = lop._finish_loss(call, total=np.float64(res.copy_to_host()[0]))
    return (loss, finish_grad()) if want_grad else loss


def _run_device(spec, name, pred, target, opts, out, want_grad):
    dc = _prepare_device(spec, name, pred, target, opts)
    dc.final_div = dc.divisor if dc.reduction in ("mean", "batchmean") else 1.0
    g = outs = None
    if want_grad:
        kernel_inputs = dc.kernel_inputs + list(dc.arrays.values())
        prep = core.Prepared("device", kernel_inputs, dc.compute, dc.result, dc.container,
                             dc.originals)
        outs = prep.outputs([dc.shape], out, name)
        g = outs.arrays[0]
    # a reduced loss in the compute dtype goes straight into the returned array
    native = total = None
    if dc.reduction != "none" and dc.result == dc.compute:
        native, view = dc.container.empty((), dc.result)
        total = view.reshape(1)
    kind, res = _compute(spec, dc, g, total)
    if kind == "total" and res is total and total is not None:
        loss = native
    elif kind == "value":
        loss = _device_scalar(dc, np.array([res], dc.compute))
    elif kind == "per":
        lshape = dc.label_shape if dc.family != "elementwise" else dc.shape
        loss = _device_result(dc, res, lshape)
    else:
        loss = _device_result(dc, res, ())
    return (loss, outs.finish()) if want_grad else loss


def _device_scalar(dc, host_value):
    return _device_result(dc, cuda.to_device(host_value), ())


def _device_result(dc, buf, shape):
    """buf (compute dtype, flat) as a container array of ``shape`` in the result dtype."""
    native, view = dc.container.empty(shape, dc.result)
    if view.size:
        src = buf.reshape(shape) if tuple(buf.shape) != tuple(shape) else buf
        core.copy_into(src, view)
    return native
