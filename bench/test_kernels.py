"""Every registered op and pass: fastact "cpu" against the "numpy" baseline.

Parametrized over the registry (fastact.bench.workloads.plan), so a newly
registered op or kind is benchmarked with no change here.  One
``benchmark.group`` per op; ``extra_info`` holds bytes moved, GB/s, % of the
copy bandwidth measured in the same session, first-call time and, for the
fastact rows, the speedup over the NumPy baseline (run just before it).
"""
import itertools


from fastact.bench.peers import FastactTarget
from fastact.bench.runner import rotation_hook
from fastact.bench.timing import gbps, warm_up
from fastact.bench.workloads import make_workload, plan, select_ops

BACKENDS = ("numpy", "cpu")        # NumPy first: the fastact row reports its speedup


def pytest_generate_tests(metafunc):
    if "case" not in metafunc.fixturenames:
        return
    from conftest import bench_selection
    sel = bench_selection(metafunc.config)
    ops = select_ops(sel["ops"], quick=False)
    steps = plan(ops, sel["sizes"], sel["dtypes"], sel["passes"], quick=False)
    cases, ids = [], []
    for (op, pass_name, size, dtype, variant), backend in itertools.product(steps, BACKENDS):
        label = op + ("[" + ",".join(map(str, variant.values())) + "]" if variant else "")
        cases.append((op, pass_name, size, dtype, variant, backend))
        ids.append(f"{label}-{pass_name}-{dtype}-{size}-{backend}")
    metafunc.parametrize("case", cases, ids=ids)


def _rounds(one_call_s):
    """Enough rounds for a stable median, about half a second per benchmark."""
    return int(max(5, min(200, 0.5 / max(one_call_s, 1e-7))))


def test_kernel(benchmark, case, copy_bandwidth, cache_bytes, numpy_medians):
    op, pass_name, size, dtype, variant, backend = case
    w = make_workload(op, pass_name, size, dtype, variant)
    prep = FastactTarget(backend).prepare(w)
    _, first_s, n_sets, one = warm_up(prep.call, 1, prep.timer(),
                                      rotation_hook(w, prep, cache_bytes))
    counter = itertools.count(3)
    benchmark.group = w.label
    benchmark.pedantic(prep.call, setup=lambda: ((next(counter) % n_sets,), {}),
                       rounds=_rounds(one), iterations=1, warmup_rounds=0)
    med = benchmark.stats.stats.median
    rate = gbps(w.nbytes, med)
    key = w.key()
    info = benchmark.extra_info
    info.update(op=w.label, kind=w.kind, pass_name=pass_name, dtype=dtype, size=size,
                shape=list(w.shape), backend=backend, bytes=w.nbytes,
                bytes_read=w.bytes_read, bytes_written=w.bytes_written,
                gbps=rate, copy_gbps=copy_bandwidth["copy_gbps"],
                pct_copy=100.0 * rate / copy_bandwidth["copy_gbps"],
                first_call_s=first_s, rotating_sets=n_sets)
    if backend == "numpy":
        numpy_medians[key] = med
    elif key in numpy_medians:
        info["speedup_vs_numpy"] = numpy_medians[key] / med
    if w.notes:
        info["notes"] = list(w.notes)
