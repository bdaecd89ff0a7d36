"""softmax, log_softmax, softmin: values, gradients, axes, special rows, out=."""
import numpy as np
import pytest
from conftest import FLOATS, RTOL
from torch_reference import torch

import fastact as fa

ROWWISE = ["softmax", "log_softmax", "softmin"]


def reference(name, x, dy, axis):
    """float64 (y, dx) and the scales their rounding errors are relative to."""
    x = x.astype(np.float64)
    dy = dy.astype(np.float64)
    v = -x if name == "softmin" else x
    m = v.max(axis=axis, keepdims=True)
    e = np.exp(v - m)
    s = e.sum(axis=axis, keepdims=True)
    p = e / s
    sign = -1.0 if name == "softmin" else 1.0
    if name == "log_softmax":
        y = v - m - np.log(s)
        total = dy.sum(axis=axis, keepdims=True)
        dx = dy - p * total
        y_scale = np.abs(y) + np.abs(v).max(axis=axis, keepdims=True)
        dx_scale = np.abs(dy) + p * np.abs(dy).sum(axis=axis, keepdims=True)
    else:
        y = p
        dot = (dy * p).sum(axis=axis, keepdims=True)
        dx = sign * p * (dy - dot)
        y_scale = p
        dx_scale = p * (np.abs(dy) + (np.abs(dy) * p).sum(axis=axis, keepdims=True))
    return y, dx, y_scale, dx_scale


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("shape,axis", [((7, 33), -1), ((300, 1000), -1), ((4, 50, 3), 1),
                                        ((6, 5, 4), 0), ((1, 1), -1), ((129,), 0)])
@pytest.mark.parametrize("name", ROWWISE)
def test_against_float64_reference(name, shape, axis, dtype, rng):
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    op = getattr(fa, name)
    y, dx = op.forward_backward(x, dy, axis=axis)
    assert y.dtype == dtype and dx.dtype == dtype and y.shape == shape
    ry, rdx, ys, dxs = reference(name, x, dy, axis)
    tol = 4 * RTOL[np.dtype(dtype)]
    tiny = np.finfo(dtype).tiny
    assert np.all(np.abs(y - ry) <= tol * ys + tiny), np.max(np.abs(y - ry) / (ys + tiny))
    assert np.all(np.abs(dx - rdx) <= tol * dxs + tiny), np.max(np.abs(dx - rdx) / (dxs + tiny))
    np.testing.assert_array_equal(op(x, axis=axis), y)
    np.testing.assert_array_equal(op.backward(x, dy, axis=axis), dx)


@pytest.mark.parametrize("name", ROWWISE)
def test_backward_against_finite_differences(name, rng):
    x = rng.standard_normal((5, 9))
    dy = rng.standard_normal((5, 9))
    op = getattr(fa, name)
    dx = op.backward(x, dy)
    h = 1e-6
    fd = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        fd[i] = np.sum(dy * (op(x + e) - op(x - e))) / (2 * h)
    np.testing.assert_allclose(dx, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ROWWISE)
def test_numpy_baseline_agrees(name, rng):
    x = rng.standard_normal((8, 40, 3))
    dy = rng.standard_normal((8, 40, 3))
    op = getattr(fa, name)
    for axis in (-1, 1):
        a = op.forward_backward(x, dy, axis=axis)
        b = op.forward_backward(x, dy, axis=axis, backend="numpy")
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("name", ROWWISE)
def test_special_rows_match_pytorch(name, dtype):
    inf, nan = np.inf, np.nan
    x = np.array([[0.0, -inf, 1.0, -inf],     # masked entries
                  [-inf, -inf, -inf, -inf],  # fully masked row: NaN as in PyTorch
                  [1.0, nan, 2.0, 3.0],      # NaN poisons its row
                  [inf, 1.0, 2.0, 3.0],
                  [3e38, 3e38, -3e38, 0.0],
                  [1e-40, -1e-40, 0.0, -0.0]], dtype=dtype)
    dy = np.linspace(-1, 1, x.size).reshape(x.shape).astype(dtype)
    y, dx = getattr(fa, name).forward_backward(x, dy)
    t = torch.tensor(x, requires_grad=True)
    f = {"softmax": torch.softmax, "log_softmax": torch.log_softmax,
         "softmin": torch.nn.functional.softmin}[name]
    ty = f(t, -1)
    ty.backward(torch.tensor(dy))
    for got, want in ((y, ty.detach().numpy()), (dx, t.grad.numpy())):
        same_nan = np.isnan(got) == np.isnan(want)
        assert same_nan.all(), (got, want)
        ok = np.isnan(want) | (got == want) | np.isclose(got, want, rtol=1e-5, atol=1e-30)
        assert ok.all(), (got, want)


@pytest.mark.parametrize("name", ROWWISE)
def test_empty_and_degenerate_shapes(name):
    op = getattr(fa, name)
    for shape in ((0, 5), (3, 0), (0,), ()):
        x = np.zeros(shape, np.float32)
        y, dx = op.forward_backward(x, x)
        assert y.shape == shape and dx.shape == shape
    np.testing.assert_array_equal(op(np.float32(2.0)), 0.0 if name == "log_softmax" else 1.0)
    with pytest.raises(ValueError, match="axis"):
        op(np.ones((2, 3)), axis=2)


@pytest.mark.parametrize("name", ROWWISE)
def test_out_and_aliasing(name, rng):
    op = getattr(fa, name)
    x = rng.standard_normal((64, 100)).astype(np.float32)
    dy = rng.standard_normal((64, 100)).astype(np.float32)
    y, dx = op.forward_backward(x, dy)
    xc, dyc = x.copy(), dy.copy()
    r = op.forward_backward(xc, dyc, out=(xc, dyc))
    assert r[0] is xc and r[1] is dyc
    np.testing.assert_array_equal(xc, y)
    np.testing.assert_array_equal(dyc, dx)
    xc, dyc = x.copy(), dy.copy()
    op.forward_backward(xc, dyc, out=(dyc, xc))           # crossed
    np.testing.assert_array_equal(dyc, y)
    np.testing.assert_array_equal(xc, dx)
    xc = x.copy()
    op(xc, out=xc)
    np.testing.assert_array_equal(xc, y)
    dyc = dy.copy()
    op.backward(x, dyc, out=dyc)
    np.testing.assert_array_equal(dyc, dx)
    xc = x.copy()
    op.backward(xc, dy, out=xc)
    np.testing.assert_array_equal(xc, dx)
    # axis 0 with out= and a non-contiguous input
    xt = x.T
    out = np.empty((100, 64), np.float32)
    op(xt, axis=0, out=out)
    np.testing.assert_allclose(out, op(np.ascontiguousarray(xt), axis=0), rtol=1e-6)
    np.testing.assert_allclose(out.T, y, rtol=1e-6)


def test_float16_and_errors(rng):
    x = rng.standard_normal((4, 10)).astype(np.float16)
    y = fa.softmax(x)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, fa.softmax(x.astype(np.float32)).astype(np.float16))
    with pytest.raises(ValueError, match="shape"):
        fa.softmax.backward(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(TypeError, match="dtype"):
        fa.log_softmax(np.ones((2, 3), np.complex128))
