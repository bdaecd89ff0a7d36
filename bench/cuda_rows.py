"""GPU timing of the row kernels, row losses, argmax and mse against PyTorch.

    python bench/cuda_rows.py            # on a machine with an NVIDIA GPU
    SMALL=1 NUMBA_ENABLE_CUDASIM=1 python bench/cuda_rows.py   # smoke run

CUDA events around each call on the default stream, medians of REPS after a
warm-up; inputs random normal, outputs preallocated (out=); float32 rows of
32768 x 1024 and 4096 x 32768.  Each row op is timed with 256 and with 1024
threads per block (``core.WIDE_ROW`` forced), PyTorch's counterparts in the same
run; then mse.value_and_grad as a whole call, its kernel alone and a cProfile
of the call (where the host time goes).  The "%" column is against a
device-to-device copy of one R x C array in the same run.
"""
import os
import sys
import time

import numpy as np
from numba import cuda

import fastact as fa
from fastact.bench.timing import CudaEventTimer
from fastact.cuda import core, loss, rowwise

SMALL = os.environ.get("SMALL") == "1"
WIDE_ROW = core.WIDE_ROW
REPS = 3 if SMALL else 30
SHAPES = [(64, 40), (8, 300)] if SMALL else [(32768, 1024), (4096, 32768)]
rng = np.random.default_rng(0)
try:
    import torch
    HAVE_TORCH = torch.cuda.is_available()
except Exception:
    HAVE_TORCH = False


def timed(f):
    """Median microseconds of f() between CUDA events on the default stream (PyTorch's
    default stream is the same legacy stream, so this times its calls too)."""
    f()
    cuda.synchronize()
    timer = CudaEventTimer()
    ts = []
    for _ in range(REPS):
        timer.start()
        f()
        ts.append(timer.stop() * 1e6)
    return float(np.median(ts))


def copy_us(nbytes):
    src = cuda.device_array(nbytes // 4, np.float32)
    dst = cuda.device_array(nbytes // 4, np.float32)
    return timed(lambda: dst.copy_to_device(src))


def reset():
    rowwise._KERNELS.clear()
    loss._KERNELS.clear()


rows_out = []


def row(name, shape, us, nbytes, cp, note=""):
    gbs = nbytes / us / 1e3
    cgbs = 2 * nbytes_copy / cp / 1e3
    rows_out.append(f"{name:38s} {shape[0]:>6d}x{shape[1]:<6d} {us:9.1f} us {gbs:8.0f} GB/s "
                    f"{100 * gbs / cgbs:5.0f}% {note}")
    print(rows_out[-1], flush=True)


for R, C in SHAPES:
    n = R * C
    x = cuda.to_device(rng.standard_normal((R, C)).astype(np.float32))
    dy = cuda.to_device(rng.standard_normal((R, C)).astype(np.float32))
    y = cuda.to_device(rng.integers(0, C, R))
    tg = cuda.to_device(rng.dirichlet(np.ones(C), R).astype(np.float32) if C <= 1024 else
                        np.full((R, C), 1.0 / C, np.float32))
    o1 = cuda.device_array((R, C), np.float32)
    o2 = cuda.device_array((R, C), np.float32)
    am = cuda.device_array(R, np.int64)
    nbytes_copy = n * 4
    cp = copy_us(n * 4)
    print(f"copy {R}x{C} float32: {cp:.1f} us, {2 * n * 4 / cp / 1e3:.0f} GB/s", flush=True)
    cases = {
        "softmax.forward": (lambda: fa.softmax(x, out=o1), 2 * n * 4),
        "softmax.forward_backward": (lambda: fa.softmax.forward_backward(x, dy, out=(o1, o2)),
                                     4 * n * 4),
        "log_softmax.forward_backward": (
            lambda: fa.log_softmax.forward_backward(x, dy, out=(o1, o2)), 4 * n * 4),
        "sparse_ce.value_and_grad": (
            lambda: fa.sparse_softmax_cross_entropy.value_and_grad(x, y, out=o1), 2 * n * 4),
        "softmax_ce.value_and_grad": (
            lambda: fa.softmax_cross_entropy.value_and_grad(x, tg, out=o1), 3 * n * 4),
        "argmax": (lambda: fa.argmax(x, out=am), n * 4),
    }
    for variant in ("256", "1024"):
        core.WIDE_ROW = 0 if variant == "1024" else 1 << 40
        reset()
        for name, (f, nb) in cases.items():
            if name == "argmax" and variant == "1024":
                continue
            try:
                row(name, (R, C), timed(f), nb, cp, f"threads {variant}"
                    if name != "argmax" else "")
            except Exception as e:
                print(f"{name} {variant}: FAILED {type(e).__name__}: {e}", flush=True)
    core.WIDE_ROW = WIDE_ROW
    reset()
    if HAVE_TORCH:
        tx = torch.as_tensor(x, device="cuda")
        tdy = torch.as_tensor(dy, device="cuda")
        ty = torch.as_tensor(y, device="cuda")
        ttg = torch.as_tensor(tg, device="cuda")

        def t_softmax_fb():
            p = torch.softmax(tx, -1)
            return p, torch._softmax_backward_data(tdy, p, -1, torch.float32)

        def t_logsoftmax_fb():
            p = torch.log_softmax(tx, -1)
            return p, torch._log_softmax_backward_data(tdy, p, -1, torch.float32)

        xl = tx.clone().requires_grad_(True)

        def t_ce():
            xl.grad = None
            lv = torch.nn.functional.cross_entropy(xl, ty)
            lv.backward()
            return lv

        def t_dce():
            xl.grad = None
            lv = torch.nn.functional.cross_entropy(xl, ttg)
            lv.backward()
            return lv

        for name, f, nb in (("torch softmax.forward", lambda: torch.softmax(tx, -1), 2 * n * 4),
                            ("torch softmax fwd+bwd", t_softmax_fb, 4 * n * 4),
                            ("torch log_softmax fwd+bwd", t_logsoftmax_fb, 4 * n * 4),
                            ("torch cross_entropy fwd+bwd", t_ce, 2 * n * 4),
                            ("torch cross_entropy(probs) fwd+bwd", t_dce, 3 * n * 4),
                            ("torch argmax", lambda: torch.argmax(tx, -1), n * 4)):
            row(name, (R, C), timed(f), nb, cp)
        # same answers
        lf = fa.sparse_softmax_cross_entropy.value_and_grad(x, y, out=o1)[0]
        print("loss fastact", float(lf.copy_to_host()), "torch", float(t_ce().detach()),
              "argmax equal", bool(np.array_equal(fa.argmax(x).copy_to_host(),
                                                  torch.argmax(tx, -1).cpu().numpy())),
              flush=True)
    del x, dy, tg, o1, o2

# elementwise loss: where the time goes
n = 1 << (12 if SMALL else 25)
p = cuda.to_device(rng.standard_normal(n).astype(np.float32))
t = cuda.to_device(rng.standard_normal(n).astype(np.float32))
g = cuda.device_array(n, np.float32)
nbytes_copy = n * 4
cp = copy_us(n * 4)
row("mse.value_and_grad", (n, 1), timed(lambda: fa.mse.value_and_grad(p, t, out=g)), 3 * n * 4,
    cp)
row("mse (loss only)", (n, 1), timed(lambda: fa.mse(p, t)), 2 * n * 4, cp)
fd, prm = loss.S.mse_lg, ()
blocks, threads = core.grid(n)
partial = cuda.device_array(blocks, np.float32)
k = loss.elementwise_kernel(fd, 0, False, True, "reduce", np.float32)
e = cuda.device_array(0, np.float32)
row("mse kernel alone", (n, 1), timed(lambda: k[blocks, threads](p, t, e, e, g, e, partial,
                                                                  np.float32(1.0 / n), ())),
    3 * n * 4, cp)
t0 = time.perf_counter()
for _ in range(200):
    fa.mse.value_and_grad(p, t, out=g)
cuda.synchronize()
print(f"mse.value_and_grad host loop: {(time.perf_counter() - t0) / 200 * 1e6:.1f} us per call",
      flush=True)
if HAVE_TORCH:
    tp = torch.as_tensor(p, device="cuda").requires_grad_(True)
    tt = torch.as_tensor(t, device="cuda")

    def t_mse():
        tp.grad = None
        lv = torch.nn.functional.mse_loss(tp, tt)
        lv.backward()
        return lv
    row("torch mse fwd+bwd", (n, 1), timed(t_mse), 3 * n * 4, cp)
import cProfile
import pstats
pr = cProfile.Profile()
pr.enable()
for _ in range(50):
    fa.mse.value_and_grad(p, t, out=g)
cuda.synchronize()
pr.disable()
st = pstats.Stats(pr, stream=sys.stdout)
st.sort_stats("cumtime").print_stats(25)
print("\n".join(rows_out))
