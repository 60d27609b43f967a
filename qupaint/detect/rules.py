"""The named rules by which a piece is not reported as a thin flake: one predicate per rule.

The rules of :data:`PIECE_RULES` are functions ``rule(piece, ctx) -> bool`` (True: the rule
rejects the piece), tried in order by :func:`first_rule`; the cheap tests come first. The
last five of :data:`REJECT_RULES` are applied by the detector to each piece left, once the
image's ladder is fitted and the piece is grown into the whole flake:

- :func:`too_small`: under the physical minimum area (``min_area_um2``): dust specks;
- :func:`faint`: mean |C| below ``min_contrast`` or ``noise_contrast`` times the noise, or
  mostly weak pixels: residue films;
- :func:`shading`: a faint, colourless piece at the image border: vignetting the substrate
  field did not follow;
- :func:`fibre`: mean width under ``min_width_px``, or longer than ``max_aspect`` widths:
  fibres and scratches;
- :func:`halo`: mostly within ``halo_px`` of a saturated or bright crystal: its rim and
  shadow;
- :func:`bright`: brighter than any thin flake of the material can be: bulk and saturated
  crystals;
- :func:`off_ladder`: its colour fits no layer of the material (chi-square above
  ``max_chi2``);
- :func:`sliver`: the whole flake (grown into its tails) narrower than ``sliver_width_px``
  and filling under ``sliver_solidity`` of its convex hull: cracks, slivers of a band and
  threads of residue (a cleaved flake is compact);
- :func:`shadow`: darker than ``shadow_dark`` in every channel with an edge blurred wider
  than ``shadow_edge_um``: a shadow or an out-of-focus body (on tape, on a crystal), which
  no colour tells from a dark thin flake, but a flake on the substrate is in focus. The
  detections mostly within ``halo_px`` of a shadow, or of a band's penumbra
  (:func:`band_penumbra_px`: a dark fibre out of focus), are rejected as ``shadow`` too;
- :func:`rim`: more than ``rim_share`` of the ring ``rim_px`` wide around the whole flake is
  bulk crystal (bright, or darker than ``shadow_dark``): a crystal's rim, tip or shaded
  side, where a flake on the substrate is ringed by substrate;
- :func:`thick`: it fits, but with more than ``thin_layers`` layers (reported as Thick).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from qupaint.detect.config import DetectorConfig
from qupaint.detect.pieces import (
    STRONG,
    Piece,
    dilate_cross,
    edge_width_px,
    erode_cross,
    faint_floor,
    grow,
    halo_share,
    pad_window,
    solidity,
    touches_border,
)

__all__ = ["PIECE_RULES", "REJECT_RULES", "RuleContext", "band_penumbra_px", "bright", "faint",
           "fibre", "first_rule", "halo", "mean_width", "off_ladder", "rim", "ring_share",
           "shading", "shadow", "sliver", "thick", "too_small"]  # fmt: skip


@dataclass
class RuleContext:
    """What the rules know of the image besides the piece.

    Attributes
    ----------
    cfg : DetectorConfig
    min_px : float
        The minimum flake area, px (``min_area_um2`` at the image scale).
    cand, bright : ndarray of bool, shape [H, W]
        Candidate pixels (differ from the substrate) and bright pixels (saturated, or
        brighter than a thin flake).
    flags : ndarray of uint8, shape [H, W]
        The per-pixel bits (:func:`~qupaint.detect.pieces.pixel_flags`).
    bright_level : float
        The brightest contrast a thin flake of the material can have (C).
    noise : ndarray, shape [3]
        The substrate's contrast noise per channel (C).
    shape : tuple of 2 ints
        The image's (H, W), px.
    """

    cfg: DetectorConfig
    min_px: float
    cand: np.ndarray
    flags: np.ndarray
    bright: np.ndarray
    bright_level: float
    noise: np.ndarray
    shape: tuple[int, int]


def too_small(p: Piece, ctx: RuleContext) -> bool:
    """Under ``min_px`` pixels, even with its edge pixels (as its mask is reported)."""
    if p.area >= ctx.min_px:
        return False
    return int(grow(p.mask, p.sl, ctx.cfg.box_pad_px, ctx.cand)[0].sum()) < ctx.min_px


def faint(p: Piece, ctx: RuleContext) -> bool:
    """Mean |C| below the faint floor, or at most half of its pixels strong."""
    strength = float(np.abs(p.contrast).mean())
    return (strength < faint_floor(ctx.cfg, ctx.noise)
            or not ((ctx.flags[p.sl][p.mask] & STRONG) > 0).mean() > 0.5)  # fmt: skip


def shading(p: Piece, ctx: RuleContext) -> bool:
    """At the image border, faint (mean |C| under ``shading_contrast``) and colourless
    (channel spread under ``shading_colour`` of its strength)."""
    strength = float(np.abs(p.contrast).mean())
    return (touches_border(p.sl, *ctx.shape) and strength < ctx.cfg.shading_contrast
            and float(np.ptp(p.contrast)) < ctx.cfg.shading_colour * strength)  # fmt: skip


def mean_width(mask: np.ndarray) -> float:
    """Mean width ``2 area / perimeter`` of a mask (px)."""
    return 2.0 * int(mask.sum()) / max(1, int((mask & ~erode_cross(mask)).sum()))


def fibre(p: Piece, ctx: RuleContext) -> bool:
    """Mean width (:func:`mean_width`) of the whole piece (edge pixels included) under
    ``min_width_px``, or longer than ``max_aspect`` widths."""
    grown = grow(p.mask, p.sl, ctx.cfg.box_pad_px, ctx.cand)[0]
    width = mean_width(grown)
    return (
        width < ctx.cfg.min_width_px or int(grown.sum()) / max(width, 1.0) ** 2 > ctx.cfg.max_aspect
    )


def sliver(flake: np.ndarray, cfg: DetectorConfig) -> bool:
    """The whole flake's mask ``flake`` under ``sliver_width_px`` wide (:func:`mean_width`)
    and bent or branched: filling less than ``sliver_solidity`` of its convex hull."""
    return mean_width(flake) < cfg.sliver_width_px and solidity(flake) < cfg.sliver_solidity


def halo(p: Piece, ctx: RuleContext) -> bool:
    """More than ``max_halo`` of it within ``halo_px`` of a bright pixel. Records the share
    in ``p.halo`` (the score uses it)."""
    p.halo = halo_share(ctx.bright, p.sl, p.mask, ctx.cfg.halo_px)
    return p.halo > ctx.cfg.max_halo


def bright(p: Piece, ctx: RuleContext) -> bool:
    """A channel's median contrast above the brightest a thin flake can be."""
    return float(p.contrast.max()) > ctx.bright_level


def off_ladder(chi2: float, cfg: DetectorConfig) -> bool:
    """The piece's chi-square to the nearest rung of the fitted ladder exceeds ``max_chi2``."""
    return chi2 > cfg.max_chi2


#: the image scale at which ``shadow_edge_um`` is measured when an image has none (um/px)
DEFAULT_UM_PER_PX = 0.385


def shadow(contrast: np.ndarray, C: np.ndarray, mask: np.ndarray, y0: int, x0: int,
           cfg: DetectorConfig, um_per_px: float | None) -> bool:  # fmt: skip
    """Darker than ``shadow_dark`` in every channel, with its edge (``mask``, the whole flake
    in a window at (y0, x0) of the contrast map ``C``) blurred wider than ``shadow_edge_um``
    (:func:`~qupaint.detect.pieces.edge_width_px`)."""
    if float(np.max(contrast)) >= cfg.shadow_dark:
        return False
    width_um = edge_width_px(C, mask, y0, x0, contrast) * (um_per_px or DEFAULT_UM_PER_PX)
    return width_um > cfg.shadow_edge_um


def band_penumbra_px(p: Piece, C: np.ndarray, cfg: DetectorConfig,
                     um_per_px: float | None) -> int:  # fmt: skip
    """How far (px) the penumbra of ``p`` reaches if it is a band, else 0. A band is a piece
    rejected as a fibre, darker than ``band_dark`` in every channel, whose edge is blurred
    wider than ``shadow_edge_um``: a fibre out of the focal plane, over the chip. Its
    penumbra (the lighter fringe of its blur) reaches ``penumbra_sigmas`` edge sigmas; the
    detector rejects the detections that lie mostly in it, as it does a shadow's."""
    if p.rejected != "fibre" or float(np.max(p.contrast)) >= cfg.band_dark:
        return 0
    sigma_px = edge_width_px(C, p.mask, p.sl[0].start, p.sl[1].start, p.contrast)
    if sigma_px * (um_per_px or DEFAULT_UM_PER_PX) <= cfg.shadow_edge_um:
        return 0
    return int(round(cfg.penumbra_sigmas * sigma_px))


def rim(C: np.ndarray, bright: np.ndarray, mask: np.ndarray, y0: int, x0: int,
        cfg: DetectorConfig) -> bool:  # fmt: skip
    """More than ``rim_share`` of the ring ``rim_px`` wide around the whole flake (``mask``,
    in a window at (y0, x0) of the contrast map ``C``) is bulk crystal: bright pixels
    (``bright``, saturated or brighter than a thin flake can be) or pixels darker than
    ``shadow_dark`` in every channel. A flake on the substrate is ringed by substrate; what
    a bulk crystal rings is its own rim, tip or shaded side."""
    return ring_share(C, bright, mask, y0, x0, cfg) > cfg.rim_share


def ring_share(C: np.ndarray, bright: np.ndarray, mask: np.ndarray, y0: int, x0: int,
               cfg: DetectorConfig) -> float:  # fmt: skip
    """The share of bulk crystal in the ring around a flake (:func:`rim`), 0 without a ring."""
    own, ya, xa = pad_window(mask, y0, x0, cfg.rim_px, bright.shape)
    yb, xb = ya + own.shape[0], xa + own.shape[1]
    ring = dilate_cross(own, cfg.rim_px) & ~own
    if not ring.any():
        return 0.0
    Cw = C[ya:yb, xa:xb]
    dark = np.maximum(np.maximum(Cw[..., 0], Cw[..., 1]), Cw[..., 2]) < cfg.shadow_dark
    return float((bright[ya:yb, xa:xb] | dark)[ring].mean())


def thick(layers: int, cfg: DetectorConfig) -> bool:
    """More than ``thin_layers`` layers (kept, and reported as Thick)."""
    return layers > cfg.thin_layers


#: the rules tried on a piece before the ladder is fitted, in order
PIECE_RULES: tuple[tuple[str, Callable[[Piece, RuleContext], bool]], ...] = (
    ("too_small", too_small), ("faint", faint), ("shading", shading), ("fibre", fibre),
    ("halo", halo), ("bright", bright),
)  # fmt: skip
#: every rule by which a piece is not reported as a thin flake, in the order they are tried
REJECT_RULES = (*(name for name, _ in PIECE_RULES), "off_ladder", "sliver", "shadow", "rim",
                "thick")  # fmt: skip


def first_rule(p: Piece, ctx: RuleContext) -> str | None:
    """The name of the first rule of :data:`PIECE_RULES` that rejects ``p``, or None."""
    return next((name for name, rule in PIECE_RULES if rule(p, ctx)), None)
