"""Losses: value and gradient against independent float64 references, finite
differences, PyTorch, special values, layouts, out=, dtypes, backends, errors.

Parametrized over the loss records of the registry.  Sizes are small (the
Numba compilation dominates); a few cases exceed the parallel threshold.
"""
import math
import os
import sys
import zlib

import numpy as np
import pytest

import fastact as fa
from fastact.cpu.jit import PARALLEL_MIN

sys.path.insert(0, os.path.dirname(__file__))
from loss_reference import ref  # noqa: E402

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover
    torch = None

LOSSES = [s for s in fa.REGISTRY.values() if s.kind == "loss"]
NAMES = [s.name for s in LOSSES]
LABELS = ("sparse_softmax_cross_entropy", "nll_loss")
ROWWISE = LABELS + ("softmax_cross_entropy",)
ELEMENTWISE = [n for n in NAMES if n not in ROWWISE]
needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")


def test_every_issue_loss_is_registered():
    expected = {"mse", "rmse", "mae", "l1", "l2", "huber", "smooth_l1", "pseudo_huber",
                "log_cosh", "binary_cross_entropy", "sigmoid_binary_cross_entropy", "hinge",
                "squared_hinge", "softmax_cross_entropy", "sparse_softmax_cross_entropy",
                "nll_loss", "kl_divergence", "sigmoid_focal_loss"}
    assert expected <= set(NAMES)
    for name in expected:
        op = getattr(fa, name)
        assert isinstance(op, fa.losses.LossOp)
        assert op.__doc__ and name in op.__doc__
        assert callable(op.value_and_grad)
    assert fa.l1.spec.params[0].default == "sum" and fa.l2.spec.params[0].default == "sum"
    assert fa.mse.spec.params[0].default == "mean"


# ------------------------------------------------------------ inputs

def inputs(name, rng, shape=(5, 7), dtype=np.float64):
    """(pred, target) of a loss with the class axis last."""
    C = shape[-1]
    if name in ("sparse_softmax_cross_entropy", "nll_loss"):
        x = 2 * rng.standard_normal(shape)
        if name == "nll_loss":
            x = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
        return x.astype(dtype), rng.integers(0, C, shape[:-1])
    if name == "softmax_cross_entropy":
        t = rng.uniform(0, 1, shape)
        return (2 * rng.standard_normal(shape)).astype(dtype), (t / t.sum(-1, keepdims=True)).astype(dtype)
    if name == "binary_cross_entropy":
        return rng.uniform(0.02, 0.98, shape).astype(dtype), rng.uniform(0, 1, shape).astype(dtype)
    if name in ("sigmoid_binary_cross_entropy", "sigmoid_focal_loss"):
        t = np.where(rng.uniform(0, 1, shape) < 0.3, 1.0, rng.uniform(0, 1, shape).round(1))
        return (3 * rng.standard_normal(shape)).astype(dtype), t.astype(dtype)
    if name in ("hinge", "squared_hinge"):
        return (1.5 * rng.standard_normal(shape)).astype(dtype), rng.choice([-1.0, 1.0], shape).astype(dtype)
    if name == "kl_divergence":
        t = rng.uniform(0, 1, shape)
        t.flat[::5] = 0.0
        return np.log(rng.uniform(0.01, 1, shape)).astype(dtype), t.astype(dtype)
    return (2 * rng.standard_normal(shape)).astype(dtype), (2 * rng.standard_normal(shape)).astype(dtype)


def reductions(name):
    return ("mean", "batchmean", "sum", "none") if name == "kl_divergence" else ("mean", "sum", "none")


# Option sets exercised per loss (each combination is checked against the reference).
OPTIONS = {
    "huber": [{"delta": 1.0}, {"delta": 0.3}, {"delta": 2.5}],
    "smooth_l1": [{"beta": 1.0}, {"beta": 0.25}, {"beta": 0.0}],
    "pseudo_huber": [{"delta": 1.0}, {"delta": 0.2}, {"delta": 3.0}],
    "binary_cross_entropy": [{}, {"weight": "elem"}, {"weight": "row"}],
    "sigmoid_binary_cross_entropy": [{}, {"weight": "elem"}, {"pos_weight": "row"},
                                     {"weight": "elem", "pos_weight": "row"}],
    "kl_divergence": [{"log_target": False}, {"log_target": True}],
    "sigmoid_focal_loss": [{}, {"alpha": 0.6, "gamma": 0.0}, {"alpha": -1.0, "gamma": 1.5},
                           {"alpha": 0.25, "gamma": 0.5}, {"gamma": 1.0}],
    "softmax_cross_entropy": [{}, {"label_smoothing": 0.1}, {"label_smoothing": 1.0}],
    "sparse_softmax_cross_entropy": [
        {}, {"weight": "class"}, {"ignore_index": "some"}, {"label_smoothing": 0.2},
        {"weight": "class", "ignore_index": "some", "label_smoothing": 0.15},
        {"z_loss": 1e-2}, {"softcap": 3.0},
        {"weight": "class", "ignore_index": "some", "label_smoothing": 0.1, "z_loss": 1e-3,
         "softcap": 2.0},
        {"ignore_index": 2},
    ],
    "nll_loss": [{}, {"weight": "class"}, {"ignore_index": "some"},
                 {"weight": "class", "ignore_index": "some"}],
}


def materialize(opts, pred, target, rng, dtype=np.float64):
    """Replace placeholder option values by arrays fitting the inputs (labels edited in place)."""
    o = dict(opts)
    C = pred.shape[-1]
    for k, v in list(o.items()):
        if v == "elem":
            o[k] = rng.uniform(0.2, 2.0, pred.shape).astype(dtype)
        elif v == "row":
            o[k] = rng.uniform(0.2, 3.0, C).astype(dtype)
        elif v == "class":
            o[k] = rng.uniform(0.2, 2.0, C).astype(dtype)
    if o.get("ignore_index") == "some":
        o["ignore_index"] = -100
        target.reshape(-1)[::3] = -100
    return o


def assert_close(got, want, rtol, atol_rel, what):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    scale = np.max(np.abs(want[np.isfinite(want)])) if np.isfinite(want).any() else 1.0
    atol = atol_rel * max(scale, 1e-300)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)


TOL = {np.float32: dict(loss=(1e-5, 1e-7), grad=(2e-6, 3e-7)),
       np.float64: dict(loss=(1e-12, 1e-14), grad=(1e-12, 1e-14))}


def check_against_reference(name, pred, target, opts, reduction, dtype, backend="cpu",
                            forward=False):
    op = getattr(fa, name)
    kw = dict(opts)
    if reduction is not None:
        kw["reduction"] = reduction
    loss, grad = op.value_and_grad(pred, target, backend=backend, **kw)
    want_loss, want_grad = ref(name, pred, target, reduction, **opts)
    tol = TOL[dtype]
    assert np.asarray(loss).dtype == dtype and grad.dtype == dtype
    assert grad.shape == np.shape(pred)
    what = f"{name} {reduction} {opts} {np.dtype(dtype).name}"
    if reduction == "none":
        # per-sample values: relative with an absolute floor at the largest value
        assert_close(loss, want_loss, tol["grad"][0] * 5, tol["grad"][1] * 5, what + " loss")
    else:
        assert np.ndim(loss) == 0
        assert_close(loss, want_loss, *tol["loss"], what + " loss")
    assert_close(grad, want_grad, *tol["grad"], what + " grad")
    if forward:
        # the forward pass (its own kernel) gives the same loss
        assert_close(op(pred, target, backend=backend, **kw), loss,
                     1e-6 if dtype == np.float32 else 1e-13, 0, what + " forward")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", NAMES)
def test_reference_all_reductions_and_options(name, dtype):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    shape = (6, 9) if name in ROWWISE else (13, 11)
    options = OPTIONS.get(name, [{}])
    if dtype == np.float32 and name not in ROWWISE:
        # elementwise option sets that only change numbers compile nothing new; keep the
        # kernel variants (weights, pos_weight) to the first and last set in float32
        options = [options[0], options[-1]] if len(options) > 1 else options
    for reduction in reductions(name) + (None,):
        for k, opts in enumerate(options):
            pred, target = inputs(name, rng, shape, dtype)
            o = materialize(opts, pred, target, rng, dtype)
            check_against_reference(name, pred, target, o, reduction, dtype,
                                    forward=(k == 0 and dtype == np.float64))


@pytest.mark.parametrize("name", NAMES)
def test_numpy_backend_agrees(name):
    rng = np.random.default_rng(7)
    for opts in OPTIONS.get(name, [{}]):
        for reduction in reductions(name):
            pred, target = inputs(name, rng, (4, 6), np.float64)
            o = materialize(opts, pred, target, rng)
            op = getattr(fa, name)
            l1, g1 = op.value_and_grad(pred, target, reduction=reduction, **o)
            l2, g2 = op.value_and_grad(pred, target, reduction=reduction, backend="numpy", **o)
            np.testing.assert_allclose(l2, l1, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(g2, g1, rtol=1e-12, atol=1e-14)
            with fa.use_backend("numpy"):
                np.testing.assert_allclose(op(pred, target, reduction=reduction, **o), l1,
                                           rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", NAMES)
def test_plain_call_path_matches_general_path(name, dtype):
    """Losses called on NumPy arrays with no out= and no backend take a short
    path; it must give what the general path (taken with an explicit backend)
    gives, bit for bit, in container, dtype and shape too."""
    rng = np.random.default_rng(zlib.crc32(name.encode()) + 1)
    op = getattr(fa, name)
    opts = [o for o in OPTIONS.get(name, [{}]) if "weight" not in o and "pos_weight" not in o]
    if any(p.name == "axis" for p in op.spec.params):
        opts = opts + [{"axis": -1}]
    for reduction in reductions(name):
        for o in opts:
            pred, target = inputs(name, rng, (3, 37), dtype)
            for args in ((pred, target), (pred[0], target[0]),
                         inputs(name, rng, (2, 3, 5), dtype)):
                kw = materialize(o, args[0], args[1], rng, dtype)
                plain = op.value_and_grad(*args, reduction=reduction, **kw)
                general = op.value_and_grad(*args, reduction=reduction, backend="cpu", **kw)
                plain += (op(*args, reduction=reduction, **kw),)
                general += (op(*args, reduction=reduction, backend="cpu", **kw),)
                for a, b in zip(plain, general):
                    assert type(a) is np.ndarray and a.dtype == dtype and a.shape == b.shape
                    np.testing.assert_array_equal(a, b)
    assert len(op._plans) <= 64


def test_plain_call_path_checks_and_leaves_other_calls_to_the_general_path():
    p = np.linspace(0.1, 0.9, 40)
    t = np.linspace(0.0, 1.0, 40)
    bce = fa.binary_cross_entropy
    with pytest.raises(ValueError, match="probabilities must be in"):
        bce.value_and_grad(p - 0.5, t)
    with pytest.raises(ValueError, match="targets must be in"):
        bce(p, t + 0.5)
    with pytest.raises(ValueError, match="reduction"):
        fa.mse(p, t, reduction="max")
    with pytest.raises(TypeError, match="unexpected keyword"):
        fa.mse(p, t, delta=1.0)
    # a plan for a value does not serve another of another type that compares
    # equal to it (True == 1.0): the argument checks still run
    fa.huber(p, t, delta=1.0)
    with pytest.raises(TypeError, match="real number"):
        fa.huber(p, t, delta=True)
    for bad in (-1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="gamma must be >= 0 and finite"):
            fa.sigmoid_focal_loss(p, t, gamma=bad)
        with pytest.raises(ValueError, match="beta must be >= 0 and finite"):
            fa.smooth_l1(p, t, beta=bad)
    fa.kl_divergence(p, t, log_target=True)
    with pytest.raises(ValueError, match="log_target"):
        fa.kl_divergence(p, t, log_target=1)
    # weights, empty inputs, float16, mixed dtypes, non-contiguous: the general path
    w = np.full(40, 2.0)
    np.testing.assert_allclose(bce(p, t, weight=w), 2 * bce(p, t), rtol=1e-15)
    assert np.isnan(fa.mse(p[:0], t[:0]))
    assert fa.mse(p.astype(np.float16), t.astype(np.float16)).dtype == np.float16
    p32 = p.astype(np.float32)
    assert fa.mse(p32, t).dtype == np.float64           # promoted as NumPy promotes
    np.testing.assert_array_equal(fa.mse.value_and_grad(p32, t)[1],
                                  fa.mse.value_and_grad(p32, t, backend="cpu")[1])
    np.testing.assert_array_equal(fa.mse(p[::2], t[::2]), fa.mse(p[::2].copy(), t[::2].copy()))
    with pytest.raises(ValueError, match="shape"):
        fa.mse(p, t[:10])
    with fa.use_backend("numpy"):
        np.testing.assert_allclose(fa.mse(p, t), np.mean((p - t) ** 2), rtol=1e-14)
    # row-wise losses: the same checks of labels and shapes; another class axis
    # goes the general way
    x = np.linspace(-1, 1, 12).reshape(3, 4)
    ce = fa.sparse_softmax_cross_entropy
    with pytest.raises(ValueError, match="label 4 at row 1"):
        ce(x, np.array([0, 4, 1]))
    with pytest.raises(TypeError, match="integers"):
        ce(x, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="labels have shape"):
        ce(x, np.array([0, 1]))
    with pytest.raises(ValueError, match="0-d"):
        ce(np.float64(1.0) * np.ones(()), np.array(0))
    np.testing.assert_array_equal(ce(x, np.array([0, 1, 2, 0]), axis=0),
                                  ce(x.T.copy(), np.array([0, 1, 2, 0])))


TRANSCENDENTAL = [(s.name, {}) for s in LOSSES if s.transcendental and s.name not in ROWWISE]
TRANSCENDENTAL.append(("sigmoid_focal_loss", {"gamma": 1.5}))     # gamma != 2: pow_unit


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name,opts", TRANSCENDENTAL,
                         ids=[n + "".join(f"-{k}{v}" for k, v in o.items()) for n, o in TRANSCENDENTAL])
def test_transcendental_loss_kernels_are_vectorized(name, opts, dtype):
    """The value_and_grad loop of each transcendental elementwise loss (default
    options, and focal's general gamma) is packed arithmetic on full vectors,
    with no scalar math calls: the kernel calls its scalar, which LLVM must
    inline for that.  A loss with a per-block variant (binary_cross_entropy's
    binary targets) has each of its two scalars checked in a kernel of its own."""
    import re
    from fastact.cpu.jit import KernelPair
    from fastact.losses import kernels, op as loss_op
    spec = fa.REGISTRY[name]
    fd, prm = spec.extra["scalar"](loss_op.bind_options(spec, opts), "mean")
    variant = spec.extra["block_variant"]
    for scalar in (fd,) if variant is None else (fd, variant[1]):
        pair = KernelPair(kernels.elementwise_template(scalar, 0, False, True, "reduce",
                                                       len(prm), True),
                          interleave=kernels.INTERLEAVE,
                          cache=False)     # (Numba shows no assembly for cached kernels)
        p = np.linspace(0.1, 0.9, 100).astype(dtype)
        e = np.empty(0, dtype)
        pair.serial(p, p, e, e, np.empty_like(p), e, np.empty(1), dtype(1.0),
                    tuple(dtype(v) for v in prm))
        asm = "\n".join(pair.serial.inspect_asm().values())
        suffix = "ps" if dtype == np.float32 else "pd"
        what = f"{name} ({scalar.__name__})"
        # (products: the float64 sum of the terms has packed additions of its own)
        packed = re.findall(rf"\bv(?:fmadd|fnmadd|fmsub|mul|div)\w*{suffix}\s+[^\n]*%[yz]mm",
                            asm)
        assert len(packed) >= 8, f"{what}: no packed {suffix} products on ymm/zmm registers"
        # (a direct call, or the address of libm's function loaded for an indirect one)
        calls = re.findall(r"^\s+(?:call|movabs|jmp)\w*\s+\$?\"?"
                           r"((?:exp|expm1|log|log1p|erfc?|tanh|pow)f?)(?:@PLT)?\b",
                           asm, flags=re.M)
        assert not calls, f"{what}: scalar math calls left in the kernel: {calls[:3]}"


# ------------------------------------------------------------ finite differences

@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_finite_differences(name):
    rng = np.random.default_rng(3)
    op = getattr(fa, name)
    for opts in OPTIONS.get(name, [{}])[-2:]:
        pred, target = inputs(name, rng, (3, 5), np.float64)
        if name in ("hinge", "squared_hinge"):
            # keep away from the kink 1 - y p = 0
            pred = np.where(np.abs(1 - np.abs(pred)) < 0.05, pred + 0.2, pred)
        if name in ("mae", "l1", "rmse", "huber", "smooth_l1"):
            pred = pred + 0.0  # continuous data: kinks have probability 0
        o = materialize(opts, pred, target, rng)
        for reduction in ("mean", "sum") if name != "kl_divergence" else ("batchmean", "sum"):
            _, grad = op.value_and_grad(pred, target, reduction=reduction, **o)
            h = 1e-6
            fd = np.empty_like(pred)
            for i in range(pred.size):
                xp, xm = pred.copy(), pred.copy()
                xp.flat[i] += h
                xm.flat[i] -= h
                fd.flat[i] = (float(op.value_and_grad(xp, target, reduction=reduction, **o)[0])
                              - float(op.value_and_grad(xm, target, reduction=reduction,
                                                        **o)[0])) / (2 * h)
            np.testing.assert_allclose(grad, fd, rtol=2e-6, atol=2e-7 * max(1, np.abs(fd).max()),
                                       err_msg=f"{name} {reduction} {o}")


# ------------------------------------------------------------ PyTorch

def _t(a, grad=False):
    return torch.tensor(np.asarray(a), dtype=torch.float64 if np.asarray(a).dtype.kind == "f"
                        else torch.long, requires_grad=grad)


def torch_loss(name, x, t, reduction, o):
    """PyTorch's value of the loss (x a leaf tensor), or None where torch has no such loss."""
    if name in ("mse", "l2"):
        return F.mse_loss(x, t, reduction=reduction)
    if name in ("mae", "l1"):
        return F.l1_loss(x, t, reduction=reduction)
    if name == "huber":
        return F.huber_loss(x, t, reduction=reduction, delta=o.get("delta", 1.0))
    if name == "smooth_l1":
        return F.smooth_l1_loss(x, t, reduction=reduction, beta=o.get("beta", 1.0))
    if name == "binary_cross_entropy":
        w = o.get("weight")
        return F.binary_cross_entropy(x, t, weight=None if w is None else _t(w),
                                      reduction=reduction)
    if name == "sigmoid_binary_cross_entropy":
        w, pw = o.get("weight"), o.get("pos_weight")
        return F.binary_cross_entropy_with_logits(
            x, t, weight=None if w is None else _t(w),
            pos_weight=None if pw is None else _t(pw), reduction=reduction)
    if name == "kl_divergence":
        return F.kl_div(x, t, reduction=reduction, log_target=o.get("log_target", False))
    if name == "softmax_cross_entropy":
        return F.cross_entropy(x, t, reduction=reduction,
                               label_smoothing=o.get("label_smoothing", 0.0))
    if name == "sparse_softmax_cross_entropy":
        if o.get("z_loss") or o.get("softcap"):
            return None
        w = o.get("weight")
        return F.cross_entropy(x, t, weight=None if w is None else _t(w), reduction=reduction,
                               ignore_index=o.get("ignore_index", -100),
                               label_smoothing=o.get("label_smoothing", 0.0))
    if name == "nll_loss":
        w = o.get("weight")
        return F.nll_loss(x, t, weight=None if w is None else _t(w), reduction=reduction,
                          ignore_index=o.get("ignore_index", -100))
    if name == "sigmoid_focal_loss":
        # torchvision.ops.sigmoid_focal_loss, written out
        alpha, gamma = o.get("alpha", 0.25), o.get("gamma", 2.0)
        p = torch.sigmoid(x)
        ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
        p_t = p * t + (1 - p) * (1 - t)
        loss = ce * ((1 - p_t) ** gamma)
        if alpha >= 0:
            loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
        return {"mean": loss.mean, "sum": loss.sum, "none": lambda: loss}[reduction]()
    return None


TORCH_LOSSES = [n for n in NAMES if n not in ("rmse", "pseudo_huber", "log_cosh", "hinge",
                                              "squared_hinge")]


@needs_torch
@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")
@pytest.mark.parametrize("name", TORCH_LOSSES)
def test_against_torch(name):
    rng = np.random.default_rng(11)
    op = getattr(fa, name)
    for opts in OPTIONS.get(name, [{}]):
        for reduction in reductions(name):
            pred, target = inputs(name, rng, (6, 5), np.float64)
            o = materialize(opts, pred, target, rng)
            x = _t(pred, grad=True)
            tl = torch_loss(name, x, _t(target), reduction, o)
            if tl is None:
                continue
            tl.sum().backward()
            loss, grad = op.value_and_grad(pred, target, reduction=reduction, **o)
            what = f"{name} {reduction} {o}"
            np.testing.assert_allclose(loss, tl.detach().numpy(), rtol=1e-12, atol=1e-14,
                                       err_msg=what)
            np.testing.assert_allclose(grad, x.grad.numpy(), rtol=1e-11, atol=1e-14,
                                       err_msg=what)


@needs_torch
def test_torch_class_axis_1_and_3d():
    """PyTorch's (N, C, d) layout equals fastact with axis=1 (for the sparse CE)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 6, 4))
    y = rng.integers(0, 6, (3, 4))
    y[0, 1] = -100
    w = rng.uniform(0.5, 2, 6)
    xt = _t(x, grad=True)
    tl = F.cross_entropy(xt, _t(y), weight=_t(w), label_smoothing=0.1)
    tl.backward()
    loss, grad = fa.sparse_softmax_cross_entropy.value_and_grad(x, y, axis=1, weight=w,
                                                                label_smoothing=0.1)
    np.testing.assert_allclose(loss, tl.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-11, atol=1e-15)
    # dense targets along axis 1
    t = rng.uniform(0, 1, (3, 6, 4))
    t /= t.sum(axis=1, keepdims=True)
    xt = _t(x, grad=True)
    tl = F.cross_entropy(xt, _t(t), label_smoothing=0.2)
    tl.backward()
    loss, grad = fa.softmax_cross_entropy.value_and_grad(x, t, axis=1, label_smoothing=0.2)
    np.testing.assert_allclose(loss, tl.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-11, atol=1e-15)


# ------------------------------------------------------------ special values

@needs_torch
def test_nan_propagates_like_torch():
    nan = float("nan")
    for name in TORCH_LOSSES:
        rng = np.random.default_rng(2)
        pred, target = inputs(name, rng, (3, 4), np.float64)
        pred[1, 2] = nan
        x = _t(pred, grad=True)
        if name == "binary_cross_entropy":
            continue  # PyTorch raises on NaN probabilities; covered below
        tl = torch_loss(name, x, _t(target), "sum", {})
        tl.backward()
        loss, grad = getattr(fa, name).value_and_grad(pred, target, reduction="sum")
        assert math.isnan(float(loss)) == math.isnan(tl.item()), name
        assert math.isnan(float(loss)) or name == "nll_loss", name
        np.testing.assert_array_equal(np.isnan(grad), np.isnan(x.grad.numpy()), err_msg=name)
    loss, grad = fa.binary_cross_entropy.value_and_grad(np.array([0.5, nan]), np.array([1.0, 0.0]))
    assert math.isnan(float(loss)) and math.isnan(grad[1]) and not math.isnan(grad[0])
    for name in ("rmse", "pseudo_huber", "log_cosh", "hinge", "squared_hinge"):
        loss, grad = getattr(fa, name).value_and_grad(np.array([0.5, nan]), np.array([1.0, 1.0]))
        assert math.isnan(float(loss)), name


def test_sigmoid_bce_infinite_logits_are_finite():
    inf = np.inf
    x = np.array([inf, -inf, inf, -inf, 30.0, -30.0])
    t = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    for dtype in (np.float32, np.float64):
        loss, grad = fa.sigmoid_binary_cross_entropy.value_and_grad(
            x.astype(dtype), t.astype(dtype), reduction="none")
        np.testing.assert_array_equal(loss[:4], [0, 0, inf, inf])
        np.testing.assert_array_equal(grad[:4], [0, 0, 1, -1])
        assert np.all(np.isfinite(loss[4:])) and loss[4] > 0
        np.testing.assert_allclose(loss[4:], math.log1p(math.exp(-30.0)), rtol=1e-6)
        pw = np.full(6, 3.0, dtype)
        loss, grad = fa.sigmoid_binary_cross_entropy.value_and_grad(
            x.astype(dtype), t.astype(dtype), pos_weight=pw, reduction="none")
        np.testing.assert_array_equal(loss[:4], [0, 0, inf, inf])
        np.testing.assert_array_equal(grad[:4], [0, 0, 1, -3])
    # focal loss at infinite logits: finite where the limit is
    loss, grad = fa.sigmoid_focal_loss.value_and_grad(x[:2], t[:2], reduction="none")
    np.testing.assert_array_equal(loss, [0, 0])
    np.testing.assert_array_equal(grad, [0, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_sigmoid_bce_at_logit_0_is_log_2(dtype):
    # log 2 correctly rounded (as softplus(0)), gradient -+1/2, for targets 0 and 1
    ln2 = dtype(math.log(2.0))
    for t in (0.0, 1.0):
        assert fa.sigmoid_binary_cross_entropy(dtype(0.0), dtype(t)) == ln2, t
        loss, grad = fa.sigmoid_binary_cross_entropy.value_and_grad(
            np.zeros(40000, dtype), np.full(40000, t, dtype), reduction="none")
        assert np.all(loss == ln2) and np.all(grad == 0.5 - t), (t, loss[0], grad[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_bce_range_check_finds_one_bad_element(dtype):
    """binary_cross_entropy raises for any prediction or target outside [0, 1]
    (one element in a large array is enough: the parallel check), naming the
    first; NaN is not out of range (it propagates), and an out= that is an
    input is not written.  Calls with a reduction and without out= or with one
    apart from the inputs check after the kernel (its NaN sum shows the bad
    element), with a NaN elsewhere too."""
    n = 3 * PARALLEL_MIN + 11
    p = np.full(n, 0.5, dtype)
    t = np.linspace(0, 1, n).astype(dtype)
    bce = fa.binary_cross_entropy
    for arr, bad, what in ((p, 1.5, "probabilities"), (t, -1e-30, "targets"),
                           (p, -0.0 - 1e-7, "probabilities"), (t, np.inf, "targets")):
        for k in (0, n // 2, n - 1):
            a, b = p.copy(), t.copy()
            (a if arr is p else b)[k] = bad
            keep = a.copy()
            match = f"{what} must be in .* at flat index {k}"
            with pytest.raises(ValueError, match=match):
                bce.value_and_grad(a, b, out=a)
            np.testing.assert_array_equal(a, keep)
            with pytest.raises(ValueError, match=match):
                bce.value_and_grad(a, b, out=np.empty_like(a))
            for red in ("mean", "sum", "none"):
                for run in (bce, bce.value_and_grad):
                    with pytest.raises(ValueError, match=match):
                        run(a, b, reduction=red)
            (a if arr is t else b)[n - 1 - k] = np.nan
            with pytest.raises(ValueError, match=match):
                bce.value_and_grad(a, b)
            with pytest.raises(ValueError, match=match):
                bce.value_and_grad(a, b, out=np.empty_like(a))
    a, b = p.copy(), t.copy()
    a[7] = np.nan
    b[n // 3] = np.nan
    loss, grad = fa.binary_cross_entropy.value_and_grad(a, b)
    assert np.isnan(loss) and np.isnan(grad[7]) and np.isnan(grad[n // 3])
    loss, _ = fa.binary_cross_entropy.value_and_grad(p, t)     # 0 and 1 are in range
    assert np.isfinite(loss)


def test_bce_range_check_runs_after_the_kernel_unless_out_is_an_input(monkeypatch):
    """The short path checks binary_cross_entropy's range before the kernel
    only where out= is an input (which the kernel would overwrite), and after
    it otherwise: only when the reduced loss is not finite."""
    spec = fa.REGISTRY["binary_cross_entropy"]
    calls = []
    check = spec.extra["validate"]
    monkeypatch.setitem(spec.extra, "validate", lambda *a: (calls.append(1), check(*a)))
    monkeypatch.setattr(fa.binary_cross_entropy, "_plans", {})
    p = np.linspace(0.1, 0.9, 1000)
    t = np.linspace(0, 1, 1000)
    bce = fa.binary_cross_entropy.value_and_grad
    for out, checks in ((None, 0), (np.empty_like(p), 0), (t.copy(), 1)):
        calls.clear()
        target = t if checks == 0 else out
        loss, grad = bce(p, target, out=out)
        assert len(calls) == checks and np.isfinite(loss)
    calls.clear()
    bad = t.copy()
    bad[3] = 2.0
    with pytest.raises(ValueError, match="at flat index 3"):
        bce(p, bad, out=np.empty_like(p))
    assert len(calls) == 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_binary(dtype):
    from fastact.cpu.reduce import all_binary
    t = np.tile(np.array([0.0, 1.0, -0.0], dtype), 400)
    assert all_binary(t) and all_binary(t[:0]) and all_binary(t[:5])
    for bad in (0.5, 2.0, -1.0, np.inf, -np.inf, np.nan, np.finfo(dtype).smallest_subnormal,
                1 - np.finfo(dtype).epsneg):
        for where in (0, 255, 256, 1199):       # first and later runs of 256
            u = t.copy()
            u[where] = bad
            assert not all_binary(u), (bad, where)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_blocks_of_binary_targets_give_the_general_values(dtype, rng):
    """The parallel CPU kernels take a one-log variant of binary_cross_entropy
    for each block of targets that are all 0 or 1 (``losses.kernels``, BLOCK
    elements): blocks of binary targets, blocks with one fractional target,
    NaN or special probabilities, probabilities next to 0 and 1 give the
    general kernel's values."""
    from fastact.cpu.jit import PARALLEL_MIN
    from fastact.cpu.reduce import all_binary
    from fastact.losses import kernels, scalars
    B = kernels.BLOCK
    n = max(5 * B, PARALLEL_MIN) + 17
    p = rng.uniform(0, 1, n).astype(dtype)
    p[:8] = [0.0, 1.0, 0.0, 1.0, 1e-30, 1 - 2.0 ** -20, 0.5, np.finfo(dtype).smallest_subnormal]
    p[8:608] = _near_0_and_1(dtype)
    t = (rng.uniform(0, 1, n) < 0.5).astype(dtype)
    t[:4] = [0.0, 0.0, 1.0, 1.0]
    t[B + 100] = 0.25                          # block 1: one fractional target
    t[2 * B + 7] = np.nan                      # block 2: a NaN target
    p[3 * B + 9] = np.nan                      # block 3: binary targets, a NaN probability
    assert all_binary(t[:B]) and not all_binary(t[B:2 * B])
    assert not all_binary(t[2 * B:3 * B]) and all_binary(t[3 * B:4 * B])
    loss, grad = fa.binary_cross_entropy.value_and_grad(p, t, reduction="none")
    general = kernels.elementwise_kernel(scalars.bce_lg, 0, False, True, "none", 0, True)
    gl, gg = np.empty_like(p), np.empty_like(p)
    e = p[:0]
    general.serial(p, t, e, e, gg, gl, np.empty(0), dtype(1.0), ())
    np.testing.assert_array_equal(loss, gl)          # (NaN where both are NaN)
    np.testing.assert_array_equal(grad, gg)
    assert np.isnan(loss[2 * B + 7]) and np.isnan(loss[3 * B + 9])
    np.testing.assert_array_equal(loss[:4], [0, 100, 100, 0])
    ok = ~np.isnan(loss)
    pd, td = p[ok].astype(np.float64), t[ok].astype(np.float64)
    with np.errstate(divide="ignore"):
        ref = -(td * np.maximum(np.log(pd), -100) + (1 - td) * np.maximum(np.log1p(-pd), -100))
    np.testing.assert_allclose(loss[ok], ref, rtol=1e-5 if dtype == np.float32 else 1e-13,
                               atol=1e-30)
    total, _ = fa.binary_cross_entropy.value_and_grad(p[ok], t[ok], reduction="sum")
    np.testing.assert_allclose(float(total), ref.sum(), rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_bce_log_clamp():
    p = np.array([0.0, 1.0, 0.0, 1.0])
    t = np.array([1.0, 0.0, 0.0, 1.0])
    loss, grad = fa.binary_cross_entropy.value_and_grad(p, t, reduction="none")
    np.testing.assert_array_equal(loss, [100, 100, 0, 0])
    np.testing.assert_array_equal(grad, [-1e12, 1e12, 0, 0])
    l32, _ = fa.binary_cross_entropy.value_and_grad(p.astype(np.float32), t.astype(np.float32),
                                                    reduction="none")
    np.testing.assert_array_equal(l32, [100, 100, 0, 0])


def _near_0_and_1(dtype):
    tiny = np.logspace(-30 if dtype == np.float64 else -20, -0.4, 300)
    gap = np.logspace(-15 if dtype == np.float64 else -7, -0.4, 300)
    return np.concatenate([tiny, 1 - gap]).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_probabilities_near_0_and_1(dtype, rng):
    """log(1 - p) keeps full relative accuracy for tiny p and for p next to 1,
    where 1 - p is rounded or exact (float64 reference, per element)."""
    p = _near_0_and_1(dtype)
    t = rng.uniform(0, 1, p.size).astype(dtype)
    loss, grad = fa.binary_cross_entropy.value_and_grad(p, t, reduction="none")
    pd, td = p.astype(np.float64), t.astype(np.float64)
    ref = -(td * np.maximum(np.log(pd), -100) + (1 - td) * np.maximum(np.log1p(-pd), -100))
    ref_grad = (pd - td) / np.maximum(pd * (1 - pd), 1e-12)
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(loss, ref, rtol=rtol)
    np.testing.assert_allclose(grad, ref_grad, rtol=rtol)


def test_softmax_ce_special_logits():
    inf = np.inf
    x = np.array([[0.0, -inf, 1.0, 2.0], [3.0, 3.0, 3.0, 3.0], [1e30, 0.0, -1e30, 5.0]])
    y = np.array([2, 1, 0])
    for dtype in (np.float32, np.float64):
        loss, grad = fa.sparse_softmax_cross_entropy.value_and_grad(x.astype(dtype), y,
                                                                    reduction="none")
        wl, wg = ref("sparse_softmax_cross_entropy", x, y, "none")
        np.testing.assert_allclose(loss, wl, rtol=1e-6)
        np.testing.assert_allclose(grad, wg, rtol=1e-6, atol=1e-7)
        assert grad[0, 1] == 0
    # a label on a -inf logit: infinite loss (as PyTorch)
    loss = fa.sparse_softmax_cross_entropy(x[:1], np.array([1]))
    assert float(loss) == inf
    # a NaN logit spoils its row only
    xn = x.copy()
    xn[1, 2] = np.nan
    loss, grad = fa.sparse_softmax_cross_entropy.value_and_grad(xn, y, reduction="none")
    assert np.isnan(loss[1]) and np.all(np.isnan(grad[1]))
    assert np.isfinite(loss[[0, 2]]).all() and np.isfinite(grad[[0, 2]]).all()


def test_regression_infinities():
    inf = np.inf
    p = np.array([inf, -inf, 3.0])
    t = np.array([0.0, 0.0, inf])
    for name in ("mae", "huber", "smooth_l1", "pseudo_huber", "log_cosh"):
        loss, grad = getattr(fa, name).value_and_grad(p, t, reduction="none")
        np.testing.assert_array_equal(loss, [inf, inf, inf], err_msg=name)
        assert np.all(np.isfinite(grad)), name
    loss, grad = fa.log_cosh.value_and_grad(p, t, reduction="none")
    np.testing.assert_array_equal(grad, [1, -1, -1])


def test_kinks_follow_torch_conventions():
    z = np.array([0.0, 1.0, -1.0])
    _, g = fa.mae.value_and_grad(z, np.zeros(3), reduction="sum")
    np.testing.assert_array_equal(g, [0, 1, -1])
    _, g = fa.huber.value_and_grad(z, np.zeros(3), reduction="sum")
    np.testing.assert_array_equal(g, [0, 1, -1])
    _, g = fa.smooth_l1.value_and_grad(z, np.zeros(3), reduction="sum")
    np.testing.assert_array_equal(g, [0, 1, -1])
    _, g = fa.hinge.value_and_grad(np.array([1.0, -1.0]), np.array([1.0, -1.0]), reduction="sum")
    np.testing.assert_array_equal(g, [0, 0])
    # rmse: gradient 0 where the loss is 0
    loss, g = fa.rmse.value_and_grad(np.ones(4), np.ones(4))
    assert float(loss) == 0 and np.all(g == 0)


def test_hinge_maps_zero_one_targets():
    rng = np.random.default_rng(0)
    p = rng.standard_normal(20)
    t01 = (rng.uniform(size=20) < 0.5).astype(float)
    for name in ("hinge", "squared_hinge"):
        op = getattr(fa, name)
        a = op.value_and_grad(p, t01)
        b = op.value_and_grad(p, 2 * t01 - 1)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


# ------------------------------------------------------------ empty batches

@pytest.mark.parametrize("name", NAMES)
def test_empty_batch(name):
    rng = np.random.default_rng(0)
    pred, target = inputs(name, rng, (0, 5))
    op = getattr(fa, name)
    loss, grad = op.value_and_grad(pred, target, reduction="mean")
    assert math.isnan(float(loss))
    assert grad.shape == pred.shape
    loss, grad = op.value_and_grad(pred, target, reduction="sum")
    assert float(loss) == 0
    loss, grad = op.value_and_grad(pred, target, reduction="none")
    assert loss.shape == ((0,) if name in ROWWISE else (0, 5))


@pytest.mark.parametrize("name", LABELS)
def test_all_rows_ignored(name):
    x = np.random.default_rng(0).standard_normal((4, 3))
    y = np.full(4, 7)
    w = np.array([1.0, 2.0, 3.0])
    loss, grad = getattr(fa, name).value_and_grad(x, y, ignore_index=7, weight=w)
    assert math.isnan(float(loss)) and np.all(grad == 0)
    loss, grad = getattr(fa, name).value_and_grad(x, y, ignore_index=7, reduction="sum")
    assert float(loss) == 0 and np.all(grad == 0)
    loss, grad = getattr(fa, name).value_and_grad(x, y, ignore_index=7, reduction="none")
    np.testing.assert_array_equal(loss, 0)


# ------------------------------------------------------------ layouts, out=, dtypes

@pytest.mark.parametrize("name", NAMES)
def test_noncontiguous_and_transposed(name):
    rng = np.random.default_rng(4)
    pred, target = inputs(name, rng, (8, 6))
    op = getattr(fa, name)
    l0, g0 = op.value_and_grad(pred, target, reduction="sum")
    big_p = np.zeros((16, 12))
    big_p[::2, ::2] = pred
    pv = big_p[::2, ::2]
    if name in LABELS:
        tv = np.repeat(target, 2)[::2]
    else:
        big_t = np.zeros((16, 12))
        big_t[::2, ::2] = target
        tv = big_t[::2, ::2]
    l1, g1 = op.value_and_grad(pv, tv, reduction="sum")
    np.testing.assert_allclose(l1, l0, rtol=1e-14)
    np.testing.assert_allclose(g1, g0, rtol=1e-14)
    # transposed (Fortran-ordered) inputs; the class axis moves with the transpose
    kw = {"axis": 0} if name in ("softmax_cross_entropy", "sparse_softmax_cross_entropy") else {}
    if name == "nll_loss":
        return
    tt = target if name in LABELS else np.ascontiguousarray(target.T).T
    pt = np.asfortranarray(pred.T) if kw else np.asfortranarray(pred)
    l2, g2 = op.value_and_grad(pt, tt if not kw else (target if name in LABELS else target.T),
                               reduction="sum", **kw)
    np.testing.assert_allclose(l2, l0, rtol=1e-13)
    np.testing.assert_allclose(g2, g0.T if kw else g0, rtol=1e-13, atol=1e-16)


def test_three_d_and_one_d_shapes():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 5))
    y = rng.integers(0, 5, (2, 3))
    loss, grad = fa.sparse_softmax_cross_entropy.value_and_grad(x, y, reduction="none")
    wl, wg = ref("sparse_softmax_cross_entropy", x, y, "none")
    assert loss.shape == (2, 3)
    np.testing.assert_allclose(loss, wl, rtol=1e-13)
    np.testing.assert_allclose(grad, wg, rtol=1e-12, atol=1e-15)
    # one row: 1-d logits with a 0-d label
    loss, grad = fa.sparse_softmax_cross_entropy.value_and_grad(x[0, 0], np.int64(2))
    wl, wg = ref("sparse_softmax_cross_entropy", x[0, 0], np.int64(2), "mean")
    np.testing.assert_allclose(loss, wl, rtol=1e-13)
    np.testing.assert_allclose(grad, wg, rtol=1e-12)
    # 0-d regression
    loss, grad = fa.mse.value_and_grad(np.float64(2.0), np.float64(0.5))
    assert float(loss) == 2.25 and grad.shape == () and float(grad) == 3.0


@pytest.mark.parametrize("name", NAMES)
def test_out_and_aliasing(name):
    rng = np.random.default_rng(6)
    for dtype in (np.float32,):
        pred, target = inputs(name, rng, (5, 7), dtype)
        op = getattr(fa, name)
        loss, grad = op.value_and_grad(pred, target)
        out = np.full_like(pred, 7.0)
        l1, g1 = op.value_and_grad(pred, target, out=out)
        assert g1 is out
        np.testing.assert_array_equal(out, grad)
        assert float(l1) == float(loss)
        # the gradient written over the predictions
        p2 = pred.copy()
        l2, g2 = op.value_and_grad(p2, target, out=p2)
        assert g2 is p2
        np.testing.assert_array_equal(p2, grad)
        assert float(l2) == float(loss)
        if name not in LABELS:
            # over the target: the result must still be right
            t2 = target.copy()
            l3, g3 = op.value_and_grad(pred, t2, out=t2)
            np.testing.assert_array_equal(t2, grad)
            assert float(l3) == float(loss)
        # a non-contiguous out
        big = np.zeros((5, 14), dtype)
        _, g4 = op.value_and_grad(pred, target, out=big[:, ::2])
        np.testing.assert_array_equal(big[:, ::2], grad)
        with pytest.raises(TypeError):
            op.value_and_grad(pred, target, out=np.empty(pred.shape, np.float64))
        with pytest.raises(ValueError):
            op.value_and_grad(pred, target, out=np.empty((3, 3), dtype))


def test_aliasing_transposed_class_axis():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 4))
    y = rng.integers(0, 7, 4)
    loss, grad = fa.sparse_softmax_cross_entropy.value_and_grad(x, y, axis=0)
    x2 = x.copy()
    l2, g2 = fa.sparse_softmax_cross_entropy.value_and_grad(x2, y, axis=0, out=x2)
    assert g2 is x2
    np.testing.assert_array_equal(x2, grad)


@pytest.mark.parametrize("name", NAMES)
def test_dtypes_preserved(name):
    rng = np.random.default_rng(8)
    op = getattr(fa, name)
    p64, t64 = inputs(name, rng, (4, 5))
    for dtype in (np.float16, np.float32, np.float64):
        p = p64.astype(dtype)
        t = t64 if name in LABELS else t64.astype(dtype)
        loss, grad = op.value_and_grad(p, t)
        assert np.asarray(loss).dtype == dtype and grad.dtype == dtype
        if dtype == np.float64:
            assert op(p, t).dtype == dtype
        if dtype == np.float16:
            wl, wg = ref(name, p, t)
            np.testing.assert_allclose(np.float64(loss), wl, rtol=2e-3, atol=1e-3)
            np.testing.assert_allclose(grad.astype(float), wg, rtol=3e-3,
                                       atol=2e-3 * np.abs(wg).max())
    if name in ("mse", "mae", "huber", "hinge", "l2"):
        # integer predictions compute in float64; integer targets take the prediction's dtype
        pi = np.array([1, 2, 3])
        ti = np.array([1, 0, -1])
        loss, grad = op.value_and_grad(pi, ti)
        assert grad.dtype == np.float64
        wl, wg = ref(name, pi, ti)
        np.testing.assert_allclose(loss, wl, rtol=1e-14)
        loss, grad = op.value_and_grad(pi.astype(np.float32), ti)
        assert grad.dtype == np.float32 and np.asarray(loss).dtype == np.float32


@needs_torch
def test_torch_tensors_in_torch_out():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal((4, 6)), dtype=torch.float32)
    y = torch.tensor(rng.integers(0, 6, 4))
    loss, grad = fa.sparse_softmax_cross_entropy.value_and_grad(x, y)
    assert isinstance(loss, torch.Tensor) and isinstance(grad, torch.Tensor)
    assert loss.dtype == torch.float32 and loss.dim() == 0 and grad.shape == x.shape
    t = torch.tensor(rng.standard_normal((4, 6)), dtype=torch.float32)
    loss, grad = fa.mse.value_and_grad(x, t, out=x)
    assert grad is x
    assert isinstance(fa.mse(x, t, reduction="none"), torch.Tensor)


# ------------------------------------------------------------ parallel sizes

@pytest.mark.parametrize("name", ["mse", "sparse_softmax_cross_entropy"])
def test_parallel_sizes(name):
    assert PARALLEL_MIN <= 40000 * 3
    rng = np.random.default_rng(12)
    shape = (60, 1031) if name in ROWWISE else (100003,)
    pred, target = inputs(name, rng, shape, np.float32)
    opts = {"label_smoothing": 0.1, "weight": "class"} if name in LABELS else {}
    o = materialize(opts, pred, target, rng, np.float32)
    for reduction in ("mean", "none"):
        check_against_reference(name, pred, target, o, reduction, np.float32)
    if name == "sparse_softmax_cross_entropy":
        o = {"softcap": 5.0, "z_loss": 1e-3, "ignore_index": 3}
        check_against_reference(name, pred, target, o, "sum", np.float32)


# ------------------------------------------------------------ errors

@pytest.mark.parametrize("name", NAMES)
def test_errors(name):
    rng = np.random.default_rng(0)
    op = getattr(fa, name)
    pred, target = inputs(name, rng, (4, 5))
    with pytest.raises(ValueError):                       # shape mismatch
        op.value_and_grad(pred, target[:3])
    with pytest.raises(TypeError):                        # complex prediction
        op.value_and_grad(pred.astype(complex), target)
    with pytest.raises(TypeError):                        # object prediction
        op.value_and_grad(pred.astype(object), target)
    with pytest.raises(TypeError):                        # unknown option
        op.value_and_grad(pred, target, nonsense=1)
    with pytest.raises(ValueError):                       # bad reduction
        op.value_and_grad(pred, target, reduction="avg")
    with pytest.raises(ValueError):                       # unknown backend
        op.value_and_grad(pred, target, backend="tpu")
    if name in LABELS:
        with pytest.raises(TypeError, match="integer"):   # float labels
            op.value_and_grad(pred, target.astype(np.float64))
        bad = target.copy()
        bad[2] = 5
        with pytest.raises(ValueError, match="row 2"):
            op.value_and_grad(pred, bad)
        bad[2] = -1
        with pytest.raises(ValueError, match="row 2"):
            op.value_and_grad(pred, bad)
        g = np.zeros_like(pred)
        with pytest.raises(ValueError):
            op.value_and_grad(pred, bad, out=g)
        assert np.all(g == 0)                             # nothing written before the check
        with pytest.raises(ValueError):                   # weight of the wrong length
            op.value_and_grad(pred, target, weight=np.ones(4))
        with pytest.raises(ValueError):                   # no class axis
            op.value_and_grad(np.float64(1.0), np.int64(0))
    else:
        with pytest.raises(TypeError):
            op.value_and_grad(pred, target.astype(complex))
    if name == "binary_cross_entropy":
        for bad_t in (1.5, -0.1):
            t = target.copy()
            t[1, 1] = bad_t
            with pytest.raises(ValueError, match="targets"):
                op.value_and_grad(pred, t)
        p = pred.copy()
        p[0, 0] = 1.2
        with pytest.raises(ValueError):
            op.value_and_grad(p, target)
    if name == "sigmoid_binary_cross_entropy":
        with pytest.raises(ValueError):
            op.value_and_grad(pred, target, pos_weight=np.ones(3))
    if name in ("huber", "pseudo_huber"):
        with pytest.raises(ValueError):
            op.value_and_grad(pred, target, delta=0.0)
    if name == "smooth_l1":
        with pytest.raises(ValueError):
            op.value_and_grad(pred, target, beta=-1.0)
    if name in ("softmax_cross_entropy", "sparse_softmax_cross_entropy"):
        with pytest.raises(ValueError):
            op.value_and_grad(pred, target, label_smoothing=1.5)
        with pytest.raises(ValueError):
            op.value_and_grad(pred, target, axis=2)
    if name == "sparse_softmax_cross_entropy":
        with pytest.raises(ValueError):
            op.value_and_grad(pred, target, softcap=-1.0)
        with pytest.raises(ValueError):
            op.value_and_grad(pred, target, z_loss=-1.0)
    with pytest.raises(TypeError):                        # forward takes no out=
        op(pred, target, out=np.empty_like(pred))
