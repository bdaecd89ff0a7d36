"""Elementwise activations: every op of the registry, every pass, both float dtypes."""
import re
import sys

import numpy as np
import pytest
from conftest import FLOATS, RTOL, call_kwargs, default_params, elementwise_variants
from reference import kinks, reference
from torch_reference import ELEMENTWISE as TORCH, torch, torch_value_and_derivative

import fastact as fa

VARIANTS = elementwise_variants()
IDS = [f"{n}-{c}" if c else n for n, c in VARIANTS]


def samples(spec, params, dtype, rng):
    lo, hi = spec.domain
    mags = np.logspace(-30 if dtype == np.float32 else -300, np.log10(max(-lo, hi)), 400)
    pts = [np.linspace(lo, hi, 4001), rng.uniform(lo, hi, 2000), mags, -mags]
    for k in kinks(spec.name, params) + [0.0]:
        pts.append(k + np.linspace(-1e-3, 1e-3, 41))
    x = np.concatenate(pts).astype(dtype)
    return x[(x >= lo) & (x <= hi)]


def assert_accurate(got, ref, sens, dtype, what):
    """|got - ref| <= rtol |ref| + 2 sens + tiny, sens the change of ref over one input ulp.

    The sensitivity term only matters where f has a zero that x can't pin down
    exactly (e.g. gelu' near -0.75); elsewhere this is the relative bound.
    """
    dt = np.dtype(dtype)
    tol = RTOL[dt] * np.abs(ref) + 2 * sens + np.finfo(dt).tiny
    err = np.abs(got.astype(np.float64) - ref)
    bad = ~(err <= tol)
    if bad.any():
        i = np.argmax(np.where(bad, err / tol, 0))
        pytest.fail(f"{what}: {bad.sum()} of {bad.size} outside tolerance; worst at "
                    f"index {i}: got {got[i]!r}, reference {ref[i]!r}, tol {tol[i]:.3g}")


def reference_with_sensitivity(name, choice, x, params):
    y, d = reference(name, choice, x, params)
    sy, sd = np.zeros_like(y), np.zeros_like(d)
    for direction in (np.inf, -np.inf):
        xn = np.nextafter(x, x.dtype.type(direction))
        yn, dn = reference(name, choice, xn, params)
        sy = np.maximum(sy, np.abs(yn - y))
        sd = np.maximum(sd, np.abs(dn - d))
    return y, d, sy, sd


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("name,choice", VARIANTS, ids=IDS)
def test_value_and_derivative_against_float64_reference(name, choice, dtype, rng):
    spec = fa.REGISTRY[name]
    params = default_params(spec)
    x = samples(spec, params, dtype, rng)
    y, d = getattr(fa, name).value_and_derivative(x, **call_kwargs(spec, choice, params))
    assert y.dtype == dtype and d.dtype == dtype
    ry, rd, sy, sd = reference_with_sensitivity(name, choice, x, params)
    assert_accurate(y, ry, sy, dtype, f"{name} value")
    assert_accurate(d, rd, sd, dtype, f"{name} derivative")


@pytest.mark.parametrize("name,choice", VARIANTS, ids=IDS)
def test_derivative_against_finite_differences(name, choice, rng):
    spec = fa.REGISTRY[name]
    params = default_params(spec)
    lo, hi = spec.domain
    x = rng.uniform(max(lo, -8), min(hi, 8), 3000)
    for k in kinks(name, params):
        x = x[np.abs(x - k) > 1e-3]
    h = 1e-6
    op = getattr(fa, name)
    kw = call_kwargs(spec, choice, params)
    _, d = op.value_and_derivative(x, **kw)
    fd = (op(x + h, **kw) - op(x - h, **kw)) / (2 * h)
    np.testing.assert_allclose(d, fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("size", [0, 1, 7, 1025, 100003])
@pytest.mark.parametrize("name,choice", VARIANTS, ids=IDS)
def test_every_pass_agrees_at_every_size(name, choice, size, rng):
    """forward/backward/forward_backward/value_and_derivative, serial and parallel sizes."""
    spec = fa.REGISTRY[name]
    op = getattr(fa, name)
    kw = call_kwargs(spec, choice, default_params(spec))
    x = (rng.standard_normal(size) * 4).astype(np.float32)
    dy = rng.uniform(-1, 1, size).astype(np.float32)
    y, d = op.value_and_derivative(x, **kw)
    ry, rd = reference(name, choice, x, default_params(spec))
    np.testing.assert_allclose(y, ry, rtol=2e-6, atol=1e-30)
    np.testing.assert_allclose(d, rd, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(op(x, **kw), y, rtol=3e-7, atol=1e-30)
    np.testing.assert_allclose(op.backward(x, dy, **kw), dy * d, rtol=3e-7, atol=1e-30)
    y2, dx2 = op.forward_backward(x, dy, **kw)
    np.testing.assert_allclose(y2, y, rtol=3e-7, atol=1e-30)
    np.testing.assert_allclose(dx2, dy * d, rtol=3e-7, atol=1e-30)
    if spec.scalars_for(choice).derivative_from_output is not None:
        # from the output, 1 - y cancels where y saturates: one ulp of 1, absolute
        np.testing.assert_allclose(op.backward_from_output(y, dy, **kw), dy * d,
                                   rtol=1e-6, atol=2.4e-7)


@pytest.mark.parametrize("name,choice", VARIANTS, ids=IDS)
def test_numpy_baseline_agrees(name, choice, rng):
    spec = fa.REGISTRY[name]
    op = getattr(fa, name)
    kw = call_kwargs(spec, choice, default_params(spec))
    x = rng.standard_normal(500) * 3
    dy = rng.uniform(-1, 1, 500)
    for pass_name, args in (("value_and_derivative", (x,)), ("forward_backward", (x, dy)),
                            ("backward", (x, dy))):
        fast = getattr(op, pass_name)(*args, **kw)
        base = getattr(op, pass_name)(*args, backend="numpy", **kw)
        np.testing.assert_allclose(fast, base, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(op(x, **kw), op(x, backend="numpy", **kw), rtol=1e-9, atol=1e-12)


BAKED = [v for v in VARIANTS if fa.REGISTRY[v[0]].default_numeric]


@pytest.mark.parametrize("name,choice", BAKED, ids=[f"{n}-{c}" if c else n for n, c in BAKED])
def test_default_parameters_take_a_kernel_with_them_as_constants(name, choice, rng):
    # Calls with an op's default parameter values run a kernel compiled with
    # those values as constants: every pass gives bit for bit what the kernel
    # that takes them as arguments gives, special values included, and the
    # public call (defaults omitted or passed) is that kernel.
    from fastact.cpu import elementwise as cpu_elementwise
    from fastact.registry import baked_scalars
    spec = fa.REGISTRY[name]
    op = getattr(fa, name)
    scalars = spec.scalars_for(choice)
    defaults = spec.default_numeric
    baked = baked_scalars(scalars, defaults)
    assert baked is baked_scalars(scalars, defaults)
    kw = call_kwargs(spec, choice, {})
    for dt in FLOATS:
        x = np.concatenate([rng.standard_normal(997) * 4, special_values(dt),
                            np.linspace(-25, 25, 101)]).astype(dt)
        dy = rng.uniform(-1, 1, x.size).astype(dt)
        y, _ = op.value_and_derivative(x, **kw)
        for pass_name, (_, which, n_in, n_out) in cpu_elementwise.PASSES.items():
            if getattr(scalars, which) is None:
                continue
            ins = [y if pass_name == "backward_from_output" else x, dy][:n_in]
            il = spec.interleave_for(scalars, dt)
            general = cpu_elementwise.kernel(scalars, pass_name, len(defaults),
                                             spec.transcendental, il)
            folded = cpu_elementwise.kernel(baked, pass_name, 0, spec.transcendental, il)
            assert op._cpu_kernel(scalars, pass_name, defaults, np.dtype(dt)) == (folded, ())
            want = [np.empty_like(x) for _ in range(n_out)]
            got = [np.empty_like(x) for _ in range(n_out)]
            general(ins, want, tuple(dt(v) for v in defaults))
            folded(ins, got, ())
            for w, g in zip(want, got):
                np.testing.assert_array_equal(g, w, err_msg=f"{name} {pass_name} {dt.__name__}")
            method = op if pass_name == "forward" else getattr(op, pass_name)
            explicit = dict(kw, **{p.name: p.default for p in spec.numeric_params})
            for call_kw in (kw, explicit):
                res = method(*ins, **call_kw)
                res = res if isinstance(res, tuple) else (res,)
                for w, g in zip(want, res):
                    np.testing.assert_array_equal(g, w)


def special_values(dtype):
    fi = np.finfo(dtype)
    return np.array([0.0, -0.0, np.inf, -np.inf, np.nan, fi.max, -fi.max, fi.tiny, -fi.tiny,
                     fi.smallest_subnormal, -fi.smallest_subnormal, 1.0, -1.0, 3.0, -3.0,
                     6.0, 0.5, -0.5, 20.0, -20.0], dtype=dtype)


# PyTorch results fastact deliberately does not reproduce (float32 artifacts of
# PyTorch whose float64 path gives the exact answer, which fastact follows:
# gelu(+inf) = +inf and gelu(max) = max, not NaN and an overflow to inf).
DEVIATIONS = {
    ("gelu", "none", np.float32): {"value": [np.inf, np.finfo(np.float32).max]},
    ("elu", None, np.float32): {"derivative": [np.nan]},
    ("selu", None, np.float32): {"derivative": [np.nan]},
    ("celu", None, np.float32): {"derivative": [np.nan]},
    ("hard_swish", None, np.float32): {"derivative": [np.nan]},
}


# Parameter values other than the defaults, with the special inputs: where a
# parameter scales x (beta x overflows at |x| near max when beta > 1).
SPECIAL_PARAMS = {
    "swish": [{"beta": 2.0}, {"beta": 0.5}, {"beta": -2.0}, {"beta": 1e30}],
    "softplus": [{"beta": 2.0, "threshold": 20.0}, {"beta": 0.5, "threshold": 5.0}],
    "elu": [{"alpha": 2.0}, {"alpha": 0.5}],
    "celu": [{"alpha": 2.0}, {"alpha": 0.5}],
    "leaky_relu": [{"negative_slope": 2.0}],
}
TORCH_CASES = [(n, c, None) for n, c in VARIANTS if (n, c) in TORCH] + [
    (n, c, p) for n, c in VARIANTS if (n, c) in TORCH for p in SPECIAL_PARAMS.get(n, [])]
TORCH_IDS = [(f"{n}-{c}" if c else n) + "".join(f"-{k}={v:g}" for k, v in (p or {}).items())
             for n, c, p in TORCH_CASES]


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("name,choice,params", TORCH_CASES, ids=TORCH_IDS)
def test_special_values_match_pytorch(name, choice, params, dtype):
    spec = fa.REGISTRY[name]
    params = default_params(spec) if params is None else params
    x = special_values(dtype)
    y, d = getattr(fa, name).value_and_derivative(x, **call_kwargs(spec, choice, params))
    ty, td = torch_value_and_derivative((name, choice), x, params)
    # Only the special inputs, and the kinks of the piecewise-linear ops: at other
    # points of the smooth ops fastact is the more exact one (see the reference test).
    exact = ~np.isfinite(x) | (np.abs(x) >= np.finfo(dtype).max / 2) | (np.abs(x) <= 1e-30)
    if not spec.transcendental:
        exact |= np.isin(x, [1.0, -1.0, 3.0, -3.0, 6.0, 0.5, -0.5])
    skip = DEVIATIONS.get((name, choice, dtype), {})
    for what, got, want in (("value", y, ty), ("derivative", d, td)):
        for i in np.where(exact)[0]:
            if any(x[i] == s or (np.isnan(s) and np.isnan(x[i])) for s in skip.get(what, [])):
                continue
            g, w = got[i], want[i]
            if np.isnan(w) or np.isnan(g) or not np.isfinite(w) or w == 0:
                assert (np.isnan(g) and np.isnan(w)) or g == w, \
                    f"{name} {what} at {x[i]!r}: fastact {g!r}, PyTorch {w!r}"
            else:
                # relative, or one denormal ulp where results underflow
                assert abs(g - w) <= max(1e-5 * abs(w), np.finfo(dtype).smallest_subnormal), \
                    f"{name} {what} at {x[i]!r}: fastact {g!r}, PyTorch {w!r}"


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_swish_where_beta_x_overflows(dtype):
    # beta x = +-inf: the limits x and -0 (x sigmoid(beta x), as PyTorch), derivative
    # 1 and +0, in every pass, in the small-input and the parallel kernels
    big = np.finfo(dtype).max
    x = np.array([big, -big, big / 4, -big / 4], dtype)
    want_y = np.array([big, -0.0, big / 4, -0.0], dtype)
    want_d = np.array([1.0, 0.0, 1.0, 0.0], dtype)
    for n in (1, 10000):
        xs = np.tile(x, n)
        y, d = fa.swish.value_and_derivative(xs, beta=2.0)
        np.testing.assert_array_equal(y, np.tile(want_y, n))
        np.testing.assert_array_equal(np.signbit(y), np.signbit(np.tile(want_y, n)))
        np.testing.assert_array_equal(d, np.tile(want_d, n))
        assert not np.signbit(d).any()
        dy = np.full_like(xs, 2.0)
        np.testing.assert_array_equal(fa.swish.backward(xs, dy, beta=2.0), 2 * np.tile(want_d, n))
        _, g = fa.swish.forward_backward(xs, dy, beta=2.0)
        np.testing.assert_array_equal(g, 2 * np.tile(want_d, n))


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_log_2_at_zero_is_correctly_rounded(dtype):
    # softplus(0) = -log_sigmoid(0) = log 2 (jax's tests assert equality), both
    # derivatives 1/2, in the small-input and the parallel kernels
    ln2 = dtype(np.log(2.0))
    for n in (1, 40000):
        x = np.zeros(n, dtype)
        y, d = fa.softplus.value_and_derivative(x)
        assert np.all(y == ln2) and np.all(d == 0.5), (n, y[0], d[0])
        y, d = fa.log_sigmoid.value_and_derivative(x)
        assert np.all(y == -ln2) and np.all(d == 0.5), (n, y[0], d[0])
    assert fa.softplus(dtype(0.0)) == ln2 and fa.log_sigmoid(dtype(0.0)) == -ln2


# ------------------------------------------------------------ shapes, out=, dtypes

OPS_FOR_LAYOUT = ["relu", "sigmoid", "gelu", "softplus"]


@pytest.mark.parametrize("name", OPS_FOR_LAYOUT)
def test_zero_d_and_three_d_and_strided_inputs(name, rng):
    op = getattr(fa, name)
    x3 = rng.standard_normal((5, 6, 7)).astype(np.float32)
    y3, d3 = op.value_and_derivative(x3)
    assert y3.shape == (5, 6, 7)
    yf, df = op.value_and_derivative(x3.ravel())
    np.testing.assert_array_equal(y3.ravel(), yf)
    for view in (x3[:, ::2, 1:], x3.transpose(2, 0, 1), np.asfortranarray(x3), x3[..., ::-1]):
        yv, dv = op.value_and_derivative(view)
        yc, dc = op.value_and_derivative(np.ascontiguousarray(view))
        assert yv.shape == view.shape
        np.testing.assert_array_equal(yv, yc)
        np.testing.assert_array_equal(dv, dc)
    x0 = np.array(0.75, dtype=np.float64)
    y0, d0 = op.value_and_derivative(x0)
    assert y0.shape == () and d0.shape == ()
    np.testing.assert_allclose(y0, op.value_and_derivative(np.array([0.75]))[0][0])


@pytest.mark.parametrize("name", OPS_FOR_LAYOUT)
def test_out_including_aliasing(name, rng):
    op = getattr(fa, name)
    x = rng.standard_normal((64, 33)).astype(np.float32)
    dy = rng.standard_normal((64, 33)).astype(np.float32)
    y_ref, d_ref = op.value_and_derivative(x)
    # preallocated outputs
    y, d = np.empty_like(x), np.empty_like(x)
    r = op.value_and_derivative(x, out=(y, d))
    assert r[0] is y and r[1] is d
    np.testing.assert_array_equal(y, y_ref)
    # in place: out aliases the input
    xc = x.copy()
    assert op(xc, out=xc) is xc
    np.testing.assert_array_equal(xc, y_ref)
    # backward writing over dy, forward_backward writing over x and dy
    dyc, xc = dy.copy(), x.copy()
    op.backward(x, dyc, out=dyc)
    np.testing.assert_allclose(dyc, dy * d_ref, rtol=3e-7)
    dyc = dy.copy()
    op.forward_backward(xc, dyc, out=(xc, dyc))
    np.testing.assert_allclose(xc, y_ref, rtol=3e-7)
    np.testing.assert_allclose(dyc, dy * d_ref, rtol=3e-7)
    # a strided out and a partially overlapping out go through a temporary
    big = np.zeros((64, 66), np.float32)
    op(x, out=big[:, ::2])
    np.testing.assert_array_equal(big[:, ::2], y_ref)
    flat = x.ravel().copy()
    op(flat[:-1], out=flat[1:])
    np.testing.assert_array_equal(flat[1:], y_ref.ravel()[:-1])


@pytest.mark.parametrize("name", OPS_FOR_LAYOUT)
def test_dtype_rules(name):
    op = getattr(fa, name)
    x16 = np.linspace(-3, 3, 101).astype(np.float16)
    y16, d16 = op.value_and_derivative(x16)
    assert y16.dtype == np.float16 and d16.dtype == np.float16
    y32, _ = op.value_and_derivative(x16.astype(np.float32))
    np.testing.assert_array_equal(y16, y32.astype(np.float16))
    for ints in (np.arange(-3, 4), np.arange(-3, 4, dtype=np.int8), np.array([True, False])):
        y, d = op.value_and_derivative(ints)
        assert y.dtype == np.float64
        np.testing.assert_array_equal(y, op(ints.astype(np.float64)))
    out16 = np.empty(101, np.float16)
    assert op(x16, out=out16) is out16
    np.testing.assert_array_equal(out16, y16)
    # mixed x float32 and dy float64 promote to float64
    dx = op.backward(np.ones(3, np.float32), np.ones(3, np.float64))
    assert dx.dtype == np.float64
    # python scalars and lists
    assert op(0.5).shape == () and op([0.5, 1.0]).shape == (2,)


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
def test_torch_tensors_in_and_out():
    x = torch.linspace(-3, 3, 50)
    y, d = fa.silu.value_and_derivative(x)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    np.testing.assert_allclose(y.numpy(), torch.nn.functional.silu(x).numpy(), rtol=1e-6)
    xb = x.to(torch.bfloat16)
    yb = fa.silu(xb)
    assert yb.dtype == torch.bfloat16
    xg = x.clone().requires_grad_(True)
    assert isinstance(fa.relu(xg), torch.Tensor)
    # zero-copy in place on a tensor
    t = torch.linspace(-1, 1, 10)
    assert fa.relu(t, out=t) is t and float(t.min()) == 0.0


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
def test_torch_calls_match_numpy_calls():
    """Calls on torch CPU tensors run on NumPy views of them (the short path
    where it applies) and give torch tensors holding what the same call on
    NumPy arrays gives: every op kind, with and without requires_grad, and
    under a default backend other than the CPU's."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 5)).astype(np.float32)
    dy = rng.standard_normal((6, 5)).astype(np.float32)
    labels = rng.integers(0, 5, 6)
    x4 = rng.standard_normal((6, 4)).astype(np.float32)
    dy2 = rng.standard_normal((6, 2)).astype(np.float32)
    w5 = rng.uniform(0, 0.5, 5).astype(np.float32)
    calls = [
        (fa.gelu.forward_backward, (x, dy), {"approximate": "tanh"}),
        (fa.swiglu.forward_backward, (x4, dy2), {}),
        (fa.prelu.forward_backward, (x, dy, w5), {"axis": -1}),
        (fa.maxout.forward_backward, (x4, dy2, 2), {}),
        (fa.sigmoid, (x,), {}),
        (fa.softmax.forward_backward, (x, dy), {}),
        (fa.argmax, (x,), {}),
        (fa.mse.value_and_grad, (x, dy), {"reduction": "sum"}),
        (fa.huber, (x, dy), {"reduction": "none"}),
        (fa.sparse_softmax_cross_entropy.value_and_grad, (x, labels), {}),
        (fa.nll_loss, (x, labels), {}),
    ]
    for backend in ("auto", "numpy"):
        with fa.use_backend(backend):
            for fn, args, kw in calls:
                want = fn(*args, **kw)
                for grad in (False, True):
                    targs = [torch.from_numpy(a.copy()) if isinstance(a, np.ndarray) else a
                             for a in args]
                    if grad:
                        targs[0].requires_grad_(True)
                    got = fn(*targs, **kw)
                    pairs = zip(got, want) if isinstance(want, tuple) else [(got, want)]
                    # forward calls on a tensor that requires grad record
                    # autograd (fastact.torch); the explicit-gradient methods
                    # and argmax return tensors outside the graph
                    recorded = grad and fn in (fa.sigmoid, fa.huber, fa.nll_loss)
                    for g, w in pairs:
                        assert isinstance(g, torch.Tensor), (fn, type(g))
                        assert g.requires_grad == recorded, fn
                        g = g.detach()
                        assert g.numpy().dtype == w.dtype and g.shape == w.shape
                        np.testing.assert_array_equal(g.numpy(), w)
    # out= tensors: written and handed back themselves (the loss value as a new tensor)
    xt, dyt, lt = torch.from_numpy(x), torch.from_numpy(dy), torch.from_numpy(labels)
    y_ref, dx_ref = fa.gelu.forward_backward(x, dy)
    bufs = (torch.empty(6, 5), torch.empty(6, 5))
    got = fa.gelu.forward_backward(xt, dyt, out=bufs)
    assert got[0] is bufs[0] and got[1] is bufs[1]
    np.testing.assert_array_equal(bufs[0].numpy(), y_ref)
    np.testing.assert_array_equal(bufs[1].numpy(), dx_ref)
    xc = xt.clone()
    assert fa.softmax(xc, out=xc) is xc
    np.testing.assert_array_equal(xc.numpy(), fa.softmax(x))
    idx = torch.empty(6, dtype=torch.int64)
    assert fa.argmax(xt, out=idx) is idx
    np.testing.assert_array_equal(idx.numpy(), fa.argmax(x))
    for loss_op, target in ((fa.mse, dyt), (fa.sparse_softmax_cross_entropy, lt)):
        want = loss_op.value_and_grad(x, target.numpy())
        g = torch.empty(6, 5)
        loss, grad = loss_op.value_and_grad(xt, target, out=g)
        assert grad is g and isinstance(loss, torch.Tensor) and loss.shape == ()
        np.testing.assert_array_equal(g.numpy(), want[1])
        assert float(loss) == float(want[0])


@pytest.mark.parametrize("bad", [np.ones(3, np.complex64), np.array(["a"]),
                                 np.array([object()], dtype=object)])
def test_bad_dtypes_raise_type_error(bad):
    with pytest.raises(TypeError, match="dtype"):
        fa.relu(bad)


# (op, parameters it refuses, the parameter named in the error); PyTorch
# refuses the same celu, hardtanh and softshrink values
REFUSED_PARAMETERS = [
    ("celu", {"alpha": 0.0}, "alpha"),
    ("celu", {"alpha": -0.0}, "alpha"),
    ("hardtanh", {"min_val": 1.0, "max_val": -1.0}, "min_val"),
    ("softshrink", {"lambd": -0.5}, "lambd"),
    ("softshrink", {"lambd": float("inf")}, "lambd"),
    ("softshrink", {"lambd": float("nan")}, "lambd"),
    ("squareplus", {"b": -1.0}, "b"),
    ("squareplus", {"b": float("nan")}, "b"),
]


@pytest.mark.parametrize("name,params,named", REFUSED_PARAMETERS)
def test_parameter_values_an_op_does_not_take_raise_value_error(name, params, named):
    op = getattr(fa, name)
    x = np.linspace(-2, 2, 8)
    for call in (lambda: op(x, **params),                       # short path
                 lambda: op(x[::2], **params),                  # general path
                 lambda: op.backward(x, x, **params),
                 lambda: op.value_and_derivative(x, backend="numpy", **params)):
        with pytest.raises(ValueError, match=named):
            call()
    # twice on the short path: a refused value leaves no plan behind
    with pytest.raises(ValueError, match=named):
        op(x, **params)


def test_parameter_values_at_the_edge_of_what_an_op_takes():
    x = np.linspace(-2, 2, 9)
    np.testing.assert_array_equal(fa.hardtanh(x, min_val=0.5, max_val=0.5), np.full(9, 0.5))
    np.testing.assert_array_equal(fa.softshrink(x, lambd=0.0), x)
    np.testing.assert_allclose(fa.squareplus(x, b=0.0), np.maximum(x, 0.0))
    assert np.isnan(fa.celu(x, alpha=np.nan)[:4]).all()     # NaN passes, as in PyTorch


def test_errors():
    x = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="shape"):
        fa.sigmoid.backward(x, np.ones(5, np.float32))
    with pytest.raises(ValueError, match="shape"):
        fa.sigmoid(x, out=np.empty(5, np.float32))
    with pytest.raises(TypeError, match="dtype"):
        fa.sigmoid(x, out=np.empty(4, np.float64))
    with pytest.raises(ValueError, match="tuple of 2"):
        fa.sigmoid.value_and_derivative(x, out=np.empty(4, np.float32))
    with pytest.raises(ValueError, match="overlap"):
        buf = np.empty(4, np.float32)
        fa.sigmoid.value_and_derivative(x, out=(buf, buf))
    with pytest.raises(TypeError, match="unexpected keyword"):
        fa.relu(x, alpha=2.0)
    with pytest.raises(ValueError, match="approximate"):
        fa.gelu(x, approximate="fast")
    with pytest.raises(TypeError, match="missing required"):
        fa.threshold(x, threshold=0.5)
    with pytest.raises(TypeError, match="real number"):
        fa.elu(x, alpha="big")
    with pytest.raises(ValueError, match="read-only"):
        ro = np.empty(4, np.float32)
        ro.flags.writeable = False
        fa.relu(x, out=ro)
    with pytest.raises(NotImplementedError):
        fa.gelu.backward_from_output(x, x)


def test_unavailable_cuda_backend_says_why(monkeypatch):
    from fastact import cuda as fcuda
    monkeypatch.setattr(fcuda, "simulator_enabled", lambda: False)
    monkeypatch.setattr(fcuda, "_numba_cuda", lambda: None)
    assert "cuda" not in fa.available_backends()
    with pytest.raises(RuntimeError, match="numba-cuda is not installed"):
        fa.relu(np.ones(3), backend="cuda")

    class Driver:                  # a GPU, but numba-cuda cannot load its CUDA target
        @staticmethod
        def is_available():
            return True

    monkeypatch.setattr(fcuda, "_numba_cuda", lambda: Driver)
    monkeypatch.setitem(sys.modules, "numba.cuda.cudaimpl", None)
    assert "cannot load its CUDA target" in fcuda.unavailable_reason()
    assert fcuda.device_info()["available"] is False
    with pytest.raises(RuntimeError, match="cannot load its CUDA target"):
        fa.set_backend("cuda")


# ------------------------------------------------------------ vectorization

def _kernel_asm(name, choice, dtype, baked=False):
    """Assembly of the parallel kernel that forward_backward runs on large
    arrays, with the op's interleave for dtype, compiled afresh (Numba shows no
    assembly for kernels loaded from its disk cache).  Where streaming stores
    in the loop that computes (hosts with 512-bit vectors), the streamed
    kernel; elsewhere the plain one, whose loop the tiled streamed kernel runs
    on each tile (and which compiles in about 1 s against 12).  baked: the
    kernel of calls with the default parameters, which has them as constants
    (``registry.baked_scalars``); else the one that takes them as arguments."""
    from fastact.cpu import elementwise as cpu_elementwise, streaming
    from fastact.cpu.jit import KernelPair
    from fastact.registry import baked_scalars
    spec = fa.REGISTRY[name]
    scalars = spec.scalars_for(choice)
    params = default_params(spec)
    if baked:
        scalars, params = baked_scalars(scalars, spec.default_numeric), {}
    pk = cpu_elementwise.pass_kernel(scalars, "forward_backward", len(params),
                                     spec.transcendental, spec.interleave_for(scalars, dtype))
    if streaming.TILED:
        kernel = KernelPair(pk.pyfunc, interleave=pk.pair.interleave_count, cache=False).parallel
    else:
        kernel = pk.streamed_pair(cache=False).parallel
    # fewer elements than one streamed run: only the plain remainder loop runs
    x = np.linspace(-3, 3, 100).astype(dtype)
    kernel(x, x, np.empty_like(x), np.empty_like(x), tuple(dtype(v) for v in params.values()))
    return "\n".join(kernel.inspect_asm().values())


def _streamed_loop(asm):
    """The instructions of the loop that holds the first non-temporal store."""
    lines = asm.splitlines()
    first = next(k for k, line in enumerate(lines) if "vmovnt" in line)
    for end in range(first, len(lines)):
        jump = re.match(r"\s+j\w+\s+(\.\w+)$", lines[end])
        if jump:
            starts = [k for k in range(first) if lines[k].startswith(jump.group(1) + ":")]
            if starts:
                return lines[starts[-1]:end + 1]
    raise AssertionError("no loop around the non-temporal stores")


TRANSCENDENTAL = [(n, c) for n, c in VARIANTS if fa.REGISTRY[n].transcendental]
# (name, choice, baked): the ops with numeric parameters are checked twice, with
# the kernel of default-parameter calls (constants) and the one taking arguments
TRANSCENDENTAL_KERNELS = [(n, c, b) for n, c in TRANSCENDENTAL
                          for b in ((True, False) if fa.REGISTRY[n].default_numeric else (False,))]


def _host_has_avx512():
    import llvmlite.binding as llvm
    return "+avx512f" in llvm.get_host_cpu_features().flatten().split(",")


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("name,choice,baked", TRANSCENDENTAL_KERNELS,
                         ids=[(f"{n}-{c}" if c else n) + ("-constants" if b else "")
                              for n, c, b in TRANSCENDENTAL_KERNELS])
def test_transcendental_kernels_are_vectorized(name, choice, baked, dtype):
    asm = _kernel_asm(name, choice, dtype, baked)
    suffix = "ps" if dtype == np.float32 else "pd"
    packed = re.findall(rf"\bv(?:fmadd|fnmadd|fmsub|mul|add|div)\w*{suffix}\s+[^\n]*%[yz]mm", asm)
    assert len(packed) >= 8, f"{name}: no packed {suffix} arithmetic on ymm/zmm registers"
    if _host_has_avx512():    # prefer_wide_vectors: 512-bit vectors where there are any
        wide = [op for op in packed if "zmm" in op]
        assert len(wide) >= 8, f"{name}: packed arithmetic not on zmm registers"
    calls = re.findall(r"call\w*\s+[^\n]*(exp|log|erf|tanh)", asm, flags=re.I)
    assert not calls, f"{name}: scalar math calls left in the kernel: {calls[:3]}"
    from fastact.cpu import streaming
    if _host_has_avx512() and not streaming.TILED:
        # The interleave counts (ops.elementwise.INTERLEAVE, dtype_interleave)
        # must leave the loop in the 32 vector registers.  Spilled vectors go
        # through the stack, and such loops run 2-3x slower in the processes
        # whose stack lands at some offsets from the arrays (float64 gelu with
        # four interleaved vectors: 15 or 40 ms at 2**24 by the process).
        loop = "\n".join(_streamed_loop(asm))
        spills = re.findall(r"vmov\w+\s+%[yz]mm\d+, -?\d*\(%rsp\)", loop)
        assert not spills, f"{name}: {len(spills)} vector spills in the streamed loop"


# ------------------------------------------------------------ plain-call path

@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("pass_name", ["forward", "value_and_derivative", "backward",
                                       "forward_backward"])
def test_plain_call_path_matches_general_path(pass_name, dtype):
    """Calls with default parameters and no out= take a short path; it must give
    what the general path (taken with an explicit backend) gives, bit for bit."""
    rng = np.random.default_rng(5)
    x = rng.uniform(-4, 4, (3, 37)).astype(dtype)
    dy = rng.uniform(-1, 1, x.shape).astype(dtype)
    for name in ("relu", "sigmoid"):
        op = getattr(fa, name)
        fn = op if pass_name == "forward" else getattr(op, pass_name)
        args = (x,) if pass_name in ("forward", "value_and_derivative") else (x, dy)
        plain, general = fn(*args), fn(*args, backend="cpu")
        for a, b in zip(plain if isinstance(plain, tuple) else (plain,),
                        general if isinstance(general, tuple) else (general,)):
            assert type(a) is np.ndarray and a.dtype == dtype and a.shape == x.shape
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_plain_call_path_with_parameters(dtype):
    """Keyword parameters take the short path too, with a plan per set of
    values: each call must give what the general path gives for its own values."""
    x = np.random.default_rng(6).uniform(-4, 4, 301).astype(dtype)
    op = fa.leaky_relu
    for slope in (0.01, 0.5, 0.01, 2.0, 0.5):
        np.testing.assert_array_equal(op(x, negative_slope=slope),
                                      op(x, negative_slope=slope, backend="cpu"))
        np.testing.assert_array_equal(op(x, negative_slope=slope)[x < 0],
                                      (x * dtype(slope))[x < 0])
    for approximate in ("tanh", "none", "tanh"):
        np.testing.assert_array_equal(
            fa.gelu.backward(x, x, approximate=approximate),
            fa.gelu.backward(x, x, approximate=approximate, backend="cpu"))
    for kw in ({"threshold": 0.5, "value": -1.0}, {"value": -1.0, "threshold": 0.5}):
        np.testing.assert_array_equal(fa.threshold(x, **kw), np.where(x > 0.5, x, dtype(-1.0)))
    # an unhashable value goes the general way; errors as on the general path
    np.testing.assert_array_equal(op(x, negative_slope=np.array(0.5)),
                                  op(x, negative_slope=0.5))
    with pytest.raises(TypeError, match="real number"):
        op(x, negative_slope="a")
    with pytest.raises(ValueError, match="approximate"):
        fa.gelu(x, approximate="erf")
    with pytest.raises(TypeError, match="missing"):
        fa.threshold(x, value=1.0)
    # plans are bounded: many parameter values don't grow the table without end
    for k in range(300):
        op(x[:3], negative_slope=k / 7)
    assert len(op._plans) <= 64


def test_plain_call_path_leaves_other_calls_to_the_general_path():
    x32 = np.linspace(-2, 2, 64, dtype=np.float32)
    # non-contiguous, float16, mixed dtypes, shape mismatch: same results / errors as always
    np.testing.assert_array_equal(fa.sigmoid(x32[::2]), fa.sigmoid(x32[::2].copy()))
    assert fa.sigmoid(x32.astype(np.float16)).dtype == np.float16
    assert fa.sigmoid.backward(x32, x32.astype(np.float64)).dtype == np.float64
    with pytest.raises(ValueError):
        fa.sigmoid.backward(x32, x32[:10])
    with fa.use_backend("numpy"):
        np.testing.assert_allclose(fa.sigmoid(x32), 1 / (1 + np.exp(-x32)), rtol=1e-6)
