"""Flake hunting on real chips: the product layer right above colour.

- :func:`contrast_map`: the one definition of the per-pixel contrast ``C = I / I_sub - 1``
  (used by the detector, :mod:`qupaint.seg` and the crop measurements);
- :func:`detect`: find and classify thin flakes in a whole micrograph;
- :func:`detect_batch` (``batch``): a folder of chip images into COCO JSON, overlays,
  ``flakes.csv`` and ``report.html``, resumable and parallel;
- :mod:`~qupaint.detect.draw`: outlines and labels on images.
"""

from __future__ import annotations

from qupaint.detect.core import (
    REJECT_RULES,
    ContrastMap,
    DetectorConfig,
    Ladder,
    contrast_map,
    detect,
    estimate_oxide_from_flakes,
    fit_ladder,
    linear_pixels,
    substrate_field,
)

__all__ = [
    "REJECT_RULES",
    "ContrastMap",
    "DetectorConfig",
    "Ladder",
    "contrast_map",
    "detect",
    "detect_batch",
    "estimate_oxide_from_flakes",
    "find_images",
    "fit_ladder",
    "linear_pixels",
    "substrate_field",
]


def __getattr__(name: str):  # the batch runner pulls in PIL and the pool lazily
    if name in ("detect_batch", "find_images"):
        from qupaint.detect import batch

        return getattr(batch, name)
    raise AttributeError(name)
