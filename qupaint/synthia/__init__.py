"""Synthia building blocks (QuPAINT Alg. 1): flake shapes, white balance, placement.

The image renderer, sharded COCO writer and ``qupaint synthia`` CLI are not built yet.
"""

from __future__ import annotations

from qupaint.synthia.flakes import FlakeShape, random_flake, rasterize, split_terrace
from qupaint.synthia.placement import PlacementGrid, substrate_mask
from qupaint.synthia.whitebalance import (
    apply_gain,
    reference_substrate_color,
    tmm_substrate_color,
    white_balance_gain,
)

__all__ = [
    "FlakeShape",
    "PlacementGrid",
    "apply_gain",
    "random_flake",
    "rasterize",
    "reference_substrate_color",
    "split_terrace",
    "substrate_mask",
    "tmm_substrate_color",
    "white_balance_gain",
]
