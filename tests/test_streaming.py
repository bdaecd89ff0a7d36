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
# dtype (elements per vector), not on the op: every pass of ops without, with
# one and with two parameters, each dtype at least twice, and transcendental
# ops (512-bit vectors, interleaved) in both dtypes.  Compiling is what these
# tests spend their time on (10-20 s a case on a 2-core Zen 3 with two test
# workers; test_elementwise checks every transcendental op's vectorized loop).
STREAMED = [("relu", np.float32), ("leaky_relu", np.float64), ("threshold", np.float32),
            ("tanh", np.float32), ("sigmoid", np.float64)]
LOSSES = [("mse", np.float32), ("mse", np.float64), ("hinge", np.float32),
          ("hinge", np.float64), ("l1", np.float32), ("huber", np.float64),
          ("rmse", np.float32)]
N = 3 * streaming.BLOCK + 1037        # several blocks, a partial one
assert N >= PARALLEL_MIN


@pytest.fixture
def stream_all(monkeypatch):
    monkeypatch.setattr(streaming, "STREAM_MIN", 0)


def _both_ways(cases, other_way):
    """(case..., tiled) params: every case the host's way (``streaming.TILED``),
    the cases of other_way also the other way (compiling is what these tests
    spend their time on)."""
    native = streaming.TILED
    params = [(*c, native) for c in cases] + [(*c, not native) for c in other_way]
    return pytest.mark.parametrize(
        "name,dtype,tiled", params,
        ids=[f"{n}-{d.__name__}-{'tiled' if t else 'in-loop'}" for n, d, t in params])


def _plain(monkeypatch, fn):
    monkeypatch.setattr(streaming, "STREAM_MIN", 1 << 62)
    try:
        return fn()
    finally:
        monkeypatch.setattr(streaming, "STREAM_MIN", 0)


def _outputs(result):
    return result if isinstance(result, tuple) else (result,)


@_both_ways(STREAMED, [("relu", np.float64), ("sigmoid", np.float32)])
def test_streamed_passes_equal_plain_kernels(name, dtype, tiled, monkeypatch, stream_all, rng):
    monkeypatch.setattr(streaming, "TILED", tiled)
    spec = fa.REGISTRY[name]
    choice = next(iter(spec.scalars))     # (the first, for ops with choices)
    op = getattr(fa, name)
    kw = call_kwargs(spec, choice, default_params(spec))
    lo, hi = spec.domain
    base = rng.uniform(max(lo, -6), min(hi, 6), N + 3).astype(dtype)
    base[:8] = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 1e-40]
    base_dy = rng.standard_normal(N + 3).astype(dtype)
    for offset in (0, 1, 3):              # outputs at several alignments
        x, dy = base[offset:], base_dy[offset:]
        if offset == 3:                   # an out= whose alignment differs: plain kernel
            y1 = np.empty(N + 1, dtype)[1:N + 1 - offset + 3]
            y0 = np.empty_like(x)
            np.testing.assert_array_equal(
                op.forward_backward(x, dy, out=(y0, y1), **kw)[1],
                _plain(monkeypatch, lambda x=x, dy=dy: op.forward_backward(x, dy, **kw))[1])
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
    # the kernel the calls above ran (with default parameters: the one with them
    # as constants)
    k, _ = op._cpu_kernel(spec.scalars_for(choice), "value_and_derivative", spec.bind(kw)[1],
                          np.dtype(dtype))
    assert tiled in k._streamed, "the streamed kernel never ran"


@pytest.mark.parametrize("tiled", [False, True], ids=["in-loop", "tiled"])
def test_streamed_output_may_alias_input(tiled, monkeypatch, stream_all, rng):
    monkeypatch.setattr(streaming, "TILED", tiled)
    x = rng.standard_normal(N).astype(np.float32)
    y, _ = fa.leaky_relu.value_and_derivative(x)
    z = x.copy()
    fa.leaky_relu.value_and_derivative(z, out=(z, np.empty_like(z)))
    np.testing.assert_array_equal(z, y)
    dy = rng.standard_normal(N).astype(np.float32)
    want = fa.relu.backward(x, dy)
    fa.relu.backward(x, dy, out=dy)
    np.testing.assert_array_equal(dy, want)


@_both_ways(LOSSES, [("mse", np.float32), ("huber", np.float64)])
def test_streamed_loss_gradients_equal_plain_kernels(name, dtype, tiled, monkeypatch, stream_all,
                                                     rng):
    monkeypatch.setattr(streaming, "TILED", tiled)
    from fastact.losses import kernels as loss_kernels
    loss = getattr(fa, name)
    p = rng.standard_normal(N).astype(dtype)
    t = np.sign(rng.standard_normal(N)).astype(dtype) if name == "hinge" else \
        rng.standard_normal(N).astype(dtype)
    flags = []                            # the stream flag of every kernel asked for
    make = loss_kernels.elementwise_kernel

    def spy(*args, **kw):
        flags.append(kw.get("stream", args[7] if len(args) > 7 else False))
        return make(*args, **kw)
    monkeypatch.setattr(loss_kernels, "elementwise_kernel", spy)
    for reduction in ("mean", "sum", "none"):
        v, g = loss.value_and_grad(p[1:], t[1:], reduction=reduction)
        pv, pg = _plain(monkeypatch, lambda r=reduction: loss.value_and_grad(p[1:], t[1:], reduction=r))
        np.testing.assert_array_equal(v, pv)
        np.testing.assert_array_equal(g, pg)
    q = p.copy()                          # the gradient overwrites the prediction
    loss.value_and_grad(q, t, out=q)
    want = _plain(monkeypatch, lambda: loss.value_and_grad(p, t))[1]
    np.testing.assert_array_equal(q, want)
    for offset in (0, 1):                 # out= aligned (streamed) and not (plain stores)
        buf = np.empty(N + 32, dtype)
        start = streaming.aligned_head([buf]) + offset
        out = buf[start:start + N]
        loss.value_and_grad(p, t, out=out)
        np.testing.assert_array_equal(out, want, err_msg=f"{offset=}")
    assert True in flags and False in flags, "the streamed and the plain kernel both ran"


def _host_is_x86():
    import llvmlite.binding as llvm
    return llvm.get_process_triple().startswith("x86_64")


@pytest.mark.skipif(not _host_is_x86(), reason="checks x86 instructions")
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("tiled", [False, True], ids=["in-loop", "tiled"])
def test_streamed_kernel_uses_non_temporal_stores(dtype, tiled):
    """Vector non-temporal stores in the loop that computes the values, or in
    the loop that copies each tile out, for a memory-bound op and for a
    transcendental one (512-bit vectors)."""
    for name in ("relu", "sigmoid"):
        spec = fa.REGISTRY[name]
        k = cpu_elementwise.kernel(spec.scalars_for(next(iter(spec.scalars))),
                                   "forward_backward", 0, spec.transcendental)
        options = {**JIT_OPTIONS, "cache": False}
        template = (cpu_elementwise.tiled_kernel(k.pyfunc, 2, 2) if tiled else
                    cpu_elementwise.streamed_kernel(k.streamed_pyfunc, k.pyfunc, 2, 2))
        streamed = numba.njit(parallel=True, **options)(template)
        x = np.ones(N, dtype)
        y, d = np.empty(N + 16, dtype), np.empty(N + 16, dtype)
        y, d = (a[streaming.aligned_head([a]):][:N] for a in (y, d))   # aligned, as required
        streamed(x, x, y, d, ())
        np.testing.assert_array_equal(y, getattr(fa, name)(x))
        asm = "\n".join(streamed.inspect_asm().values())
        assert re.search(r"\bvmovnt\w+\s+%[yz]mm", asm), f"{name}: no non-temporal vector store"
        assert "sfence" in asm
        assert "gather" not in asm, f"{name}: indexed loads (an index not known >= 0)"


@pytest.mark.skipif(not _host_is_x86(), reason="checks x86 instructions")
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("tiled", [False, True], ids=["in-loop", "tiled"])
def test_streamed_loss_kernel_uses_non_temporal_stores(dtype, tiled):
    """The loss gradient is stored non-temporally in the loop that computes it
    or in the loop that copies each tile out (memory-bound losses; the
    template serves transcendental ones too)."""
    from fastact.losses import kernels as loss_kernels
    for name in ("mse", "log_cosh"):
        spec = fa.REGISTRY[name]
        fd, prm = spec.extra["scalar"]({}, "mean")
        options = {**JIT_OPTIONS, "cache": False}
        kern = numba.njit(parallel=True, **options)(loss_kernels.elementwise_template(
            fd, 0, False, True, "reduce", len(prm), spec.transcendental, stream=True,
            tiled=tiled))
        p = np.linspace(-2, 2, N).astype(dtype)
        t = np.zeros(N, dtype)
        buf = np.empty(N + 16, dtype)
        g = buf[streaming.aligned_head([buf]):][:N]                # aligned, as required
        nb = (N + loss_kernels.BLOCK - 1) // loss_kernels.BLOCK
        partial = np.empty(nb)
        empty = np.empty(0, dtype)
        kern(p, t, empty, empty, g, empty, partial, dtype(1.0 / N), tuple(dtype(v) for v in prm))
        _, want = getattr(fa, name).value_and_grad(p, t)
        np.testing.assert_array_equal(g, want)
        asm = "\n".join(kern.inspect_asm().values())
        assert re.search(r"\bvmovnt\w+\s+%[yz]mm", asm), f"{name}: no non-temporal vector store"
        assert "sfence" in asm
        assert "gather" not in asm, f"{name}: indexed loads (an index not known >= 0)"


def test_aligned_head():
    a = np.empty(1000)
    base = (-a.ctypes.data) % 64 // 8
    assert streaming.aligned_head([a]) == base
    assert streaming.aligned_head([a[1:]]) == (base - 1) % 8
    assert streaming.aligned_head([a, a[1:]]) == -1            # different alignments
    b = np.empty(1000, np.float32)
    assert streaming.aligned_head([b[(-b.ctypes.data) % 64 // 4:]]) == 0
    raw = np.empty(8009, np.uint8)[1:].view(np.float64)        # not a multiple of 8
    assert streaming.aligned_head([raw]) == -1


def test_empty_aligns_streamed_outputs(stream_all):
    for dtype in FLOATS:
        a = streaming.empty((3, 1001), dtype)
        assert a.shape == (3, 1001) and a.dtype == dtype and a.flags.c_contiguous
        assert a.ctypes.data % 64 == 0 and a.flags.writeable
    y, d = fa.sigmoid.value_and_derivative(np.ones(N, np.float32))
    assert y.ctypes.data % 64 == 0 and d.ctypes.data % 64 == 0


def test_empty_is_plain_below_stream_min(monkeypatch):
    monkeypatch.setattr(streaming, "STREAM_MIN", 1 << 62)
    a = streaming.empty((5,), np.float64)
    assert a.base is None and a.shape == (5,)
