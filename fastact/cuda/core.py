"""Generic part of the CUDA backend: device arrays, containers, casts, launches, outputs.

Kernels only ever see C-contiguous device arrays of float32/float64 (flat
views for elementwise work) and scalars; this module turns what a user passes
into that and back, with the same errors as ``fastact.dispatch`` (whose dtype
and shape rules it reuses).

Two modes:

* device mode (an input or an ``out=`` array exposes
  ``__cuda_array_interface__``): inputs are used in place (a device-side cast
  or gather only where the dtype is not the compute dtype or the layout is not
  C-contiguous); results are allocated by the library of the first device
  input (Numba, torch, CuPy) and returned as that kind of object.  Host inputs
  mixed in are copied to the device.
* host mode (``backend="cuda"`` with NumPy/torch-CPU/array-like inputs): the
  inputs are converted exactly as on the CPU path, copied to the device,
  computed there, and copied back into NumPy (or torch CPU) results or
  ``out=``.
"""
from __future__ import annotations

import os

import numpy as np
from numba import cuda

from .. import dispatch
from . import simulator_enabled

SIM = simulator_enabled()

if not SIM:
    from . import mathlib_cuda
    mathlib_cuda.register()

# ------------------------------------------------------------------ launches

# The simulator runs one Python thread per CUDA thread: keep blocks tiny there.
THREADS = 8 if SIM else 256
_max_blocks = None


def jit(fn, threads: int = None):
    """``cuda.jit(fn)``; on a GPU, with launch bounds of ``threads`` per block,
    so that the compiler keeps the registers within what a block of that size
    may use (65536 per SM: 64 per thread at 1024 threads; a kernel over that
    fails to launch with CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES)."""
    if threads is None or SIM:
        return cuda.jit(fn)
    return cuda.jit(fn, launch_bounds=threads)


class _Launcher:
    """``kernel[blocks, threads](*args)`` without numba-cuda's per-call work.

    Through numba-cuda a launch of four arrays and a scalar costs 58-70 us of
    host time (H200 machine, numba-cuda 0.30.4, cuda.core 1.2): it types every
    argument, resolves the overload, makes a launch configuration and a stream
    object (12 us alone), and converts each argument.  Here the overload is
    found once per kernel and argument kinds (``arg_key``), the arguments are
    laid out as numba-cuda lays them out (``_Kernel._prepare_args``: an array
    is meminfo, parent, size, itemsize, data pointer, shape, strides; a tuple
    is its members in turn) and go to ``cuda.core.launch`` on a stream object
    made once: 16 us for the same launch.  The first launch of each kernel and
    argument kinds goes through numba-cuda (it compiles); an argument kind not
    laid out here keeps that path.  ``FASTACT_CUDA_LAUNCH=numba`` (read at
    import) sends every launch through numba-cuda.

    The layout is numba-cuda's internal calling convention, checked on a GPU
    by tests/test_cuda.py::test_launch_lays_out_arguments_as_numba for the
    releases in ``SHORT_LAUNCH_RELEASES``; with any other numba-cuda every
    launch goes through numba-cuda.
    """

    SHORT_LAUNCH_RELEASES = ("0.30.",)

    def __init__(self):
        self.plans: dict = {}
        self.stream = self.launch = self.config = None
        self.ok = (not SIM and os.environ.get("FASTACT_CUDA_LAUNCH", "") != "numba"
                   and _numba_cuda_version().startswith(self.SHORT_LAUNCH_RELEASES))

    def _setup(self):
        from cuda.core import LaunchConfig, launch
        from numba.cuda.cudadrv import driver
        self.stream = driver._to_core_stream(0)     # the default stream, as numba's launches
        self.launch, self.config = launch, LaunchConfig

    def __call__(self, kernel, blocks, threads, args):
        if not self.ok:
            kernel[blocks, threads](*args)
            return
        key = (kernel, *map(arg_key, args))
        if _PLAIN in key:
            kernel[blocks, threads](*args)
            return
        plan = self.plans.get(key)
        if plan is None:
            kernel[blocks, threads](*args)
            self.plans[key] = self._plan(kernel, args)
            return
        if plan is False:
            kernel[blocks, threads](*args)
            return
        self.run(plan, blocks, threads, args)

    def run(self, plan, blocks, threads, args):
        overload, packers = plan
        params = []
        for pack, v in zip(packers, args):
            pack(v, params)
        cfg = self.config(grid=(blocks, 1, 1), block=(threads, 1, 1), shmem_size=0)
        self.launch(self.stream, cfg, overload._codelibrary.get_cufunc().kernel, *params)

    def _plan(self, kernel, args):
        """(overload, one packer per argument), or False for the ordinary path."""
        try:
            from numba.cuda.typing.typeof import Purpose, typeof
            argtypes = tuple(typeof(a, Purpose.argument) for a in args)
            overload = kernel.overloads.get(argtypes)
            if overload is None or overload.cooperative or overload.debug:
                return False
            packers = [_packer(t) for t in argtypes]
            overload._codelibrary.get_cufunc().kernel     # what run() launches
            if self.stream is None:
                self._setup()
            return overload, packers
        except (ImportError, AttributeError, NotImplementedError, TypeError):
            return False


def _numba_cuda_version() -> str:
    try:
        import numba_cuda
        return numba_cuda.__version__
    except (ImportError, AttributeError):
        return ""


_PLAIN = object()      # an argument the short path does not lay out
_SCALARS = frozenset((np.float32, np.float64, np.int64, np.int32, np.bool_, int, float, bool))


def arg_key(a):
    """What selects the overload: a device array's dtype, dimensions and what
    makes its Numba layout (C, F or A: contiguity, and zero strides, which numba
    types "A"); a scalar's type.  (Cheaper than the Numba type, which takes
    ~5 us for each new array.)"""
    t = type(a)
    if t is tuple:
        return tuple(map(arg_key, a))
    if getattr(t, "__cuda_ndarray__", False):
        return (a.dtype, a.ndim, a.is_c_contiguous(), a.is_f_contiguous(),
                bool(a.size) and 0 in a.strides)
    return t if t in _SCALARS else _PLAIN


def _packer(ty):
    """A function appending the kernel parameters of one argument of numba
    type ``ty`` to a list, as numba-cuda's ``_Kernel._prepare_args`` does."""
    import ctypes
    from numba.cuda import types
    if isinstance(ty, types.Array):
        def array(v, out):
            if type(v) is RawArray:
                out += (0, 0, v.size, v.itemsize, v.ptr, v.size, v.itemsize)
                return
            out += (0, 0, v.size, v.dtype.itemsize, _pointer(v), *v.shape, *v.strides)
        return array
    if isinstance(ty, types.Integer):
        ctype = getattr(ctypes, f"c_{ty}")
        return lambda v, out: out.append(ctype(v))
    if ty in (types.float32, types.float64):
        ctype = ctypes.c_float if ty == types.float32 else ctypes.c_double
        return lambda v, out: out.append(ctype(v))
    if ty == types.boolean:
        return lambda v, out: out.append(v)
    if isinstance(ty, types.BaseTuple):
        members = [_packer(t) for t in ty]

        def tuple_(v, out):
            for pack, m in zip(members, v):
                pack(m, out)
        return tuple_
    raise NotImplementedError(ty)


class RawArray:
    """A flat C-contiguous device buffer given by its address, for
    ``launch_plan``: no device-array object is made."""

    __slots__ = ("ptr", "size", "itemsize")

    def __init__(self, ptr: int, size: int, itemsize: int):
        self.ptr, self.size, self.itemsize = ptr, size, itemsize


def flat_key(dtype):
    """``arg_key`` of a flat C-contiguous device array of ``dtype``."""
    return (np.dtype(dtype), 1, True, True, False)


_launcher = _Launcher()


def launch(kernel, blocks: int, threads: int, *args):
    """Run ``kernel`` on ``blocks`` x ``threads`` threads of the default stream
    (``kernel[blocks, threads](*args)``; on a GPU by the shorter path of
    ``_Launcher``)."""
    _launcher(kernel, blocks, threads, args)


def short_plan(kernel, key: tuple):
    """The short path's plan for ``kernel`` and argument kinds ``key`` (their
    ``arg_key``s; ``flat_key`` for a RawArray), once ``launch`` has made it;
    else None."""
    if not _launcher.ok:
        return None
    return _launcher.plans.get((kernel, *key)) or None


def launch_plan(plan, blocks: int, threads: int, *args):
    """Launch by the short path with a ``short_plan``; flat arrays may be RawArrays."""
    _launcher.run(plan, blocks, threads, args)


def max_blocks() -> int:
    """Blocks of a grid-stride launch: enough to fill the device, no more."""
    global _max_blocks
    if _max_blocks is None:
        if SIM:
            _max_blocks = 2
        else:
            dev = cuda.get_current_device()
            _max_blocks = int(dev.MULTIPROCESSOR_COUNT) * (2048 // THREADS) * 2
    return _max_blocks


# Rows at least this long get 1024 threads per block: few rows in flight per SM,
# so a row's second sweep finds it in L2; shorter rows get THREADS, so that
# several rows share an SM and one row's barriers hide behind another's loads.
WIDE_ROW = 8192


def row_threads(n: int) -> int:
    """Threads per block of the one-block-per-row kernels, for rows of n elements."""
    return 1024 if n >= WIDE_ROW and not SIM else THREADS


def grid(n: int, threads: int = None) -> tuple[int, int]:
    """(blocks, threads per block) of a grid-stride loop over n items (n > 0)."""
    t = threads or THREADS
    return max(1, min(-(-n // t), max_blocks())), t


# ------------------------------------------------------------ device arrays

def is_device_array(x) -> bool:
    """Numba (or simulator) device array, or any ``__cuda_array_interface__`` object."""
    if x is None:
        return False
    if getattr(type(x), "__cuda_ndarray__", False):
        return True
    try:
        return hasattr(x, "__cuda_array_interface__")
    except Exception:
        return True   # it has the attribute, but refuses this dtype: as_device reports


def _kind_of(x) -> str:
    if getattr(type(x), "__cuda_ndarray__", False):
        return "numba"
    if dispatch.is_torch(x):
        return "torch"
    if type(x).__module__.split(".")[0] == "cupy":
        return "cupy"
    return "numba"


def _sim_from_interface(desc, owner):
    """Simulator: a CUDA-array-interface pointer is host memory; view it."""
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    class _Holder:
        pass

    h = _Holder()
    h.__array_interface__ = {"shape": tuple(desc["shape"]), "typestr": desc["typestr"],
                             "data": desc["data"], "strides": desc.get("strides"),
                             "version": 3}
    h.owner = owner
    return FakeCUDAArray(np.asarray(h))


def as_device(x, role="input"):
    """(Numba device array view of x, container kind, read-only flag); no copy."""
    kind = _kind_of(x)
    if getattr(type(x), "__cuda_ndarray__", False):
        return x, kind, False
    if kind == "torch":
        x = x.detach()
    try:
        desc = x.__cuda_array_interface__
    except (TypeError, RuntimeError, ValueError) as e:
        raise TypeError(f"fastact cannot use {role} on the GPU: {e}") from None
    readonly = bool(desc["data"][1])
    if SIM:
        return _sim_from_interface(desc, x), kind, readonly
    return cuda.as_cuda_array(x), kind, readonly


def is_c_contiguous(d) -> bool:
    return d.size == 0 or d.is_c_contiguous()


def _pointer(d) -> int:
    if SIM:
        return d._ary.__array_interface__["data"][0]
    if not d.size:
        return 0
    return d.device_ctypes_pointer.value or 0


def _layout(d):
    """(pointer, shape, strides, dtype): equal layouts view the same elements."""
    return _pointer(d), tuple(d.shape), tuple(d.strides), np.dtype(d.dtype)


def _span(layout):
    """[lo, hi) byte range touched by an array of this layout (not empty)."""
    p, shape, strides, dt = layout
    lo = hi = p
    for n, s in zip(shape, strides):
        if s >= 0:
            hi += (n - 1) * s
        else:
            lo += (n - 1) * s
    return lo, hi + dt.itemsize


def _overlap(la, lb) -> bool:
    """Whether arrays of layouts la, lb (neither empty) may share memory."""
    (a0, a1), (b0, b1) = _span(la), _span(lb)
    return a0 < b1 and b0 < a1


def flat(d):
    """1-D view of a C-contiguous device array."""
    return d.reshape(d.size) if d.ndim != 1 else d


# ----------------------------------------------------------- copy kernels

@cuda.jit
def _cast_flat(src, dst):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, dst.size, stride):
        dst[i] = src[i]


_GATHER: dict = {}


def _strided_kernel(ndim: int, gather: bool):
    """Copy between an N-d array of any layout and a flat contiguous one."""
    key = (ndim, gather)
    k = _GATHER.get(key)
    if k is not None:
        return k
    lines = ["def kernel(nd, fl, shape):",
             "    start, stride = cuda.grid(1), cuda.gridsize(1)",
             "    for i in range(start, fl.size, stride):",
             "        r = i"]
    for d in reversed(range(ndim)):
        lines.append(f"        j{d} = r % shape[{d}]")
        lines.append(f"        r = r // shape[{d}]")
    idx = ", ".join(f"j{d}" for d in range(ndim)) + ("," if ndim == 1 else "")
    if gather:
        lines.append(f"        fl[i] = nd[{idx}]")
    else:
        lines.append(f"        nd[{idx}] = fl[i]")
    ns = {"cuda": cuda}
    exec("\n".join(lines), ns)   # noqa: S102  (fixed template, ndim is an int)
    k = _GATHER[key] = cuda.jit(ns["kernel"])
    return k


def _shape_arg(shape):
    return tuple(np.int64(n) for n in shape)


def device_empty(shape, dtype):
    return cuda.device_array(tuple(shape), dtype=np.dtype(dtype))


def copy_into(src, dst):
    """dst[...] = src (same shape), casting; either may be non-contiguous."""
    n = src.size
    if n == 0:
        return
    if is_c_contiguous(src) and is_c_contiguous(dst):
        if src.dtype == dst.dtype and not SIM:
            flat(dst).copy_to_device(flat(src))
            return
        b, t = grid(n)
        launch(_cast_flat, b, t, flat(src), flat(dst))
        return
    if is_c_contiguous(dst):
        b, t = grid(n)
        launch(_strided_kernel(src.ndim, True), b, t, src, flat(dst), _shape_arg(src.shape))
        return
    tmp = src if is_c_contiguous(src) else to_contiguous(src, src.dtype)
    b, t = grid(n)
    launch(_strided_kernel(dst.ndim, False), b, t, dst, flat(tmp), _shape_arg(dst.shape))


def to_contiguous(d, dtype):
    """d itself if C-contiguous of ``dtype``, else a converted contiguous copy."""
    if np.dtype(d.dtype) == np.dtype(dtype) and is_c_contiguous(d):
        return d
    new = device_empty(d.shape, dtype)
    copy_into(d, new)
    return new


# --------------------------------------------------------------- containers

class DeviceContainer:
    """Allocates results with the library of the first device input."""

    __slots__ = ("kind", "like")

    def __init__(self, kind="numba", like=None):
        self.kind = kind
        self.like = like

    def empty(self, shape, dtype):
        """(object handed to the user, Numba view of it)."""
        shape = tuple(int(n) for n in shape)
        dtype = np.dtype(dtype)
        if self.kind == "torch" and not SIM:
            import torch
            tdt = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32,
                   np.dtype(np.float64): torch.float64}[dtype]
            t = torch.empty(shape, dtype=tdt, device=self.like.device)
            return t, cuda.as_cuda_array(t)
        if self.kind == "cupy" and not SIM:
            import cupy
            c = cupy.empty(shape, dtype=dtype)
            return c, cuda.as_cuda_array(c)
        d = device_empty(shape, dtype)
        return d, d


# ------------------------------------------------------------------ calls

class Prepared:
    """Inputs of one call, on the device, C-contiguous in the compute dtype."""

    def __init__(self, mode, arrays, compute, result, container, originals,
                 host_arrays=None, host_container=None, host_originals=None):
        self.mode = mode                    # "device" | "host"
        self.arrays = arrays                # device arrays for the kernel
        self.compute = np.dtype(compute)
        self.result = np.dtype(result)
        self.container = container          # DeviceContainer (device mode)
        self.originals = originals          # device views before conversion
        self.host_arrays = host_arrays      # host mode: converted host inputs
        self.host_container = host_container
        self.host_originals = host_originals

    @property
    def shape(self):
        return tuple(self.arrays[0].shape)

    def scalars(self, numeric):
        """Numeric parameters as scalars of the compute dtype (kernel argument)."""
        return tuple(self.compute.type(v) for v in numeric)

    def outputs(self, shapes, out, name, alias_ok=True, dtypes=None):
        if self.mode == "host":
            return HostOutputs(shapes, self, out, name, alias_ok)
        return DeviceOutputs(shapes, self, out, name, alias_ok, dtypes)


def prepare(inputs, roles, name, same_shape=True, out=None):
    """Device-ready inputs of a call (see the module docstring for the two modes).

    ``inputs`` may hold None (optional arguments): they stay None.
    """
    outs = out if isinstance(out, (tuple, list)) else (out,)
    device_mode = any(is_device_array(x) for x in inputs) or any(
        is_device_array(o) for o in outs)
    if not device_mode:
        present = [(x, r) for x, r in zip(inputs, roles) if x is not None]
        arrays, compute, result, container, originals = dispatch.prepare(
            [x for x, _ in present], [r for _, r in present], same_shape=same_shape)
        it = iter(arrays)
        dev = [None if x is None else cuda.to_device(next(it)) for x in inputs]
        return Prepared("host", dev, compute, result, None, dev, arrays, container, originals)

    views, container = [], None
    compute = result = None
    for x, role in zip(inputs, roles):
        if x is None:
            views.append(None)
            continue
        if is_device_array(x):
            d, kind, _ = as_device(x, role)
            if container is None:
                container = DeviceContainer(kind, x)
        else:
            a, _ = dispatch.to_host_array(x, role)
            dispatch.dtypes_for(a.dtype)
            d = cuda.to_device(np.ascontiguousarray(a))
        cd, rd = dispatch.dtypes_for(d.dtype)
        compute = cd if compute is None else np.promote_types(compute, cd)
        result = rd if result is None else np.promote_types(result, rd)
        views.append(d)
    if container is None:
        container = DeviceContainer("numba")
    present = [(d, r) for d, r in zip(views, roles) if d is not None]
    shape = tuple(present[0][0].shape)
    for d, role in present[1:]:
        if same_shape and tuple(d.shape) != shape:
            raise ValueError(f"{role} has shape {tuple(d.shape)}, expected {shape} "
                             f"(the shape of {present[0][1]})")
    arrays = [None if d is None else to_contiguous(d, compute) for d in views]
    return Prepared("device", arrays, compute, result, container, views)


class HostOutputs:
    """Host mode: ``dispatch.Outputs`` on the host, device buffers for the kernel."""

    def __init__(self, shapes, call, out, name, alias_ok):
        self.host = dispatch.Outputs(shapes, call.compute, call.result, call.host_container,
                                     out, call.host_arrays, name, alias_ok=alias_ok,
                                     originals=call.host_originals)
        self.arrays = [device_empty(s, call.compute) for s in shapes]

    def finish(self):
        for d, h in zip(self.arrays, self.host.arrays):
            if d.size:
                d.copy_to_host(h)
        return self.host.finish()


class DeviceOutputs:
    """Kernel-ready device outputs and how to hand them back.

    A user ``out`` must be a device array of the result dtype and the right
    shape; it is written directly where it is C-contiguous in the compute
    dtype and does not partly overlap an input (exact aliasing of an input is
    allowed when ``alias_ok``), else through a temporary.
    """

    def __init__(self, shapes, call, out, name, alias_ok=True, dtypes=None):
        self.user, self.arrays, self.casts = [], [], []
        outs = dispatch.split_out(out, len(shapes), name)
        seen = []          # layouts of the out= arrays checked so far
        inputs = {id(d): d for d in list(call.arrays) + list(call.originals)
                  if d is not None and d.size}
        input_layouts = None
        dtypes = dtypes or [None] * len(shapes)
        for k, (shape, o, rdt) in enumerate(zip(shapes, outs, dtypes)):
            shape = tuple(shape)
            compute = np.dtype(rdt) if rdt is not None else call.compute
            result = np.dtype(rdt) if rdt is not None else call.result
            role = f"{name}: out[{k}]" if len(shapes) > 1 else f"{name}: out"
            if o is None:
                native, view = call.container.empty(shape, result)
                self.user.append(native)
                if result == compute:
                    self.arrays.append(view)
                    self.casts.append(None)
                else:
                    self.arrays.append(device_empty(shape, compute))
                    self.casts.append(view)
                continue
            if not is_device_array(o):
                raise TypeError(f"{role} must be a device array (the inputs are on the GPU), "
                                f"got {type(o).__name__}")
            d, _, readonly = as_device(o, role)
            if tuple(d.shape) != shape:
                raise ValueError(f"{role} has shape {tuple(d.shape)}, expected {shape}")
            if np.dtype(d.dtype) != result:
                raise TypeError(f"{role} has dtype {np.dtype(d.dtype)}, expected {result}")
            if readonly:
                raise ValueError(f"{role} is read-only")
            direct = np.dtype(d.dtype) == compute and is_c_contiguous(d)
            if d.size:
                lay = _layout(d)
                if any(_overlap(lay, b) for b in seen):
                    raise ValueError(f"{name}: the arrays in out= overlap")
                seen.append(lay)
                if direct:
                    if input_layouts is None:
                        input_layouts = [_layout(x) for x in inputs.values()]
                    direct = not any(_overlap(lay, xl) and not (alias_ok and lay == xl)
                                     for xl in input_layouts)
            self.user.append(o)
            if direct:
                self.arrays.append(d)
                self.casts.append(None)
            else:
                self.arrays.append(device_empty(shape, compute))
                self.casts.append(d)

    def finish(self):
        for kernel_out, target in zip(self.arrays, self.casts):
            if target is not None:
                copy_into(kernel_out, target)
        return self.user[0] if len(self.user) == 1 else tuple(self.user)
