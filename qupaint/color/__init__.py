"""Colour science: spectra -> CIE XYZ -> sRGB -> CIELAB, and the fused stack colour."""

from __future__ import annotations

from qupaint.color.convert import (
    SRGB_TO_XYZ,
    XYZ_TO_SRGB,
    delta_e,
    lab_to_srgb,
    lab_to_xyz,
    linear_srgb_to_xyz,
    spectra_to_xyz,
    srgb_decode,
    srgb_encode,
    srgb_to_lab,
    xyz_to_lab,
    xyz_to_linear_srgb,
)
from qupaint.color.data import cmfs_on, illuminant_on, white_xyz, xyz_weights
from qupaint.color.stack import stack_color

__all__ = [
    "SRGB_TO_XYZ",
    "XYZ_TO_SRGB",
    "cmfs_on",
    "delta_e",
    "illuminant_on",
    "lab_to_srgb",
    "lab_to_xyz",
    "linear_srgb_to_xyz",
    "spectra_to_xyz",
    "srgb_decode",
    "srgb_encode",
    "srgb_to_lab",
    "stack_color",
    "white_xyz",
    "xyz_to_lab",
    "xyz_to_linear_srgb",
    "xyz_weights",
]
