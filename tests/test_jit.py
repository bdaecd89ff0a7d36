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
