"""fastact in forked children (multiprocessing "fork" pools, DataLoader workers).

GNU OpenMP, Numba's threading layer here, aborts a forked child at its first
parallel region once the parent has started its threads; fastact's kernels
then run serial in such children (``cpu.jit.SERIAL_ONLY``).  Each case runs in
a subprocess with a timeout, so that a child that dies (and a pool that then
never returns) fails the test instead of hanging or killing pytest.
"""
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import multiprocessing as mp
import sys

import numba
import numpy as np

import fastact as fa
from fastact.cpu import jit

N = 2 ** 20                      # parallel kernels (>= PARALLEL_MIN elements)


def work(_=None):
    x = np.linspace(-3, 3, N, dtype=np.float32)
    logits = x.reshape(1024, 1024)
    labels = np.arange(1024, dtype=np.int64) % 1000
    loss, g = fa.sparse_softmax_cross_entropy.value_and_grad(logits, labels)
    return fa.relu(x), float(loss), g


def child(_):
    got = work()
    return got, getattr(jit, "SERIAL_ONLY", None), numba.threading_layer()


if __name__ == "__main__":
    want = work() if sys.argv[1] == "parallel-parent" else None
    with mp.get_context("fork").Pool(2) as pool:
        results = pool.map_async(child, range(4)).get(timeout=120)
    want = want or work()
    for (y, loss, g), serial_only, layer in results:
        assert np.array_equal(y, want[0]) and loss == want[1] and np.array_equal(g, want[2])
    print(numba.threading_layer(), sorted({(s, l) for _, s, l in results}))
"""


def _run(mode, **env):
    # FASTACT_STREAM_MIN=0: relu takes the streamed kernel too
    env = {**os.environ, "FASTACT_STREAM_MIN": "0", **env}
    try:
        r = subprocess.run([sys.executable, "-c", SCRIPT, mode], env=env, capture_output=True,
                           text=True, timeout=300)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the fork pool hung: {e.stderr}")
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.split()[0], r.stdout.split(None, 1)[1].strip()


def _omp_available():
    from numba.np.ufunc import parallel
    try:
        from numba.np.ufunc import omppool  # noqa: F401
    except ImportError:
        return False
    return parallel._IS_LINUX


@pytest.mark.skipif(not _omp_available(), reason="GNU OpenMP layer not available")
def test_fork_pool_after_a_parallel_call_returns_correct_results():
    layer, children = _run("parallel-parent", NUMBA_THREADING_LAYER="omp")
    # every child ran serial kernels: its parent had started OpenMP
    assert layer == "omp" and children == "[(True, 'omp')]", children


@pytest.mark.skipif(not _omp_available(), reason="GNU OpenMP layer not available")
def test_fork_before_any_parallel_call_keeps_children_parallel():
    # the children start OpenMP themselves (threading_layer() answers only once
    # a parallel kernel has been compiled or loaded) and keep parallel kernels
    layer, children = _run("serial-parent", NUMBA_THREADING_LAYER="omp")
    assert children == "[(False, 'omp')]", children


def test_fork_safe_layer_keeps_children_parallel():
    layer, children = _run("parallel-parent", NUMBA_THREADING_LAYER="workqueue")
    assert layer == "workqueue" and children == "[(False, 'workqueue')]", children
