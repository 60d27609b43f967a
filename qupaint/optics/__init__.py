"""Thin-film optics: measured n,k tables and batched transfer-matrix reflectance.

The first stages of the pipeline; nothing here imports a later one (colour, PIA, ...).
The colour of a stack is :func:`qupaint.color.stack_color`.
"""

from __future__ import annotations

from qupaint.optics.materials import (
    FLAKE_MATERIALS,
    get_material,
    list_materials,
    monolayer_thickness_nm,
    refractive_index,
    register_material,
    wavelength_range,
)
from qupaint.optics.tmm import (
    DEFAULT_WAVELENGTHS_NM,
    build_stack,
    flake_layers,
    reflectance,
    stack_reflectance,
)

__all__ = [
    "FLAKE_MATERIALS",
    "DEFAULT_WAVELENGTHS_NM",
    "build_stack",
    "flake_layers",
    "get_material",
    "list_materials",
    "monolayer_thickness_nm",
    "reflectance",
    "refractive_index",
    "register_material",
    "stack_reflectance",
    "wavelength_range",
]
