"""pytest-benchmark suites of fastact (run explicitly: ``pytest bench/``).

They reuse fastact.bench (workloads from the registry, byte counting,
rotating input sets, first call timed apart, bandwidth of a parallel copy):
the methodology lives there once.  Options narrow a run:

    pytest bench/ --bench-ops gelu,silu --bench-sizes 1e5 --bench-dtype float32
    pytest bench/ --benchmark-json out.json      (pytest-benchmark's own options work)
"""
import pytest

from fastact.bench import machine
from fastact.bench.workloads import FULL_SIZES, parse_dtype, parse_size

# Issue 2: fastact "cpu" against the "numpy" baseline at 1e3, 1e5 and 2^24 float32 elements.
DEFAULT_SIZES = FULL_SIZES
DEFAULT_DTYPES = ("float32",)


def pytest_addoption(parser):
    g = parser.getgroup("fastact bench")
    g.addoption("--bench-ops", default=None, help="comma-separated ops (default: all)")
    g.addoption("--bench-passes", default=None, help="comma-separated passes (default: all)")
    g.addoption("--bench-sizes", default=None,
                help="comma-separated element counts (default 1e3,1e5,2^24)")
    g.addoption("--bench-dtype", default=None, help="comma-separated dtypes (default float32)")


def _split(text):
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def bench_selection(config):
    sizes = _split(config.getoption("--bench-sizes"))
    dtypes = _split(config.getoption("--bench-dtype"))
    return {
        "ops": _split(config.getoption("--bench-ops")),
        "passes": _split(config.getoption("--bench-passes")),
        "sizes": [parse_size(s) for s in sizes] if sizes else list(DEFAULT_SIZES),
        "dtypes": [parse_dtype(d) for d in dtypes] if dtypes else list(DEFAULT_DTYPES),
    }


@pytest.fixture(scope="session")
def copy_bandwidth():
    """Parallel copy/triad bandwidth measured once per session (same kernels as the CLI)."""
    llc = machine.last_level_cache_bytes()
    return machine.measure_cpu_bandwidth(machine.bandwidth_array_bytes(llc, quick=True))


@pytest.fixture(scope="session")
def cache_bytes():
    return machine.last_level_cache_bytes()


@pytest.fixture(scope="session")
def numpy_medians():
    """Median seconds of the NumPy baseline per workload key, for speedups."""
    return {}
