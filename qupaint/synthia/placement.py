"""Substrate-aware placement (QuPAINT Alg. 1 lines 5-7 and 11; Sec. 10.2-10.3, Eq. 18-20).

A = PIA map of the background, upsampled to the image; A~ = min-max normalised (Eq. 18);
M_sub = A~ < Perc90(A~) marks clean substrate (Eq. 19). A flake may go only where all of its
pixels lie on clean substrate that no earlier flake occupies (Eq. 20). When no spot is left,
the caller places fewer flakes and records it; flakes never overlap.
"""

from __future__ import annotations

import numpy as np
import torch

from qupaint.pia import pia_map

__all__ = ["substrate_mask", "PlacementGrid"]


def substrate_mask(
    background: np.ndarray, patch_size: int = 8, image_size: int = 512, percentile: float = 90.0
) -> tuple[np.ndarray, np.ndarray]:
    """(M_sub [H, W] bool, A~ [H, W] float32) for an sRGB background [H, W, 3].

    The PIA map is computed on a ``image_size`` square (patch ``patch_size``); the percentile
    threshold is taken over its patches, and mask and map are upsampled (nearest) to H x W.
    A constant background has A~ = 0 everywhere; then every pixel is substrate (nothing
    stands out). Pixels at the map's minimum are always substrate.
    """
    img = np.asarray(background)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"background must be [H, W, 3]; got shape {img.shape}")
    H, W = img.shape[:2]
    a = pia_map(
        torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))),
        patch_size=patch_size,
        image_size=image_size,
    ).numpy()
    # Eq. 19 on the patch map itself (one value per patch, as PIA defines it), then nearest
    # upsampling by exact integer index maps: floor(i k / H).
    k = a.shape[0]
    rows = (np.arange(H) * k) // H
    cols = (np.arange(W) * k) // W
    a_full = a[rows][:, cols]
    if float(a.max()) <= 0.0:
        return np.ones((H, W), bool), a_full
    # Eq. 19 is strict (A~ < tau); when more than (100 - percentile)% of the map ties at its
    # minimum (a clean chip), tau equals that minimum and the strict test would mark nothing,
    # so minimum-contrast patches always count as substrate.
    m = (a < np.percentile(a, percentile)) | (a == a.min())
    return m[rows][:, cols], a_full


class PlacementGrid:
    """Free-space bookkeeping: a pixel is free when it is clean substrate and unoccupied.

    ``try_place`` samples candidate top-left corners uniformly and accepts the first where
    the flake's footprint (alpha > 0) touches no blocked pixel; accepted footprints are
    blocked (plus a ``margin``) so later flakes cannot overlap them.
    """

    def __init__(self, substrate: np.ndarray, margin: int = 2):
        self.blocked = ~np.asarray(substrate, dtype=bool)
        self.margin = int(margin)

    def fits(self, footprint: np.ndarray, x0: int, y0: int) -> bool:
        h, w = footprint.shape
        H, W = self.blocked.shape
        if x0 < 0 or y0 < 0 or x0 + w > W or y0 + h > H:
            return False
        return not bool(np.any(self.blocked[y0 : y0 + h, x0 : x0 + w] & footprint))

    def try_place(
        self, rng: np.random.Generator, footprint: np.ndarray, tries: int = 64
    ) -> tuple[int, int] | None:
        """Top-left (x0, y0) of a free spot for ``footprint`` [h, w] bool, or None."""
        h, w = footprint.shape
        H, W = self.blocked.shape
        if h > H or w > W:
            return None
        for _ in range(tries):
            x0 = int(rng.integers(0, W - w + 1))
            y0 = int(rng.integers(0, H - h + 1))
            if self.fits(footprint, x0, y0):
                self.occupy(footprint, x0, y0)
                return x0, y0
        return None

    def occupy(self, footprint: np.ndarray, x0: int, y0: int) -> None:
        m = self.margin
        h, w = footprint.shape
        H, W = self.blocked.shape
        grown = np.zeros((h + 2 * m, w + 2 * m), bool)
        for dy in range(2 * m + 1):  # dilation by a (2m+1)^2 square
            for dx in range(2 * m + 1):
                grown[dy : dy + h, dx : dx + w] |= footprint
        ya, xa = y0 - m, x0 - m
        sy0, sx0 = max(ya, 0), max(xa, 0)
        sy1, sx1 = min(ya + h + 2 * m, H), min(xa + w + 2 * m, W)
        self.blocked[sy0:sy1, sx0:sx1] |= grown[sy0 - ya : sy1 - ya, sx0 - xa : sx1 - xa]
