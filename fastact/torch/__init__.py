"""fastact for PyTorch autograd: ``import fastact.torch as ft``.

``ft.<name>`` for every op of ``fastact.REGISTRY``: the same name and
parameters as ``fa.<name>`` (``axis`` also as ``dim=``), differentiable
(PyTorch custom operators with fastact's fused passes as forward and
backward, traceable by ``torch.compile(fullgraph=True)``).  See
``fastact.torch.ops`` for what each kind saves for the backward.

    y = ft.gelu(h, approximate="tanh")
    loss = ft.sparse_softmax_cross_entropy(logits, labels, label_smoothing=0.1)
    loss.backward()

Modules named as in torch.nn: ``ft.nn.GELU(approximate=)``, ``ft.nn.Softmax(dim=)``,
``ft.nn.CrossEntropyLoss(...)``, ...; ``ft.swap_modules(model)`` replaces the
torch.nn activation modules of a model by them in place.

Only fastact.torch imports torch: ``import fastact`` does not need it.
"""
try:
    import torch as _torch  # noqa: F401
except ImportError as e:  # pragma: no cover - torch is an optional dependency
    raise ImportError("fastact.torch needs PyTorch (pip install torch)") from e

from .ops import FUNCTIONS, OPERATORS

globals().update(FUNCTIONS)

from . import nn  # noqa: E402  (torch.nn-style modules: ft.nn.GELU, ft.nn.CrossEntropyLoss)
from .nn import swap_modules  # noqa: E402

__all__ = sorted(FUNCTIONS) + ["nn", "swap_modules"]
