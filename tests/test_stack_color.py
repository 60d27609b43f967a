"""Fused stack colour vs the unfused path spectra_to_xyz(stack_reflectance(...))."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import backend_params

from qupaint.color import spectra_to_xyz, stack_color, xyz_to_lab, xyz_to_linear_srgb
from qupaint.optics import flake_layers, stack_reflectance

BACKENDS = backend_params("stack_color")


def unfused(layers, wl, ill, space, theta0=0.0, pol="u"):
    xyz = spectra_to_xyz(
        stack_reflectance(layers, wl, theta0=theta0, pol=pol, backend="reference"), wl, ill
    )
    return {"xyz": xyz, "linear_srgb": xyz_to_linear_srgb(xyz), "lab": xyz_to_lab(xyz)}[space]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("space", ["xyz", "linear_srgb", "lab"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("ill", ["D65", "A"])
def test_fused_equals_unfused(rng, backend, space, dtype, ill):
    name, dev = backend
    wl = np.arange(400.0, 701.0, 2.0)
    t = torch.as_tensor(rng.uniform(0.6, 40.0, 33), device=dev)
    layers = [("MoS2", t, 4), ("SiO2", 285.0)]
    out = stack_color(layers, wl, ill, space=space, dtype=dtype, backend=name, theta0=0.1)
    expect = unfused([("MoS2", t.cpu().numpy(), 4), ("SiO2", 285.0)], wl, ill, space, 0.1)
    assert out.shape == (33, 3) and out.device.type == dev
    scale = 100.0 if space == "lab" else 1.0
    tol = 1e-11 * scale if dtype == "float64" else 2e-5 * scale
    assert np.abs(out.cpu().double().numpy() - expect).max() < tol


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_stack_and_per_stack_oxide(backend):
    name, dev = backend
    wl = np.arange(400.0, 701.0, 1.0)
    one = stack_color(
        flake_layers("graphene", 1), wl, space="lab", backend=name if dev == "cpu" else "reference"
    )
    assert one.shape == (3,)
    assert np.abs(one - unfused(flake_layers("graphene", 1), wl, "D65", "lab")).max() < 1e-9
    # a different oxide per stack: nothing shared below the flake
    ox = np.array([90.0, 285.0, 300.0])
    out = stack_color(
        [("hBN", np.full(3, 10.0)), ("SiO2", torch.as_tensor(ox, device=dev))],
        wl,
        space="xyz",
        backend=name,
    )
    for i in range(3):
        ref = unfused([("hBN", 10.0), ("SiO2", ox[i])], wl, "D65", "xyz")
        assert np.abs(out[i].cpu().numpy() - ref).max() < 1e-12


def test_bad_arguments():
    with pytest.raises(ValueError, match="space"):
        stack_color(flake_layers("MoS2", 1), space="hsv")
    with pytest.raises(ValueError, match="dtype"):
        stack_color(flake_layers("MoS2", 1), dtype="float16")
    with pytest.raises(ValueError, match="pol"):
        stack_color(flake_layers("MoS2", 1), pol="x")
    with pytest.raises(ValueError, match="360-830"):
        stack_color(flake_layers("MoS2", 1), wavelengths_nm=np.arange(300.0, 500.0))


def test_monolayer_contrast_is_physical():
    # graphene monolayer on 285 nm SiO2 under white light: visible, a few Delta-E units
    sub = stack_color([("SiO2", 285.0)], space="lab")
    g1 = stack_color(flake_layers("graphene", 1), space="lab")
    de = float(np.linalg.norm(g1 - sub))
    assert 1.0 < de < 15.0
    assert g1[0] < sub[0]  # darker than the substrate
