"""Synthia (QuPAINT Alg. 1): synthetic microscopy images of 2D flakes with COCO labels.

``Synthia(SynthiaConfig(...)).sample(index)`` renders one image; ``generate`` writes a
sharded, resumable data set; ``qupaint synthia`` is the command line.
"""

from __future__ import annotations

from qupaint.categories import CATEGORIES, category_of
from qupaint.color import tmm_substrate_color
from qupaint.synthia.config import SynthiaConfig
from qupaint.synthia.flakes import (
    FlakeShape,
    random_flake,
    rasterize,
    rasterize_local,
    split_terrace,
)
from qupaint.synthia.placement import PlacementGrid, substrate_mask
from qupaint.synthia.render import Sample, Synthia
from qupaint.synthia.whitebalance import (
    apply_gain,
    reference_substrate_color,
    white_balance_gain,
)
from qupaint.synthia.writer import generate, merge, parse_shard

__all__ = [
    "CATEGORIES",
    "FlakeShape",
    "Sample",
    "Synthia",
    "SynthiaConfig",
    "category_of",
    "generate",
    "merge",
    "parse_shard",
    "PlacementGrid",
    "apply_gain",
    "random_flake",
    "rasterize",
    "rasterize_local",
    "reference_substrate_color",
    "split_terrace",
    "substrate_mask",
    "tmm_substrate_color",
    "white_balance_gain",
]
