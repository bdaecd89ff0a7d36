"""Timing and byte counting: the one methodology behind ``fastact bench`` and bench/.

* Bytes of a call: every input array read once plus every output array
  written once, counted from the actual arrays of the call (NumPy arrays,
  torch tensors, device arrays: anything with ``nbytes`` or ``numel``).
  Scalars (a Python float loss, a string parameter) count nothing; a NumPy
  scalar counts its itemsize.
* Timing: the first call is timed on its own (first-call / compile time) and
  never enters the median; one more untimed warm-up call follows; then
  ``repeats`` samples, each of ``number`` calls cycling through rotating
  input sets, and the median of the per-call times is the figure.
* Rotating input sets: enough copies of the inputs (and outputs) that their
  total size is at least twice the last-level cache, so a call does not find
  its inputs in the cache left by the previous one (within a memory budget).
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, field

import numpy as np


# ------------------------------------------------------------------ bytes

def array_bytes(obj) -> int:
    """Bytes held by the arrays in ``obj`` (nested tuples/lists/dicts allowed)."""
    if obj is None or isinstance(obj, (str, bytes, bool, int, float, complex)):
        return 0
    if isinstance(obj, (tuple, list)):
        return sum(array_bytes(o) for o in obj)
    if isinstance(obj, dict):
        return sum(array_bytes(o) for o in obj.values())
    if isinstance(obj, (np.ndarray, np.generic)):
        return int(obj.nbytes)
    if hasattr(obj, "numel") and hasattr(obj, "element_size"):      # torch tensor
        return int(obj.numel() * obj.element_size())
    nbytes = getattr(obj, "nbytes", None)                           # device arrays, jax
    if isinstance(nbytes, (int, np.integer)):
        return int(nbytes)
    return 0


def call_bytes(args, kwargs, outputs) -> tuple[int, int]:
    """(bytes read, bytes written) of one call: inputs once, outputs once."""
    return array_bytes(tuple(args)) + array_bytes(dict(kwargs or {})), array_bytes(outputs)


def gbps(nbytes: float, seconds: float) -> float:
    return nbytes / seconds / 1e9 if seconds > 0 else float("nan")


# --------------------------------------------------------------- rotation

def rotation_sets(bytes_per_set: int, cache_bytes: int, *, max_sets: int = 64,
                  memory_budget: int = 1 << 30) -> int:
    """How many copies of a call's arrays to rotate through.

    Enough that the sets together hold at least twice ``cache_bytes``, at most
    ``max_sets`` and at most ``memory_budget`` bytes (never fewer than 1).
    """
    if bytes_per_set <= 0:
        return 1
    need = math.ceil(2 * cache_bytes / bytes_per_set)
    fit = memory_budget // bytes_per_set
    return int(max(1, min(max_sets, need, fit)))


# ---------------------------------------------------------------- timers

class WallTimer:
    """perf_counter around the calls, after a device sync (no-op on the CPU)."""

    def __init__(self, sync=None, clock=time.perf_counter):
        self.sync = sync or (lambda: None)
        self.clock = clock
        self._t0 = 0.0

    def start(self):
        self.sync()
        self._t0 = self.clock()

    def stop(self) -> float:
        self.sync()
        return self.clock() - self._t0


class CudaEventTimer:
    """CUDA events recorded on the default stream around the calls."""

    def __init__(self):
        from numba import cuda
        self._start, self._end = cuda.event(), cuda.event()

    def start(self):
        self._start.record()

    def stop(self) -> float:
        self._end.record()
        self._end.synchronize()
        return self._start.elapsed_time(self._end) / 1e3


# ---------------------------------------------------------------- measure

def warm_up(call, n_sets=1, timer=None, after_first=None):
    """First call (timed alone), ``after_first``, one untimed warm-up call, one timed call.

    Returns (first result, first-call seconds, number of sets, seconds of one warm call).
    """
    timer = timer or WallTimer()
    timer.start()
    first = call(0)
    first_s = timer.stop()
    if after_first is not None:
        n_sets = after_first(first)
    n_sets = max(1, int(n_sets))
    call(1 % n_sets)
    timer.start()
    call(2 % n_sets)
    one = max(timer.stop(), 1e-9)
    return first, first_s, n_sets, one


@dataclass
class Timing:
    first_call_s: float
    median_s: float
    min_s: float
    max_s: float
    repeats: int
    number: int
    samples: list = field(default_factory=list)

    def as_dict(self):
        return asdict(self)


def median(values) -> float:
    """Median of the values (mean of the middle two for an even count)."""
    values = list(values)
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def measure(call, n_sets: int = 1, *, repeats: int = 7, min_sample_s: float = 0.02,
            max_number: int = 10_000, time_budget_s: float | None = None,
            timer=None, after_first=None) -> tuple[Timing, object]:
    """Time ``call(i)`` (i = index of the rotating input set).

    Returns (Timing, result of the first call).  Call order: set 0 timed
    alone (first call), set 1 untimed (warm-up), set 2 timed alone to pick
    ``number`` (calls per sample, so that a sample lasts ``min_sample_s``),
    then ``repeats`` samples continuing the rotation.  With
    ``time_budget_s`` the repeats are cut (never below 3) when a single call
    is slow.  ``timer``: WallTimer (default) or CudaEventTimer.
    ``after_first(result)``, if given, is called (untimed) after the first call
    and returns the number of sets to rotate through from then on.
    """
    timer = timer or WallTimer()
    first, first_s, n_sets, one = warm_up(call, n_sets, timer, after_first)
    number = int(max(1, min(max_number, math.ceil(min_sample_s / one - 1e-6))))
    if time_budget_s is not None and repeats > 3:
        repeats = int(max(3, min(repeats, time_budget_s // max(one * number, 1e-9))))
    samples = []
    k = 3
    for _ in range(repeats):
        timer.start()
        for _ in range(number):
            call(k % n_sets)
            k += 1
        samples.append(timer.stop() / number)
    t = Timing(first_call_s=first_s, median_s=median(samples), min_s=min(samples),
               max_s=max(samples), repeats=repeats, number=number, samples=samples)
    return t, first
