"""Labels checked inside the labelled loss kernels (issue 29 item 7).

``_prepare_labels`` checks the labels before any kernel runs, but int64
C-contiguous labels reach the kernel as the caller's own memory, which another
thread may change meanwhile: the kernels check each label they index with and
report a bad one, which raises the pre-check's error.
"""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import fastact as fa
from fastact.losses import kernels

C = 1000
ROWS = 256          # 256 000 logits: the parallel kernels


def _guarded(shape, dtype, fill):
    """(view of ``shape`` inside a larger buffer, the buffer): the buffer's
    elements around the view hold ``fill``, so that a write outside the view
    shows up there."""
    size = int(np.prod(shape))
    buf = np.full(size + 2 * 4096, fill, dtype)
    return buf[4096:4096 + size].reshape(shape), buf


@pytest.mark.parametrize("flavour", ["serial", "parallel"])
@pytest.mark.parametrize("family", ["sparse", "nll"])
def test_kernel_reports_a_bad_label_and_writes_inside_its_arrays(family, flavour, rng):
    # labels the pre-check would reject, passed straight to the kernel
    x = rng.standard_normal((ROWS, C)).astype(np.float32)
    y = rng.integers(0, C, ROWS).astype(np.int64)
    y[[5, 17, ROWS - 1]] = -100                  # ignore_index: fine
    y[3], y[40], y[ROWS - 2] = C, -7, 2 ** 40    # (C: x[r, C] is the next row's x[r + 1, 0])
    g, gbuf = _guarded((ROWS, C), np.float32, 7.0)
    rl = np.zeros(ROWS)
    w = np.ones(1, np.float32)
    w64 = np.ones(1)
    if family == "sparse":
        kern = getattr(kernels.SPARSE_CE[True], flavour)
        bad = kern(x, y, w, w64, False, g, rl, 1.0, 0.0, 0.0, 0.0, float(C), -100, 64)
    else:
        kern = getattr(kernels.NLL, flavour)
        bad = kern(x, y, w64, False, g, rl, 1.0, -100, True, 64)
    assert bad == (3, C)                         # the first bad row and its label
    assert (gbuf[:4096] == 7.0).all() and (gbuf[-4096:] == 7.0).all(), "wrote outside g"
    for r in (3, 40, ROWS - 2):
        assert np.isnan(rl[r]) and np.isnan(g[r]).all()
    good = np.ones(ROWS, bool)
    good[[3, 40, ROWS - 2]] = False
    assert np.isfinite(rl[good]).all() and np.isfinite(g[good]).all()


@pytest.mark.parametrize("name", ["sparse_softmax_cross_entropy", "nll_loss"])
@pytest.mark.parametrize("pass_name", ["value_and_grad", "forward"])
def test_in_kernel_check_raises_the_pre_check_error(name, pass_name, monkeypatch, rng):
    op = getattr(fa, name)
    x = rng.standard_normal((4, 3, 10)).astype(np.float32)
    lab = rng.integers(0, 10, (4, 3)).astype(np.int64)
    run = op.value_and_grad if pass_name == "value_and_grad" else op
    with pytest.raises(ValueError) as pre:
        run(x, np.where(np.arange(12).reshape(4, 3) == 7, 10, lab))
    # the pre-check passes, and the label changes before the kernel reads it
    real = kernels.check_labels

    def check_then_change(y, *args):
        res = real(y, *args)
        y[7] = 10
        return res

    monkeypatch.setattr(kernels, "check_labels", check_then_change)
    with pytest.raises(ValueError) as late:
        run(x, lab)
    assert str(late.value) == str(pre.value)
    assert re.fullmatch(rf"{name}\.{pass_name}: label 10 at row 7 \(index \(2, 1\)\) is "
                        r"outside \[0, 10\) and is not ignore_index=-100", str(late.value))


RACE = r"""
import re
import sys
import threading
import time

import numpy as np

import fastact as fa

name, rows = sys.argv[1], int(sys.argv[2])
op = getattr(fa, name)
C = 1000
rng = np.random.default_rng(0)
x = rng.standard_normal((rows, C)).astype(np.float32)
lab = rng.integers(0, C, rows).astype(np.int64)        # int64: the kernel reads lab itself
lab[-1] = 3
want = op.value_and_grad(x, lab)
want_forward = op(x, lab)
# the error names the label the check read: the pre-check re-reads it for the
# message, so it may show the valid value
error = re.compile(rf"{name}\.(value_and_grad|forward): label (3|{2 ** 40}) at row {rows - 1} "
                   rf"is outside \[0, {C}\) and is not ignore_index=-100")
stop = False


def toggle():
    while not stop:
        lab[-1] = 2 ** 40
        lab[-1] = 3


t = threading.Thread(target=toggle)
t.start()
ok = raised = 0
deadline = time.perf_counter() + 2.0
try:
    while time.perf_counter() < deadline:
        try:
            if ok % 2:
                loss, g = op.value_and_grad(x, lab)
                assert loss == want[0] and np.array_equal(g, want[1])
            else:
                assert op(x, lab) == want_forward
        except ValueError as e:
            assert error.fullmatch(str(e)), e
            raised += 1
            continue
        ok += 1
finally:
    stop = True
    t.join()
print(ok, raised)
"""


@pytest.mark.parametrize("rows", [8, ROWS], ids=["serial", "parallel"])
@pytest.mark.parametrize("name", ["sparse_softmax_cross_entropy", "nll_loss"])
def test_labels_changed_by_another_thread_never_crash(name, rows):
    # a subprocess: an out-of-bounds write shows as a failed test, not a dead pytest
    r = subprocess.run([sys.executable, "-c", RACE, name, str(rows)], capture_output=True,
                       text=True, timeout=300, env=os.environ)
    assert r.returncode == 0, (r.returncode, r.stderr[-3000:])
    ok, raised = map(int, r.stdout.split())
    assert ok + raised > 10
