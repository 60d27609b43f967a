"""Mask morphology on a piece's small window: the 4-connected cross's erosion and dilation
by shifted boolean operations (several times faster than scipy's on small windows), a mask's
extent, padding and convex-hull solidity, the share near bright pixels, and the blur of an
edge. Pure numpy (and scipy's Sobel and convex hull); no compiled kernel.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["dilate_cross", "edge_width_px", "erode_cross", "halo_share", "mask_extent",
           "pad_window", "solidity", "touches_border"]  # fmt: skip


def mask_extent(mask: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """((y0, y1), (x0, x1)): the half-open rows and columns a non-empty 2-D mask spans (from
    its row and column projections: cheaper than listing its pixels)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return (int(rows[0]), int(rows[-1]) + 1), (int(cols[0]), int(cols[-1]) + 1)


def erode_cross(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_erosion(mask)`` (the 4-connected cross, outside pixels 0) by shifted
    ANDs: on a piece's small window, several times faster."""
    e = mask.copy()
    e[1:] &= mask[:-1]
    e[:-1] &= mask[1:]
    e[:, 1:] &= mask[:, :-1]
    e[:, :-1] &= mask[:, 1:]
    e[0] = e[-1] = False
    e[:, 0] = e[:, -1] = False
    return e


def dilate_cross(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``ndimage.binary_dilation(mask, iterations=...)`` with its default 4-connected cross
    (outside pixels 0), by shifted ORs: on a piece's small window, several times faster."""
    for _ in range(iterations):
        d = mask.copy()
        d[1:] |= mask[:-1]
        d[:-1] |= mask[1:]
        d[:, 1:] |= mask[:, :-1]
        d[:, :-1] |= mask[:, 1:]
        mask = d
    return mask


def halo_share(bright: np.ndarray, sl: tuple, piece: np.ndarray, halo_px: int) -> float:
    """The share of a piece within ``halo_px`` of a bright pixel (its own window only)."""
    H, W = bright.shape
    y0, x0 = max(0, sl[0].start - halo_px), max(0, sl[1].start - halo_px)
    y1, x1 = min(H, sl[0].stop + halo_px), min(W, sl[1].stop + halo_px)
    win = bright[y0:y1, x0:x1]
    if not win.any():
        return 0.0
    near = dilate_cross(win, halo_px)
    py, px = sl[0].start - y0, sl[1].start - x0
    return float(near[py : py + piece.shape[0], px : px + piece.shape[1]][piece].mean())


def edge_width_px(C: np.ndarray, mask: np.ndarray, y0: int, x0: int, contrast) -> float:
    """The blur of a piece's edge: the Gaussian sigma (px) of a step of its contrast whose
    steepest slope is the one measured on its edge.

    ``mask`` [h, w] is the piece in a window whose top-left pixel is (y0, x0) of ``C``
    [H, W, 3], the contrast map, and ``contrast`` [3] its median contrast. In the channel of
    largest |contrast|, the slope is the 75th percentile of the Sobel gradient over the
    piece's boundary ring (a pixel in and out); a Gaussian step of height c and width sigma
    has the steepest slope c / (sigma sqrt(2 pi)). Edges in focus measure 1.5-3 px on a 20x
    objective at the reference scale, ``REFERENCE_UM_PER_PX`` (the contrast map's own 1 px
    blur included)."""
    ch = int(np.argmax(np.abs(contrast)))
    m, wy0, wx0 = pad_window(mask, y0, x0, 2, C.shape[:2])
    win = C[wy0 : wy0 + m.shape[0], wx0 : wx0 + m.shape[1], ch]
    slope = np.hypot(ndimage.sobel(win, 0), ndimage.sobel(win, 1)) / 8.0
    ring = dilate_cross(m, 1) & ~erode_cross(m)
    steep = float(np.percentile(slope[ring], 75)) if ring.any() else 0.0
    return abs(float(contrast[ch])) / max(steep * math.sqrt(2.0 * math.pi), 1e-9)


def pad_window(mask: np.ndarray, y0: int, x0: int, r: int, shape) -> tuple[np.ndarray, int, int]:
    """(own, ya, xa): ``mask``, whose window starts at (y0, x0) of an image of ``shape``
    [H, W], placed in that window grown by ``r`` px on every side and cut to the image;
    (ya, xa) is the grown window's top-left pixel."""
    ya, xa = max(0, y0 - r), max(0, x0 - r)
    yb, xb = min(shape[0], y0 + mask.shape[0] + r), min(shape[1], x0 + mask.shape[1] + r)
    own = np.zeros((yb - ya, xb - xa), bool)
    own[y0 - ya : y0 - ya + mask.shape[0], x0 - xa : x0 - xa + mask.shape[1]] = mask
    return own, ya, xa


def solidity(mask: np.ndarray) -> float:
    """The share of its convex hull that a mask fills (1 for a convex piece); the hull is
    that of the pixels' corners, so a single pixel or a straight line fills it whole."""
    from scipy.spatial import ConvexHull, QhullError

    # the hull of the pixels' squares is that of each row's first and last square
    rows = np.flatnonzero(mask.any(1))
    if len(rows) == 0:
        return 1.0
    first = mask[rows].argmax(1)
    last = mask.shape[1] - mask[rows, ::-1].argmax(1)  # one past the last pixel
    corners = np.r_[np.c_[rows, first], np.c_[rows, last], np.c_[rows + 1, first],
                    np.c_[rows + 1, last]]  # fmt: skip
    try:
        hull = ConvexHull(corners).volume
    except QhullError:  # all corners on one line
        return 1.0
    return min(1.0, float(mask.sum()) / hull)


def touches_border(sl: tuple, H: int, W: int) -> bool:
    """Whether the window ``sl`` reaches an edge of an [H, W] image."""
    return sl[0].start == 0 or sl[1].start == 0 or sl[0].stop == H or sl[1].stop == W

