"""The aliasing rule of out= on the CUDA backend (tests/test_aliasing.py has
the CPU side): device outputs given as device inputs of the same shape and
dtype, in every permutation, give exactly the result without out=.  Run under
the simulator (NUMBA_ENABLE_CUDASIM=1) or on a GPU."""
import itertools

import numpy as np
import pytest

pytestmark = pytest.mark.cudasim

pytest.importorskip("numba_cuda", reason="numba-cuda is not installed")

import fastact as fa  # noqa: E402
from fastact import cuda as fcuda  # noqa: E402

if not fcuda.is_available():
    pytest.skip("no CUDA GPU and the simulator is off (set NUMBA_ENABLE_CUDASIM=1)",
                allow_module_level=True)

from numba import cuda  # noqa: E402


def _all_aliasings(call, host_inputs, n_out):
    """Every map of the n_out outputs onto distinct inputs (or fresh arrays)."""
    ref = call([cuda.to_device(a) for a in host_inputs], None)
    ref = [r.copy_to_host() for r in (ref if isinstance(ref, tuple) else (ref,))]
    tried = 0
    for combo in itertools.product([None, *range(len(host_inputs))], repeat=n_out):
        used = [j for j in combo if j is not None]
        if len(used) != len(set(used)) or any(
                j is not None and host_inputs[j].shape != r.shape for j, r in zip(combo, ref)):
            continue
        ins = [cuda.to_device(a) for a in host_inputs]
        outs = [ins[j] if j is not None else cuda.device_array(r.shape, r.dtype)
                for j, r in zip(combo, ref)]
        got = call(ins, outs[0] if n_out == 1 else tuple(outs))
        got = got if isinstance(got, tuple) else (got,)
        for k, (g, r) in enumerate(zip(got, ref)):
            assert np.array_equal(g.copy_to_host(), r, equal_nan=True), (combo, k)
        tried += 1
    return tried


@pytest.mark.parametrize("op", ["gelu", "sigmoid"])
@pytest.mark.parametrize("pass_name", ["backward", "forward_backward"])
def test_elementwise_aliasing_on_device(op, pass_name, rng):
    x = rng.standard_normal(300)
    dy = rng.standard_normal(300)
    meth = getattr(getattr(fa, op), pass_name)
    n_out = 2 if pass_name == "forward_backward" else 1
    assert _all_aliasings(lambda ins, out: meth(*ins, out=out), [x, dy], n_out) > 2


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_rowwise_aliasing_on_device(op, rng):
    x = rng.standard_normal((5, 16))
    dy = rng.standard_normal((5, 16))
    meth = getattr(fa, op).forward_backward
    assert _all_aliasings(lambda ins, out: meth(*ins, out=out), [x, dy], 2) == 7
