"""Memory-bound kernels with plain stores against non-temporal (streamed) ones.

    python bench/streaming_ab.py [--n 2^24] [--rounds 3] [--repeats 5]

Every pass of the activations and losses that stream their large outputs
(``fastact.cpu.streaming``) runs with streaming disabled and enabled, and the
parallel copy (a memcpy) runs on the same arrays, all interleaved round by
round, so that drifts of the machine's bandwidth hit the three alike.  Each
figure is the median over rounds x repeats; "% copy" is the pass's bytes
(inputs read once, outputs written once) per second over the copy's.
"""
import argparse
import time

import numpy as np

import fastact as fa
from fastact.bench.machine import _copy
from fastact.cpu import streaming

OPS = [n for n, s in fa.REGISTRY.items()
       if s.kind == "elementwise" and not s.transcendental]
LOSSES = [n for n, s in fa.REGISTRY.items()
          if s.kind == "loss" and s.extra["family"] == "elementwise" and not s.transcendental]


def _size(text):
    base, _, exp = text.partition("^")
    return int(base) ** int(exp) if exp else int(float(text))


def _times(fn, repeats):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return ts


def compare(run, copy, units, rounds, repeats):
    """Medians (ms) of copy, plain and streamed, and their % of the copy."""
    times = {"copy": [], "plain": [], "streamed": []}
    for mode in ("plain", "streamed"):          # compile both flavours, touch pages
        streaming.STREAM_MIN = 0 if mode == "streamed" else 1 << 62
        run()
    copy()
    for _ in range(rounds):
        for mode in ("plain", "streamed"):
            streaming.STREAM_MIN = 0 if mode == "streamed" else 1 << 62
            times[mode] += _times(run, repeats)
        times["copy"] += _times(copy, repeats)
    med = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
    pct = {k: 100 * med["copy"] * units / 2 / med[k] for k in ("plain", "streamed")}
    return med, pct


def passes(x, dy, y, d):
    """(label, call, arrays moved in units of one array) of every streamed pass."""
    rows = []
    for name in OPS:
        op = getattr(fa, name)
        rows += [(f"{name} value_and_derivative",
                  lambda op=op: op.value_and_derivative(x, out=(y, d)), 3),
                 (f"{name} backward", lambda op=op: op.backward(x, dy, out=d), 3),
                 (f"{name} forward_backward",
                  lambda op=op: op.forward_backward(x, dy, out=(y, d)), 4)]
    for name in LOSSES:
        loss = getattr(fa, name)
        target = np.sign(dy) if name in ("hinge", "squared_hinge") else dy
        rows.append((f"{name} value_and_grad",
                     lambda loss=loss, t=target: loss.value_and_grad(x, t, out=d), 3))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", default="2^24")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtype", default="float32,float64")
    args = ap.parse_args()
    n = _size(args.n)
    saved = streaming.STREAM_MIN
    rng = np.random.default_rng(0)
    print(f"{n} elements; copy = parallel copy (memcpy) on the same arrays, interleaved\n")
    print("| op / pass | dtype | copy ms | plain ms | plain % copy | streamed ms "
          "| streamed % copy | plain / streamed |")
    print("|---|---|---|---|---|---|---|---|")
    try:
        for dtype in args.dtype.split(","):
            dt = np.dtype(dtype)
            x = rng.standard_normal(n).astype(dt)
            dy = rng.standard_normal(n).astype(dt)
            y, d = np.empty_like(x), np.empty_like(x)
            for label, run, units in passes(x, dy, y, d):
                med, pct = compare(run, lambda y=y, x=x: _copy(y, x), units, args.rounds,
                                   args.repeats)
                print(f"| {label} | {dt.name} | {med['copy']:.2f} | {med['plain']:.2f} "
                      f"| {pct['plain']:.0f}% | {med['streamed']:.2f} | {pct['streamed']:.0f}% "
                      f"| {med['plain'] / med['streamed']:.2f} |", flush=True)
    finally:
        streaming.STREAM_MIN = saved


if __name__ == "__main__":
    main()
