"""Compilation settings of the CPU kernels (fastact.cpu.jit)."""
import re

import numpy as np
import pytest
from conftest import FLOATS

import fastact as fa
from fastact.cpu import elementwise as cpu_elementwise
from fastact.cpu.jit import KernelPair, inline_scalar


def _sigmoid_kernel(interleave):
    spec = fa.REGISTRY["sigmoid"]
    template = cpu_elementwise.PASSES["value_and_derivative"][0]
    scalar = inline_scalar(spec.scalars_for(None).value_and_derivative, 0, wide=True)
    return KernelPair(template(scalar), interleave=interleave, cache=False)


def _mnemonics(dispatcher):
    """The instruction mnemonics of a compiled kernel, without symbol names."""
    asm = "\n".join(dispatcher.inspect_asm().values())
    return [m.group(1) for m in re.finditer(r"^\s+([a-z][a-z0-9]*)\b", asm, re.M)]


def _widest_divisions(dispatcher, dtype):
    """Packed divisions on the widest vector registers the kernel uses (the
    main vectorized loop's; the remainder loop uses narrower ones)."""
    suffix = "ps" if dtype == np.float32 else "pd"
    asm = "\n".join(dispatcher.inspect_asm().values())
    divs = re.findall(rf"^\s+vdiv{suffix}\s+[^\n]*%([xyz])mm", asm, re.M)
    widest = max(divs, default=None)
    return divs.count(widest)


def _inputs(dtype, rng, n):
    x = rng.standard_normal(n).astype(dtype) * 8
    x[:8] = [0.0, -0.0, np.inf, -np.inf, np.nan, np.finfo(dtype).max,
             -np.finfo(dtype).max, np.finfo(dtype).tiny / 4]
    return x


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_interleaved_kernel_gives_the_same_bits(dtype, rng):
    x = _inputs(dtype, rng, 100003)
    outs = {}
    for ic in (0, 4):
        pair = _sigmoid_kernel(ic)
        for flavour in ("serial", "parallel"):
            y, d = np.full_like(x, 7.0), np.full_like(x, 7.0)
            getattr(pair, flavour)(x, y, d, ())
            outs[ic, flavour] = (y, d)
    want = outs[0, "serial"]
    for key, got in outs.items():
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w, err_msg=str(key))


def test_interleave_widens_the_vectorized_loop(rng):
    x = _inputs(np.float32, rng, 1000)
    plain, wide = _sigmoid_kernel(0).serial, _sigmoid_kernel(4).serial
    for k in (plain, wide):
        k(x, np.empty_like(x), np.empty_like(x), ())
    # sigmoid divides once per vector: four interleaved vectors, four divisions
    assert _widest_divisions(wide, np.float32) == 4 * _widest_divisions(plain, np.float32) > 0


def test_interleave_does_not_leak_into_later_compilations(rng):
    x = _inputs(np.float32, rng, 1000)
    kernels = [_sigmoid_kernel(ic).serial for ic in (0, 4, 0)]
    for k in kernels:       # compiled in this order
        k(x, np.empty_like(x), np.empty_like(x), ())
    before, _, after = kernels
    assert _mnemonics(after) == _mnemonics(before)


def test_dtype_interleave_reaches_the_kernel(rng):
    """gelu[tanh] interleaves two vectors in float32 and four in float64
    (Scalars.interleave) on hosts with 512-bit vectors, four in both elsewhere:
    the public call runs the kernel compiled with that count and never the
    other one.  (That a count widens the loop is
    test_interleave_widens_the_vectorized_loop.)"""
    from fastact.cpu.jit import WIDE_VECTORS
    spec = fa.REGISTRY["gelu"]
    scalars = spec.scalars_for("tanh")

    def signatures(count):
        pair = cpu_elementwise.kernel(scalars, "value_and_derivative", 0, True, count).pair
        return {str(sig[0].dtype) for sig in pair.serial.signatures}

    f32 = (2, 4) if WIDE_VECTORS else (4, 2)
    for dtype, count, other in ((np.float32, *f32), (np.float64, 4, 2)):
        assert spec.interleave_for(scalars, dtype) == count
        fa.gelu.value_and_derivative(_inputs(dtype, rng, 1000), approximate="tanh")
        assert np.dtype(dtype).name in signatures(count)
        assert np.dtype(dtype).name not in signatures(other)


def test_cache_files_of_two_signatures_never_mix(tmp_path):
    """Two processes that both read the cache index before either saved (each
    compiling another signature of one kernel) must not leave an index entry
    that names the other's code: each key has its own data file."""
    from fastact.cpu.jit import _KeyedCacheFile

    def cache_file():
        return _KeyedCacheFile(str(tmp_path), "kernel-1.py311", source_stamp=("stamp", 1))

    first, second = cache_file(), cache_file()
    stale = second._load_index()                 # the second process read it first
    first.save(("f32", "magic"), "code for float32")
    second._load_index = lambda: dict(stale)
    second.save(("f64", "magic"), "code for float64")
    reader = cache_file()
    assert reader.load(("f64", "magic")) == "code for float64"
    assert reader.load(("f32", "magic")) in (None, "code for float32")   # None: recompiled
    first.save(("f32", "magic"), "code for float32")
    assert reader.load(("f32", "magic")) == "code for float32"
    assert reader.load(("f64", "magic")) in (None, "code for float64")


def test_kernels_load_from_the_keyed_cache_in_a_new_process(tmp_path):
    import os
    import subprocess
    import sys
    code = ("import numpy as np, fastact as fa\n"
            "from fastact.cpu import elementwise as ce\n"
            "for dt in (np.float32, np.float64):\n"
            "    x = np.linspace(-3, 3, 50000).astype(dt)\n"
            # (not the default lambd: that call would take the kernel with it as a constant)
            "    y, d = fa.softshrink.value_and_derivative(x, lambd=0.25)\n"
            "    assert y.dtype == dt and abs(float(y[0]) + 2.75) < 1e-6 and d[0] == 1\n"
            "k = ce.kernel(fa.REGISTRY['softshrink'].scalars_for(None), 'value_and_derivative', 1)\n"
            "print(sum(k.pair.parallel.stats.cache_hits.values()))\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    hits = [subprocess.run([sys.executable, "-c", code], env=env, check=True,
                           capture_output=True, text=True).stdout.strip() for _ in range(2)]
    assert hits == ["0", "2"]        # compiled, then both dtypes loaded from the cache
    nbc = list(tmp_path.rglob("*.nbc"))
    assert nbc and not any(p.name.split(".")[-2].isdigit() for p in nbc), nbc[:3]
