"""Find and classify thin flakes on a whole micrograph: :func:`find_flakes` (a
:class:`DetectionResult`) and :func:`detect` (its detections, as COCO dicts).

For one micrograph of a known material, with its :class:`DetectorSettings` (the camera,
the oxide and its prior, the scale, the tuning), :func:`find_flakes` runs six named stages,
one function each:

1. :func:`oxide_search`, then the contrast of every pixel to its substrate
   (:func:`~qupaint.detect.contrast.contrast_map`);
2. :func:`find_pieces`: the regions that differ from the substrate, split along colour
   edges (:mod:`qupaint.detect.pieces`);
3. :func:`reject_pieces`: the piece rules of :mod:`qupaint.detect.rules`;
4. :func:`fit_image_ladder`: the layer ladder fitted to the image's own pieces
   (:mod:`qupaint.detect.ladder`), which then splits them into terraces;
5. :func:`judge_flakes`: each piece left classified on the ladder (a
   :class:`~qupaint.detect.rules.Flake`), grown into the whole flake and judged by the
   flake rules; then the shadows' penumbrae go (:func:`drop_penumbrae`);
6. :func:`score`: the probability-like ``exp(-fit / fit_scale)`` (fit in standard
   deviations) times a size term ``1 - exp(-area / size_um2)`` times the share not in a
   halo times its probability of being thin (or thick); the report ranks by it
   (:func:`report`). The category comes from the layer count (:mod:`qupaint.categories`).

That is the ``physics`` method (:data:`~qupaint.detect.config.METHODS`). Two others use the
thin-flake segmenter of :mod:`qupaint.seg` (the settings' ``segmenter`` weights: a
calibration's adapted ones, else the shipped Synthia-only ones):

- ``learned`` (:func:`learned_detections`): stages 1-4 fit the ladder, then the
  segmenter's instances are the detections and the ladder only counts their layers;
- ``fused`` (:func:`verify_learned`): the six stages, each thin flake then checked by the
  segmenter on its box grown by ``config.learned_margin_px``; under ``learned_min_p`` it is
  rejected (rule ``learned``: debris, shadows and rims the rules let through), and the
  score of the rest is multiplied by ``p_learned ** learned_weight``. Layer counts stay
  the ladder's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from qupaint.categories import THICK_MIN_LAYERS, category_of
from qupaint.color import Camera, linear_srgb_to_lab
from qupaint.constants import OXIDE_RANGE_NM
from qupaint.detect.config import DetectorConfig, DetectorSettings
from qupaint.detect.contrast import ContrastMap, as_uint8, contrast_map
from qupaint.detect.ladder import (
    Ladder,
    classify_many,
    fit_ladder,
    hypotheses,
    ladder_grid,
    oxide_prior,
    unlike_the_prior,
)
from qupaint.detect.morphology import dilate_cross, mask_extent, pad_window
from qupaint.detect.pieces import (
    BRIGHT,
    CAND,
    Piece,
    label_pieces,
    measure_pieces,
    pixel_flags,
    split_terraces,
)
from qupaint.detect.rules import Flake, RuleContext, band_penumbra_px, first_rule, thick
from qupaint.rle import encode_window

__all__ = ["DetectionResult", "DetectorSettings", "OxideSearch", "detect", "drop_penumbrae",
           "estimate_oxide_from_flakes", "find_flakes", "find_pieces", "fit_image_ladder",
           "judge_flakes", "oxide_search", "reject_pieces", "report", "score",
           "settings_contrast", "verify_learned", "learned_detections", "attach",
           "add_delta_e"]  # fmt: skip


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
        :data:`~qupaint.detect.rules.REJECT_RULES`, or ``learned`` (the ``fused`` method's
        check, :func:`verify_learned`); thick pieces are also detections.
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


@dataclass(frozen=True)
class OxideSearch:
    """Where the ladder looks for the oxide: ``spec``, a given thickness (nm, refined within
    ``oxide_window_nm``) or the (low, high) range searched, the prior (``prior_nm``,
    ``prior_sd`` and where it came from, ``source``; ``prior_nm`` None: none) and the
    settings' whole range, ``bounds``."""

    spec: float | tuple[float, float]
    prior_nm: float | None
    prior_sd: float
    source: str
    bounds: tuple[float, float] = OXIDE_RANGE_NM  # the settings' whole range (nm)


def find_flakes(image, material: str, settings: DetectorSettings | None = None, *,
                image_id: int | None = None, masks: bool | str = False,
                backend: str | None = None, **fields) -> DetectionResult:  # fmt: skip
    """Detect thin flakes in a whole micrograph; the detections, the rejected pieces with
    their rule, and the fitted ladder. The parameters are those of :func:`detect`."""
    s = DetectorSettings.of(settings, **fields)
    cfg = s.config
    cfg.validate()
    if masks not in (True, False, "window"):
        raise ValueError(f"masks: True, False or 'window'; got {masks!r}")
    img = as_uint8(image)
    cam = s.camera or Camera.srgb("D65")
    search = oxide_search(img, cam, s)
    cm = settings_contrast(img, s, backend)
    pieces, ctx = find_pieces(img, cm, material, cam, search, s, backend)
    reject_pieces(pieces, ctx)
    ladder = fit_image_ladder(pieces, cm, material, cam, search, ctx)
    if s.method == "learned":  # the segmenter finds, the ladder only counts layers
        return DetectionResult(
            learned_detections(img, material, s, cm, ladder, ctx, masks, image_id), [], ladder)
    pieces = split_terraces(pieces, cm, ladder.contrast, cfg, ctx.min_px)
    shadows = [_reach(p.mask, p.sl[0].start, p.sl[1].start, r, ctx.shape)  # bands' penumbrae
               for p in pieces if (r := band_penumbra_px(p, cm.C, cfg, s.um_per_px))]  # fmt: skip
    kept = judge_flakes(pieces, ladder, ctx, shadows)
    if shadows:  # a shadow's blurred fringe, lighter than it, is its penumbra
        kept = drop_penumbrae(kept, shadows, ctx)
    learned = None
    if s.method == "fused":
        kept, learned = verify_learned(img, material, s, kept, ctx)
    dets = report(kept, cm, ctx, masks, image_id, learned)
    rejected = [{"bbox": [float(v) for v in p.box], "area": p.area,
                 "contrast": [round(float(c), 4) for c in p.contrast],
                 "rejected": p.rejected} for p in pieces if p.rejected is not None]  # fmt: skip
    return DetectionResult(dets, rejected, ladder)


def verify_learned(img: np.ndarray, material: str, s: DetectorSettings, kept: list[Flake],
                   ctx: RuleContext) -> tuple[list[Flake], list[float | None]]:  # fmt: skip
    """The ``fused`` method's check: each thin flake's mean thin probability under the
    settings' segmenter, run on the flake's box grown by ``learned_margin_px`` only
    (:func:`qupaint.seg.window_probability`); one under ``learned_min_p`` is rejected (rule
    ``learned``). Returns the flakes kept and, per flake, its probability (None for thick
    ones, which the segmenter does not mark)."""
    from qupaint.seg import window_probability

    H, W = ctx.shape
    m = s.config.learned_margin_px
    thin = []  # (flake index, its window, where its mask's box lies in the window)
    for k, f in enumerate(kept):
        if thick(f, ctx):
            continue
        mask, gy, gx = f.whole
        (y0, y1), (x0, x1) = mask_extent(mask)
        wy, wx = max(0, gy + y0 - m), max(0, gx + x0 - m)
        window = (wy, min(H, gy + y1 + m), wx, min(W, gx + x1 + m))
        at = (slice(gy + y0 - wy, gy + y1 - wy), slice(gx + x0 - wx, gx + x1 - wx))
        thin.append((k, window, at, mask[y0:y1, x0:x1]))
    probs = window_probability(img, [t[1] for t in thin], s.segmenter, material) if thin else []
    p_of = {k: float(prob[0][at][box].mean())
            for (k, _, at, box), prob in zip(thin, probs, strict=True)}  # fmt: skip
    out, ps = [], []
    for k, f in enumerate(kept):
        if k in p_of and p_of[k] < s.config.learned_min_p:
            f.piece.rejected = "learned"
            continue
        out.append(f)
        ps.append(p_of.get(k))
    return out, ps


def learned_detections(image: np.ndarray, material: str, settings, cm, ladder, ctx, masks,
                       image_id: int | None) -> list[dict]:  # fmt: skip
    """The ``learned`` method's detections, in :func:`detect`'s form: the thin-flake
    instances of :mod:`qupaint.seg` (the settings' ``segmenter`` weights: a calibration's
    adapted ones, else the shipped Synthia-only ones), scored by their mean thin
    probability. No physics piece or rule decides what is a flake. The segmenter marks 1-5
    layers without counting them; the count is the image's ladder's reading of the
    instance's median contrast, limited to 1-5. ``cm`` is the image's contrast map,
    ``ladder`` its fitted layer ladder and ``ctx`` the detector's
    :class:`~qupaint.detect.rules.RuleContext` (noise, minimum size)."""
    from scipy.ndimage import find_objects

    from qupaint.seg import instances, probability

    prob = probability(image, settings.segmenter, material)
    lab = instances(prob, 0.5, max(1, int(round(ctx.min_px))))
    found = [(k, sl) for k, sl in enumerate(find_objects(lab), start=1) if sl is not None]
    meds = [np.median(cm.C[sl][lab[sl] == k], axis=0) for k, sl in found]
    classes = classify_many(np.reshape(meds, (-1, 3)), ctx.noise, ladder.contrast,
                            hypotheses(ladder, ctx.cfg), ctx.cfg) if found else []  # fmt: skip
    out = []
    for (k, sl), c, (nl, d2, p_thin, p_fit) in zip(found, meds, classes, strict=True):
        m = lab[sl] == k
        layers = int(min(max(nl, 1), THICK_MIN_LAYERS - 1))
        area = int(m.sum())
        d = {
            "bbox": [float(sl[1].start), float(sl[0].start), float(sl[1].stop - sl[1].start),
                     float(sl[0].stop - sl[0].start)],
            "score": round(float(prob[0][sl][m].mean()), 4),
            "category_id": category_of(layers),
            "layers": layers,
            "contrast": [round(float(v), 5) for v in c],
            "fit_sigma": float(np.sqrt(d2 / 3.0)),
            "p_thin": round(float(p_thin), 4),
            "p_fit": round(float(p_fit), 4),
            "area": area,
        }  # fmt: skip
        attach(d, m, sl[0].start, sl[1].start, ctx, masks, image_id)
        out.append(d)
    add_delta_e(out, meds, cm.substrate)
    out.sort(key=lambda d: -d["score"])
    return out


def settings_contrast(image, settings: DetectorSettings, backend: str | None = None
                      ) -> ContrastMap:  # fmt: skip
    """The contrast map (:func:`~qupaint.detect.contrast.contrast_map`) the detector reads
    with ``settings``: their camera (sRGB under D65 without one) and blur, saturation and
    substrate-field settings; what the web app's calibration clicks are measured on too."""
    cfg = settings.config
    return contrast_map(image, settings.camera or Camera.srgb("D65"), cfg.blur_sigma_px,
                        cfg.saturation, cfg.block_px, cfg.field_sigma, cfg.min_noise,
                        backend)  # fmt: skip


def oxide_search(img: np.ndarray, cam: Camera, s: DetectorSettings) -> OxideSearch:
    """Stage 1: where the ladder looks for the oxide: the given one, or the range, narrowed
    to ``prior_reach`` prior sigmas around the prior (:func:`~qupaint.detect.ladder
    .oxide_prior`) when there is one."""
    cfg, rng = s.config, s.oxide_range
    spec = rng if s.oxide_nm is None else float(s.oxide_nm)
    prior_nm, prior_sd, source = oxide_prior(img, cam, s.oxide_nm, s.oxide_prior_nm, rng, cfg)
    if prior_nm is not None:  # search where the prior allows
        reach = cfg.prior_reach * prior_sd
        spec = (max(rng[0], prior_nm - reach), min(rng[1], prior_nm + reach))
        if spec[0] > spec[1]:
            spec = tuple(rng)
    return OxideSearch(spec, prior_nm, prior_sd, source, tuple(rng))


def find_pieces(img: np.ndarray, cm: ContrastMap, material: str, cam: Camera,
                search: OxideSearch, s: DetectorSettings, backend: str | None = None
                ) -> tuple[list[Piece], RuleContext]:  # fmt: skip
    """Stage 2: the image's pieces (:mod:`qupaint.detect.pieces`) and what the rules know
    of the image (:class:`~qupaint.detect.rules.RuleContext`)."""
    cfg = s.config
    bright_level = _bright_level(material, cam, search, cfg)
    flags = pixel_flags(cm, img, cfg, bright_level, backend)
    labels, _ = label_pieces(flags, backend)
    um = s.um_per_px
    min_px = max(4.0, (cfg.min_area_um2 / um**2) if um else cfg.min_area_px)
    cand = (flags & CAND) > 0
    ctx = RuleContext(cfg, min_px, cand, flags, (flags & BRIGHT) > 0, bright_level, cm.noise,
                      img.shape[:2], cm.C, um, cand & (labels == 0))  # fmt: skip
    return measure_pieces(labels, cm.C, min_px), ctx


def reject_pieces(pieces: list[Piece], ctx: RuleContext) -> None:
    """Stage 3: each piece's first piece rule (``rejected``, its name, or None); a piece
    left gets its measured halo share (the score's)."""
    for p in pieces:
        rule = first_rule(p, ctx, "piece")
        p.rejected = None if rule is None else rule.name
        if rule is None:
            p.halo = ctx.halo_share(p)


def fit_image_ladder(pieces: list[Piece], cm: ContrastMap, material: str, cam: Camera,
                     search: OxideSearch, ctx: RuleContext) -> Ladder:  # fmt: skip
    """Stage 4: the ladder fitted to the pieces left that are darker than the substrate in
    some channel (bulk crystals are bright in every channel, and at some other oxide a
    bright rung would fit them), and not unlike every thin flake the prior holds likely
    (residue would pull the ladder to where it looks like thin flakes); the largest
    ``fit_pieces`` of them, weighted by log area."""
    cfg = ctx.cfg
    rows = [p for p in pieces if p.rejected is None
            and (float(p.contrast.min()) < 0 or not cfg.fit_dark_only)]  # fmt: skip
    unlike = unlike_the_prior(np.array([p.contrast for p in rows]), cm.noise, material, cam,
                              search.prior_nm, search.prior_sd, search.bounds, cfg)
    rows = sorted((p for p, u in zip(rows, unlike, strict=True) if not u),
                  key=lambda p: -p.area)[: cfg.fit_pieces]  # fmt: skip
    ladder = fit_ladder(np.array([p.contrast for p in rows]).reshape(-1, 3), material, cam,
                        cm.noise, search.spec, np.log1p([p.area / ctx.min_px for p in rows]),
                        cfg, search.prior_nm, search.prior_sd)  # fmt: skip
    ladder.prior = (search.prior_nm, search.prior_sd, search.source)
    return ladder


def judge_flakes(pieces: list[Piece], ladder: Ladder, ctx: RuleContext, shadows: list
                 ) -> list[Flake]:  # fmt: skip
    """Stage 5: every piece left, classified on the ladder (all at once, averaged over the
    fit's hypotheses) and judged by the flake rules; the flakes kept (thin, or thick and
    reported as such), in order. A flake rejected by a rule that casts a penumbra (a
    shadow) joins ``shadows``."""
    live = [p for p in pieces if p.rejected is None]
    classes = classify_many(np.array([p.contrast for p in live]).reshape(-1, 3), ctx.noise,
                            ladder.contrast, hypotheses(ladder, ctx.cfg), ctx.cfg)  # fmt: skip
    kept = []
    for p, (nl, d2min, p_thin, p_fit) in zip(live, classes, strict=True):
        f = Flake(p, nl, d2min, p_thin, p_fit, ctx)
        rule = first_rule(f, ctx, "flake")
        if rule is not None:
            p.rejected = rule.name
            if rule.casts_penumbra:
                shadows.append(f.whole)
            if not rule.reports:
                continue
        kept.append(f)
    return kept


def score(fit_sigma: float, area_um2: float, halo: float, p_class: float,
          cfg: DetectorConfig) -> float:  # fmt: skip
    """Stage 6, a detection's score: ``exp(-fit_sigma / fit_scale) (1 - exp(-area_um2 /
    size_um2)) (1 - halo) p_class``, with ``p_class`` its probability of its class (thin, or
    thick).

    >>> round(score(0.0, 1e9, 0.0, 1.0, DetectorConfig()), 6)
    1.0
    >>> round(score(2.0, 40.0, 0.5, 0.8, DetectorConfig()), 4)  # e^-1 (1 - e^-1) 0.5 0.8
    0.093
    """
    return (math.exp(-fit_sigma / cfg.fit_scale) * (1.0 - math.exp(-area_um2 / cfg.size_um2))
            * (1.0 - halo) * p_class)  # fmt: skip


def report(flakes: list[Flake], cm: ContrastMap, ctx: RuleContext, masks: bool | str,
           image_id: int | None, learned: list | None = None) -> list[dict]:  # fmt: skip
    """The COCO detections of the flakes kept (see :func:`detect`), best first; with
    ``learned`` (per flake, the segmenter's probability or None) a thin flake's score is
    multiplied by ``p_learned ** learned_weight`` and the probability reported."""
    cfg, um = ctx.cfg, ctx.um_per_px
    dets, meds = [], []
    for k, f in enumerate(flakes):
        p, (grown, gy, gx) = f.piece, f.whole
        med = p.contrast
        fit = math.sqrt(f.chi2 / 3.0)
        area = int(grown.sum())
        area_um2 = area * um**2 if um else area / ctx.min_px * cfg.min_area_um2
        is_thick = thick(f, ctx)
        p_class = f.p_thin if not is_thick else 1.0 - f.p_thin
        (y0, y1), (x0, x1) = mask_extent(grown)
        x0, y0, x1, y1 = gx + x0, gy + y0, gx + x1, gy + y1
        meds.append(med)
        d = {
            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
            "score": float(score(fit, area_um2, p.halo, p_class, cfg)),
            "category_id": category_of(f.layers),
            "layers": f.layers,
            "contrast": [round(float(c), 5) for c in med],
            "fit_sigma": fit,
            "p_thin": round(float(f.p_thin), 4),
            "p_fit": round(float(f.p_fit), 4),
            "area": area,
        }
        if learned is not None and learned[k] is not None:
            d["p_learned"] = round(learned[k], 4)
            d["score"] *= learned[k] ** cfg.learned_weight
        attach(d, grown, gy, gx, ctx, masks, image_id)
        dets.append(d)
    add_delta_e(dets, meds, cm.substrate)
    dets.sort(key=lambda d: -d["score"])
    return dets


def attach(d: dict, mask: np.ndarray, my: int, mx: int, ctx: RuleContext, masks: bool | str,
           image_id: int | None) -> None:  # fmt: skip
    """Complete detection ``d`` (its ``bbox`` and ``area`` set), whose pixels are ``mask``,
    a window whose top-left pixel is (``my``, ``mx``): ``area_um2`` when the scale is known,
    the mask as :func:`detect` says (``"window"``: cut to the box, no image-size RLE to
    encode) and the image id. Every method's detections end here."""
    if ctx.um_per_px:
        d["area_um2"] = float(d["area"] * ctx.um_per_px**2)
    if masks == "window":
        x, y, w, h = (int(v) for v in d["bbox"])
        d["mask"] = np.ascontiguousarray(mask[y - my : y - my + h, x - mx : x - mx + w])
    elif masks:
        d["segmentation"] = encode_window(mask, my, mx, *ctx.shape)
    if image_id is not None:
        d["image_id"] = image_id


def add_delta_e(dets: list[dict], contrasts, substrate: np.ndarray) -> None:
    """Each detection's ``delta_e``: the CIELAB distance of its colour (the linear
    ``substrate`` times ``1 + C``, its median contrast) to the substrate's, all detections
    in one conversion."""
    if not dets:
        return
    sub_lab = linear_srgb_to_lab(substrate)
    lab = np.asarray(linear_srgb_to_lab(substrate * (1.0 + np.asarray(contrasts))))
    for d, row in zip(dets, lab, strict=True):
        d["delta_e"] = float(np.linalg.norm(row - sub_lab))


def _bright_level(material: str, cam: Camera, search: OxideSearch, cfg: DetectorConfig
                  ) -> float:  # fmt: skip
    """The brightest contrast a thin flake of ``material`` can have over the oxides
    considered (the prior's likely range when there is one), plus ``cfg.bright``."""
    if isinstance(search.spec, tuple):
        lo, hi = search.spec
    else:
        lo, hi = search.spec - cfg.oxide_window_nm, search.spec + cfg.oxide_window_nm
    if search.prior_nm is not None:
        lo = max(lo, search.prior_nm - search.prior_sd)
        hi = min(hi, search.prior_nm + search.prior_sd)
    probe = tuple(np.round(np.linspace(max(0.0, lo), max(lo, hi), 9), 3))
    thin_mu = ladder_grid(material, cfg.max_layers, probe, cam)[:, : cfg.thin_layers]
    return max(0.0, float(thin_mu.max())) + cfg.bright


def _reach(mask: np.ndarray, y0: int, x0: int, r: int, shape) -> tuple[np.ndarray, int, int]:
    """(the pixels within ``r`` px (taxicab: ``r`` cross dilations) of ``mask``, whose
    window starts at (y0, x0) of an image of ``shape``, in a window cut to the image, its top
    row, its left column)."""
    own, ya, xa = pad_window(mask, y0, x0, r, shape)
    return dilate_cross(own, r), ya, xa


def drop_penumbrae(flakes: list[Flake], shadows: list, ctx: RuleContext) -> list[Flake]:
    """The flakes without those that lie, for more than ``max_halo`` of their area, within
    ``halo_px`` of a shadow (``shadows``: (mask, y0, x0) windows): its penumbra (rejected
    as "shadow" too), as the halo rule treats the rim of a bright crystal."""
    r, shape = ctx.cfg.halo_px, ctx.shape  # the shadows' neighbourhood, in their joint box
    y0 = max(0, min(y for _, y, _ in shadows) - r)
    x0 = max(0, min(x for _, _, x in shadows) - r)
    y1 = min(shape[0], max(y + m.shape[0] for m, y, _ in shadows) + r)
    x1 = min(shape[1], max(x + m.shape[1] for m, _, x in shadows) + r)
    near = np.zeros(shape, bool)
    win = near[y0:y1, x0:x1]
    for m, y, x in shadows:
        win[y - y0 : y - y0 + m.shape[0], x - x0 : x - x0 + m.shape[1]] |= m
    near[y0:y1, x0:x1] = dilate_cross(win, r)
    out = []
    for f in flakes:
        m, y, x = f.whole
        if near[y : y + m.shape[0], x : x + m.shape[1]][m].mean() > ctx.cfg.max_halo:
            f.piece.rejected = "shadow"
        else:
            out.append(f)
    return out


def detect(image, material: str, settings: DetectorSettings | None = None, *,
           image_id: int | None = None, masks: bool | str = False, explain: list | None = None,
           backend: str | None = None, **fields) -> list[dict]:  # fmt: skip
    """Detect thin flakes in a whole micrograph ``image`` [H, W, 3] (uint8 or float in [0, 1]).

    Parameters
    ----------
    image : array, shape [H, W, 3]
        sRGB, uint8 or float in [0, 1].
    material : str
        The flakes' material (:func:`qupaint.optics.get_material` names it).
    settings : DetectorSettings, optional
        The camera, the oxide, its prior, the image scale and the detector's tuning;
        :meth:`DetectorSettings.from_microscope` builds them from a preset or camera file.
        Default: sRGB under D65, the oxide fitted over the whole range, no scale.
    image_id : int, optional
        Written into every detection.
    masks : bool or "window"
        Add each detection's ``segmentation`` (COCO RLE of the whole image); ``"window"``:
        its ``mask`` instead, a bool array of its box (``bbox``), for a caller that works
        on the box (a chip scan) and would otherwise decode the RLE again.
    explain : list, optional
        Receives one dict per piece that was not reported (:attr:`DetectionResult.rejected`)
        and, last, ``{"ladder": Ladder}``.
    backend : str, optional
        ``"cpu"`` (C++ kernels) or ``"reference"`` (numpy).
    **fields
        Settings changed for this call (:meth:`DetectorSettings.replace`): ``oxide_nm``
        (a thickness, refined within ``config.oxide_window_nm``, or ``"auto"``),
        ``camera``, ``um_per_px``, ``config``, ``oxide_prior_nm``, ``oxide_range``.

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

    Examples
    --------
    >>> import numpy as np
    >>> chip = np.full((64, 64, 3), (120, 100, 160), np.uint8)  # bare substrate
    >>> detect(chip, "graphene", DetectorSettings.from_microscope("2dmatgmm"))
    []
    """
    res = find_flakes(image, material, settings, image_id=image_id, masks=masks,
                      backend=backend, **fields)  # fmt: skip
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
    settings = DetectorSettings(cfg, camera, oxide_range=candidates)
    ladder = find_flakes(image, material, settings).ladder
    return (ladder.oxide_nm if ladder.pieces else None), ladder.pieces
