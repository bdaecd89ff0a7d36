"""What is timed: fastact backends, the NumPy baseline and the peer frameworks.

Every target turns a Workload (a fastact call) into ``call(i)`` over rotating
input sets, computing the same thing as the fastact pass:

    forward               y = f(x)
    value_and_derivative  (y, f'(x))           peers: vjp with a cotangent of ones
    backward              dy * f'(x)           peers: vjp(dy)
    forward_backward      (y, dy * f'(x))      peers: value and vjp(dy)
    value_and_grad        (loss, dloss/dpred)  peers: value and vjp(1)

fastact and the NumPy baseline write into preallocated ``out=`` buffers when
the op accepts them (as a training loop that reuses its buffers does);
peers allocate their results as they normally do.  PyTorch eager and
torch.compile use autograd (``torch.autograd.grad``), JAX ``jax.vjp`` under
``jax.jit``.  ``PEERS`` maps fastact op names to peer implementations; an op
missing from it is skipped for that peer with a note.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from .. import REGISTRY
from .timing import CudaEventTimer, WallTimer
from .workloads import BenchError, copy_inputs

PEER_NAMES = ("numpy", "torch", "torch-compile", "jax")
GRAD_PASSES = ("value_and_derivative", "backward", "forward_backward", "value_and_grad")


class Skip(Exception):
    """This target cannot run this workload (the message says why)."""


# ------------------------------------------------------------- peer table

@dataclass(frozen=True)
class Peer:
    """Peer implementations of one fastact op.

    torch(m, *args, **kwargs) with m.torch, m.F; jax(m, *args, **kwargs) with m.jnp,
    m.nn, m.lax, m.jax.  ``args`` are the fastact call's positional arguments
    without the cotangent ``dy``, as framework arrays; ``kwargs`` are the
    fastact keywords.  ``primals``: positions (in those args) to differentiate.
    """
    torch: object = None
    jax: object = None
    primals: tuple = (0,)
    note: str = ""


def _halves_t(m, x, axis):
    return m.torch.chunk(x, 2, dim=axis)


def _halves_j(m, x, axis):
    return m.jnp.split(x, 2, axis=axis)


def _softplus_j(m, x, beta=1.0, threshold=20.0):
    bx = beta * x
    return m.jnp.where(bx > threshold, x, m.jnp.log1p(m.jnp.exp(bx)) / beta)


def _maxout_t(m, x, pieces, axis=-1):
    axis = axis % x.ndim
    shape = x.shape[:axis] + (x.shape[axis] // pieces, pieces) + x.shape[axis + 1:]
    return x.reshape(shape).amax(dim=axis + 1)


def _maxout_j(m, x, pieces, axis=-1):
    axis = axis % x.ndim
    shape = x.shape[:axis] + (x.shape[axis] // pieces, pieces) + x.shape[axis + 1:]
    return x.reshape(shape).max(axis=axis + 1)


def _prelu_j(m, x, weight, axis=1):
    w = weight
    if w.size > 1:
        shape = [1] * x.ndim
        shape[axis % x.ndim] = w.size
        w = w.reshape(shape)
    return m.jnp.where(x > 0, x, w * x)


def _prelu_t(m, x, weight, axis=1):
    if weight.numel() > 1 and axis % x.ndim != 1:
        x = x.movedim(axis, 1)
        return m.F.prelu(x, weight).movedim(1, axis)
    return m.F.prelu(x, weight)


def _reduce_j(m, v, reduction):
    if reduction == "mean":
        return v.mean()
    if reduction == "sum":
        return v.sum()
    return v


def _sce_j(m, logits, labels, reduction="mean", axis=-1, weight=None, ignore_index=-100,
           label_smoothing=0.0, z_loss=0.0, softcap=None):
    if z_loss or softcap is not None or axis not in (-1, logits.ndim - 1) or logits.ndim != 2:
        raise Skip("the JAX peer covers 2-D logits without z_loss/softcap")
    jnp = m.jnp
    c = logits.shape[-1]
    logp = m.nn.log_softmax(logits, axis=-1)
    valid = labels != ignore_index
    safe = jnp.where(valid, labels, 0)
    nll = -jnp.take_along_axis(logp, safe[:, None].astype(jnp.int32), axis=-1)[:, 0]
    w = jnp.ones(c, logits.dtype) if weight is None else weight
    wy = jnp.where(valid, w[safe], 0)
    smooth = -(logp * w).sum(-1) / c
    loss = wy * (1 - label_smoothing) * nll + jnp.where(valid, label_smoothing * smooth, 0)
    if reduction == "mean":
        return loss.sum() / wy.sum()
    return _reduce_j(m, loss, reduction)


def _bce_logits_j(m, x, z, weight=None, pos_weight=None, reduction="mean"):
    jnp = m.jnp
    lw = 1.0 if pos_weight is None else 1 + (pos_weight - 1) * z
    v = (1 - z) * x + lw * (jnp.log1p(jnp.exp(-jnp.abs(x))) + jnp.maximum(-x, 0))
    if weight is not None:
        v = v * weight
    return _reduce_j(m, v, reduction)


def _reduce_t(v, reduction):
    return v.mean() if reduction == "mean" else v.sum() if reduction == "sum" else v


def _reduce_rows_j(m, v, reduction):
    return _reduce_j(m, v, reduction)


def _huber_j(m, z, delta):
    a = m.jnp.abs(z)
    return m.jnp.where(a <= delta, 0.5 * z * z, delta * (a - 0.5 * delta))


def _focal_t(m, x, t, reduction="mean", alpha=0.25, gamma=2.0):
    p = m.torch.sigmoid(x)
    ce = m.F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return _reduce_t(loss, reduction)


def _sce_t(m, x, t, reduction="mean", axis=-1, weight=None, ignore_index=-100,
           label_smoothing=0.0, z_loss=0.0, softcap=None):
    if z_loss or softcap is not None:
        raise Skip("PyTorch's cross_entropy has no z_loss/softcap")
    if x.ndim > 2 and axis % x.ndim != 1:
        x = x.movedim(axis, 1)
    return m.F.cross_entropy(x, t.long(), weight=weight, ignore_index=ignore_index,
                             label_smoothing=label_smoothing, reduction=reduction)


PEERS: dict[str, Peer] = {
    # elementwise
    "relu": Peer(lambda m, x: m.F.relu(x), lambda m, x: m.nn.relu(x)),
    "relu6": Peer(lambda m, x: m.F.relu6(x), lambda m, x: m.nn.relu6(x)),
    "leaky_relu": Peer(lambda m, x, negative_slope=0.01: m.F.leaky_relu(x, negative_slope),
                       lambda m, x, negative_slope=0.01: m.nn.leaky_relu(x, negative_slope)),
    "elu": Peer(lambda m, x, alpha=1.0: m.F.elu(x, alpha),
                lambda m, x, alpha=1.0: m.nn.elu(x, alpha)),
    "selu": Peer(lambda m, x: m.F.selu(x), lambda m, x: m.nn.selu(x)),
    "celu": Peer(lambda m, x, alpha=1.0: m.F.celu(x, alpha),
                 lambda m, x, alpha=1.0: m.nn.celu(x, alpha)),
    "gelu": Peer(lambda m, x, approximate="none": m.F.gelu(x, approximate=approximate),
                 lambda m, x, approximate="none": m.nn.gelu(x, approximate=approximate == "tanh")),
    "silu": Peer(lambda m, x: m.F.silu(x), lambda m, x: m.nn.silu(x)),
    "swish": Peer(lambda m, x, beta=1.0: x * m.torch.sigmoid(beta * x),
                  lambda m, x, beta=1.0: x * m.nn.sigmoid(beta * x)),
    "mish": Peer(lambda m, x: m.F.mish(x), lambda m, x: x * m.jnp.tanh(m.nn.softplus(x))),
    "softplus": Peer(lambda m, x, beta=1.0, threshold=20.0: m.F.softplus(x, beta, threshold),
                     _softplus_j),
    "softsign": Peer(lambda m, x: m.F.softsign(x), lambda m, x: m.nn.soft_sign(x)),
    "sigmoid": Peer(lambda m, x: m.torch.sigmoid(x), lambda m, x: m.nn.sigmoid(x)),
    "hard_sigmoid": Peer(lambda m, x: m.F.hardsigmoid(x), lambda m, x: m.nn.hard_sigmoid(x)),
    "hard_swish": Peer(lambda m, x: m.F.hardswish(x), lambda m, x: m.nn.hard_swish(x)),
    "hardtanh": Peer(lambda m, x, min_val=-1.0, max_val=1.0: m.F.hardtanh(x, min_val, max_val),
                     lambda m, x, min_val=-1.0, max_val=1.0: m.jnp.clip(x, min_val, max_val)),
    "tanh": Peer(lambda m, x: m.torch.tanh(x), lambda m, x: m.jnp.tanh(x)),
    "log_sigmoid": Peer(lambda m, x: m.F.logsigmoid(x), lambda m, x: m.nn.log_sigmoid(x)),
    "softshrink": Peer(lambda m, x, lambd=0.5: m.F.softshrink(x, lambd),
                       lambda m, x, lambd=0.5: m.jnp.where(
                           x > lambd, x - lambd, m.jnp.where(x < -lambd, x + lambd, 0 * x))),
    "hardshrink": Peer(lambda m, x, lambd=0.5: m.F.hardshrink(x, lambd),
                       lambda m, x, lambd=0.5: m.jnp.where(m.jnp.abs(x) > lambd, x, 0 * x)),
    "tanhshrink": Peer(lambda m, x: m.F.tanhshrink(x), lambda m, x: x - m.jnp.tanh(x)),
    "threshold": Peer(lambda m, x, threshold=0.0, value=0.0: m.F.threshold(x, threshold, value),
                      lambda m, x, threshold=0.0, value=0.0: m.jnp.where(x <= threshold,
                                                                        value, x)),
    "squareplus": Peer(lambda m, x, b=4.0: 0.5 * (x + m.torch.sqrt(x * x + b)),
                       lambda m, x, b=4.0: m.nn.squareplus(x, b)),
    # row-wise
    "softmax": Peer(lambda m, x, axis=-1: m.F.softmax(x, dim=axis),
                    lambda m, x, axis=-1: m.nn.softmax(x, axis=axis)),
    "log_softmax": Peer(lambda m, x, axis=-1: m.F.log_softmax(x, dim=axis),
                        lambda m, x, axis=-1: m.nn.log_softmax(x, axis=axis)),
    "softmin": Peer(lambda m, x, axis=-1: m.F.softmin(x, dim=axis),
                    lambda m, x, axis=-1: m.nn.softmax(-x, axis=axis)),
    # gated: first half a, second half b
    "glu": Peer(lambda m, x, axis=-1: m.F.glu(x, dim=axis),
                lambda m, x, axis=-1: m.nn.glu(x, axis=axis)),
    "swiglu": Peer(lambda m, x, axis=-1: (lambda a, b: m.F.silu(a) * b)(*_halves_t(m, x, axis)),
                   lambda m, x, axis=-1: (lambda a, b: m.nn.silu(a) * b)(*_halves_j(m, x, axis))),
    "geglu": Peer(lambda m, x, axis=-1, approximate="none": (
                      lambda a, b: m.F.gelu(a, approximate=approximate) * b)(
                      *_halves_t(m, x, axis)),
                  lambda m, x, axis=-1, approximate="none": (
                      lambda a, b: m.nn.gelu(a, approximate=approximate == "tanh") * b)(
                      *_halves_j(m, x, axis))),
    # parametric
    "prelu": Peer(_prelu_t, _prelu_j, primals=(0, 1)),
    "maxout": Peer(_maxout_t, _maxout_j),
    "argmax": Peer(lambda m, x, axis=-1: m.torch.argmax(x, dim=axis),
                   lambda m, x, axis=-1: m.jnp.argmax(x, axis=axis)),
    # losses (prediction first, target second; reduction as in fastact)
    "mse": Peer(lambda m, x, t, reduction="mean": m.F.mse_loss(x, t, reduction=reduction),
                lambda m, x, t, reduction="mean": _reduce_j(m, (x - t) ** 2, reduction)),
    "l2": Peer(lambda m, x, t, reduction="sum": m.F.mse_loss(x, t, reduction=reduction),
               lambda m, x, t, reduction="sum": _reduce_j(m, (x - t) ** 2, reduction)),
    "rmse": Peer(lambda m, x, t, reduction="mean": (
                     (x - t).abs() if reduction == "none"
                     else m.torch.sqrt(m.F.mse_loss(x, t, reduction=reduction))),
                 lambda m, x, t, reduction="mean": (
                     m.jnp.abs(x - t) if reduction == "none"
                     else m.jnp.sqrt(_reduce_j(m, (x - t) ** 2, reduction)))),
    "mae": Peer(lambda m, x, t, reduction="mean": m.F.l1_loss(x, t, reduction=reduction),
                lambda m, x, t, reduction="mean": _reduce_j(m, m.jnp.abs(x - t), reduction)),
    "l1": Peer(lambda m, x, t, reduction="sum": m.F.l1_loss(x, t, reduction=reduction),
               lambda m, x, t, reduction="sum": _reduce_j(m, m.jnp.abs(x - t), reduction)),
    "huber": Peer(lambda m, x, t, reduction="mean", delta=1.0:
                  m.F.huber_loss(x, t, reduction=reduction, delta=delta),
                  lambda m, x, t, reduction="mean", delta=1.0: _reduce_j(
                      m, _huber_j(m, x - t, delta), reduction)),
    "smooth_l1": Peer(lambda m, x, t, reduction="mean", beta=1.0:
                      m.F.smooth_l1_loss(x, t, reduction=reduction, beta=beta),
                      lambda m, x, t, reduction="mean", beta=1.0: _reduce_j(
                          m, _huber_j(m, x - t, beta) / beta, reduction)),
    "pseudo_huber": Peer(lambda m, x, t, reduction="mean", delta=1.0: _reduce_t(
                             delta * delta * (m.torch.sqrt(1 + ((x - t) / delta) ** 2) - 1),
                             reduction),
                         lambda m, x, t, reduction="mean", delta=1.0: _reduce_j(
                             m, delta * delta * (m.jnp.sqrt(1 + ((x - t) / delta) ** 2) - 1),
                             reduction)),
    "log_cosh": Peer(lambda m, x, t, reduction="mean": _reduce_t(
                         (lambda a: a + m.torch.log1p(m.torch.exp(-2 * a)) - 0.6931471805599453)(
                             (x - t).abs()), reduction),
                     lambda m, x, t, reduction="mean": _reduce_j(
                         m, (lambda a: a + m.jnp.log1p(m.jnp.exp(-2 * a))
                             - 0.6931471805599453)(m.jnp.abs(x - t)), reduction)),
    "hinge": Peer(lambda m, x, t, reduction="mean": _reduce_t(
                      m.torch.relu(1 - m.torch.where(t > 0, 1.0, -1.0) * x), reduction),
                  lambda m, x, t, reduction="mean": _reduce_j(
                      m, m.nn.relu(1 - m.jnp.where(t > 0, 1.0, -1.0) * x), reduction)),
    "squared_hinge": Peer(lambda m, x, t, reduction="mean": _reduce_t(
                              m.torch.relu(1 - m.torch.where(t > 0, 1.0, -1.0) * x) ** 2,
                              reduction),
                          lambda m, x, t, reduction="mean": _reduce_j(
                              m, m.nn.relu(1 - m.jnp.where(t > 0, 1.0, -1.0) * x) ** 2,
                              reduction)),
    "binary_cross_entropy": Peer(
        lambda m, x, t, reduction="mean", weight=None:
        m.F.binary_cross_entropy(x, t, weight=weight, reduction=reduction)),
    "sigmoid_binary_cross_entropy": Peer(
        lambda m, x, t, reduction="mean", weight=None, pos_weight=None:
        m.F.binary_cross_entropy_with_logits(x, t, weight=weight, pos_weight=pos_weight,
                                             reduction=reduction),
        lambda m, x, t, reduction="mean", weight=None, pos_weight=None:
        _bce_logits_j(m, x, t, weight=weight, pos_weight=pos_weight, reduction=reduction)),
    "kl_divergence": Peer(
        lambda m, x, t, reduction="mean", log_target=False:
        m.F.kl_div(x, t, reduction=reduction, log_target=log_target)),
    "sigmoid_focal_loss": Peer(_focal_t),
    "softmax_cross_entropy": Peer(
        lambda m, x, t, reduction="mean", axis=-1, label_smoothing=0.0:
        m.F.cross_entropy(x.movedim(axis, 1) if x.ndim > 2 else x,
                          t.movedim(axis, 1) if t.ndim > 2 else t,
                          reduction=reduction, label_smoothing=label_smoothing),
        lambda m, x, t, reduction="mean", axis=-1, label_smoothing=0.0: _reduce_rows_j(
            m, -((t * (1 - label_smoothing) + label_smoothing / x.shape[axis])
                 * m.nn.log_softmax(x, axis=axis)).sum(axis), reduction)),
    "sparse_softmax_cross_entropy": Peer(_sce_t, _sce_j),
    "nll_loss": Peer(
        lambda m, x, t, reduction="mean", weight=None, ignore_index=-100:
        m.F.nll_loss(x, t.long(), weight=weight, ignore_index=ignore_index,
                     reduction=reduction)),
}


# --------------------------------------------------------------- helpers

def _roles(pass_name: str):
    """(index of the cotangent among the call's args or None, does the pass differentiate)."""
    if pass_name in ("backward", "forward_backward"):
        return 1, True
    return None, pass_name in GRAD_PASSES


def _output_shape(pass_name, y, grads):
    if pass_name == "forward":
        return y
    if pass_name == "backward":
        return grads[0] if len(grads) == 1 else tuple(grads)
    return (y, *grads)


def _empty_like_outputs(result, empty_like):
    """out= for a call whose plain result was ``result`` (None entries for scalars)."""
    def one(r):
        shape = getattr(r, "shape", None)
        return empty_like(r) if shape is not None and len(shape) > 0 else None
    if isinstance(result, tuple):
        outs = tuple(one(r) for r in result)
        return outs if any(o is not None for o in outs) else None
    return one(result)


def _out_forms(result, empty_like):
    """Candidate out= values for a call whose plain result was ``result``."""
    full = _empty_like_outputs(result, empty_like)
    if full is None:
        return []
    forms = [full]
    if isinstance(full, tuple):
        arrays = [o for o in full if o is not None]
        if len(arrays) == 1:
            forms.append(arrays[0])
    return forms


class Prepared:
    """Rotating input sets of one workload for one target, and ``call(i)``."""

    def __init__(self, make_set, run, timer_factory=WallTimer, sync=None):
        self._make_set = make_set
        self._run = run
        self.sets = [make_set()]
        self.timer_factory = timer_factory
        self.sync = sync
        self.info = {"uses_out": False}

    def ensure_sets(self, n: int) -> int:
        while len(self.sets) < n:
            self.sets.append(self._make_set())
        return len(self.sets)

    def call(self, i):
        return self._run(self.sets[i], i)

    def timer(self):
        return self.timer_factory()


# ---------------------------------------------------------------- targets

class Target:
    name = "?"
    device = "cpu"

    def check_available(self):
        """Raise BenchError (one line) when this target cannot run at all."""

    def prepare(self, w) -> Prepared:
        raise NotImplementedError


class FastactTarget(Target):
    """fastact itself: backend "cpu" or "cuda", or the "numpy" baseline."""

    def __init__(self, backend="cpu", use_out=True):
        self.backend = backend
        self.device = "cuda" if backend == "cuda" else "cpu"
        self.name = "numpy" if backend == "numpy" else f"fastact-{backend}"
        self.use_out = use_out

    def check_available(self):
        import fastact
        if self.backend not in fastact.available_backends():
            raise BenchError(f"the fastact {self.backend!r} backend is not available here "
                             f"(available: {', '.join(fastact.available_backends())})")

    def prepare(self, w) -> Prepared:
        import fastact
        op = getattr(fastact, w.op)
        fn = op if w.pass_name == "forward" else getattr(op, w.pass_name, None)
        if fn is None:
            raise Skip(f"{w.op} has no pass {w.pass_name!r}")
        backend = self.backend
        if backend == "cuda":
            from numba import cuda

            def to_dev(o):
                if isinstance(o, np.ndarray):
                    return cuda.to_device(o)
                if isinstance(o, tuple):
                    return tuple(to_dev(v) for v in o)
                if isinstance(o, dict):
                    return {k: to_dev(v) for k, v in o.items()}
                return o

            def make_set():
                return {"args": to_dev(w.args), "kwargs": to_dev(w.kwargs), "out": None}

            def empty_like(r):
                return cuda.device_array(r.shape, dtype=r.dtype)
            timer_factory = CudaEventTimer
        else:
            def make_set():
                return {"args": copy_inputs(w.args), "kwargs": copy_inputs(w.kwargs),
                        "out": None}

            def empty_like(r):
                return np.empty_like(r)
            timer_factory = WallTimer
        state = {"plain": None, "checked": False, "form": 0, "uses_out": self.use_out}

        def run(s, i):
            if state["plain"] is None:                 # first call: no out=, learn the outputs
                r = fn(*s["args"], backend=backend, **s["kwargs"])
                state["plain"] = r
                return r
            if state["uses_out"] and state["plain"] is not False:
                if s["out"] is None:
                    forms = _out_forms(state["plain"], empty_like)
                    if not forms:                      # nothing to preallocate
                        state["plain"] = False
                        state["uses_out"] = False
                        return fn(*s["args"], backend=backend, **s["kwargs"])
                    s["out"] = forms[state["form"]]
                if not state["checked"]:
                    # find the out= form the op accepts: a tuple like its result, or the
                    # single array of a (loss, grad) result; else time with allocation
                    while True:
                        try:
                            r = fn(*s["args"], backend=backend, out=s["out"], **s["kwargs"])
                            state["checked"] = True
                            return r
                        except (TypeError, ValueError, NotImplementedError) as e:
                            state["form"] += 1
                            forms = _out_forms(state["plain"], empty_like)
                            if state["form"] >= len(forms):
                                w.notes.append(f"{w.op}.{w.pass_name}: out= not accepted "
                                               f"({e}); timed with allocation")
                                state["plain"] = False
                                state["uses_out"] = False
                                break
                            s["out"] = forms[state["form"]]
                else:
                    return fn(*s["args"], backend=backend, out=s["out"], **s["kwargs"])
            return fn(*s["args"], backend=backend, **s["kwargs"])

        prep = Prepared(make_set, run, timer_factory)
        prep.info = state
        return prep


class TorchTarget(Target):
    def __init__(self, compiled=False, device="cpu"):
        self.compiled = compiled
        self.device = device
        self.name = "torch-compile" if compiled else "torch"

    def _modules(self):
        try:
            import torch
            import torch.nn.functional as F
        except Exception:
            raise BenchError(f"peer {self.name!r}: PyTorch is not installed "
                             "(pip install torch)") from None
        return torch, F

    def check_available(self):
        torch, _ = self._modules()
        if self.device == "cuda" and not torch.cuda.is_available():
            raise BenchError(f"peer {self.name!r}: this PyTorch build has no CUDA support "
                             "or sees no GPU")
        if self.compiled and not hasattr(torch, "compile"):
            raise BenchError("peer 'torch-compile': this PyTorch has no torch.compile")

    def prepare(self, w) -> Prepared:
        torch, F = self._modules()
        import warnings
        warnings.filterwarnings("ignore", message="reduction: 'mean' divides the total loss",
                                category=UserWarning)
        peer = PEERS.get(w.op)
        if peer is None or peer.torch is None:
            raise Skip(f"no PyTorch equivalent of {w.op} in the peer table")
        m = SimpleNamespace(torch=torch, F=F)
        cot_i, grad = _roles(w.pass_name)
        kw = {k: v for k, v in w.kwargs.items()}
        dev = "cuda" if self.device == "cuda" else "cpu"

        def conv(o):
            if isinstance(o, np.ndarray):
                t = torch.from_numpy(o.copy())
                return t.to(dev) if dev != "cpu" else t
            return o

        def f(*a):
            return peer.torch(m, *a, **kwt)
        kwt = {k: conv(v) for k, v in kw.items()}
        if self.compiled:
            # Dynamo caches per code object (the same `f` for every workload) and falls
            # back to eager past its recompile limit: start each workload afresh.
            torch._dynamo.reset()
            fn = torch.compile(f, dynamic=False)
        else:
            fn = f
        primals = peer.primals

        def make_set():
            a = [conv(v) for i, v in enumerate(w.args) if i != cot_i]
            cot = conv(w.args[cot_i]) if cot_i is not None else None
            if grad:
                for j in primals:
                    if j < len(a):
                        a[j].requires_grad_(True)
            return {"args": a, "cot": cot, "ones": None}

        def run(s, i):
            a = s["args"]
            if not grad:
                with torch.no_grad():
                    return fn(*a)
            y = fn(*a)
            c = s["cot"]
            if c is None:
                if s["ones"] is None:
                    s["ones"] = torch.ones_like(y)
                c = s["ones"]
            gs = torch.autograd.grad(y, [a[j] for j in primals if j < len(a)], c)
            return _output_shape(w.pass_name, y.detach(), gs)

        if self.device == "cuda":
            return Prepared(make_set, run, CudaEventTimer, torch.cuda.synchronize)
        return Prepared(make_set, run, WallTimer)


class JaxTarget(Target):
    name = "jax"

    def __init__(self, device="cpu"):
        self.device = device

    def _modules(self):
        # XLA takes 75% of the GPU's memory at its first use unless told not to;
        # fastact's and torch's buffers share the device with it here.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        try:
            import jax
            import jax.numpy as jnp
        except Exception:
            raise BenchError("peer 'jax': JAX is not installed (pip install jax)") from None
        return jax, jnp

    def check_available(self):
        jax, _ = self._modules()
        if self.device == "cuda":
            try:
                jax.devices("gpu")
            except RuntimeError:
                raise BenchError("peer 'jax': this JAX installation sees no GPU") from None

    def prepare(self, w) -> Prepared:
        jax, jnp = self._modules()
        peer = PEERS.get(w.op)
        if peer is None or peer.jax is None:
            raise Skip(f"no JAX equivalent of {w.op} in the peer table")
        if w.dtype == "float64" and not jax.config.read("jax_enable_x64"):
            jax.config.update("jax_enable_x64", True)
        m = SimpleNamespace(jax=jax, jnp=jnp, nn=jax.nn, lax=jax.lax)
        cot_i, grad = _roles(w.pass_name)
        device = jax.devices("gpu" if self.device == "cuda" else "cpu")[0]

        def conv(o):
            return jax.device_put(o, device) if isinstance(o, np.ndarray) else o
        arrays_kw = {k: conv(v) for k, v in w.kwargs.items() if isinstance(v, np.ndarray)}
        static_kw = {k: v for k, v in w.kwargs.items() if not isinstance(v, np.ndarray)}
        primals = peer.primals
        pass_name = w.pass_name

        # positional arguments that are not arrays (maxout's pieces) stay Python
        # values: traced, they could not give shapes
        inputs = [v for i, v in enumerate(w.args) if i != cot_i]
        static_pos = {i: v for i, v in enumerate(inputs) if not isinstance(v, np.ndarray)}

        def g(a, cot, akw):
            def f(*p):
                full = [static_pos.get(i, v) for i, v in enumerate(a)]
                for j, v in zip(primals, p):
                    full[j] = v
                return peer.jax(m, *full, **static_kw, **akw)
            if not grad:
                return f(*[a[j] for j in primals if j < len(a)])
            y, vjp = jax.vjp(f, *[a[j] for j in primals if j < len(a)])
            c = jnp.ones_like(y) if cot is None else cot
            return _output_shape(pass_name, y, vjp(c))
        jg = jax.jit(g)

        def make_set():
            a = [None if i in static_pos else conv(v) for i, v in enumerate(inputs)]
            cot = conv(w.args[cot_i]) if cot_i is not None else None
            return {"args": a, "cot": cot}

        def run(s, i):
            return jax.block_until_ready(jg(s["args"], s["cot"], arrays_kw))

        return Prepared(make_set, run, WallTimer)


def make_targets(device: str, peers, use_out=True) -> list[Target]:
    """fastact's backend for the device, the NumPy baseline, then the requested peers."""
    # The NumPy baseline runs as a NumPy user writes it: fresh result arrays.
    targets = [FastactTarget("cuda" if device == "cuda" else "cpu", use_out),
               FastactTarget("numpy", False)]
    for p in peers:
        if p == "numpy":
            continue
        if p == "torch":
            targets.append(TorchTarget(False, device))
        elif p == "torch-compile":
            targets.append(TorchTarget(True, device))
        elif p == "jax":
            targets.append(JaxTarget(device))
        else:
            raise BenchError(f"unknown peer {p!r}; choose from {', '.join(PEER_NAMES)}")
    return targets


def peer_coverage() -> dict:
    """{op: [peers with an implementation]} for the registered ops."""
    out = {}
    for name in REGISTRY:
        p = PEERS.get(name)
        out[name] = [] if p is None else [k for k in ("torch", "jax") if getattr(p, k)]
    return out


__all__ = ["PEERS", "PEER_NAMES", "Peer", "Skip", "Target", "FastactTarget", "TorchTarget",
           "JaxTarget", "make_targets", "peer_coverage"]
