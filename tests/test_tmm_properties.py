"""Property tests (hypothesis) of the transfer-matrix kernels: physics identities that must
hold for every passive stack, on every backend, in float64 and float32.

Each identity compares a backend with itself on two equivalent stacks, so it checks the
kernel without any reference: energy conservation (0 <= R <= 1 since T, A >= 0; R = 1 under
total internal reflection through lossless layers), s = p at normal incidence, a
zero-thickness layer is invisible, a layer split in two is the same layer, and reciprocity
(a lossless stack reflects the same from either side at normal incidence). Examples are
derandomised, so every run tests the same stacks.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TOL, backend_params
from hypothesis import given, settings
from hypothesis import strategies as st

from qupaint.optics import reflectance

WL = np.array([400.0, 487.5, 550.0, 633.0, 700.0])
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None)
DTYPES = ["float64", "float32"]


@st.composite
def stacks(draw, lossless: bool = False, min_layers: int = 3):
    """(n [L, W] complex, d [L]) of a passive stack: lossless outer media, random inner."""
    L = draw(st.integers(min_layers, 6))
    n = np.empty((L, WL.size), complex)
    for i in range(L):
        re = draw(st.floats(1.0, 4.5))
        im = 0.0 if lossless or i in (0, L - 1) else draw(st.floats(0.0, 2.0))
        slope = draw(st.floats(-0.3, 0.3))  # mild dispersion
        n[i] = (re + slope * (WL - 550) / 300) + 1j * im
    d = np.array([np.inf] + [draw(st.floats(0.0, 400.0)) for _ in range(L - 2)] + [np.inf])
    return n, d


def _R(n, d, dtype, backend, theta0=0.0, pol="s"):
    n = n.astype(np.complex64 if dtype == "float32" else np.complex128)
    return np.asarray(reflectance(n, d, WL, theta0=theta0, pol=pol, backend=backend), np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bk", backend_params("tmm_reflectance", ("cpu",)))
@SETTINGS
@given(stack=stacks(), theta=st.floats(0.0, 1.4), pol=st.sampled_from("spu"))
def test_energy_bound(bk, dtype, stack, theta, pol):
    R = _R(*stack, dtype, bk[0], theta, pol)
    assert np.all(R >= -TOL[dtype]) and np.all(R <= 1 + TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bk", backend_params("tmm_reflectance", ("cpu",)))
@SETTINGS
@given(stack=stacks(lossless=True), excess=st.floats(0.05, 0.9), pol=st.sampled_from("spu"))
def test_total_internal_reflection_reflects_everything(bk, dtype, stack, excess, pol):
    n, d = stack
    n[0] = 3.5 + 0j  # dense incident medium, air below: beyond the critical angle T = A = 0
    n[-1] = 1.0 + 0j
    crit = np.arcsin(1.0 / 3.5)
    theta = crit + excess * (np.pi / 2 - crit) * 0.99
    assert np.abs(_R(n, d, dtype, bk[0], theta, pol) - 1).max() < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bk", backend_params("tmm_reflectance", ("cpu",)))
@SETTINGS
@given(stack=stacks())
def test_s_equals_p_at_normal_incidence(bk, dtype, stack):
    assert (
        np.abs(_R(*stack, dtype, bk[0], 0.0, "s") - _R(*stack, dtype, bk[0], 0.0, "p")).max()
        < TOL[dtype]
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bk", backend_params("tmm_reflectance", ("cpu",)))
@SETTINGS
@given(stack=stacks(min_layers=2), data=st.data(), theta=st.floats(0.0, 1.2))
def test_zero_thickness_layer_is_invisible(bk, dtype, stack, data, theta):
    n, d = stack
    at = data.draw(st.integers(1, len(d) - 1))
    extra = data.draw(st.floats(1.0, 4.0)) + 1j * data.draw(st.floats(0.0, 2.0))
    n2, d2 = np.insert(n, at, extra, axis=0), np.insert(d, at, 0.0)
    base, with_layer = _R(n, d, dtype, bk[0], theta, "u"), _R(n2, d2, dtype, bk[0], theta, "u")
    assert np.abs(with_layer - base).max() < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bk", backend_params("tmm_reflectance", ("cpu",)))
@SETTINGS
@given(stack=stacks(), data=st.data(), theta=st.floats(0.0, 1.2))
def test_a_layer_split_in_two_is_the_same_layer(bk, dtype, stack, data, theta):
    n, d = stack
    at = data.draw(st.integers(1, len(d) - 2))
    f = data.draw(st.floats(0.0, 1.0))
    n2 = np.insert(n, at, n[at], axis=0)
    d2 = np.insert(d, at, d[at] * f)
    d2[at + 1] = d[at] * (1 - f)
    base, split = _R(n, d, dtype, bk[0], theta, "u"), _R(n2, d2, dtype, bk[0], theta, "u")
    assert np.abs(split - base).max() < 2 * TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bk", backend_params("tmm_reflectance", ("cpu",)))
@SETTINGS
@given(stack=stacks(lossless=True))
def test_reciprocity_of_lossless_stacks(bk, dtype, stack):
    n, d = stack
    front, back = _R(n, d, dtype, bk[0]), _R(n[::-1].copy(), d[::-1].copy(), dtype, bk[0])
    assert np.abs(front - back).max() < TOL[dtype]
