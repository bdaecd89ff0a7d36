"""glu, swiglu, geglu, prelu, maxout, argmax."""
import math

import numpy as np
import pytest
from conftest import FLOATS, RTOL
from torch_reference import torch

import fastact as fa


def _sig(v):
    return 1 / (1 + np.exp(-v))


def _gelu(v, approximate):
    if approximate == "tanh":
        k = math.sqrt(2 / math.pi)
        t = np.tanh(k * (v + 0.044715 * v ** 3))
        return 0.5 * v * (1 + t), 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * k * (
            1 + 3 * 0.044715 * v * v)
    cdf = 0.5 * np.vectorize(math.erfc)(-v / math.sqrt(2))
    return v * cdf, cdf + v * np.exp(-v * v / 2) / math.sqrt(2 * math.pi)


def gated_reference(name, x, dy, axis, approximate="none"):
    """float64 (y, dx) of a gated unit from its textbook formula."""
    a, b = np.split(x.astype(np.float64), 2, axis=axis)
    dy = dy.astype(np.float64)
    if name == "glu":
        s = _sig(b)
        return a * s, np.concatenate([dy * s, dy * a * s * (1 - s)], axis=axis)
    if name == "swiglu":
        s = _sig(a)
        silu, dsilu = a * s, s * (1 + a * (1 - s))
        return silu * b, np.concatenate([dy * b * dsilu, dy * silu], axis=axis)
    g, dg = _gelu(a, approximate)
    return g * b, np.concatenate([dy * b * dg, dy * g], axis=axis)


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("shape,axis", [((6, 20), -1), ((3, 8, 5), 1), ((40000, 2), -1),
                                        ((4, 6), 0)])
@pytest.mark.parametrize("name,approximate", [("glu", None), ("swiglu", None),
                                              ("geglu", "none"), ("geglu", "tanh")])
def test_gated_units(name, approximate, shape, axis, dtype, rng):
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    half = list(shape)
    half[axis] //= 2
    dy = rng.standard_normal(half).astype(dtype)
    op = getattr(fa, name)
    kw = {"approximate": approximate} if approximate else {}
    y, dx = op.forward_backward(x, dy, axis=axis, **kw)
    assert y.shape == tuple(half) and dx.shape == shape and y.dtype == dtype
    ry, rdx = gated_reference(name, x, dy, axis, approximate or "none")
    tol = 4 * RTOL[np.dtype(dtype)]
    np.testing.assert_allclose(y, ry, rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, rdx, rtol=tol, atol=tol)
    np.testing.assert_allclose(op(x, axis=axis, **kw), y, rtol=1e-6)
    np.testing.assert_allclose(op.backward(x, dy, axis=axis, **kw), dx, rtol=1e-6)
    # the general path (backend= given) and the short one (plain arrays) agree
    for got, want in zip(op.forward_backward(x, dy, axis=axis, backend="cpu", **kw), (y, dx)):
        np.testing.assert_array_equal(got, want)
    yb, dxb = op.forward_backward(x, dy, axis=axis, backend="numpy", **kw)
    np.testing.assert_allclose(yb, y, rtol=tol, atol=tol)
    np.testing.assert_allclose(dxb, dx, rtol=tol, atol=tol)


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
def test_glu_matches_pytorch(rng):
    x = rng.standard_normal((5, 8, 3))
    dy = rng.standard_normal((5, 4, 3))
    t = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.glu(t, dim=1)
    ty.backward(torch.tensor(dy))
    y, dx = fa.glu.forward_backward(x, dy, axis=1)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-13, atol=1e-15)


def test_gated_errors_and_out(rng):
    with pytest.raises(ValueError, match="odd"):
        fa.glu(np.ones((2, 3)))
    with pytest.raises(ValueError, match="dy has shape"):
        fa.swiglu.backward(np.ones((2, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="0-d"):
        fa.glu(np.float64(1.0))
    x = rng.standard_normal((4, 6)).astype(np.float32)
    out = np.empty((4, 3), np.float32)
    assert fa.glu(x, out=out) is out
    np.testing.assert_array_equal(out, fa.glu(x))
    dy = rng.standard_normal((4, 3)).astype(np.float32)
    xc = x.copy()
    fa.swiglu.backward(xc, dy, out=xc)          # dx written over x
    np.testing.assert_array_equal(xc, fa.swiglu.backward(x, dy))


def test_short_path_writes_out_arrays_directly(rng, monkeypatch):
    # Plain NumPy inputs with out= arrays of the right shape and dtype, apart
    # from the inputs and one another: the kernels write them directly, with
    # no Outputs (the general path's); any other out= takes the general path.
    import fastact.axis_api as axis_api
    built = []

    class Counted(axis_api.Outputs):
        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(axis_api, "Outputs", Counted)
    for dt in FLOATS:
        x = rng.standard_normal((6, 8)).astype(dt)
        w = rng.uniform(0.1, 0.5, 6).astype(dt)
        cases = [(fa.glu, (x,), {}, (6, 4)), (fa.geglu, (x,), {"approximate": "tanh"}, (6, 4)),
                 (fa.maxout, (x, 2), {}, (6, 4)), (fa.prelu, (x, w), {"axis": 0}, (6, 8))]
        for op, args, kw, yshape in cases:
            dy = rng.standard_normal(yshape).astype(dt)
            bargs = (args[0], dy) + args[1:]
            want = op.forward_backward(*bargs, **kw)
            outs = tuple(np.empty_like(a) for a in want)
            built.clear()
            got = op.forward_backward(*bargs, out=outs, **kw)
            assert built == [] and len(got) == len(outs)
            assert all(g is o for g, o in zip(got, outs))
            for g, w_ in zip(got, want):
                np.testing.assert_array_equal(g, w_)
            y = np.empty_like(want[0])
            assert op(*args, out=y, **kw) is y and built == []
            np.testing.assert_array_equal(y, want[0])
            # over an input, or of another dtype or shape: the general path (a
            # list of out arrays is as good as a tuple)
            xc = args[0].copy()
            dx = op.backward(xc, dy, *args[1:], out=(xc,) + tuple(
                np.empty_like(a) for a in want[2:]) if len(want) == 3 else xc, **kw)
            assert built and len(built) == 1
            np.testing.assert_array_equal(dx[0] if isinstance(dx, tuple) else dx, want[1])
            got = op.forward_backward(*bargs, out=list(outs), **kw)
            for g, w_ in zip(got, want):
                np.testing.assert_array_equal(g, w_)
            other = np.float32 if dt == np.float64 else np.float64
            with pytest.raises(TypeError):
                op(*args, out=np.empty(want[0].shape, other), **kw)
            with pytest.raises(ValueError):
                op(*args, out=np.empty((1, 1), dt), **kw)


def prelu_reference(x, dy, w, axis):
    shape = [1] * x.ndim
    if w.size > 1:
        shape[axis] = w.size
    wb = w.reshape(shape)
    y = np.where(x > 0, x, wb * x)
    dx = np.where(x > 0, dy, wb * dy)
    other = tuple(i for i in range(x.ndim) if w.size == 1 or i != axis)
    dw = np.sum(np.where(x > 0, 0.0, dy.astype(np.float64) * x), axis=other).reshape(w.shape)
    return y, dx, dw


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("shape,wsize,axis", [((4, 3, 5, 5), 3, 1), ((8, 16), 16, 1),
                                              ((6, 7), 1, 1), ((50000,), 1, 1),
                                              ((64, 10, 100), 10, 1), ((5, 4), 5, 0),
                                              ((3000, 40), 40, 1), ((0, 7), 7, 1)])
def test_prelu(shape, wsize, axis, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    w = rng.uniform(0, 0.5, wsize).astype(dtype)
    y, dx, dw = fa.prelu.forward_backward(x, dy, w, axis=axis)
    ry, rdx, rdw = prelu_reference(x, dy, w, axis)
    np.testing.assert_array_equal(y, ry.astype(dtype))
    np.testing.assert_array_equal(dx, rdx.astype(dtype))
    assert dw.shape == w.shape and dw.dtype == dtype
    np.testing.assert_allclose(dw, rdw, rtol=10 * RTOL[np.dtype(dtype)], atol=1e-12)
    dx2, dw2 = fa.prelu.backward(x, dy, w, axis=axis)
    np.testing.assert_array_equal(dx2, dx)
    np.testing.assert_array_equal(dw2, dw)
    np.testing.assert_array_equal(fa.prelu(x, w, axis=axis), y)
    for got, want in zip(fa.prelu.forward_backward(x, dy, w, axis=axis, backend="cpu"),
                         (y, dx, dw)):
        np.testing.assert_array_equal(got, want)
    yb, dxb, dwb = fa.prelu.forward_backward(x, dy, w, axis=axis, backend="numpy")
    # the baseline sums in the input's type: float32 rounding grows with the terms
    assert np.all(np.abs(dwb - rdw) <= 1e-5 * (np.abs(rdw) + np.sqrt(x.size)))


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
def test_prelu_matches_pytorch(rng):
    x = rng.standard_normal((4, 3, 6))
    dy = rng.standard_normal((4, 3, 6))
    w = np.array([0.1, 0.2, 0.3])
    t, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    torch.nn.functional.prelu(t, tw).backward(torch.tensor(dy))
    _, dx, dw = fa.prelu.forward_backward(x, dy, w)
    np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-14)
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-12)


def test_prelu_errors():
    with pytest.raises(ValueError, match="weight has 4 values"):
        fa.prelu(np.ones((2, 3)), np.ones(4))
    with pytest.raises(ValueError, match="1-d"):
        fa.prelu(np.ones((2, 3)), np.ones((3, 1)))
    y = fa.prelu(np.array([-2.0, 3.0]), 0.25)
    np.testing.assert_array_equal(y, [-0.5, 3.0])


@pytest.mark.parametrize("shape,pieces,axis", [((3, 12), 3, -1), ((4, 6, 5), 2, 1),
                                               ((2, 8), 8, -1), ((20000, 4), 2, -1)])
def test_maxout(shape, pieces, axis, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    ax = axis % len(shape)
    ysh = list(shape)
    ysh[ax] //= pieces
    dy = rng.standard_normal(ysh).astype(np.float32)
    y, dx = fa.maxout.forward_backward(x, dy, pieces, axis=axis)
    grouped = x.reshape(shape[:ax] + (shape[ax] // pieces, pieces) + shape[ax + 1:])
    np.testing.assert_array_equal(y, grouped.max(axis=ax + 1))
    arg = grouped.argmax(axis=ax + 1)
    mask = np.arange(pieces).reshape((1,) * (ax + 1) + (pieces,) + (1,) * (len(shape) - ax - 1))
    mask = mask == np.expand_dims(arg, ax + 1)
    np.testing.assert_array_equal(dx, np.where(mask, np.expand_dims(dy, ax + 1), 0)
                                  .reshape(shape))
    np.testing.assert_array_equal(fa.maxout.backward(x, dy, pieces, axis=axis), dx)
    for got, want in zip(fa.maxout.forward_backward(x, dy, pieces, axis=axis, backend="cpu"),
                         (y, dx)):
        np.testing.assert_array_equal(got, want)
    yb, dxb = fa.maxout.forward_backward(x, dy, pieces, axis=axis, backend="numpy")
    np.testing.assert_array_equal(yb, y)
    np.testing.assert_array_equal(dxb, dx)


def test_maxout_outputs_may_alias_inputs(rng):
    x = rng.standard_normal((3, 8))
    dy = rng.standard_normal((3, 4))
    y, dx = fa.maxout.forward_backward(x, dy, 2)
    yc, dyc = np.empty_like(y), dy.copy()
    fa.maxout.forward_backward(x, dyc, 2, out=(dyc, yc := np.empty_like(x)))
    np.testing.assert_array_equal(dyc, y)
    np.testing.assert_array_equal(yc, dx)


def test_maxout_ties_nan_and_errors():
    x = np.array([[1.0, 1.0, np.nan, 2.0, 5.0, 5.0]])
    y, dx = fa.maxout.forward_backward(x, np.array([[10.0, 20.0, 30.0]]), 2)
    np.testing.assert_array_equal(y[0, [0, 2]], [1.0, 5.0])
    assert np.isnan(y[0, 1])
    np.testing.assert_array_equal(dx, [[10.0, 0.0, 20.0, 0.0, 30.0, 0.0]])
    with pytest.raises(ValueError, match="does not divide"):
        fa.maxout(np.ones((2, 5)), 2)
    with pytest.raises(ValueError, match="positive integer"):
        fa.maxout(np.ones((2, 4)), 0)


def _maxout_reference(x, dy, pieces, ax):
    """y and dx from NumPy: the first NaN of a group wins, else its first maximum."""
    sh = x.shape
    g = x.reshape(sh[:ax] + (sh[ax] // pieces, pieces) + sh[ax + 1:])
    nan = np.isnan(g)
    arg = np.where(nan.any(axis=ax + 1), nan.argmax(axis=ax + 1),
                   np.where(nan, -np.inf, g).argmax(axis=ax + 1))
    y = np.take_along_axis(g, np.expand_dims(arg, ax + 1), ax + 1).squeeze(ax + 1)
    mask = (np.arange(pieces).reshape((1,) * (ax + 1) + (pieces,) + (1,) * (len(sh) - ax - 1))
            == np.expand_dims(arg, ax + 1))
    return y, np.where(mask, np.expand_dims(dy, ax + 1), 0).reshape(sh)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("shape,pieces,axis", [
    ((300, 1024), 4, -1), ((5000, 24), 3, -1), ((4, 12), 12, -1), ((100, 10), 5, -1),
    ((7, 64, 5000), 4, 1), ((3, 16, 9000), 8, 1), ((9, 2, 70001), 2, 1)])
def test_maxout_blocks_ties_nan_and_aliasing(shape, pieces, axis, dt, rng):
    """Inputs past the kernels' block size, in both layouts (the axis last: one
    kernel per `pieces`; an inner axis after it), with ties, NaN and -inf, and
    dx written over x, y over dy."""
    x = rng.integers(-3, 3, shape).astype(dt)
    x[rng.random(shape) < 0.05] = np.nan
    x[rng.random(shape) < 0.02] = -np.inf
    ax = axis % len(shape)
    ysh = list(shape)
    ysh[ax] //= pieces
    dy = rng.standard_normal(ysh).astype(dt)
    yr, dxr = _maxout_reference(x, dy, pieces, ax)
    y, dx = fa.maxout.forward_backward(x, dy, pieces, axis=axis)
    np.testing.assert_array_equal(y, yr)
    np.testing.assert_array_equal(dx, dxr)
    np.testing.assert_array_equal(fa.maxout(x, pieces, axis=axis), yr)
    np.testing.assert_array_equal(fa.maxout.backward(x, dy, pieces, axis=axis), dxr)
    xc, dyc = x.copy(), dy.copy()
    fa.maxout.forward_backward(xc, dyc, pieces, axis=axis, out=(dyc, xc))
    np.testing.assert_array_equal(dyc, yr)
    np.testing.assert_array_equal(xc, dxr)


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_argmax(axis, rng):
    x = rng.standard_normal((30, 40, 5)).astype(np.float32)
    x[3, 4, :] = np.nan
    x[5, :, 2] = 1.0
    got = fa.argmax(x, axis=axis)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, np.argmax(x, axis=axis))
    np.testing.assert_array_equal(fa.argmax(x, axis=axis, backend="numpy"), got)
    if torch is not None:
        np.testing.assert_array_equal(got, torch.argmax(torch.tensor(x), dim=axis).numpy())
    with pytest.raises(ValueError, match="empty"):
        fa.argmax(np.ones((3, 0)))


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 47, 1000, 4099])
def test_argmax_over_contiguous_rows(n, dtype, rng):
    """The last-axis kernel (one sweep of per-lane maxima and indices): ties
    across lanes, chains and the tail, NaN anywhere (the first NaN wins),
    +-inf, rows of -inf only; serial and parallel sizes."""
    rows = max(8, 40000 // n)
    x = np.round(rng.standard_normal((rows, n)) * 2).astype(dtype)     # many ties
    x[1, :] = -np.inf
    x[2, rng.integers(0, n)] = np.inf
    x[3, rng.integers(0, n, 3)] = np.nan
    x[4, -1] = np.nan
    x[5, :] = np.nan
    for xs in (x, x[:7]):
        np.testing.assert_array_equal(fa.argmax(xs), np.argmax(xs, axis=-1))


def test_argmax_sweeps_agree(rng):
    """first_argmax takes one int32-indexed sweep below 2**31 elements and two
    int64 ones above; the two-sweep path, run here on small rows, finds the
    same indices."""
    from numba import njit

    from fastact.cpu.reduce import _argmax_two_sweeps, first_argmax

    @njit
    def both(a):
        return first_argmax(a), _argmax_two_sweeps(a)

    for dtype in FLOATS:
        for n in (1, 17, 64, 1000, 4099):
            a = np.round(rng.standard_normal(n) * 2).astype(dtype)
            for row in (a, np.where(rng.random(n) < 0.1, np.nan, a), np.full(n, -np.inf, dtype)):
                one, two = both(row)
                assert one == two == np.argmax(row)


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", [(3, 50, 9000), (700, 3, 40), (5, 2, 4097)])
def test_argmax_over_an_inner_axis(shape, dtype, rng):
    """axis=1 with an axis after it (blocks of that axis): ties, NaN, +-inf,
    columns of -inf only."""
    x = np.round(rng.standard_normal(shape) * 2).astype(dtype)
    x[rng.random(shape) < 0.01] = np.nan
    x[rng.random(shape) < 0.01] = np.inf
    x[0, :, 1] = -np.inf
    x[0, :, 2] = np.nan
    np.testing.assert_array_equal(fa.argmax(x, axis=1), np.argmax(x, axis=1))


def _packed_float32_ops(kernel, *args):
    import re
    kernel(*args)
    asm = kernel.inspect_asm(kernel.signatures[0])
    return len(re.findall(r"^\s+v\w+ps\s+[^\n]*%[yz]mm", asm, re.M))


def test_axis_kernels_are_vectorized():
    """The gated and prelu loops run over 1-d slices of their blocks; indexed
    x[o, c, i] inside the prange body they were left scalar (fastact.cpu.axis_kernels).
    Packed float32 ymm/zmm instructions, measured: gated backward 10 before, 89
    after; prelu backward 22 before, 80 after; maxout backward with the axis
    last, 4 pieces: 38 with one group per loop trip, 147 as interleaved loads
    (AVX-512 host); 68 as interleaved loads on a host with 256-bit vectors only."""
    from fastact.cpu import axis_kernels as K
    from fastact.cpu.jit import WIDE_VECTORS, KernelPair, inline_scalar
    scalars = next(iter(fa.REGISTRY["swiglu"].scalars.values()))
    g = inline_scalar(scalars.value_and_derivative, 0, wide=True)
    x = np.ones((4, 2, 64), np.float32)
    dy = np.ones((4, 64), np.float32)
    gated = KernelPair(K.gated_backward_kernel(g), cache=False).serial
    assert _packed_float32_ops(gated, x, dy, np.empty_like(dy), np.empty_like(x), 0, True, ()) > 50
    x3 = np.ones((2, 3, 64), np.float32)
    prelu = KernelPair(K._prelu_backward, cache=False).serial
    assert _packed_float32_ops(prelu, x3, x3, np.ones(3, np.float32), np.empty_like(x3),
                               np.empty_like(x3), np.empty(6), True) > 50
    _, maxout = K._maxout_rows_kernels(4, cache=False)
    xm, dym = np.ones(256, np.float32), np.ones(64, np.float32)
    assert _packed_float32_ops(maxout.serial, xm, dym, np.empty_like(dym), np.empty_like(xm),
                               True) > (100 if WIDE_VECTORS else 50)
