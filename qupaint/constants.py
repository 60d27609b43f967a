"""Named limits and defaults used across the library, each defined once.

>>> OXIDE_RANGE_NM
(60.0, 320.0)
>>> parse_oxide("auto"), parse_oxide(" 90 "), parse_oxide(None)
('auto', 90.0, None)
"""

from __future__ import annotations

__all__ = ["ANSWER_MIN_SCORE", "MAX_IMAGE_ASPECT", "MAX_IMAGE_PIXELS", "MAX_IMAGE_SIDE",
           "MAX_OXIDE_NM", "MIN_AREA_PX", "MIN_SCORE", "OXIDE_RANGE_NM", "REFERENCE_UM_PER_PX",
           "check_oxide", "parse_oxide"]  # fmt: skip

#: the reference microscope's image scale (um per pixel): a 20x objective on the Sony
#: IMX174 camera of the 2DMatGMM-System (Uslu et al. 2024), the scale of the real
#: micrographs in ``shared/data/real``, of the ``2dmatgmm`` camera preset, of Synthia's
#: default renders and of the QuPAINT model's training windows; the one place it is written
REFERENCE_UM_PER_PX = 0.385

#: SiO2 thicknesses (nm) searched when the oxide is fitted ("auto"): the range of the
#: commercial thermal-oxide wafers flakes are hunted on (90 and 285 nm the most common)
OXIDE_RANGE_NM: tuple[float, float] = (60.0, 320.0)
#: the largest SiO2 thickness (nm) accepted anywhere
MAX_OXIDE_NM = 2000.0
#: the largest image read (pixels; a 1920x1200 micrograph is 2.3 M), ...
MAX_IMAGE_PIXELS = 60_000_000
#: ... its longest side (pixels) ...
MAX_IMAGE_SIDE = 20_000
#: ... and its longest side over its shortest: a 57 KB PNG of 59,000,000 x 1 px held under
#: the pixel limit and took the detector to 14 GB; the shape is checked from the file's
#: header, before anything is decoded
MAX_IMAGE_ASPECT = 20.0
#: detections scoring below this (a probability) are dropped by default
MIN_SCORE = 0.05
#: the smallest flake (pixels) the detector and the segmenter keep where the image scale is
#: not known (``DetectorConfig.min_area_px``, ``qupaint.seg.MIN_AREA_PX``)
MIN_AREA_PX = 100
#: detections scoring at least this answer a question: the physics detector's reference
#: row of QF-Bench's per-task table, and the flake candidates a QuPAINT model reads as its
#: physics evidence (:mod:`qupaint.model.whole_image`)
ANSWER_MIN_SCORE = 0.3


def check_oxide(nm: float, name: str = "oxide_nm") -> float:
    """``nm`` as a float, or ValueError naming ``name`` when it is not in 0-:data:`MAX_OXIDE_NM`.

    >>> check_oxide(285)
    285.0
    """
    import math

    try:
        v = float(nm)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: a thickness in nm; got {nm!r}") from None
    if not (math.isfinite(v) and 0 <= v <= MAX_OXIDE_NM):
        raise ValueError(f"{name} must be in 0-{MAX_OXIDE_NM:.0f} nm; got {nm}")
    return v


def parse_oxide(value, name: str = "oxide_nm") -> float | str | None:
    """An oxide as users write it: a thickness in nm (``"90"``, ``90.0``), ``"auto"`` (fit it
    per image), or None (not given). Raises ValueError naming ``name`` otherwise."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{name}: a thickness in nm or 'auto'; got {value!r}") from None
    return check_oxide(value, name)
