"""Scalar definitions of the elementwise losses: one function per loss.

Each ``*_lg(p, t, *params)`` returns (loss term, d loss term / d p) for one
element, in the type of ``p`` (every constant goes through ``lit``).  The
kernel templates in ``fastact.losses.kernels`` build the loops from these;
the CUDA lowering can build its loops from the same functions.
"""
import math

import numpy as np

from ..mathlib import (bernoulli_log, exp, exp_neg_abs, expm1_neg_abs, helper, lit, log, log1m_unit,
                       log1p_unit, pow_unit)
from ..parts import sigmoid_pair, softplus_pair

LOG2 = math.log(2.0)


@helper
def sign0(z):
    """sign(z) with sign(0) = 0 and sign(NaN) = 0 (PyTorch's sgn in l1 backward)."""
    one = lit(z, 1.0)
    return one if z > lit(z, 0.0) else (-one if z < lit(z, 0.0) else lit(z, 0.0))


# ------------------------------------------------------------ regression

@helper
def mse_lg(p, t):
    z = p - t
    return z * z, lit(p, 2.0) * z


@helper
def rmse_grad_lg(p, t):
    """(z**2, z): the second pass of rmse scales z by 1 / (n * rmse)."""
    z = p - t
    return z * z, z


@helper
def mae_lg(p, t):
    z = p - t
    return abs(z), sign0(z)


@helper
def huber_lg(p, t, delta):
    half = lit(p, 0.5)
    z = p - t
    a = abs(z)
    if a <= delta:
        return half * z * z, z
    if a > delta:
        return delta * (a - half * delta), delta * sign0(z)
    return z, z   # NaN


@helper
def smooth_l1_lg(p, t, beta):
    half = lit(p, 0.5)
    z = p - t
    a = abs(z)
    if a < beta:
        return half * z * z / beta, z / beta
    if a >= beta:
        return a - half * beta, sign0(z)
    return z, z   # NaN


@helper
def pseudo_huber_lg(p, t, delta):
    one = lit(p, 1.0)
    z = p - t
    u = z / delta
    u2 = u * u
    if u2 == lit(p, np.inf):
        a = abs(z)
        return delta * a - delta * delta, delta * sign0(z)
    r = math.sqrt(one + u2)
    # delta**2 (r - 1) = delta**2 u**2 / (r + 1): no cancellation near 0
    return delta * delta * u2 / (r + one), z / r


@helper
def log_cosh_lg(p, t):
    """log cosh z and tanh z from e = exp(-|z|) and q = e - 1 (one shared
    range reduction), one log1p of an argument in [0, 1] and one division.

    |z| < 1: log cosh = log1p(q**2 / (2e))  (cosh - 1 = (1 - e)**2 / (2e));
    else: |z| + log1p(e**2) - log 2.  tanh|z| = (1 - e**2) / (1 + e**2)
    = -q (2 + q) / (1 + e**2), without cancellation.  1/(2e) and
    1/(1 + e**2) come from one reciprocal of 2e (1 + e**2).  |z| is capped at
    20 inside (log1p(e**2) is below 1e-17 of the loss there); beyond, tanh is
    exactly 1.
    """
    one, two = lit(p, 1.0), lit(p, 2.0)
    z = p - t
    a = abs(z)
    big = a > lit(p, 20.0)
    ac = lit(p, 20.0) if big else a
    e = exp_neg_abs(ac)
    q = expm1_neg_abs(ac)
    e2 = e * e
    r = one / (two * e * (one + e2))
    small = a < one
    l = log1p_unit((q * q) * ((one + e2) * r) if small else e2)
    v = l if small else a + l - lit(p, LOG2)
    # (a product of three roundings: 1 - 1 ulp at the cap itself)
    ta = one if big else -q * (two + q) * ((two * e) * r)
    return v, (-ta if z < lit(p, 0.0) else ta)


# ------------------------------------------------------------ binary classification

@helper
def _bce_term(p, t, binary):
    """Binary cross-entropy's term and gradient.  binary (a constant): every t
    is 0 or 1, and the term takes one log instead of two.  Its loss term is
    NaN where p or t lies outside [0, 1], so that a NaN sum flags invalid
    inputs (``nan_if_invalid``: the range check may follow the kernel); the
    gradient there is unspecified."""
    one, zero = lit(p, 1.0), lit(p, 0.0)
    lo = lit(p, -100.0)
    u = one - p
    if binary:
        # -log p (t = 1) or -log(1 - p) (t = 0), the log clamped at -100
        lw = bernoulli_log(p, t)
        v = -(lw if lw > lo else lo)
    else:
        # the logs clamped at -100 (PyTorch); a NaN p makes them -100 here, and
        # the term NaN below
        lp = log(p)
        lp = lp if lp > lo else lo
        l1p = log1m_unit(p)          # log(1 - p): any p outside [0, 1] gives a NaN term
        l1p = l1p if l1p > lo else lo
        v = (t - one) * l1p - t * lp
    den = u * p
    # p and t lie in [0, 1] exactly where p (1 - p) >= 0 and t (1 - t) >= 0
    # (false for NaN, inf and any value outside)
    inside = (den >= zero) & ((one - t) * t >= zero)
    v = v if inside else lit(p, math.nan)
    eps = lit(p, 1e-12)
    den = den if den > eps else eps          # (a NaN p or t: a NaN numerator)
    return v, (p - t) / den


@helper
def bce_lg(p, t):
    return _bce_term(p, t, False)


@helper
def bce_binary_lg(p, t):
    """``bce_lg`` for targets that are 0 or 1 (the per-block variant of its CPU kernels)."""
    return _bce_term(p, t, True)


@helper
def sigmoid_bce_pw_lg(x, t, pw):
    """BCE with logits as (1 - t) softplus(x) + pw t softplus(-x): finite at x = +-inf."""
    one, zero = lit(x, 1.0), lit(x, 0.0)
    spx, spn = softplus_pair(x)
    s, sn = sigmoid_pair(x)
    omt = one - t
    a = omt * spx if omt != zero else zero
    pt = pw * t
    b = pt * spn if pt != zero else zero
    # d/dx: (1 - t) sigmoid(x) - pw t sigmoid(-x)  (= sigmoid(x)(1 + t(pw - 1)) - pw t)
    return a + b, omt * s - pt * sn


@helper
def sigmoid_bce_lg(x, t):
    return sigmoid_bce_pw_lg(x, t, lit(x, 1.0))


@helper
def _hinge_label(t):
    return -lit(t, 1.0) if t == lit(t, 0.0) else t


@helper
def hinge_lg(p, t):
    y = _hinge_label(t)
    m = lit(p, 1.0) - y * p
    if m > lit(p, 0.0):
        return m, -y
    if m <= lit(p, 0.0):
        return lit(p, 0.0), lit(p, 0.0)
    return m, m   # NaN


@helper
def squared_hinge_lg(p, t):
    y = _hinge_label(t)
    m = lit(p, 1.0) - y * p
    if m > lit(p, 0.0):
        return m * m, lit(p, -2.0) * y * m
    if m <= lit(p, 0.0):
        return lit(p, 0.0), lit(p, 0.0)
    return m, m


@helper
def _focal_parts(x, t):
    """(ce, d ce/dx, q, dq/dx) with q = 1 - p_t, p = sigmoid(x)."""
    one = lit(x, 1.0)
    s, sn = sigmoid_pair(x)
    ce, g_ce = sigmoid_bce_lg(x, t)
    q = s * (one - t) + sn * t                 # 1 - p_t without cancellation
    return ce, g_ce, q, -s * sn * (t + t - one)


@helper
def _focal_finish(ce, g_ce, qg, dqg, t, alpha):
    """alpha_t ce q**gamma and its derivative, from q**gamma and its derivative."""
    one, zero = lit(t, 1.0), lit(t, 0.0)
    v = ce * qg
    d = g_ce * qg + ce * dqg
    if alpha >= zero:
        at = alpha * t + (one - alpha) * (one - t)
        v = at * v
        d = at * d
    return v, d


@helper
def focal_lg(x, t, alpha, gamma):
    """torchvision's sigmoid_focal_loss term and its derivative."""
    one, zero = lit(x, 1.0), lit(x, 0.0)
    ce, g_ce, q, dq = _focal_parts(x, t)
    qg = pow_unit(q, gamma) if gamma != zero else one
    # d q**gamma / dx = gamma q**(gamma-1) dq/dx (0 at q = 0)
    dqg = gamma * (qg / q) * dq if gamma != zero and q > zero else zero
    return _focal_finish(ce, g_ce, qg, dqg, t, alpha)


@helper
def focal_gamma2_lg(x, t, alpha):
    """focal_lg for gamma = 2 (the default): q * q in place of a pow per element."""
    ce, g_ce, q, dq = _focal_parts(x, t)
    return _focal_finish(ce, g_ce, q * q, lit(x, 2.0) * q * dq, t, alpha)


# ------------------------------------------------------------ kl divergence

@helper
def kl_lg(x, t):
    """xlogy(t, t) - t * x (PyTorch's form); d/dx = -t."""
    zero = lit(x, 0.0)
    xl = t * log(t) if t != zero else (t if t != t else zero)
    return xl - t * x, -t


@helper
def kl_log_target_lg(x, t):
    e = exp(t)
    return e * (t - x), -e
