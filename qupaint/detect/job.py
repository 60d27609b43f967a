"""One image file through the detector: the per-image worker that ``qupaint detect``'s batch
(:mod:`qupaint.detect.batch`) and a chip scan (:mod:`qupaint.scan.schedule`) share.

A :class:`DetectJob` is what every worker process needs (the material, the
:class:`~qupaint.detect.config.DetectorSettings`, the minimum score, which masks), typed and
picklable; calling it on a file gives an :class:`ImageResult`: the pixels and the
:class:`~qupaint.detect.detector.DetectionResult`, or why the file could not be read. What
each caller writes from it (COCO JSON and overlays, or database rows) is its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from qupaint._io import read_rgb
from qupaint.detect.config import DetectorSettings
from qupaint.detect.detector import DetectionResult, find_flakes

__all__ = ["DetectJob", "ImageResult"]


@dataclass(frozen=True)
class ImageResult:
    """One image's outcome: its pixels and what the detector found (``detections``: those
    scoring at least the job's ``min_score``), or, for a file that cannot be read,
    ``error`` (and nothing else)."""

    path: str
    image: np.ndarray | None = None
    result: DetectionResult | None = None
    detections: tuple = ()
    error: str | None = None


@dataclass(frozen=True)
class DetectJob:
    """What a worker needs to detect flakes in one image file.

    Parameters
    ----------
    material : str
        The flakes' material.
    settings : DetectorSettings
        Camera, oxide, prior, scale and tuning
        (:meth:`~qupaint.detect.DetectorSettings.from_microscope`).
    min_score : float
        Detections scoring below this are dropped, 0-1.
    masks : bool or "window"
        As :func:`~qupaint.detect.detect`'s ``masks``.
    reader : callable, optional
        ``reader(path) -> [H, W, 3] uint8``, picklable (a module-level function): how a
        frame is read (default :func:`~qupaint._io.read_rgb`; a scan of an OME-TIFF reads
        one series, :func:`qupaint.scan.ome.read_frame`).
    """

    material: str
    settings: DetectorSettings
    min_score: float = 0.0
    masks: bool | str = True
    reader: Callable | None = None

    def __post_init__(self):
        if not isinstance(self.settings, DetectorSettings):
            raise TypeError("settings: a DetectorSettings; got "
                            f"{type(self.settings).__name__}")  # fmt: skip
        if not 0 <= self.min_score <= 1:
            raise ValueError(f"min_score must be in [0, 1]; got {self.min_score}")

    def __call__(self, path: str | os.PathLike, image_id: int | None = None) -> ImageResult:
        """Read ``path`` and detect its flakes; an unreadable or truncated file gives an
        :class:`ImageResult` with its ``error`` instead of raising."""
        try:
            img = (self.reader or read_rgb)(path)
        except (OSError, ValueError) as exc:
            return ImageResult(str(path), error=str(exc))
        res = find_flakes(img, self.material, self.settings, image_id=image_id,
                          masks=self.masks)  # fmt: skip
        kept = tuple(d for d in res.detections if d["score"] >= self.min_score)
        return ImageResult(str(path), img, res, kept)
