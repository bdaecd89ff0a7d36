"""Op definitions; importing this package fills the registry."""
from . import elementwise, rowwise, axis_ops  # noqa: F401  (axis_ops reuses elementwise)
from .. import losses  # noqa: F401
