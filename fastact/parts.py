"""Scalar building blocks shared by activation and loss definitions.

Target-free compositions of ``fastact.mathlib`` (one definition serves the
CPU and CUDA kernels), each to full relative accuracy where its parts are
small.  ``helper`` has LLVM inline them into the kernel loop.
"""
import math

from .mathlib import exp_neg_abs, expm1_neg_abs, helper, lit, log1p_unit


@helper
def sigmoid_pair(x):
    """(sigmoid x, sigmoid(-x)) = (sigmoid x, 1 - sigmoid x), both to full relative
    accuracy down to the underflow threshold: with e = exp(-|x|) in (0, 1] and
    r = 1/(1 + e), they are (r, e r) for x >= 0 and (e r, r) for x < 0."""
    one = lit(x, 1.0)
    e = exp_neg_abs(x)
    r = one / (one + e)
    er = e * r
    if x >= lit(x, 0.0):
        return r, er
    return er, r


@helper
def softplus_pair(x):
    """(softplus x, softplus(-x)) = (log1p(e^x), log1p(e^-x)), stable for every x:
    max(+-x, 0) + log1p(exp(-|x|)), the log1p of an argument in (0, 1]."""
    zero = lit(x, 0.0)
    l = log1p_unit(exp_neg_abs(x))
    return (x if x > zero else zero) + l, (-x if x < zero else zero) + l


@helper
def tanh_parts(u):
    """(tanh u, 1 + tanh u, 1 - tanh(u)**2), each without cancellation or overflow.

    With e = exp(-2|u|) in (0, 1] and q = expm1(-2|u|) = e - 1:
    |t| = -q / (1 + e),  1 - |t| = 2e / (1 + e),  1 - t**2 = (1 - |t|)(1 + |t|).
    (exp_neg_abs and expm1_neg_abs of the same argument share their range
    reduction.)
    """
    one, two = lit(u, 1.0), lit(u, 2.0)
    e = exp_neg_abs(two * u)
    q = expm1_neg_abs(two * u)
    t_abs = -q / (one + e)
    omt = two * e / (one + e)
    t = math.copysign(t_abs, u)
    one_plus_t = omt if u < lit(u, 0.0) else one + t_abs
    return t, one_plus_t, omt * (one + t_abs)
