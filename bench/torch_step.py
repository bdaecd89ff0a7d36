"""fastact.torch against PyTorch on the CPU, in one process, alternating:

* forward + backward of gelu (tanh), silu, sigmoid at 2^22 float32 and of
  cross-entropy (label smoothing 0.1) at 2048 x 2048, torch eager vs
  fastact.torch;
* a training step of a small MLP (Linear - GELU - Linear - SiLU - Linear,
  cross-entropy), torch eager, torch.compile and fastact.torch (its
  activation modules swapped, fastact's cross-entropy): step time, and the
  time of the same activation and loss work alone.

Medians of --repeats rounds, each round timing every variant once in turn.
Run: python bench/torch_step.py [--repeats 15]
"""
import argparse
import platform
import statistics
import time

import torch

import fastact.torch as ft


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def alternate(variants, repeats):
    """{name: median seconds}, the variants timed in turn in each round (after
    one warm-up call each)."""
    for f in variants.values():
        f()
    times = {k: [] for k in variants}
    for _ in range(repeats):
        for k, f in variants.items():
            times[k].append(timed(f))
    return {k: statistics.median(v) for k, v in times.items()}


def fb(fn, x, upstream=None):
    """One forward and backward of fn at x, with a contiguous upstream gradient
    (as a layer above gives; ``.sum().backward()`` would pass a stride-0 one)."""
    def run():
        x.grad = None
        y = fn(x)
        y.backward(torch.ones_like(y) if upstream is None else upstream)
    return run


def ops_table(repeats):
    torch.manual_seed(0)
    x = torch.randn(1 << 22, requires_grad=True)
    rows = []
    for name, theirs, ours in (
            ("gelu (tanh)", lambda a: torch.nn.functional.gelu(a, approximate="tanh"),
             lambda a: ft.gelu(a, approximate="tanh")),
            ("silu", torch.nn.functional.silu, ft.silu),
            ("sigmoid", torch.sigmoid, ft.sigmoid)):
        m = alternate({"torch": fb(theirs, x), "fastact": fb(ours, x)}, repeats)
        rows.append((f"{name} 2^22", m["torch"], m["fastact"]))
    logits = torch.randn(2048, 2048, requires_grad=True)
    labels = torch.randint(0, 2048, (2048,))
    m = alternate({
        "torch": fb(lambda a: torch.nn.functional.cross_entropy(a, labels, label_smoothing=0.1),
                    logits),
        "fastact": fb(lambda a: ft.sparse_softmax_cross_entropy(a, labels, label_smoothing=0.1),
                      logits)}, repeats)
    rows.append(("cross-entropy 2048x2048", m["torch"], m["fastact"]))
    return rows


def mlp(d, h, classes):
    return torch.nn.Sequential(torch.nn.Linear(d, h), torch.nn.GELU(approximate="tanh"),
                               torch.nn.Linear(h, h), torch.nn.SiLU(),
                               torch.nn.Linear(h, classes))


def step_table(repeats, batch=4096, d=64, h=1024, classes=1000):
    torch.manual_seed(0)
    x = torch.randn(batch, d)
    labels = torch.randint(0, classes, (batch,))
    models = {}
    for kind in ("torch eager", "torch.compile", "fastact.torch"):
        torch.manual_seed(1)
        model = mlp(d, h, classes)
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
        if kind == "fastact.torch":
            ft.swap_modules(model)
            loss_fn = ft.nn.CrossEntropyLoss(label_smoothing=0.1)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)

        def forward(model=model, loss_fn=loss_fn):
            return loss_fn(model(x), labels)
        if kind == "torch.compile":
            forward = torch.compile(forward)

        def step(forward=forward, opt=opt):
            opt.zero_grad()
            forward().backward()
            opt.step()
        models[kind] = step
    steps = alternate(models, repeats)
    # the activation and loss work alone: the same shapes, forward and backward
    a1 = torch.randn(batch, h, requires_grad=True)
    z = torch.randn(batch, classes, requires_grad=True)

    def parts(gelu, silu, ce):
        def run():
            a1.grad = z.grad = None
            (gelu(a1).sum() + silu(a1).sum() + ce(z, labels)).backward()
        return run
    tgelu = lambda a: torch.nn.functional.gelu(a, approximate="tanh")  # noqa: E731
    tce = lambda a, y: torch.nn.functional.cross_entropy(a, y, label_smoothing=0.1)  # noqa: E731
    fgelu = lambda a: ft.gelu(a, approximate="tanh")  # noqa: E731
    fce = lambda a, y: ft.sparse_softmax_cross_entropy(a, y, label_smoothing=0.1)  # noqa: E731
    part_fns = {"torch eager": parts(tgelu, torch.nn.functional.silu, tce),
                "torch.compile": torch.compile(parts(tgelu, torch.nn.functional.silu, tce)),
                "fastact.torch": parts(fgelu, ft.silu, fce)}
    part = alternate(part_fns, repeats)
    return [(k, steps[k], part[k]) for k in models], (batch, d, h, classes)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, float32, medians of {args.repeats}\n")
    print("| forward + backward | torch eager ms | fastact.torch ms | speedup |")
    print("|---|---|---|---|")
    for name, t, f in ops_table(args.repeats):
        print(f"| {name} | {t * 1e3:.2f} | {f * 1e3:.2f} | {t / f:.2f}x |")
    rows, (b, d, h, c) = step_table(args.repeats)
    print(f"\nMLP {d}-{h}-{h}-{c}, batch {b}, SGD:\n")
    print("| | step ms | activations + loss alone ms |")
    print("|---|---|---|")
    for k, s, p in rows:
        print(f"| {k} | {s * 1e3:.1f} | {p * 1e3:.2f} |")


if __name__ == "__main__":
    main()
