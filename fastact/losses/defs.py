"""The loss records: formulas (docstrings), options, scalars, NumPy baselines, examples.

NumPy baselines are what a NumPy user would write: whole-array expressions
giving the per-element (or per-row) loss and its gradient, then the reduction.
They receive the converted arrays of ``fastact.losses.op.prepare_call``.
"""
import math
from typing import Callable, NamedTuple

import numpy as np

from ..cpu.reduce import all_binary
from ..registry import OpSpec, Param, register, require, require_all, require_finite_nonnegative
from . import kernels, scalars as S

RED = ("mean", "sum", "none")


# ------------------------------------------------------------ option checks

def _positive(name):
    return require(name, lambda v: 0.0 < v < math.inf, "a positive finite number")


_focal_check = require_all(require_finite_nonnegative("gamma"),
                           require("alpha", lambda a: not math.isnan(a), "a number"))


def _focal_scalar(opts, reduction):
    if opts["gamma"] == 2.0:
        return S.focal_gamma2_lg, (opts["alpha"],)
    return S.focal_lg, (opts["alpha"], opts["gamma"])


def _smoothing_check(op, opts):
    eps = opts["label_smoothing"]
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {eps}")
    if "z_loss" in opts and not (opts["z_loss"] >= 0 and math.isfinite(opts["z_loss"])):
        raise ValueError(f"{op}: z_loss must be >= 0 and finite, got {opts['z_loss']}")
    cap = opts.get("softcap")
    if cap is not None:
        if isinstance(cap, (bool, np.bool_, str)):
            raise TypeError(f"{op}: softcap must be None or a positive number, got {cap!r}")
        try:
            c = float(cap)
        except (TypeError, ValueError):
            raise TypeError(f"{op}: softcap must be None or a positive number, "
                            f"got {cap!r}") from None
        if not (c > 0 and math.isfinite(c)):
            raise ValueError(f"{op}: softcap must be a positive finite number, got {cap}")
        opts["softcap"] = c


def _bce_validate(name, p, t):
    if t.size and kernels.any_outside_unit(p.reshape(-1), t.reshape(-1)):
        tmin, tmax = np.min(t), np.max(t)
        if tmin < 0 or tmax > 1:
            bad = int(np.flatnonzero((t < 0) | (t > 1))[0])
            raise ValueError(f"{name}: targets must be in [0, 1]; found {t.reshape(-1)[bad]} "
                             f"at flat index {bad}")
        pmin, pmax = np.min(p), np.max(p)
        if pmin < 0 or pmax > 1:
            bad = int(np.flatnonzero((p < 0) | (p > 1))[0])
            raise ValueError(f"{name}: probabilities must be in [0, 1]; found "
                             f"{p.reshape(-1)[bad]} at flat index {bad}")


# ------------------------------------------------------------ baselines

def _reduce_numpy(call, v, d, want_grad):
    """Weights, reduction and gradient scale of an elementwise baseline."""
    w = call.arrays.get("weight")
    if w is not None:
        v = v * w
        d = d * w
    r = call.reduction
    if r == "none":
        return v, (d if want_grad else None)
    total = v.sum(dtype=np.float64)
    if r in ("mean", "batchmean"):
        total = total / call.divisor
        d = d / d.dtype.type(call.divisor)
    return total, (d if want_grad else None)


def _elementwise_numpy(f):
    def baseline(call, want_grad):
        v, d = f(call.pred, call.target, call)
        return _reduce_numpy(call, v, d, want_grad)
    return baseline


def _np_mse(p, t, c):
    z = p - t
    return z * z, 2 * z


def _np_mae(p, t, c):
    z = p - t
    return np.abs(z), np.sign(z)


def _np_huber(p, t, c):
    d = c.opts["delta"]
    z = p - t
    a = np.abs(z)
    return np.where(a <= d, 0.5 * z * z, d * (a - 0.5 * d)).astype(p.dtype), np.clip(z, -d, d)


def _np_smooth_l1(p, t, c):
    b = c.opts["beta"]
    z = p - t
    a = np.abs(z)
    small = a < b
    return (np.where(small, 0.5 * z * z / b, a - 0.5 * b).astype(p.dtype),
            np.where(small, z / b, np.sign(z)).astype(p.dtype))


def _np_pseudo_huber(p, t, c):
    d = c.opts["delta"]
    z = p - t
    r = np.sqrt(1 + (z / d) ** 2)
    return (d * d * (r - 1)).astype(p.dtype), (z / r).astype(p.dtype)


def _np_log_cosh(p, t, c):
    z = p - t
    a = np.abs(z)
    return a + np.log1p(np.exp(-2 * a)) - p.dtype.type(math.log(2)), np.tanh(z)


def _np_bce(p, t, c):
    lp = np.maximum(np.log(p), -100)
    l1p = np.maximum(np.log1p(-p), -100)
    return (t - 1) * l1p - t * lp, (p - t) / np.maximum((1 - p) * p, p.dtype.type(1e-12))


def _np_sigmoid_bce(x, t, c):
    pw = c.arrays.get("pos_weight")
    pw = 1 if pw is None else pw
    lw = 1 + (pw - 1) * t
    loss = (1 - t) * x + lw * (np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0))
    s = 1 / (1 + np.exp(-x))
    return loss.astype(x.dtype), (s * lw - pw * t).astype(x.dtype)


def _hinge_y(t):
    return np.where(t == 0, -1, t).astype(t.dtype)


def _np_hinge(p, t, c):
    y = _hinge_y(t)
    m = 1 - y * p
    return np.maximum(m, 0), np.where(m > 0, -y, 0).astype(p.dtype)


def _np_squared_hinge(p, t, c):
    y = _hinge_y(t)
    m = np.maximum(1 - y * p, 0)
    return m * m, -2 * y * m


def _np_kl(x, t, c):
    if c.opts["log_target"]:
        e = np.exp(t)
        return e * (t - x), -e
    xlogy = np.where(t == 0, 0, t * np.log(np.where(t == 0, 1, t))).astype(x.dtype)
    return xlogy - t * x, -t


def _np_focal(x, t, c):
    alpha, gamma = c.opts["alpha"], c.opts["gamma"]
    p = 1 / (1 + np.exp(-x))
    ce = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
    q = p * (1 - t) + (1 - p) * t
    qg = q ** gamma
    dq = -p * (1 - p) * (2 * t - 1)
    with np.errstate(all="ignore"):
        dqg = np.where(q > 0, gamma * qg / np.where(q > 0, q, 1) * dq, 0) if gamma else 0 * q
    v, d = ce * qg, (p - t) * qg + ce * dqg
    if alpha >= 0:
        at = alpha * t + (1 - alpha) * (1 - t)
        v, d = at * v, at * d
    return v.astype(x.dtype), d.astype(x.dtype)


class TwoPass(NamedTuple):
    """A loss whose reduced value is a function of the sum of per-element terms
    and whose gradient is scaled by a factor that depends on that value: one
    pass sums ``terms``, ``finish`` gives the value and the scale, a second
    pass writes ``grad`` times the scale.  (Reduction 'none' takes the loss's
    ordinary one-pass scalar.)"""
    terms: Callable       # (p, t) -> (term, unused)
    grad: Callable        # (p, t) -> (unused, gradient before scaling)
    finish: Callable      # (float64 sum, n, reduction) -> (float64 value, gradient scale)


def _rmse_finish(ss, n, reduction):
    """sqrt(ss / n) ('mean') or sqrt(ss) ('sum'), and d rmse / d z_i = z_i times
    1 / (n rmse) resp. 1 / rmse: 0 where rmse is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.sqrt(np.float64(ss) / n) if reduction == "mean" else np.sqrt(np.float64(ss))
        scale = 0.0 if value == 0 else 1.0 / (value * (n if reduction == "mean" else 1.0))
    return value, scale


def _np_rmse(call, want_grad):
    p, t = call.pred, call.target
    z = p - t
    if call.reduction == "none":
        return np.abs(z), (np.sign(z) if want_grad else None)
    ss = (z * z).sum(dtype=np.float64)
    n = z.size if call.reduction == "mean" else 1
    value = np.sqrt(ss / n)
    g = z / p.dtype.type(n * value) if value != 0 else np.zeros_like(z)
    return value, (g if want_grad else None)


def _np_sparse(call, want_grad):
    x, y, o = call.pred, call.target, call.opts
    C = x.shape[-1]
    x = x.reshape(-1, C)
    rows = x.shape[0]
    if rows == 0 or C == 0:
        return _row_reduce(call, np.zeros(rows)), np.zeros_like(x)
    cap = o["softcap"]
    if cap is not None:
        th = np.tanh(x / x.dtype.type(cap))
        x = x.dtype.type(cap) * th
    m = x.max(axis=1, keepdims=True)
    e = np.exp(x - m)
    s = e.sum(axis=1, keepdims=True)
    lse = (m + np.log(s))[:, 0]
    p = e / s
    valid = y != o["ignore_index"]
    yc = np.where(valid, y, 0)
    w = call.w64.astype(x.dtype) if call.weighted else np.ones(C, x.dtype)
    wy = w[yc] * valid
    eps, zl = o["label_smoothing"], o["z_loss"]
    xy = x[np.arange(rows), yc]
    loss = ((1 - eps) * wy * (lse - xy)
            + (eps / C) * ((w * (lse[:, None] - x)).sum(axis=1)) * valid
            + zl * lse * lse * valid)
    grad = None
    if want_grad:
        onehot = np.zeros_like(x)
        onehot[np.arange(rows), yc] = 1
        grad = (p * ((1 - eps) * wy + eps * w.sum() / C * valid + 2 * zl * lse * valid)[:, None]
                - (1 - eps) * wy[:, None] * onehot - (eps / C) * w[None, :] * valid[:, None])
        if cap is not None:
            grad = grad * (1 - th * th)
        grad = grad * x.dtype.type(_scale_of(call))
    return _row_reduce(call, loss), grad


def _np_dense(call, want_grad):
    x, t, eps = call.pred, call.target, call.opts["label_smoothing"]
    C = x.shape[-1]
    x, t = x.reshape(-1, C), t.reshape(-1, C)
    if x.shape[0] == 0 or C == 0:
        return _row_reduce(call, np.zeros(x.shape[0])), np.zeros_like(x)
    m = x.max(axis=1, keepdims=True)
    logp = x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))
    ts = t * (1 - eps) + eps / C
    loss = -(ts * logp).sum(axis=1)
    grad = None
    if want_grad:
        grad = (np.exp(logp) * ts.sum(axis=1, keepdims=True) - ts) * x.dtype.type(_scale_of(call))
    return _row_reduce(call, loss), grad


def _np_nll(call, want_grad):
    x, y, o = call.pred, call.target, call.opts
    C = x.shape[-1]
    x = x.reshape(-1, C)
    rows = x.shape[0]
    valid = y != o["ignore_index"]
    yc = np.where(valid, y, 0)
    w = call.w64 if call.weighted else np.ones(max(C, 1))
    wy = (w[yc] * valid) if C else np.zeros(rows)
    loss = -wy * (x[np.arange(rows), yc] if C else 0)
    grad = None
    if want_grad:
        grad = np.zeros_like(x)
        if C:
            grad[np.arange(rows), yc] = -wy * _scale_of(call)
    return _row_reduce(call, loss), grad


def _scale_of(call):
    if call.reduction == "mean":
        with np.errstate(divide="ignore"):
            return np.float64(1.0) / np.float64(call.divisor)
    return 1.0


def _row_reduce(call, loss):
    if call.reduction == "none":
        return loss
    total = loss.sum(dtype=np.float64)
    if call.reduction == "mean":
        with np.errstate(all="ignore"):
            total = np.float64(total) / np.float64(call.divisor)
    return total


# ------------------------------------------------------------ examples

def _regression_example(pass_name, size, dtype, rng):
    return (rng.standard_normal(size).astype(dtype),
            rng.standard_normal(size).astype(dtype)), {}


def _hinge_example(pass_name, size, dtype, rng):
    return (rng.standard_normal(size).astype(dtype),
            rng.choice(np.array([-1.0, 1.0]), size).astype(dtype)), {}


def _bce_example(pass_name, size, dtype, rng):
    return (rng.uniform(0.01, 0.99, size).astype(dtype),
            rng.uniform(0, 1, size).astype(dtype)), {}


def _logit_example(pass_name, size, dtype, rng):
    return ((3 * rng.standard_normal(size)).astype(dtype),
            (rng.uniform(0, 1, size) < 0.3).astype(dtype)), {}


def _kl_example(pass_name, size, dtype, rng):
    return (np.log(rng.uniform(0.01, 1, size)).astype(dtype),
            rng.uniform(0, 1, size).astype(dtype)), {}


def _rows(size, classes=1024):
    c = max(1, min(classes, size))
    return max(1, size // c), c


def _sparse_example(pass_name, size, dtype, rng):
    r, c = _rows(size)
    return ((2 * rng.standard_normal((r, c))).astype(dtype),
            rng.integers(0, c, r)), {}


def _dense_example(pass_name, size, dtype, rng):
    r, c = _rows(size)
    t = rng.uniform(0, 1, (r, c))
    return ((2 * rng.standard_normal((r, c))).astype(dtype),
            (t / t.sum(axis=1, keepdims=True)).astype(dtype)), {}


def _nll_example(pass_name, size, dtype, rng):
    r, c = _rows(size)
    x = rng.standard_normal((r, c))
    logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    return (logp.astype(dtype), rng.integers(0, c, r)), {}


# ------------------------------------------------------------ records

_PASSES = ("forward", "value_and_grad")
_COMMON = ("\n\nCall: loss = fa.{n}(pred, target, ...);  loss, grad = "
           "fa.{n}.value_and_grad(pred, target, ..., out=None, backend=None).\n"
           "reduction: 'mean' | 'sum' | 'none' (per element / per sample; the gradient is then "
           "that of the sum).  out= receives the gradient and may be the prediction array "
           "itself: the gradient then OVERWRITES the predictions.")


def _fixed(fd, *names):
    def scalar(opts, reduction):
        return fd, tuple(opts[n] for n in names)
    return scalar


def _loss(name, doc, scalar, numpy, params=(), reduction="mean", family="elementwise",
          example=_regression_example, check=None, validate=None, reductions=RED,
          transcendental=False, two_pass=None, nan_if_invalid=False, block_variant=None):
    """Register a loss.  validate(name, p, t): raises for inputs the loss does not
    take; nan_if_invalid: the scalar's loss term is NaN for every such input,
    so that a call with a reduction and without an out= that is an input may
    run validate after the kernel, only when the reduced loss is not finite
    (``op.LossOp._run_plain``).  block_variant: (holds(t), scalar), a cheaper
    scalar that the CPU kernels use for each block of targets where ``holds``
    (the same values)."""
    extra = dict(family=family, scalar=scalar, validate=validate,
                 two_pass=two_pass, nan_if_invalid=nan_if_invalid, block_variant=block_variant)
    ps = (Param("reduction", reduction, choices=reductions),) + tuple(params)
    register(OpSpec(name=name, kind="loss", doc=doc + _COMMON.format(n=name), params=ps,
                    numpy=numpy, passes=_PASSES, example=example, extra=extra,
                    transcendental=transcendental, check=check))


_Z = "z = pred - target"

_loss("mse", f"Mean squared error: sum or mean of z**2, {_Z};  gradient 2 z (/ n for mean).",
      _fixed(S.mse_lg), _elementwise_numpy(_np_mse))
_loss("rmse", f"Root mean squared error: sqrt(mean(z**2)) ('mean'), sqrt(sum(z**2)) ('sum'), "
      f"|z| per element ('none'), {_Z}.  Gradient z / (n rmse) (resp. z / rmse, sign z); "
      "0 where the loss is 0.  Two passes (the scale needs the total first).",
      _fixed(S.mae_lg), _np_rmse, two_pass=TwoPass(S.mse_lg, S.rmse_grad_lg, _rmse_finish))
_loss("mae", f"Mean absolute error: |z|, {_Z};  gradient sign(z) (0 at z = 0 and, as in "
      "PyTorch, at z = NaN).", _fixed(S.mae_lg), _elementwise_numpy(_np_mae))
_loss("l1", f"L1 loss, reduction 'sum' by default: sum |z|, {_Z};  gradient sign(z).",
      _fixed(S.mae_lg), _elementwise_numpy(_np_mae), reduction="sum")
_loss("l2", f"L2 loss, reduction 'sum' by default: sum z**2, {_Z};  gradient 2 z.",
      _fixed(S.mse_lg), _elementwise_numpy(_np_mse), reduction="sum")
_loss("huber", f"Huber loss (PyTorch): 0.5 z**2 if |z| <= delta else delta (|z| - 0.5 delta), "
      f"{_Z};  gradient clip(z, -delta, delta).",
      _fixed(S.huber_lg, "delta"), _elementwise_numpy(_np_huber),
      params=(Param("delta", 1.0),), check=_positive("delta"))
_loss("smooth_l1", f"Smooth L1 (PyTorch): 0.5 z**2 / beta if |z| < beta else |z| - 0.5 beta, "
      f"{_Z} (beta = 0 is L1);  gradient z / beta resp. sign(z).",
      _fixed(S.smooth_l1_lg, "beta"), _elementwise_numpy(_np_smooth_l1),
      params=(Param("beta", 1.0),), check=require_finite_nonnegative("beta"))
_loss("pseudo_huber", f"Pseudo-Huber: delta**2 (sqrt(1 + (z/delta)**2) - 1), {_Z};  gradient "
      "z / sqrt(1 + (z/delta)**2).", _fixed(S.pseudo_huber_lg, "delta"),
      _elementwise_numpy(_np_pseudo_huber), params=(Param("delta", 1.0),),
      check=_positive("delta"))
_loss("log_cosh", f"Log-cosh: log(cosh z) = |z| + log1p(exp(-2|z|)) - log 2 (log1p((1 - e)**2 "
      f"/ 2e), e = exp(-|z|), for |z| < 1), {_Z};  gradient tanh(z).", _fixed(S.log_cosh_lg),
      _elementwise_numpy(_np_log_cosh), transcendental=True)
_loss("binary_cross_entropy",
      "Binary cross-entropy on probabilities (PyTorch): -w (t log p + (1 - t) log(1 - p)), "
      "each log clamped at >= -100;  gradient w (p - t) / max(p (1 - p), 1e-12).  "
      "weight broadcasts to pred.  Targets (and probabilities) outside [0, 1] raise "
      "ValueError (an out= apart from the inputs may have been written by then); "
      "NaN predictions propagate.",
      lambda o, r: (S.bce_lg, ()), _elementwise_numpy(_np_bce),
      params=(Param("weight", None, kernel=False),), example=_bce_example,
      validate=_bce_validate, nan_if_invalid=True, transcendental=True,
      block_variant=(all_binary, S.bce_binary_lg))
_loss("sigmoid_binary_cross_entropy",
      "Binary cross-entropy with logits x (PyTorch's BCEWithLogits): "
      "w ((1 - t) softplus(x) + pos_weight t softplus(-x)) "
      "= w ((1 - t) x + lw (log1p(exp(-|x|)) + max(-x, 0))), lw = 1 + (pos_weight - 1) t;  "
      "gradient w (sigmoid(x) lw - pos_weight t).  weight broadcasts to pred, pos_weight "
      "too (typically one per class on the last axis).  Finite at x = +-inf (PyTorch gives "
      "NaN for x = +inf, t = 1 and x = -inf, t = 0; here the limit 0).",
      lambda o, r: (S.sigmoid_bce_pw_lg if o.get("pos_weight") is not None
                    else S.sigmoid_bce_lg, ()),
      _elementwise_numpy(_np_sigmoid_bce),
      params=(Param("weight", None, kernel=False), Param("pos_weight", None, kernel=False)),
      example=_logit_example, transcendental=True)
_loss("hinge", "Hinge: max(0, 1 - y p), y = t, targets in {-1, 1} (a 0 target counts as -1, "
      "so {0, 1} targets work);  gradient -y where 1 - y p > 0, else 0.",
      _fixed(S.hinge_lg), _elementwise_numpy(_np_hinge), example=_hinge_example)
_loss("squared_hinge", "Squared hinge: max(0, 1 - y p)**2 (targets as hinge);  gradient "
      "-2 y max(0, 1 - y p).", _fixed(S.squared_hinge_lg),
      _elementwise_numpy(_np_squared_hinge), example=_hinge_example)
_loss("kl_divergence",
      "KL divergence (PyTorch's kl_div, input = log q): xlogy(t, t) - t x "
      "(log_target=True: exp(t) (t - x));  gradient -t (resp. -exp(t)).  reduction 'mean' "
      "divides by the element count (as PyTorch), 'batchmean' by pred.shape[0] (the "
      "mathematical KL per sample).",
      lambda o, r: (S.kl_log_target_lg if o["log_target"] else S.kl_lg, ()),
      _elementwise_numpy(_np_kl), params=(Param("log_target", False, choices=(False, True)),),
      example=_kl_example, reductions=("mean", "batchmean", "sum", "none"), transcendental=True)
_loss("sigmoid_focal_loss",
      "Sigmoid focal loss (torchvision): alpha_t ce (1 - p_t)**gamma with p = sigmoid(x), "
      "ce = BCE with logits, p_t = p t + (1 - p)(1 - t), alpha_t = alpha t + (1 - alpha)(1 - t) "
      "(alpha < 0: no alpha_t);  gradient by the chain rule, 0 for the (1 - p_t)**gamma factor "
      "where 1 - p_t = 0.  Default reduction 'mean' (torchvision's is 'none').",
      _focal_scalar, _elementwise_numpy(_np_focal),
      params=(Param("alpha", 0.25), Param("gamma", 2.0)), example=_logit_example,
      check=_focal_check, transcendental=True)
_loss("softmax_cross_entropy",
      "Softmax cross-entropy with probability (dense or one-hot) targets along axis: "
      "per row -sum_c t'_c log softmax(x)_c with t' = t (1 - label_smoothing) + "
      "label_smoothing / C;  gradient softmax(x) sum(t') - t'.  'mean' divides by the number "
      "of rows.",
      None, _np_dense, params=(Param("axis", -1, kernel=False), Param("label_smoothing", 0.0)),
      family="dense", example=_dense_example, check=_smoothing_check, transcendental=True)
_loss("sparse_softmax_cross_entropy",
      "Softmax cross-entropy with integer labels y along axis (PyTorch's cross_entropy): "
      "per row (1 - eps) w[y] (lse - x_y) + (eps / C) sum_c w_c (lse - x_c) + z_loss lse**2, "
      "lse = logsumexp(x) (max subtracted), eps = label_smoothing, w = weight (ones if None).  "
      "softcap: x <- softcap tanh(x / softcap) first (its derivative enters the gradient).  "
      "Rows with y == ignore_index give 0 loss and 0 gradient.  'mean' divides by "
      "sum w[y_i] over the non-ignored rows; an empty or all-ignored batch gives NaN "
      "('mean') or 0 ('sum'), as PyTorch.  Labels outside [0, C) raise ValueError.  "
      "The z-loss term is not multiplied by w[y].",
      None, _np_sparse,
      params=(Param("axis", -1, kernel=False), Param("weight", None, kernel=False),
              Param("ignore_index", -100, kernel=False), Param("label_smoothing", 0.0),
              Param("z_loss", 0.0), Param("softcap", None, kernel=False)),
      family="sparse", example=_sparse_example, check=_smoothing_check, transcendental=True)
_loss("nll_loss",
      "Negative log-likelihood on log-probabilities with integer labels (class axis last): "
      "per row -w[y] x_y; 0 for y == ignore_index;  gradient -w[y] at y.  'mean' divides by "
      "sum w[y_i] over the non-ignored rows (NaN for an empty or all-ignored batch, 0 for "
      "'sum').",
      None, _np_nll,
      params=(Param("weight", None, kernel=False), Param("ignore_index", -100, kernel=False)),
      family="nll", example=_nll_example)
