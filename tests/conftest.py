"""Shared test configuration: backends, dtypes and tolerances in one place."""

from __future__ import annotations

import numpy as np
import pytest

from qupaint import _backend

# Tolerances (absolute, on quantities of order 1).
#   float64 kernels vs the float64 reference: rounding of O(L) complex ops.
#   float32 kernels vs the float64 reference: ~1e-6 relative per op, a few hundred ops.
TOL = {"float64": 1e-10, "float32": 1e-4}
#: agreement of the reference with tmm.coh_tmm (the issue's 1e-10 target)
TMM_TOL = 1e-10


def backend_params(op: str, device_types=("cpu", "cuda")):
    """pytest params for every backend of ``op``; unavailable ones skip with the reason."""
    out = []
    for b in _backend.backends_for(op):
        dev = "cuda" if b in ("cuda", "triton") else "cpu"
        if dev not in device_types:
            continue
        ok, why = _backend.available(b, dev)
        marks = [] if ok else [pytest.mark.skip(reason=f"{b}: {why}")]
        out.append(pytest.param((b, dev), id=b, marks=marks))
    return out


@pytest.fixture
def rng():
    return np.random.default_rng(20260219)
