"""torch.nn modules on fastact.torch's functions, named and parametrized as in
torch.nn (``GELU(approximate=)``, ``Softmax(dim=)``, ``CrossEntropyLoss(...)``).

Modules that take ``inplace=`` in torch.nn accept it and compute out of
place (fastact's custom operators return new tensors).  Loss modules keep
their class / element weights as buffers (they follow ``.to()``); the weights
are constants, as in torch.nn.
"""
from __future__ import annotations

import torch

from . import ops as _ops

_F = _ops.FUNCTIONS


def _elementwise(cls_name, op_name, params=(), inplace=False, doc=""):
    """A module class y = fastact.torch.<op_name>(x, **its params)."""
    names = [n for n, _ in params]

    def __init__(self, *args, **kwargs):
        torch.nn.Module.__init__(self)
        values = dict(params)
        if len(args) > len(names) + inplace:
            raise TypeError(f"{cls_name}() takes at most {len(names) + inplace} positional "
                            f"arguments, got {len(args)}")
        values.update(zip(names + (["inplace"] if inplace else []), args))
        for k, v in kwargs.items():
            if k not in values and not (inplace and k == "inplace"):
                raise TypeError(f"{cls_name}() got an unexpected keyword argument {k!r}")
            values[k] = v
        self.inplace = bool(values.pop("inplace", False))
        self._params = {k: values[k] for k in names}
        for k, v in self._params.items():
            setattr(self, k, v)

    def forward(self, x):
        return _F[op_name](x, **self._params)

    def extra_repr(self):
        return ", ".join(f"{k}={v!r}" for k, v in self._params.items())

    return type(cls_name, (torch.nn.Module,), {
        "__init__": __init__, "forward": forward, "extra_repr": extra_repr,
        "__doc__": f"torch.nn.{cls_name} on fastact.torch.{op_name}. {doc}",
        "__module__": __name__})


GELU = _elementwise("GELU", "gelu", [("approximate", "none")])
SiLU = _elementwise("SiLU", "silu", inplace=True)
ReLU = _elementwise("ReLU", "relu", inplace=True)
ReLU6 = _elementwise("ReLU6", "relu6", inplace=True)
LeakyReLU = _elementwise("LeakyReLU", "leaky_relu", [("negative_slope", 0.01)], inplace=True)
ELU = _elementwise("ELU", "elu", [("alpha", 1.0)], inplace=True)
SELU = _elementwise("SELU", "selu", inplace=True)
CELU = _elementwise("CELU", "celu", [("alpha", 1.0)], inplace=True)
Mish = _elementwise("Mish", "mish", inplace=True)
Softplus = _elementwise("Softplus", "softplus", [("beta", 1.0), ("threshold", 20.0)])
Softsign = _elementwise("Softsign", "softsign")
Sigmoid = _elementwise("Sigmoid", "sigmoid")
Tanh = _elementwise("Tanh", "tanh")
LogSigmoid = _elementwise("LogSigmoid", "log_sigmoid")
Hardsigmoid = _elementwise("Hardsigmoid", "hard_sigmoid", inplace=True)
Hardswish = _elementwise("Hardswish", "hard_swish", inplace=True)
Hardtanh = _elementwise("Hardtanh", "hardtanh", [("min_val", -1.0), ("max_val", 1.0)],
                        inplace=True)
Softshrink = _elementwise("Softshrink", "softshrink", [("lambd", 0.5)])
Hardshrink = _elementwise("Hardshrink", "hardshrink", [("lambd", 0.5)])
Tanhshrink = _elementwise("Tanhshrink", "tanhshrink")


class _AlongDim(torch.nn.Module):
    _op = None

    def __init__(self, dim=None):
        super().__init__()
        if dim is None:
            # torch.nn's implicit dim choice is deprecated there; ask for it
            raise TypeError(f"{type(self).__name__}: pass dim= explicitly")
        self.dim = dim

    def forward(self, x):
        return _F[self._op](x, axis=self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Softmax(_AlongDim):
    """torch.nn.Softmax(dim) on fastact.torch.softmax."""
    _op = "softmax"


class LogSoftmax(_AlongDim):
    """torch.nn.LogSoftmax(dim) on fastact.torch.log_softmax."""
    _op = "log_softmax"


class Softmin(_AlongDim):
    """torch.nn.Softmin(dim) on fastact.torch.softmin."""
    _op = "softmin"


class GLU(torch.nn.Module):
    """torch.nn.GLU(dim=-1) on fastact.torch.glu."""

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return _F["glu"](x, axis=self.dim)


class PReLU(torch.nn.Module):
    """torch.nn.PReLU(num_parameters=1, init=0.25): a learnable slope per
    channel (axis 1), gradient for the weight by fastact.torch.prelu."""

    def __init__(self, num_parameters=1, init=0.25, device=None, dtype=None):
        super().__init__()
        self.num_parameters = num_parameters
        self.weight = torch.nn.Parameter(torch.full((num_parameters,), float(init),
                                                    device=device, dtype=dtype))

    def forward(self, x):
        return _F["prelu"](x, self.weight, axis=1)


class _Loss(torch.nn.Module):
    _op = None
    _options = ()           # (torch.nn name, fastact name, default)

    def __init__(self, *args, **kwargs):
        super().__init__()
        names = [n for n, _, _ in self._options]
        # torch.nn's positional order has deprecated arguments (size_average,
        # reduce) in it: only a leading weight may be positional here
        if len(args) > (names[0] == "weight"):
            raise TypeError(f"{type(self).__name__}(): pass the options as keywords"
                            + (" (weight may be positional)" if names[0] == "weight" else ""))
        values = {n: d for n, _, d in self._options}
        values.update(zip(names, args))
        for k, v in kwargs.items():
            if k not in values:
                raise TypeError(f"{type(self).__name__}() got an unexpected keyword "
                                f"argument {k!r}")
            values[k] = v
        self._keys = []
        for n, fa_name, _ in self._options:
            v = values[n]
            if isinstance(v, torch.Tensor):
                self.register_buffer(n, v)
            else:
                setattr(self, n, v)
            self._keys.append((n, fa_name))

    def forward(self, input, target):
        return _F[self._op](input, target, **{f: getattr(self, n) for n, f in self._keys})


def _loss(cls_name, op_name, options):
    return type(cls_name, (_Loss,), {
        "_op": op_name, "_options": tuple(options), "__module__": __name__,
        "__doc__": f"torch.nn.{cls_name}({', '.join(f'{n}={d!r}' for n, _, d in options)}) "
                   f"on fastact.torch.{op_name} (gradient with respect to input only)."})


_R = ("reduction", "reduction", "mean")
CrossEntropyLoss = _loss("CrossEntropyLoss", "sparse_softmax_cross_entropy", [
    ("weight", "weight", None), ("ignore_index", "ignore_index", -100), _R,
    ("label_smoothing", "label_smoothing", 0.0)])
NLLLoss = _loss("NLLLoss", "nll_loss", [("weight", "weight", None),
                                        ("ignore_index", "ignore_index", -100), _R])
MSELoss = _loss("MSELoss", "mse", [_R])
L1Loss = _loss("L1Loss", "mae", [_R])
HuberLoss = _loss("HuberLoss", "huber", [_R, ("delta", "delta", 1.0)])
SmoothL1Loss = _loss("SmoothL1Loss", "smooth_l1", [_R, ("beta", "beta", 1.0)])
BCELoss = _loss("BCELoss", "binary_cross_entropy", [("weight", "weight", None), _R])
BCEWithLogitsLoss = _loss("BCEWithLogitsLoss", "sigmoid_binary_cross_entropy", [
    ("weight", "weight", None), _R, ("pos_weight", "pos_weight", None)])
KLDivLoss = _loss("KLDivLoss", "kl_divergence", [_R, ("log_target", "log_target", False)])

__all__ = ["GELU", "SiLU", "ReLU", "ReLU6", "LeakyReLU", "ELU", "SELU", "CELU", "Mish",
           "Softplus", "Softsign", "Sigmoid", "Tanh", "LogSigmoid", "Hardsigmoid",
           "Hardswish", "Hardtanh", "Softshrink", "Hardshrink", "Tanhshrink", "Softmax",
           "LogSoftmax", "Softmin", "GLU", "PReLU", "CrossEntropyLoss", "NLLLoss", "MSELoss",
           "L1Loss", "HuberLoss", "SmoothL1Loss", "BCELoss", "BCEWithLogitsLoss", "KLDivLoss"]


# torch.nn activation modules that have a counterpart here, with the
# attributes that carry their parameters
_SWAPPABLE = {
    "GELU": ("approximate",), "SiLU": (), "ReLU": (), "ReLU6": (),
    "LeakyReLU": ("negative_slope",), "ELU": ("alpha",), "SELU": (), "CELU": ("alpha",),
    "Mish": (), "Softplus": ("beta", "threshold"), "Softsign": (), "Sigmoid": (),
    "Tanh": (), "LogSigmoid": (), "Hardsigmoid": (), "Hardswish": (),
    "Hardtanh": ("min_val", "max_val"), "Softshrink": ("lambd",),
    "Hardshrink": ("lambd",), "Tanhshrink": (), "Softmax": ("dim",),
    "LogSoftmax": ("dim",), "Softmin": ("dim",), "GLU": ("dim",),
}


def _counterpart(module):
    """The fastact module that computes what a torch.nn activation module
    computes, or None (not an activation of torch.nn, a subclass of one, or
    a Softmax-like module without an explicit dim)."""
    name = type(module).__name__
    if type(module) is getattr(torch.nn, name, None) and name in _SWAPPABLE:
        values = {k: getattr(module, k) for k in _SWAPPABLE[name]}
        if values.get("dim", 0) is None:
            return None
        new = globals()[name](**values)
    elif type(module) is torch.nn.PReLU:
        new = PReLU(module.num_parameters)
        new.weight = module.weight          # the same Parameter: optimizers keep it
    else:
        return None
    new.train(module.training)
    return new


def swap_modules(model: torch.nn.Module) -> int:
    """Replace, in place, every torch.nn activation module inside ``model``
    (its submodules at any depth; not ``model`` itself) by its fastact
    counterpart (GELU, SiLU, ReLU, Softmax(dim=), PReLU with its own weight
    Parameter, ...).  Returns how many it replaced.  Subclasses of torch.nn
    modules and Softmax-like modules without an explicit ``dim`` are left
    as they are."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            new = _counterpart(child)
            if new is not None:
                setattr(parent, name, new)
                count += 1
    return count
