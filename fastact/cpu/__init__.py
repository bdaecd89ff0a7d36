"""CPU lowering: Numba ``njit`` kernels generated from the op definitions."""
