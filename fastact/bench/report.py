"""Printing and saving a report: machine block, table, summary, JSON, CSV, plot, compare."""
from __future__ import annotations

import csv
import json
import math

from .machine import GiB, KiB, MiB

TABLE_COLUMNS = ("op", "pass", "dtype", "size", "backend", "median", "GB/s", "% copy",
                 "vs numpy", "1st call")
CSV_FIELDS = ("device", "op", "kind", "pass", "dtype", "size", "shape", "target", "status",
              "median_s", "min_s", "max_s", "first_call_s", "repeats", "number",
              "rotating_sets", "bytes_read", "bytes_written", "bytes", "gbps", "pct_copy",
              "speedup_vs_numpy", "out_preallocated", "note",
              "copy_gbps", "cpu_model", "threads", "fastact", "numba", "numpy")


def human_bytes(n) -> str:
    if n is None:
        return "?"
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            v = n / size
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n} B"


def human_time(s) -> str:
    if s is None or not math.isfinite(s):
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    if s >= 1e-6:
        return f"{s * 1e6:.1f} us"
    return f"{s * 1e9:.0f} ns"


def human_size(n) -> str:
    if n >= 1 << 10 and n & (n - 1) == 0:
        return f"2^{n.bit_length() - 1}"
    if n >= 10_000 and n % 10 ** int(math.log10(n)) == 0:
        return f"1e{int(math.log10(n))}" if str(n)[0] == "1" else str(n)
    return str(n)


def format_machine(info: dict, bandwidth: dict) -> str:
    v = info["versions"]
    caches = ", ".join(f"L{c['level']}{'d' if c['type'] == 'Data' else ''}"
                       f"{'i' if c['type'] == 'Instruction' else ''} "
                       f"{human_bytes(c['size_bytes'])}" for c in info["caches"]) or "unknown"
    mem = info["memory"].get("total_bytes")
    lines = [
        "Machine",
        f"  CPU        {info['cpu_model']} ({info['arch']}), {info['logical_cpus']} logical CPUs, "
        f"{info['available_cpus']} available",
        f"  threads    {info['threads']} Numba threads used (max {info['max_threads']}), "
        f"threading layer {info['threading_layer']}",
        f"  SIMD       {' '.join(info['simd']) or 'none detected'}",
        f"  caches     {caches} (per CPU 0)",
        f"  memory     {human_bytes(mem)}",
        "  versions   " + ", ".join(f"{k} {val}" for k, val in v.items()),
    ]
    gpu = info.get("gpu")
    if gpu:
        lines.append(f"  GPU        {gpu['name']}, {human_bytes(gpu['memory_bytes'])}, "
                     f"{gpu['multiprocessors']} SMs, compute capability "
                     f"{gpu['compute_capability']}")
    else:
        lines.append("  GPU        none")
    for dev, b in bandwidth.items():
        if dev == "cpu":
            lines.append(f"  bandwidth  CPU copy {b['copy_gbps']:.1f} GB/s, triad "
                         f"{b['triad_gbps']:.1f} GB/s (parallel Numba kernels, "
                         f"{human_bytes(b['array_bytes'])} arrays, median of {b['repeats']})")
        else:
            lines.append(f"  bandwidth  GPU device-to-device copy {b['copy_gbps']:.1f} GB/s "
                         f"({human_bytes(b['array_bytes'])}, CUDA events, median of "
                         f"{b['repeats']})")
    return "\n".join(lines)


def _fmt(v, spec, none="-"):
    return none if v is None or (isinstance(v, float) and not math.isfinite(v)) else \
        format(v, spec)


def table_rows(results) -> list[list[str]]:
    rows = []
    for r in results:
        backend = r["target"] if r["device"] == "cpu" or r["target"] == "numpy" \
            else f"{r['target']}@{r['device']}"
        if r["status"] != "ok":
            rows.append([r["op"], r["pass"], r["dtype"], human_size(r["size"]), backend,
                         r["status"], "", "", "", ""])
            continue
        rows.append([r["op"], r["pass"], r["dtype"], human_size(r["size"]), backend,
                     human_time(r["median_s"]), _fmt(r["gbps"], ".1f"),
                     _fmt(r["pct_copy"], ".0f") + ("%" if r["pct_copy"] is not None else ""),
                     _fmt(r["speedup_vs_numpy"], ".2f") + (
                         "x" if r["speedup_vs_numpy"] is not None else ""),
                     human_time(r["first_call_s"])])
    return rows


def format_table(results, columns=TABLE_COLUMNS) -> str:
    rows = table_rows(results)
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    left = {0, 1, 2, 4}

    def line(cells):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    out = [line(columns), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    notes = [f"  {r['op']} {r['pass']} {r['target']}: {r['status']}: {r['note']}"
             for r in results if r["status"] != "ok" and r.get("note")]
    seen, uniq = set(), []
    for n in notes:
        if n not in seen:
            seen.add(n)
            uniq.append(n)
    if uniq:
        out.append("")
        out.append("Not measured:")
        out += uniq
    return "\n".join(out)


def format_summary(summary: dict) -> str:
    lines = []
    for device, s in summary.items():
        g, p = s["geomean_speedup_vs_numpy"], s["median_pct_copy"]
        text = (f"Summary ({s['target']}, {s['measurements']} measurements): geometric-mean "
                f"speedup over NumPy {_fmt(g, '.2f')}x, median {_fmt(p, '.0f')}% of copy "
                "bandwidth")
        peers = [f"{name} {_fmt(v['geomean_speedup'], '.2f')}x"
                 for name, v in s["vs_peers"].items() if v["measurements"]]
        if peers:
            text += "; over " + ", ".join(peers)
        lines.append(text)
    return "\n".join(lines) if lines else "Summary: nothing was measured"


def format_compare(rows, new: dict, old: dict, tolerance: float) -> str:
    out = [f"Compared with the earlier run of {old.get('created', '?')} "
           f"(ratio new/old; regression: % of copy bandwidth down by more than "
           f"{tolerance:.0%})"]
    for dev, b in new.get("bandwidth", {}).items():
        ob = old.get("bandwidth", {}).get(dev)
        if ob:
            out.append(f"  {dev} copy bandwidth {ob['copy_gbps']:.1f} -> {b['copy_gbps']:.1f} "
                       f"GB/s ({b['copy_gbps'] / ob['copy_gbps']:.2f}x)")
    if not rows:
        out.append("  no measurement in common with the earlier run")
        return "\n".join(out)
    cols = ("op", "pass", "dtype", "size", "backend", "old", "new", "time", "% copy", "")
    table = []
    for c in rows:
        table.append([c["op"], c["pass"], c["dtype"], human_size(c["size"]), c["target"],
                      human_time(c["old_median_s"]), human_time(c["new_median_s"]),
                      _fmt(c["time_ratio"], ".2f") + "x",
                      _fmt(c["pct_copy_ratio"], ".2f") + "x",
                      "REGRESSION" if c["regression"] else ""])
    widths = [max([len(h)] + [len(r[i]) for r in table]) for i, h in enumerate(cols)]

    def line(cells):
        return "  ".join(x.ljust(w) if i in (0, 1, 2, 4, 9) else x.rjust(w)
                         for i, (x, w) in enumerate(zip(cells, widths))).rstrip()
    out.append(line(cols))
    out += [line(r) for r in table]
    n = sum(c["regression"] for c in rows)
    out.append(f"{n} regression(s) in {len(rows)} compared measurements")
    return "\n".join(out)


def write_json(report: dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(report, f, indent=1, default=str)
        f.write("\n")


def read_json(path: str) -> dict:
    with open(path) as f:
        d = json.load(f)
    if not isinstance(d, dict) or "results" not in d:
        raise ValueError("not a fastact bench JSON report (no 'results')")
    return d


def write_csv(report: dict, path: str) -> None:
    info, v = report["machine"], report["machine"]["versions"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in report["results"]:
            row = dict(r)
            row["shape"] = "x".join(map(str, r.get("shape", [])))
            row["copy_gbps"] = report["bandwidth"].get(r["device"], {}).get("copy_gbps")
            row.update(cpu_model=info["cpu_model"], threads=info["threads"],
                       fastact=v.get("fastact"), numba=v.get("numba"), numpy=v.get("numpy"))
            w.writerow(row)


def plot(report: dict, path: str) -> None:
    """Per op (rows of panels): % of copy bandwidth and speedup over NumPy, bars per pass
    (and dtype/size when several), one colour per backend/peer."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in report["results"] if r["status"] == "ok"]
    ops = list(dict.fromkeys(r["op"] for r in ok))
    targets = list(dict.fromkeys(f"{r['target']}@{r['device']}" if r["device"] != "cpu"
                                 else r["target"] for r in ok))
    if not ops:
        raise ValueError("nothing was measured: no plot")
    multi = len({(r["dtype"], r["size"]) for r in ok}) > 1
    height = 2.6 * len(ops) + 0.8
    fig, axes = plt.subplots(len(ops), 2, figsize=(12, height), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, op in enumerate(ops):
        rows = [r for r in ok if r["op"] == op]
        groups = list(dict.fromkeys(
            (r["pass"], r["dtype"], r["size"], r["device"]) for r in rows))
        width = 0.8 / max(1, len(targets))
        for j, t in enumerate(targets):
            for k, (field, ax) in enumerate((("pct_copy", axes[i][0]),
                                             ("speedup_vs_numpy", axes[i][1]))):
                xs, ys = [], []
                for g_i, g in enumerate(groups):
                    r = next((r for r in rows if (r["pass"], r["dtype"], r["size"],
                                                  r["device"]) == g and
                              (r["target"] if r["device"] == "cpu" or r["target"] == "numpy"
                               else f"{r['target']}@{r['device']}") == t), None)
                    if r is not None and r.get(field) is not None:
                        xs.append(g_i + (j - (len(targets) - 1) / 2) * width)
                        ys.append(r[field])
                ax.bar(xs, ys, width, label=t if (i == 0 and k == 0) else None,
                       color=colours[j % len(colours)])
        for k, ax in enumerate(axes[i]):
            ax.set_xticks(range(len(groups)))
            ax.set_xticklabels([f"{g[0]}\n{g[1]} {human_size(g[2])}" if multi else g[0]
                                for g in groups], fontsize=7)
            ax.set_title(f"{op}: " + ("% of copy bandwidth" if k == 0
                                      else "speedup over NumPy (x)"), fontsize=9)
            ax.axhline(100.0 if k == 0 else 1.0, color="grey", lw=0.8, ls="--")
            ax.tick_params(axis="y", labelsize=7)
    fig.legend(loc="upper center", bbox_to_anchor=(0.5, 1 - 0.3 / height),
               ncol=max(1, len(targets)), fontsize=8, frameon=False)
    m = report["machine"]
    fig.suptitle(f"fastact bench — {m['cpu_model']}, {m['threads']} threads",
                 y=1 - 0.05 / height, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.7 / height))
    fig.savefig(path, dpi=110)
    plt.close(fig)
