"""Flake hunting on real chips: the product layer right above colour. One module a concept:

- :mod:`~qupaint.detect.config`: :class:`DetectorConfig`, every setting with its unit, and
  :class:`DetectorSettings` (:meth:`DetectorSettings.from_microscope`: the one door from a
  microscope to detection, for the command line, the scan, the web app and the model);
- :mod:`~qupaint.detect.contrast`: :func:`contrast_map`, the one definition of the per-pixel
  contrast ``C = I / I_sub - 1`` (used by the detector, :mod:`qupaint.seg` and the crop
  measurements);
- :mod:`~qupaint.detect.pieces`: the candidate regions (:class:`Piece`) of an image;
- :mod:`~qupaint.detect.kernels`: the pixel and window kernels (C++ and numpy reference);
- :mod:`~qupaint.detect.morphology`: mask morphology on a piece's window;
- :mod:`~qupaint.detect.rules`: the named rules that reject pieces, one predicate each, in
  one registry (:data:`~qupaint.detect.rules.RULES`);
- :mod:`~qupaint.detect.ladder`: the layer ladder fitted per image (:func:`fit_ladder`);
- :mod:`~qupaint.detect.detector`: :func:`find_flakes` (a :class:`DetectionResult`, in
  six named stages) and :func:`detect` (COCO detections);
- :mod:`~qupaint.detect.calibrate`: a camera file from a few labelled images;
- :mod:`~qupaint.detect.batch`: :func:`detect_batch`, a folder of chip images into COCO
  JSON, overlays, ``flakes.csv`` and ``report.html``, resumable and parallel;
- :mod:`~qupaint.detect.draw`: outlines and labels on images.
"""

from __future__ import annotations

from qupaint.detect.config import DetectorConfig, DetectorSettings
from qupaint.detect.contrast import ContrastMap, contrast_map, linear_pixels, substrate_field
from qupaint.detect.detector import (
    DetectionResult,
    detect,
    estimate_oxide_from_flakes,
    find_flakes,
)
from qupaint.detect.ladder import Ladder, fit_ladder
from qupaint.detect.pieces import Piece
from qupaint.detect.rules import REJECT_RULES

__all__ = [
    "REJECT_RULES",
    "ContrastMap",
    "DetectionResult",
    "DetectorConfig",
    "DetectorSettings",
    "Ladder",
    "Piece",
    "contrast_map",
    "detect",
    "detect_batch",
    "estimate_oxide_from_flakes",
    "find_flakes",
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
