"""The CUDA labelled loss kernels check each label themselves (issue 29 item 7),
under the Numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1), as tests/test_cuda.py.

The host labels are checked, then copied to the device (another thread may
change them in between); device labels are checked by a kernel, then read by
the loss kernel: the loss kernels check every label they index with, flag a
bad one, and the call raises the pre-check's error.
"""
import numpy as np
import pytest

pytestmark = pytest.mark.cudasim

pytest.importorskip("numba_cuda", reason="numba-cuda is not installed")

import fastact as fa  # noqa: E402
from fastact import cuda as fcuda  # noqa: E402
from fastact.losses import kernels as lkernels  # noqa: E402

if not fcuda.is_available():
    pytest.skip("no CUDA GPU and the simulator is off (set NUMBA_ENABLE_CUDASIM=1)",
                allow_module_level=True)

from numba import cuda  # noqa: E402

from fastact.cuda import core  # noqa: E402
from fastact.cuda import loss as closs  # noqa: E402

ROWS, C = 6, 5
NAMES = ("sparse_softmax_cross_entropy", "nll_loss")


@pytest.mark.parametrize("write_rows", [False, True], ids=["reduce", "none"])
@pytest.mark.parametrize("family", ["sparse", "nll"])
def test_row_kernel_flags_a_bad_label_and_writes_inside_its_arrays(family, write_rows):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((ROWS, C, 1)).astype(np.float32)
    y = rng.integers(0, C, ROWS).astype(np.int64)
    y[1], y[4], y[5] = -100, -3, C           # ignore_index; bad (the last row's C: past g)
    # the gradient inside a larger buffer: a write outside it shows in the guard rows
    gfull = cuda.to_device(np.full((ROWS + 2, C, 1), 7.0, np.float32))
    g = gfull[1:ROWS + 1]
    nt = core.row_threads(C)
    blocks = closs._row_blocks(ROWS)
    per = core.device_empty((ROWS if write_rows else 0,), np.float32)
    partial = core.device_empty((blocks,), np.float32)
    bad = core.device_empty((1,), np.int64)
    core.launch(closs.reset_flag, 1, 1, bad, np.int64(ROWS))
    w = core.device_empty((1,), np.float32)
    k = closs.row_kernel(family, nt, np.float32, True, write_rows,
                         **({"weighted": False, "smoothing": False, "capped": False}
                            if family == "sparse" else {"weighted": False}))
    one, zero = np.float32(1.0), np.float32(0.0)
    args = ((zero, zero, one, np.float32(C), np.int64(-100)) if family == "sparse"
            else (np.int64(-100),))
    core.launch(k, blocks, nt, cuda.to_device(x), cuda.to_device(y), w, g, per, partial, one,
                *args, bad)
    assert int(bad.copy_to_host()[0]) == 4
    gh = gfull.copy_to_host()
    assert (gh[0] == 7.0).all() and (gh[-1] == 7.0).all(), "wrote outside g"
    gh = gh[1:-1, :, 0]
    assert np.isnan(gh[[4, 5]]).all() and np.isfinite(gh[[0, 1, 2, 3]]).all()
    if write_rows:
        rl = per.copy_to_host()
        assert np.isnan(rl[[4, 5]]).all() and np.isfinite(rl[:4]).all()
    else:
        assert np.isnan(partial.copy_to_host()).any()


@pytest.mark.parametrize("name", NAMES)
def test_host_labels_changed_after_the_check_raise_its_error(name, monkeypatch):
    # host mode: the labels change between check_labels and the copy to the device
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, C)).astype(np.float32)
    lab = rng.integers(0, C, (2, 3)).astype(np.int64)
    with pytest.raises(ValueError) as pre:
        getattr(fa, name).value_and_grad(x, np.where(np.arange(6).reshape(2, 3) == 4, C, lab),
                                         backend="cuda")
    real = lkernels.check_labels

    def check_then_change(y, *args):
        res = real(y, *args)
        y[4] = C
        return res

    monkeypatch.setattr(lkernels, "check_labels", check_then_change)
    with pytest.raises(ValueError) as late:
        getattr(fa, name).value_and_grad(x, lab, backend="cuda")
    assert str(late.value) == str(pre.value)
    assert "label 5 at row 4 (index (1, 1)) is outside [0, 5)" in str(late.value)


@pytest.mark.parametrize("name", NAMES)
def test_device_labels_changed_after_the_check_raise_its_error(name, monkeypatch):
    # device mode: the labels change between the check kernel and the loss kernel
    rng = np.random.default_rng(5)
    x = rng.standard_normal((ROWS, C)).astype(np.float32)
    lab = rng.integers(0, C, ROWS).astype(np.int64)
    real = closs._check_labels

    def check_then_change(name_, y, *args):
        res = real(name_, y, *args)
        y[2:3].copy_to_device(np.array([-9], np.int64))
        return res

    monkeypatch.setattr(closs, "_check_labels", check_then_change)
    g = cuda.to_device(np.zeros_like(x))
    with pytest.raises(ValueError) as late:
        getattr(fa, name).value_and_grad(cuda.to_device(x), cuda.to_device(lab), out=g,
                                         backend="cuda")
    assert str(late.value) == (f"{name}.value_and_grad: label -9 at row 2 is outside [0, 5) "
                               "and is not ignore_index=-100")
    assert np.isnan(g.copy_to_host()[2]).all()
