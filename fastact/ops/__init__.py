"""Op definitions; importing this package fills the registry."""
from . import elementwise, rowwise  # noqa: F401
from .. import losses  # noqa: F401
