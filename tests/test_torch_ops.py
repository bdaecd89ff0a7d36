"""fastact.torch: autograd of every registry op (gradcheck in float64), float32
agreement with torch.nn.functional, double backward, torch.compile."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

import fastact as fa  # noqa: E402
import fastact.torch as ft  # noqa: E402
from conftest import default_params, elementwise_variants  # noqa: E402

F64 = torch.float64


def _x(*shape, dtype=F64, seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(requires_grad)


def _gradcheck(f, *inputs):
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_every_registry_op_has_a_function():
    assert set(fa.REGISTRY) <= set(dir(ft))
    for name in fa.REGISTRY:
        assert getattr(ft, name).__name__ == name


# ------------------------------------------------------------ activations

@pytest.mark.parametrize("name,choice", elementwise_variants())
def test_gradcheck_elementwise(name, choice):
    spec = fa.REGISTRY[name]
    kw = default_params(spec)
    if choice is not None:
        kw[spec.choice.name] = choice
    x = _x(3, 4)
    y = getattr(ft, name)(x, **kw)
    assert y.grad_fn is not None and y.shape == x.shape
    np.testing.assert_allclose(y.detach().numpy(), getattr(fa, name)(x.detach().numpy(), **kw),
                               rtol=1e-14)
    _gradcheck(lambda t: getattr(ft, name)(t, **kw), x)


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "softmin"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_gradcheck_rowwise(name, axis):
    _gradcheck(lambda t: getattr(ft, name)(t, axis=axis), _x(3, 4))


def test_dim_is_axis():
    x = _x(3, 4, requires_grad=False)
    torch.testing.assert_close(ft.softmax(x, dim=0), ft.softmax(x, axis=0))
    torch.testing.assert_close(ft.softmax(x, dim=0), F.softmax(x, dim=0))


@pytest.mark.parametrize("name,kw", [("glu", {}), ("swiglu", {}), ("geglu", {}),
                                     ("geglu", {"approximate": "tanh"}), ("glu", {"axis": 0})])
def test_gradcheck_gated(name, kw):
    x = _x(4, 4)
    assert getattr(ft, name)(x, **kw).shape == ((2, 4) if kw.get("axis") == 0 else (4, 2))
    _gradcheck(lambda t: getattr(ft, name)(t, **kw), x)


@pytest.mark.parametrize("wshape,axis", [((3,), 1), ((1,), 1), ((4,), -1)])
def test_gradcheck_prelu(wshape, axis):
    x = _x(2, 3, 4)
    w = (torch.rand(*wshape, dtype=F64) * 0.5).requires_grad_(True)
    _gradcheck(lambda a, b: ft.prelu(a, b, axis=axis), x, w)


@pytest.mark.parametrize("axis", [-1, 0])
def test_gradcheck_maxout(axis):
    x = _x(4, 6)
    assert ft.maxout(x, 2, axis=axis).shape == ((2, 6) if axis == 0 else (4, 3))
    _gradcheck(lambda t: ft.maxout(t, 2, axis=axis), x)


def test_argmax_is_not_differentiable():
    x = _x(3, 5)
    i = ft.argmax(x, dim=0)
    assert i.dtype == torch.int64 and i.grad_fn is None and not i.requires_grad
    assert torch.equal(i, torch.argmax(x.detach(), dim=0))
    assert "NOT differentiable" in ft.argmax.__doc__


# ------------------------------------------------------------ losses

ELEMENTWISE_LOSSES = [s.name for s in fa.REGISTRY.values()
                      if s.kind == "loss" and s.extra["family"] == "elementwise"]


def _loss_inputs(spec, seed=0):
    args, kw = spec.example_call("value_and_grad", 12, np.float64, np.random.default_rng(seed))
    pred, target = (torch.from_numpy(np.ascontiguousarray(a).reshape(3, 4)) for a in args[:2])
    return pred.requires_grad_(True), target, kw


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", ELEMENTWISE_LOSSES)
def test_gradcheck_elementwise_loss(name, reduction):
    spec = fa.REGISTRY[name]
    pred, target, kw = _loss_inputs(spec)
    f = getattr(ft, name)
    loss = f(pred, target, reduction=reduction, **kw)
    assert loss.shape == (() if reduction != "none" else (3, 4))
    ref = getattr(fa, name)(pred.detach().numpy(), target.numpy(), reduction=reduction, **kw)
    np.testing.assert_allclose(loss.detach().numpy(), ref, rtol=1e-13)
    _gradcheck(lambda p: f(p, target, reduction=reduction, **kw), pred)


@pytest.mark.parametrize("name,kw", [
    ("huber", {"delta": 0.5}), ("smooth_l1", {"beta": 0.3}), ("pseudo_huber", {"delta": 2.0}),
    ("kl_divergence", {"reduction": "batchmean"}),
    ("kl_divergence", {"log_target": True, "reduction": "none"}),
    ("sigmoid_focal_loss", {"alpha": -1.0, "gamma": 1.5}),
])
def test_gradcheck_loss_options(name, kw):
    pred, target, kw0 = _loss_inputs(fa.REGISTRY[name])
    _gradcheck(lambda p: getattr(ft, name)(p, target, **kw0, **kw), pred)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck_bce_weights(reduction):
    spec = fa.REGISTRY["binary_cross_entropy"]
    pred, target, _ = _loss_inputs(spec)
    w = torch.rand(4, dtype=F64) + 0.5
    _gradcheck(lambda p: ft.binary_cross_entropy(p, target, weight=w, reduction=reduction),
               pred)
    logits = _x(3, 4)
    pw = torch.rand(4, dtype=F64) * 3
    _gradcheck(lambda p: ft.sigmoid_binary_cross_entropy(p, target, weight=w, pos_weight=pw,
                                                         reduction=reduction), logits)


SPARSE_OPTIONS = [
    {},
    {"weight": "w", "ignore_index": 1, "label_smoothing": 0.2},
    {"z_loss": 1e-2, "softcap": 2.0},
    {"weight": "w", "ignore_index": 1, "label_smoothing": 0.1, "z_loss": 1e-3, "softcap": 3.0},
    {"axis": 0},
]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", SPARSE_OPTIONS)
def test_gradcheck_sparse_softmax_cross_entropy(options, reduction):
    kw = dict(options, reduction=reduction)
    if kw.get("weight") == "w":
        kw["weight"] = torch.tensor([0.5, 2.0, 1.0, 1.5], dtype=F64)
    x = _x(3, 4) if kw.get("axis") != 0 else _x(4, 3)
    labels = torch.tensor([0, 1, 3])
    _gradcheck(lambda t: ft.sparse_softmax_cross_entropy(t, labels, **kw), x)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck_nll_and_dense(reduction):
    labels = torch.tensor([2, 0, 3])
    w = torch.tensor([1.0, 0.5, 2.0, 1.5], dtype=F64)
    logp = torch.log_softmax(_x(3, 4, requires_grad=False), -1).requires_grad_(True)
    _gradcheck(lambda t: ft.nll_loss(t, labels, weight=w, ignore_index=0, reduction=reduction),
               logp)
    probs = torch.softmax(_x(3, 4, seed=1, requires_grad=False), -1)
    _gradcheck(lambda t: ft.softmax_cross_entropy(t, probs, label_smoothing=0.1,
                                                  reduction=reduction), _x(3, 4))
    _gradcheck(lambda t: ft.softmax_cross_entropy(t, probs.T.contiguous(), axis=0,
                                                  reduction=reduction), _x(4, 3))


def test_none_reduction_random_upstream_gradient():
    x, labels = _x(5, 4), torch.tensor([0, 3, 1, -100, 2])
    dl = torch.randn(5, dtype=F64)
    (gx,) = torch.autograd.grad(ft.sparse_softmax_cross_entropy(x, labels, reduction="none"),
                                x, dl)
    (rx,) = torch.autograd.grad(F.cross_entropy(x, labels, reduction="none"), x, dl)
    torch.testing.assert_close(gx, rx, rtol=1e-13, atol=1e-15)
    p, t = _x(3, 4), _x(3, 4, seed=2, requires_grad=False)
    dl = torch.randn(3, 4, dtype=F64)
    (gp,) = torch.autograd.grad(ft.mse(p, t, reduction="none"), p, dl)
    torch.testing.assert_close(gp, 2 * (p - t).detach() * dl, rtol=1e-13, atol=1e-15)


# ------------------------------------------------------------ against torch, float32

def _agree(ours, theirs, *inputs, dy=None):
    """Values and gradients of ours(*inputs) and theirs(*inputs), float32."""
    ins = [t.detach().float().requires_grad_(t.requires_grad) for t in inputs]
    ins2 = [t.detach().float().requires_grad_(t.requires_grad) for t in inputs]
    a, b = ours(*ins), theirs(*ins2)
    torch.testing.assert_close(a, b, rtol=2e-6, atol=1e-6)
    g = torch.randn(a.shape, generator=torch.Generator().manual_seed(3)) if dy is None else dy
    a.backward(g)
    b.backward(g)
    for u, v in zip(ins, ins2):
        if u.requires_grad:
            torch.testing.assert_close(u.grad, v.grad, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("ours,theirs", [
    (lambda t: ft.gelu(t), lambda t: F.gelu(t)),
    (lambda t: ft.gelu(t, approximate="tanh"), lambda t: F.gelu(t, approximate="tanh")),
    (ft.silu, F.silu),
    (lambda t: ft.softmax(t, dim=-1), lambda t: F.softmax(t, dim=-1)),
    (lambda t: ft.log_softmax(t, dim=0), lambda t: F.log_softmax(t, dim=0)),
    (lambda t: ft.glu(t), lambda t: F.glu(t)),
])
def test_activations_match_torch_float32(ours, theirs):
    _agree(ours, theirs, _x(8, 6))


def test_prelu_matches_torch_float32():
    w = torch.tensor([0.1, 0.25, -0.3], requires_grad=True)
    _agree(lambda a, b: ft.prelu(a, b), F.prelu, _x(2, 3, 5), w)


@pytest.mark.parametrize("kw", [{}, {"label_smoothing": 0.1, "ignore_index": 2},
                                {"weight": torch.tensor([0.5, 2.0, 1.0, 1.5, 0.7])}])
def test_cross_entropy_matches_torch_float32(kw):
    labels = torch.tensor([0, 4, 2, 2, 1, 3])
    _agree(lambda t: ft.sparse_softmax_cross_entropy(t, labels, **kw),
           lambda t: F.cross_entropy(t, labels, **kw), _x(6, 5), dy=torch.tensor(1.0))


def test_regression_losses_match_torch_float32():
    p, t = _x(6, 5), _x(6, 5, seed=1, requires_grad=False)
    one = torch.tensor(1.0)
    _agree(lambda a: ft.mse(a, t), lambda a: F.mse_loss(a, t.float()), p, dy=one)
    _agree(lambda a: ft.huber(a, t, delta=0.5), lambda a: F.huber_loss(a, t.float(), delta=0.5),
           p, dy=one)
    _agree(lambda a: ft.mse(a, t, reduction="none"),
           lambda a: F.mse_loss(a, t.float(), reduction="none"), p)
    tb = (torch.rand(6, 5, generator=torch.Generator().manual_seed(4)) > 0.5).float()
    pw = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5])
    _agree(lambda a: ft.sigmoid_binary_cross_entropy(a, tb, pos_weight=pw),
           lambda a: F.binary_cross_entropy_with_logits(a, tb, pos_weight=pw), p, dy=one)


# ------------------------------------------------------------ contract and errors

def test_double_backward_raises():
    x = _x(3, 4)
    w = torch.tensor([0.2, 0.3, 0.1, 0.4], dtype=F64, requires_grad=True)
    labels = torch.tensor([0, 1, 2])
    for f in (lambda t: ft.gelu(t).sum(), lambda t: (ft.softmax(t) ** 2).sum(),
              lambda t: ft.prelu(t, w).sum(), lambda t: ft.maxout(t, 2).sum()):
        (g,) = torch.autograd.grad(f(x), x, create_graph=True)
        with pytest.raises(RuntimeError, match="double backward"):
            g.sum().backward()
    # a loss's saved gradient is a constant: create_graph=True raises at once
    for f in (lambda t: ft.mse(t, torch.ones(3, 4, dtype=F64)),
              lambda t: ft.sparse_softmax_cross_entropy(t, labels, reduction="none").sum()):
        with pytest.raises(RuntimeError, match="double backward"):
            torch.autograd.grad(f(x), x, create_graph=True)


def test_opcheck():
    """torch.library.opcheck: schema, fake (shapes, dtypes, strides) and autograd
    registration of one operator of each kind (non-contiguous input included)."""
    from torch.library import opcheck
    ops = ft.OPERATORS
    x, lab = _x(3, 4), torch.tensor([0, 1, 3])
    opcheck(ops["gelu"][0], (x.T, "tanh"))
    opcheck(ops["gelu"][1], (x.detach().T, torch.randn(4, 3, dtype=F64), "tanh"))
    opcheck(ops["softmax"][0], (x, 0))
    opcheck(ops["glu"][0], (x, -1))
    opcheck(ops["prelu"][0], (x, torch.rand(4, dtype=F64, requires_grad=True), 1))
    opcheck(ops["maxout"][0], (x, 2, -1))
    opcheck(ops["argmax"][0], (x.detach(), 0))
    opcheck(ops["sparse_softmax_cross_entropy"][1],
            (x, lab, "none", -1, None, -100, 0.1, 0.0, None))
    opcheck(ops["sparse_softmax_cross_entropy"][0],
            (x.detach(), lab, "mean", -1, None, -100, 0.1, 0.0, None))
    opcheck(ops["mse"][1], (x, torch.randn(3, 4, dtype=F64), "sum"))


def test_outputs_are_new_tensors():
    x = _x(3, 4)
    for y in (ft.identity(x), ft.relu(x), ft.softmax(x)):
        assert y.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()


def test_errors():
    with pytest.raises(TypeError, match="float32 and torch.float64"):
        ft.gelu(torch.ones(3, dtype=torch.float16))
    with pytest.raises(TypeError, match="dtype"):
        ft.mse(torch.ones(3, dtype=torch.int64), torch.ones(3))
    with pytest.raises(RuntimeError, match="constant"):
        ft.mse(_x(3), _x(3))
    with pytest.raises(TypeError, match="must match"):
        ft.prelu(_x(2, 3), torch.ones(3))


def test_no_grad_forward_gives_the_loss():
    x, labels = _x(3, 4), torch.tensor([0, 1, 2])
    with torch.no_grad():
        a = ft.sparse_softmax_cross_entropy(x, labels)
    assert a.grad_fn is None
    torch.testing.assert_close(a, ft.sparse_softmax_cross_entropy(x, labels).detach())


# ------------------------------------------------------------ torch.compile

def test_compile_fullgraph_matches_eager():
    """Slow-tolerant: compiling takes tens of seconds on a small machine."""
    torch.manual_seed(0)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(6, 8), torch.nn.Linear(8, 5)

        def forward(self, x, labels):
            h = ft.gelu(self.a(x), approximate="tanh")
            return ft.sparse_softmax_cross_entropy(self.b(h), labels, label_smoothing=0.1)

    model = Model()
    x, labels = torch.randn(4, 6), torch.tensor([0, 4, 2, 1])
    explain = torch._dynamo.explain(model)(x, labels)
    assert explain.graph_break_count == 0 and explain.graph_count == 1
    torch._dynamo.reset()

    eager = model(x, labels)
    eager.backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiled = torch.compile(model, fullgraph=True)
    loss = compiled(x, labels)
    loss.backward()
    torch.testing.assert_close(loss, eager, rtol=1e-6, atol=1e-7)
    for p, g in zip(model.parameters(), eager_grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------ modules

W5 = torch.tensor([0.5, 2.0, 1.0, 1.5, 0.7])


@pytest.mark.parametrize("name,kw", [
    ("GELU", {"approximate": "tanh"}), ("SiLU", {}), ("ReLU", {"inplace": False}),
    ("LeakyReLU", {"negative_slope": 0.2}), ("Softplus", {"beta": 2.0}), ("Tanh", {}),
    ("Hardtanh", {"min_val": -0.5, "max_val": 0.5}), ("Softmax", {"dim": 1}),
    ("LogSoftmax", {"dim": 0}), ("GLU", {"dim": 0}),
])
def test_activation_modules_match_torch_nn(name, kw):
    ours, theirs = getattr(ft.nn, name)(**kw), getattr(torch.nn, name)(**kw)
    _agree(ours, theirs, _x(6, 5))


def test_prelu_module_matches_torch_nn():
    ours, theirs = ft.nn.PReLU(3, init=0.1), torch.nn.PReLU(3, init=0.1)
    x = _x(2, 3, 4, dtype=torch.float32)
    ours(x).sum().backward()
    theirs(x).sum().backward()
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("name,kw,target", [
    ("CrossEntropyLoss", {"weight": W5, "label_smoothing": 0.1}, "labels"),
    ("CrossEntropyLoss", {"ignore_index": 1, "reduction": "sum"}, "labels"),
    ("NLLLoss", {"weight": W5}, "labels"),
    ("MSELoss", {"reduction": "sum"}, "dense"), ("L1Loss", {}, "dense"),
    ("HuberLoss", {"delta": 0.5}, "dense"), ("SmoothL1Loss", {"beta": 0.5}, "dense"),
    ("BCEWithLogitsLoss", {"pos_weight": W5}, "binary"),
    ("KLDivLoss", {"reduction": "batchmean", "log_target": True}, "dense"),
])
def test_loss_modules_match_torch_nn(name, kw, target):
    t = {"labels": torch.tensor([0, 4, 2, 1, 1, 3]),
         "dense": torch.randn(6, 5, generator=torch.Generator().manual_seed(5)),
         "binary": (torch.rand(6, 5, generator=torch.Generator().manual_seed(6)) > 0.5).float(),
         }[target]
    ours, theirs = getattr(ft.nn, name)(**kw), getattr(torch.nn, name)(**kw)
    _agree(lambda a: ours(a, t), lambda a: theirs(a, t), _x(6, 5), dy=torch.tensor(1.0))


def test_loss_module_weight_is_a_buffer():
    m = ft.nn.CrossEntropyLoss(W5)
    assert "weight" in dict(m.named_buffers())
    assert m.double().weight.dtype == F64


# ------------------------------------------------ the plain API on tensors

def test_plain_api_records_autograd_on_tensors_that_require_grad():
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    w = torch.full((4,), 0.2, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 0])
    for f, g in ((lambda a: fa.gelu(a, approximate="tanh"),
                  lambda a: torch.nn.functional.gelu(a, approximate="tanh")),
                 (lambda a: fa.softmax(a, axis=0), lambda a: torch.softmax(a, 0)),
                 (lambda a: fa.swiglu(a), lambda a: torch.nn.functional.silu(a[:, :2]) * a[:, 2:]),
                 (lambda a: fa.maxout(a, 2), lambda a: a.reshape(5, 2, 2).amax(-1)),
                 (lambda a: fa.prelu(a, w), lambda a: torch.nn.functional.prelu(a, w)),
                 (lambda a: fa.sparse_softmax_cross_entropy(a, labels, label_smoothing=0.1),
                  lambda a: torch.nn.functional.cross_entropy(a, labels, label_smoothing=0.1)),
                 (lambda a: fa.mse(a, torch.ones_like(a)),
                  lambda a: torch.nn.functional.mse_loss(a, torch.ones_like(a)))):
        y = f(x)
        assert y.grad_fn is not None
        got = torch.autograd.grad(y.sum(), (x,))[0]
        want = torch.autograd.grad(g(x).sum(), (x,))[0]
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    with torch.no_grad():
        assert fa.gelu(x).grad_fn is None


def test_explicit_gradient_methods_stay_outside_the_graph():
    x = torch.randn(6, dtype=torch.float64, requires_grad=True)
    y, d = fa.gelu.value_and_derivative(x)
    assert not y.requires_grad and not d.requires_grad
    loss, grad = fa.mse.value_and_grad(x, torch.zeros(6, dtype=torch.float64))
    assert not loss.requires_grad and not grad.requires_grad


def test_out_tensors_and_autograd():
    x = torch.randn(6, dtype=torch.float64)
    o = torch.empty(6, dtype=torch.float64)
    v = o._version
    assert fa.relu(x, out=o) is o
    assert o._version > v                          # the write is visible to autograd
    with pytest.raises(RuntimeError, match="requires grad"):
        fa.relu(x, out=torch.empty(6, dtype=torch.float64, requires_grad=True))
    with pytest.raises(RuntimeError, match="not differentiable"):
        fa.relu(x.clone().requires_grad_(), out=o)
    # a tensor autograd saved, then overwritten through out=: backward refuses
    a = torch.randn(6, dtype=torch.float64, requires_grad=True)
    b = a * 1.0
    c = (b * b).sum()
    fa.relu(x, out=b.detach())
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        c.backward()


# ------------------------------------------------ modules in a training loop

def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.GELU(approximate="tanh"),
        torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.SiLU()),
        torch.nn.Linear(16, 16), torch.nn.PReLU(16), torch.nn.Linear(16, 5),
        torch.nn.LogSoftmax(dim=-1), torch.nn.Softmax()).double()


def test_swap_modules_replaces_the_activations_in_place():
    model = _mlp()
    prelu_weight = model[4].weight
    assert ft.swap_modules(model) == 4          # GELU, SiLU (nested), PReLU, LogSoftmax
    assert isinstance(model[1], ft.nn.GELU) and model[1].approximate == "tanh"
    assert isinstance(model[2][1], ft.nn.SiLU)
    assert isinstance(model[4], ft.nn.PReLU) and model[4].weight is prelu_weight
    assert isinstance(model[7], torch.nn.Softmax)   # no explicit dim: left as it is
    assert ft.swap_modules(model) == 0


def test_training_follows_pytorch_trajectory():
    """60 SGD steps in float64: the same losses as pure PyTorch to 1e-9."""
    torch.manual_seed(1)
    data = torch.randn(64, 8, dtype=torch.float64)
    # labels a linear map of the data can tell apart: the model learns them
    labels = (data @ torch.randn(8, 5, dtype=torch.float64)).argmax(-1)

    def train(use_fastact):
        model = _mlp()[:6]
        if use_fastact:
            assert ft.swap_modules(model) == 3
            loss_fn = ft.nn.CrossEntropyLoss(label_smoothing=0.1)
        else:
            loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        losses = []
        for _ in range(60):
            opt.zero_grad()
            loss = loss_fn(model(data), labels)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return np.array(losses)

    ours, theirs = train(True), train(False)
    assert theirs[-1] < 0.8 * theirs[0]          # it learns
    np.testing.assert_allclose(ours, theirs, rtol=1e-9)


def test_train_torch_example_runs():
    import os
    import subprocess
    import sys
    path = os.path.join(os.path.dirname(__file__), "..", "examples", "train_torch.py")
    out = subprocess.run([sys.executable, path, "--fastact", "--steps", "2"], check=True,
                         capture_output=True, text=True, timeout=300).stdout
    assert "swapped 2 activation modules" in out and "loss" in out


def test_plain_api_refuses_a_target_that_requires_grad():
    # fastact gives no target gradient: refused rather than silently detached
    p = torch.randn(4, dtype=torch.float64)
    t = torch.randn(4, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="target requires grad"):
        fa.mse(p, t)
