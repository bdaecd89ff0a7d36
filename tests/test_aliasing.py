"""The aliasing rule of ``out=``: any output may be given as any input of the
same shape and dtype (and outputs may be fresh arrays), in every permutation,
and the call returns exactly what the same call without ``out=`` returns.  An
aliasing fastact cannot honour raises ValueError before anything is written.

Covered for every op kind and pass: elementwise (plain, parallel and
streamed sizes), row-wise (classes last and along another axis), gated units,
prelu (2-D and (N, C, L)), maxout, argmax (an ``out=`` overlapping x), losses
(elementwise, dense and sparse cross-entropies).
"""
import itertools

import numpy as np
import pytest

import fastact as fa
from fastact.cpu import streaming


def _assignments(out_specs, in_specs):
    """Every injective map of outputs onto inputs of the same shape and dtype
    (None: a fresh array of the output's shape), as tuples of input indices."""
    choices = []
    for shape, dtype in out_specs:
        c = [None] + [j for j, (s, d) in enumerate(in_specs) if s == shape and d == dtype]
        choices.append(c)
    for combo in itertools.product(*choices):
        used = [j for j in combo if j is not None]
        if len(used) == len(set(used)):
            yield combo


def _as_tuple(r):
    return r if isinstance(r, tuple) else (r,)


def _check_all_aliasings(call, inputs, n_grad_outputs=None):
    """call(inputs, out) -> result.  Compares every aliasing with the call
    without out=; returns how many aliasings were tried."""
    ref = _as_tuple(call([a.copy() for a in inputs], None))
    # the outputs out= covers: all results, or (losses) only the gradient
    outs_ref = ref if n_grad_outputs is None else ref[-n_grad_outputs:]
    out_specs = [(r.shape, r.dtype) for r in outs_ref]
    in_specs = [(a.shape, a.dtype) for a in inputs]
    tried = 0
    for combo in _assignments(out_specs, in_specs):
        ins = [a.copy() for a in inputs]
        outs = [ins[j] if j is not None else np.full(s, -7, d)
                for j, (s, d) in zip(combo, out_specs)]
        before = [a.copy() for a in ins]
        out = outs[0] if len(outs) == 1 else tuple(outs)
        try:
            got = _as_tuple(call(ins, out))
        except ValueError:
            for a, b in zip(ins, before):
                assert np.array_equal(a, b, equal_nan=True), f"written before raising {combo}"
            continue
        assert len(got) == len(ref)
        for k, (g, r) in enumerate(zip(got, ref)):
            assert np.array_equal(np.asarray(g), np.asarray(r), equal_nan=True), (
                f"output {k} differs with out= aliased as {combo}")
        for g, o in zip(got[len(got) - len(outs):], outs):
            assert g is o, "out= arrays are returned as given"
        tried += 1
    return tried


# --------------------------------------------------------------- elementwise

ELEMENTWISE_SIZES = [1000, 1 << 16]
# a size whose float32 outputs take the streamed (non-temporal) kernels
STREAMED = streaming.STREAM_MIN // 4 + 40


@pytest.mark.parametrize("op", ["relu", "gelu", "sigmoid"])
@pytest.mark.parametrize("n", ELEMENTWISE_SIZES + [STREAMED])
@pytest.mark.parametrize("pass_name", ["forward", "value_and_derivative", "backward",
                                       "forward_backward", "backward_from_output"])
def test_elementwise_aliasing(op, n, pass_name, rng):
    if pass_name == "backward_from_output" and op == "gelu":
        pytest.skip("gelu has no backward_from_output")
    dt = np.float32 if n == STREAMED else np.float64
    f = getattr(fa, op)
    meth = f if pass_name == "forward" else getattr(f, pass_name)
    x = rng.standard_normal(n).astype(dt)
    if pass_name == "backward_from_output":
        x = fa.sigmoid(x) if op == "sigmoid" else fa.relu(x)
    inputs = [x] if pass_name in ("forward", "value_and_derivative") else \
        [x, rng.standard_normal(n).astype(dt)]
    assert _check_all_aliasings(lambda ins, out: meth(*ins, out=out), inputs) > 1


def test_elementwise_aliasing_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(5000)
    dy = rng.standard_normal(5000)
    ry, rdx = fa.gelu.forward_backward(x, dy)
    for perm in [(1, 0), (0, 1)]:
        tx, tdy = torch.from_numpy(x.copy()), torch.from_numpy(dy.copy())
        ins = (tx, tdy)
        y, dx = fa.gelu.forward_backward(tx, tdy, out=(ins[perm[0]], ins[perm[1]]))
        assert y is ins[perm[0]] and dx is ins[perm[1]]
        assert np.array_equal(y.numpy(), ry) and np.array_equal(dx.numpy(), rdx)


# --------------------------------------------------------------- row-wise

@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape,axis", [((7, 33), -1), ((64, 1024), -1), ((33, 7), 0)])
@pytest.mark.parametrize("pass_name", ["forward", "backward", "forward_backward"])
def test_rowwise_aliasing(op, shape, axis, pass_name, rng):
    f = getattr(fa, op)
    meth = f if pass_name == "forward" else getattr(f, pass_name)
    inputs = [rng.standard_normal(shape).astype(np.float32)]
    if pass_name != "forward":
        inputs.append(rng.standard_normal(shape).astype(np.float32))
    assert _check_all_aliasings(lambda ins, out: meth(*ins, axis=axis, out=out), inputs) > 1


# --------------------------------------------------------------- axis ops

@pytest.mark.parametrize("op", ["glu", "swiglu"])
@pytest.mark.parametrize("pass_name", ["forward", "backward", "forward_backward"])
@pytest.mark.parametrize("shape", [(6, 10), (4, 6, 4)])
def test_gated_aliasing(op, pass_name, shape, rng):
    f = getattr(fa, op)
    meth = f if pass_name == "forward" else getattr(f, pass_name)
    x = rng.standard_normal(shape)
    half = shape[:-1] + (shape[-1] // 2,)
    # dy of the half shape, and (to give every output an input to alias) of the full
    inputs = [x] if pass_name == "forward" else [x, rng.standard_normal(half)]
    _check_all_aliasings(lambda ins, out: meth(*ins, out=out), inputs)
    if pass_name == "forward_backward":
        # y (half) onto dy, dx (full) onto x: both outputs aliased
        assert _check_all_aliasings(lambda ins, out: meth(*ins, out=out), inputs) == 4


@pytest.mark.parametrize("pass_name", ["forward", "backward", "forward_backward"])
@pytest.mark.parametrize("shape,wsize", [((8, 3), 3), ((4, 3, 5), 3), ((4, 3, 5), 1),
                                         ((256, 3, 64), 3)])
def test_prelu_aliasing(pass_name, shape, wsize, rng):
    f = fa.prelu
    meth = f if pass_name == "forward" else getattr(f, pass_name)
    x = rng.standard_normal(shape)
    w = rng.random(wsize) + 0.1
    inputs = [x, w] if pass_name == "forward" else [x, rng.standard_normal(shape), w]
    assert _check_all_aliasings(lambda ins, out: meth(*ins, out=out), inputs) > 1


@pytest.mark.parametrize("pass_name", ["forward", "backward", "forward_backward"])
@pytest.mark.parametrize("shape,axis", [((6, 12), -1), ((6, 4, 5), 1)])
def test_maxout_aliasing(pass_name, shape, axis, rng):
    meth = fa.maxout if pass_name == "forward" else getattr(fa.maxout, pass_name)
    x = rng.standard_normal(shape)
    yshape = list(shape)
    yshape[axis] //= 2
    inputs = [x] if pass_name == "forward" else [x, rng.standard_normal(yshape)]
    _check_all_aliasings(lambda ins, out: meth(*ins, 2, axis=axis, out=out), inputs)


def test_argmax_out_overlapping_x(rng):
    x = rng.standard_normal((64, 16))
    ref = np.argmax(x, axis=-1)
    for make_out in (lambda a: a.view(np.int64).reshape(-1)[-64:],
                     lambda a: a.view(np.int64).reshape(-1)[:64],
                     lambda a: a.view(np.int64)[:, 3]):
        xx = x.copy()
        before = xx.copy()
        o = make_out(xx)
        try:
            got = fa.argmax(xx, out=o)
        except ValueError:
            assert np.array_equal(xx, before)
            continue
        assert got is o
        assert np.array_equal(got, ref)


# --------------------------------------------------------------- losses

@pytest.mark.parametrize("loss", ["mse", "huber", "sigmoid_binary_cross_entropy",
                                  "binary_cross_entropy", "kl_divergence"])
@pytest.mark.parametrize("n", [1000, 1 << 16])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_elementwise_loss_aliasing(loss, n, reduction, rng):
    p = rng.random(n) * 0.9 + 0.05
    t = rng.random(n)
    if loss == "kl_divergence":
        p = np.log(p)
    f = getattr(fa, loss)
    assert _check_all_aliasings(
        lambda ins, out: f.value_and_grad(*ins, reduction=reduction, out=out), [p, t],
        n_grad_outputs=1) == 3


@pytest.mark.parametrize("shape", [(5, 7), (64, 1024)])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_cross_entropy_aliasing(shape, reduction, rng):
    x = rng.standard_normal(shape)
    t = fa.softmax(rng.standard_normal(shape))
    lab = rng.integers(0, shape[-1], shape[:-1])
    _check_all_aliasings(lambda ins, out: fa.softmax_cross_entropy.value_and_grad(
        *ins, reduction=reduction, out=out), [x, t], n_grad_outputs=1)
    assert _check_all_aliasings(lambda ins, out: fa.sparse_softmax_cross_entropy.value_and_grad(
        ins[0], lab, reduction=reduction, label_smoothing=0.1, out=out), [x],
        n_grad_outputs=1) == 2
    assert _check_all_aliasings(lambda ins, out: fa.nll_loss.value_and_grad(
        ins[0], lab, reduction=reduction, out=out), [fa.log_softmax(x)],
        n_grad_outputs=1) == 2
