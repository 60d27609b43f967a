"""Thin-film optics: measured n,k tables and batched transfer-matrix reflectance."""

from __future__ import annotations

from qupaint.optics.materials import (
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


def __getattr__(name: str):
    # stack_color is part of the optics API (issue #4) but integrates colour, a later stage;
    # it lives in qupaint.color.stack and is resolved lazily so optics never imports colour.
    if name == "stack_color":
        from qupaint.color.stack import stack_color

        return stack_color
    raise AttributeError(f"module 'qupaint.optics' has no attribute {name!r}")


__all__ = [
    "DEFAULT_WAVELENGTHS_NM",
    "build_stack",
    "flake_layers",
    "get_material",
    "list_materials",
    "monolayer_thickness_nm",
    "reflectance",
    "refractive_index",
    "register_material",
    "stack_color",
    "stack_reflectance",
    "wavelength_range",
]
