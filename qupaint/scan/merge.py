"""One flake, one row: how two views of a flake from overlapping frames become one.

Frames overlap, so a flake near a border is seen twice (or four times at a corner). A new
observation that overlaps a stored flake of another frame (their masks, on the chip's pixel
grid, touch within ``match_px``: :func:`same_flake`) is merged into it (:func:`merge`): a
complete observation (not cut by its frame's border) replaces a cut one; of two complete
ones the larger stays; two cut ones are joined (the union of their masks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qupaint import rle
from qupaint.scan.db import Flake

__all__ = ["Observation", "apply_to", "merge", "observation_of", "same_flake", "shape_stats"]


def shape_stats(mask: np.ndarray) -> tuple[int, float, float, float, float]:
    """(area px, centroid x, centroid y (pixel centres at +0.5), longest and shortest side
    px of the mask's box along its principal axes)."""
    ys, xs = np.nonzero(mask)
    n = len(xs)
    if n == 0:
        return 0, 0.0, 0.0, 0.0, 0.0
    cx, cy = xs.mean() + 0.5, ys.mean() + 0.5
    if n < 3:
        return n, float(cx), float(cy), 1.0, 1.0
    pts = np.stack([xs - xs.mean(), ys - ys.mean()], 1)
    _, vecs = np.linalg.eigh(pts.T @ pts)
    proj = pts @ vecs
    ext = proj.max(0) - proj.min(0) + 1.0
    return n, float(cx), float(cy), float(ext.max()), float(ext.min())


@dataclass
class Observation:
    """One flake as one frame saw it, on the chip's pixel grid."""

    gx: int  # top-left of the mask's box on the chip grid
    gy: int
    mask: np.ndarray  # [h, w] bool
    layers: int
    category: int
    score: float
    contrast: tuple[float, float, float]
    clipped: bool  # cut by the frame's border
    thumbnail: bytes | None = None

    @property
    def area(self) -> int:
        return int(self.mask.sum())


def observation_of(flake: Flake) -> Observation:
    """The :class:`Observation` a stored flake row holds."""
    return Observation(flake.mask_x, flake.mask_y,
                       rle.from_counts(flake.mask_rle, flake.mask_h, flake.mask_w), flake.layers,
                       flake.category, flake.probability,
                       (flake.contrast_r, flake.contrast_g, flake.contrast_b), flake.clipped,
                       flake.thumbnail)  # fmt: skip


def apply_to(flake: Flake, o: Observation, um: float) -> None:
    """Write observation ``o``'s shape and readings into the row ``flake``."""
    area, cx, cy, long_px, short_px = shape_stats(o.mask)
    h, w = o.mask.shape
    mm = um / 1000.0
    flake.layers, flake.category, flake.probability = o.layers, o.category, o.score
    flake.contrast_r, flake.contrast_g, flake.contrast_b = (float(c) for c in o.contrast)
    flake.area_um2 = area * um * um
    flake.max_side_um, flake.min_side_um = long_px * um, short_px * um
    flake.aspect = long_px / max(short_px, 1.0)
    flake.x_mm, flake.y_mm = (o.gx + cx) * mm, (o.gy + cy) * mm
    flake.x0_mm, flake.y0_mm = o.gx * mm, o.gy * mm
    flake.x1_mm, flake.y1_mm = (o.gx + w) * mm, (o.gy + h) * mm
    flake.mask_x, flake.mask_y, flake.mask_w, flake.mask_h = o.gx, o.gy, w, h
    flake.mask_rle = rle.counts(o.mask)
    flake.clipped = o.clipped
    flake.thumbnail = o.thumbnail


def _union(a: Observation, b: Observation) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Both masks on their common box: (gx, gy, mask_a, mask_b)."""
    gx, gy = min(a.gx, b.gx), min(a.gy, b.gy)
    w = max(a.gx + a.mask.shape[1], b.gx + b.mask.shape[1]) - gx
    h = max(a.gy + a.mask.shape[0], b.gy + b.mask.shape[0]) - gy
    ma, mb = np.zeros((h, w), bool), np.zeros((h, w), bool)
    ma[a.gy - gy : a.gy - gy + a.mask.shape[0], a.gx - gx : a.gx - gx + a.mask.shape[1]] = a.mask
    mb[b.gy - gy : b.gy - gy + b.mask.shape[0], b.gx - gx : b.gx - gx + b.mask.shape[1]] = b.mask
    return gx, gy, ma, mb


def same_flake(a: Observation, b: Observation, match_px: int, share: float = 0.3) -> bool:
    """Whether two observations from different frames show one flake: their masks, one
    grown by ``match_px`` (the stage's error), share at least ``share`` of the smaller."""
    from scipy import ndimage

    _, _, ma, mb = _union(a, b)
    pad = match_px
    grown = ndimage.maximum_filter(np.pad(ma, pad), size=2 * pad + 1)[pad:-pad, pad:-pad]
    inter = int((grown & mb).sum())
    return inter >= share * min(int(ma.sum()), int(mb.sum()))


def merge(a: Observation, b: Observation) -> Observation:
    """The flake that observations ``a`` and ``b`` of one flake show together."""
    if a.clipped != b.clipped:  # a complete view wins over a cut one
        return b if a.clipped else a
    if not a.clipped:  # two complete views: the larger (ties: the first)
        return b if b.area > a.area else a
    gx, gy, ma, mb = _union(a, b)  # two cut views: their union, read from the larger
    big = b if b.area > a.area else a
    return Observation(gx, gy, ma | mb, big.layers, big.category, big.score, big.contrast,
                       True, big.thumbnail)  # fmt: skip
