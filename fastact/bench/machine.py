"""The machine: what it is (CPU, SIMD, caches, threads, GPU) and how fast it moves memory.

Bandwidth is measured in the same run as the ops, with the same tools: a
parallel copy ``dst[i] = src[i]`` and a STREAM triad ``a[i] = b[i] + s * c[i]``
as Numba ``njit(parallel=True)`` kernels on arrays larger than the last-level
cache (CPU), and a device-to-device copy timed with CUDA events (GPU).  Bytes
are counted the way op bytes are: each array read once plus each array
written once (no write-allocate traffic), so "% of copy bandwidth" compares
like with like.
"""
from __future__ import annotations

import os
import platform
import statistics
import time

import numpy as np
from numba import prange

from ..cpu.jit import kernel_jit

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

# SIMD flags worth printing, in order (x86 /proc/cpuinfo names, then Arm).
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw",
              "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
              "asimd", "asimdhp", "sve", "sve2")


# ------------------------------------------------------------------ kernels

@kernel_jit(parallel=True, nogil=True, cache=True)
def _fill(a, v):
    for i in prange(a.size):
        a[i] = v


@kernel_jit(parallel=True, nogil=True, cache=True)
def _copy(dst, src):
    for i in prange(src.size):
        dst[i] = src[i]


@kernel_jit(parallel=True, nogil=True, cache=True)
def _triad(a, b, c, s):
    for i in prange(a.size):
        a[i] = b[i] + s * c[i]


# ------------------------------------------------------------ description

def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware", "cpu model"):
            return value.strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags() -> set:
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def simd_features(flags=None) -> list:
    flags = cpu_flags() if flags is None else set(flags)
    return [f for f in SIMD_FLAGS if f in flags]


def caches() -> list:
    """[{level, type, size_bytes}] of CPU 0, from sysfs (empty where unknown)."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    out = []
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return out
    for e in entries:
        if not e.startswith("index"):
            continue
        level, kind, size = (_read(f"{base}/{e}/{k}").strip() for k in ("level", "type", "size"))
        if not size:
            continue
        mult = {"K": KiB, "M": MiB, "G": GiB}.get(size[-1], 1)
        try:
            nbytes = int(size.rstrip("KMG")) * mult
        except ValueError:
            continue
        out.append({"level": int(level or 0), "type": kind, "size_bytes": nbytes})
    return out


def last_level_cache_bytes(cache_list=None) -> int:
    """Size of the largest data/unified cache (32 MiB when unknown)."""
    sizes = [c["size_bytes"] for c in (caches() if cache_list is None else cache_list)
             if c["type"] in ("Data", "Unified")]
    return max(sizes) if sizes else 32 * MiB


def memory_bytes() -> dict:
    d = {}
    for line in _read("/proc/meminfo").splitlines():
        key, _, value = line.partition(":")
        if key in ("MemTotal", "MemAvailable"):
            try:
                d[key] = int(value.split()[0]) * KiB
            except (ValueError, IndexError):
                pass
    return {"total_bytes": d.get("MemTotal"), "available_bytes": d.get("MemAvailable")}


def threading_layer() -> str:
    """Numba's threading layer (only known once a parallel kernel ran)."""
    import numba
    try:
        return numba.threading_layer()
    except ValueError:
        return f"not yet chosen (config: {numba.config.THREADING_LAYER})"


def gpu_info() -> dict | None:
    """Name, memory and multiprocessors of the current CUDA GPU, or None (with no error)."""
    try:
        from numba import cuda
        if not cuda.is_available():
            return None
        dev = cuda.get_current_device()
        free, total = cuda.current_context().get_memory_info()
        name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
        return {"name": name, "memory_bytes": int(total), "free_bytes": int(free),
                "multiprocessors": int(dev.MULTIPROCESSOR_COUNT),
                "compute_capability": ".".join(map(str, dev.compute_capability)),
                "simulator": bool(getattr(cuda, "simulator", None)
                                  and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1")}
    except Exception:  # any driver trouble: no GPU as far as the bench is concerned
        return None


def gpu_unavailable_reason() -> str:
    try:
        from numba import cuda
    except Exception as e:  # pragma: no cover - numba.cuda import problems
        return f"numba.cuda cannot be imported ({e})"
    try:
        if cuda.is_available():
            return ""
        cuda.detect()
    except Exception as e:
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    return "numba.cuda.is_available() is False (no CUDA driver or no NVIDIA GPU)"


def versions(peers=()) -> dict:
    import numba

    from .. import __version__
    v = {"fastact": __version__, "python": platform.python_version(),
         "numpy": np.__version__, "numba": numba.__version__}
    for name, module in (("torch", "torch"), ("torch-compile", "torch"), ("jax", "jax")):
        if name in peers:
            try:
                v[module] = __import__(module).__version__
            except Exception:
                pass
    return v


def describe(peers=()) -> dict:
    """Everything about the machine except measured figures."""
    import numba
    flags = cpu_flags()
    cache_list = caches()
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        available = os.cpu_count()
    return {
        "cpu_model": cpu_model(),
        "arch": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "logical_cpus": os.cpu_count(),
        "available_cpus": available,
        "threads": numba.get_num_threads(),
        "max_threads": numba.config.NUMBA_NUM_THREADS,
        "threading_layer": threading_layer(),
        "simd": simd_features(flags),
        "caches": cache_list,
        "last_level_cache_bytes": last_level_cache_bytes(cache_list),
        "memory": memory_bytes(),
        "gpu": gpu_info(),
        "versions": versions(peers),
    }


# ------------------------------------------------------------- bandwidth

def bandwidth_array_bytes(llc_bytes: int, quick: bool = True) -> int:
    """Bytes per array for the bandwidth kernels: 2x the last-level cache, within limits."""
    cap = 256 * MiB if quick else 512 * MiB
    return int(min(max(2 * llc_bytes, 64 * MiB), cap))


def measure_cpu_bandwidth(array_bytes: int, repeats: int = 5) -> dict:
    """Parallel copy and triad bandwidth (GB/s, 1e9 bytes/s) on float64 arrays."""
    n = max(1, array_bytes // 8)
    a, b, c = (np.empty(n) for _ in range(3))
    for arr, v in ((a, 0.0), (b, 1.0), (c, 2.0)):
        _fill(arr, v)               # first touch by the same threads, compiles _fill
    _copy(a, b)
    _triad(a, b, c, 3.0)            # compile (or load from cache) and warm up
    copies, triads = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _copy(a, b)
        copies.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _triad(a, b, c, 3.0)
        triads.append(time.perf_counter() - t0)
    nbytes = a.nbytes
    copy_t, triad_t = statistics.median(copies), statistics.median(triads)
    return {
        "device": "cpu",
        "array_bytes": int(nbytes),
        "repeats": repeats,
        "copy_gbps": 2 * nbytes / copy_t / 1e9,
        "copy_best_gbps": 2 * nbytes / min(copies) / 1e9,
        "triad_gbps": 3 * nbytes / triad_t / 1e9,
        "triad_best_gbps": 3 * nbytes / min(triads) / 1e9,
        "method": "numba njit(parallel=True); bytes = arrays read once + written once; "
                  "median of repeats",
    }


def measure_gpu_bandwidth(array_bytes: int = 1 * GiB, repeats: int = 10) -> dict:
    """Device-to-device copy bandwidth timed with CUDA events (GB/s)."""
    from numba import cuda
    free, _ = cuda.current_context().get_memory_info()
    nbytes = int(min(array_bytes, free // 4))
    n = max(1, nbytes // 8)
    src = cuda.to_device(np.ones(n))
    dst = cuda.device_array(n)
    dst.copy_to_device(src)
    cuda.synchronize()
    start, end = cuda.event(), cuda.event()
    times = []
    for _ in range(repeats):
        start.record()
        dst.copy_to_device(src)
        end.record()
        end.synchronize()
        times.append(cuda.event_elapsed_time(start, end) / 1e3)
    t = statistics.median(times)
    return {
        "device": "cuda",
        "array_bytes": int(src.nbytes),
        "repeats": repeats,
        "copy_gbps": 2 * src.nbytes / t / 1e9,
        "copy_best_gbps": 2 * src.nbytes / min(times) / 1e9,
        "method": "device-to-device copy (cudaMemcpy), CUDA events; median of repeats",
    }
