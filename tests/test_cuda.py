"""CUDA backend tests, run under the Numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1).

Every op of the kinds the cuda backend lowers, every pass, float32/float64/
float16, compared with the CPU backend; containers (device arrays, NumPy with
backend="cuda", foreign __cuda_array_interface__ objects), out= on the device,
error cases.  Shapes are small: the simulator runs one Python thread per CUDA
thread.  On a real GPU (ci/gpu_check.sh) the same tests run without the
simulator.
"""
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

pytestmark = pytest.mark.cudasim

pytest.importorskip("numba_cuda", reason="numba-cuda is not installed")

import fastact as fa  # noqa: E402
from fastact import cuda as fcuda  # noqa: E402
from fastact.registry import REGISTRY  # noqa: E402

if not fcuda.is_available():
    pytest.skip("no CUDA GPU and the simulator is off (set NUMBA_ENABLE_CUDASIM=1)",
                allow_module_level=True)

from numba import cuda  # noqa: E402

from fastact.cuda import core  # noqa: E402

SIM = fcuda.simulator_enabled()
DTYPES = (np.float32, np.float64, np.float16)
# GPU vs CPU: same formulas, different libm (simulator: NumPy; GPU: libdevice).
RTOL = {np.dtype(np.float32): 4e-6, np.dtype(np.float64): 1e-13,
        np.dtype(np.float16): 1e-3}
# Absolute part: one rounding of an O(1) term (the GPU contracts a*b + c into an
# FMA, the simulator does not: 1 - y*y near |y| = 1 differs by that much).
ATOL = {np.dtype(np.float32): 2e-7, np.dtype(np.float64): 4e-16,
        np.dtype(np.float16): 1e-7}
SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30, 30.0, -30.0, 1.0]
REQUIRED = {"threshold": {"threshold": 0.5, "value": -2.0}}


def host(a):
    if isinstance(a, tuple):
        return tuple(host(b) for b in a)
    return a.copy_to_host() if core.is_device_array(a) and hasattr(a, "copy_to_host") else a


def as_tuple(r):
    return r if isinstance(r, tuple) else (r,)


def assert_close(got, want, dtype, scale=1.0):
    """Close to the CPU result; ``scale`` widens the bounds (row sums in float32)."""
    dt = np.dtype(dtype)
    for g, w in zip(as_tuple(got), as_tuple(want)):
        g, w = np.asarray(host(g)), np.asarray(w)
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64),
                                   rtol=RTOL[dt] * scale, atol=ATOL[dt] * scale,
                                   equal_nan=True)


# Row-wise: the GPU sums rows in the compute dtype (float32), the CPU in float64;
# dx = p * (dy - sum(dy * p)) cancels where dy is near the sum.
ROW_SCALE = 10.0


def _close(g, w, dt):
    g, w = g.astype(np.float64), w.astype(np.float64)
    with np.errstate(all="ignore"):
        return (np.isnan(g) & np.isnan(w)) | (g == w) | (
            np.abs(g - w) <= ATOL[dt] + RTOL[dt] * np.abs(w))


def assert_close_either(got, want, want64, dtype):
    """Each element close to the CPU result in its dtype, or to the CPU float64 result.

    The CPU float32 kernels may differ at special values (their sqrt is compiled
    with ``arcp``, e.g. squareplus'(-inf) is NaN there, 0 in float64 and on the GPU).
    """
    dt = np.dtype(dtype)
    for g, w, w64 in zip(as_tuple(got), as_tuple(want), as_tuple(want64)):
        g, w, w64 = np.asarray(host(g)), np.asarray(w), np.asarray(w64)
        assert g.dtype == w.dtype and g.shape == w.shape
        ok = _close(g, w, dt) | _close(g, w64.astype(dt), dt)
        assert ok.all(), (f"mismatch at {np.flatnonzero(~ok)[:10]}: got {g[~ok][:10]}, "
                          f"cpu {w[~ok][:10]}, cpu float64 {w64[~ok][:10]}")


def kernel_kinds():
    return {"elementwise", "rowwise", "gated", "prelu", "maxout", "argmax", "loss"}


# --------------------------------------------------------------- elementwise

def _elementwise_cases():
    cases = []
    for spec in REGISTRY.values():
        if spec.kind != "elementwise":
            continue
        for choice, scalars in spec.scalars.items():
            passes = ["forward", "value_and_derivative", "backward", "forward_backward"]
            if scalars.derivative_from_output is not None:
                passes.append("backward_from_output")
            for p in passes:
                cases.append(pytest.param(spec.name, choice, p, id=f"{spec.name}-{choice}-{p}"))
    return cases


def _kwargs(spec, choice):
    kw = dict(REQUIRED.get(spec.name, {}))
    if choice is not None:
        kw[spec.choice.name] = choice
    return kw


@pytest.mark.parametrize("name,choice,pass_name", _elementwise_cases())
def test_elementwise_matches_cpu(name, choice, pass_name):
    spec = REGISTRY[name]
    op = getattr(fa, name)
    kw = _kwargs(spec, choice)
    rng = np.random.default_rng(zlib.crc32(f"{name} {pass_name}".encode()))
    base = np.concatenate([rng.standard_normal(23) * 3, SPECIALS])
    for dt in DTYPES:
        x = base.astype(dt)
        dy = rng.uniform(-1, 1, x.size).astype(dt)
        if pass_name == "forward":
            args = (x,)
        elif pass_name == "value_and_derivative":
            args = (x,)
        elif pass_name == "backward_from_output":
            args = (op(x, backend="cpu", **kw), dy)
        else:
            args = (x, dy)
        f = op if pass_name == "forward" else getattr(op, pass_name)
        want = f(*args, backend="cpu", **kw)
        want64 = f(*[a.astype(np.float64) for a in args], backend="cpu", **kw)
        got = f(*[cuda.to_device(a) for a in args], backend="cuda", **kw)
        for g in as_tuple(got):
            assert core.is_device_array(g)
        assert_close_either(got, want, want64, dt)


@pytest.mark.parametrize("dt", (np.float32, np.float64), ids=["f32", "f64"])
def test_swish_where_beta_x_overflows(dt):
    # the CPU's scalar: beta x = +-inf gives the limits (value x or -0,
    # derivative 1 or +0), not NaN
    big = np.finfo(dt).max
    x = np.array([big, -big, big / 4, -big / 4], dt)
    y, d = (host(a) for a in fa.swish.value_and_derivative(cuda.to_device(x), backend="cuda",
                                                           beta=2.0))
    np.testing.assert_array_equal(y, np.array([big, -0.0, big / 4, -0.0], dt))
    np.testing.assert_array_equal(np.signbit(y), [False, True, False, True])
    np.testing.assert_array_equal(d, np.array([1.0, 0.0, 1.0, 0.0], dt))
    assert not np.signbit(d).any()


# ------------------------------------------------------------------ rowwise

def _rowwise_cases():
    return [pytest.param(s.name, p, id=f"{s.name}-{p}")
            for s in REGISTRY.values() if s.kind == "rowwise" for p in s.passes]


@pytest.mark.parametrize("name,pass_name", _rowwise_cases())
def test_rowwise_matches_cpu(name, pass_name):
    op = getattr(fa, name)
    f = op if pass_name == "forward" else getattr(op, pass_name)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 19)) * 3
    x[1, 3] = -np.inf            # a -inf entry is fine
    x[2, :] = -np.inf            # an all -inf row
    x[3, 5] = np.nan             # NaN row
    dy = rng.uniform(-1, 1, x.shape)
    for dt in DTYPES:
        args = (x.astype(dt),) if pass_name == "forward" else (x.astype(dt), dy.astype(dt))
        with np.errstate(all="ignore"):
            want = f(*args, backend="cpu")
            got = f(*[cuda.to_device(a) for a in args], backend="cuda")
        assert_close(got, want, dt, ROW_SCALE)
    # another axis of a 3-D input, NumPy in with backend="cuda"
    x3 = rng.standard_normal((2, 5, 3)).astype(np.float32)
    dy3 = rng.uniform(-1, 1, x3.shape).astype(np.float32)
    args = (x3,) if pass_name == "forward" else (x3, dy3)
    got = f(*args, axis=1, backend="cuda")
    assert all(isinstance(g, np.ndarray) for g in as_tuple(got))
    assert_close(got, f(*args, axis=1, backend="cpu"), np.float32, ROW_SCALE)


def test_rowwise_wide_row_and_zero_d():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((2, 300)) * 5).astype(np.float32)   # many columns per thread
    dy = rng.uniform(-1, 1, x.shape).astype(np.float32)
    assert_close(fa.log_softmax.forward_backward(x, dy, backend="cuda"),
                 fa.log_softmax.forward_backward(x, dy, backend="cpu"), np.float32, ROW_SCALE)
    s = np.array(1.5, dtype=np.float64)
    assert_close(fa.softmax(s, backend="cuda"), fa.softmax(s, backend="cpu"), np.float64)
    e = np.zeros((3, 0), np.float32)
    assert fa.softmax(e, backend="cuda").shape == (3, 0)


def test_refused_parameter_values_raise_before_any_launch():
    x = cuda.to_device(np.linspace(-2, 2, 8).astype(np.float32))
    for call in (lambda: fa.celu(x, alpha=0.0, backend="cuda"),
                 lambda: fa.softshrink.backward(x, x, lambd=-1.0, backend="cuda"),
                 lambda: fa.hardtanh(x, min_val=1.0, max_val=0.0, backend="cuda"),
                 lambda: fa.squareplus.value_and_derivative(x, b=-4.0, backend="cuda")):
        with pytest.raises(ValueError, match="must be"):
            call()


def test_rowwise_errors():
    x = cuda.to_device(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError):
        fa.softmax(x, axis=2, backend="cuda")
    with pytest.raises(ValueError):
        fa.softmax.backward(x, cuda.to_device(np.zeros((2, 4), np.float32)), backend="cuda")


# ------------------------------------------------------------ axis ops

def _dev(args):
    return [cuda.to_device(a) if isinstance(a, np.ndarray) else a for a in args]


GATED = [s.name for s in REGISTRY.values() if s.kind == "gated"]


@pytest.mark.parametrize("name", GATED)
def test_gated_matches_cpu(name):
    op = getattr(fa, name)
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((2, 6, 3)) * 2)
    x[0, 0, 0], x[1, 4, 2], x[0, 5, 1] = np.nan, np.inf, -np.inf
    dy = rng.uniform(-1, 1, (2, 3, 3))
    kw = {"approximate": "tanh"} if name == "geglu" else {}
    for dt in (np.float32, np.float64, np.float16):
        a, d = x.astype(dt), dy.astype(dt)
        with np.errstate(all="ignore"):
            for pass_name, args in (("forward", (a,)), ("backward", (a, d)),
                                    ("forward_backward", (a, d))):
                if dt != np.float32 and pass_name != "forward_backward":
                    continue          # every pass in float32; the dtypes through one
                f = op if pass_name == "forward" else getattr(op, pass_name)
                want = f(*args, axis=1, backend="cpu", **kw)
                got = f(*_dev(args), axis=1, backend="cuda", **kw)
                assert all(core.is_device_array(g) for g in as_tuple(got))
                assert_close(got, want, dt)
    # NumPy in, NumPy out; last axis; default parameters
    a = rng.standard_normal((3, 4)).astype(np.float32)
    d = rng.uniform(-1, 1, (3, 2)).astype(np.float32)
    got = op.forward_backward(a, d, backend="cuda")
    assert all(isinstance(g, np.ndarray) for g in got)
    assert_close(got, op.forward_backward(a, d, backend="cpu"), np.float32)


def test_gated_out_and_errors():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    dy = rng.uniform(-1, 1, (4, 3)).astype(np.float32)
    want = fa.swiglu.forward_backward(x, dy, backend="cpu")
    dx, ddy = cuda.to_device(x), cuda.to_device(dy)
    y = cuda.device_array((4, 3), np.float32)
    r = fa.swiglu.forward_backward(dx, ddy, out=(y, dx), backend="cuda")   # dx over x
    assert r[0] is y and r[1] is dx
    assert_close((y, dx), want, np.float32)
    d = cuda.to_device(x)
    for bad in (lambda: fa.glu(cuda.to_device(np.ones((2, 3), np.float32)), backend="cuda"),
                lambda: fa.glu(cuda.to_device(np.float32(1.0)), backend="cuda"),
                lambda: fa.glu(d, axis=2, backend="cuda"),
                lambda: fa.glu.backward(d, cuda.to_device(np.ones((4, 6), np.float32)),
                                        backend="cuda"),
                lambda: fa.glu(d, out=cuda.device_array((4, 6), np.float32), backend="cuda")):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(ValueError):
        fa.glu(np.ones((2, 3)), backend="cuda")


def test_prelu_matches_cpu():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 4, 5))
    x[0, 1, 2], x[2, 3, 0] = np.nan, -np.inf
    dy = rng.uniform(-1, 1, x.shape)
    w = rng.uniform(0, 0.5, 4)
    for dt in (np.float32, np.float64, np.float16):
        a, d, wt = x.astype(dt), dy.astype(dt), w.astype(dt)
        with np.errstate(all="ignore"):
            for pass_name, args in (("forward", (a, wt)), ("backward", (a, d, wt)),
                                    ("forward_backward", (a, d, wt))):
                if dt != np.float32 and pass_name == "backward":
                    continue
                f = fa.prelu if pass_name == "forward" else getattr(fa.prelu, pass_name)
                want = f(*args, backend="cpu")
                got = f(*_dev(args), backend="cuda")
                assert all(core.is_device_array(g) for g in as_tuple(got))
                # dweight: block sums in the compute dtype (the CPU sums in float64)
                assert_close(got, want, dt, 1.0 if pass_name == "forward" else 10.0)
    # one weight (scalar and shape (1,)), another axis, many segments per channel
    xb = rng.standard_normal((2, 3, 70)).astype(np.float32)
    db = rng.uniform(-1, 1, xb.shape).astype(np.float32)
    for wt, axis in ((np.float32(0.25), 1), (np.array([0.1], np.float32), 1),
                     (rng.uniform(0, 1, 70).astype(np.float32), -1),
                     (rng.uniform(0, 1, 2).astype(np.float32), 0)):
        got = fa.prelu.backward(xb, db, wt, axis=axis, backend="cuda")
        assert isinstance(got[0], np.ndarray)
        assert_close(got, fa.prelu.backward(xb, db, wt, axis=axis, backend="cpu"),
                     np.float32, 10.0)


def test_prelu_out_empty_and_errors():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    dy = rng.uniform(-1, 1, x.shape).astype(np.float32)
    w = np.array([0.1, 0.2, 0.3], np.float32)
    want = fa.prelu.forward_backward(x, dy, w, backend="cpu")
    dx, ddy, dw = cuda.to_device(x), cuda.to_device(dy), cuda.to_device(w)
    gw = cuda.device_array(3, np.float32)
    r = fa.prelu.forward_backward(dx, ddy, dw, out=(dx, ddy, gw), backend="cuda")
    assert r[0] is dx and r[1] is ddy and r[2] is gw
    assert_close((dx, ddy, gw), want, np.float32, 10.0)
    e = np.zeros((0, 3), np.float32)
    dxe, dwe = fa.prelu.backward(e, e, w, backend="cuda")
    assert dxe.shape == (0, 3) and dwe.tolist() == [0.0, 0.0, 0.0]
    d = cuda.to_device(x)
    for args in ((d, cuda.to_device(np.ones(4, np.float32))),          # wrong channel count
                 (d, cuda.to_device(np.ones((3, 1), np.float32))),     # 2-d weight
                 (cuda.to_device(np.float32(1.0)), cuda.to_device(w))):  # 0-d x, many weights
        with pytest.raises(ValueError):
            fa.prelu(*args, backend="cuda")
    with pytest.raises(ValueError):
        fa.prelu.backward(d, cuda.to_device(np.ones((2, 3), np.float32)), cuda.to_device(w),
                          backend="cuda")


def test_maxout_and_argmax_match_cpu():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 6, 3))
    x[0, 1, 0] = np.nan                 # NaN wins
    x[1, 2:4, 1] = 5.0                  # ties: the first wins
    x[1, 0, 2] = -np.inf
    dy = rng.uniform(-1, 1, (2, 2, 3))
    for dt in (np.float32, np.float64, np.float16):
        a, d = x.astype(dt), dy.astype(dt)
        for pass_name, args in (("forward", (a, 3)), ("backward", (a, d, 3)),
                                ("forward_backward", (a, d, 3))):
            f = fa.maxout if pass_name == "forward" else getattr(fa.maxout, pass_name)
            want = f(*args, axis=1, backend="cpu")
            got = f(*_dev(args), axis=1, backend="cuda")
            assert all(core.is_device_array(g) for g in as_tuple(got))
            assert_close(got, want, dt)
        for axis in (0, 1, -1):
            got = fa.argmax(cuda.to_device(a), axis=axis, backend="cuda")
            assert core.is_device_array(got) and got.dtype == np.int64
            np.testing.assert_array_equal(host(got), fa.argmax(a, axis=axis, backend="cpu"))
    # last axis, rows longer than a warp: NaN, ties, -inf and all-NaN rows,
    # maxima in every lane position (one warp per row)
    for n in (1, 5, 37, 100):
        z = rng.standard_normal((11, n))
        z[1, :] = -np.inf
        z[2, :] = np.nan
        z[3, n // 2:] = np.nan
        z[4, :] = 2.0
        for r in range(5, 11):
            z[r, (r * 7) % n] = 9.0
            z[r, (r * 3) % n] = 9.0
        for dt in (np.float32, np.float64):
            got = fa.argmax(cuda.to_device(z.astype(dt)), backend="cuda")
            np.testing.assert_array_equal(host(got), np.argmax(z.astype(dt), axis=-1))
    # NumPy in/out, out= on the host and on the device, 0-d, empty
    a = x.astype(np.float32)
    r = fa.argmax(a, axis=1, backend="cuda")
    assert isinstance(r, np.ndarray) and r.dtype == np.int64
    np.testing.assert_array_equal(r, fa.argmax(a, axis=1, backend="cpu"))
    o = np.empty((2, 3), np.int64)
    assert fa.argmax(a, axis=1, out=o, backend="cuda") is o
    np.testing.assert_array_equal(o, r)
    od = cuda.device_array((2, 6), np.int64)
    assert fa.argmax(cuda.to_device(a), out=od, backend="cuda") is od
    np.testing.assert_array_equal(host(od), fa.argmax(a, backend="cpu"))
    assert fa.argmax(np.float32(3.0), backend="cuda").shape == ()
    assert fa.argmax(np.zeros((0, 4), np.float32), backend="cuda").shape == (0,)
    got = fa.maxout.forward_backward(a, dy.astype(np.float32), 3, axis=1, backend="cuda")
    assert_close(got, fa.maxout.forward_backward(a, dy.astype(np.float32), 3, axis=1,
                                                 backend="cpu"), np.float32)


def test_maxout_argmax_out_and_errors():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    dy = rng.uniform(-1, 1, (3, 2)).astype(np.float32)
    want = fa.maxout.forward_backward(x, dy, 2, backend="cpu")
    dx, ddy = cuda.to_device(x), cuda.to_device(dy)
    r = fa.maxout.forward_backward(dx, ddy, 2, out=(ddy, dx), backend="cuda")  # y over dy
    assert r[0] is ddy and r[1] is dx
    assert_close((ddy, dx), want, np.float32)
    d = cuda.to_device(x)
    for bad in (lambda: fa.maxout(d, 3, backend="cuda"),
                lambda: fa.maxout(cuda.to_device(np.float32(1)), 1, backend="cuda"),
                lambda: fa.maxout.backward(d, cuda.to_device(np.ones((3, 4), np.float32)), 2,
                                           backend="cuda"),
                lambda: fa.argmax(cuda.to_device(np.zeros((3, 0), np.float32)),
                                  backend="cuda"),
                lambda: fa.argmax(d, axis=3, backend="cuda"),
                lambda: fa.maxout(d, 0, backend="cuda")):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(TypeError):
        fa.argmax(d, out=cuda.device_array(3, np.float32), backend="cuda")


# ------------------------------------------------------------ losses

LOSSES = [s.name for s in REGISTRY.values() if s.kind == "loss"]
ROW_LOSSES = ("softmax_cross_entropy", "sparse_softmax_cross_entropy", "nll_loss")
LABEL_LOSSES = ("sparse_softmax_cross_entropy", "nll_loss")
# A few option sets per loss (the simulator is slow; the CPU suite covers the rest).
LOSS_OPTIONS = {
    "huber": [{"delta": 0.3}],
    "smooth_l1": [{"beta": 0.25}, {"beta": 0.0}],
    "pseudo_huber": [{"delta": 0.2}],
    "binary_cross_entropy": [{"weight": "elem"}],
    "sigmoid_binary_cross_entropy": [{"weight": "elem", "pos_weight": "row"}],
    "kl_divergence": [{"log_target": True}, {"reduction": "batchmean"}],
    "sigmoid_focal_loss": [{"alpha": -1.0, "gamma": 1.5}],
    "softmax_cross_entropy": [{"label_smoothing": 0.1}],
    "sparse_softmax_cross_entropy": [
        {"weight": "class", "ignore_index": 1, "label_smoothing": 0.15},
        {"z_loss": 1e-2, "softcap": 2.0},
        {"weight": "class", "label_smoothing": 0.1, "z_loss": 1e-3, "softcap": 3.0}],
    "nll_loss": [{"weight": "class", "ignore_index": 1}],
}


def loss_inputs(name, rng, shape=(3, 5), dtype=np.float64):
    """(pred, target) of a loss, class axis last."""
    C = shape[-1]
    if name in LABEL_LOSSES:
        x = 2 * rng.standard_normal(shape)
        if name == "nll_loss":
            x = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
        y = rng.integers(0, C, shape[:-1])
        y.flat[0] = 1
        return x.astype(dtype), y
    if name == "softmax_cross_entropy":
        t = rng.uniform(0, 1, shape)
        return (2 * rng.standard_normal(shape)).astype(dtype), \
            (t / t.sum(-1, keepdims=True)).astype(dtype)
    if name == "binary_cross_entropy":
        return rng.uniform(0.02, 0.98, shape).astype(dtype), rng.uniform(0, 1, shape).astype(dtype)
    if name in ("sigmoid_binary_cross_entropy", "sigmoid_focal_loss"):
        t = np.where(rng.uniform(0, 1, shape) < 0.3, 1.0, rng.uniform(0, 1, shape).round(1))
        return (3 * rng.standard_normal(shape)).astype(dtype), t.astype(dtype)
    if name in ("hinge", "squared_hinge"):
        return (1.5 * rng.standard_normal(shape)).astype(dtype), \
            rng.choice([-1.0, 0.0, 1.0], shape).astype(dtype)
    if name == "kl_divergence":
        t = rng.uniform(0, 1, shape)
        t.flat[::4] = 0.0
        return np.log(rng.uniform(0.01, 1, shape)).astype(dtype), t.astype(dtype)
    return (2 * rng.standard_normal(shape)).astype(dtype), \
        (2 * rng.standard_normal(shape)).astype(dtype)


def loss_options(name, opts, shape, rng, dtype):
    o = dict(opts)
    sizes = {"elem": shape, "class": shape[-1], "row": shape[-1]}
    for key in ("weight", "pos_weight"):
        if isinstance(o.get(key), str):
            o[key] = rng.uniform(0.5, 2, sizes[o[key]]).astype(dtype)
    return o


def _loss_close(got, want, dt, what):
    got = np.asarray(host(got))
    want = np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, what
    rtol = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12,
            np.dtype(np.float16): 2e-3}[np.dtype(dt)]
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol,
                               atol=rtol, equal_nan=True, err_msg=what)


def _loss_cases():
    cases = []
    for name in LOSSES:
        for k, opts in enumerate([{}] + LOSS_OPTIONS.get(name, [])):
            cases.append(pytest.param(name, opts, id=f"{name}-{k}"))
    return cases


@pytest.mark.parametrize("name,opts", _loss_cases())
def test_loss_matches_cpu(name, opts):
    """Every loss, reductions mean/sum/none, both passes, device arrays and NumPy in."""
    op = getattr(fa, name)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    reds = [opts["reduction"]] if "reduction" in opts else ["mean", "sum", "none"]
    f64 = not opts and name in ROW_LOSSES + ("mse", "sigmoid_binary_cross_entropy")
    for dt in ((np.float32, np.float64) if f64 else (np.float32,)):
        pred, target = loss_inputs(name, rng, (3, 5), dt)
        o = loss_options(name, opts, pred.shape, rng, dt)
        o.pop("reduction", None)
        dev = {k: cuda.to_device(v) if isinstance(v, np.ndarray) else v for k, v in o.items()}
        for red in (reds if dt == np.float32 else reds[:1]):
            want_l, want_g = op.value_and_grad(pred, target, reduction=red, backend="cpu", **o)
            l, g = op.value_and_grad(cuda.to_device(pred), cuda.to_device(target),
                                     reduction=red, backend="cuda", **dev)
            assert core.is_device_array(l) and core.is_device_array(g)
            _loss_close(l, want_l, dt, f"{red} loss")
            _loss_close(g, want_g, dt, f"{red} grad")
        red = reds[-1]
        lf = op(pred, target, reduction=red, backend="cuda", **o)   # forward, host mode
        assert isinstance(lf, np.ndarray)
        _loss_close(lf, op(pred, target, reduction=red, backend="cpu", **o), dt,
                    f"{red} forward")
    if not opts and name in ROW_LOSSES + ("mse",):
        # NumPy in with backend="cuda": value_and_grad
        pred, target = loss_inputs(name, rng, (4, 3), np.float32)
        got = op.value_and_grad(pred, target, backend="cuda")
        assert all(isinstance(v, np.ndarray) for v in got)
        want = op.value_and_grad(pred, target, backend="cpu")
        _loss_close(got[0], want[0], np.float32, "host loss")
        _loss_close(got[1], want[1], np.float32, "host grad")


def test_rowwise_losses_special_rows_axis_and_float16():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((4, 6)) * 3
    x[1, 2] = -np.inf                     # a -inf logit is fine
    x[2, 0] = np.nan                      # NaN row
    x[3, 4] = np.inf                      # +inf: NaN row, as on the CPU
    y = np.array([0, 1, 3, 2])
    t = rng.uniform(0, 1, x.shape)
    t /= t.sum(-1, keepdims=True)
    for name, target in (("sparse_softmax_cross_entropy", y), ("softmax_cross_entropy", t)):
        op = getattr(fa, name)
        with np.errstate(all="ignore"):
            want = op.value_and_grad(x, target, reduction="none", backend="cpu")
            got = op.value_and_grad(cuda.to_device(x), cuda.to_device(target),
                                    reduction="none", backend="cuda")
        _loss_close(got[0], want[0], np.float64, name + " loss")
        _loss_close(got[1], want[1], np.float64, name + " grad")
    # class axis 1 of a 3-D input (device: an (outer, C, inner) view, no transpose)
    x3 = rng.standard_normal((2, 4, 3)).astype(np.float32)
    y3 = rng.integers(0, 4, (2, 3))
    y3[1, 2] = -100
    w = rng.uniform(0.5, 2, 4).astype(np.float32)
    ce = fa.sparse_softmax_cross_entropy
    for red in ("mean", "none"):
        want = ce.value_and_grad(x3, y3, axis=1, weight=w, reduction=red, backend="cpu")
        got = ce.value_and_grad(cuda.to_device(x3), cuda.to_device(y3), axis=1,
                                weight=cuda.to_device(w), reduction=red, backend="cuda")
        _loss_close(got[0], want[0], np.float32, red)
        _loss_close(got[1], want[1], np.float32, red)
        got = ce.value_and_grad(x3, y3, axis=1, weight=w, reduction=red, backend="cuda")
        _loss_close(got[1], want[1], np.float32, "host " + red)
    t3 = rng.uniform(0, 1, x3.shape).astype(np.float32)
    want = fa.softmax_cross_entropy.value_and_grad(x3, t3, axis=1, backend="cpu")
    got = fa.softmax_cross_entropy.value_and_grad(cuda.to_device(x3), cuda.to_device(t3),
                                                  axis=1, backend="cuda")
    _loss_close(got[0], want[0], np.float32, "dense axis 1")
    _loss_close(got[1], want[1], np.float32, "dense axis 1")
    # float16 in: float32 compute, float16 out; int32 labels
    xh = rng.standard_normal((3, 5)).astype(np.float16)
    yh = np.array([4, 0, 2], np.int32)
    want = ce.value_and_grad(xh, yh, backend="cpu")
    got = ce.value_and_grad(cuda.to_device(xh), cuda.to_device(yh), backend="cuda")
    assert host(got[0]).dtype == np.float16 and host(got[1]).dtype == np.float16
    _loss_close(got[0], want[0], np.float16, "f16")
    _loss_close(got[1], want[1], np.float16, "f16")


def test_loss_empty_and_all_ignored():
    for name in ("mse", "sparse_softmax_cross_entropy"):
        op = getattr(fa, name)
        x = np.zeros((0, 3), np.float32)
        t = np.zeros(0, np.int64) if name in LABEL_LOSSES else x
        l, g = op.value_and_grad(cuda.to_device(x), cuda.to_device(t), backend="cuda")
        assert np.isnan(host(l)) and tuple(g.shape) == (0, 3)
        l, g = op.value_and_grad(x, t, reduction="sum", backend="cuda")
        assert float(l) == 0.0 and g.shape == (0, 3)
    x = np.random.default_rng(0).standard_normal((4, 3))
    y = np.full(4, 7)
    for name in LABEL_LOSSES:
        op = getattr(fa, name)
        l, g = op.value_and_grad(cuda.to_device(x), cuda.to_device(y), ignore_index=7,
                                 backend="cuda")
        assert np.isnan(host(l)) and not host(g).any()
        l, g = op.value_and_grad(x, y, ignore_index=7, reduction="none", backend="cuda")
        assert not l.any() and not g.any()


def test_loss_out_and_aliasing():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    y = np.array([1, 0, 3])
    ce = fa.sparse_softmax_cross_entropy
    want = ce.value_and_grad(x, y, backend="cpu")
    d = cuda.to_device(x)
    l, g = ce.value_and_grad(d, cuda.to_device(y), out=d, backend="cuda")   # in place
    assert g is d
    _loss_close(d, want[1], np.float32, "in place")
    o = cuda.device_array((3, 4), np.float32)
    l, g = ce.value_and_grad(cuda.to_device(x), cuda.to_device(y), out=o, backend="cuda")
    assert g is o
    _loss_close(o, want[1], np.float32, "out")
    h = np.empty_like(x)
    l, g = ce.value_and_grad(x, y, out=h, backend="cuda")
    assert g is h
    _loss_close(h, want[1], np.float32, "host out")
    p, t = loss_inputs("huber", rng, (2, 3), np.float32)
    want = fa.huber.value_and_grad(p, t, backend="cpu")
    dp = cuda.to_device(p)
    l, g = fa.huber.value_and_grad(dp, cuda.to_device(t), out=dp, backend="cuda")
    assert g is dp and tuple(l.shape) == ()
    _loss_close(l, want[0], np.float32, "huber loss")
    _loss_close(dp, want[1], np.float32, "huber in place")
    for name in ("rmse",):
        for red in ("mean", "sum", "none"):
            want = fa.rmse.value_and_grad(p, t, reduction=red, backend="cpu")
            got = fa.rmse.value_and_grad(cuda.to_device(p), cuda.to_device(t), reduction=red,
                                         backend="cuda")
            _loss_close(got[0], want[0], np.float32, "rmse " + red)
            _loss_close(got[1], want[1], np.float32, "rmse " + red)


def test_loss_errors_match_cpu():
    rng = np.random.default_rng(14)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    y = np.array([0, 1, 2, 3])
    for name in LABEL_LOSSES:
        op = getattr(fa, name)
        for bad_label in (5, -1):
            bad = y.copy()
            bad[2] = bad_label
            with pytest.raises(ValueError) as cpu_err:
                op.value_and_grad(x, bad, backend="cpu")
            g = cuda.to_device(np.zeros_like(x))
            with pytest.raises(ValueError) as gpu_err:
                op.value_and_grad(cuda.to_device(x), cuda.to_device(bad), out=g,
                                  backend="cuda")
            assert str(gpu_err.value) == str(cpu_err.value)
            assert not host(g).any()                  # nothing written before the check
            with pytest.raises(ValueError, match="row 2"):
                op.value_and_grad(x, bad, backend="cuda")
        y2 = np.zeros((2, 3), np.int64)
        y2[1, 2] = 9
        x3 = rng.standard_normal((2, 3, 5)).astype(np.float32)
        with pytest.raises(ValueError) as cpu_err:
            op.value_and_grad(x3, y2, backend="cpu")
        with pytest.raises(ValueError) as gpu_err:
            op.value_and_grad(cuda.to_device(x3), cuda.to_device(y2), backend="cuda")
        assert str(gpu_err.value) == str(cpu_err.value)
        d = cuda.to_device(x)
        with pytest.raises(TypeError, match="integer"):
            op.value_and_grad(d, cuda.to_device(y.astype(np.float32)), backend="cuda")
        with pytest.raises(ValueError):
            op.value_and_grad(d, cuda.to_device(y[:3]), backend="cuda")
        with pytest.raises(ValueError):
            op.value_and_grad(d, cuda.to_device(y), weight=np.ones(4), backend="cuda")
        with pytest.raises(ValueError):
            op.value_and_grad(cuda.to_device(np.float32(1.0)), cuda.to_device(np.int64(0)),
                              backend="cuda")
    d = cuda.to_device(x)
    with pytest.raises(ValueError):
        fa.mse.value_and_grad(d, cuda.to_device(x[:3]), backend="cuda")
    with pytest.raises(TypeError):
        fa.mse.value_and_grad(cuda.to_device(x.astype(np.complex64)), d, backend="cuda")
    with pytest.raises(TypeError):
        fa.mse.value_and_grad(d, d, nonsense=1, backend="cuda")
    with pytest.raises(ValueError):
        fa.mse.value_and_grad(d, d, reduction="avg", backend="cuda")
    with pytest.raises(ValueError):
        fa.sigmoid_binary_cross_entropy.value_and_grad(d, d, pos_weight=np.ones(3),
                                                       backend="cuda")
    with pytest.raises(ValueError):
        fa.sparse_softmax_cross_entropy.value_and_grad(d, cuda.to_device(y), softcap=-1.0,
                                                       backend="cuda")
    p = rng.uniform(0.1, 0.9, (2, 3)).astype(np.float32)
    t = p.copy()
    t[1, 1] = 1.5
    with pytest.raises(ValueError) as cpu_err:
        fa.binary_cross_entropy.value_and_grad(p, t, backend="cpu")
    with pytest.raises(ValueError) as gpu_err:
        fa.binary_cross_entropy.value_and_grad(cuda.to_device(p), cuda.to_device(t),
                                               backend="cuda")
    assert str(gpu_err.value) == str(cpu_err.value)
    q = p.copy()
    q[0, 2] = -0.5
    with pytest.raises(ValueError, match="probabilities"):
        fa.binary_cross_entropy.value_and_grad(cuda.to_device(q), cuda.to_device(p),
                                               backend="cuda")
    with pytest.raises(TypeError):
        fa.mse(d, d, out=cuda.device_array((4, 5), np.float32), backend="cuda")


# --------------------------------------------------------------- containers

def test_backend_listed_and_info():
    assert "cuda" in fa.available_backends()
    info = fa.info()["cuda"]
    assert info["available"]
    if SIM:
        assert info["name"] == "simulator"


def test_numpy_in_numpy_out_with_backend_cuda():
    rng = np.random.default_rng(3)
    for dt in DTYPES:
        x = rng.standard_normal((3, 4)).astype(dt)
        y = fa.silu(x, backend="cuda")
        assert isinstance(y, np.ndarray) and y.dtype == dt and y.shape == x.shape
        assert_close(y, fa.silu(x, backend="cpu"), dt)
    xi = np.arange(-3, 4)                            # integers -> float64, as on the CPU
    assert fa.relu(xi, backend="cuda").dtype == np.float64
    assert fa.relu([1.0, -2.0], backend="cuda").tolist() == [1.0, 0.0]
    z = np.array(-1.0, np.float32)
    assert fa.relu(z, backend="cuda").shape == fa.relu(z, backend="cpu").shape
    assert fa.relu(np.zeros(0, np.float32), backend="cuda").shape == (0,)


def test_torch_cpu_in_torch_out_with_backend_cuda():
    torch = pytest.importorskip("torch")
    t = torch.linspace(-3, 3, 11)
    y = fa.gelu(t, backend="cuda", approximate="tanh")
    assert isinstance(y, torch.Tensor)
    assert_close(y.numpy(), fa.gelu(t.numpy(), backend="cpu", approximate="tanh"), np.float32)


def test_device_in_device_out_float16_and_layouts():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 5)).astype(np.float16)
    d = cuda.to_device(x)
    y, g = fa.tanh.value_and_derivative(d, backend="cuda")
    assert core.is_device_array(y) and y.dtype == np.float16 and tuple(y.shape) == (6, 5)
    assert_close((y, g), fa.tanh.value_and_derivative(x, backend="cpu"), np.float16)
    # non-contiguous and transposed device inputs are gathered on the device
    xs = rng.standard_normal((8, 6)).astype(np.float32)
    ds = cuda.to_device(xs)
    assert_close(fa.elu(ds[::2, 1:], backend="cuda"), fa.elu(xs[::2, 1:], backend="cpu"),
                 np.float32)
    assert_close(fa.elu(ds.T, backend="cuda"), fa.elu(np.ascontiguousarray(xs.T), backend="cpu"),
                 np.float32)
    # integer device array -> float64
    di = cuda.to_device(np.arange(-2, 3))
    r = fa.relu(di, backend="cuda")
    assert r.dtype == np.float64 and host(r).tolist() == [0.0, 0.0, 0.0, 1.0, 2.0]


class ForeignArray:
    """A producer that only exposes __cuda_array_interface__ (like CuPy, torch CUDA).

    Under the simulator "device memory" is host memory, so the interface points
    at a NumPy buffer and writes through it are visible there.
    """

    def __init__(self, a):
        self.a = a
        ai = a.__array_interface__
        self.__cuda_array_interface__ = {"shape": a.shape, "typestr": ai["typestr"],
                                         "data": (ai["data"][0], False),
                                         "strides": ai["strides"], "version": 3}


@pytest.mark.skipif(not SIM, reason="the foreign buffer is host memory (simulator only)")
def test_foreign_cuda_array_interface_zero_copy_auto():
    x = np.linspace(-2, 2, 9).astype(np.float32)
    fx = ForeignArray(x)
    y = fa.softplus(fx)                       # backend auto picks cuda for device arrays
    assert core.is_device_array(y)
    assert_close(y, fa.softplus(x, backend="cpu"), np.float32)
    # out= into the foreign buffer writes the producer's memory (no copy)
    buf = np.zeros(9, np.float32)
    r = fa.softplus(fx, out=ForeignArray(buf))
    assert isinstance(r, ForeignArray)
    assert_close(buf, fa.softplus(x, backend="cpu"), np.float32)
    # in place: out aliases the input exactly
    fa.softplus(fx, out=fx)
    assert_close(x, fa.softplus(np.linspace(-2, 2, 9).astype(np.float32), backend="cpu"),
                 np.float32)


def test_auto_backend_with_numba_device_array():
    from fastact import dispatch
    d = cuda.to_device(np.ones(3, np.float32))
    if not dispatch.is_device_array(d):
        pytest.skip("fastact.dispatch.is_device_array does not recognise simulator device "
                    "arrays (they lack __cuda_array_interface__); backend='cuda' works")
    assert core.is_device_array(fa.relu(d))


# ------------------------------------------------------------------- launches

@cuda.jit
def _launch_probe(a1, a2, a3, f32, f64, i64, flag, pair, out):
    i = cuda.grid(1)
    if i < out.size:
        v = (a1[i % a1.size] + a2[i % a2.shape[0], i % a2.shape[1]]
             + a3[i % a3.shape[0], 0, i % a3.shape[2]] + f32 + f64 + i64 + pair[0] * pair[1])
        out[i] = v if flag else -v


def test_launch_lays_out_arguments_as_numba():
    """core.launch gives what kernel[blocks, threads](...) gives, for arrays of 1 to
    3 dimensions (C, Fortran and strided layouts), float32, float64, int64 and
    bool scalars and a tuple; on a GPU from its second call on by its own
    argument layout (core._Launcher), which these results check."""
    rng = np.random.default_rng(11)
    a1 = cuda.to_device(rng.standard_normal(37))
    a2 = cuda.to_device(rng.standard_normal((6, 5))).T            # Fortran order
    a3 = cuda.to_device(rng.standard_normal((4, 3, 9)))[:, ::2, 1::3]   # strided
    args = (a1, a2, a3, np.float32(0.25), np.float64(-1.5), np.int64(3), False,
            (np.float64(2.0), np.float64(0.5)))
    want = cuda.to_device(np.full(128, np.nan))
    _launch_probe[2, 64](*args, want)
    for _ in range(3):
        got = cuda.to_device(np.full(128, np.nan))
        core.launch(_launch_probe, 2, 64, *args, got)
        np.testing.assert_array_equal(got.copy_to_host(), want.copy_to_host())
    if not SIM and core._launcher.ok:
        key = (_launch_probe, *map(core.arg_key, (*args, got)))
        assert core._launcher.plans[key], "the short launch path was not taken"


@pytest.mark.skipif(SIM, reason="needs torch CUDA tensors (a real GPU)")
def test_torch_cuda_tensors_take_the_direct_path(monkeypatch):
    """Contiguous float32/float64 torch CUDA tensors without out= skip the device
    arrays (cuda.elementwise._run_torch) once the general path has launched the
    kernel: same results as the general path (out= given) bit for bit, and as
    the CPU; a transposed input takes the general path."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    gen = torch.Generator(device="cuda").manual_seed(3)
    cases = [("relu", "forward_backward", {}), ("gelu", "value_and_derivative", {}),
             ("softplus", "backward", {"beta": 2.0}), ("sigmoid", "forward", {})]
    for tdt, dt in ((torch.float32, np.float32), (torch.float64, np.float64)):
        x = torch.randn(3, 257, dtype=tdt, device="cuda", generator=gen) * 4
        dy = torch.randn(3, 257, dtype=tdt, device="cuda", generator=gen)
        for name, pass_name, kw in cases:
            op = getattr(fa, name)
            fn = op if pass_name == "forward" else getattr(op, pass_name)
            args = (x,) if pass_name in ("forward", "value_and_derivative") else (x, dy)
            fn(*args, **kw)                          # the general path makes the plan
            with monkeypatch.context() as m:
                m.setattr(core, "prepare", lambda *a, **k: pytest.fail("general path taken"))
                got = as_tuple(fn(*args, **kw))
            outs = tuple(torch.empty_like(x) for _ in got)
            want = as_tuple(fn(*args, out=outs if len(outs) > 1 else outs[0], **kw))
            cpu = as_tuple(fn(*[a.cpu().numpy() for a in args], backend="cpu", **kw))
            for g, w, c in zip(got, want, cpu):
                assert isinstance(g, torch.Tensor) and g.is_cuda and g.dtype == tdt
                assert torch.equal(g, w), f"{name}.{pass_name}"
                assert_close(g.cpu().numpy(), c, dt)
        xt = x.T
        assert_close(fa.relu.forward_backward(xt, xt)[1].cpu().numpy(),
                     fa.relu.forward_backward(xt.cpu().numpy(), xt.cpu().numpy())[1], dt)


# ----------------------------------------------------------------------- out=

def test_out_on_device():
    rng = np.random.default_rng(5)
    x = rng.standard_normal(50).astype(np.float32)
    dy = rng.uniform(-1, 1, 50).astype(np.float32)
    want = fa.mish.forward_backward(x, dy, backend="cpu")
    dx, ddy = cuda.to_device(x), cuda.to_device(dy)
    o1, o2 = cuda.device_array(50, np.float32), cuda.device_array(50, np.float32)
    r = fa.mish.forward_backward(dx, ddy, out=(o1, o2), backend="cuda")
    assert r[0] is o1 and r[1] is o2
    assert_close((o1, o2), want, np.float32)
    # aliasing: y over x, dx over dy
    r = fa.mish.forward_backward(dx, ddy, out=(dx, ddy), backend="cuda")
    assert r[0] is dx
    assert_close((dx, ddy), want, np.float32)
    # one allocated, one given
    o = cuda.device_array(50, np.float32)
    r = fa.mish.forward_backward(cuda.to_device(x), cuda.to_device(dy), out=(None, o),
                                 backend="cuda")
    assert r[1] is o and core.is_device_array(r[0])
    assert_close(r, want, np.float32)
    # non-contiguous out: written through a temporary
    big = cuda.to_device(np.zeros(100, np.float32))
    fa.mish(cuda.to_device(x), out=big[::2], backend="cuda")
    assert_close(host(big)[::2], want[0], np.float32)
    assert not host(big)[1::2].any()
    # float16 out of a float16 call
    h = cuda.device_array(50, np.float16)
    fa.mish(cuda.to_device(x.astype(np.float16)), out=h, backend="cuda")
    assert_close(h, fa.mish(x.astype(np.float16), backend="cpu"), np.float16)
    # rowwise out= aliasing its input
    xr = cuda.to_device(x.reshape(5, 10))
    fa.softmax(xr, out=xr, backend="cuda")
    assert_close(xr, fa.softmax(x.reshape(5, 10), backend="cpu"), np.float32, ROW_SCALE)


def test_out_numpy_with_backend_cuda():
    x = np.linspace(-3, 3, 7)
    o = np.empty(7)
    assert fa.selu(x, out=o, backend="cuda") is o
    assert_close(o, fa.selu(x, backend="cpu"), np.float64)
    fa.selu(x, out=x, backend="cuda")
    assert_close(x, o, np.float64)


def test_out_errors():
    d = cuda.to_device(np.ones(4, np.float32))
    with pytest.raises(TypeError):
        fa.relu(d, out=cuda.device_array(4, np.float64), backend="cuda")
    with pytest.raises(ValueError):
        fa.relu(d, out=cuda.device_array(5, np.float32), backend="cuda")
    with pytest.raises(TypeError):
        fa.relu(d, out=np.empty(4, np.float32), backend="cuda")
    o = cuda.device_array(4, np.float32)
    with pytest.raises(ValueError):
        fa.relu.value_and_derivative(d, out=(o, o), backend="cuda")
    with pytest.raises(ValueError):
        fa.relu.value_and_derivative(d, out=o, backend="cuda")
    # host out with NumPy input: the CPU path's checks
    with pytest.raises(TypeError):
        fa.relu(np.ones(4, np.float32), out=np.empty(4, np.float64), backend="cuda")


# --------------------------------------------------------------------- errors

def test_input_errors_match_cpu():
    for backend, mk in (("cpu", np.asarray), ("cuda", cuda.to_device)):
        with pytest.raises(TypeError, match="complex"):
            fa.relu(mk(np.ones(3, np.complex64)), backend=backend)
        with pytest.raises(ValueError, match="shape"):
            fa.relu.backward(mk(np.ones(3, np.float32)), mk(np.ones(4, np.float32)),
                             backend=backend)
        with pytest.raises(TypeError):
            fa.relu(mk(np.ones(3, np.float32)), bogus=1, backend=backend)
        with pytest.raises(ValueError):
            fa.gelu(mk(np.ones(3, np.float32)), approximate="nope", backend=backend)
        with pytest.raises(TypeError):
            fa.threshold(mk(np.ones(3, np.float32)), backend=backend)
    with pytest.raises(TypeError):
        fa.relu(np.array(["a"]), backend="cuda")


def test_unsupported_kinds_raise_not_implemented():
    """Kinds without a CUDA lowering fail cleanly (NotImplementedError), never crash."""
    missing = sorted({s.kind for s in REGISTRY.values()} - kernel_kinds())
    for kind in missing:
        assert not fcuda.supports(kind)
        with pytest.raises(NotImplementedError):
            fcuda._lowering(kind)
    for kind in kernel_kinds():
        assert fcuda.supports(kind)


# ------------------------------------------------------------ real-GPU lowering

def test_kernels_lower_for_the_cuda_target(tmp_path):
    """Every kernel types and lowers for the real CUDA target (no GPU, no NVVM needed),
    float32 kernels without float64 arithmetic, after the same ops have been
    compiled for the CPU in the same process (an empty Numba cache, so that they
    compile there).  Quick subset; the full set runs in ci/gpu_check.sh."""
    script = os.path.join(os.path.dirname(__file__), "cuda_lowering.py")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0", NUMBA_CACHE_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, script, "--quick", "--cpu-first"], capture_output=True,
                       text=True, env=env, timeout=1200)
    tail = (r.stdout + r.stderr)[-3000:]
    if "Compute Capability" in tail or "No module named 'numba.cuda.compiler'" in tail:
        pytest.skip("numba-cuda front end unavailable: " + tail[-300:])
    assert r.returncode == 0, tail
    assert "0 failed" in r.stdout
