"""The named rules by which a piece is not reported as a thin flake: one predicate per rule,
one protocol, one registry (:data:`RULES`).

Every rule is a function ``rule(subject, ctx) -> bool`` (True: the rule rejects it) of a
:class:`Rule` in :data:`RULES`, tried in order by :func:`first_rule`, with the image's
:class:`RuleContext`. A rule reads; it writes nothing (the halo share the score uses is a
measurement of the context, :meth:`RuleContext.halo_share`). Its ``stage`` says what it
judges: ``"piece"`` rules judge a :class:`~qupaint.detect.pieces.Piece` before the ladder
is fitted (the cheap tests first); ``"flake"`` rules judge a :class:`Flake`, a piece once
the image's ladder has classified it, grown into the whole flake:

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
- :func:`thick`: it fits, but with more than ``thin_layers`` layers (reported as Thick:
  its :class:`Rule` ``reports`` it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from qupaint.constants import REFERENCE_UM_PER_PX
from qupaint.detect.config import DetectorConfig
from qupaint.detect.morphology import (
    dilate_cross,
    edge_width_px,
    erode_cross,
    halo_share,
    pad_window,
    solidity,
    touches_border,
)
from qupaint.detect.pieces import STRONG, Piece, faint_floor, grow

__all__ = ["PIECE_RULES", "REJECT_RULES", "RULES", "Flake", "Rule", "RuleContext",
           "band_penumbra_px", "bright", "faint", "fibre", "first_rule", "halo", "mean_width",
           "off_ladder", "rim", "ring_share", "shading", "shadow", "sliver", "thick",
           "too_small"]  # fmt: skip


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
    C : ndarray, shape [H, W, 3] or None
        The contrast map (the flake rules measure edges and rings on it).
    um_per_px : float or None
        The image scale; the edge widths of :func:`shadow` are taken at the reference scale
        without it.
    free : ndarray of bool, shape [H, W] or None
        Candidate pixels no piece's core holds (edges, tails): what a flake grows into.
    """

    cfg: DetectorConfig
    min_px: float
    cand: np.ndarray
    flags: np.ndarray
    bright: np.ndarray
    bright_level: float
    noise: np.ndarray
    shape: tuple[int, int]
    C: np.ndarray | None = None
    um_per_px: float | None = None
    free: np.ndarray | None = None
    _halo: dict = field(default_factory=dict, repr=False)

    def halo_share(self, p: Piece) -> float:
        """The share of ``p`` within ``halo_px`` of a bright pixel, 0-1 (measured once)."""
        got = self._halo.get(id(p))
        if got is None:
            got = self._halo[id(p)] = halo_share(self.bright, p.sl, p.mask, self.cfg.halo_px)
        return got

    @property
    def scale(self) -> float:
        """µm per pixel: the image's, or the reference microscope's when it has none."""
        return self.um_per_px or REFERENCE_UM_PER_PX


@dataclass
class Flake:
    """A piece once the image's ladder has classified it: its nearest rung (``layers``), its
    chi-square to it, its probabilities of being thin and of fitting the ladder, and (on
    first use) the whole flake, :attr:`whole`."""

    piece: Piece
    layers: int
    chi2: float
    p_thin: float
    p_fit: float
    ctx: RuleContext = field(repr=False)

    @property
    def contrast(self) -> np.ndarray:
        return self.piece.contrast

    @cached_property
    def whole(self) -> tuple[np.ndarray, int, int]:
        """(mask, y0, x0): the piece grown over its edge pixels and, unless thick, flooded up
        to ``tail_px`` through candidates of its own colour (:func:`grow`)."""
        p, ctx = self.piece, self.ctx
        reach = 0 if thick(self, ctx) else ctx.cfg.tail_px
        return grow(p.mask, p.sl, ctx.cfg.box_pad_px, ctx.free, ctx.C, p.contrast, ctx.noise,
                    reach)  # fmt: skip


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


def halo(p: Piece, ctx: RuleContext) -> bool:
    """More than ``max_halo`` of it within ``halo_px`` of a bright pixel
    (:meth:`RuleContext.halo_share`)."""
    return ctx.halo_share(p) > ctx.cfg.max_halo


def bright(p: Piece, ctx: RuleContext) -> bool:
    """A channel's median contrast above the brightest a thin flake can be."""
    return float(p.contrast.max()) > ctx.bright_level


def off_ladder(f: Flake, ctx: RuleContext) -> bool:
    """The piece's chi-square to the nearest rung of the fitted ladder exceeds ``max_chi2``."""
    return f.chi2 > ctx.cfg.max_chi2


def sliver(f: Flake, ctx: RuleContext) -> bool:
    """The whole flake under ``sliver_width_px`` wide (:func:`mean_width`) and bent or
    branched: filling less than ``sliver_solidity`` of its convex hull."""
    mask = f.whole[0]
    return (mean_width(mask) < ctx.cfg.sliver_width_px
            and solidity(mask) < ctx.cfg.sliver_solidity)  # fmt: skip


def shadow(f: Flake, ctx: RuleContext) -> bool:
    """Darker than ``shadow_dark`` in every channel, with the whole flake's edge blurred
    wider than ``shadow_edge_um`` (:func:`~qupaint.detect.morphology.edge_width_px`)."""
    if float(np.max(f.contrast)) >= ctx.cfg.shadow_dark:
        return False
    mask, y0, x0 = f.whole
    return edge_width_px(ctx.C, mask, y0, x0, f.contrast) * ctx.scale > ctx.cfg.shadow_edge_um


def rim(f: Flake, ctx: RuleContext) -> bool:
    """More than ``rim_share`` of the ring ``rim_px`` wide around the whole flake is bulk
    crystal (:func:`ring_share`). A flake on the substrate is ringed by substrate; what a
    bulk crystal rings is its own rim, tip or shaded side."""
    mask, y0, x0 = f.whole
    return ring_share(ctx.C, ctx.bright, mask, y0, x0, ctx.cfg) > ctx.cfg.rim_share


def thick(f: Flake, ctx: RuleContext) -> bool:
    """More than ``thin_layers`` layers (kept, and reported as Thick)."""
    return f.layers > ctx.cfg.thin_layers


def ring_share(C: np.ndarray, bright: np.ndarray, mask: np.ndarray, y0: int, x0: int,
               cfg: DetectorConfig) -> float:  # fmt: skip
    """The share of bulk crystal in the ring ``rim_px`` wide around a flake (``mask``, in a
    window at (y0, x0) of the contrast map ``C``): bright pixels (``bright``, saturated or
    brighter than a thin flake can be) or pixels darker than ``shadow_dark`` in every
    channel; 0 without a ring."""
    own, ya, xa = pad_window(mask, y0, x0, cfg.rim_px, bright.shape)
    yb, xb = ya + own.shape[0], xa + own.shape[1]
    ring = dilate_cross(own, cfg.rim_px) & ~own
    if not ring.any():
        return 0.0
    Cw = C[ya:yb, xa:xb]
    dark = np.maximum(np.maximum(Cw[..., 0], Cw[..., 1]), Cw[..., 2]) < cfg.shadow_dark
    return float((bright[ya:yb, xa:xb] | dark)[ring].mean())


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
    if sigma_px * (um_per_px or REFERENCE_UM_PER_PX) <= cfg.shadow_edge_um:
        return 0
    return int(round(cfg.penumbra_sigmas * sigma_px))


@dataclass(frozen=True)
class Rule:
    """A named rule: ``test(subject, ctx) -> bool`` (True: it rejects the subject), judging
    a :class:`~qupaint.detect.pieces.Piece` (``stage="piece"``, before the ladder) or a
    :class:`Flake` (``stage="flake"``, after it). A rule that ``reports`` keeps what it
    names as a detection of its own class (thick flakes); one that ``casts_penumbra``
    rejects bodies whose blurred fringe, lighter than them, rejects the detections that lie
    mostly in it (shadows)."""

    name: str
    stage: str
    test: Callable[..., bool]
    reports: bool = False
    casts_penumbra: bool = False


#: every rule by which a piece is not reported as a thin flake, in the order they are tried
RULES: tuple[Rule, ...] = (
    Rule("too_small", "piece", too_small), Rule("faint", "piece", faint),
    Rule("shading", "piece", shading), Rule("fibre", "piece", fibre),
    Rule("halo", "piece", halo), Rule("bright", "piece", bright),
    Rule("off_ladder", "flake", off_ladder), Rule("sliver", "flake", sliver),
    Rule("shadow", "flake", shadow, casts_penumbra=True), Rule("rim", "flake", rim),
    Rule("thick", "flake", thick, reports=True),
)  # fmt: skip
#: the names of :data:`RULES`, in order
REJECT_RULES = tuple(r.name for r in RULES)
#: the rules tried on a piece before the ladder is fitted
PIECE_RULES = tuple(r for r in RULES if r.stage == "piece")
#: the rules tried on a flake once the ladder has classified it
FLAKE_RULES = tuple(r for r in RULES if r.stage == "flake")


def first_rule(subject, ctx: RuleContext, stage: str = "piece") -> Rule | None:
    """The first rule of ``stage`` (:data:`RULES`) that rejects ``subject``, or None."""
    rules = PIECE_RULES if stage == "piece" else FLAKE_RULES
    return next((r for r in rules if r.test(subject, ctx)), None)
