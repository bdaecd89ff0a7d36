"""Differentiable PyTorch functions of every op in ``fastact.REGISTRY``.

Each op is a PyTorch custom operator (``torch.library.custom_op``, namespace
``fastact``) generated from its registry record: a forward operator, a
backward operator, ``register_fake`` for both (shapes and dtypes, so that
``torch.compile(fullgraph=True)`` traces them) and ``register_autograd``.

What the forward saves, per op kind:

* elementwise, rowwise, gated, maxout: x; the backward is one fused pass
  ``op.backward(x, dy)``.  Saving f'(x) from ``value_and_derivative``
  instead would hold a tensor of the same size, but write it in the
  forward (two outputs instead of one), and the row-wise and gated ops have
  no such pass; x costs nothing extra where the caller keeps it anyway.
  (Chosen on traffic counts: a quick timing of gelu on 2^21 float32 on a
  shared 2-core machine could not tell the two apart, 13-16 ms median each.)
* prelu: x and weight; the backward ``op.backward(x, dy, weight)`` gives dx
  and dweight in one pass.
* loss: the gradient, computed in the forward pass (``value_and_grad``, one
  pass) into a new tensor; the backward multiplies it by the upstream
  gradient (a scalar for "mean"/"sum", the per-sample tensor for "none").
  Without autograd (no_grad, or a prediction that needs no gradient) the
  forward computes the loss alone.
* argmax: not differentiable (integer output).

Double backward (a gradient of a gradient) raises RuntimeError: for the
activations when the second backward reaches the op, for the losses already
in a backward with ``create_graph=True`` (their saved gradient is a constant,
so the graph it would build would be silently wrong).  CPU tensors
of float32 and float64 only: other dtypes and devices raise TypeError
(resp. ValueError).
"""
from __future__ import annotations

import keyword

import torch

import fastact as fa
from fastact.registry import REGISTRY, REQUIRED

NAMESPACE = "fastact"
FLOAT_DTYPES = (torch.float32, torch.float64)
# registry parameters that are tensors (loss weights), not scalars
TENSOR_PARAMS = ("weight", "pos_weight")
# loss families whose per-sample ("none") loss drops the class axis
ROW_FAMILIES = ("sparse", "dense", "nll")


# ------------------------------------------------------------ schema

def schema_type(p) -> str:
    """The custom-op schema type of a registry Param."""
    if p.choices is not None:
        return "bool" if isinstance(p.choices[0], bool) else "str"
    if p.name in TENSOR_PARAMS:
        return "Tensor?"
    if p.default is None:
        return "float?"
    if isinstance(p.default, int) and not isinstance(p.default, bool):
        return "int"
    return "float"          # floats, and the required ones (threshold's)


def _attrs(spec):
    """(name, schema type) of the non-tensor arguments of an op's operators,
    in order: maxout's positional ``pieces``, then the registry's params."""
    attrs = [("pieces", "int")] if spec.kind == "maxout" else []
    attrs += [(p.name, schema_type(p)) for p in spec.params]
    return attrs


def _schema(tensors, attrs, returns):
    args = [f"Tensor {t}" for t in tensors] + [f"{ty} {n}" for n, ty in attrs]
    return f"({', '.join(args)}) -> {returns}"


# ------------------------------------------------------------ helpers

def _own(result, *inputs):
    """result, cloned where it shares memory with an input (custom operators
    must not return views of their inputs)."""
    ptr = result.untyped_storage().data_ptr()
    for t in inputs:
        if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() == ptr \
                and result.numel():
            return result.clone()
    return result


def _check_input(name, role, t):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"fastact.torch.{name}: {role} must be a torch.Tensor, "
                        f"got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(f"fastact.torch.{name}: {role} is on {t.device}; only CPU tensors "
                         "are supported for now")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"fastact.torch.{name}: {role} has dtype {t.dtype}; only "
                        "torch.float32 and torch.float64 are supported for now "
                        "(convert with .float() or .double())")


def _no_grad_for(name, role, t):
    if isinstance(t, torch.Tensor) and t.requires_grad:
        raise RuntimeError(f"fastact.torch.{name}: {role} requires grad, but fastact gives "
                           f"no gradient for it (it is a constant); pass {role}.detach()")


def _normalize(axis, ndim):
    nd = max(ndim, 1)
    return axis % nd if -nd <= axis < nd else axis


def _double_backward(name):
    def backward(ctx, *grads):
        raise RuntimeError(f"fastact.torch.{name}: double backward (the gradient of the "
                           "gradient) is not supported; fastact's backward passes are not "
                           "differentiable")
    return backward


def _setup_nothing(ctx, inputs, output):
    pass


def _fake_like(*tensors):
    # fastact's results are new C-contiguous arrays, whatever the inputs' strides
    return tuple(t.new_empty(t.shape) for t in tensors)


# ------------------------------------------------------------ activations

def _out_shape(spec, x, a):
    """Forward output shape of an activation (a: the attribute values by name)."""
    shape = list(x.shape)
    if spec.kind == "gated":
        shape[_normalize(a["axis"], x.dim())] //= 2
    elif spec.kind == "maxout":
        shape[_normalize(a["axis"], x.dim())] //= a["pieces"]
    elif spec.kind == "argmax":
        if shape:
            del shape[_normalize(a["axis"], x.dim())]
    return shape


def _fa_call_parts(spec, attr_names, values):
    a = dict(zip(attr_names, values))
    pos = (a.pop("pieces"),) if spec.kind == "maxout" else ()
    return pos, a


def _make_activation(spec):
    name = spec.name
    op = getattr(fa, name)
    attrs = _attrs(spec)
    attr_names = [n for n, _ in attrs]
    tensors = ("x", "weight") if spec.kind == "prelu" else ("x",)
    n_t = len(tensors)

    def forward_impl(*args):
        pos, kw = _fa_call_parts(spec, attr_names, args[n_t:])
        return _own(op(*args[:n_t], *pos, **kw), *args[:n_t])

    def forward_fake(*args):
        x = args[0]
        a = dict(zip(attr_names, args[n_t:]))
        dtype = torch.int64 if spec.kind == "argmax" else x.dtype
        return x.new_empty(_out_shape(spec, x, a), dtype=dtype)

    fwd = torch.library.custom_op(
        f"{NAMESPACE}::{name}", forward_impl, mutates_args=(), device_types="cpu",
        schema=_schema(tensors, attrs, "Tensor"))
    fwd.register_fake(forward_fake)
    if spec.kind == "argmax":
        return fwd, None

    bwd_tensors = ("x", "dy", *tensors[1:])
    returns = "(Tensor, Tensor)" if spec.kind == "prelu" else "Tensor"

    def backward_impl(*args):
        pos, kw = _fa_call_parts(spec, attr_names, args[n_t + 1:])
        r = op.backward(*args[:n_t + 1], *pos, **kw)
        if isinstance(r, tuple):
            return tuple(_own(t, *args[:n_t + 1]) for t in r)
        return _own(r, *args[:n_t + 1])

    def backward_fake(*args):
        return _fake_like(args[0], args[2]) if spec.kind == "prelu" else _fake_like(args[0])[0]

    bwd = torch.library.custom_op(
        f"{NAMESPACE}::{name}_backward", backward_impl, mutates_args=(), device_types="cpu",
        schema=_schema(bwd_tensors, attrs, returns))
    bwd.register_fake(backward_fake)
    bwd.register_autograd(_double_backward(name), setup_context=_setup_nothing)

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:n_t])
        ctx.attrs = inputs[n_t:]

    def backward(ctx, dy):
        saved = ctx.saved_tensors
        r = bwd(saved[0], dy, *saved[1:], *ctx.attrs)
        grads = r if isinstance(r, tuple) else (r,)
        return (*grads, *([None] * len(attr_names)))

    fwd.register_autograd(backward, setup_context=setup_context)
    return fwd, bwd


# ------------------------------------------------------------ losses

def _loss_shape(spec, pred, a):
    """Shape of the loss: 0-d for a reduction, else per element or per sample."""
    if a["reduction"] != "none":
        return []
    shape = list(pred.shape)
    if spec.extra["family"] in ROW_FAMILIES and shape:
        del shape[_normalize(a.get("axis", -1), pred.dim())]
    return shape


@torch.library.custom_op(f"{NAMESPACE}::loss_backward", mutates_args=(), device_types="cpu")
def loss_backward(grad: torch.Tensor, dloss: torch.Tensor, class_axis: int) -> torch.Tensor:
    """grad * dloss, dloss broadcast over grad (unsqueezed at class_axis when
    that is >= 0: the per-sample upstream gradient of a row loss)."""
    d = dloss.unsqueeze(class_axis) if class_axis >= 0 else dloss
    return grad * d


@loss_backward.register_fake
def _(grad, dloss, class_axis):
    return grad.new_empty(grad.shape)


loss_backward.register_autograd(_double_backward("loss_backward"),
                                setup_context=_setup_nothing)


def _make_loss(spec):
    name = spec.name
    op = getattr(fa, name)
    attrs = _attrs(spec)
    attr_names = [n for n, _ in attrs]

    def kwargs(values):
        kw = dict(zip(attr_names, values))
        for k in TENSOR_PARAMS:
            if kw.get(k) is not None:
                # a NumPy view: fastact caches plans by hashable option values,
                # and would keep a tensor alive in that cache
                kw[k] = kw[k].detach().numpy()
        return kw

    def value_impl(pred, target, *values):
        return _own(op(pred, target, **kwargs(values)), pred, target)

    def value_and_grad_impl(pred, target, *values):
        loss, grad = op.value_and_grad(pred, target, **kwargs(values))
        return _own(loss, pred, target), _own(grad, pred, target)

    def loss_fake(pred, values):
        return pred.new_empty(_loss_shape(spec, pred, dict(zip(attr_names, values))))

    schema = _schema(("pred", "target"), attrs, "Tensor")
    value = torch.library.custom_op(f"{NAMESPACE}::{name}", value_impl, mutates_args=(),
                                    device_types="cpu", schema=schema)
    value.register_fake(lambda pred, target, *v: loss_fake(pred, v))
    vg = torch.library.custom_op(
        f"{NAMESPACE}::{name}_value_and_grad", value_and_grad_impl, mutates_args=(),
        device_types="cpu", schema=_schema(("pred", "target"), attrs, "(Tensor, Tensor)"))
    vg.register_fake(lambda pred, target, *v: (loss_fake(pred, v), pred.new_empty(pred.shape)))

    row = spec.extra["family"] in ROW_FAMILIES

    def setup_context(ctx, inputs, output):
        pred, a = inputs[0], dict(zip(attr_names, inputs[2:]))
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(output[1])
        # the per-sample upstream gradient of a row loss lacks the class axis
        ctx.class_axis = _normalize(a.get("axis", -1), pred.dim()) \
            if row and a["reduction"] == "none" and pred.dim() >= 2 else -1

    def backward(ctx, dloss, _dgrad):
        if torch.is_grad_enabled():
            # the saved gradient is a constant: a graph built through it would
            # give a wrong (zero) second derivative, so refuse instead
            _double_backward(name)(ctx)
        (grad,) = ctx.saved_tensors
        return (loss_backward(grad, dloss, ctx.class_axis), None,
                *([None] * len(attr_names)))

    vg.register_autograd(backward, setup_context=setup_context)
    return value, vg


# ------------------------------------------------------------ public functions

def _doc(spec):
    head = {
        "elementwise": "y = f(x), elementwise; gradient dy * f'(x) (one fused pass from the "
                       "saved x).",
        "rowwise": "Along axis (or dim=, as torch.nn.functional); gradient from the saved x "
                   "in one fused pass.",
        "gated": "x split in halves along axis (or dim=); gradient from the saved x in one "
                 "fused pass.",
        "prelu": "prelu(x, weight, axis=1): gradients for x and for weight (one fused pass "
                 "from the saved x and weight).",
        "maxout": "maxout(x, pieces, axis=-1) (or dim=); gradient to the first maximum of "
                  "each group.",
        "argmax": "argmax(x, axis=-1) (or dim=): int64 indices.  NOT differentiable (its "
                  "output is integer; no gradient flows to x).",
        "loss": "loss(pred, target, ...): differentiable with respect to pred only; the "
                "gradient is computed in the forward (value_and_grad, one pass) and scaled "
                "by the upstream gradient in the backward.  target, and the weight / "
                "pos_weight tensors, are constants: one that requires grad raises "
                "RuntimeError (PyTorch's nll/cross_entropy/BCE give no weight gradient "
                "either).  A floating target is cast to pred's dtype.",
    }[spec.kind]
    return (f"fastact.torch.{spec.name}: differentiable PyTorch version of fastact.{spec.name} "
            f"(CPU, float32/float64; double backward raises).\n\n{head}\n\n{spec.doc}")


def _make_function(spec, extra):
    """A Python function with the op's real signature (generated source, so that
    torch.compile traces it without signature binding)."""
    kind = spec.kind
    positional = {"prelu": ["x", "weight"], "maxout": ["x", "pieces"],
                  "loss": ["pred", "target"]}.get(kind, ["x"])
    kw = []
    for p in spec.params:
        assert p.name.isidentifier() and not keyword.iskeyword(p.name)
        kw.append(p.name if p.default is REQUIRED else f"{p.name}={p.default!r}")
    has_axis = any(p.name == "axis" for p in spec.params)
    if has_axis:
        kw.append("dim=None")
    sig = ", ".join(positional + (["*"] + kw if kw else []))
    call_args = ", ".join(positional + [p.name for p in spec.params])
    lines = [f"def {spec.name}({sig}):"]
    if has_axis:
        lines.append("    axis = axis if dim is None else dim")
    lines.append(f"    return _run({call_args})")
    namespace = {"_run": extra}
    exec("\n".join(lines), namespace)
    f = namespace[spec.name]
    f.__doc__ = _doc(spec)
    f.__module__ = "fastact.torch"
    f.__qualname__ = spec.name
    return f


def _runner(spec, fwd, vg=None):
    name = spec.name
    if spec.kind == "loss":
        elementwise_target = spec.extra["family"] not in ("sparse", "nll")

        def run(pred, target, *values):
            _check_input(name, "pred", pred)
            _no_grad_for(name, "target", target)
            for k, v in zip([p.name for p in spec.params], values):
                if k in TENSOR_PARAMS:
                    _no_grad_for(name, k, v)
            if elementwise_target and isinstance(target, torch.Tensor) \
                    and target.dtype != pred.dtype:
                target = target.to(pred.dtype)
            if pred.requires_grad and torch.is_grad_enabled():
                return vg(pred, target, *values)[0]
            return fwd(pred, target, *values)
        return run
    n_t = 2 if spec.kind == "prelu" else 1

    def run(*args):
        _check_input(name, "x", args[0])
        if n_t == 2:
            _check_input(name, "weight", args[1])
            if args[1].dtype != args[0].dtype:
                raise TypeError(f"fastact.torch.{name}: weight has dtype {args[1].dtype}, "
                                f"x has {args[0].dtype}; they must match")
        return fwd(*args)
    return run


def build():
    """{name: function} for every op of the registry, and {name: (forward
    operator, backward or value_and_grad operator)}."""
    functions, operators = {}, {}
    for spec in REGISTRY.values():
        if spec.kind == "loss":
            fwd, second = _make_loss(spec)
            run = _runner(spec, fwd, second)
        else:
            fwd, second = _make_activation(spec)
            run = _runner(spec, fwd)
        functions[spec.name] = _make_function(spec, run)
        operators[spec.name] = (fwd, second)
    return functions, operators


FUNCTIONS, OPERATORS = build()
