"""fastact: fused activation-plus-gradient and loss-plus-gradient kernels.

    import fastact as fa
    y, dydx = fa.gelu.value_and_derivative(x, approximate="tanh")
    dx = fa.silu.backward(x, dy)
"""
__version__ = "0.1.0"

from . import ops as _ops  # noqa: F401  (fills the registry)
from . import axis_api as _axis_api  # noqa: F401  (op classes of the axis ops)
from .api import info
from .dispatch import available_backends, get_backend, set_backend, use_backend
from .registry import REGISTRY


def _export():
    from .api import make_op
    names = []
    for name, spec in REGISTRY.items():
        globals()[name] = make_op(spec)
        names.append(name)
    return names


OPS = _export()

__all__ = ["available_backends", "get_backend", "set_backend", "use_backend", "info",
           "REGISTRY", "OPS", *OPS]
