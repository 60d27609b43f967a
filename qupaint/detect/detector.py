"""Find and classify thin flakes on a whole micrograph: :func:`find_flakes` (a
:class:`DetectionResult`) and :func:`detect` (its detections, as COCO dicts).

For one micrograph of a known material, seen through a camera (default sRGB under D65):

1. the contrast of every pixel to its substrate (:mod:`qupaint.detect.contrast`);
2. pieces, the regions that differ from the substrate, split along colour edges
   (:mod:`qupaint.detect.pieces`);
3. the named rules that reject pieces (:mod:`qupaint.detect.rules`);
4. the layer ladder fitted to the image's own pieces (:mod:`qupaint.detect.ladder`);
5. the score of each remaining piece: the probability-like ``exp(-fit / fit_scale)`` (fit
   in standard deviations) times a size term ``1 - exp(-area / size_um2)`` times the share
   not in a halo times its probability of being thin (or thick); the report ranks by it.
   The category comes from the layer count (:mod:`qupaint.categories`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from qupaint.categories import category_of
from qupaint.color import Camera, linear_srgb_to_lab
from qupaint.constants import OXIDE_RANGE_NM, parse_oxide
from qupaint.detect.config import DetectorConfig
from qupaint.detect.contrast import as_uint8, contrast_map
from qupaint.detect.ladder import (
    Ladder,
    classify_many,
    fit_ladder,
    hypotheses,
    ladder_grid,
    oxide_prior,
    unlike_the_prior,
)
from qupaint.detect.pieces import (
    BRIGHT,
    CAND,
    dilate_cross,
    grow,
    label_pieces,
    mask_extent,
    measure_pieces,
    pad_window,
    pixel_flags,
    split_terraces,
)
from qupaint.detect.rules import (
    RuleContext,
    band_penumbra_px,
    first_rule,
    off_ladder,
    rim,
    shadow,
    sliver,
    thick,
)
from qupaint.rle import encode_window

__all__ = ["DetectionResult", "detect", "estimate_oxide_from_flakes", "find_flakes"]


@dataclass
class DetectionResult:
    """What :func:`find_flakes` found on one image.

    Attributes
    ----------
    detections : list of dict
        COCO detections sorted by score (see :func:`detect`).
    rejected : list of dict
        One per piece not reported as a thin flake: ``bbox`` [x, y, w, h] px, ``area`` px,
        ``contrast`` (median C per channel) and ``rejected``, the rule of
        :data:`~qupaint.detect.rules.REJECT_RULES` (thick pieces are also detections).
    ladder : Ladder
        The layer ladder fitted to the image (oxide, per-channel response, prior).
    """

    detections: list[dict]
    rejected: list[dict] = field(default_factory=list)
    ladder: Ladder | None = None

    def rejected_by(self) -> dict[str, int]:
        """How many pieces each rule rejected."""
        out: dict[str, int] = {}
        for r in self.rejected:
            out[r["rejected"]] = out.get(r["rejected"], 0) + 1
        return out


def find_flakes(
    image,
    material: str,
    oxide_nm: float | str | None = None,
    config: DetectorConfig | None = None,
    image_id: int | None = None,
    camera: Camera | None = None,
    um_per_px: float | None = None,
    masks: bool | str = False,
    oxide_range: tuple[float, float] = OXIDE_RANGE_NM,
    oxide_prior_nm: float | None = None,
    backend: str | None = None,
) -> DetectionResult:
    """Detect thin flakes in a whole micrograph; the detections, the rejected pieces with
    their rule, and the fitted ladder. The parameters are those of :func:`detect`."""
    cfg = config or DetectorConfig()
    cfg.validate()
    if masks not in (True, False, "window"):
        raise ValueError(f"masks: True, False or 'window'; got {masks!r}")
    if um_per_px is not None and not (np.isfinite(um_per_px) and um_per_px > 0):
        raise ValueError(f"um_per_px must be > 0; got {um_per_px}")
    img = as_uint8(image)
    cam = camera or Camera.srgb("D65")
    H, W = img.shape[:2]
    oxide_nm = parse_oxide(oxide_nm)
    if oxide_nm == "auto":
        oxide_nm = None
    oxide_spec = tuple(oxide_range) if oxide_nm is None else float(oxide_nm)
    prior_nm, prior_sd, prior_source = oxide_prior(img, cam, oxide_nm, oxide_prior_nm,
                                                   oxide_range, cfg)  # fmt: skip
    if prior_nm is not None:  # search where the prior allows
        reach = cfg.prior_reach * prior_sd
        oxide_spec = (max(oxide_range[0], prior_nm - reach),
                      min(oxide_range[1], prior_nm + reach))  # fmt: skip
        if oxide_spec[0] > oxide_spec[1]:
            oxide_spec = tuple(oxide_range)
    cm = contrast_map(img, cam, cfg.blur_sigma_px, cfg.saturation, cfg.block_px,
                      cfg.field_sigma, cfg.min_noise, backend)  # fmt: skip
    bright_level = _bright_level(material, cam, oxide_spec, prior_nm, prior_sd, cfg)
    flags = pixel_flags(cm, img, cfg, bright_level, backend)
    labels, _ = label_pieces(flags, backend)
    min_px = max(4.0, (cfg.min_area_um2 / um_per_px**2) if um_per_px else cfg.min_area_px)
    ctx = RuleContext(cfg, min_px, (flags & CAND) > 0, flags, (flags & BRIGHT) > 0,
                      bright_level, cm.noise, (H, W))  # fmt: skip
    pieces = measure_pieces(labels, cm.C, min_px)
    for p in pieces:
        p.rejected = first_rule(p, ctx)
    # the ladder is fitted to pieces darker than the substrate in some channel: bulk crystals
    # are bright in every channel, and at some other oxide a bright rung would fit them
    # (and not to pieces that no thin flake could be on the chips the prior holds likely:
    # residue would pull the ladder to where it looks like thin flakes)
    fit_rows = [p for p in pieces if p.rejected is None
                and (float(p.contrast.min()) < 0 or not cfg.fit_dark_only)]  # fmt: skip
    unlike = unlike_the_prior(np.array([p.contrast for p in fit_rows]), cm.noise, material,
                              cam, prior_nm, prior_sd, oxide_range, cfg)  # fmt: skip
    fit_rows = sorted((p for p, u in zip(fit_rows, unlike, strict=True) if not u),
                      key=lambda p: -p.area)[: cfg.fit_pieces]  # fmt: skip
    ladder = fit_ladder(np.array([p.contrast for p in fit_rows]).reshape(-1, 3), material, cam,
                        cm.noise, oxide_spec, np.log1p([p.area / min_px for p in fit_rows]),
                        cfg, prior_nm, prior_sd)  # fmt: skip
    ladder.prior = (prior_nm, prior_sd, prior_source)
    pieces = split_terraces(pieces, cm, ladder.contrast, cfg, min_px)
    free = ctx.cand & (labels == 0)  # candidates that no piece's core holds (edges, tails)
    hyp = hypotheses(ladder, cfg)
    sub_lin = cm.substrate  # for delta_e: the mean substrate colour
    sub_lab = linear_srgb_to_lab(sub_lin)
    dets: list[dict] = []
    live = [p for p in pieces if p.rejected is None]
    classes = classify_many(np.array([p.contrast for p in live]).reshape(-1, 3), cm.noise,
                            ladder.contrast, hyp, cfg)  # all pieces at once  # fmt: skip
    labs = []  # each detection's colour, converted together at the end
    shadows, kept = [], []  # shadows' masks; each detection's piece and mask (penumbra test)
    for p in pieces:  # the bands' penumbrae count as shadows
        reach = band_penumbra_px(p, cm.C, cfg, um_per_px)
        if reach:
            shadows.append(_reach(p.mask, p.sl[0].start, p.sl[1].start, reach, (H, W)))
    for p, (nl, d2min, p_thin, p_fit) in zip(live, classes, strict=True):
        med = p.contrast
        if off_ladder(d2min, cfg):
            p.rejected = "off_ladder"
            continue
        fit = math.sqrt(d2min / 3.0)
        reach = cfg.tail_px if not thick(nl, cfg) else 0
        grown, gy, gx = grow(p.mask, p.sl, cfg.box_pad_px, free, cm.C, med, cm.noise,
                             reach)  # the whole flake  # fmt: skip
        if sliver(grown, cfg):
            p.rejected = "sliver"
            continue
        if shadow(med, cm.C, grown, gy, gx, cfg, um_per_px):
            p.rejected = "shadow"
            shadows.append((grown, gy, gx))
            continue
        if rim(cm.C, ctx.bright, grown, gy, gx, cfg):
            p.rejected = "rim"
            continue
        area = int(grown.sum())
        area_um2 = area * um_per_px**2 if um_per_px else area / min_px * cfg.min_area_um2
        p_class = p_thin if not thick(nl, cfg) else 1.0 - p_thin
        score = (math.exp(-fit / cfg.fit_scale) * (1.0 - math.exp(-area_um2 / cfg.size_um2))
                 * (1.0 - p.halo) * p_class)  # fmt: skip
        (y0, y1), (x0, x1) = mask_extent(grown)
        x0, y0, x1, y1 = gx + x0, gy + y0, gx + x1, gy + y1
        labs.append(sub_lin * (1.0 + med))
        d = {
            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
            "score": float(score),
            "category_id": category_of(nl),
            "layers": nl,
            "contrast": [round(float(c), 5) for c in med],
            "fit_sigma": fit,
            "p_thin": round(float(p_thin), 4),
            "p_fit": round(float(p_fit), 4),
            "area": area,
        }
        if thick(nl, cfg):
            p.rejected = "thick"
        if um_per_px:
            d["area_um2"] = float(area * um_per_px**2)
        if masks == "window":  # the mask cut to its box, no image-size RLE to encode
            d["mask"] = np.ascontiguousarray(grown[y0 - gy : y1 - gy, x0 - gx : x1 - gx])
        elif masks:
            d["segmentation"] = encode_window(grown, gy, gx, H, W)
        if image_id is not None:
            d["image_id"] = image_id
        dets.append(d)
        kept.append((p, grown, gy, gx))
    if shadows:  # a shadow's blurred fringe, lighter than it, is its penumbra
        dets, labs = _drop_penumbrae(dets, labs, kept, shadows, (H, W), cfg)
    if dets:  # the colour difference to the substrate, all detections in one conversion
        lab = np.asarray(linear_srgb_to_lab(np.array(labs)))
        for d, row in zip(dets, lab, strict=True):
            d["delta_e"] = float(np.linalg.norm(row - sub_lab))
    dets.sort(key=lambda d: -d["score"])
    rejected = [{"bbox": [float(v) for v in p.box], "area": p.area,
                 "contrast": [round(float(c), 4) for c in p.contrast],
                 "rejected": p.rejected} for p in pieces if p.rejected is not None]  # fmt: skip
    return DetectionResult(dets, rejected, ladder)


def _bright_level(material: str, cam: Camera, oxide_spec, prior_nm, prior_sd,
                  cfg: DetectorConfig) -> float:  # fmt: skip
    """The brightest contrast a thin flake of ``material`` can have over the oxides
    considered (the prior's likely range when there is one), plus ``cfg.bright``."""
    if isinstance(oxide_spec, tuple):
        lo, hi = oxide_spec
    else:
        lo, hi = oxide_spec - cfg.oxide_window_nm, oxide_spec + cfg.oxide_window_nm
    if prior_nm is not None:
        lo = max(lo, prior_nm - prior_sd)
        hi = min(hi, prior_nm + prior_sd)
    probe = tuple(np.round(np.linspace(max(0.0, lo), max(lo, hi), 9), 3))
    thin_mu = ladder_grid(material, cfg.max_layers, probe, cam)[:, : cfg.thin_layers]
    return max(0.0, float(thin_mu.max())) + cfg.bright


def _reach(mask: np.ndarray, y0: int, x0: int, r: int, shape) -> tuple[np.ndarray, int, int]:
    """(the pixels within ``r`` px (taxicab: ``r`` cross dilations) of ``mask``, whose
    window starts at (y0, x0) of an image of ``shape``, in a window cut to the image, its top
    row, its left column)."""
    own, ya, xa = pad_window(mask, y0, x0, r, shape)
    return dilate_cross(own, r), ya, xa


def _drop_penumbrae(dets, labs, kept, shadows, shape, cfg: DetectorConfig):
    """The detections (and their colours) without those that lie, for more than
    ``max_halo`` of their area, within ``halo_px`` of a shadow: its penumbra (rejected as
    "shadow" too), as the halo rule treats the rim of a bright crystal."""
    r = cfg.halo_px  # the shadows' neighbourhood, dilated within their joint box only
    y0 = max(0, min(y for _, y, _ in shadows) - r)
    x0 = max(0, min(x for _, _, x in shadows) - r)
    y1 = min(shape[0], max(y + m.shape[0] for m, y, _ in shadows) + r)
    x1 = min(shape[1], max(x + m.shape[1] for m, _, x in shadows) + r)
    near = np.zeros(shape, bool)
    win = near[y0:y1, x0:x1]
    for m, y, x in shadows:
        win[y - y0 : y - y0 + m.shape[0], x - x0 : x - x0 + m.shape[1]] |= m
    near[y0:y1, x0:x1] = dilate_cross(win, r)
    out, out_labs = [], []
    for d, lab, (p, m, y, x) in zip(dets, labs, kept, strict=True):
        if near[y : y + m.shape[0], x : x + m.shape[1]][m].mean() > cfg.max_halo:
            p.rejected = "shadow"
        else:
            out.append(d)
            out_labs.append(lab)
    return out, out_labs


def detect(
    image,
    material: str,
    oxide_nm: float | str | None = None,
    config: DetectorConfig | None = None,
    image_id: int | None = None,
    camera: Camera | None = None,
    um_per_px: float | None = None,
    masks: bool | str = False,
    explain: list | None = None,
    oxide_range: tuple[float, float] = OXIDE_RANGE_NM,
    oxide_prior_nm: float | None = None,
    backend: str | None = None,
) -> list[dict]:
    """Detect thin flakes in a whole micrograph ``image`` [H, W, 3] (uint8 or float in [0, 1]).

    Parameters
    ----------
    image : array, shape [H, W, 3]
        sRGB, uint8 or float in [0, 1].
    material : str
        The flakes' material (:func:`qupaint.optics.get_material` names it).
    oxide_nm : float, "auto" or None
        SiO2 thickness in nm, refined within ``config.oxide_window_nm``; None or ``"auto"``
        fits it per image within ``oxide_range`` (nm).
    config : DetectorConfig, optional
        The detector's settings.
    image_id : int, optional
        Written into every detection.
    camera : Camera, optional
        What the image was taken through (default sRGB under D65).
    um_per_px : float, optional
        Image scale in µm per pixel: the physical minimum size (``config.min_area_um2``) and
        areas in µm²; without it the minimum is ``config.min_area_px``.
    masks : bool or "window"
        Add each detection's ``segmentation`` (COCO RLE of the whole image); ``"window"``:
        its ``mask`` instead, a bool array of its box (``bbox``), for a caller that works
        on the box (a chip scan) and would otherwise decode the RLE again.
    explain : list, optional
        Receives one dict per piece that was not reported (:attr:`DetectionResult.rejected`)
        and, last, ``{"ladder": Ladder}``.
    oxide_range : (float, float)
        The oxides searched in auto mode, nm.
    oxide_prior_nm : float, optional
        A calibrated camera's chip, nm: the prior of the fitted oxide.
    backend : str, optional
        ``"cpu"`` (C++ kernels) or ``"reference"`` (numpy).

    Returns
    -------
    list of dict
        COCO detections sorted by score: ``bbox`` [x, y, w, h] px, ``score``,
        ``category_id`` (1 Mono, 2 Few, 3 Thick), ``layers``, ``contrast`` (median C per
        channel), ``fit_sigma`` (distance to the fitted ladder, in standard deviations),
        ``p_thin``, ``p_fit``, ``delta_e``, ``area`` px, ``area_um2`` when the scale is
        known, ``image_id`` when given and ``segmentation`` (or ``mask``) when ``masks``.
        Thick pieces that fit the ladder are returned as Thick. :func:`find_flakes` returns
        the rejected pieces and the ladder beside them.
    """
    res = find_flakes(image, material, oxide_nm, config, image_id, camera, um_per_px, masks,
                      oxide_range, oxide_prior_nm, backend)  # fmt: skip
    if explain is not None:
        explain += res.rejected
        explain.append({"ladder": res.ladder})
    return res.detections


def estimate_oxide_from_flakes(
    image, material: str, camera: Camera | None = None,
    candidates: tuple[float, float] = OXIDE_RANGE_NM, config: DetectorConfig | None = None,
) -> tuple[float | None, int]:  # fmt: skip
    """(oxide_nm, pieces fitted) from the image's own flakes: the oxide of the ladder that
    :func:`detect` fits (specks, residue, fibres, halos and crystals excluded first, so dust
    does not pull it). The camera is taken as calibrated (response held at 1) unless
    ``config`` says otherwise. (None, 0) when no piece is left to fit."""
    cfg = config or DetectorConfig(response_range=(1.0, 1.0))
    ladder = find_flakes(image, material, None, cfg, camera=camera, oxide_range=candidates).ladder
    return (ladder.oxide_nm if ladder.pieces else None), ladder.pieces
