"""Kernels that write large outputs with non-temporal stores (fastact.cpu.streaming).

Streaming starts at STREAM_MIN output bytes; the tests lower it so that arrays
of a test's size stream, and compare with the plain kernels, which the other
test files check against the float64 references.
"""
import re

import numba
import numpy as np
import pytest
from conftest import FLOATS, call_kwargs, default_params

import fastact as fa
from fastact.cpu import elementwise as cpu_elementwise
from fastact.cpu import streaming
from fastact.cpu.jit import JIT_OPTIONS, PARALLEL_MIN

# The streamed template depends on the pass (its inputs and outputs) and the
# dtype (elements per line), not on the op: every pass of ops without, with
# one and with two parameters, each dtype at least twice (compiling is what
# these tests spend their time on).
STREAMED = [("relu", np.float32), ("relu", np.float64), ("leaky_relu", np.float32),
            ("threshold", np.float64)]
assert not any(fa.REGISTRY[n].transcendental for n, _ in STREAMED)
LOSSES = [("mse", np.float32), ("mse", np.float64), ("hinge", np.float32),
          ("hinge", np.float64), ("l1", np.float32), ("huber", np.float64),
          ("rmse", np.float32)]
N = 3 * streaming.TILE * streaming.CHUNK_TILES + 1037    # several chunks, a partial tile
assert N >= PARALLEL_MIN


@pytest.fixture
def stream_all(monkeypatch):
    monkeypatch.setattr(streaming, "STREAM_MIN", 0)


def _plain(monkeypatch, fn):
    monkeypatch.setattr(streaming, "STREAM_MIN", 1 << 62)
    try:
        return fn()
    finally:
        monkeypatch.setattr(streaming, "STREAM_MIN", 0)


def _outputs(result):
    return result if isinstance(result, tuple) else (result,)


@numba.njit(cache=False)
def _stream(dst, start, buf, n):
    streaming.stream_out(dst, start, buf, n)
    streaming.store_fence()


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_stream_out_writes_exactly_the_range(dtype):
    buf = np.arange(1, 301, dtype=dtype)
    for offset in range(17):              # every alignment of the destination
        for start in (0, 5):
            for n in (0, 1, 7, 15, 16, 17, 63, 64, 65, 300):
                dst = np.full(offset + start + 340, -1.0, dtype)[offset:]
                _stream(dst, start, buf, n)
                want = np.full_like(dst, -1.0)
                want[start:start + n] = buf[:n]
                np.testing.assert_array_equal(dst, want, err_msg=f"{offset=} {start=} {n=}")


@pytest.mark.parametrize("name,dtype", STREAMED, ids=[f"{n}-{d.__name__}" for n, d in STREAMED])
def test_streamed_passes_equal_plain_kernels(name, dtype, monkeypatch, stream_all, rng):
    choice = None
    spec = fa.REGISTRY[name]
    op = getattr(fa, name)
    kw = call_kwargs(spec, choice, default_params(spec))
    lo, hi = spec.domain
    base = rng.uniform(max(lo, -6), min(hi, 6), N + 3).astype(dtype)
    base[:8] = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 1e-40]
    base_dy = rng.standard_normal(N + 3).astype(dtype)
    for offset in (0, 1, 3):              # outputs at several alignments
        x, dy = base[offset:], base_dy[offset:]
        runs = {
            "forward": lambda x=x: op(x, **kw),
            "value_and_derivative": lambda x=x: op.value_and_derivative(x, **kw),
            "backward": lambda x=x, dy=dy: op.backward(x, dy, **kw),
            "forward_backward": lambda x=x, dy=dy: op.forward_backward(x, dy, **kw),
        }
        for pass_name, run in runs.items():
            got, want = _outputs(run()), _outputs(_plain(monkeypatch, run))
            for g, w in zip(got, want, strict=True):
                np.testing.assert_array_equal(g, w, err_msg=f"{pass_name} {offset=}")
    k = cpu_elementwise.kernel(spec.scalars_for(choice), "value_and_derivative",
                               len(default_params(spec)))
    assert k._streamed is not None, "the streamed kernel never ran"


def test_streamed_output_may_alias_input(stream_all, rng):
    x = rng.standard_normal(N).astype(np.float32)
    y, _ = fa.leaky_relu.value_and_derivative(x)
    z = x.copy()
    fa.leaky_relu.value_and_derivative(z, out=(z, np.empty_like(z)))
    np.testing.assert_array_equal(z, y)
    dy = rng.standard_normal(N).astype(np.float32)
    want = fa.relu.backward(x, dy)
    fa.relu.backward(x, dy, out=dy)
    np.testing.assert_array_equal(dy, want)


@pytest.mark.parametrize("name,dtype", LOSSES, ids=[f"{n}-{d.__name__}" for n, d in LOSSES])
def test_streamed_loss_gradients_equal_plain_kernels(name, dtype, monkeypatch, stream_all, rng):
    loss = getattr(fa, name)
    p = rng.standard_normal(N).astype(dtype)
    t = np.sign(rng.standard_normal(N)).astype(dtype) if name == "hinge" else \
        rng.standard_normal(N).astype(dtype)
    for reduction in ("mean", "sum", "none"):
        v, g = loss.value_and_grad(p[1:], t[1:], reduction=reduction)
        pv, pg = _plain(monkeypatch, lambda r=reduction: loss.value_and_grad(p[1:], t[1:], reduction=r))
        np.testing.assert_array_equal(v, pv)
        np.testing.assert_array_equal(g, pg)
    q = p.copy()                          # the gradient overwrites the prediction
    loss.value_and_grad(q, t, out=q)
    np.testing.assert_array_equal(q, _plain(monkeypatch, lambda: loss.value_and_grad(p, t))[1])


def _host_is_x86():
    import llvmlite.binding as llvm
    return llvm.get_process_triple().startswith("x86_64")


@pytest.mark.skipif(not _host_is_x86(), reason="checks x86 instructions")
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_streamed_kernel_uses_non_temporal_stores(dtype):
    spec = fa.REGISTRY["relu"]
    k = cpu_elementwise.kernel(spec.scalars_for(None), "forward_backward", 0)
    options = {**JIT_OPTIONS, "cache": False}
    streamed = numba.njit(parallel=True, **options)(
        cpu_elementwise.streamed_kernel(k.pyfunc, 2, 2))
    x = np.ones(N, dtype)
    streamed(x, x, np.empty_like(x), np.empty_like(x), ())
    asm = "\n".join(streamed.inspect_asm().values())
    assert re.search(r"\bvmovnt\w+\s+%[xyz]mm", asm), "no non-temporal vector store"
    assert "sfence" in asm
