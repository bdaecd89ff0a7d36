import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

import fastact  # noqa: E402

FLOATS = (np.float32, np.float64)
# Accuracy bounds of DESIGN.md against a float64 reference.
RTOL = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-13}


def elementwise_variants():
    """(name, choice) for every elementwise op and every value of its choice parameter."""
    out = []
    for spec in fastact.REGISTRY.values():
        if spec.kind == "elementwise":
            for key in spec.scalars:
                out.append((spec.name, key))
    return out


def default_params(spec, name=None):
    """Numeric keyword parameters with their defaults (required ones get test values)."""
    params = {p.name: p.default for p in spec.params if p.choices is None and p.kernel}
    if spec.name == "threshold":
        params = {"threshold": 0.5, "value": -2.0}
    return params


def call_kwargs(spec, choice, params):
    kw = dict(params)
    if choice is not None:
        kw[spec.choice.name] = choice
    return kw


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
