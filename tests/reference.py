"""Independent float64 references: (f(x), f'(x)) for each activation, element by element.

Written from the textbook formulas with Python's ``math`` (libm) in float64;
nothing here shares code with fastact's kernels.  Only finite inputs are fed
to these (special values are compared with PyTorch).
"""
import math

import mpmath
import numpy as np


def _sig(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _phi(x):
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _Phi(x):
    return 0.5 * math.erfc(-x / math.sqrt(2))


def _tanh_d(x):
    # sech^2 without cancellation
    e = math.exp(-2 * abs(x))
    return 4 * e / (1 + e) ** 2


def _softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


SELU_A = 1.6732632423543772848170429916717
SELU_S = 1.0507009873554804934193349852946
K = math.sqrt(2 / math.pi)


def _gelu_tanh(x):
    u = K * (x + 0.044715 * x ** 3)
    # 1 + tanh(u) = 2 sigmoid(2u), exact in both tails
    one_plus_t = 2 * _sig(2 * u)
    du = K * (1 + 3 * 0.044715 * x * x)
    return 0.5 * x * one_plus_t, 0.5 * one_plus_t + 0.5 * x * _tanh_d(u) * du


def _tanhshrink(x):
    # x - tanh(x) cancels for small x: its series below 1e-4, else 50 digits
    if abs(x) < 1e-4:
        y = x ** 3 / 3 - 2 * x ** 5 / 15
    else:
        with mpmath.workdps(50):
            y = float(mpmath.mpf(x) - mpmath.tanh(mpmath.mpf(x)))
    return y, math.tanh(x) ** 2


def _squareplus(x, b):
    s = math.sqrt(x * x + b)
    if x >= 0:
        return 0.5 * (x + s), 0.5 * (1 + x / s)
    return 0.5 * b / (s - x), 0.5 * b / (s * (s - x))


def _mish(x):
    sp = _softplus(x)
    t = math.tanh(sp)
    return x * t, t + x * _sig(x) * _tanh_d(sp)


REFERENCE = {
    ("identity", None): lambda x: (x, 1.0),
    ("binary_step", None): lambda x, threshold: (1.0 if x >= threshold else 0.0, 0.0),
    ("threshold", None): lambda x, threshold, value: (x, 1.0) if x > threshold else (value, 0.0),
    ("relu", None): lambda x: (x, 1.0) if x > 0 else (0.0, 0.0),
    ("relu6", None): lambda x: (min(max(x, 0.0), 6.0), 1.0 if 0 < x < 6 else 0.0),
    ("leaky_relu", None): lambda x, negative_slope: (x, 1.0) if x > 0
    else (negative_slope * x, negative_slope),
    ("elu", None): lambda x, alpha: (x, 1.0) if x > 0 else (alpha * math.expm1(x),
                                                             alpha * math.exp(x)),
    ("selu", None): lambda x: (SELU_S * x, SELU_S) if x > 0
    else (SELU_S * SELU_A * math.expm1(x), SELU_S * SELU_A * math.exp(x)),
    ("celu", None): lambda x, alpha: (x, 1.0) if x > 0 else (alpha * math.expm1(x / alpha),
                                                              math.exp(x / alpha)),
    ("gelu", "none"): lambda x: (x * _Phi(x), _Phi(x) + x * _phi(x)),
    ("gelu", "tanh"): _gelu_tanh,
    ("silu", None): lambda x: (x * _sig(x), _sig(x) * (1 + x * _sig(-x))),
    ("swish", None): lambda x, beta: (x * _sig(beta * x),
                                      _sig(beta * x) * (1 + beta * x * _sig(-beta * x))),
    ("mish", None): _mish,
    ("softplus", None): lambda x, beta, threshold: (x, 1.0) if beta * x > threshold
    else (_softplus(beta * x) / beta, _sig(beta * x)),
    ("softsign", None): lambda x: (x / (1 + abs(x)), 1 / (1 + abs(x)) ** 2),
    ("sigmoid", None): lambda x: (_sig(x), _sig(x) * _sig(-x)),
    ("hard_sigmoid", None): lambda x: (min(max(x + 3, 0.0), 6.0) / 6,
                                       1 / 6 if -3 < x < 3 else 0.0),
    ("hard_swish", None): lambda x: (x * min(max(x + 3, 0.0), 6.0) / 6,
                                     0.0 if x <= -3 else (1.0 if x >= 3 else x / 3 + 0.5)),
    ("hardtanh", None): lambda x, min_val, max_val: (min(max(x, min_val), max_val),
                                                     1.0 if min_val < x < max_val else 0.0),
    ("tanh", None): lambda x: (math.tanh(x), _tanh_d(x)),
    ("log_sigmoid", None): lambda x: (-_softplus(-x), _sig(-x)),
    ("softshrink", None): lambda x, lambd: (x - lambd, 1.0) if x > lambd
    else ((x + lambd, 1.0) if x < -lambd else (0.0, 0.0)),
    ("hardshrink", None): lambda x, lambd: (x, 1.0) if abs(x) > lambd else (0.0, 0.0),
    ("tanhshrink", None): _tanhshrink,
    ("squareplus", None): _squareplus,
}

# Points where the derivative jumps (finite differences skip their neighbourhood).
KINKS = {
    "binary_step": ("threshold",), "threshold": ("threshold",), "relu": (0.0,),
    "relu6": (0.0, 6.0), "leaky_relu": (0.0,), "elu": (0.0,), "selu": (0.0,), "celu": (0.0,),
    "hard_sigmoid": (-3.0, 3.0), "hard_swish": (-3.0, 3.0), "hardtanh": ("min_val", "max_val"),
    "softshrink": ("lambd", "-lambd"), "hardshrink": ("lambd", "-lambd"),
    "softplus": ("threshold/beta",),
}


def kinks(name, params):
    out = []
    for k in KINKS.get(name, ()):
        if isinstance(k, float):
            out.append(k)
        elif k == "-lambd":
            out.append(-params["lambd"])
        elif k == "threshold/beta":
            out.append(params["threshold"] / params["beta"])
        else:
            out.append(params[k])
    return out


def reference(name, choice, x, params):
    """float64 arrays (f(x), f'(x)) for finite x."""
    f = REFERENCE[(name, choice)]
    pairs = [f(float(v), **params) for v in np.asarray(x, dtype=np.float64).ravel()]
    y = np.array([p[0] for p in pairs], dtype=np.float64).reshape(np.shape(x))
    d = np.array([p[1] for p in pairs], dtype=np.float64).reshape(np.shape(x))
    return y, d
