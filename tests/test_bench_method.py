"""The benchmarking methodology on controlled inputs (no figure is asserted)."""
import itertools

import numpy as np
import pytest

import fastact as fa
from fastact.bench import BenchError, compare, summarize
from fastact.bench.peers import PEERS, FastactTarget, JaxTarget, TorchTarget
from fastact.bench.runner import rotation_hook
from fastact.bench.timing import array_bytes, call_bytes, measure, median, rotation_sets
from fastact.bench.workloads import (make_workload, parse_size, passes_for, plan, select_ops,
                                     variants_of)


# ----------------------------------------------------------------- bytes

def test_array_bytes_counts_arrays_only():
    a = np.zeros(10, np.float32)
    b = np.zeros((3, 4), np.float64)
    assert array_bytes(a) == 40
    assert array_bytes((a, b)) == 40 + 96
    assert array_bytes({"w": a, "reduction": "mean", "eps": 0.1}) == 40
    assert array_bytes([a, None, 1.5, 3, "x"]) == 40
    assert array_bytes(np.float32(1.0)) == 4          # a NumPy scalar loss
    assert array_bytes(1.0) == 0


def test_array_bytes_torch_tensor():
    torch = pytest.importorskip("torch")
    assert array_bytes(torch.zeros(5, dtype=torch.float64)) == 40


def test_call_bytes_inputs_once_outputs_once():
    x, dy = np.ones(100, np.float32), np.ones(100, np.float32)
    y, dx = np.ones(100, np.float32), np.ones(100, np.float32)
    assert call_bytes((x, dy), {"alpha": 1.0}, (y, dx)) == (800, 800)
    assert call_bytes((x,), {}, y) == (400, 400)


@pytest.mark.parametrize("pass_name, n_in, n_out", [
    ("forward", 1, 1), ("value_and_derivative", 1, 2), ("backward", 2, 1),
    ("forward_backward", 2, 2)])
def test_workload_bytes_from_the_actual_call(pass_name, n_in, n_out):
    w = make_workload("relu", pass_name, 1000, "float32")
    prep = FastactTarget("numpy").prepare(w)
    hook = rotation_hook(w, prep, cache_bytes=1 << 20)
    n = hook(prep.call(0))
    assert (w.bytes_read, w.bytes_written) == (4000 * n_in, 4000 * n_out)
    assert w.nbytes == 4000 * (n_in + n_out)
    assert n == len(prep.sets) == rotation_sets(w.nbytes, 1 << 20)
    assert n > 1
    # rotating sets are copies at other addresses
    assert not np.shares_memory(prep.sets[0]["args"][0], prep.sets[1]["args"][0])


def test_rotation_sets():
    assert rotation_sets(1 << 20, 8 << 20) == 16                   # 2x cache
    assert rotation_sets(100 << 20, 8 << 20) == 1                  # one set is enough
    assert rotation_sets(16, 1 << 30, max_sets=64) == 64           # capped count
    assert rotation_sets(400 << 20, 1 << 30, memory_budget=1 << 30) == 2   # capped memory
    assert rotation_sets(0, 1 << 20) == 1


# ----------------------------------------------------------------- timing

class FakeClock:
    """Each call advances time by the duration the test scripted for it."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_median():
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 2, 3]) == 2.5
    with pytest.raises(ValueError):
        median([])


def test_measure_keeps_first_call_out_of_the_median():
    from fastact.bench.timing import WallTimer
    clock = FakeClock()
    durations = itertools.chain([5.0, 1.0, 0.01], itertools.repeat(0.01))
    seen = []

    def call(i):
        seen.append(i)
        clock.now += next(durations)
        return "result"

    timing, first = measure(call, 4, repeats=5, min_sample_s=0.0,
                            timer=WallTimer(clock=clock))
    assert first == "result"
    assert timing.first_call_s == pytest.approx(5.0)
    assert timing.median_s == pytest.approx(0.01)
    assert timing.max_s == pytest.approx(0.01)          # the 5 s first call is not a sample
    assert timing.repeats == 5 and timing.number == 1 and len(timing.samples) == 5
    # set 0 first, then the rotation continues through every set
    assert seen[:8] == [0, 1, 2, 3, 0, 1, 2, 3]


def test_measure_median_of_samples_and_calls_per_sample():
    from fastact.bench.timing import WallTimer
    clock = FakeClock()
    per_call = iter([1.0, 1.0, 0.001] + [0.001] * 10 + [0.009] * 10 + [0.001] * 20)

    def call(i):
        clock.now += next(per_call)

    timing, _ = measure(call, 1, repeats=4, min_sample_s=0.01, timer=WallTimer(clock=clock))
    assert timing.number == 10                         # 10 calls of 1 ms make a sample
    assert timing.samples == pytest.approx([0.001, 0.009, 0.001, 0.001])
    assert timing.median_s == pytest.approx(0.001)


def test_measure_after_first_sets_the_rotation():
    seen = []
    measure(lambda i: seen.append(i), 1, repeats=3, min_sample_s=0.0,
            after_first=lambda result: 3)
    assert seen[:6] == [0, 1, 2, 0, 1, 2]


# --------------------------------------------------------------- workloads

def test_workloads_cover_every_registered_op_and_pass():
    steps = plan(select_ops(None, quick=False), [64], ["float32"], quick=False)
    covered = {(op, p) for op, p, *_ in steps}
    for name, spec in fa.REGISTRY.items():
        for p in spec.passes:
            assert (name, p) in covered


@pytest.mark.parametrize("op", list(fa.REGISTRY))
def test_every_workload_runs_on_the_numpy_baseline(op):
    spec = fa.REGISTRY[op]
    for variant in variants_of(spec):
        for p in spec.passes:
            w = make_workload(op, p, 64, "float32", variant)
            prep = FastactTarget("numpy").prepare(w)
            hook = rotation_hook(w, prep, cache_bytes=0)
            hook(prep.call(0))
            assert w.bytes_read > 0 and w.bytes_written > 0


def test_selection_and_parsing():
    with pytest.raises(BenchError, match="unknown op 'rleu'.*relu"):
        select_ops(["rleu"])
    quick = select_ops(None, quick=True)
    assert "relu" in quick and set(quick) <= set(fa.REGISTRY)
    assert {fa.REGISTRY[n].kind for n in quick} == {s.kind for s in fa.REGISTRY.values()}
    assert [v["approximate"] for v in variants_of(fa.REGISTRY["gelu"])] == ["none", "tanh"]
    assert variants_of(fa.REGISTRY["relu"]) == [{}]
    assert "forward" not in passes_for(fa.REGISTRY["relu"], quick=True)
    assert passes_for(fa.REGISTRY["relu"], ["backward"]) == ["backward"]
    assert [parse_size(s) for s in ("1000", "1e5", "2^24", "2**10", "16M", "4k")] == \
        [1000, 100000, 1 << 24, 1024, 16 << 20, 4096]
    with pytest.raises(BenchError):
        parse_size("abc")


# ----------------------------------------------------------- summary/compare

def _row(target, median_s, pct, op="relu", speed=None):
    return {"device": "cpu", "op": op, "pass": "backward", "dtype": "float32", "size": 1000,
            "target": target, "status": "ok", "median_s": median_s, "pct_copy": pct,
            "gbps": pct, "speedup_vs_numpy": speed}


def test_summary_geomean_and_median():
    rows = [_row("fastact-cpu", 1.0, 50.0, "a", 2.0), _row("numpy", 2.0, 25.0, "a", 1.0),
            _row("fastact-cpu", 1.0, 70.0, "b", 8.0), _row("numpy", 8.0, 9.0, "b", 1.0),
            _row("torch", 3.0, 20.0, "b")]
    s = summarize(rows)["cpu"]
    assert s["geomean_speedup_vs_numpy"] == pytest.approx(4.0)
    assert s["median_pct_copy"] == pytest.approx(60.0)
    assert s["measurements"] == 2
    assert s["vs_peers"]["torch"]["geomean_speedup"] == pytest.approx(3.0)


def test_compare_flags_regressions():
    old = {"results": [_row("fastact-cpu", 1.0, 80.0), _row("numpy", 1.0, 10.0)]}
    new = {"results": [_row("fastact-cpu", 2.0, 40.0), _row("numpy", 1.0, 10.5)]}
    rows = {r["target"]: r for r in compare(new, old, tolerance=0.1)}
    assert rows["fastact-cpu"]["regression"] and rows["fastact-cpu"]["time_ratio"] == 2.0
    assert rows["fastact-cpu"]["pct_copy_ratio"] == 0.5
    assert not rows["numpy"]["regression"]


# ------------------------------------------------------------------ peers

def _same_as_numpy_baseline(target, op, pass_name, **variant):
    w = make_workload(op, pass_name, 256, "float32", variant)
    ref = FastactTarget("numpy").prepare(w).call(0)
    got = target.prepare(w).call(0)
    ref = ref if isinstance(ref, tuple) else (ref,)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        g = g.detach().numpy() if hasattr(g, "detach") else np.asarray(g)
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5, err_msg=f"{op}.{pass_name}")


def _torch_cases():
    for name, spec in fa.REGISTRY.items():
        if name in PEERS and PEERS[name].torch is not None:
            for variant in variants_of(spec):
                yield name, spec.passes[-1], variant


@pytest.mark.parametrize("op, pass_name, variant", list(_torch_cases()))
def test_torch_peer_computes_the_same_thing(op, pass_name, variant):
    pytest.importorskip("torch")
    _same_as_numpy_baseline(TorchTarget(), op, pass_name, **variant)


@pytest.mark.parametrize("op, pass_name", [("sigmoid", "forward_backward"),
                                           ("softplus", "value_and_derivative"),
                                           ("softmax", "backward"),
                                           ("sparse_softmax_cross_entropy", "value_and_grad")])
def test_jax_peer_computes_the_same_thing(op, pass_name):
    pytest.importorskip("jax")
    _same_as_numpy_baseline(JaxTarget(), op, pass_name)


def test_peer_table_names_registered_kinds():
    # every registered op but the trivial ones has a torch peer
    missing = [n for n in fa.REGISTRY if n not in PEERS and n not in ("identity", "binary_step")]
    assert missing == []
