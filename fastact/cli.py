"""The ``fastact`` command: ``fastact bench`` and ``fastact info``.

Errors a user can meet (unknown op, missing device or peer, unwritable file)
give one line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

EXIT_USAGE = 2

DESCRIPTION = """\
Time fastact's fused kernels on this machine: the machine first (CPU, SIMD,
threads, GPU; parallel copy and triad bandwidth measured now), then per op,
pass, dtype and size the median time of each backend and peer, its bandwidth
(every input read once + every output written once, per second), that
bandwidth as a % of the copy bandwidth, and the speedup over the NumPy
baseline. First calls (compilation) are timed apart and never enter the median."""

EPILOG = """\
examples:
  fastact bench                                   quick run (about a minute)
  fastact bench --ops gelu,silu --sizes 1e5,2^24 --dtype float32,float64
  fastact bench --full --peers numpy,torch,torch-compile,jax --json run.json --plot run.png
  fastact bench --compare run.json                ratios against an earlier run
  fastact bench --hardware                        only the machine and its bandwidth"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(EXIT_USAGE)


def _csv_list(text):
    return [t.strip() for t in text.split(",") if t.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fastact", description="fastact: fused activation and loss kernels.")
    sub = p.add_subparsers(dest="command", metavar="{bench,info}", parser_class=_Parser)
    sub.required = True

    b = sub.add_parser("bench", help="benchmark the kernels and the machine",
                       description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = b.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="quick", action="store_true", default=True,
                      help="a representative op set, one large size, float32 (default)")
    mode.add_argument("--full", dest="quick", action="store_false",
                      help="every op and pass, sizes 1e3,1e5,2^24, float32 and float64")
    b.add_argument("--ops", type=_csv_list, metavar="A,B",
                   help="ops to time (default: quick set, or all with --full)")
    b.add_argument("--passes", type=_csv_list, metavar="P,Q",
                   help="passes to time (forward, value_and_derivative, backward, "
                        "forward_backward, value_and_grad; default: the op's fused ones)")
    b.add_argument("--sizes", metavar="N,M",
                   help="elements of the main input, e.g. 1e3,1e5,2^24 (default 2^22)")
    b.add_argument("--dtype", metavar="T,U", help="float32 (default), float64, float16")
    b.add_argument("--device", choices=("cpu", "cuda", "all"), default="cpu",
                   help="where to run (default cpu); cuda needs a GPU and numba-cuda")
    b.add_argument("--peers", type=_csv_list, default=["numpy"], metavar="P,Q",
                   help="numpy (always), torch, torch-compile, jax (default numpy)")
    b.add_argument("--threads", type=int, metavar="N", help="Numba (and torch) threads")
    b.add_argument("--repeats", type=int, metavar="N",
                   help="timed samples per measurement (default 5 quick, 11 full)")
    b.add_argument("--bandwidth-mib", type=int, metavar="N",
                   help="MiB per bandwidth array (default: 2x the last-level cache, "
                        "64 to 256 MiB; 512 with --full)")
    b.add_argument("--no-out", dest="use_out", action="store_false",
                   help="let fastact allocate its outputs too (default: fastact writes "
                        "into preallocated out= buffers; the NumPy baseline always "
                        "allocates, as NumPy code does)")
    b.add_argument("--json", metavar="FILE", help="write machine, versions and every "
                                                   "measurement as JSON")
    b.add_argument("--csv", metavar="FILE", help="write every measurement as CSV")
    b.add_argument("--plot", metavar="FILE.png", help="per op: %% of bandwidth and speedup "
                                                      "(needs matplotlib)")
    b.add_argument("--compare", metavar="OLD.json", help="ratio of each figure to an earlier "
                                                         "--json run; regressions flagged")
    b.add_argument("--tolerance", type=float, default=0.10, metavar="F",
                   help="--compare: flag a regression beyond this fraction (default 0.10)")
    b.add_argument("--hardware", action="store_true",
                   help="print only the machine part and its bandwidth")
    b.add_argument("--list", action="store_true", help="list the ops, kinds, passes and peers")
    b.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (it is shown only when stderr is a terminal)")
    b.set_defaults(func=cmd_bench)

    i = sub.add_parser("info", help="versions, threads, backends and devices")
    i.add_argument("--json", action="store_true", help="print as JSON")
    i.set_defaults(func=cmd_info)
    return p


# ------------------------------------------------------------------ helpers

class Progress:
    """A one-line bar on stderr, redrawn in place; silent when stderr is no terminal."""

    def __init__(self, stream=None, enabled=None, width=24):
        self.stream = stream or sys.stderr
        self.enabled = (self.stream.isatty() if enabled is None else enabled)
        self.width = width
        self.t0 = time.perf_counter()
        self._last = 0

    def __call__(self, done, total, label):
        if not self.enabled:
            return
        filled = int(self.width * done / max(total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        text = (f"\r[{bar}] {done}/{total} {time.perf_counter() - self.t0:4.0f}s  "
                f"{label}")[:119]
        self.stream.write(text.ljust(self._last))
        self._last = len(text)
        self.stream.flush()

    def close(self):
        if self.enabled and self._last:
            self.stream.write("\r" + " " * self._last + "\r")
            self.stream.flush()


def _check_writable(path, option):
    from .bench import BenchError
    d = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise BenchError(f"{option} {path}: is a directory")
    if not os.path.isdir(d):
        raise BenchError(f"{option} {path}: directory {d} does not exist")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise BenchError(f"{option} {path}: file is not writable")
    if not os.path.exists(path) and not os.access(d, os.W_OK):
        raise BenchError(f"{option} {path}: directory {d} is not writable")


def _config_from_args(a):
    from .bench import BenchConfig
    from .bench.workloads import parse_dtype, parse_size
    return BenchConfig(
        ops=a.ops, passes=a.passes,
        sizes=[parse_size(s) for s in _csv_list(a.sizes)] if a.sizes else None,
        dtypes=[parse_dtype(t) for t in _csv_list(a.dtype)] if a.dtype else None,
        device=a.device, peers=a.peers, quick=a.quick, repeats=a.repeats,
        threads=a.threads, use_out=a.use_out,
        bandwidth_bytes=a.bandwidth_mib << 20 if a.bandwidth_mib else None)


def _list_ops(out):
    from . import REGISTRY
    from .bench.peers import peer_coverage
    cov = peer_coverage()
    w = max(len(n) for n in REGISTRY)
    out.write(f"{'op'.ljust(w)}  kind         peers       passes\n")
    for name, spec in REGISTRY.items():
        out.write(f"{name.ljust(w)}  {spec.kind:<11}  {','.join(cov[name]) or '-':<10}  "
                  f"{', '.join(spec.passes)}\n")
    return 0


# ------------------------------------------------------------------ commands

def cmd_bench(a) -> int:
    from .bench import BenchError, compare, run
    from .bench import report as rep
    out = sys.stdout
    if a.list:
        return _list_ops(out)
    if a.repeats is not None and a.repeats < 1:
        raise BenchError("--repeats must be at least 1")
    if a.bandwidth_mib is not None and a.bandwidth_mib < 1:
        raise BenchError("--bandwidth-mib must be at least 1")
    config = _config_from_args(a)
    for path, opt in ((a.json, "--json"), (a.csv, "--csv"), (a.plot, "--plot")):
        if path:
            _check_writable(path, opt)
    if a.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise BenchError("--plot needs matplotlib: pip install matplotlib "
                             "(or pip install 'fastact[plot]')") from None
    old = None
    if a.compare:
        try:
            old = rep.read_json(a.compare)
        except (OSError, ValueError) as e:
            raise BenchError(f"--compare {a.compare}: cannot read it "
                             f"({getattr(e, 'strerror', None) or e})") from None

    def on_machine(report):
        out.write(rep.format_machine(report["machine"], report["bandwidth"]) + "\n")
        for n in report["notes"]:
            out.write(f"  note: {n}\n")
        out.flush()

    progress = Progress(enabled=None if a.progress else False)
    try:
        report = run(config, progress=progress, machine_only=a.hardware,
                     on_machine=on_machine)
    finally:
        progress.close()
    report["command"] = ["fastact", *a.argv]
    if not a.hardware:
        out.write("\n" + rep.format_table(report["results"]) + "\n")
        extra = [n for n in report["notes"] if not n.startswith("--device")]
        for n in extra:
            out.write(f"note: {n}\n")
        out.write("\n" + rep.format_summary(report["summary"]) + "\n")
    if old is not None:
        rows = compare(report, old, a.tolerance)
        report["compare"] = {"against": a.compare, "tolerance": a.tolerance, "rows": rows}
        out.write("\n" + rep.format_compare(rows, report, old, a.tolerance) + "\n")
    try:
        if a.json:
            rep.write_json(report, a.json)
            out.write(f"wrote {a.json}\n")
        if a.csv:
            rep.write_csv(report, a.csv)
            out.write(f"wrote {a.csv}\n")
        if a.plot:
            if a.hardware:
                raise BenchError("--plot has nothing to draw with --hardware")
            rep.plot(report, a.plot)
            out.write(f"wrote {a.plot}\n")
    except OSError as e:
        raise BenchError(f"cannot write {e.filename}: {e.strerror}") from None
    return 0


def cmd_info(a) -> int:
    import fastact
    d = fastact.info()
    if a.json:
        print(json.dumps(d, indent=1, default=str))
        return 0
    w = max(len(k) for k in d)
    for k, v in d.items():
        if isinstance(v, (list, tuple)):
            v = ", ".join(map(str, v))
        print(f"{k.ljust(w)}  {v}")
    return 0


def main(argv=None) -> int:
    from .bench import BenchError
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:           # usage errors (one line, see _Parser) and --help
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except BenchError as e:
        sys.stderr.write(f"fastact {args.command}: error: {e}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("fastact: interrupted\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
