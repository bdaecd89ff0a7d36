"""Independent float64 references of every loss (plain NumPy / math, no fastact code).

ref(name, pred, target, reduction, **opts) -> (loss, grad) where the gradient is
d loss / d pred (for "none": of the sum of the per-sample losses).  Class axis last
for the classification losses (tests move axes themselves).
"""
import math

import numpy as np


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _reduce(v, d, reduction, batch=None):
    if reduction == "none":
        return v, d
    s = v.sum()
    if reduction == "sum":
        return s, d
    n = v.size if reduction == "mean" else batch
    with np.errstate(all="ignore"):
        return s / n, d / n


def _sgn(z):
    return np.where(z > 0, 1.0, np.where(z < 0, -1.0, 0.0))


def _elem(name, p, t, o):
    z = p - t
    a = np.abs(z)
    if name in ("mse", "l2"):
        return z ** 2, 2 * z
    if name in ("mae", "l1"):
        return a, _sgn(z)
    if name == "huber":
        d = o.get("delta", 1.0)
        return np.where(a <= d, 0.5 * z * z, d * (a - 0.5 * d)), np.clip(z, -d, d)
    if name == "smooth_l1":
        b = o.get("beta", 1.0)
        if b == 0:
            return a, _sgn(z)
        return np.where(a < b, 0.5 * z * z / b, a - 0.5 * b), np.where(a < b, z / b, _sgn(z))
    if name == "pseudo_huber":
        d = o.get("delta", 1.0)
        r = np.hypot(1.0, z / d)
        return d * d * (z / d) ** 2 / (r + 1), z / r
    if name == "log_cosh":
        # log cosh z = |z| + log((1 + exp(-2|z|)) / 2), evaluated via logaddexp for large |z|
        # and the float64 series-free identity log1p(sinh(z/2)**2 * 2) for small |z|
        small = a < 0.5
        v = np.where(small, np.log1p(2 * np.sinh(a / 2) ** 2),
                     a + np.log1p(np.exp(-2 * a)) - math.log(2))
        return v, np.tanh(z)
    if name == "binary_cross_entropy":
        with np.errstate(divide="ignore"):
            lp = np.maximum(np.log(p), -100)
            l1p = np.maximum(np.log(1 - p), -100)
        w = _f64(o["weight"]) if o.get("weight") is not None else 1.0
        return (-w * (t * lp + (1 - t) * l1p),
                w * (p - t) / np.maximum(p * (1 - p), 1e-12))
    if name == "sigmoid_binary_cross_entropy":
        w = _f64(o["weight"]) if o.get("weight") is not None else 1.0
        pw = _f64(o["pos_weight"]) if o.get("pos_weight") is not None else 1.0
        sp_pos = np.logaddexp(0, p)        # log(1 + e^x)
        sp_neg = np.logaddexp(0, -p)       # log(1 + e^-x)
        with np.errstate(invalid="ignore"):
            v = np.where(t == 1, 0, (1 - t) * sp_pos) + np.where(pw * t == 0, 0, pw * t * sp_neg)
        sig = 0.5 * (1 + np.tanh(p / 2))
        return w * v, w * (sig * (1 + t * (pw - 1)) - pw * t)
    if name in ("hinge", "squared_hinge"):
        y = np.where(t == 0, -1.0, t)
        m = 1 - y * p
        if name == "hinge":
            return np.maximum(m, 0), np.where(m > 0, -y, 0.0)
        return np.maximum(m, 0) ** 2, np.where(m > 0, -2 * y * m, 0.0)
    if name == "kl_divergence":
        if o.get("log_target", False):
            return np.exp(t) * (t - p), -np.exp(t)
        with np.errstate(all="ignore"):
            xlogy = np.where(t == 0, 0.0, t * np.log(t))
        return xlogy - t * p, -t
    if name == "sigmoid_focal_loss":
        alpha, gamma = o.get("alpha", 0.25), o.get("gamma", 2.0)
        s = 0.5 * (1 + np.tanh(p / 2))
        ce = np.logaddexp(0, p) - p * t
        q = s * (1 - t) + (1 - s) * t
        f = q ** gamma
        # d/dx [ce q^g] = (s - t) q^g + ce g q^(g-1) dq/dx,  dq/dx = s(1-s)(1 - 2t)
        with np.errstate(all="ignore"):
            dq = np.where(q > 0, gamma * q ** (gamma - 1), 0.0) if gamma else 0.0
        d = (s - t) * f + ce * dq * s * (1 - s) * (1 - 2 * t)
        at = alpha * t + (1 - alpha) * (1 - t) if alpha >= 0 else 1.0
        return at * ce * f, at * d
    raise KeyError(name)


def _lse(x):
    m = x.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))[..., 0]


def ref(name, pred, target, reduction=None, **o):
    p = _f64(pred)
    if name in ("sparse_softmax_cross_entropy", "nll_loss"):
        return _ref_labels(name, p, np.asarray(target), reduction or "mean", o)
    t = _f64(target)
    if name == "softmax_cross_entropy":
        eps = o.get("label_smoothing", 0.0)
        C = p.shape[-1]
        ts = t * (1 - eps) + eps / C
        lse = _lse(p)
        logp = p - lse[..., None]
        v = -(ts * logp).sum(axis=-1)
        d = np.exp(logp) * ts.sum(axis=-1, keepdims=True) - ts
        return _rows_reduce(v, d, reduction or "mean", v.size)
    if name == "rmse":
        z = p - t
        r = reduction or "mean"
        if r == "none":
            return np.abs(z), _sgn(z)
        ss = (z * z).sum()
        n = z.size if r == "mean" else 1
        val = math.sqrt(ss / n) if z.size else float("nan") if r == "mean" else 0.0
        return val, (z / (n * val) if val else np.zeros_like(z))
    default = "sum" if name in ("l1", "l2") else "mean"
    v, d = _elem(name, p, t, o)
    v = np.broadcast_to(v, p.shape)
    d = np.broadcast_to(d, p.shape)
    return _reduce(v, d, reduction or default, batch=p.shape[0] if p.ndim else 1)


def _rows_reduce(v, d, reduction, divisor):
    if reduction == "none":
        return v, d
    if reduction == "sum":
        return v.sum(), d
    with np.errstate(all="ignore"):
        return v.sum() / divisor, d / divisor


def _ref_labels(name, x, y, reduction, o):
    C = x.shape[-1]
    ign = o.get("ignore_index", -100)
    w = _f64(o["weight"]) if o.get("weight") is not None else np.ones(C)
    xs = x.reshape(-1, C)
    ys = y.reshape(-1)
    v = np.zeros(len(ys))
    d = np.zeros_like(xs)
    divisor = 0.0
    for i, yi in enumerate(ys):
        if yi == ign:
            continue
        divisor += w[yi]
        row = xs[i]
        if name == "nll_loss":
            v[i] = -w[yi] * row[yi]
            d[i, yi] = -w[yi]
            continue
        cap = o.get("softcap")
        if cap is not None:
            th = np.tanh(row / cap)
            row = cap * th
        eps, zl = o.get("label_smoothing", 0.0), o.get("z_loss", 0.0)
        lse = _lse(row)
        logp = row - lse
        prob = np.exp(logp)
        v[i] = -(1 - eps) * w[yi] * logp[yi] + zl * lse * lse
        if eps:
            v[i] -= (eps / C) * (w * logp).sum()
        # gradient in the capped logits
        onehot = np.zeros(C)
        onehot[yi] = 1
        gi = ((1 - eps) * w[yi] * (prob - onehot) + (eps / C) * (w.sum() * prob - w)
              + 2 * zl * lse * prob)
        if cap is not None:
            gi = gi * (1 - th * th)
        d[i] = gi
    lv, ld = _rows_reduce(v, d, reduction, divisor)
    if reduction == "none":
        lv = lv.reshape(y.shape)
    return lv, ld.reshape(x.shape)
