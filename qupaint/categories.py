"""The thickness categories of QF-Bench (QuPAINT Sec. 4.2): one definition for every stage.

=====  =======  =========  ===========
id     name     layers     phrase
=====  =======  =========  ===========
1      Mono     1          monolayer
2      Few      2-5        few-layer
3      Thick    >= 6       thick
=====  =======  =========  ===========

Examples
--------
>>> [category_of(n) for n in (1, 2, 5, 6, 30)]
[1, 2, 2, 3, 3]
>>> CATEGORY_NAMES[category_of(3)], CATEGORY_IDS["Mono"]
('Few', 1)
"""

from __future__ import annotations

__all__ = [
    "CATEGORIES",
    "CATEGORY_IDS",
    "CATEGORY_NAMES",
    "CATEGORY_PHRASES",
    "FEW",
    "MONO",
    "THICK_MIN_LAYERS",
    "category_of",
]

MONO = 1
FEW = 2
#: the first layer count of the Thick category
THICK_MIN_LAYERS = 6
#: COCO ``categories`` entries, as Synthia and QF-Bench write them
CATEGORIES = [
    {"id": 1, "name": "Mono", "supercategory": "flake"},
    {"id": 2, "name": "Few", "supercategory": "flake"},
    {"id": 3, "name": "Thick", "supercategory": "flake"},
]
CATEGORY_NAMES = {c["id"]: c["name"] for c in CATEGORIES}
CATEGORY_IDS = {c["name"]: c["id"] for c in CATEGORIES}
#: the words used in prose (instructions, answers)
CATEGORY_PHRASES = {1: "monolayer", 2: "few-layer", 3: "thick"}


def category_of(layers: int) -> int:
    """COCO category id of a flake of ``layers`` layers: 1 Mono, 2 Few (2-5), 3 Thick (>= 6)."""
    return 1 if layers == 1 else (2 if layers < THICK_MIN_LAYERS else 3)
