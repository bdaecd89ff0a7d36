"""The figures the acceptance criteria ask for, in one run, as Markdown tables.

    python bench/acceptance.py [--quick] [--only elementwise,rowwise,small,losses,startup]
                               [--ops gelu,silu]

Uses the method of ``fastact.bench`` (median of repeats after a separate first
call, rotating inputs, bytes = inputs read once + outputs written once).  The
copies each figure is compared with move the same number of bytes and are
timed in alternation with the kernel (kernel, memcpy, store-through copy,
kernel, ...), so that a change of the machine's memory bandwidth during the
run (other tenants of a shared machine) moves both sides of the ratio; the
ratio is median copy time over median kernel time.  fastact writes into
preallocated ``out=`` buffers (as a training loop does); the NumPy baseline
allocates its results, as NumPy code does.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
from numba import prange

import fastact as fa
from fastact.bench import machine
from fastact.bench.timing import Timing, call_bytes, measure, median
from fastact.cpu.jit import kernel_jit

RNG = np.random.default_rng(0)


@kernel_jit(parallel=True, cache=True)
def _store_through_copy(dst, src, s):
    # y = s * x with s = 1 at run time: a copy LLVM cannot turn into memcpy, so it
    # stores through the cache like every compute kernel (read-for-ownership)
    for i in prange(src.size):
        dst[i] = src[i] * s


class CopyPair:
    """Timings of the two parallel copies of nbytes (half read, half written)."""

    def __init__(self, nbytes):
        n = max(1, nbytes // 16)
        self.src, self.dst = np.ones(n), np.empty(n)
        machine._copy(self.dst, self.src)
        _store_through_copy(self.dst, self.src, 1.0)
        self.memcpy, self.through = [], []

    def run(self):
        import time
        t0 = time.perf_counter()
        machine._copy(self.dst, self.src)
        t1 = time.perf_counter()
        _store_through_copy(self.dst, self.src, 1.0)
        t2 = time.perf_counter()
        self.memcpy.append(t1 - t0)
        self.through.append(t2 - t1)


def store_through_bandwidth(nbytes=512 << 20, repeats=7):
    """GB/s of the store-through copy of nbytes (read + written), median of repeats."""
    copies = CopyPair(nbytes)
    for _ in range(repeats):
        copies.run()
    return nbytes / median(copies.through) / 1e9


def _time(fn, sets, repeats):
    timing, result = measure(lambda i: fn(*sets[i % len(sets)]), n_sets=len(sets),
                             repeats=repeats)
    return timing, result


def _time_paired(fn, sets, repeats, copies):
    """Like _time (first call apart, one warm-up, rotating sets; one call per
    sample: the calls here last milliseconds), with copies.run() before each
    timed call."""
    import time
    t0 = time.perf_counter()
    result = fn(*sets[0])
    first_s = time.perf_counter() - t0
    fn(*sets[1 % len(sets)])
    samples = []
    for r in range(repeats):
        copies.run()
        t0 = time.perf_counter()
        fn(*sets[r % len(sets)])
        samples.append(time.perf_counter() - t0)
    return Timing(first_call_s=first_s, median_s=median(samples), min_s=min(samples),
                  max_s=max(samples), repeats=repeats, number=1, samples=samples), result


def _outputs(result):
    return result if isinstance(result, tuple) else (result,)


def bench_pair(op_call, np_call, make_args, repeats, with_numpy=True, n_sets=2):
    """(fastact Timing, numpy Timing or None, bytes read + written, CopyPair timed
    in alternation with the fastact calls)."""
    sets = [make_args() for _ in range(n_sets)]
    outs = [None] * n_sets
    first = op_call(*sets[0])
    outs = [tuple(np.empty_like(o) for o in _outputs(first)) for _ in range(n_sets)]
    r, w = call_bytes(sets[0], {}, _outputs(first))
    copies = CopyPair(r + w)
    fast_sets = [(*s, o) for s, o in zip(sets, outs)]
    t_fast, _ = _time_paired(
        lambda *a: op_call(*a[:-1], out=a[-1] if len(a[-1]) > 1 else a[-1][0]),
        fast_sets, max(repeats, 9), copies)
    t_np = _time(np_call, sets, max(3, repeats // 2))[0] if with_numpy else None
    return t_fast, t_np, r + w, copies


def row(label, t_fast, t_np, nbytes, copies, loss_bytes=0):
    """A table row; loss_bytes: bytes of the result not counted (a scalar loss)."""
    t = t_fast.median_s
    gbs = (nbytes - loss_bytes) / t / 1e9
    speed = f"{t_np.median_s / t:.1f}x" if t_np else "-"
    memcpy, through = np.median(copies.memcpy), np.median(copies.through)
    return (f"| {label} | {t * 1e3:.2f} | {gbs:.1f} | {nbytes / through / 1e9:.1f} "
            f"| {100 * memcpy / t:.0f}% | {100 * through / t:.0f}% | {speed} |")


HEADER = ("| op / pass | median ms | GB/s | store-through copy GB/s | % of copy (memcpy) "
          "| % of store-through copy | vs NumPy |\n|---|---|---|---|---|---|---|")


OPS = None     # --ops: the elementwise ops to time (None: all)


def elementwise_variants():
    for spec in fa.REGISTRY.values():
        if spec.kind == "elementwise" and (OPS is None or spec.name in OPS):
            for choice in spec.scalars:
                yield spec, choice


def kwargs_of(spec, choice):
    kw = {"threshold": 0.0, "value": 0.0} if spec.name == "threshold" else {}
    if choice is not None:
        kw[spec.choice.name] = choice
    return kw


def elementwise(dtype, n, repeats, with_numpy):
    print(f"\n### Elementwise passes, {n} {np.dtype(dtype).name} elements\n\n{HEADER}")
    for spec, choice in elementwise_variants():
        op = getattr(fa, spec.name)
        kw = kwargs_of(spec, choice)
        label = spec.name + (f"[{choice}]" if choice else "")
        for pass_name in ("value_and_derivative", "backward", "forward_backward"):
            nargs = 1 if pass_name == "value_and_derivative" else 2
            method = getattr(op, pass_name)

            def make():
                x = RNG.standard_normal(n).astype(dtype)
                return (x, RNG.uniform(-1, 1, n).astype(dtype))[:nargs] if nargs == 2 else (x,)
            t_fast, t_np, nbytes, copies = bench_pair(
                lambda *a, out=None: method(*a, out=out, **kw),
                lambda *a: method(*a, backend="numpy", **kw), make, repeats, with_numpy)
            print(row(f"{label} {pass_name}", t_fast, t_np, nbytes, copies), flush=True)


def small(repeats):
    n = 1000
    print("\n### 1e3 float32 elements: fastact vs NumPy (no out=, as called in a loop; "
          "the NumPy baseline through the same wrapper, backend='numpy')\n")
    print("| op / pass | fastact µs | NumPy µs | vs NumPy |\n|---|---|---|---|")
    slower = []
    for spec, choice in elementwise_variants():
        op = getattr(fa, spec.name)
        kw = kwargs_of(spec, choice)
        x = RNG.standard_normal(n).astype(np.float32)
        dy = RNG.uniform(-1, 1, n).astype(np.float32)
        for pass_name, args in (("value_and_derivative", (x,)), ("backward", (x, dy)),
                                ("forward_backward", (x, dy))):
            method = getattr(op, pass_name)
            tf = measure(lambda i: method(*args, **kw), repeats=repeats)[0]
            tn = measure(lambda i: method(*args, backend="numpy", **kw), repeats=repeats)[0]
            ratio = tn.median_s / tf.median_s
            if ratio < 1:
                slower.append(f"{spec.name} {pass_name}")
            label = spec.name + (f"[{choice}]" if choice else "")
            print(f"| {label} {pass_name} | {tf.median_s * 1e6:.1f} | {tn.median_s * 1e6:.1f} "
                  f"| {ratio:.1f}x |", flush=True)
    # the other activations: row-wise, gated, prelu, maxout, argmax (their fused
    # passes); the losses' value_and_grad
    for spec in fa.REGISTRY.values():
        if spec.kind == "elementwise":
            continue
        op = getattr(fa, spec.name)
        for pass_name in [p for p in ("backward", "forward_backward", "value_and_grad")
                          if p in spec.passes] or ["forward"]:
            args, kw = spec.example_call(pass_name, n, np.float32, RNG)
            method = op if pass_name == "forward" else getattr(op, pass_name)
            tf = measure(lambda i: method(*args, **kw), repeats=repeats)[0]
            tn = measure(lambda i: method(*args, backend="numpy", **kw), repeats=repeats)[0]
            ratio = tn.median_s / tf.median_s
            if ratio < 1:
                slower.append(f"{spec.name} {pass_name}")
            shape = "x".join(str(v) for v in np.shape(args[0]))
            print(f"| {spec.name} {pass_name} ({shape}) | {tf.median_s * 1e6:.1f} "
                  f"| {tn.median_s * 1e6:.1f} | {ratio:.1f}x |", flush=True)
    print(f"\nslower than NumPy at 1e3: {slower or 'none'}")


def rowwise(repeats):
    print(f"\n### Row-wise forward_backward, 4096 x 4096 float32\n\n{HEADER}")
    for name in ("softmax", "log_softmax", "softmin"):
        op = getattr(fa, name)

        def make():
            return ((RNG.standard_normal((4096, 4096)) * 3).astype(np.float32),
                    RNG.uniform(-1, 1, (4096, 4096)).astype(np.float32))
        t_fast, t_np, nbytes, copies = bench_pair(
            lambda *a, out=None: op.forward_backward(*a, out=out),
            lambda *a: op.forward_backward(*a, backend="numpy"), make, repeats)
        print(row(f"{name} forward_backward", t_fast, t_np, nbytes, copies), flush=True)


REGRESSION = ["mse", "rmse", "mae", "l1", "l2", "huber", "smooth_l1", "pseudo_huber",
              "log_cosh"]


def losses(repeats):
    n = 1 << 24
    print("\n### Loss value_and_grad (bytes: inputs read once, gradient written once)\n")
    print(HEADER)
    for name in REGRESSION + ["binary_cross_entropy", "sigmoid_binary_cross_entropy", "hinge",
                              "squared_hinge", "kl_divergence", "sigmoid_focal_loss"]:
        op = getattr(fa, name)

        def make(name=name):
            p = RNG.standard_normal(n).astype(np.float32)
            t = RNG.standard_normal(n).astype(np.float32)
            if name == "binary_cross_entropy":
                p = RNG.uniform(0.01, 0.99, n).astype(np.float32)
                t = RNG.uniform(0, 1, n).astype(np.float32)
            elif name in ("sigmoid_binary_cross_entropy", "sigmoid_focal_loss"):
                t = (RNG.uniform(0, 1, n) > 0.5).astype(np.float32)
            elif name in ("hinge", "squared_hinge"):
                t = np.sign(t) + (t == 0)
            elif name == "kl_divergence":
                t = RNG.uniform(0, 1, n).astype(np.float32)
            return p, t
        t_fast, t_np, nbytes, copies = bench_pair(
            lambda *a, out=None: op.value_and_grad(*a, out=out[1] if isinstance(out, tuple)
                                                  else out),
            lambda *a: op.value_and_grad(*a, backend="numpy"), make, repeats)
        # the loss value is a scalar: count only the gradient as written
        print(row(f"{name} 2^24", t_fast, t_np, nbytes, copies, loss_bytes=4), flush=True)
    for rows, cols in ((4096, 4096), (512, 65536)):
        for name in ("sparse_softmax_cross_entropy", "softmax_cross_entropy"):
            op = getattr(fa, name)

            def make(name=name, rows=rows, cols=cols):
                x = (RNG.standard_normal((rows, cols)) * 3).astype(np.float32)
                if name == "sparse_softmax_cross_entropy":
                    return x, RNG.integers(0, cols, rows)
                t = RNG.uniform(0, 1, (rows, cols)).astype(np.float32)
                return x, t / t.sum(axis=1, keepdims=True)
            t_fast, t_np, nbytes, copies = bench_pair(
                lambda *a, out=None: op.value_and_grad(*a, out=out[1] if isinstance(out, tuple)
                                                      else out),
                lambda *a: op.value_and_grad(*a, backend="numpy"), make, repeats)
            print(row(f"{name} {rows}x{cols}", t_fast, t_np, nbytes, copies), flush=True)


STARTUP = r"""
import time, sys
t0 = time.perf_counter()
import numpy as np
import fastact as fa
t1 = time.perf_counter()
x = np.random.default_rng(0).standard_normal(1 << 16).astype(np.float32)
t2 = time.perf_counter()
fa.gelu.value_and_derivative(x, approximate="tanh")
t3 = time.perf_counter()
fa.gelu.value_and_derivative(x, approximate="tanh")
t4 = time.perf_counter()
print(f"{t1 - t0:.3f} {t3 - t2:.3f} {(t4 - t3) * 1e3:.3f}")
"""


def startup():
    print("\n### Import time and first-call latency (gelu[tanh].value_and_derivative, "
          "2^16 float32, parallel kernel)\n")
    print("| run | import s | first call s | second call ms |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("cold (empty Numba cache)", "new process, from Numba's cache"):
            out = subprocess.run([sys.executable, "-c", STARTUP], env=env, check=True,
                                 capture_output=True, text=True).stdout.split()
            print(f"| {label} | {out[0]} | {out[1]} | {out[2]} |", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--only", default="elementwise,elementwise64,rowwise,small,losses,startup")
    ap.add_argument("--ops", default=None, help="comma-separated elementwise ops (default: all)")
    a = ap.parse_args()
    global OPS
    if a.ops:
        OPS = set(a.ops.split(","))
        unknown = OPS - {s.name for s in fa.REGISTRY.values() if s.kind == "elementwise"}
        if unknown:
            ap.error(f"not elementwise ops: {', '.join(sorted(unknown))}")
    parts = set(a.only.split(","))
    repeats = 3 if a.quick else 7
    bw = machine.measure_cpu_bandwidth(256 << 20)
    through = store_through_bandwidth()
    print(f"machine: {machine.cpu_model()}, {fa.info()['threads']} threads "
          f"({fa.info()['threading_layer']}); parallel copy {bw['copy_gbps']:.1f} GB/s "
          f"(LLVM makes it a memcpy: non-temporal stores), store-through copy "
          f"{through:.1f} GB/s, triad {bw['triad_gbps']:.1f} GB/s (same run)")
    if "startup" in parts:
        startup()
    if "elementwise" in parts:
        elementwise(np.float32, 1 << 24, repeats, True)
    if "rowwise" in parts:
        rowwise(repeats)
    if "losses" in parts:
        losses(repeats)
    if "small" in parts:
        small(repeats)
    if "elementwise64" in parts:
        elementwise(np.float64, 1 << 24, repeats, False)
    bw2 = machine.measure_cpu_bandwidth(256 << 20)
    print(f"\nat the end of the run: parallel copy {bw2['copy_gbps']:.1f} GB/s, "
          f"store-through copy {store_through_bandwidth():.1f} GB/s")


if __name__ == "__main__":
    main()
