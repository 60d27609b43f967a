"""Colour science: spectra -> CIE XYZ -> sRGB -> CIELAB, the fused stack colour, and the
layer colour model (predicted colours of 1..N layers on SiO2/Si)."""

from __future__ import annotations

from qupaint.color.camera import Camera
from qupaint.color.convert import (
    SRGB_TO_XYZ,
    XYZ_TO_SRGB,
    delta_e,
    kernel_color_space,
    lab_to_linear_srgb,
    lab_to_srgb,
    lab_to_xyz,
    linear_srgb_to_lab,
    linear_srgb_to_xyz,
    spectra_to_xyz,
    srgb_decode,
    srgb_decode_table,
    srgb_encode,
    srgb_to_lab,
    xyz_to_lab,
    xyz_to_linear_srgb,
)
from qupaint.color.data import cmfs_on, illuminant_on, white_xyz, xyz_weights
from qupaint.color.layers import (
    LayerModel,
    channel_contrast,
    flake_color_table,
    layer_model,
    tmm_substrate_color,
)
from qupaint.color.microscope import Microscope
from qupaint.color.stack import stack_color

__all__ = [
    "Camera",
    "LayerModel",
    "Microscope",
    "SRGB_TO_XYZ",
    "XYZ_TO_SRGB",
    "channel_contrast",
    "cmfs_on",
    "delta_e",
    "flake_color_table",
    "illuminant_on",
    "kernel_color_space",
    "lab_to_linear_srgb",
    "lab_to_srgb",
    "lab_to_xyz",
    "layer_model",
    "linear_srgb_to_lab",
    "linear_srgb_to_xyz",
    "spectra_to_xyz",
    "srgb_decode",
    "srgb_decode_table",
    "srgb_encode",
    "srgb_to_lab",
    "stack_color",
    "tmm_substrate_color",
    "white_xyz",
    "xyz_to_lab",
    "xyz_to_linear_srgb",
    "xyz_weights",
]
