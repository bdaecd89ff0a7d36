"""Running a benchmark: machine first, then every (workload, target), then the summary.

``run(BenchConfig(...))`` returns a plain dict (the JSON report):
``{"schema", "created", "config", "machine", "bandwidth", "results", "summary", "notes"}``.
Each result row holds the figures of one (device, op, pass, dtype, size,
target): median and first-call time, bytes, GB/s, % of the copy bandwidth
measured in the same run, and the speedup over the NumPy baseline.
"""
from __future__ import annotations

import datetime as _dt
import math
import statistics
from dataclasses import asdict, dataclass, field

from . import machine as mach
from .peers import PEER_NAMES, Skip, make_targets
from .timing import call_bytes, gbps, measure, rotation_sets
from .workloads import (FULL_DTYPES, FULL_SIZES, QUICK_DTYPES, QUICK_SIZES, BenchError,
                        make_workload, plan, select_ops)

SCHEMA = "fastact-bench/1"
KEY_FIELDS = ("device", "op", "pass", "dtype", "size", "target")


@dataclass
class BenchConfig:
    ops: list | None = None            # None: the quick set (quick) or every op
    passes: list | None = None         # None: see workloads.passes_for
    sizes: list | None = None          # elements of the main input
    dtypes: list | None = None
    device: str = "cpu"                # "cpu" | "cuda" | "all"
    peers: list = field(default_factory=lambda: ["numpy"])
    quick: bool = True
    repeats: int | None = None         # samples per measurement (median of them)
    min_sample_s: float | None = None  # each sample lasts at least this long
    time_budget_s: float | None = None # per measurement: cut repeats of slow calls
    threads: int | None = None
    use_out: bool = True               # fastact/NumPy write into preallocated out=
    seed: int = 0
    bandwidth_bytes: int | None = None # bytes per bandwidth array (default: 2x LLC, capped)
    cache_bytes: int | None = None     # what rotation must exceed (default: LLC / GPU L2)
    memory_budget: int = 1 << 30       # bytes of rotating input sets per measurement

    def resolved(self) -> "BenchConfig":
        c = BenchConfig(**asdict(self))
        c.ops = select_ops(c.ops, c.quick)
        c.sizes = list(c.sizes or (QUICK_SIZES if c.quick else FULL_SIZES))
        c.dtypes = list(c.dtypes or (QUICK_DTYPES if c.quick else FULL_DTYPES))
        c.repeats = c.repeats or (5 if c.quick else 11)
        c.min_sample_s = c.min_sample_s if c.min_sample_s is not None else (
            0.01 if c.quick else 0.05)
        c.time_budget_s = c.time_budget_s if c.time_budget_s is not None else (
            1.5 if c.quick else 10.0)
        if c.device not in ("cpu", "cuda", "all"):
            raise BenchError(f"unknown device {c.device!r}; choose cpu, cuda or all")
        peers = []
        for p in c.peers or []:
            if p not in PEER_NAMES:
                raise BenchError(f"unknown peer {p!r}; choose from {', '.join(PEER_NAMES)}")
            if p not in peers:
                peers.append(p)
        c.peers = peers
        if c.threads is not None:
            import numba
            top = numba.config.NUMBA_NUM_THREADS
            if not 1 <= c.threads <= top:
                raise BenchError(f"--threads {c.threads}: choose 1 to {top} "
                                 "(NUMBA_NUM_THREADS caps it)")
        return c


def set_threads(n: int | None, peers=()) -> None:
    if n is None:
        return
    import numba
    numba.set_num_threads(n)
    if "torch" in peers or "torch-compile" in peers:
        try:
            import torch
            torch.set_num_threads(n)
        except Exception:
            pass


def devices_for(device: str, notes: list) -> list[str]:
    """The devices to run on; BenchError when an explicitly asked one is missing."""
    if device == "cpu":
        return ["cpu"]
    gpu = mach.gpu_info()
    if gpu is None:
        reason = mach.gpu_unavailable_reason()
        if device == "cuda":
            raise BenchError(f"--device cuda: no CUDA GPU is available here ({reason})")
        notes.append(f"--device all: no CUDA GPU here ({reason}); CPU only")
        return ["cpu"]
    import fastact
    if "cuda" not in fastact.available_backends():
        if device == "cuda":
            raise BenchError("--device cuda: a GPU is present but fastact's CUDA backend is "
                             "not available (install numba-cuda: pip install 'fastact[cuda]')")
        notes.append("--device all: fastact's CUDA backend is not available; CPU only")
        return ["cpu"]
    return ["cpu", "cuda"] if device == "all" else ["cuda"]


def measure_machine(config: BenchConfig, devices, peers=()) -> tuple[dict, dict]:
    """(machine description, {device: bandwidth figures}); bandwidth measured first."""
    llc = mach.last_level_cache_bytes()
    bw = {}
    if "cpu" in devices:
        nbytes = config.bandwidth_bytes or mach.bandwidth_array_bytes(llc, config.quick)
        bw["cpu"] = mach.measure_cpu_bandwidth(nbytes, repeats=5 if config.quick else 10)
    if "cuda" in devices:
        bw["cuda"] = mach.measure_gpu_bandwidth()
    info = mach.describe(peers)         # after the kernels ran: threading layer is known
    return info, bw


def _cache_bytes(config, info, device):
    if config.cache_bytes is not None:
        return config.cache_bytes
    if device == "cuda":
        try:
            from numba import cuda
            return int(getattr(cuda.get_current_device(), "L2_CACHE_SIZE", 64 << 20))
        except Exception:
            return 64 << 20
    return info["last_level_cache_bytes"]


def count_measurements(config: BenchConfig, devices, targets_per_device) -> int:
    steps = plan(config.ops, config.sizes, config.dtypes, config.passes, config.quick)
    return sum(len(steps) * targets_per_device[d] for d in devices)


def run(config: BenchConfig, progress=None, machine_only=False, on_machine=None) -> dict:
    """Run the benchmark; ``on_machine(report)`` once the machine part is measured,
    ``progress(done, total, label)`` after each measurement."""
    config = config.resolved()
    notes: list = []
    devices = devices_for(config.device, notes)
    targets = {d: make_targets(d, config.peers, config.use_out) for d in devices}
    for d in devices:
        for t in targets[d]:
            t.check_available()
    set_threads(config.threads, config.peers)
    info, bw = measure_machine(config, devices, config.peers)
    report = {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": asdict(config),
        "machine": info,
        "bandwidth": bw,
        "results": [],
        "summary": {},
        "notes": notes,
    }
    if on_machine is not None:
        on_machine(report)
    if machine_only:
        return report
    steps = plan(config.ops, config.sizes, config.dtypes, config.passes, config.quick)
    total = sum(len(steps) * len(targets[d]) for d in devices)
    done = 0
    for device in devices:
        cache = _cache_bytes(config, info, device)
        copy_gbps = bw[device]["copy_gbps"]
        for op, pass_name, size, dtype, variant in steps:
            w = make_workload(op, pass_name, size, dtype, variant, config.seed)
            rows = []
            for target in targets[device]:
                label = f"{w.label} {pass_name} {dtype} {size} {target.name}"
                rows.append(_measure_one(w, target, device, cache, copy_gbps, config))
                done += 1
                if progress is not None:
                    progress(done, total, label)
            _speedups(rows)
            report["results"].extend(rows)
            for n in w.notes:
                if n not in notes:
                    notes.append(n)
    report["summary"] = summarize(report["results"])
    return report


def _measure_one(w, target, device, cache, copy_gbps, config) -> dict:
    row = {"device": device, "op": w.label, "kind": w.kind, "pass": w.pass_name,
           "dtype": w.dtype, "size": w.size, "shape": list(w.shape), "target": target.name,
           "status": "ok", "note": ""}
    try:
        prep = target.prepare(w)
        timing, _ = measure(prep.call, 1, repeats=config.repeats,
                            min_sample_s=config.min_sample_s,
                            time_budget_s=config.time_budget_s, timer=prep.timer(),
                            after_first=rotation_hook(w, prep, cache, config.memory_budget))
    except Skip as e:
        row.update(status="skipped", note=str(e))
        return row
    except Exception as e:  # an op or peer failing must not end the run
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        row.update(status="error", note=f"{type(e).__name__}: {msg}"[:300])
        return row
    nbytes = w.nbytes
    row.update({
        "median_s": timing.median_s, "min_s": timing.min_s, "max_s": timing.max_s,
        "first_call_s": timing.first_call_s, "repeats": timing.repeats,
        "number": timing.number, "rotating_sets": len(prep.sets),
        "bytes_read": w.bytes_read, "bytes_written": w.bytes_written, "bytes": nbytes,
        "gbps": gbps(nbytes, timing.median_s),
        "out_preallocated": bool(prep.info.get("uses_out")),
    })
    row["pct_copy"] = 100.0 * row["gbps"] / copy_gbps if copy_gbps else None
    return row


def rotation_hook(w, prep, cache_bytes, memory_budget=1 << 30):
    """``after_first`` for timing.measure/warm_up: count the workload's bytes from its
    arrays and the first result, then grow the rotating sets past the cache."""
    def after_first(result):
        if w.bytes_read is None:
            w.bytes_read, w.bytes_written = call_bytes(w.args, w.kwargs, result)
        n = rotation_sets(w.nbytes, cache_bytes, memory_budget=memory_budget)
        return prep.ensure_sets(n)
    return after_first


def _speedups(rows):
    base = next((r for r in rows if r["target"] == "numpy" and r["status"] == "ok"), None)
    for r in rows:
        if base is not None and r["status"] == "ok":
            r["speedup_vs_numpy"] = base["median_s"] / r["median_s"]
        else:
            r["speedup_vs_numpy"] = None


def geomean(values) -> float | None:
    vals = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def summarize(results) -> dict:
    """Per device: geometric-mean speedup of fastact over NumPy (and over each peer),
    median % of copy bandwidth of fastact's measurements."""
    out = {}
    for device in sorted({r["device"] for r in results}):
        mine = f"fastact-{device}"
        ok = [r for r in results if r["device"] == device and r["status"] == "ok"]
        fast = [r for r in ok if r["target"] == mine]
        pct = [r["pct_copy"] for r in fast if r.get("pct_copy") is not None]
        s = {
            "target": mine,
            "measurements": len(fast),
            "geomean_speedup_vs_numpy": geomean(r["speedup_vs_numpy"] for r in fast),
            "median_pct_copy": statistics.median(pct) if pct else None,
            "vs_peers": {},
        }
        by_key = {}
        for r in ok:
            by_key.setdefault((r["op"], r["pass"], r["dtype"], r["size"]), {})[r["target"]] = r
        peers = sorted({r["target"] for r in ok} - {mine, "numpy"})
        for p in peers:
            ratios = [g[p]["median_s"] / g[mine]["median_s"] for g in by_key.values()
                      if p in g and mine in g]
            s["vs_peers"][p] = {"geomean_speedup": geomean(ratios), "measurements": len(ratios)}
        out[device] = s
    return out


def row_key(r) -> tuple:
    return tuple(r.get(k) for k in KEY_FIELDS)


def compare(new: dict, old: dict, tolerance: float = 0.10) -> list[dict]:
    """Ratio new/old of each figure of the rows both runs have.

    ``time_ratio`` = new median / old median (> 1 is slower); ``pct_copy_ratio``
    and ``gbps_ratio`` new / old (< 1 is worse); ``speedup_ratio`` likewise.  A
    row is a regression when the bandwidth-normalized figure (% of copy, which
    cancels machine drift) — or the time where % of copy is missing — is worse
    by more than ``tolerance``.
    """
    old_rows = {row_key(r): r for r in old.get("results", []) if r.get("status") == "ok"}
    out = []
    for r in new.get("results", []):
        o = old_rows.get(row_key(r))
        if o is None or r.get("status") != "ok":
            continue
        c = {k: r.get(k) for k in KEY_FIELDS}
        c["old_median_s"], c["new_median_s"] = o["median_s"], r["median_s"]
        c["time_ratio"] = r["median_s"] / o["median_s"] if o["median_s"] else None
        for f in ("gbps", "pct_copy", "speedup_vs_numpy"):
            a, b = r.get(f), o.get(f)
            c[f"{f}_ratio"] = a / b if a is not None and b else None
        if c["pct_copy_ratio"] is not None:
            c["regression"] = c["pct_copy_ratio"] < 1.0 / (1.0 + tolerance)
        else:
            c["regression"] = c["time_ratio"] is not None and c["time_ratio"] > 1.0 + tolerance
        out.append(c)
    return out
