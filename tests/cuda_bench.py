"""GPU benchmark of the cuda backend (real GPU only; run by ci/gpu_check.sh).

Fused elementwise passes at 2**26 float32 elements: bandwidth (minimal bytes:
every input read once, every output written once) and its ratio to a
device-to-device copy measured in the same run.  CUDA events around batches
of 10 back-to-back calls, median of ``--reps`` batches after a warm-up
(compilation) call.  Then
sparse_softmax_cross_entropy.value_and_grad (reduction "mean", gradient into a
preallocated ``out=``) on 16384 x 32768 float32 logits: bandwidth over the
minimal bytes (logits read once, gradient written once, labels read once) as
% of a device-to-device copy of the logits in the same run (target >= 70%),
and against torch.cuda ``F.cross_entropy`` forward + backward when torch with
CUDA is present (``--ce-rows/--ce-cols`` change the shape).  Prints a table.
"""
import argparse
import statistics
import sys

import numpy as np


def timed(fn, reps, batch=10):
    """Median seconds per call: ``reps`` samples, each ``batch`` back-to-back calls
    between two CUDA events (so the host's launch overhead overlaps the
    previous call's GPU work instead of adding idle gaps to the sample)."""
    from numba import cuda
    fn()
    cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = cuda.event(), cuda.event()
        a.record()
        for _ in range(batch):
            fn()
        b.record()
        b.synchronize()
        times.append(cuda.event_elapsed_time(a, b) / 1e3 / batch)
    return statistics.median(times)


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--log2n", type=int, default=26)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--ops", default="relu,sigmoid,tanh,silu,gelu,elu,softplus,mish")
    ap.add_argument("--ce-rows", type=int, default=16384)
    ap.add_argument("--ce-cols", type=int, default=32768)
    args = ap.parse_args(argv)
    from numba import cuda

    import fastact as fa
    from fastact import cuda as fcuda
    info = fcuda.device_info()
    if info.get("simulator") or not info.get("available"):
        print("cuda_bench: needs a real GPU (simulator off)", info)
        return 1
    print(f"device: {info['name']}  cc {info['compute_capability']}  "
          f"SMs {info['multiprocessors']}  memory {info['memory_total'] / 2**30:.1f} GiB")
    n = 2 ** args.log2n
    rng = np.random.default_rng(0)
    x = cuda.to_device(rng.standard_normal(n).astype(np.float32))
    dy = cuda.to_device(rng.uniform(-1, 1, n).astype(np.float32))
    o1, o2 = cuda.device_array(n, np.float32), cuda.device_array(n, np.float32)
    t_copy = timed(lambda: o1.copy_to_device(x), args.reps)
    copy_bw = 2 * 4 * n / t_copy
    print(f"device-to-device copy: {copy_bw / 1e9:8.1f} GB/s  ({t_copy * 1e3:.3f} ms)")
    print()
    print(f"{'op.pass (2^%d float32)' % args.log2n:36s} {'ms':>8s} {'GB/s':>8s} {'% copy':>7s}")
    calls = {
        "forward": (1, 1, lambda op: op(x, out=o1)),
        "value_and_derivative": (1, 2, lambda op: op.value_and_derivative(x, out=(o1, o2))),
        "backward": (2, 1, lambda op: op.backward(x, dy, out=o1)),
        "forward_backward": (2, 2, lambda op: op.forward_backward(x, dy, out=(o1, o2))),
    }
    worst = 1e9
    for name in args.ops.split(","):
        op = getattr(fa, name)
        for pass_name, (ni, no, call) in calls.items():
            t = timed(lambda: call(op), args.reps)
            bw = (ni + no) * 4 * n / t
            worst = min(worst, bw / copy_bw)
            print(f"{name + '.' + pass_name:36s} {t * 1e3:8.3f} {bw / 1e9:8.1f} "
                  f"{100 * bw / copy_bw:6.1f}%")
    print(f"worst elementwise pass: {100 * worst:.1f}% of copy bandwidth (target >= 75%)")
    print()
    del x, dy, o1, o2
    if "sparse_softmax_cross_entropy" not in fa.REGISTRY or not fcuda.supports("loss"):
        print("sparse_softmax_cross_entropy: not benchmarked (the cuda backend has no "
              "loss lowering in this version)")
        return 0
    rows, cols = args.ce_rows, args.ce_cols
    logits = cuda.to_device(rng.standard_normal((rows, cols)).astype(np.float32))
    labels = cuda.to_device(rng.integers(0, cols, rows).astype(np.int64))
    grad = cuda.device_array((rows, cols), np.float32)
    ce = fa.sparse_softmax_cross_entropy
    # copy bandwidth at this size too (the figure the target refers to)
    big = cuda.device_array((rows, cols), np.float32)
    t_copy2 = timed(lambda: big.copy_to_device(logits), args.reps)
    copy_bw2 = 2 * 4 * rows * cols / t_copy2
    t = timed(lambda: ce.value_and_grad(logits, labels, out=grad), args.reps)
    # minimal bytes: logits read once, gradient written once, labels read once
    nbytes = 2 * 4 * rows * cols + 8 * rows
    bw = nbytes / t
    print(f"device-to-device copy {rows}x{cols} float32: {copy_bw2 / 1e9:8.1f} GB/s")
    print(f"sparse_softmax_cross_entropy.value_and_grad {rows}x{cols} float32: "
          f"{t * 1e3:.3f} ms, {bw / 1e9:.1f} GB/s, {100 * bw / copy_bw2:.1f}% of copy "
          f"(target >= 70%)")
    loss = float(ce(logits, labels).copy_to_host())
    try:
        import torch
        if torch.cuda.is_available():
            tl = torch.as_tensor(logits, device="cuda").clone().requires_grad_(True)
            tt = torch.as_tensor(labels, device="cuda").clone()

            def torch_step():
                tl.grad = None
                torch.nn.functional.cross_entropy(tl, tt).backward()
            tt_s = timed(torch_step, args.reps)
            tloss = float(torch.nn.functional.cross_entropy(tl, tt))
            print(f"torch.cuda cross_entropy forward+backward: {tt_s * 1e3:.3f} ms, "
                  f"{100 * nbytes / tt_s / copy_bw2:.1f}% of copy "
                  f"(fastact {tt_s / t:.2f}x faster); loss fastact {loss:.6f} torch {tloss:.6f}")
        else:
            print("torch without CUDA: no torch comparison")
    except ImportError:
        print("torch not installed: no torch comparison")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
