"""Compile every CUDA kernel of fastact for the real CUDA target, without a GPU.

Run as a script with the simulator OFF (``tests/test_cuda.py`` does so in a
subprocess).  numba-cuda's front end (typing and lowering to NVVM IR) needs
no driver when the compute capability is given, so this checks that every
kernel the simulator runs in Python also types and lowers for the GPU: the
``mathlib`` overloads resolve to libdevice, ``lit`` works on the CUDA target,
and float32 kernels hold no float64 arithmetic (no ``fpext`` and no ``double``
operations in their LLVM IR).  It does not run NVVM (PTX generation) or the
kernels: that needs a GPU machine (ci/gpu_check.sh).

``--cpu-first`` first runs every selected op on the CPU backend (every pass,
each dtype checked, small inputs, kernels compiled in this process): Numba
keeps some per-function typing state across targets, and a CUDA kernel must
compile the same after the CPU has compiled the same scalars (an overload
inlined at Numba IR level on the CPU was once inlined into CUDA kernels too).
Set NUMBA_CACHE_DIR to an empty folder so that the CPU kernels compile rather
than load from the cache.

Prints one line per kernel and "lowering: N kernels ok, M failed"; exits 1 on
any failure.
"""
import os
import re
import sys

os.environ["NUMBA_ENABLE_CUDASIM"] = "0"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CC = (9, 0)


class _Device:
    compute_capability = CC
    MULTIPROCESSOR_COUNT = 132


def _patch():
    import numba.cuda.dispatcher as disp
    disp.get_current_device = lambda: _Device()


_DOUBLE = re.compile(r"\b(fpext float|fadd double|fsub double|fmul double|fdiv double|"
                     r"call double @__nv_\w+)")


def float64_ops(ir):
    """float64 operations on values (not constant expressions, which NVVM folds)."""
    bad = set()
    for line in ir.splitlines():
        m = _DOUBLE.search(line)
        if m and "%" in line[m.end():]:
            bad.add(m.group(1))
    return sorted(bad)


def run_on_cpu(only, dtypes):
    """Every pass of the selected ops on the CPU backend, small example inputs."""
    import numpy as np

    import fastact as fa
    from fastact.bench.workloads import make_workload, variants_of
    for spec in fa.REGISTRY.values():
        if only and spec.name not in only:
            continue
        for variant in variants_of(spec):
            for pass_name in spec.passes:
                for dt in dtypes:
                    w = make_workload(spec.name, pass_name, 64, np.dtype(dt).name, variant)
                    op = getattr(fa, spec.name)
                    f = op if pass_name == "forward" else getattr(op, pass_name)
                    with np.errstate(all="ignore"):
                        f(*w.args, backend="cpu", **w.kwargs)
    print("cpu: every selected pass ran")


def main(argv):
    _patch()
    import numpy as np
    from numba import types, typeof
    from numba.cuda.compiler import compile_cuda

    import fastact  # noqa: F401
    from fastact.cuda import argmax, core, elementwise, gated, loss, maxout, prelu, rowwise
    from fastact.registry import REGISTRY

    assert not core.SIM
    quick = "--quick" in argv      # float32 only, the passes that call every scalar
    only = set(argv) - {"--quick", "--cpu-first"}
    dtypes = ((np.float32, types.float32),) if quick else (
        (np.float32, types.float32), (np.float64, types.float64))
    quick_passes = ("forward_backward",)
    ok = failed = 0
    if "--cpu-first" in argv:
        run_on_cpu(only, [dt for dt, _ in dtypes])

    def check(label, pyfunc, argtypes, f32):
        nonlocal ok, failed
        try:
            cres = compile_cuda(pyfunc, types.void, argtypes, cc=CC)
            ir = cres.library.get_llvm_str()
            # every float32 kernel stays in float32
            bad = float64_ops(ir) if f32 else []
            if bad:
                raise AssertionError(f"float64 arithmetic in a float32 kernel: {bad}")
        except Exception as e:  # noqa: BLE001
            failed += 1
            msg = str(e).strip().splitlines()
            print(f"FAIL {label}: {type(e).__name__}: {' | '.join(msg[:3])[:600]}")
            return
        ok += 1
        print(f"ok   {label}")

    for dt, nbt in dtypes:
        f32 = dt == np.float32
        arr = types.Array(nbt, 1, "C")
        for spec in REGISTRY.values():
            if only and spec.name not in only:
                continue
            if spec.kind == "elementwise":
                p = typeof(tuple(dt(1.0) for _ in spec.numeric_params))
                for choice, scalars in spec.scalars.items():
                    for pass_name, (_, which, n_in, n_out) in elementwise.PASSES.items():
                        if getattr(scalars, which) is None:
                            continue
                        if quick and pass_name not in quick_passes:
                            continue
                        k = elementwise.kernel(scalars, pass_name)
                        check(f"{spec.name}[{choice}].{pass_name} {dt.__name__}", k.py_func,
                              (arr,) * (n_in + n_out) + (p,), f32)
            elif spec.kind == "rowwise":
                a3 = types.Array(nbt, 3, "C")
                for pass_name in spec.passes:
                    if quick and pass_name != "forward_backward":
                        continue
                    k = rowwise.make_kernel(dt, float(spec.extra["sign"]), bool(spec.extra["log"]),
                                            pass_name != "forward", pass_name != "backward",
                                            pass_name != "forward")
                    check(f"{spec.name}.{pass_name} {dt.__name__}", k.py_func, (a3,) * 4, f32)
            elif spec.kind == "gated":
                a3, a2 = types.Array(nbt, 3, "C"), types.Array(nbt, 2, "C")
                p = typeof(tuple(dt(1.0) for _ in spec.numeric_params))
                for choice, scalars in spec.scalars.items():
                    for pass_name in spec.passes:
                        if quick and pass_name != "forward_backward":
                            continue
                        k = gated.kernel(scalars, int(spec.extra["act"]), pass_name)
                        args = ((a3, a2, p) if pass_name == "forward"
                                else (a3, a2, a2, a3, p))
                        check(f"{spec.name}[{choice}].{pass_name} {dt.__name__}", k.py_func,
                              args, f32)
        # prelu, maxout, argmax
        a1, a2, a3 = (types.Array(nbt, d, "C") for d in (1, 2, 3))
        i64, i1 = types.int64, types.Array(types.int64, 1, "C")
        if not only or "prelu" in only:
            check(f"prelu.forward {dt.__name__}", prelu._forward.py_func,
                  (a1, a1, a1, i64, i64), f32)
            for write_y in (False, True):
                check(f"prelu.backward(write_y={write_y}) {dt.__name__}",
                      prelu.backward_kernel(dt, write_y).py_func,
                      (a1,) * 6 + (i64,) * 4, f32)
            check(f"prelu.finish {dt.__name__}", prelu._finish.py_func, (a1, a1, i64), f32)
        if not only or "maxout" in only:
            for pass_name in ("forward", "backward", "forward_backward"):
                args = (a3, a2) if pass_name == "forward" else (a3, a2, a2, a3)
                check(f"maxout.{pass_name} {dt.__name__}", maxout.kernel(pass_name).py_func,
                      args, f32)
        if not only or "argmax" in only:
            check(f"argmax {dt.__name__}", argmax._argmax.py_func,
                  (a3, types.Array(types.int64, 2, "C")), f32)
            check(f"argmax rows {dt.__name__}", argmax._rows_kernel(dt).py_func,
                  (a2, types.Array(types.int64, 1, "C")), f32)
        # losses
        sc = typeof(dt(1.0))
        for spec in REGISTRY.values():
            if spec.kind != "loss" or (only and spec.name not in only):
                continue
            fam = spec.extra["family"]
            if fam == "elementwise":
                variants = [({}, "mean")]
                if spec.name == "kl_divergence":
                    variants.append(({"log_target": True}, "mean"))
                if spec.name == "sigmoid_binary_cross_entropy":
                    variants.append(({"pos_weight": 1, "weight": 1}, "mean"))
                if spec.name == "sigmoid_focal_loss":      # gamma = 2 has its own scalar
                    variants.append(({"gamma": 1.5}, "mean"))
                for extra, red in variants:
                    opts = {p.name: p.default for p in spec.params}
                    opts.update(extra)
                    two_pass = spec.extra["two_pass"]
                    if two_pass is not None:
                        fds = [(two_pass.terms, (), False, "reduce"), (two_pass.grad, (), True, "skip")]
                    else:
                        fd, prm = spec.extra["scalar"](opts, red)
                        fds = [(fd, prm, True, "reduce")]
                        if not quick:
                            fds.append((fd, prm, True, "none"))
                    for fd, prm, wg, mode in fds:
                        n_aux = 1 if opts.get("pos_weight") is not None else 0
                        weighted = opts.get("weight") is not None
                        k = loss.elementwise_kernel(fd, n_aux, weighted, wg, mode, dt)
                        pt = typeof(tuple(dt(v) for v in prm))
                        check(f"{spec.name}{extra or ''}[{mode}] {dt.__name__}", k.py_func,
                              (a1,) * 7 + (sc, pt), f32)
            elif fam == "sparse":
                flags = [(False, False, False), (True, True, True)]
                for weighted, smoothing, capped in flags:
                    for write_rows in ((False,) if quick else (False, True)):
                        k = loss.row_kernel("sparse", 1024, dt, True, write_rows, weighted=weighted,
                                            smoothing=smoothing, capped=capped)
                        check(f"{spec.name}(w={weighted}, eps={smoothing}, cap={capped}, "
                              f"rows={write_rows}) {dt.__name__}", k.py_func,
                              (a3, i1, a1, a3, a1, a1) + (sc,) * 5 + (i64, i1), f32)
            elif fam == "dense":
                for smoothing in (False, True):
                    k = loss.row_kernel("dense", 256, dt, True, False, smoothing=smoothing)
                    check(f"{spec.name}(eps={smoothing}) {dt.__name__}", k.py_func,
                          (a3, a3, a3, a1, a1, sc, sc), f32)
            else:
                for weighted in (False, True):
                    k = loss.row_kernel("nll", 256, dt, True, False, weighted=weighted)
                    check(f"{spec.name}(w={weighted}) {dt.__name__}", k.py_func,
                          (a3, i1, a1, a3, a1, a1, sc, i64, i1), f32)
        check(f"loss.finish {dt.__name__}", loss.finish_kernel(dt).py_func, (a1, a1, sc), f32)
        check(f"loss.check_labels {dt.__name__}", loss.check_labels.py_func,
              (i1, i64, i64, a1, types.boolean, types.Array(types.float64, 2, "C")), False)
        check(f"loss.check_unit_range {dt.__name__}", loss.check_unit_range.py_func,
              (a1, i1), f32)
        check(f"loss.reset_flag {dt.__name__}", loss.reset_flag.py_func, (i1, i64), False)
    # generic copies: casts float16 <-> float32, strided gathers/scatters
    f16, f32t, f64 = types.float16, types.float32, types.float64
    for src, dst in ((f16, f32t), (f32t, f16), (types.int64, f64), (types.boolean, f64)):
        check(f"cast {src}->{dst}", core._cast_flat.py_func,
              (types.Array(src, 1, "C"), types.Array(dst, 1, "C")), False)
    for nd in (1, 2, 3):
        shp = types.UniTuple(types.int64, nd)
        check(f"gather {nd}-d", core._strided_kernel(nd, True).py_func,
              (types.Array(f16, nd, "A"), types.Array(f32t, 1, "C"), shp), False)
        check(f"scatter {nd}-d", core._strided_kernel(nd, False).py_func,
              (types.Array(f32t, nd, "A"), types.Array(f32t, 1, "C"), shp), False)
    print(f"lowering: {ok} kernels ok, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
