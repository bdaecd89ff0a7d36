"""Accuracy, special values and vectorization of the CPU math (fastact.cpu.vmath).

Every function is called the way the real kernels call it: from a compiled
``njit(fastmath={"contract", "arcp"}, error_model="numpy")`` loop, parallel
(``prange``) and serial.

Bounds: relative error <= 4e-7 (float32) and <= 5e-15 (float64) wherever the
true result is a normal number; results in the denormal range within 2
denormal ulps; overflowing results are inf; special values as C99 / NumPy.
Measured maxima at the time of writing (parallel and serial agree), all well
inside the bounds:

    function        float32   float64
    exp             7.8e-08   2.2e-16
    exp_neg_abs     8.0e-08   2.2e-16
    expm1_neg_abs   8.4e-08   4.2e-16
    expm1           1.1e-07   5.3e-16
    log             7.7e-08   2.2e-16
    log1p           1.3e-07   2.2e-16
    log1p_unit      1.7e-07   4.0e-16   (its domain [0, 1])
    log1m_unit      1.2e-07   2.2e-16   (its domain [0, 1])
    tanh            1.6e-07   5.3e-16
    erfc            2.6e-07   3.9e-16
    erfcx           3.4e-07   8.7e-16
    normal_pdf      1.2e-07   3.9e-16

References: float64 NumPy / math for the float32 versions, mpmath (100 bits)
for the float64 versions.
"""
import functools
import math
import re
import zlib

import numpy as np
import pytest
from numba import njit, prange

from fastact import mathlib

mpmath = pytest.importorskip("mpmath")

FASTMATH = {"contract", "arcp"}
NAMES = mathlib.MATH_FUNCTIONS
FLOATS = (np.float32, np.float64)
RTOL = {np.float32: 4e-7, np.float64: 5e-15}
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
DENORMAL_ULPS = 2


# ---------------------------------------------------------------- kernels

def _make_kernel(fn, parallel):
    if parallel:
        @njit(fastmath=FASTMATH, error_model="numpy", parallel=True)
        def kernel(x, y):
            for i in prange(x.size):
                y[i] = fn(x[i])
    else:
        @njit(fastmath=FASTMATH, error_model="numpy")
        def kernel(x, y):
            for i in range(x.size):
                y[i] = fn(x[i])
    return kernel


@functools.lru_cache(maxsize=None)
def kernel(name, parallel):
    return _make_kernel(getattr(mathlib, name), parallel)


def run(name, x, parallel=True):
    y = np.empty_like(x)
    kernel(name, parallel)(x, y)
    return y


# ---------------------------------------------------------------- references

def _erfcx64(v):
    """exp(v**2) erfc(v) in float64 (relative error below 1e-13 where finite)."""
    if v != v:
        return math.nan
    if v < 25.0:
        try:
            return math.exp(v * v) * math.erfc(v)
        except OverflowError:
            return math.inf
    w, s, term = 0.5 / (v * v), 1.0, 1.0
    for k in range(1, 9):
        term *= -(2 * k - 1) * w
        s += term
    return s / (v * math.sqrt(math.pi))


_NP64 = {"exp": np.exp, "exp_neg_abs": lambda v: np.exp(-np.abs(v)),
         "expm1_neg_abs": lambda v: np.expm1(-np.abs(v)), "expm1": np.expm1, "log": np.log, "log1p": np.log1p, "log1p_unit": np.log1p,
         "log1m_unit": lambda v: np.log1p(-v),
         "tanh": np.tanh, "erfc": np.frompyfunc(math.erfc, 1, 1),
         "erfcx": np.frompyfunc(_erfcx64, 1, 1),
         # (a float32 x squares exactly in float64)
         "normal_pdf": lambda v: np.exp(-0.5 * v * v) / np.sqrt(2 * np.pi)}
_MP = {"exp": mpmath.exp, "exp_neg_abs": lambda v: mpmath.exp(-abs(v)),
       "expm1_neg_abs": lambda v: mpmath.expm1(-abs(v)), "expm1": mpmath.expm1, "log": mpmath.log, "log1p": mpmath.log1p,
       "log1p_unit": mpmath.log1p, "log1m_unit": lambda v: mpmath.log1p(-v),
       "tanh": mpmath.tanh, "erfc": mpmath.erfc,
       # exp(v*v) erfc(v) loses ~log2(v*v) of the 100 bits (v*v's rounding
       # enters exp's argument): beyond 1e4, three terms of the asymptotic
       # series (truncation below 2e-24 there)
       "erfcx": lambda v: mpmath.exp(v * v) * mpmath.erfc(v) if v < 1e4 else
       1 / (v * mpmath.sqrt(mpmath.pi)) * (1 - 1 / (2 * v * v) + 3 / (4 * v ** 4)),
       "normal_pdf": mpmath.npdf}


def _mp_scalar(name, v):
    if v != v:
        return math.nan
    if name == "log" and v < 0 or name == "log1p" and v < -1:
        return math.nan
    if name == "log" and v == 0 or name == "log1p" and v == -1 or name == "log1m_unit" and v == 1:
        return -math.inf
    with mpmath.workprec(100):
        r = _MP[name](mpmath.mpf(v))
    # Convert by hand: mpf -> float may not handle huge/tiny exponents gracefully.
    try:
        return float(r)
    except OverflowError:
        return math.copysign(math.inf, float(mpmath.sign(r)))


def reference(name, x):
    """True values as float64 (float64 inputs: via mpmath; beyond float64 range: +-inf)."""
    if x.dtype == np.float32:
        with np.errstate(all="ignore"):
            return _NP64[name](x.astype(np.float64)).astype(np.float64)
    return np.array([_mp_scalar(name, float(v)) for v in x])


# ---------------------------------------------------------------- inputs

def _logu(rng, lo, hi, n):
    return np.exp2(rng.uniform(lo, hi, n))


def sample(name, dt, n, rng):
    """Dense random inputs over the useful range plus edges."""
    fi = np.finfo(dt)
    f32 = dt == np.float32
    e_min = math.log2(float(fi.smallest_subnormal))        # -149 / -1074
    e_max = math.log2(float(fi.max))                       # 128 / 1024
    ln_max = math.log(float(fi.max))
    ln_tiny = math.log(float(fi.tiny))
    ln_sub = math.log(float(fi.smallest_subnormal))
    sgn = rng.choice([-1.0, 1.0], n)
    parts = [sgn * _logu(rng, e_min, 2, n)]                # small magnitudes, denormals too
    if name in ("exp", "expm1"):
        parts += [rng.uniform(ln_sub - 3, ln_max + 3, n), rng.uniform(-2, 2, n)]
        edges = [ln_max, ln_tiny, ln_sub, math.log(2) / 2, -math.log(2) / 2]
    elif name in ("exp_neg_abs", "expm1_neg_abs"):
        parts += [rng.uniform(ln_sub - 3, -ln_sub + 3, 2 * n), rng.uniform(-2, 2, n)]
        # the denormal range, half the least denormal, the clamp
        edges = [-ln_tiny, -ln_sub, -ln_sub + math.log(2), 104.0 if f32 else 746.0,
                 math.log(2) / 2]
    elif name == "log":
        parts = [_logu(rng, e_min, e_max, 2 * n), rng.uniform(0.5, 2.0, n),
                 1 + sgn * _logu(rng, -60, -1, n)]
        edges = [1.0, float(fi.tiny), float(fi.smallest_subnormal), math.sqrt(0.5), math.sqrt(2.0)]
    elif name == "log1p":
        parts += [_logu(rng, 0, e_max, n), rng.uniform(-1, 1, n), -1 + _logu(rng, -60, -1, n)]
        edges = [-1.0, math.sqrt(0.5) - 1, math.sqrt(2) - 1, float(fi.max)]
    elif name in ("log1p_unit", "log1m_unit"):      # their domain: [0, 1]
        parts = [_logu(rng, e_min, 0, 2 * n), rng.uniform(0, 1, 2 * n)]
        edges = [0.0, 1.0, 0.5, float(fi.tiny), float(fi.smallest_subnormal)]
        if name == "log1m_unit":     # near 1 too, where the result is large
            parts.append(1 - _logu(rng, -60, -1, n))
            edges += [float(fi.eps) / 2, 1 - float(fi.eps) / 2, 1 - float(fi.eps)]
    elif name == "tanh":
        parts += [rng.uniform(-25, 25, n), rng.uniform(-1, 1, n)]
        edges = [0.5493, 0.625, 9.0, 19.1]
    elif name == "erfc":
        top = 10.5 if f32 else 27.5
        parts += [rng.uniform(-6, top, 2 * n), rng.uniform(-1.5, 3.5, n), rng.uniform(top - 2, top, n)]
        edges = [0.84375, 1.25, 1 / 0.35, 6.0, 9.194 if f32 else 26.54, 10.05 if f32 else 27.22]
    elif name == "erfcx":
        ovf = -9.4 if f32 else -26.6
        parts += [rng.uniform(ovf - 1, 40, 2 * n), rng.uniform(-1, 4, n), _logu(rng, 2, e_max, n)]
        edges = [ovf, 10.5, 27.5, float(fi.max)]
    elif name == "normal_pdf":
        cut = mathlib.PDF_CUTOFF_F32 if f32 else mathlib.PDF_CUTOFF_F64
        parts += [rng.uniform(-cut - 2, cut + 2, 2 * n), rng.uniform(-3, 3, n),
                  rng.uniform(cut - 4, cut, n)]
        # the cutoff, the start of the denormal range, the largest finite input
        edges = [cut, 13.0 if f32 else 37.5, float(fi.max)]
    else:
        raise KeyError(name)
    x = np.concatenate(parts).astype(dt)
    # Each edge, its negation and a few float neighbours.
    e = np.array(edges + ([] if name.endswith("_unit") else [-v for v in edges]), dtype=dt)
    near = []
    for v in e:  # (nextafter past +-max warns; the inf it gives is a fine input)
        lo = hi = v
        near.append(v)
        for _ in range(3):
            lo = np.nextafter(lo, dt(-np.inf))
            hi = np.nextafter(hi, dt(np.inf))
            near += [lo, hi]
    x = np.concatenate([x, np.array(near, dtype=dt)])
    return x[(x >= 0) & (x <= 1)] if name.endswith("_unit") else x


@pytest.fixture(autouse=True)
def _quiet_fp():
    with np.errstate(all="ignore"):
        yield


# ---------------------------------------------------------------- checks

def errors(x, y, ref):
    """(max relative error over normal results, indices of failures of the other rules)."""
    dt = x.dtype.type
    fi = np.finfo(dt)
    tiny, big = float(fi.tiny), float(fi.max)
    yd = y.astype(np.float64)
    a = np.abs(ref)
    with np.errstate(all="ignore"):
        rel = np.abs(yd - ref) / a
    normal = np.isfinite(ref) & (a >= tiny) & (a <= big)
    rel_max = float(np.max(rel[normal], initial=0.0))
    bad = np.zeros(x.shape, bool)
    # Results in the denormal range (or rounding to 0): a few denormal ulps, or
    # the relative bound (just below tiny, 2 denormal ulps are 2.4e-7 relative).
    den = np.isfinite(ref) & (a < tiny)
    bad |= den & ~(np.abs(yd - ref) <= np.maximum(
        DENORMAL_ULPS * float(fi.smallest_subnormal), RTOL[dt] * a))
    # Overflow: beyond max + half an ulp the result must be inf.
    over = np.isfinite(ref) & (a >= big * (1 + fi.epsneg)) | np.isinf(ref)
    bad |= over & ~(yd == ref) & ~(np.isfinite(ref) & np.isinf(yd) & (np.sign(yd) == np.sign(ref)))
    # NaN exactly where the reference is NaN.
    bad |= np.isnan(ref) != np.isnan(yd)
    return rel_max, np.flatnonzero(bad)


@pytest.mark.parametrize("parallel", [True, False], ids=["prange", "serial"])
@pytest.mark.parametrize("dt", FLOATS, ids=lambda t: t.__name__)
@pytest.mark.parametrize("name", NAMES)
def test_accuracy(name, dt, parallel):
    rng = np.random.default_rng(zlib.crc32(f"{name} {dt.__name__}".encode()))  # same every run
    n = 40000 if dt == np.float32 else 3000
    if not parallel:
        n //= 4
    x = sample(name, dt, n, rng)
    y = run(name, x, parallel)
    assert y.dtype == dt
    ref = reference(name, x)
    rel_max, bad = errors(x, y, ref)
    i = int(np.argmax(np.where(np.isfinite(ref) & (np.abs(ref) >= np.finfo(dt).tiny),
                               np.abs(y - ref) / np.abs(ref), 0.0)))
    assert rel_max <= RTOL[dt], (
        f"{name}[{dt.__name__}] max rel error {rel_max:.3g} at x={x[i]!r}: {y[i]!r} vs {ref[i]!r}")
    assert bad.size == 0, [(x[j], y[j], ref[j]) for j in bad[:10]]


SPECIALS = {
    # name: [(input, expected)], symbolic inputs resolved per dtype
    "exp": [(0.0, 1.0), (-0.0, 1.0), ("inf", "inf"), ("-inf", 0.0), ("nan", "nan"),
            ("max", "inf"), ("-max", 0.0), ("sub", 1.0), ("-sub", 1.0), ("tiny", 1.0)],
    "exp_neg_abs": [(0.0, 1.0), (-0.0, 1.0), ("inf", 0.0), ("-inf", 0.0), ("nan", "nan"),
                    ("max", 0.0), ("-max", 0.0), ("sub", 1.0), ("-sub", 1.0), ("tiny", 1.0),
                    (800.0, 0.0), (-800.0, 0.0)],
    "expm1_neg_abs": [(0.0, 0.0), (-0.0, 0.0), ("inf", -1.0), ("-inf", -1.0), ("nan", "nan"),
                      ("max", -1.0), ("-max", -1.0), ("sub", "-sub"), ("-sub", "-sub"),
                      ("tiny", "-tiny"), ("-tiny", "-tiny"), (800.0, -1.0), (-40.0, -1.0)],
    "expm1": [(0.0, 0.0), (-0.0, -0.0), ("inf", "inf"), ("-inf", -1.0), ("nan", "nan"),
              ("max", "inf"), ("-max", -1.0), ("sub", "sub"), ("-sub", "-sub"),
              ("tiny", "tiny"), ("-tiny", "-tiny"), (-200.0, -1.0)],
    "log": [(0.0, "-inf"), (-0.0, "-inf"), ("inf", "inf"), ("-inf", "nan"), ("nan", "nan"),
            (1.0, 0.0), (-1.0, "nan"), ("-sub", "nan"), ("-max", "nan"), (-0.5, "nan")],
    "log1p": [(0.0, 0.0), (-0.0, -0.0), ("inf", "inf"), ("-inf", "nan"), ("nan", "nan"),
              (-1.0, "-inf"), (-2.0, "nan"), ("-max", "nan"), ("sub", "sub"), ("-sub", "-sub"),
              ("tiny", "tiny"), ("-tiny", "-tiny")],
    # log1p_unit(1) = log 2 correctly rounded: softplus(0), log_sigmoid(0) and BCE at logit 0
    "log1p_unit": [(0.0, 0.0), (-0.0, -0.0), ("nan", "nan"), ("sub", "sub"), ("tiny", "tiny"),
                   (1.0, math.log(2.0))],
    "log1m_unit": [(0.0, 0.0), (-0.0, 0.0), (1.0, "-inf"), ("nan", "nan"), ("sub", "-sub"),
                   ("tiny", "-tiny")],
    "tanh": [(0.0, 0.0), (-0.0, -0.0), ("inf", 1.0), ("-inf", -1.0), ("nan", "nan"),
             ("max", 1.0), ("-max", -1.0), (30.0, 1.0), (-30.0, -1.0), ("sub", "sub"),
             ("-sub", "-sub"), ("tiny", "tiny"), ("-tiny", "-tiny")],
    "erfc": [(0.0, 1.0), (-0.0, 1.0), ("inf", 0.0), ("-inf", 2.0), ("nan", "nan"),
             ("max", 0.0), ("-max", 2.0), ("sub", 1.0), ("-sub", 1.0), (30.0, 0.0), (-30.0, 2.0),
             (-10.0, 2.0)],
    "normal_pdf": [(0.0, INV_SQRT_2PI), (-0.0, INV_SQRT_2PI), ("inf", 0.0), ("-inf", 0.0),
                   ("nan", "nan"), ("max", 0.0), ("-max", 0.0), ("sub", INV_SQRT_2PI),
                   ("tiny", INV_SQRT_2PI), (40.0, 0.0), (-40.0, 0.0)],
    "erfcx": [(0.0, 1.0), (-0.0, 1.0), ("inf", 0.0), ("-inf", "inf"), ("nan", "nan"),
              ("-max", "inf"), ("sub", 1.0), ("-sub", 1.0), (-30.0, "inf")],
}


def _resolve(v, dt):
    if not isinstance(v, str):
        return dt(v)
    neg = v.startswith("-")
    fi = np.finfo(dt)
    base = {"inf": dt(np.inf), "nan": dt(np.nan), "max": fi.max, "tiny": fi.tiny,
            "sub": fi.smallest_subnormal}[v.lstrip("-")]
    return -base if neg else base


@pytest.mark.parametrize("parallel", [True, False], ids=["prange", "serial"])
@pytest.mark.parametrize("dt", FLOATS, ids=lambda t: t.__name__)
@pytest.mark.parametrize("name", NAMES)
def test_special_values(name, dt, parallel):
    cases = SPECIALS[name]
    x = np.array([_resolve(a, dt) for a, _ in cases], dtype=dt)
    want = np.array([_resolve(b, dt) for _, b in cases], dtype=dt)
    y = run(name, x, parallel)
    same = (y == want) & (np.signbit(y) == np.signbit(want)) | np.isnan(y) & np.isnan(want)
    assert same.all(), [(x[i], y[i], want[i]) for i in np.flatnonzero(~same)]


@pytest.mark.parametrize("dt", FLOATS, ids=lambda t: t.__name__)
def test_gradual_underflow_and_overflow(dt):
    f32 = dt == np.float32
    # exp(-100) in float32 is the denormal 3.7e-44, as in C and PyTorch.
    x = np.array([-100.0, -103.0] if f32 else [-720.0, -740.0, -745.0], dtype=dt)
    y = run("exp", x)
    ref = reference("exp", x)
    assert np.all(y > 0)
    assert np.all(np.abs(y - ref) <= DENORMAL_ULPS * float(np.finfo(dt).smallest_subnormal))
    # The overflow threshold: last finite and first infinite result.
    fi = np.finfo(dt)
    t = dt(math.log(float(fi.max)))
    xs = np.array([np.nextafter(t, dt(-np.inf)), np.nextafter(np.nextafter(t, dt(np.inf)), dt(np.inf))],
                  dtype=dt)
    ys = run("exp", xs)
    assert np.isfinite(ys[0]) and np.isinf(ys[1])
    # erfc keeps full relative accuracy deep into the tail (gelu's Phi(x) = erfc(-x/sqrt2)/2).
    z = np.array([5.0, 9.0] if f32 else [5.0, 10.0, 20.0, 26.0], dtype=dt)
    rz = reference("erfc", z)
    assert np.all(np.abs(run("erfc", z) - rz) <= RTOL[dt] * rz)


@pytest.mark.parametrize("dt", FLOATS, ids=lambda t: t.__name__)
def test_log1p_unit_ulps(dt):
    # log1p_unit in ulps of the result over [0, 1], denser near 1 (softplus
    # and log_sigmoid at small |x|): measured maxima 1.88 (float32) and 2.22
    # (float64) ulps, against 3.17 and 2.96 when P(w/4) was rounded and then
    # multiplied by v = x (2/(2 + x)).
    rng = np.random.default_rng(17)
    f32 = dt == np.float32
    n = 400000 if f32 else 12000
    x = np.concatenate([rng.uniform(0, 1, n), rng.uniform(0.9, 1, n // 2),
                        np.exp2(rng.uniform(-30, 0, n // 4)),
                        1 - np.arange(300) * np.finfo(dt).epsneg]).astype(dt)
    y = run("log1p_unit", x)
    if f32:
        ref = np.log1p(x.astype(np.float64))
        err = np.abs(y.astype(np.float64) - ref) / np.spacing(ref.astype(dt)).astype(np.float64)
    else:
        err = np.empty(x.size)
        with mpmath.workprec(120):
            for k, (v, w) in enumerate(zip(x, y)):
                r = mpmath.log1p(mpmath.mpf(float(v)))
                err[k] = abs(float((mpmath.mpf(float(w)) - r) / float(np.spacing(float(r)))))
    i = int(np.argmax(err))
    assert err[i] <= 2.5, f"log1p_unit[{dt.__name__}]: {err[i]:.3f} ulps at x={x[i]!r}"


# ---------------------------------------------------------------- exp_neg (two arguments)

@functools.lru_cache(maxsize=None)
def _kernel2(name, parallel):
    fn = getattr(mathlib, name)
    if parallel:
        @njit(fastmath=FASTMATH, error_model="numpy", parallel=True)
        def k(t, d, y):
            for i in prange(t.size):
                y[i] = fn(t[i], d[i])
    else:
        @njit(fastmath=FASTMATH, error_model="numpy")
        def k(t, d, y):
            for i in range(t.size):
                y[i] = fn(t[i], d[i])
    return k


def _run2(name, a, b, parallel):
    out = np.empty_like(a)
    _kernel2(name, parallel)(a, b, out)
    return out


def _check2(a, b, out, mp_fn):
    """out, a two-argument function's values at (a, b): within RTOL of
    mp_fn(a, b) (mpmath, 100 bits), and the rules of ``errors`` for results
    outside the normal range.  Returns the reference."""
    dt = a.dtype.type
    with mpmath.workprec(100):
        ref = np.array([float(mp_fn(mpmath.mpf(float(u)), mpmath.mpf(float(v))))
                        for u, v in zip(a, b)])
    rel_max, bad = errors(a, out, ref)
    assert rel_max <= RTOL[dt], rel_max
    assert bad.size == 0, [(a[j], b[j], out[j], ref[j]) for j in bad[:10]]
    return ref


def _assert_vectorized2(name, dt):
    k = _kernel2(name, True)
    sig = [s for s in k.signatures if str(s[0].dtype) == np.dtype(dt).name][0]
    problems = asm_problems(k.inspect_asm(sig), dt)
    assert not problems, "; ".join(problems)


def _unit_interval(rng, dt, n_near_one):
    """Points of [0, 1]: uniform, log-uniform down to the least denormal, and
    1 - 10**-k up to 1 - 1e-7."""
    lo = math.log10(float(np.finfo(dt).smallest_subnormal))
    return np.concatenate([rng.uniform(0, 1, 2000), 10.0 ** rng.uniform(lo, 0, 2000),
                           1 - 10.0 ** rng.uniform(-7, 0, n_near_one)]).astype(dt)


@pytest.mark.parametrize("parallel", [True, False], ids=["prange", "serial"])
@pytest.mark.parametrize("dt", FLOATS, ids=lambda t: t.__name__)
def test_exp_neg_takes_the_correction_in_full(dt, parallel):
    # e**(-t + d) for t over the whole range where the result is not 0, and
    # corrections far below an ulp of t (which -t + d rounded would lose).
    rng = np.random.default_rng(7)
    fi = np.finfo(dt)
    top = 104.0 if dt == np.float32 else 746.0
    t = np.concatenate([rng.uniform(0, top, 3000), rng.uniform(0, 2, 1000)]).astype(dt)
    d = (rng.uniform(-1, 1, t.size) * (t.astype(np.float64) * 4.0 * float(fi.eps) + 1e-9)).astype(dt)
    y = _run2("exp_neg", t, d, parallel)
    ref = _check2(t, d, y, lambda a, b: mpmath.exp(-a + b))
    # without d the error would be about |d|: the correction is taken
    normal = ref >= float(fi.tiny)
    assert np.max(np.abs(d[normal].astype(np.float64))) > 50 * RTOL[dt]
    # special values of t (d = 0): 1 at 0, 0 where e**-t underflows and at inf, NaN kept
    ts = np.array([0.0, np.inf, np.nan, top + 1.0, float(fi.max)], dtype=dt)
    ys = _run2("exp_neg", ts, np.zeros_like(ts), parallel)
    assert ys[0] == 1.0 and ys[1] == 0.0 and np.isnan(ys[2]) and ys[3] == 0.0 and ys[4] == 0.0
    if parallel:
        _assert_vectorized2("exp_neg", dt)


@pytest.mark.parametrize("parallel", [True, False], ids=["prange", "serial"])
@pytest.mark.parametrize("dt", FLOATS, ids=lambda t: t.__name__)
def test_pow_unit(dt, parallel):
    # x**y on [0, 1] down to the least denormal, exponents from 0.01 to 40:
    # full relative accuracy however small the result
    rng = np.random.default_rng(11)
    x = _unit_interval(rng, dt, 500)
    y = np.concatenate([rng.choice([0.5, 1.5, 2.0, 3.0], 2500),
                        10.0 ** rng.uniform(-2, 1.6, x.size - 2500)]).astype(dt)
    _check2(x, y, _run2("pow_unit", x, y, parallel), lambda a, b: a ** b)
    xs = np.array([0.0, 1.0, np.nan, float(np.finfo(dt).smallest_subnormal)], dtype=dt)
    ys = _run2("pow_unit", xs, np.full_like(xs, 2.5), parallel)
    assert ys[0] == 0.0 and ys[1] == 1.0 and np.isnan(ys[2]) and ys[3] == 0.0
    if parallel:
        _assert_vectorized2("pow_unit", dt)


@pytest.mark.parametrize("parallel", [True, False], ids=["prange", "serial"])
@pytest.mark.parametrize("dt", FLOATS, ids=lambda t: t.__name__)
def test_bernoulli_log(dt, parallel):
    # log p for t = 1, log(1 - p) for t = 0, p over [0, 1] down to the least
    # denormal and up to 1 - 1e-7: full relative accuracy on both sides
    rng = np.random.default_rng(13)
    p = _unit_interval(rng, dt, 1000)
    t = (rng.random(p.size) < 0.5).astype(dt)
    _check2(p, t, _run2("bernoulli_log", p, t, parallel),
            lambda a, b: mpmath.log(a) if b == 1 else mpmath.log1p(-a))
    # each side where the other one's log would be taken wrongly: log(1 - p) of
    # tiny p is about -p, log p of p near 1 about p - 1
    assert np.any((t == 0) & (p < 1e-3)) and np.any((t == 1) & (p > 1 - 1e-3))
    ps = np.array([0.0, 1.0, 0.0, 1.0, np.nan, np.nan], dtype=dt)
    ts = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.0], dtype=dt)
    ys = _run2("bernoulli_log", ps, ts, parallel)
    assert ys[0] == -np.inf and ys[1] == -np.inf and ys[2] == 0.0 and ys[3] == 0.0
    assert np.isnan(ys[4]) and np.isnan(ys[5])
    # the plain Python body (CUDA simulator) gives the same specials
    assert [mathlib.bernoulli_log(a, b) for a, b in zip(ps[:4], ts[:4])] == list(ys[:4])
    if parallel:
        _assert_vectorized2("bernoulli_log", dt)


def test_scalar_python_fallback_unchanged():
    # The plain-Python bodies in mathlib stay usable (CUDA simulator, pure calls).
    assert mathlib.exp(np.float32(1.0)).dtype == np.float32
    assert math.isclose(mathlib.erfc(np.float64(1.0)), math.erfc(1.0))


@pytest.mark.parametrize("dt", FLOATS, ids=lambda t: t.__name__)
def test_chop_splits_into_halves_with_exact_products(dt):
    """mathlib.chop (compiled and plain Python): x = chop(x) + (x - chop(x))
    exactly, and products of two high halves or of a high and a low half are
    exact in the type."""
    from fractions import Fraction
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal(500) * 10.0 ** rng.integers(-15, 15, 500),
                        [0.0, -0.0, 1.0, -3.0]]).astype(dt)
    jit_chop = njit(lambda v: np.array([mathlib.chop(e) for e in v]))
    hi = jit_chop(x).astype(dt)
    assert np.array_equal(hi, np.array([mathlib.chop(e) for e in x], dtype=dt))
    lo = x - hi
    assert all(Fraction(float(h)) + Fraction(float(l)) == Fraction(float(v))
               for h, l, v in zip(hi, lo, x))
    for a, b in ((hi, hi[::-1]), (hi, lo[::-1])):
        ok = np.abs(a * b) > np.finfo(dt).tiny      # not into the denormal range
        assert ok.sum() > 300
        assert all(Fraction(float(p)) == Fraction(float(u)) * Fraction(float(v))
                   for p, u, v in zip(a[ok] * b[ok], a[ok], b[ok]))
    assert not np.array_equal(hi, x)   # the split did something


@pytest.mark.parametrize("dt", FLOATS, ids=lambda t: t.__name__)
def test_fma_rounds_once(dt):
    """mathlib.fma (compiled in a fastmath loop, and plain Python): fma(a, b, -a*b)
    is the exact rounding error of the product."""
    from fractions import Fraction
    rng = np.random.default_rng(5)
    a = rng.standard_normal(400).astype(dt)
    b = (rng.standard_normal(400) * 1e3).astype(dt)
    p = a * b

    @njit(fastmath=FASTMATH, error_model="numpy")
    def kernel(a, b, c, out):
        for i in range(a.size):
            out[i] = mathlib.fma(a[i], b[i], c[i])

    e = np.empty_like(a)
    kernel(a, b, -p, e)
    exact = [Fraction(float(u)) * Fraction(float(v)) - Fraction(float(w)) for u, v, w in zip(a, b, p)]
    assert all(Fraction(float(x)) == y for x, y in zip(e, exact))
    assert np.count_nonzero(e) > 300           # the products did round
    assert all(mathlib.fma(a[i], b[i], -p[i]) == e[i] for i in range(50))
    assert np.isnan(mathlib.fma(dt(np.inf), dt(0.0), dt(1.0)))


# ---------------------------------------------------------------- vectorization

# A named call to a libm-style function or to a (non-inlined) vmath/mathlib body.
# Numba's JIT code calls through registers (movabs $sym, %reg; call *%reg), so
# both forms are checked.  Numba's own runtime calls (call *%reg without a math
# symbol) are allowed.
_LIBM = r"(?:exp|expm1|exp2|log|log1p|log2|tanh|erf|erfc)[fl]?"
_NAMED_MATH = re.compile(
    rf"^\s+(?:call|movabs|jmp)\w*\s+\$?\"?(?:{_LIBM}(?:@PLT)?\b|[^\s,]*(?:fastact3cpu5vmath|fastact7mathlib)[^\s,]*)",
    re.M)


def _packed_arith(asm, dt):
    suffix = "ps" if dt == np.float32 else "pd"
    return re.findall(
        rf"^\s+v(?:f(?:n)?m(?:add|sub)\d{{3}}|mul|add|sub){suffix}\s+[^\n]*%[yz]mm", asm, re.M)


def asm_problems(asm, dt):
    """Reasons why the loop in ``asm`` is not vectorized math; empty if it is."""
    problems = []
    calls = _NAMED_MATH.findall(asm)
    if calls:
        problems.append(f"named math calls: {sorted(set(c.strip() for c in calls))}")
    n = len(_packed_arith(asm, dt))
    if n < 5:
        problems.append(f"only {n} packed ymm/zmm arithmetic instructions")
    if dt == np.float32:
        # float32 code must not be promoted to float64 anywhere.
        n64 = len(_packed_arith(asm, np.float64)) + len(re.findall(r"\bv?cvt\w*ps2pd\b", asm))
        if n64:
            problems.append(f"{n64} float64 instructions in float32 code")
    return problems


def _asm(k, dt):
    x = np.ones(16, dt)
    k(x, np.empty_like(x))
    sig = [s for s in k.signatures if str(s[0].dtype) == np.dtype(dt).name][0]
    return k.inspect_asm(sig)


@pytest.mark.parametrize("dt", FLOATS, ids=lambda t: t.__name__)
@pytest.mark.parametrize("name", NAMES)
def test_vectorized(name, dt):
    problems = asm_problems(_asm(kernel(name, True), dt), dt)
    assert not problems, f"{name}[{dt.__name__}]: " + "; ".join(problems)


_LIBM_FUNCS = {"exp": math.exp, "expm1": math.expm1, "log": math.log, "log1p": math.log1p,
               "log1p_unit": math.log1p, "log1m_unit": math.log1p, "tanh": math.tanh, "erfc": math.erfc,
               "erfcx": math.erfc, "normal_pdf": math.exp, "exp_neg_abs": math.exp,
               "expm1_neg_abs": math.expm1}


@pytest.mark.parametrize("name", NAMES)
def test_vectorization_check_rejects_libm(name):
    # The same loop calling libm (the former CPU lowering) must fail the check.
    k = _make_kernel(_LIBM_FUNCS[name], parallel=True)
    assert asm_problems(_asm(k, np.float32), np.float32)
