"""Materials database: tables, interpolation, ranges, aliases, user materials."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qupaint.optics import (
    get_material,
    list_materials,
    monolayer_thickness_nm,
    refractive_index,
    register_material,
    wavelength_range,
)

REQUIRED = [
    "air",
    "SiO2",
    "Si",
    "hBN",
    "graphene",
    "MoS2",
    "MoSe2",
    "WS2",
    "WSe2",
    "WTe2",
    "MoWSe2",
]
VISIBLE = np.arange(380.0, 781.0, 5.0)


@pytest.mark.parametrize("name", REQUIRED)
def test_every_material_covers_380_780(name):
    n = refractive_index(name, VISIBLE)
    assert n.dtype == np.complex128 and n.shape == VISIBLE.shape
    assert np.all(np.isfinite(n)) and np.all(n.imag >= 0) and np.all(n.real > 0.5)
    for c in get_material(name).citations():
        assert len(c) > 20  # a real citation line, not a placeholder


def test_known_values_from_tables():
    # SiO2 Malitson Sellmeier at 589.3 nm (sodium D line) is 1.4584 (Malitson 1965)
    assert abs(refractive_index("SiO2", [589.3])[0].real - 1.4584) < 2e-4
    # Si (Green 2008) at 600 nm: n = 3.939, k = 0.0196 in the shipped table
    v = refractive_index("Si", [600.0])[0]
    assert abs(v.real - 3.939) < 5e-3 and abs(v.imag - 0.0196) < 2e-3


def test_linear_interpolation_between_samples():
    from qupaint.optics.materials import _packaged

    t = _packaged("Si__Green2008")
    a, b = t.wavelength_nm[10], t.wavelength_nm[11]
    mid = refractive_index("Si", [(a + b) / 2])[0]
    assert abs(mid.real - (t.n[10] + t.n[11]) / 2) < 1e-12
    assert abs(mid.imag - (t.k[10] + t.k[11]) / 2) < 1e-12


def test_layer_resolved_tables_and_ranges():
    wl = np.array([450.0, 600.0])
    one = refractive_index("MoS2", wl, layers=1)
    bulk = refractive_index("MoS2", wl)
    assert not np.allclose(one, bulk)
    assert np.allclose(refractive_index("MoS2", wl, layers=7), bulk)
    lo, hi = wavelength_range("MoS2", layers=1)
    assert 396 < lo < 398 and 799 < hi < 801
    with pytest.raises(ValueError, match="tabulated on"):
        refractive_index("MoS2", [385.0], layers=1)
    with pytest.raises(ValueError, match="tabulated on"):
        refractive_index("Si", [900.0])
    with pytest.raises(ValueError, match="layers"):
        refractive_index("MoS2", wl, layers=0)


def test_alloy_and_anisotropy_approximations():
    wl = np.linspace(400, 780, 20)
    for nl in (None, 1, 2):
        mo = refractive_index("MoSe2", wl, layers=nl)
        w = refractive_index("WSe2", wl, layers=nl)
        assert np.allclose(refractive_index("MoWSe2", wl, layers=nl, x=1.0), mo)
        assert np.allclose(refractive_index("MoWSe2", wl, layers=nl, x=0.0), w)
        half = refractive_index("MoWSe2", wl, layers=nl)
        assert np.allclose(half**2, 0.5 * (mo**2 + w**2))
    with pytest.raises(ValueError, match="Mo fraction"):
        refractive_index("MoWSe2", wl, x=1.5)
    assert "APPROXIMATION" in get_material("WTe2").note


def test_aliases_and_unknown():
    wl = [500.0]
    for alias in ("BN", "h-BN", "hbn", "HBN"):
        assert refractive_index(alias, wl) == refractive_index("hBN", wl)
    assert refractive_index("Graphene", wl) == refractive_index("graphene", wl)
    with pytest.raises(ValueError, match="unknown"):
        refractive_index("kryptonite", wl)
    with pytest.raises(TypeError):
        refractive_index(3, wl)
    assert set(REQUIRED) <= set(list_materials())


def test_monolayer_thickness():
    assert monolayer_thickness_nm("graphene") == pytest.approx(0.34)
    assert 0.60 < monolayer_thickness_nm("MoS2") < 0.66
    assert 0.32 < monolayer_thickness_nm("BN") < 0.34
    for m in ["MoSe2", "WS2", "WSe2", "WTe2", "MoWSe2"]:
        assert 0.6 < monolayer_thickness_nm(m) < 0.8
        assert get_material(m).thickness_source
    with pytest.raises(ValueError, match="no monolayer"):
        monolayer_thickness_nm("Si")


def test_torch_wavelengths_come_back_as_torch():
    out = refractive_index("SiO2", torch.tensor([500.0, 600.0]))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.complex128


def test_register_material(tmp_path):
    p = tmp_path / "my.csv"
    p.write_text(
        "# Doe et al., J. Made Up 1, 1 (2030)\nwavelength_nm,n,k\n400,2.0,0.1\n800,3.0,0.3\n"
    )
    register_material("Unobtainium", p, monolayer_nm=0.5, aliases=("Ub",))
    v = refractive_index("ub", [600.0])[0]
    assert abs(v - (2.5 + 0.2j)) < 1e-12
    assert monolayer_thickness_nm("Unobtainium") == 0.5
    assert get_material("Ub").citations()[0].startswith("Doe")
    with pytest.raises(ValueError, match="built-in"):
        register_material("MoS2", p)
    bad = tmp_path / "bad.csv"
    bad.write_text("wavelength_nm,n,k\n400,2.0,-0.1\n800,3.0,0.3\n")
    with pytest.raises(ValueError, match="k must be >= 0"):
        register_material("Bad", bad)
    bad.write_text("lambda,n\n400,2.0\n")
    with pytest.raises(ValueError, match="header"):
        register_material("Bad", bad)
