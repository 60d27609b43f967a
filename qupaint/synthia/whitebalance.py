"""White-balance-aware module (QuPAINT Alg. 1 lines 1-4, 14; Sec. 10.1, Eq. 14-17).

A lab's camera white balance rescales each channel. Assuming a diagonal model, the gain
g = c_ref / c0 maps the physically predicted substrate colour c0 = Phi(R_sub, I) (TMM +
CIE, linear sRGB) onto the substrate colour c_ref measured in the user's (linearised)
reference image; applying the same g to every synthetic flake colour keeps the predicted
flake/substrate contrast while matching the lab's colour rendition. c0 itself is
:func:`qupaint.color.tmm_substrate_color`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qupaint.color import srgb_decode, srgb_decode_table

__all__ = ["reference_substrate_color", "white_balance_gain", "apply_gain"]


def reference_substrate_color(
    image: np.ndarray, mask: np.ndarray | None = None, stride: int = 1, lut=None
) -> np.ndarray:
    """Median linear-sRGB colour of the substrate pixels of a reference image (Alg. 1 line 1).

    ``image``: [H, W, 3] uint8 or float sRGB-encoded; ``mask``: [H, W] bool of substrate
    pixels (default: all). The image is linearised first (Eq. 14), then the per-channel median
    is taken over the mask (robust to flakes and debris that the mask missed). ``stride`` > 1
    takes every stride-th row and column (a faster estimate for large images). ``lut`` [256]
    is the linear value of each uint8 code (default the sRGB curve; a camera's
    ``decode_table()`` for images it wrote).
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3]; got shape {img.shape}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != img.shape[:2]:
            raise ValueError(f"mask must be [H, W] = {img.shape[:2]}; got {mask.shape}")
        if not mask.any():
            raise ValueError("mask selects no substrate pixel")
        sub = img[::stride, ::stride][mask[::stride, ::stride]]
        if sub.size == 0:
            sub = img[mask]
    else:
        sub = img[::stride, ::stride].reshape(-1, 3)
    sub = sub.reshape(-1, 3)
    if sub.dtype == np.uint8:
        # uint8: per-channel counts of the 256 codes; the median of the decoded values is the
        # decoded middle code, or the mean of the two decoded middle codes for an even count
        # (= np.median of the decoded pixels, exactly, without sorting them)
        lut, n = (srgb_decode_table() if lut is None else np.asarray(lut)), len(sub)
        out = np.empty(3)
        for c in range(3):
            cum = np.cumsum(np.bincount(sub[:, c], minlength=256))
            lo, hi = np.searchsorted(cum, [(n - 1) // 2, n // 2], side="right")
            out[c] = 0.5 * (lut[lo] + lut[hi])
        return out
    return np.median(np.asarray(srgb_decode(sub), np.float64), axis=0)


def white_balance_gain(c_ref: Any, c0: Any, normalize: bool = False) -> np.ndarray:
    """g = c_ref / c0 (Eq. 16); with ``normalize`` rescaled so that (1/3) ||g||_1 = 1
    (fixes the global exposure and keeps only the colour cast)."""
    c_ref, c0 = np.asarray(c_ref, np.float64), np.asarray(c0, np.float64)
    if c_ref.shape != (3,) or c0.shape != (3,):
        raise ValueError("c_ref and c0 must be 3-vectors (linear RGB)")
    if np.any(c0 <= 0) or np.any(c_ref < 0) or not np.all(np.isfinite(c_ref)):
        raise ValueError("need c0 > 0 and finite c_ref >= 0 (linear RGB)")
    g = c_ref / c0
    if normalize:
        g = g / (np.abs(g).sum() / 3.0)
    return g


def apply_gain(colors: Any, g: Any) -> np.ndarray:
    """g * c for linear colours [..., 3] (Eq. 17 before clipping, Alg. 1 line 14)."""
    return np.asarray(colors, np.float64) * np.asarray(g, np.float64)
