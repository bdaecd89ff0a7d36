"""The contract of the public calls that outside testing found broken (issue
29): class weights, dtype promotion, masked arrays, the backend default,
bfloat16 out=, argument checks and the shapes of unbatched inputs."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastact as fa


# ---------------------------------------------------- class weights (item 4)

@pytest.mark.parametrize("bad", [np.inf, np.nan])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nonfinite_weight_of_an_absent_class_without_smoothing(bad, reduction, rng):
    torch = pytest.importorskip("torch")
    logits = rng.standard_normal((8, 4))
    lab = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    w = np.array([1.0, 2.0, 3.0, bad])
    loss, grad = fa.sparse_softmax_cross_entropy.value_and_grad(logits, lab, weight=w,
                                                                reduction=reduction)
    t = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(t, torch.tensor(lab), weight=torch.tensor(w),
                                            reduction=reduction)
    ref.sum().backward()
    assert np.isfinite(loss).all() and np.isfinite(grad).all()
    np.testing.assert_allclose(loss, ref.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(grad, t.grad.numpy(), rtol=1e-12, atol=1e-15)
    nll = fa.nll_loss(fa.log_softmax(logits), lab, weight=w, reduction=reduction)
    np.testing.assert_allclose(nll, ref.detach().numpy(), rtol=1e-12)


def test_nonfinite_weight_with_smoothing_raises(rng):
    logits = rng.standard_normal((8, 4))
    lab = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    g = np.full_like(logits, 5.0)
    with pytest.raises(ValueError, match="class 3"):
        fa.sparse_softmax_cross_entropy.value_and_grad(
            logits, lab, weight=np.array([1.0, 2.0, 3.0, np.inf]), label_smoothing=0.1, out=g)
    assert (g == 5.0).all()


# ------------------------------------------------------- promotion (item 5)

@pytest.mark.parametrize("loss", ["mse", "huber", "kl_divergence", "binary_cross_entropy",
                                  "sigmoid_binary_cross_entropy", "softmax_cross_entropy"])
def test_losses_promote_prediction_and_target_as_numpy(loss, rng):
    p64 = rng.random((6, 5)) * 0.8 + 0.1
    t64 = rng.random((6, 5)) * 0.8 + 0.1 + 1e-9
    if loss == "softmax_cross_entropy":
        t64 = t64 / t64.sum(-1, keepdims=True)
    p32 = p64.astype(np.float32)
    f = getattr(fa, loss)
    for pred, target in ((p32, t64), (p32.astype(np.float64), t64.astype(np.float32))):
        value, grad = f.value_and_grad(pred, target)
        assert value.dtype == np.float64 and grad.dtype == np.float64
        ref_value, ref_grad = f.value_and_grad(pred.astype(np.float64),
                                               target.astype(np.float64))
        assert value == ref_value
        assert np.array_equal(grad, ref_grad)
    # float32 with float32 stays float32
    assert f(p32, t64.astype(np.float32)).dtype == np.float32


# ---------------------------------------------------- masked arrays (item 6)

def test_masked_arrays_raise_type_error():
    m = np.ma.array([1.0, 2.0, 3.0], mask=[0, 0, 1])
    plain = np.zeros(3)
    calls = [lambda: fa.mse(m, plain), lambda: fa.mse(plain, m), lambda: fa.relu(m),
             lambda: fa.relu(plain, out=np.ma.zeros(3)), lambda: fa.softmax(m),
             lambda: fa.gelu.forward_backward(plain, m), lambda: fa.argmax(m),
             lambda: fa.sparse_softmax_cross_entropy(np.ma.zeros((3, 2)), np.zeros(3, int)),
             lambda: fa.prelu(m, 0.25)]
    for call in calls:
        with pytest.raises(TypeError, match="MaskedArray"):
            call()


# ------------------------------------------------ backend default (items 9, 15)

def test_bogus_backend_environment_variable_raises():
    code = ("import numpy as np, fastact as fa\n"
            "try:\n"
            "    fa.relu(np.ones(3))\n"
            "except ValueError as e:\n"
            "    print('ValueError:', e)\n")
    env = {**os.environ, "FASTACT_BACKEND": "bogus"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith("ValueError:") and "FASTACT_BACKEND" in out and "'bogus'" in out
    assert "'cpu'" in out and "'numpy'" in out


def test_environment_variable_sets_the_default():
    code = "import fastact as fa; print(fa.get_backend())"
    env = {**os.environ, "FASTACT_BACKEND": " NumPy "}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "numpy"


def test_set_backend_is_process_wide_and_use_backend_thread_local():
    seen = {}

    def look(key, barrier=None):
        seen[key] = fa.get_backend()

    try:
        fa.set_backend("numpy")
        t = threading.Thread(target=look, args=("started after",))
        t.start()
        t.join()
        assert seen["started after"] == "numpy"
        with fa.use_backend("cpu"):
            assert fa.get_backend() == "cpu"
            t = threading.Thread(target=look, args=("during use_backend",))
            t.start()
            t.join()
        assert seen["during use_backend"] == "numpy"
        assert fa.get_backend() == "numpy"
        # a thread already running sees a later set_backend
        go, done = threading.Event(), threading.Event()

        def wait_then_look():
            go.wait(10)
            look("running")
            done.set()
        t = threading.Thread(target=wait_then_look)
        t.start()
        fa.set_backend("cpu")
        go.set()
        t.join()
        assert seen["running"] == "cpu"
    finally:
        fa.set_backend("auto")
    assert fa.get_backend() == "auto"


# ------------------------------------------------- bfloat16 out= (item 10)

def test_bfloat16_out_tensor():
    torch = pytest.importorskip("torch")
    x = torch.linspace(-3, 3, 50, dtype=torch.bfloat16)
    dy = torch.ones(50, dtype=torch.bfloat16)
    y, dx = torch.empty_like(x), torch.empty_like(x)
    got = fa.gelu.forward_backward(x, dy, out=(y, dx))
    assert got[0] is y and got[1] is dx
    ref_y, ref_dx = fa.gelu.forward_backward(x, dy)
    assert ref_y.dtype == torch.bfloat16
    assert torch.equal(y, ref_y) and torch.equal(dx, ref_dx)
    o = torch.empty(50, dtype=torch.bfloat16)
    assert fa.relu(x, out=o) is o and torch.equal(o, torch.relu(x))
    with pytest.raises(TypeError, match="bfloat16"):
        fa.relu(torch.ones(4), out=torch.empty(4, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="shape"):
        fa.relu(x, out=torch.empty(49, dtype=torch.bfloat16))


# --------------------------------------------------- argument checks (item 11)

X2 = np.linspace(-1, 1, 20).reshape(4, 5)
LABELS = np.array([0, 1, 2, 3])


@pytest.mark.parametrize("call,error,words", [
    (lambda: fa.softmax(X2, axis=1.5), TypeError, "axis"),
    (lambda: fa.softmax(X2, axis=1.0), TypeError, "axis"),
    (lambda: fa.softmax(X2, axis="1"), TypeError, "axis"),
    (lambda: fa.softmax(X2, axis=True), TypeError, "axis"),
    (lambda: fa.softmax(X2, axis=2), ValueError, "axis"),
    (lambda: fa.log_softmax.backward(X2, X2, axis=np.float64(1)), TypeError, "axis"),
    (lambda: fa.argmax(X2, axis=1.0), TypeError, "axis"),
    (lambda: fa.argmax(X2, axis=-3), ValueError, "axis"),
    (lambda: fa.glu(X2.reshape(2, 10), axis=0.0), TypeError, "axis"),
    (lambda: fa.maxout(X2, 5, axis="1"), TypeError, "axis"),
    (lambda: fa.maxout(X2, 2.0), ValueError, "pieces"),
    (lambda: fa.prelu(X2, 0.25, axis=7), ValueError, "axis"),
    (lambda: fa.prelu(X2, 0.25, axis=1.5), TypeError, "axis"),
    (lambda: fa.prelu(X2, np.ones(5), axis=7), ValueError, "axis"),
    (lambda: fa.sparse_softmax_cross_entropy(X2, LABELS, ignore_index=2**70), ValueError,
     "ignore_index"),
    (lambda: fa.sparse_softmax_cross_entropy(X2, LABELS, ignore_index=1.0), TypeError,
     "ignore_index"),
    (lambda: fa.nll_loss(X2, LABELS, ignore_index=-2**64), ValueError, "ignore_index"),
    (lambda: fa.softmax_cross_entropy(X2, X2, axis=0.5), TypeError, "axis"),
    (lambda: fa.sparse_softmax_cross_entropy(X2, LABELS, label_smoothing="0.1"), TypeError,
     "label_smoothing"),
    (lambda: fa.huber(X2, X2, delta=True), TypeError, "delta"),
    (lambda: fa.elu(X2, alpha="1.0"), TypeError, "alpha"),
    (lambda: fa.elu(X2, alpha=None), TypeError, "alpha"),
    (lambda: fa.leaky_relu(X2, negative_slope=np.ones(2)), TypeError, "negative_slope"),
    (lambda: fa.softplus(X2, beta=False), TypeError, "beta"),
    (lambda: fa.gelu(X2, approximate="fast"), ValueError, "approximate"),
])
def test_arguments_are_checked_with_a_message_naming_them(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_numpy_integer_arguments_are_accepted():
    np.testing.assert_array_equal(fa.softmax(X2, axis=np.int64(1)), fa.softmax(X2, axis=1))
    np.testing.assert_array_equal(fa.prelu(X2, 0.25), fa.prelu(X2, 0.25, axis=np.int32(1)))
    fa.prelu(np.ones(3), 0.25)      # the default axis=1 with one weight on a 1-d input
    assert fa.elu(X2, alpha=np.float32(0.5)).shape == X2.shape


# ---------------------------------------------- unbatched shapes (item 12)

@pytest.mark.parametrize("pred", [np.float64(0.3), 0.3, np.array(0.3)])
def test_zero_d_prediction_gives_zero_d_loss(pred):
    for reduction in ("none", "mean", "sum"):
        loss, grad = fa.mse.value_and_grad(pred, 0.1, reduction=reduction)
        assert np.shape(loss) == () and np.shape(grad) == ()
        assert np.shape(fa.mse(pred, 0.1, reduction=reduction)) == ()


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "sparse_softmax_cross_entropy",
                                  "nll_loss"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_one_d_logits_give_zero_d_loss(name, reduction, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(5)
    if name == "softmax_cross_entropy":
        target, ttarget = np.eye(5)[2], torch.tensor(np.eye(5)[2])
    else:
        target, ttarget = np.int64(2), torch.tensor(2)
    f = getattr(fa, name)
    loss, grad = f.value_and_grad(x, target, reduction=reduction)
    tf = torch.nn.functional.nll_loss if name == "nll_loss" else \
        torch.nn.functional.cross_entropy
    ref = tf(torch.tensor(x), ttarget, reduction=reduction)
    assert np.shape(loss) == tuple(ref.shape) == ()
    assert grad.shape == (5,)
    np.testing.assert_allclose(loss, ref.numpy(), rtol=1e-12)
