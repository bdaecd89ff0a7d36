"""Everything about Python objects: backend choice, dtypes, containers, ``out=``.

Kernels only ever see C-contiguous NumPy arrays of float32/float64 and
scalars; this module turns what a user passes into that and back.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import sys

import numpy as np

from .cpu import streaming

BACKENDS = ("auto", "cpu", "cuda", "numpy")

# The process-wide default: FASTACT_BACKEND until ``set_backend`` names one.
# A value of the variable that names no backend is an error at the first call
# that needs the default (not at import, so that fa.info() and the docs work).
_ENV_NAME = os.environ.get("FASTACT_BACKEND", "auto").strip().lower() or "auto"
_ENV_ERROR = None if _ENV_NAME in BACKENDS else (
    f"the environment variable FASTACT_BACKEND={os.environ.get('FASTACT_BACKEND')!r} "
    "names no backend; choose one of {}")
_process_backend = [None]
# ``use_backend``'s override, for the calling thread (and context) only.
_thread_backend = contextvars.ContextVar("fastact_backend", default=None)


# ----------------------------------------------------------------- backends

def cuda_available() -> bool:
    return _cuda_reason() is None


def _cuda_reason() -> str | None:
    """Why the cuda backend cannot run here, or None when it can."""
    try:
        from . import cuda as _cuda
    except Exception as e:  # pragma: no cover - broken install
        return f"fastact.cuda failed to import ({type(e).__name__}: {e})"
    return _cuda.unavailable_reason()


def available_backends() -> list[str]:
    """Backends that can run here, in order of preference."""
    names = ["cpu", "numpy"]
    if cuda_available():
        names.insert(0, "cuda")
    return names


def _check_backend_name(name) -> str:
    if not isinstance(name, str) or name.lower() not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of "
                         f"{['auto'] + available_backends()}")
    return name.lower()


def set_backend(name: str) -> None:
    """Set the default backend ("auto", "cpu", "cuda" or "numpy") of the whole
    process: every thread, those already running and those started later
    (``use_backend`` overrides it in one thread)."""
    name = _check_backend_name(name)
    if name != "auto":
        _require_available(name)
    _process_backend[0] = name


def get_backend() -> str:
    """The default backend of the calling thread: its ``use_backend`` override,
    else ``set_backend``'s, else the environment variable FASTACT_BACKEND's
    ("auto" when unset).  ValueError when FASTACT_BACKEND names no backend."""
    name = _thread_backend.get()
    if name is not None:
        return name
    name = _process_backend[0]
    if name is not None:
        return name
    if _ENV_ERROR is not None:
        raise ValueError(_ENV_ERROR.format(["auto"] + available_backends()))
    return _ENV_NAME


@contextlib.contextmanager
def use_backend(name: str):
    """Context manager: ``with fa.use_backend("numpy"): ...`` sets the default
    backend of the calling thread (and asyncio task) inside the block; other
    threads keep theirs."""
    name = _check_backend_name(name)
    if name != "auto":
        _require_available(name)
    token = _thread_backend.set(name)
    try:
        yield name
    finally:
        _thread_backend.reset(token)


def _require_available(name: str) -> None:
    if name not in available_backends():
        raise RuntimeError(f"backend {name!r} is not available here; available backends: "
                           f"{available_backends()}"
                           + (f" (cuda: {_cuda_reason()}; it needs numba-cuda and an NVIDIA "
                              "GPU, or NUMBA_ENABLE_CUDASIM=1)" if name == "cuda" else ""))


def is_device_array(x) -> bool:
    # Numba device arrays (the CUDA simulator's lack the interface), CuPy, torch CUDA
    return bool(getattr(type(x), "__cuda_ndarray__", False)) or \
        hasattr(x, "__cuda_array_interface__")


def resolve_backend(backend, *arrays) -> str:
    """The backend a call runs on: explicit argument, else the default, "auto" decides."""
    name = get_backend() if backend is None else _check_backend_name(backend)
    on_device = any(is_device_array(a) for a in arrays if a is not None)
    if name == "auto":
        name = "cuda" if on_device else "cpu"
    if name == "cuda":
        _require_available("cuda")
    elif on_device:
        raise ValueError(f"backend {name!r} got a GPU array; use backend='cuda' or 'auto', "
                         "or copy the array to the host first")
    return name


# ------------------------------------------------------------------ dtypes

_F16, _F32, _F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)


def dtypes_for(dtype) -> tuple[np.dtype, np.dtype]:
    """(compute dtype, result dtype) of an input dtype, or TypeError."""
    dt = np.dtype(dtype)
    if dt == _F32 or dt == _F64:
        return dt, dt
    if dt == _F16:
        return _F32, _F16
    if dt.kind in "biu":
        return _F64, _F64
    raise TypeError(f"fastact does not support dtype {dt} (kind {dt.kind!r}); "
                    "use a real floating, integer or bool array")


# -------------------------------------------------------------- containers

def is_torch(x) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def is_bfloat16(t) -> bool:
    """Whether t is a torch bfloat16 tensor (NumPy has no view of one)."""
    return str(getattr(t, "dtype", "")) == "torch.bfloat16"


class Container:
    """How to give results back in the kind of object the user passed."""

    __slots__ = ("kind", "torch_dtype")

    def __init__(self, kind="numpy", torch_dtype=None):
        self.kind = kind
        self.torch_dtype = torch_dtype

    def wrap(self, a):
        if self.kind == "torch":
            import torch
            t = torch.from_numpy(a)
            if self.torch_dtype is not None and t.dtype != self.torch_dtype:
                t = t.to(self.torch_dtype)
            return t
        return a


def torch_views(inputs):
    """Zero-copy NumPy views of torch CPU tensors (detached), so that a call on
    tensors takes the short path of NumPy arrays (``torch_call``); None unless
    every input is a tensor NumPy can view
    (bfloat16 and GPU tensors, for one, take the general path), or when the
    default backend is not the CPU's."""
    torch = sys.modules.get("torch")
    if torch is None or get_backend() not in ("auto", "cpu"):
        return None
    views = []
    for x in inputs:
        if not isinstance(x, torch.Tensor) or not x.is_cpu:
            return None
        try:
            views.append((x.detach() if x.requires_grad else x).numpy())
        except (RuntimeError, TypeError):       # conjugate views, bfloat16
            return None
    return views


def needs_autograd(inputs) -> bool:
    """Whether a forward call on these inputs must record autograd: torch is
    loaded, grad mode is on and an input is a tensor that requires grad."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.is_grad_enabled():
        return False
    return any(isinstance(x, torch.Tensor) and x.requires_grad for x in inputs)


def _check_torch_out(tensors):
    """An ``out=`` tensor that requires grad raises, as torch's out= ops do."""
    for t in tensors:
        if t.requires_grad:
            raise RuntimeError("out= tensor requires grad: fastact writes it outside autograd "
                               "(pass a tensor that does not, or call under torch.no_grad())")


def _bump_versions(tensors):
    """Mark out= tensors written (their version counter), so that autograd
    refuses a backward that saved them before the write."""
    bump = getattr(getattr(sys.modules["torch"].autograd, "graph", None), "increment_version",
                   None)
    if bump is not None:
        for t in tensors:
            bump(t)


def torch_call(inputs, out, run):
    """A call on torch CPU tensors as a call on NumPy views of them: ``run(views,
    out)`` with the inputs and ``out=`` (a tensor or a tuple or list of them)
    viewed, its arrays handed back as tensors sharing their memory (the out=
    tensors themselves where it returns their views).  None when the inputs
    or out= are not all such tensors (``torch_views``)."""
    views = torch_views(inputs)
    if views is None:
        return None
    pairs = ()
    if out is not None:
        seq = type(out) in (tuple, list)
        tensors = tuple(out) if seq else (out,)
        out_views = torch_views(tensors)
        if out_views is None:
            return None
        _check_torch_out(tensors)
        pairs = tuple(zip(out_views, tensors))
        out = type(out)(out_views) if seq else out_views[0]
    from_numpy = sys.modules["torch"].from_numpy

    def back(r):
        for view, tensor in pairs:
            if r is view:
                return tensor
        return from_numpy(r) if isinstance(r, np.ndarray) else r
    result = run(views, out)
    if pairs:
        _bump_versions([t for _, t in pairs])
    return tuple(back(r) for r in result) if isinstance(result, tuple) else back(result)


def reject_masked(x, role: str) -> None:
    """TypeError for a NumPy masked array: the kernels would read the values
    under the mask as data, and the mask would be lost."""
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{role} is a numpy.ma.MaskedArray: fastact would ignore its mask; "
                        "pass x.filled(value) (or x.data to use the masked values as they are)")


def to_host_array(x, role: str = "input"):
    """(NumPy array, Container) for a NumPy array, torch CPU tensor or array-like."""
    if isinstance(x, np.ndarray):
        reject_masked(x, role)
        return x, Container()
    if is_torch(x):
        import torch
        if x.device.type != "cpu":
            raise ValueError(f"{role} is a torch tensor on {x.device}; use backend='cuda'")
        t = x.detach()
        if t.dtype == torch.bfloat16:
            return t.float().numpy(), Container("torch", torch.bfloat16)
        if t.is_complex():
            raise TypeError(f"fastact does not support dtype {t.dtype}")
        return t.numpy(), Container("torch")
    a = np.asarray(x)
    if a.dtype.kind in "OSUV":
        raise TypeError(f"fastact does not support dtype {a.dtype} (kind {a.dtype.kind!r}) "
                        f"for {role}")
    return a, Container()


def prepare(inputs, roles, same_shape=True):
    """Convert inputs to C-contiguous arrays of one compute dtype.

    Returns (arrays, compute dtype, result dtype, container of the first input,
    the inputs as host arrays before conversion).  With ``same_shape`` all
    inputs must have the shape of the first.
    """
    arrays, container = [], None
    compute, result = None, None
    for x, role in zip(inputs, roles):
        a, c = to_host_array(x, role)
        if container is None:
            container = c
        cd, rd = dtypes_for(a.dtype)
        compute = cd if compute is None else np.promote_types(compute, cd)
        result = rd if result is None else np.promote_types(result, rd)
        arrays.append(a)
    shape = arrays[0].shape
    for a, role in zip(arrays[1:], roles[1:]):
        if same_shape and a.shape != shape:
            raise ValueError(f"{role} has shape {a.shape}, expected {shape} "
                             f"(the shape of {roles[0]})")
    converted = [np.asarray(a, dtype=compute, order="C") for a in arrays]
    return converted, compute, result, container, arrays


# ------------------------------------------------------------------ outputs

def _out_array(o, role):
    if isinstance(o, np.ndarray):
        reject_masked(o, role)
        return o
    if is_torch(o):
        if o.device.type != "cpu":
            raise ValueError(f"{role} is a torch tensor on {o.device}")
        if is_bfloat16(o):
            raise TypeError(f"{role}: a bfloat16 tensor takes the results of bfloat16 inputs "
                            "only")
        return o.detach().numpy()
    raise TypeError(f"{role} must be a NumPy array or torch tensor, got {type(o).__name__}")


def split_out(out, n: int, name: str) -> list:
    """``out=`` as a list of n entries (array or None)."""
    if out is None:
        return [None] * n
    if n == 1:
        if isinstance(out, (tuple, list)):
            if len(out) != 1:
                raise ValueError(f"{name}: out= takes one array, got {len(out)}")
            out = out[0]
        return [out]
    if not isinstance(out, (tuple, list)) or len(out) != n:
        raise ValueError(f"{name}: out= takes a tuple of {n} arrays (None for any to allocate)")
    return list(out)


class _Bfloat16Out:
    """A torch bfloat16 ``out=`` tensor, filled from the float32 results."""

    __slots__ = ("tensor",)

    def __init__(self, tensor):
        self.tensor = tensor


class Outputs:
    """Kernel-ready output arrays, and how to hand them back to the user.

    A user ``out`` that is C-contiguous and of the compute dtype is written
    directly (it may be an input: kernels that allow aliasing say so);
    otherwise the kernel writes a temporary that is copied into ``out``.
    """

    def __init__(self, shapes, compute, result, container, out, inputs, name,
                 alias_ok=True, originals=()):
        self.container = container
        self.result = result
        self.user = []
        self.arrays = []
        outs = split_out(out, len(shapes), name)
        seen = []
        for k, (shape, o) in enumerate(zip(shapes, outs)):
            role = f"{name}: out[{k}]" if len(shapes) > 1 else f"{name}: out"
            if o is None:
                self.user.append(None)
                self.arrays.append(streaming.empty(shape, compute))
                continue
            if is_torch(o) and is_bfloat16(o) and o.device.type == "cpu" \
                    and str(container.torch_dtype) == "torch.bfloat16":
                # the results of bfloat16 inputs: computed in float32, then
                # rounded into the tensor by torch (round to nearest even)
                if tuple(o.shape) != tuple(shape):
                    raise ValueError(f"{role} has shape {tuple(o.shape)}, expected "
                                     f"{tuple(shape)}")
                self.user.append(_Bfloat16Out(o))
                self.arrays.append(np.empty(shape, dtype=compute))
                continue
            a = _out_array(o, role)
            if a.shape != tuple(shape):
                raise ValueError(f"{role} has shape {a.shape}, expected {tuple(shape)}")
            if a.dtype != result:
                raise TypeError(f"{role} has dtype {a.dtype}, expected {result}")
            if not a.flags.writeable:
                raise ValueError(f"{role} is read-only")
            for b in seen:
                if np.may_share_memory(a, b):
                    raise ValueError(f"{name}: the arrays in out= overlap")
            seen.append(a)
            direct = a.dtype == compute and a.flags.c_contiguous
            if direct:
                for x in list(inputs) + list(originals):
                    if np.may_share_memory(a, x) and not (alias_ok and _same_memory(a, x)):
                        direct = False
            self.user.append(o)
            self.arrays.append(a if direct else np.empty(shape, dtype=compute))
            if not direct:
                self.user[-1] = (o, a)

    def put(self, results):
        """Fill the outputs with arrays computed elsewhere (the NumPy baseline):
        taken as they are where no ``out`` was given, else copied."""
        for k, r in enumerate(results):
            r = np.asarray(r)
            if self.user[k] is None and r.shape == self.arrays[k].shape \
                    and r.dtype == self.arrays[k].dtype:
                self.arrays[k] = r
            else:
                np.copyto(self.arrays[k], r, casting="unsafe")

    def finish(self):
        results = []
        for kernel_out, user in zip(self.arrays, self.user):
            if user is None:
                r = kernel_out if kernel_out.dtype == self.result else kernel_out.astype(self.result)
                results.append(self.container.wrap(r))
            elif isinstance(user, _Bfloat16Out):
                import torch
                user.tensor.copy_(torch.from_numpy(kernel_out))
                results.append(user.tensor)
            elif isinstance(user, tuple):
                o, a = user
                np.copyto(a, kernel_out, casting="unsafe")
                results.append(o)
            else:
                results.append(user)
        return results[0] if len(results) == 1 else tuple(results)


class NewOutputs:
    """The outputs of a call on plain NumPy inputs (``api.plain_dtype``)
    without ``out=``: new arrays of the compute dtype, returned as they are
    (``Outputs``' interface, without its conversions)."""

    __slots__ = ("arrays",)

    def __init__(self, shapes, dtype):
        self.arrays = [streaming.empty(shape, dtype) for shape in shapes]

    def finish(self):
        return self.arrays[0] if len(self.arrays) == 1 else tuple(self.arrays)


class GivenOutputs:
    """The outputs of a short-path call with ``out=`` arrays the kernel writes
    directly (``plain_outs``), returned as they are."""

    __slots__ = ("arrays",)

    def __init__(self, arrays):
        self.arrays = list(arrays)

    def finish(self):
        return self.arrays[0] if len(self.arrays) == 1 else tuple(self.arrays)


def plain_outs(out, shapes, dtype, inputs, apart=(), alias_inputs=True):
    """The arrays of an ``out=`` the short paths can write directly, or None
    (the general path then handles it, errors included): one NumPy array per
    shape (one, or a tuple or list of them) of that shape and of dtype,
    C-contiguous and writeable, not overlapping one another or any array in
    ``apart``, and each apart from every input or (``alias_inputs``) exactly
    one of them."""
    n = len(shapes)
    if n == 1:
        if type(out) is not np.ndarray:
            return None
        outs = (out,)
    elif type(out) in (tuple, list) and len(out) == n:
        outs = out
    else:
        return None
    for k, (o, shape) in enumerate(zip(outs, shapes)):
        if type(o) is not np.ndarray or o.dtype != dtype or o.shape != shape \
                or not o.flags.c_contiguous or not o.flags.writeable:
            return None
        for a in inputs:
            if np.may_share_memory(o, a) and not (
                    alias_inputs and (a is o or _same_memory(o, a))):
                return None
        for a in (*apart, *outs[:k]):
            if np.may_share_memory(o, a):
                return None
    return outs


def plain_out(out, n: int, like: np.ndarray, inputs, apart=()):
    """``plain_outs`` for n outputs of ``like``'s shape and dtype."""
    return plain_outs(out, (like.shape,) * n, like.dtype, inputs, apart)


def _same_memory(a, b) -> bool:
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype)


def flat(a: np.ndarray) -> np.ndarray:
    """A 1-D view of a C-contiguous array."""
    return a.reshape(-1)
