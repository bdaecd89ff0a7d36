"""CUDA lowering: ``numba.cuda`` kernels generated from the op definitions.

This package imports ``numba.cuda`` lazily: ``import fastact.cuda`` works (and
``is_available()`` answers False) on a machine without numba-cuda.  The
kernels, the device-array handling and the CUDA lowerings of
``fastact.mathlib`` live in submodules that are imported on first use:

    core         containers, device arrays, dtype casts, launch configuration,
                 output allocation and ``out=`` on the device
    reduce       warp reductions (shuffles; the simulator's warp is the block)
                 and block reductions built on them
    mathlib_cuda ``@overload(mathlib.<name>, target="cuda")`` -> libdevice
    elementwise  grid-stride kernels for every pass of every elementwise op
    <kind>       one lowering module per op kind (see ``LOWERINGS``)

Containers.  Any object with ``__cuda_array_interface__`` (Numba device
arrays, CuPy arrays, torch CUDA tensors) is used in place, with no host copy,
and the results come back as the same kind of object (a Numba device array
for other producers).  NumPy arrays, torch CPU tensors and array-likes with
``backend="cuda"`` are copied to the device, computed there, and copied back
into NumPy (or torch CPU) results.  Kernels run on Numba's default stream;
inputs that export a stream in their interface are synchronised by Numba as
its documentation describes.  Under ``NUMBA_ENABLE_CUDASIM=1`` the simulator's
device arrays play the role of device arrays.
"""
from __future__ import annotations

import os

# kind -> submodule holding ``run(spec, ...)`` for that kind
LOWERINGS = {
    "elementwise": "elementwise",
    "rowwise": "rowwise",
    "loss": "loss",
    "gated": "gated",
    "prelu": "prelu",
    "maxout": "maxout",
    "argmax": "argmax",
}


def simulator_enabled() -> bool:
    """True when the Numba CUDA simulator is on (``NUMBA_ENABLE_CUDASIM=1``)."""
    try:
        from numba.cuda.core import config
        return bool(config.ENABLE_CUDASIM)
    except ImportError:
        return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def _numba_cuda():
    """The ``numba.cuda`` module, or None where numba-cuda is not installed.
    (Numba itself may still ship its older, deprecated ``numba.cuda``; fastact's
    CUDA kernels need numba-cuda's.)"""
    import importlib.util
    if importlib.util.find_spec("numba_cuda") is None:
        return None
    try:
        from numba import cuda
    except ImportError:
        return None
    return cuda


def unavailable_reason() -> str | None:
    """Why the cuda backend cannot run here, or None when it can."""
    cuda = _numba_cuda()
    if cuda is None:
        return "numba-cuda is not installed"
    if simulator_enabled():
        return None
    try:
        if not cuda.is_available():
            return "no usable CUDA GPU (driver and device)"
    except Exception as e:
        return f"no usable CUDA GPU ({type(e).__name__}: {e})"
    # numba-cuda loads its CUDA lowering (kernels, NumPy support) lazily, at the
    # first compilation; a numba-cuda that does not support the installed NumPy
    # fails there (numba-cuda 0.30 with NumPy 2.5: np.row_stack is gone).
    try:
        import numba.cuda.cudaimpl  # noqa: F401
    except Exception as e:
        return (f"numba-cuda cannot load its CUDA target ({type(e).__name__}: {e}); "
                "install a numba-cuda release that supports this NumPy, or an older NumPy")
    return None


def is_available() -> bool:
    """numba-cuda importable and a GPU usable, or the CUDA simulator is on."""
    return unavailable_reason() is None


def device_info() -> dict:
    """Name, compute capability, memory and multiprocessors of the current device."""
    cuda = _numba_cuda()
    if cuda is None:
        return {"available": False, "reason": "numba-cuda is not installed"}
    if simulator_enabled():
        return {"available": True, "name": "simulator", "simulator": True,
                "compute_capability": tuple(cuda.get_current_device().compute_capability),
                "memory_total": None, "memory_free": None, "multiprocessors": None}
    reason = unavailable_reason()
    if reason is not None:
        return {"available": False, "reason": reason}
    dev = cuda.get_current_device()
    name = dev.name
    if isinstance(name, bytes):
        name = name.decode()
    d = {"available": True, "name": name, "simulator": False,
         "compute_capability": tuple(dev.compute_capability),
         "multiprocessors": int(dev.MULTIPROCESSOR_COUNT)}
    try:
        free, total = cuda.current_context().get_memory_info()
        d["memory_total"], d["memory_free"] = int(total), int(free)
    except Exception:  # pragma: no cover - driver-specific
        d["memory_total"] = d["memory_free"] = None
    return d


def _lowering(kind: str):
    import importlib
    mod = LOWERINGS.get(kind)
    if mod is None:
        raise NotImplementedError(f"the cuda backend has no lowering for op kind {kind!r}")
    try:
        return importlib.import_module(f"{__name__}.{mod}")
    except ModuleNotFoundError as e:
        if e.name == f"{__name__}.{mod}":
            raise NotImplementedError(
                f"the cuda backend does not implement op kind {kind!r} yet; "
                "use backend='cpu'") from None
        raise


def supports(kind: str) -> bool:
    """Whether ops of ``kind`` have a CUDA lowering in this version."""
    try:
        _lowering(kind)
    except NotImplementedError:
        return False
    return True


def run_elementwise(spec, scalars, pass_name, inputs, roles, out, numeric):
    """One pass of an elementwise op on the GPU (see ``fastact.cuda.elementwise.run``).

    Device arrays in: computed in place on the device, device arrays of the
    same kind out.  NumPy (or torch CPU) in: copied to the device and back.
    """
    return _lowering("elementwise").run(spec, scalars, pass_name, inputs, roles, out, numeric)


def run_rowwise(spec, pass_name, *args, **kwargs):
    """One pass of a row-wise op (softmax family) on the GPU."""
    return _lowering("rowwise").run(spec, pass_name, *args, **kwargs)


def run_loss(spec, pass_name, args, kwargs):
    """A loss (``__call__`` or ``value_and_grad``) on the GPU (``fastact.cuda.loss``)."""
    return _lowering("loss").run(spec, pass_name, args, kwargs)


def run_gated(spec, scalars, pass_name, *args, **kwargs):
    """glu / swiglu / geglu on the GPU (``fastact.cuda.gated``)."""
    return _lowering("gated").run(spec, scalars, pass_name, *args, **kwargs)


def run_prelu(spec, pass_name, *args, **kwargs):
    """prelu on the GPU (``fastact.cuda.prelu``)."""
    return _lowering("prelu").run(spec, pass_name, *args, **kwargs)


def run_maxout(spec, pass_name, *args, **kwargs):
    """maxout on the GPU (``fastact.cuda.maxout``)."""
    return _lowering("maxout").run(spec, pass_name, *args, **kwargs)


def run_argmax(spec, *args, **kwargs):
    """argmax on the GPU (``fastact.cuda.argmax``)."""
    return _lowering("argmax").run(spec, *args, **kwargs)
