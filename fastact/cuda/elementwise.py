"""Elementwise kernel templates for CUDA: every pass of every elementwise op.

The templates mirror ``fastact.cpu.elementwise``: each turns a scalar function
of a ``fastact.registry.Scalars`` record into a grid-stride loop over flat
contiguous device arrays; ``p`` is the tuple of numeric parameters in the
compute dtype.  Each loop reads every input once and writes every output once
at the same index, so outputs may alias inputs.  No op has a hand-written
kernel: adding an op to the registry adds its CUDA kernels.
"""
import numpy as np
from numba import cuda

from .. import dispatch
from ..cpu.elementwise import PASSES as CPU_PASSES
from . import core


def forward_kernel(f):
    def forward(x, y, p):
        start, stride = cuda.grid(1), cuda.gridsize(1)
        for i in range(start, x.size, stride):
            y[i] = f(x[i], *p)
    return forward


def forward_from_vad_kernel(fd):
    """forward through ``value_and_derivative`` (when the CPU forward uses it, so
    both backends take the value from the same scalar function)."""
    def forward(x, y, p):
        start, stride = cuda.grid(1), cuda.gridsize(1)
        for i in range(start, x.size, stride):
            v, _ = fd(x[i], *p)
            y[i] = v
    return forward


def value_and_derivative_kernel(fd):
    def value_and_derivative(x, y, d, p):
        start, stride = cuda.grid(1), cuda.gridsize(1)
        for i in range(start, x.size, stride):
            v, g = fd(x[i], *p)
            y[i] = v
            d[i] = g
    return value_and_derivative


def backward_kernel(fd):
    def backward(x, dy, dx, p):
        start, stride = cuda.grid(1), cuda.gridsize(1)
        for i in range(start, x.size, stride):
            d = dy[i]
            _, g = fd(x[i], *p)
            dx[i] = d * g
    return backward


def forward_backward_kernel(fd):
    def forward_backward(x, dy, y, dx, p):
        start, stride = cuda.grid(1), cuda.gridsize(1)
        for i in range(start, x.size, stride):
            # dy[i] is read before y[i] is written: y may be dy's memory
            d = dy[i]
            v, g = fd(x[i], *p)
            y[i] = v
            dx[i] = d * g
    return forward_backward


def backward_from_output_kernel(fo):
    def backward_from_output(y, dy, dx, p):
        start, stride = cuda.grid(1), cuda.gridsize(1)
        for i in range(start, y.size, stride):
            d = dy[i]
            dx[i] = d * fo(y[i], *p)
    return backward_from_output


# pass name -> (template, which scalar it needs, inputs, outputs); same table as the CPU
PASSES = {
    "forward": (forward_kernel, "value", 1, 1),
    "value_and_derivative": (value_and_derivative_kernel, "value_and_derivative", 1, 2),
    "backward": (backward_kernel, "value_and_derivative", 2, 1),
    "forward_backward": (forward_backward_kernel, "value_and_derivative", 2, 2),
    "backward_from_output": (backward_from_output_kernel, "derivative_from_output", 2, 1),
}
# The forward takes its value from the scalar the CPU forward uses (``value`` or
# ``value_and_derivative``), so the backends agree bit for bit in that choice.
if CPU_PASSES["forward"][1] == "value_and_derivative":
    PASSES["forward"] = (forward_from_vad_kernel, "value_and_derivative", 1, 1)
assert {k: v[1:] for k, v in PASSES.items()} == {k: v[1:] for k, v in CPU_PASSES.items()}

_KERNELS: dict = {}
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def kernel(scalars, pass_name: str):
    """The (lazily compiled, per argument types) CUDA kernel of one pass."""
    key = (id(scalars), pass_name)
    k = _KERNELS.get(key)
    if k is None:
        template, which, _, _ = PASSES[pass_name]
        fn = getattr(scalars, which)
        if fn is None:
            raise NotImplementedError(f"{pass_name} needs Scalars.{which}")
        k = _KERNELS[key] = cuda.jit(template(fn))
    return k


def run(spec, scalars, pass_name, inputs, roles, out, numeric):
    """One pass on the GPU; returns one array or a tuple, like the CPU path.

    Device arrays in: no host copy, results of the same kind (``out=`` must
    then be device arrays).  NumPy/torch-CPU in (``backend="cuda"``): copied to
    the device and back, results as on the CPU path.  float16 is computed in
    float32 and returned as float16.
    """
    if out is None:
        result = _run_torch(scalars, pass_name, inputs, numeric)
        if result is not None:
            return result
    name = f"{spec.name}.{pass_name}"
    _, _, n_in, n_out = PASSES[pass_name]
    call = core.prepare(inputs, roles, name, out=out)
    outs = call.outputs([call.shape] * n_out, out, name)
    n = call.arrays[0].size
    if n:
        blocks, threads = core.grid(n)
        core.launch(
            kernel(scalars, pass_name), blocks, threads,
            *[core.flat(a) for a in call.arrays], *[core.flat(a) for a in outs.arrays],
            call.scalars(numeric))
    return outs.finish()


def _run_torch(scalars, pass_name, inputs, numeric):
    """The common call from a PyTorch training loop, without device-array
    objects: float32/float64 CUDA tensors, C-contiguous, of one shape and
    dtype, no ``out=``.  The results come from ``torch.empty_like`` and the
    kernel gets the tensors' addresses (``core.launch_plan``).  Returns None
    (nothing done) for any other call, and until the general path has launched
    this kernel once for these argument kinds."""
    x = inputs[0]
    if not dispatch.is_torch(x) or not x.is_cuda:
        return None
    import torch
    dtype = (_F32 if x.dtype == torch.float32 else _F64 if x.dtype == torch.float64
             else None)
    if dtype is None or not x.is_contiguous():
        return None
    n = x.numel()
    for a in inputs[1:]:
        if not (dispatch.is_torch(a) and a.dtype == x.dtype and a.device == x.device
                and a.shape == x.shape and a.is_contiguous()):
            return None
    if n == 0:
        return None
    _, _, n_in, n_out = PASSES[pass_name]
    p = tuple(dtype.type(v) for v in numeric)
    key = (core.flat_key(dtype),) * (n_in + n_out) + (core.arg_key(p),)
    plan = core.short_plan(kernel(scalars, pass_name), key)
    if plan is None:
        return None
    outs = [torch.empty_like(x, memory_format=torch.contiguous_format) for _ in range(n_out)]
    item = dtype.itemsize
    arrays = [core.RawArray(a.data_ptr(), n, item) for a in (*inputs, *outs)]
    core.launch_plan(plan, *core.grid(n), *arrays, p)
    return outs[0] if n_out == 1 else tuple(outs)
