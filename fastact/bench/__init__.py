"""fastact's benchmarking methodology, shared by ``fastact bench`` and the bench/ suites.

    machine   what the machine is, and its copy/triad bandwidth (measured in the run)
    timing    bytes of a call, rotating input sets, first call apart, median of repeats
    workloads every op and pass of the registry, inputs from ``spec.example_call``
    peers     fastact backends, the NumPy baseline, PyTorch, torch.compile, JAX
    runner    a whole run -> a JSON-able report (summary, compare)
    report    table, summary line, JSON, CSV, plot
"""
from .runner import BenchConfig, compare, run, summarize
from .timing import Timing, array_bytes, call_bytes, measure, median, rotation_sets
from .workloads import BenchError, Workload, make_workload, plan, select_ops

__all__ = ["BenchConfig", "BenchError", "Timing", "Workload", "array_bytes", "call_bytes",
           "compare", "make_workload", "measure", "median", "plan", "rotation_sets", "run",
           "select_ops", "summarize"]
