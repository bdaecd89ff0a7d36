"""Loss functions fused with their gradient (registered on import).

``fa.<loss>(pred, target, **options)`` gives the loss;
``fa.<loss>.value_and_grad(pred, target, **options, out=None, backend=None)`` gives
(loss, d loss / d pred) in one pass.  Definitions: ``defs`` (records, NumPy
baselines), ``scalars`` (one jitable scalar per elementwise loss), ``kernels``
(CPU templates), ``op`` (the public object and argument handling).
"""
from . import op  # noqa: F401  (registers LossOp as the class of kind "loss")
from . import defs  # noqa: F401  (fills the registry)
from .op import LossOp, bind_options, prepare_call  # noqa: F401
