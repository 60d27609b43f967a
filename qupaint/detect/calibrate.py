"""Few-shot calibration of a microscope from a few annotated whole images.

A lab labels two or three of its own micrographs (an instance mask per image, 0 for
everything else, k for the k-th flake; the layout of ``qupaint eval real``) and gets a camera
file for ``qupaint detect --camera``:

- with layer numbers (``layers``: ``{(image stem, instance id): layers}``), the camera's
  bands, NA and the oxide are fitted to the median contrast of each layer count
  (:func:`qupaint.color.calibrate.fit_camera`, the same fit as ``qupaint calibrate
  --contrast``);
- without them, the layer ladder is fitted to the flakes' contrasts
  (:func:`qupaint.detect.ladder.fit_ladder`, each flake 1..``max_layers`` layers): one oxide
  for all the images, each image with its own per-channel response (camera settings vary
  between images, and one response forced on all of them bent the oxide by 20 nm). The
  oxide becomes the detector's prior (``oxide_prior_nm``: without layer numbers it is known
  only roughly), as wide as its uncertainty (``oxide_sd_nm``: the fit's own, or the next
  chip's, predicted from the spread of the images' own oxides, when larger); a common
  response is written (``response``) only when one fits all the images about as well as
  their own (AIC), and every flake gets its inferred layer count.

The contrast is measured with the detector's own :func:`~qupaint.detect.contrast.contrast_map`
on each flake's mask, its edge pixels left out.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace

import numpy as np
from scipy import ndimage

from qupaint._io import read_mask, read_rgb
from qupaint.categories import THICK_MIN_LAYERS
from qupaint.color import Camera
from qupaint.constants import OXIDE_RANGE_NM
from qupaint.detect.config import DetectorConfig
from qupaint.detect.contrast import contrast_map
from qupaint.detect.ladder import fit_ladder, respond, rung_chi2
from qupaint.detect.pieces import masked_median

__all__ = ["measure_instances", "calibrate_from_masks"]


def measure_instances(
    pairs, camera: Camera, edge_px: int = 2, progress: Callable[[int, int], None] | None = None
) -> list[dict]:
    """Median contrast of every instance of each (image, mask) pair: ``image`` (stem), ``id``,
    ``area`` (pixels) and ``contrast`` [3]. ``pairs``: objects with ``.image`` and ``.mask``
    paths (:func:`qupaint.bench.real.find_masked_images`) or (image, mask) tuples."""

    out = []
    for k, p in enumerate(pairs):
        img_path, mask_path = (p.image, p.mask) if hasattr(p, "image") else p
        img, mask = read_rgb(img_path), read_mask(mask_path)
        if mask.shape != img.shape[:2]:
            raise ValueError(f"masks: {mask_path} is {mask.shape}, its image {img.shape[:2]}")
        cm = contrast_map(img, camera)
        for j, sl in enumerate(ndimage.find_objects(mask.astype(np.int64)), start=1):
            if sl is None:
                continue
            m = mask[sl] == j
            core = ndimage.binary_erosion(m, iterations=edge_px) if edge_px else m
            if core.sum() < 10:
                core = m
            c = masked_median(cm.C, sl, core).astype(float).tolist()
            stem = os.path.splitext(os.path.basename(img_path))[0]
            out.append({"image": stem, "id": j, "area": int(m.sum()), "contrast": c})
        if progress:
            progress(k + 1, len(pairs))
    return out


def calibrate_from_masks(
    pairs,
    material: str,
    camera: Camera | None = None,
    layers: Mapping[tuple[str, int], int] | None = None,
    oxide_range: tuple[float, float] = OXIDE_RANGE_NM,
    um_per_px: float | None = None,
    config: DetectorConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
    max_layers: int = THICK_MIN_LAYERS - 1,
) -> dict:
    """A camera file (dict) for ``qupaint detect --camera`` from annotated images.

    Parameters
    ----------
    pairs : (image, mask) pairs (:func:`qupaint.bench.real.find_masked_images`).
    material : the flakes' material.
    camera : the starting camera (default the ``2dmatgmm`` preset).
    layers : optional ``{(image stem, instance id): layer count}``; with two or more layer
        counts the camera itself is refitted, else the ladder is fitted and layers inferred.
    oxide_range : (low, high) SiO2 thickness searched, nm.
    um_per_px : the image scale, recorded for the detector's physical minimum size.
    max_layers : the masks mark thin flakes, so without layer numbers every flake is taken
        to have 1..``max_layers`` layers (default: the Mono and Few categories, 1-5). Give
        the most your masks mark (say 3 for flakes of 1-3 layers): a looser bound lets the
        fit trade the oxide against thicker layers.
    """
    from qupaint.color.calibrate import fit_camera, median_with_error
    from qupaint.optics import get_material

    get_material(material)
    cam = camera or Camera.preset("2dmatgmm")
    cfg = config or DetectorConfig()
    flakes = measure_instances(pairs, cam, progress=progress)
    if not flakes:
        raise ValueError("masks: no annotated flake in the masks (0 everywhere)")
    C = np.array([f["contrast"] for f in flakes])
    out: dict = {"material": material, "um_per_px": um_per_px, "flakes": len(flakes)}
    known = {(f["image"], f["id"]): int(layers[(f["image"], f["id"])]) for f in flakes
             if layers and (f["image"], f["id"]) in layers}  # fmt: skip
    counts = sorted(set(known.values()))
    if len(counts) >= 2:
        obs, err = [], []
        for n in counts:
            sel = [i for i, f in enumerate(flakes) if known.get((f["image"], f["id"])) == n]
            med, e = median_with_error(C[sel])
            obs.append((material, n, tuple(med)))
            err.append(e)
        fit = fit_camera(obs, oxide_nm=oxide_range, illuminant=cam.illuminant, gamma=cam.gamma,
                         sigma=np.array(err))  # fmt: skip
        out.update(fit.to_dict())
        out["method"] = "fit_camera on the median contrast per labelled layer count"
        for f in flakes:
            f["layers"] = known.get((f["image"], f["id"]))
    else:
        out.update(_fit_without_layers(flakes, C, material, cam, cfg, oxide_range, max_layers))
    out["observations"] = flakes
    return out


def _next_chip_var(own_oxides, unknown_sd: float) -> float:
    """The variance of the next chip's oxide predicted from ``n`` images' own best oxides.

    Their sample variance ``s^2`` underestimates it: the next chip's oxide, given ``n``
    draws of unknown mean and spread, follows Student's t with ``n - 1`` degrees of freedom
    and scale ``s sqrt(1 + 1/n)``. The prior is Gaussian, so it gets that t's variance,
    ``s^2 (1 + 1/n) (n - 1) / (n - 3)``; with two or three images the t has none, and the
    Gaussian is the one with the t's central 68 % interval. One image has no spread: the chip
    is then as uncertain as an uncalibrated camera's (``unknown_sd``)."""
    n = len(own_oxides)
    if n < 2:
        return float(unknown_sd) ** 2
    s2 = float(np.var(own_oxides, ddof=1)) * (1.0 + 1.0 / n)
    if n > 3:
        return s2 * (n - 1) / (n - 3)
    from scipy.stats import norm, t

    return s2 * float(t.ppf(norm.cdf(1.0), n - 1)) ** 2


def _fit_without_layers(flakes, C, material, cam, cfg, oxide_range, max_layers) -> dict:
    """The oxide shared by the images, each image's own response (or one for all, when AIC
    prefers it), the flakes' layers (written into ``flakes``), and the oxide's uncertainty
    (the fit's own, or the next chip's from the images' spread when larger:
    :func:`_next_chip_var`)."""
    if not 1 <= max_layers <= cfg.max_layers:
        raise ValueError(f"max_layers: 1..{cfg.max_layers}; got {max_layers}")
    thin = replace(cfg, max_layers=max_layers, thin_layers=min(cfg.thin_layers, max_layers))
    noise = np.full(3, 0.01)
    stems = list(dict.fromkeys(f["image"] for f in flakes))
    fits = {}
    for stem in stems:  # each image's cost over (oxide, response), its response its own
        idx = [i for i, f in enumerate(flakes) if f["image"] == stem]
        w = np.log1p(np.array([flakes[i]["area"] for i in idx]) / 100.0)
        fits[stem] = (idx, fit_ladder(C[idx], material, cam, noise, tuple(oxide_range), w, thin))
    grid = next(iter(fits.values()))[1].grid
    oxides, ks = grid["oxides"], grid["ks"]
    own = {stem: lad.grid["cost"].reshape(len(oxides), -1).min(1)
           for stem, (_, lad) in fits.items()}  # fmt: skip

    total = sum(own[n] for n in stems)
    t = int(np.argmin(total))
    # the oxide of the next chip, how uncertain: the larger of the fit's own (the half-width
    # of the oxides whose summed cost is within 1 of the best, a chi-square's 1 sigma) and
    # the chip-to-chip spread (the pooled fit hides it), with the grid's rounding (a
    # uniform step's variance, step^2 / 12)
    near = oxides[total <= total[t] + 1.0]
    var = (0.5 * (near.max() - near.min())) ** 2
    var = max(var, _next_chip_var([oxides[int(np.argmin(own[n]))] for n in stems],
                                  cfg.oxide_prior_sd_nm))  # fmt: skip
    sd = float(np.sqrt(var + cfg.oxide_step_nm**2 / 12.0))
    # one response for all the images, or each its own: AIC (3 exponents per extra image)
    shared = sum(lad.grid["cost"][t] for _, lad in fits.values())  # [G, G, G]
    g = np.unravel_index(int(np.argmin(shared)), shared.shape)
    own_total = float(sum(own[n][t] for n in stems))
    common = float(shared[g]) - own_total <= 2 * 3 * (len(stems) - 1)
    sig = np.sqrt(noise**2 + (cfg.rel_sigma * C) ** 2)
    responses = {}
    for stem, (idx, lad) in fits.items():
        gi = g if common else np.unravel_index(int(np.argmin(lad.grid["cost"][t])), shared.shape)
        k = ks[[0, 1, 2], list(gi)]
        responses[stem] = [round(float(v), 4) for v in k]
        rungs = respond(lad.grid["mu"][t], k, cfg.response_model)  # [L, 3]
        d2 = rung_chi2(C[idx], rungs, sig[idx])
        for i, row in zip(idx, d2, strict=True):
            flakes[i]["layers"] = int(row.argmin()) + 1
            flakes[i]["fit_sigma"] = round(float(np.sqrt(row.min() / 3)), 3)
    out = {
        "camera": cam.to_dict(),
        "oxide_prior_nm": float(oxides[t]),
        "oxide_sd_nm": round(sd, 2),
        "responses": responses,
        "method": "ladder fit to the flakes' contrasts, each taken as 1-"
                  f"{max_layers} layers (the masks mark thin flakes): one oxide for all "
                  f"{len(stems)} images, " + ("one response for all (AIC)" if common else
                  "each image its own response (its settings differ: AIC)") + "; the oxide "
                  "is the detector's prior, as wide as its uncertainty; layer counts "
                  "inferred",
    }  # fmt: skip
    if common:
        out["response"] = [round(float(v), 4) for v in ks[[0, 1, 2], list(g)]]
    return out
