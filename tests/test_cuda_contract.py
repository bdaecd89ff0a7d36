"""The loss contract of tests/test_contract.py on the CUDA backend (device
arrays, and NumPy inputs with backend="cuda"): dtype promotion, non-finite
class weights, the shapes of unbatched inputs.  Simulator or GPU."""
import numpy as np
import pytest

pytestmark = pytest.mark.cudasim

pytest.importorskip("numba_cuda", reason="numba-cuda is not installed")

import fastact as fa  # noqa: E402
from fastact import cuda as fcuda  # noqa: E402

if not fcuda.is_available():
    pytest.skip("no CUDA GPU and the simulator is off (set NUMBA_ENABLE_CUDASIM=1)",
                allow_module_level=True)

from numba import cuda  # noqa: E402


def _host(a):
    return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)


@pytest.mark.parametrize("name", ["mse", "softmax_cross_entropy"])
def test_float32_prediction_with_float64_target_promotes(name, rng):
    p = rng.random((3, 4)).astype(np.float32)
    t = rng.random((3, 4))
    t /= t.sum(-1, keepdims=True)
    f = getattr(fa, name)
    want_loss, want_grad = f.value_and_grad(p.astype(np.float64), t)
    for args in ((cuda.to_device(p), cuda.to_device(t)), (p, t)):
        loss, grad = f.value_and_grad(*args, backend="cuda")
        assert _host(grad).dtype == np.float64 and _host(loss).dtype == np.float64
        np.testing.assert_allclose(_host(loss), want_loss, rtol=1e-12)
        np.testing.assert_allclose(_host(grad), want_grad, rtol=1e-12, atol=1e-15)


def test_infinite_weight_of_an_absent_class(rng):
    logits = rng.standard_normal((8, 4))
    lab = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    w = np.array([1.0, 2.0, 3.0, np.inf])
    want = fa.sparse_softmax_cross_entropy(logits, lab, weight=w)
    assert np.isfinite(want)
    for args in ((cuda.to_device(logits), cuda.to_device(lab)), (logits, lab)):
        loss, grad = fa.sparse_softmax_cross_entropy.value_and_grad(*args, weight=w,
                                                                    backend="cuda")
        np.testing.assert_allclose(_host(loss), want, rtol=1e-12)
        assert np.isfinite(_host(grad)).all()
        with pytest.raises(ValueError, match="class 3"):
            fa.sparse_softmax_cross_entropy(*args, weight=w, label_smoothing=0.1,
                                            backend="cuda")


def test_unbatched_shapes(rng):
    x = rng.standard_normal(5)
    for args in ((cuda.to_device(x), cuda.to_device(np.array(2))), (x, np.array(2))):
        loss, grad = fa.sparse_softmax_cross_entropy.value_and_grad(*args, reduction="none",
                                                                    backend="cuda")
        assert _host(loss).shape == () and _host(grad).shape == (5,)
    loss, grad = fa.mse.value_and_grad(np.float64(0.3), np.float64(0.1), reduction="none",
                                       backend="cuda")
    assert np.shape(loss) == () and np.shape(grad) == ()
