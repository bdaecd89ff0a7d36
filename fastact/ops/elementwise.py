"""Elementwise activations: one scalar ``value_and_derivative`` per op.

Each definition returns (f(x), f'(x)); the forward kernel uses only the first
item and the compiler drops the rest.  Branches follow PyTorch's kernels so
that kinks, NaN and infinities give what PyTorch gives (NaN tests are written
``x <= a`` where PyTorch writes them so).  Where PyTorch's formula cancels
(the tails of tanh', gelu, log_sigmoid, tanhshrink, squareplus) an exact
rearrangement is used instead.  The NumPy baselines are what a NumPy user
would write.
"""
import math

import numpy as np

from ..mathlib import (PDF_CUTOFF_F32, PDF_CUTOFF_F64, exp, exp_neg, expm1, fma, is_float32, jitable, lit,
                       normal_pdf, polynomial)
from ..parts import sigmoid_pair, softplus_pair, tanh_parts
from ..registry import (REQUIRED, OpSpec, Param, Scalars, elementwise_example, register, require,
                        require_finite_nonnegative)


def _first(fd):
    """The value part of a value_and_derivative scalar, as its own scalar."""
    @jitable
    def value(x, *p):
        return fd(x, *p)[0]
    value.__name__ = value.__qualname__ = fd.__name__ + "_value"
    return value


# Vector iterations interleaved in the loops of transcendental ops (their
# polynomial exp/log is one long dependency chain per vector; see
# ``cpu.jit.KernelPair``).  Four, except where four chains need more than the
# 32 vector registers and spill: those ops take two for that dtype
# (dtype_interleave, on hosts with 512-bit vectors only).  Measured on an
# AVX-512 machine (AMD Zen 4) at 2**24 elements,
# % of a parallel memcpy in the same run for 1 / 2 / 4 interleaved vectors,
# value_and_derivative: float64 softplus 62 / 64 / 72, tanh 59 / 61 / 69,
# log_sigmoid 73 / 74 / 83; float32 softplus 78 / 87 / 92; but float32
# gelu[tanh] 93 / 94 / 82 (forward_backward 81 / 79 / 67), float32
# tanhshrink 75 / 83 / 75 (backward 90 / 95 / 77), float64 mish 66 / 73 / 62.
# Float64 gelu (exact) spills with four (14 vectors) and with two (one): it
# takes one, 16.6 ms value_and_derivative at 2**24 against 17.4 with two and
# 15.0 with four in the processes where four runs well; a loop that spills
# runs 2-3x slower in processes whose stack lands at some offsets (40 ms).
# The test of the streamed loops checks that none spills.  On a host with
# 256-bit vectors (AMD Zen 3, 16 registers, tiled streaming) four was the
# fastest or within noise of it for every transcendental op and dtype, in
# cache, single thread, ns per element for 1 / 2 / 4 / 8: float64 gelu[none]
# 2.83 / 3.53 / 2.57 / 3.84, mish 2.90 / 2.71 / 2.20 / 3.03; float32
# gelu[tanh] 1.71 / 1.25 / 1.20 / 1.79, tanhshrink 0.87 / 0.99 / 0.71 / 0.75.
INTERLEAVE = 4


def define(name, doc, vad, numpy_vad, numpy_value=None, params=(), domain=(-20.0, 20.0),
           transcendental=False, from_output=None, numpy_from_output=None, variants=None,
           example=None, interleave=None, dtype_interleave=None, check=None):
    """Register an elementwise op (``variants``: choice value -> (vad, numpy_vad,
    numpy_value[, dtype_interleave])).

    interleave: for the CPU kernels (default INTERLEAVE for transcendental ops);
    dtype_interleave: {dtype name: count} where a dtype's kernels do better
    with another count; check: refuses parameter values (``OpSpec.check``)."""
    if variants is None:
        variants = {None: (vad, numpy_vad, numpy_value, dtype_interleave)}
    scalars = {}
    for key, (fd, npfd, npf, *by_dtype) in variants.items():
        scalars[key] = Scalars(
            value=_first(fd), value_and_derivative=fd,
            numpy_value=npf or (lambda x, *p, _f=npfd: _f(x, *p)[0]),
            numpy_value_and_derivative=npfd,
            derivative_from_output=from_output if key is None else None,
            numpy_derivative_from_output=numpy_from_output if key is None else None,
            interleave=dict(by_dtype[0] or {}) if by_dtype else {})
    if interleave is None:
        interleave = INTERLEAVE if transcendental else 0
    return register(OpSpec(name=name, kind="elementwise", doc=doc, params=tuple(params),
                           scalars=scalars, domain=domain, transcendental=transcendental,
                           example=example, interleave=interleave, check=check))


# ------------------------------------------------------------ piecewise-linear

@jitable
def identity_vad(x):
    return x, lit(x, 1.0)


define("identity", "identity(x) = x;  derivative 1.", identity_vad,
       lambda x: (x.copy(), np.ones_like(x)), numpy_value=lambda x: x.copy())


@jitable
def binary_step_vad(x, threshold):
    one, zero = lit(x, 1.0), lit(x, 0.0)
    y = one if x >= threshold else (zero if x < threshold else x)
    return y, zero


define("binary_step",
       "binary_step(x) = 1 if x >= threshold else 0 (NaN stays NaN).\n\n"
       "Its derivative is 0 everywhere, the step included (as in frameworks that "
       "define a gradient for it).",
       binary_step_vad,
       lambda x, t: (np.where(np.isnan(x), x, (x >= t).astype(x.dtype)), np.zeros_like(x)),
       params=[Param("threshold", 0.0)])


@jitable
def threshold_vad(x, threshold, value):
    if x <= threshold:
        return value, lit(x, 0.0)
    return x, lit(x, 1.0)


define("threshold",
       "threshold(x) = value if x <= threshold else x (PyTorch's Threshold);  "
       "derivative 0 where x <= threshold, else 1.",
       threshold_vad,
       lambda x, t, v: (np.where(x <= t, v, x).astype(x.dtype), (~(x <= t)).astype(x.dtype)),
       params=[Param("threshold", REQUIRED), Param("value", REQUIRED)],
       example=lambda pass_name, size, dtype, rng: (
           elementwise_example(pass_name, size, dtype, rng)[0], {"threshold": 0.0, "value": 0.0}))


@jitable
def relu_vad(x):
    if x <= lit(x, 0.0):
        return lit(x, 0.0), lit(x, 0.0)
    return x, lit(x, 1.0)


@jitable
def relu_from_output(y):
    return lit(y, 0.0) if y <= lit(y, 0.0) else lit(y, 1.0)


define("relu", "relu(x) = max(x, 0);  derivative 1 for x > 0, else 0 (0 at x = 0).",
       relu_vad, lambda x: (np.maximum(x, 0), (~(x <= 0)).astype(x.dtype)),
       numpy_value=lambda x: np.maximum(x, 0),
       from_output=relu_from_output, numpy_from_output=lambda y: (y > 0).astype(y.dtype))


@jitable
def hardtanh_vad(x, min_val, max_val):
    one, zero = lit(x, 1.0), lit(x, 0.0)
    y = min_val if x < min_val else (max_val if x > max_val else x)
    d = one if (x > min_val and x < max_val) else zero
    return y, d


def _np_hardtanh(x, lo, hi):
    return np.clip(x, lo, hi), ((x > lo) & (x < hi)).astype(x.dtype)


def _hardtanh_check(op, values):
    lo, hi = values["min_val"], values["max_val"]
    if lo > hi:                                  # (as PyTorch; NaN bounds pass)
        raise ValueError(f"{op}: min_val must be at most max_val = {hi}, got {lo}")


define("hardtanh",
       "hardtanh(x) = clip(x, min_val, max_val);  derivative 1 strictly inside, "
       "0 at and beyond the bounds.  min_val > max_val raises ValueError.",
       hardtanh_vad, _np_hardtanh, numpy_value=lambda x, lo, hi: np.clip(x, lo, hi),
       params=[Param("min_val", -1.0), Param("max_val", 1.0)], check=_hardtanh_check)


@jitable
def relu6_vad(x):
    return hardtanh_vad(x, lit(x, 0.0), lit(x, 6.0))


define("relu6", "relu6(x) = min(max(x, 0), 6);  derivative 1 on (0, 6), else 0.",
       relu6_vad, lambda x: _np_hardtanh(x, 0, 6), numpy_value=lambda x: np.clip(x, 0, 6))


@jitable
def leaky_relu_vad(x, negative_slope):
    if x > lit(x, 0.0):
        return x, lit(x, 1.0)
    return x * negative_slope, negative_slope


define("leaky_relu",
       "leaky_relu(x) = x if x > 0 else negative_slope * x;  derivative negative_slope "
       "at x <= 0.",
       leaky_relu_vad,
       lambda x, a: (np.where(x > 0, x, a * x), np.where(x > 0, 1, a).astype(x.dtype)),
       numpy_value=lambda x, a: np.where(x > 0, x, a * x),
       params=[Param("negative_slope", 0.01)])


@jitable
def hard_sigmoid_vad(x):
    three, six, zero = lit(x, 3.0), lit(x, 6.0), lit(x, 0.0)
    u = x + three
    y = (zero if u <= zero else (six if u >= six else u)) / six
    d = lit(x, 1.0) / six if (x > -three and x < three) else zero
    return y, d


define("hard_sigmoid",
       "hard_sigmoid(x) = relu6(x + 3) / 6;  derivative 1/6 on (-3, 3), else 0.",
       hard_sigmoid_vad,
       lambda x: (np.clip(x + 3, 0, 6) / 6, np.where((x > -3) & (x < 3), 1 / 6, 0).astype(x.dtype)),
       numpy_value=lambda x: np.clip(x + 3, 0, 6) / 6)


@jitable
def hard_swish_vad(x):
    three, six, zero = lit(x, 3.0), lit(x, 6.0), lit(x, 0.0)
    u = x + three
    r6 = zero if u <= zero else (six if u >= six else u)
    y = x * r6 / six
    if x <= -three:
        d = zero
    elif x >= three:
        d = lit(x, 1.0)
    else:
        d = x / three + lit(x, 0.5)
    return y, d


define("hard_swish",
       "hard_swish(x) = x * relu6(x + 3) / 6;  derivative 0 at x <= -3, x/3 + 1/2 on "
       "(-3, 3), 1 at x >= 3.",
       hard_swish_vad,
       lambda x: (x * np.clip(x + 3, 0, 6) / 6,
                  np.where(x <= -3, 0, np.where(x >= 3, 1, x / 3 + 0.5)).astype(x.dtype)),
       numpy_value=lambda x: x * np.clip(x + 3, 0, 6) / 6)


@jitable
def softshrink_vad(x, lambd):
    if x > lambd:
        return x - lambd, lit(x, 1.0)
    if x < -lambd:
        return x + lambd, lit(x, 1.0)
    if x != x:
        return x, lit(x, 0.0)
    return lit(x, 0.0), lit(x, 0.0)


define("softshrink",
       "softshrink(x) = x - lambd if x > lambd, x + lambd if x < -lambd, else 0;  "
       "derivative 0 on [-lambd, lambd], else 1.  lambd must be >= 0 and finite "
       "(ValueError otherwise, as PyTorch).",
       softshrink_vad,
       lambda x, l: (np.where(np.abs(x) <= l, 0, x - np.sign(x) * l).astype(x.dtype),
                     (np.abs(x) > l).astype(x.dtype)),
       params=[Param("lambd", 0.5)],
       check=require_finite_nonnegative("lambd"))


@jitable
def hardshrink_vad(x, lambd):
    if x > lambd or x < -lambd:
        return x, lit(x, 1.0)
    y = x if x != x else lit(x, 0.0)
    return y, lit(x, 0.0)


define("hardshrink",
       "hardshrink(x) = 0 on [-lambd, lambd], else x;  derivative 0 on [-lambd, lambd], "
       "else 1.",
       hardshrink_vad,
       lambda x, l: (np.where(np.abs(x) <= l, 0, x).astype(x.dtype),
                     (np.abs(x) > l).astype(x.dtype)),
       params=[Param("lambd", 0.5)])


@jitable
def softsign_vad(x):
    one = lit(x, 1.0)
    q = one + abs(x)
    # PyTorch differentiates x / (1 + |x|) by autograd: NaN at +-inf
    d = one / (q * q) if q != lit(x, np.inf) else lit(x, np.nan)
    return x / q, d


define("softsign", "softsign(x) = x / (1 + |x|);  derivative 1 / (1 + |x|)**2.",
       softsign_vad,
       lambda x: (x / (1 + np.abs(x)), 1 / (1 + np.abs(x)) ** 2),
       numpy_value=lambda x: x / (1 + np.abs(x)))


@jitable
def squareplus_vad(x, b):
    """With s = sqrt(x**2 + b), w = s + |x| and h = b / (2 s w) = (1 - |x|/s) / 2:
    x >= 0: (x + s) / 2 and 1 - h;  x < 0: b / (2 w) (x + s without cancellation)
    and h.  One square root and two divisions; s = |x| where x**2 overflows."""
    half, one = lit(x, 0.5), lit(x, 1.0)
    a = abs(x)
    x2 = x * x
    s = math.sqrt(x2 + b) if x2 < lit(x, math.inf) else a
    iw = one / (s + a)
    h = (half * b) * iw / s
    if x >= lit(x, 0.0):
        return half * x + half * s, one - h
    return (half * b) * iw, h


def _np_squareplus(x, b):
    s = np.sqrt(x * x + b)
    return 0.5 * (x + s), 0.5 * (1 + x / s)


define("squareplus",
       "squareplus(x) = (x + sqrt(x**2 + b)) / 2;  derivative (1 + x / sqrt(x**2 + b)) / 2.  "
       "b must be >= 0 (ValueError otherwise).",
       squareplus_vad, _np_squareplus,
       numpy_value=lambda x, b: 0.5 * (x + np.sqrt(x * x + b)),
       params=[Param("b", 4.0)], domain=(-1e3, 1e3),
       check=require("b", lambda b: b >= 0.0, ">= 0"))


# ------------------------------------------------------------ exponential family

@jitable
def sigmoid_vad(x):
    s, oms = sigmoid_pair(x)
    return s, s * oms


@jitable
def sigmoid_from_output(y):
    return y * (lit(y, 1.0) - y)


def _np_sigmoid(x):
    s = 1 / (1 + np.exp(-x))
    return s, s * (1 - s)


define("sigmoid", "sigmoid(x) = 1 / (1 + exp(-x));  derivative sigmoid(x) * (1 - sigmoid(x)).",
       sigmoid_vad, _np_sigmoid, numpy_value=lambda x: 1 / (1 + np.exp(-x)),
       transcendental=True, domain=(-80.0, 80.0),
       from_output=sigmoid_from_output, numpy_from_output=lambda y: y * (1 - y))


@jitable
def log_sigmoid_vad(x):
    # log sigmoid(x) = -softplus(-x);  d/dx = sigmoid(-x)
    _, sp_neg = softplus_pair(x)
    _, s_neg = sigmoid_pair(x)
    return -sp_neg, s_neg


def _np_log_sigmoid(x):
    z = np.exp(-np.abs(x))
    return np.minimum(x, 0) - np.log1p(z), np.where(x < 0, 1 / (1 + z), z / (1 + z))


define("log_sigmoid",
       "log_sigmoid(x) = min(x, 0) - log1p(exp(-|x|));  derivative sigmoid(-x).",
       log_sigmoid_vad, _np_log_sigmoid,
       numpy_value=lambda x: np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x))),
       transcendental=True, domain=(-80.0, 80.0))


@jitable
def tanh_vad(x):
    t, _, d = tanh_parts(x)
    return t, d


@jitable
def tanh_from_output(y):
    return lit(y, 1.0) - y * y


def _np_tanh(x):
    t = np.tanh(x)
    return t, 1 - t * t


define("tanh", "tanh(x);  derivative 1 - tanh(x)**2 (computed without cancellation).",
       tanh_vad, _np_tanh, numpy_value=np.tanh, transcendental=True, domain=(-40.0, 40.0),
       from_output=tanh_from_output, numpy_from_output=lambda y: 1 - y * y)


# (x - tanh x) / x**3 = P(x**2) for |x| < 1/2: least-squares Chebyshev fits
# on x**2 in [0, 1/4], relative error 1.1e-7 (float32, degree 4) and 6.7e-15
# (float64, degree 8).
tanhshrink_poly = polynomial("tanhshrink_poly", {
    np.float32: (0.3333333134651184, -0.1333322376012802, 0.05393315851688385,
                 -0.02146870642900467, 0.006939011160284281),
    np.float64: (0.3333333333333315, -0.13333333333215497, 0.053968253841084016,
                 -0.02186948326164869, 0.008863126002610116, -0.003590845844967204,
                 0.0014469384699128175, -0.0005533804525922573, 0.00015395549406255682),
})


@jitable
def tanhshrink_vad(x):
    t, _, _ = tanh_parts(x)
    if abs(x) < lit(x, 0.5):
        # x - tanh(x) cancels near 0: x**3 P(x**2), P ~ 1/3 - 2x**2/15 + ...
        x2 = x * x
        y = x2 * x * tanhshrink_poly(x2)
    else:
        y = x - t
    return y, t * t


def _np_tanhshrink(x):
    t = np.tanh(x)
    return x - t, t * t


define("tanhshrink", "tanhshrink(x) = x - tanh(x);  derivative tanh(x)**2.",
       tanhshrink_vad, _np_tanhshrink, numpy_value=lambda x: x - np.tanh(x),
       transcendental=True, dtype_interleave={"float32": 2})


@jitable
def elu_vad(x, alpha):
    if x > lit(x, 0.0):
        return x, lit(x, 1.0)
    return alpha * expm1(x), alpha * exp(x)


@jitable
def elu_from_output(y, alpha):
    return y + alpha if y <= lit(y, 0.0) else lit(y, 1.0)


define("elu",
       "elu(x) = x if x > 0 else alpha * expm1(x);  derivative alpha * exp(x) at x <= 0.",
       elu_vad,
       lambda x, a: (np.where(x > 0, x, a * np.expm1(x)), np.where(x > 0, 1, a * np.exp(x))),
       numpy_value=lambda x, a: np.where(x > 0, x, a * np.expm1(x)),
       params=[Param("alpha", 1.0)], transcendental=True, domain=(-80.0, 80.0),
       from_output=elu_from_output,
       numpy_from_output=lambda y, a: np.where(y > 0, 1, y + a).astype(y.dtype))

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


@jitable
def selu_vad(x):
    scale = lit(x, SELU_SCALE)
    if x > lit(x, 0.0):
        return scale * x, scale
    sa = lit(x, SELU_ALPHA * SELU_SCALE)
    return sa * expm1(x), sa * exp(x)


define("selu",
       "selu(x) = scale * (x if x > 0 else alpha * expm1(x)), alpha = 1.6732632423543772, "
       "scale = 1.0507009873554805;  derivative scale (x > 0) or scale * alpha * exp(x).",
       selu_vad,
       lambda x: (SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(x)),
                  SELU_SCALE * np.where(x > 0, 1, SELU_ALPHA * np.exp(x))),
       numpy_value=lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(x)),
       transcendental=True, domain=(-80.0, 80.0))


@jitable
def celu_vad(x, alpha):
    if x > lit(x, 0.0):
        return x, lit(x, 1.0)
    u = x / alpha
    return alpha * expm1(u), exp(u)


define("celu",
       "celu(x) = max(0, x) + min(0, alpha * expm1(x / alpha));  derivative exp(x / alpha) "
       "at x <= 0.  alpha = 0 raises ValueError (as PyTorch).",
       celu_vad,
       lambda x, a: (np.where(x > 0, x, a * np.expm1(x / a)), np.where(x > 0, 1, np.exp(x / a))),
       numpy_value=lambda x, a: np.where(x > 0, x, a * np.expm1(x / a)),
       params=[Param("alpha", 1.0)], transcendental=True, domain=(-80.0, 80.0),
       check=require("alpha", lambda alpha: alpha != 0.0, "nonzero"))


@jitable
def softplus_vad(x, beta, threshold):
    bx = beta * x
    if bx > threshold:
        return x, lit(x, 1.0)
    sp, _ = softplus_pair(bx)
    s, _ = sigmoid_pair(bx)
    # 1/beta is loop-invariant: one division per call, a multiply per element
    # (float64 value_and_derivative 3% faster; at most an ulp from sp / beta)
    return sp * (lit(x, 1.0) / beta), s


def _np_softplus(x, beta, threshold):
    bx = beta * x
    z = np.exp(bx)
    return (np.where(bx > threshold, x, np.log1p(z) / beta),
            np.where(bx > threshold, 1, z / (z + 1)))


define("softplus",
       "softplus(x) = x if beta * x > threshold else log1p(exp(beta * x)) / beta;  "
       "derivative sigmoid(beta * x) (1 above the threshold).",
       softplus_vad, _np_softplus,
       numpy_value=lambda x, b, t: np.where(b * x > t, x, np.log1p(np.exp(b * x)) / b),
       params=[Param("beta", 1.0), Param("threshold", 20.0)], transcendental=True,
       domain=(-80.0, 40.0))


@jitable
def silu_vad(x):
    s, oms = sigmoid_pair(x)
    return x * s, s * (lit(x, 1.0) + x * oms)


def _np_silu(x):
    s = 1 / (1 + np.exp(-x))
    return x * s, s * (1 + x * (1 - s))


define("silu", "silu(x) = x * sigmoid(x);  derivative sigmoid(x) * (1 + x * (1 - sigmoid(x))).",
       silu_vad, _np_silu, numpy_value=lambda x: x / (1 + np.exp(-x)),
       transcendental=True, domain=(-80.0, 80.0))


@jitable
def swish_vad(x, beta):
    s, oms = sigmoid_pair(beta * x)
    y = x * s
    # s + y (1 - s) beta, not s (1 + (beta x)(1 - s)): beta x may overflow to
    # +-inf where y does not, and inf * 0 would turn the limits 1 and 0 into
    # NaN ((1 - s) beta first: exact for beta = 1, as in the constant kernel)
    return y, s + y * (oms * beta)


def _np_swish(x, beta):
    s = 1 / (1 + np.exp(-beta * x))
    return x * s, s * (1 + beta * x * (1 - s))


define("swish",
       "swish(x) = x * sigmoid(beta * x);  derivative s + beta * x * s * (1 - s), "
       "s = sigmoid(beta * x).",
       swish_vad, _np_swish, numpy_value=lambda x, b: x / (1 + np.exp(-b * x)),
       params=[Param("beta", 1.0)], transcendental=True, domain=(-80.0, 80.0))


@jitable
def mish_vad(x):
    one, two, cap = lit(x, 1.0), lit(x, 2.0), lit(x, 20.0)
    # tanh(softplus(x)) = n / (n + 2) with n = e (e + 2), e = exp(x)
    e = exp(x if x < cap else cap)
    n = e * (e + two)
    t = n / (n + two)
    sig = e / (one + e)
    # 1 - t**2 = (1 - t)(1 + t) = 2 (1 + t) / (n + 2); 0 past the cap as in PyTorch
    omt2 = two * (one + t) / (n + two) if x < cap else lit(x, 0.0)
    return x * t, t + x * sig * omt2


def _np_mish(x):
    tsp = np.tanh(np.log1p(np.exp(x)))
    s = 1 / (1 + np.exp(-x))
    return x * tsp, tsp + x * s * (1 - tsp * tsp)


define("mish", "mish(x) = x * tanh(softplus(x));  derivative t + x * sigmoid(x) * (1 - t**2), "
       "t = tanh(softplus(x)).",
       mish_vad, _np_mish, numpy_value=lambda x: x * np.tanh(np.log1p(np.exp(x))),
       transcendental=True, domain=(-80.0, 80.0), dtype_interleave={"float64": 2})


# ------------------------------------------------------------ gelu

SQRT_2_OVER_PI = 0.7978845608028654
GELU_C = 0.044715


# float64 Phi(-t) = S(t) pdf(t), t = |x| <= PDF_CUTOFF: S(t) = sqrt(pi/2) erfcx(t/sqrt 2)
# = P(t)/Q(t), degrees 9 and 10, a weighted rational fit on [0, 38.7] (beyond,
# pdf is 0): relative error 1.1e-15 with rounded coefficients, smaller still
# near gelu's zero of the derivative at x = -0.7518, where Phi(x) + x pdf(x)
# cancels.  P(0) is set so that P(0)/Q(0) pdf(0) rounds to exactly 1/2.
_S_P = (569261.4260076182, 852297.4431098864, 632558.4738530281, 297863.02170683094, 96944.77495627319, 22487.678040111623, 3709.9386141294717, 419.9507648243597, 29.66951775932221, 0.999999999986351)
_S_Q = (454204.90287210135, 1042438.0505117665, 1109351.4147526128, 722376.6738200224, 319521.02274753724, 100595.3629723889, 22905.629254011077, 3739.6081193041005, 420.95076506219914, 29.669517756632132, 1.0)
# float32 S(t) = w R(u), w = 1/(1 + t/3) in [0.17, 1] for t <= PDF_CUTOFF_F32 and
# u = 1 - w = (t/3) w: R(u) = C0 + u Q(u), C0 = sqrt(pi/2) rounded to float32
# (so that Phi(0) = C0 pdf(0) evaluates to exactly 1/2), Q of degree 7 a
# relative-minimax fit (Lawson) of (S(t) (1 + t/3) - C0)/u on 800 Chebyshev
# nodes in u: 7.8e-8 in exact arithmetic, 1.0e-7 with the coefficients rounded
# to float32.  Near x = 0, where u is small, R is C0 plus a small correction,
# which keeps the rounding of the sum below that of mathlib's erfcx form
# (mean error of gelu 0.7-0.8 ulp against its 1.0-1.2 for |x| < 5).  Fitted
# to gelu's range rather than erfcx's half-line, it takes two degrees fewer
# and folds the scalings (x/sqrt 2, sqrt(pi/2)) into w and R.
_GELU_C0 = float(np.float32(np.sqrt(np.pi / 2)))
_S_Q32 = (-1.7466935754038364, 0.8934245610184284, 0.17142111620736938, -0.21207380904514472,
          -0.10064534172708667, 0.003938550548801656, 0.12594012815055486, -0.05535059999931524)
# (each entry only lets the other dtype's branch type)
_s_num = polynomial("gelu_s_num", {np.float64: _S_P, np.float32: _S_P})
_s_den = polynomial("gelu_s_den", {np.float64: _S_Q, np.float32: _S_Q})
_s_q32 = polynomial("gelu_s_q32", {np.float32: _S_Q32, np.float64: _S_Q32})


@jitable
def gelu_erf_vad(x):
    one = lit(x, 1.0)
    # Phi(x) = q (x < 0) or 1 - q, q = Phi(-|x|) = S(|x|) pdf(x), S the Mills
    # ratio sqrt(pi/2) erfcx(|x|/sqrt 2): the density serves both Phi and the
    # derivative.  (erfc(|x|/sqrt 2)/2 directly would take exp(-x**2/2), whose
    # rounding of x**2 costs ~x**2 ulps; normal_pdf takes x**2 exactly.)
    pdf = normal_pdf(x)
    ax = abs(x)
    if is_float32(x):
        t = lit(x, PDF_CUTOFF_F32) if ax > lit(x, PDF_CUTOFF_F32) else ax   # (inf * 0)
        s = t * lit(x, 1.0 / 3.0)
        w = one / (one + s)
        q = (w * (lit(x, _GELU_C0) + (s * w) * _s_q32(s * w))) * pdf
    else:
        t = lit(x, PDF_CUTOFF_F64) if ax > lit(x, PDF_CUTOFF_F64) else ax
        q = _s_num(t) / _s_den(t) * pdf
    cdf = q if x < lit(x, 0.0) else one - q
    return x * cdf, cdf + x * pdf


GELU_A = 2.0 * SQRT_2_OVER_PI
GELU_B = 2.0 * SQRT_2_OVER_PI * GELU_C
# float32 tail correction (gelu_tanh_vad): b x**2 is rounded to a multiple of
# 2**-18 by an FMA that adds GELU_P_SHIFT (the sum lies in [32, 64), where
# float32's spacing is 2**-18, for |x| < 21), and a is taken on that grid
# (GELU_A_GRID), so that their sum m is exact; the correction adds back what
# the grid and the rounding of b to float32 drop.
GELU_P_SHIFT = 32.0
GELU_A_GRID = round(GELU_A * 2.0 ** 18) / 2.0 ** 18
GELU_A_GRID_LO = GELU_A - GELU_A_GRID
GELU_B_LO32 = GELU_B - float(np.float32(GELU_B))
# beyond, exp(-|v|) is 0 in float32 and the correction is left out
GELU_TAIL_END = 16.0


@jitable
def gelu_tanh_vad(x):
    one = lit(x, 1.0)
    # (1 + tanh u) / 2 = sigmoid(v), v = 2u = x (a + b x**2), odd in x: with
    # t = |v| = |x| m, m = a + b x**2, and e = exp(-t) in [0, 1], sigmoid(v)
    # is 1/(1 + e) for x >= 0 and e/(1 + e) for x < 0: one exp, one division.
    # In the left tail sigmoid(v) ~ exp(-t), and an absolute error of t is a
    # relative error of the result: a float32 rounding of t (up to 2**-24 t,
    # t <= 104) would cost up to 6e-6.  float32 passes exp the error d of t
    # as well (to first order: the roundings of x*x, of b*x2 to the grid, of
    # |x|*m, and of the constants); float64 needs no correction.
    a = lit(x, GELU_A)
    b = lit(x, GELU_B)
    ax = abs(x)
    x2 = ax * ax
    if is_float32(x):
        shift = lit(x, GELU_P_SHIFT)
        p = fma(b, x2, shift) - shift         # exact (Sterbenz)
        m = lit(x, GELU_A_GRID) + p           # exact: both on the grid of 2**-18
        t = ax * m
        e2 = fma(ax, ax, -x2)
        c = fma(lit(x, GELU_B_LO32), x2, lit(x, GELU_A_GRID_LO))
        c = fma(b, e2, c) + fma(b, x2, -p)
        d = fma(-ax, c, fma(-ax, m, t))       # -(exact t - t)
        d = d if ax < lit(x, GELU_TAIL_END) else lit(x, 0.0)   # (NaN where x*x overflows)
    else:
        t = ax * (a + b * x2)
        d = lit(x, -0.0)
    e = exp_neg(t, d)
    r = one / (one + e)
    er = e * r
    s, oms = (r, er) if x >= lit(x, 0.0) else (er, r)
    dv = a + lit(x, 3.0 * GELU_B) * x2
    return x * s, s + x * s * oms * dv


def _np_erf(x):
    try:
        from scipy.special import erf
    except ImportError:
        erf = np.vectorize(math.erf, otypes=[x.dtype])
    return erf(x)


def _np_gelu_erf(x):
    cdf = 0.5 * (1 + _np_erf(x / np.sqrt(2)))
    return x * cdf, cdf + x * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)


def _np_gelu_tanh(x):
    k = np.sqrt(2 / np.pi)
    t = np.tanh(k * (x + 0.044715 * x ** 3))
    return (0.5 * x * (1 + t),
            0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x))


define("gelu",
       "gelu(x) = x * Phi(x) = x/2 (1 + erf(x / sqrt 2))  (approximate='none');\n"
       "x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x**3)))  (approximate='tanh').\n"
       "Derivative Phi(x) + x phi(x), resp. the derivative of the tanh form.",
       None, None,
       params=[Param("approximate", "none", choices=("none", "tanh"))],
       transcendental=True, domain=(-30.0, 30.0),
       variants={
           "none": (gelu_erf_vad, _np_gelu_erf,
                    lambda x: 0.5 * x * (1 + _np_erf(x / np.sqrt(2))),
                    {"float64": 1}),
           "tanh": (gelu_tanh_vad, _np_gelu_tanh,
                    lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi)
                                                     * (x + 0.044715 * x ** 3))),
                    {"float32": 2}),
       })
