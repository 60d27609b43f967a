"""Pieces: the connected regions of an image that differ from its substrate, each a
candidate flake (:class:`Piece`).

Per pixel (:func:`pixel_flags`, a C++ kernel with its numpy reference, as every kernel of
:mod:`qupaint.detect.kernels`): CAND (differs from
the substrate by chi-square, not bright), CORE (a candidate off any colour edge), STRONG
(mean |C| above the faint floor) and BRIGHT (saturated, or brighter than a thin flake can
be). The cores, opened with a 3x3 square, are labelled into pieces (:func:`label_pieces`),
so that the terraces of one flake, separated by colour edges, are separate pieces. A piece
is grown back over its edge pixels for its box and mask (:func:`grow`) and, once the ladder
is known, split into its terraces (:func:`split_terraces`). Which pieces are rejected, and
why, is :mod:`qupaint.detect.rules`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qupaint.detect.config import DetectorConfig
from qupaint.detect.contrast import ContrastMap
from qupaint.detect.kernels import (
    BRIGHT,
    CAND,
    CORE,
    STRONG,
    flag_kernel,
    grow,
    label_boxes,
    label_medians,
    label_regions,
    masked_median,
    masked_percentiles,
    median5,
    nearest_rungs,
    open_bit,
)
from qupaint.detect.morphology import mask_extent

__all__ = ["BRIGHT", "CAND", "CORE", "STRONG", "Piece", "faint_floor", "grow", "label_pieces",
           "measure_pieces", "pixel_flags", "split_terraces"]  # fmt: skip


@dataclass
class Piece:
    """One candidate flake of an image.

    Attributes
    ----------
    sl : tuple of 2 slices
        Its window in the image (rows, columns).
    mask : ndarray of bool, shape [h, w]
        Its pixels within the window.
    area : int
        Pixels in ``mask``.
    contrast : ndarray, shape [3]
        Median contrast C (R, G, B) of its pixels, dimensionless.
    box : tuple of 4 ints
        (x, y, w, h) of its pixels in the image, px.
    halo : float
        Share of it within ``halo_px`` of a bright crystal, 0-1: measured
        (:meth:`~qupaint.detect.rules.RuleContext.halo_share`) once the piece rules pass it,
        and inherited by its terraces; 0 before.
    rejected : str or None
        The rule of :data:`~qupaint.detect.rules.REJECT_RULES` that rejected it, or None.
    """

    sl: tuple
    mask: np.ndarray
    area: int
    contrast: np.ndarray
    box: tuple
    halo: float = 0.0
    rejected: str | None = None

    @classmethod
    def of(cls, sl: tuple, mask: np.ndarray, contrast: np.ndarray, halo: float = 0.0) -> Piece:
        """A piece of window ``sl`` and pixels ``mask``; its area and box are measured."""
        (y0, y1), (x0, x1) = mask_extent(mask)
        box = (sl[1].start + x0, sl[0].start + y0, x1 - x0, y1 - y0)
        return cls(sl, mask, int(np.count_nonzero(mask)), contrast, box, halo)


def pixel_flags(cm: ContrastMap, img: np.ndarray, cfg: DetectorConfig, bright_level: float,
                 backend: str | None = None) -> np.ndarray:  # fmt: skip
    """Per-pixel bits: CAND (differs from the substrate, not bright), CORE (a candidate off
    any colour edge), STRONG (mean |C| above the floor), BRIGHT (saturated or brighter than
    a thin flake can be)."""
    fn = flag_kernel(backend)
    return fn(cm.C, img, cm.noise, cfg.saturation, cfg.fg_chi2, faint_floor(cfg, cm.noise),
              bright_level, cfg.edge_sigma**2)  # fmt: skip


def faint_floor(cfg: DetectorConfig, noise: np.ndarray) -> float:
    """The mean |C| below which a pixel or a piece is faint (residue, not a flake)."""
    return max(cfg.min_contrast, cfg.noise_contrast * float(noise.mean()))


def label_pieces(flags: np.ndarray, backend: str | None = None) -> tuple[np.ndarray, int]:
    """Connected pieces of the core pixels (opened with the 3x3 square, so one-pixel bridges
    do not join them)."""
    return label_regions(open_bit(flags, CORE, backend), True, backend)


def measure_pieces(labels: np.ndarray, C: np.ndarray, min_px: float) -> list[Piece]:
    """The :class:`Piece` of each label of ``labels`` [H, W] with its median contrast of
    ``C`` [H, W, 3]; specks under half of ``min_px`` pixels are not even worth explaining."""
    out = []
    boxes, areas = label_boxes(labels)
    keep = np.flatnonzero(areas >= 0.5 * min_px)
    meds = label_medians(labels, C, keep + 1)
    for k, med in zip(keep, meds, strict=True):
        y0, y1, x0, x1 = (int(v) for v in boxes[k])
        sl = (slice(y0, y1), slice(x0, x1))
        out.append(Piece(sl, labels[sl] == k + 1, int(areas[k]), med, (x0, y0, x1 - x0, y1 - y0)))
    return out


def split_terraces(rows: list[Piece], cm: ContrastMap, mu: np.ndarray, cfg: DetectorConfig,
                   min_px: float) -> list[Piece]:  # fmt: skip
    """Split each piece into its terraces: every pixel takes the nearest rung of the fitted
    ladder ``mu``; a rung that covers at least ``min_px`` connected pixels of the piece
    becomes a piece of its own (the rest stays with the largest)."""
    out = []
    for r in rows:
        if r.rejected is not None or r.area < 2 * min_px:
            out.append(r)
            continue
        sl, piece = r.sl, r.mask
        # only the rungs within the piece's colour range (5-95 %, widened by the noise) can
        # be one of its terraces; one such rung: nothing to split
        lo, hi = masked_percentiles(cm.C, sl, piece, (5.0, 95.0))
        pad = 3.0 * np.sqrt(cm.noise**2 + (cfg.rel_sigma * r.contrast) ** 2)
        rungs = np.nonzero(np.all((mu >= lo - pad) & (mu <= hi + pad), axis=1))[0]
        if len(rungs) <= 1:
            out.append(r)
            continue
        cls = nearest_rungs(cm.C, sl, piece, mu[rungs], rungs + 1, cm.noise, cfg.rel_sigma)
        cls = median5(cls, piece)  # blends at the steps go to a side
        # its terraces: the regions of one class, by class and then in raster order
        lab, n = label_regions(cls, True)
        boxes, areas = label_boxes(lab)
        of = np.zeros(n + 1, np.int32)
        of[lab] = cls
        parts = []
        for k in np.lexsort((np.arange(n), of[1:])):
            if areas[k] >= min_px:
                y0, y1, x0, x1 = (int(v) for v in boxes[k])
                sj = (slice(y0, y1), slice(x0, x1))
                parts.append((sj, lab[sj] == k + 1))
        if len(parts) <= 1:
            out.append(r)
            continue
        for sj, sub in parts:
            full = np.zeros(piece.shape, bool)
            full[sj] = sub
            out.append(Piece.of(sl, full, masked_median(cm.C, sl, full), halo=r.halo))
    return out

