"""A training-free physics detector of 2D flakes (the QF-Bench baseline any lab can run).

Pipeline, for one sRGB micrograph of a known material on a known oxide:

1. Substrate (QuPAINT Eq. 18-19): the PIA map of the image; patches below the 90th
   percentile of contrast are substrate. Their median linear colour c_ref gives the
   white-balance gain g = c_ref / c0 against the TMM substrate colour c0 (Eq. 16).
2. Contrast: every pixel's CIELAB distance to the substrate colour (PIA's score at pixel
   resolution, after a light blur against sensor noise); pixels above ``threshold_de`` are
   flake candidates; connected components (8-neighbour) of the candidates are flakes.
3. Layers: each pixel's colour is matched to the TMM-predicted colours g * c_L of 1..N
   layers (nearest in CIELAB). Inside a component, edge pixels (blends of flake and
   substrate) are ignored and every layer class that covers a sizeable part of the rest
   becomes its own detection (terraces), with the class's median colour re-matched.
4. Score: how well the measured colour fits the prediction (exp(-fit / fit_scale)), times
   the share of the component the class covers. Category from the layer count (Mono 1,
   Few 2-5, Thick >= 6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from qupaint.categories import category_of
from qupaint.color import layer_model, linear_srgb_to_lab, srgb_decode_table
from qupaint.synthia.finish import blur
from qupaint.synthia.placement import substrate_mask
from qupaint.synthia.whitebalance import reference_substrate_color

__all__ = ["DetectorConfig", "detect", "detect_coco"]


@dataclass
class DetectorConfig:
    """Settings of :func:`detect` (defaults tuned on Synthia images, see the README)."""

    threshold_de: float = 2.5  # min CIELAB distance to the substrate of a flake pixel
    min_area_px: int = 24  # smaller components / classes are dropped
    blur_sigma_px: float = 1.0  # denoising before the per-pixel colour test
    edge_px: int = 2  # pixels eroded from a component before layer classification
    min_share: float = 0.15  # a layer class must cover this share of a component's core
    max_fit_de: float = 15.0  # classes whose colour fits no layer better are debris
    fit_floor_de: float = 1.5  # a fit this good is always accepted ...
    fit_ratio: float = 0.5  # ... else the fit must be below this share of the contrast
    fit_scale: float = 4.0
    flat_field: bool = True  # divide out illumination fall-off fitted on the substrate
    max_layers: int = 30
    pia_patch: int = 8

    def validate(self) -> None:
        if self.threshold_de <= 0 or self.min_area_px < 1 or self.max_layers < 1:
            raise ValueError("threshold_de > 0, min_area_px >= 1 and max_layers >= 1 required")
        if not 0 < self.min_share <= 1:
            raise ValueError("min_share must be in (0, 1]")


def _as_uint8(image) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3] sRGB; got shape {img.shape}")
    if img.dtype == np.uint8:
        return img
    if not np.issubdtype(img.dtype, np.floating):
        raise TypeError(f"image: uint8 or float in [0, 1]; got {img.dtype}")
    if not np.all(np.isfinite(img)):
        raise ValueError("image contains NaN or inf")
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _flat_field(lin: np.ndarray, substrate: np.ndarray, stride: int = 4) -> np.ndarray:
    """Smooth illumination field [H, W, 3]: a quadratic in (x, y) per channel, least-squares
    fitted to the substrate pixels (vignetting is close to radial-quadratic)."""
    H, W = substrate.shape
    ys, xs = np.mgrid[0:H:stride, 0:W:stride]
    keep = substrate[::stride, ::stride]
    if keep.sum() < 12:
        return np.median(lin.reshape(-1, 3), axis=0)[None, None, :]

    def basis(x, y):
        x, y = x / W - 0.5, y / H - 0.5
        return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1)

    A = basis(xs[keep].astype(float), ys[keep].astype(float))
    v = lin[::stride, ::stride][keep].astype(float)
    use = np.ones(len(v), bool)
    for _ in range(3):  # flakes the mask let through are outliers: refit without them
        coef, *_ = np.linalg.lstsq(A[use], v[use], rcond=None)
        resid = np.linalg.norm(v / np.maximum(A @ coef, 1e-6) - 1.0, axis=-1)
        use = resid <= 3.0 * np.median(resid) + 1e-4
    yy, xx = np.mgrid[0:H, 0:W]
    return np.maximum(basis(xx.astype(float), yy.astype(float)) @ coef, 1e-6)


def detect(
    image,
    material: str,
    oxide_nm: float = 285.0,
    illuminant: str = "D65",
    config: DetectorConfig | None = None,
    image_id: int | None = None,
    camera=None,
) -> list[dict]:
    """Detect flakes in an sRGB micrograph ``image`` [H, W, 3] (uint8 or float in [0, 1]).

    Returns COCO detections sorted by score: ``bbox`` [x, y, w, h], ``score``,
    ``category_id`` (1 Mono, 2 Few, 3 Thick), ``layers``, ``delta_e`` (vs substrate),
    ``fit_de`` (distance to the predicted colour), ``area`` (pixels), plus ``image_id``
    when given. ``camera`` (a :class:`~qupaint.color.Camera`, e.g. from ``qupaint
    calibrate``) is what the image was taken through; default sRGB under ``illuminant``.
    """
    cfg = config or DetectorConfig()
    cfg.validate()
    img = _as_uint8(image)
    H, W = img.shape[:2]
    model = layer_model(material, float(oxide_nm), illuminant, cfg.max_layers, camera)
    size = max(cfg.pia_patch, (min(H, W) // cfg.pia_patch) * cfg.pia_patch)
    m_sub, _ = substrate_mask(img, patch_size=cfg.pia_patch, image_size=size)
    c_ref = reference_substrate_color(img, m_sub, stride=2)
    gain = c_ref / model.substrate
    table = model.lab(gain)  # row 0 substrate, row L = L layers
    lin = blur(srgb_decode_table().astype(np.float32)[img], cfg.blur_sigma_px)
    if cfg.flat_field:
        lin *= (c_ref / _flat_field(lin, m_sub)).astype(np.float32)
    lab = linear_srgb_to_lab(lin.reshape(-1, 3).astype(np.float64)).reshape(H, W, 3)
    de = np.linalg.norm(lab - table[0], axis=-1)
    fg = ndimage.binary_opening(de > cfg.threshold_de, structure=np.ones((3, 3), bool))
    comps, n = ndimage.label(fg, structure=np.ones((3, 3), bool))
    dets: list[dict] = []
    if n == 0:
        return dets
    layers_px = np.zeros((H, W), np.int64)
    layers_px[fg], _ = model.match(lab[fg], table)
    for k, sl in enumerate(ndimage.find_objects(comps), start=1):
        comp = comps[sl] == k
        if comp.sum() < cfg.min_area_px:
            continue
        core = ndimage.binary_erosion(comp, iterations=cfg.edge_px) if cfg.edge_px else comp
        if core.sum() < cfg.min_area_px // 2:
            core = comp
        cls = layers_px[sl][core]
        values, counts = np.unique(cls, return_counts=True)
        total = core.sum()
        pieces = []
        for v, c in zip(values, counts, strict=True):
            if c < max(cfg.min_area_px // 2, cfg.min_share * total):
                continue
            # flakes that touch share a component; one layer class may still be two flakes
            lab_v, nv = ndimage.label(core & (layers_px[sl] == v), structure=np.ones((3, 3)))
            for j in range(1, nv + 1):
                region = lab_v == j
                if region.sum() >= cfg.min_area_px // 2:
                    pieces.append(region)
        for region in pieces:
            c = int(region.sum())
            med = np.median(lab[sl][region], axis=0)
            nl, fit = model.match(med, table)
            nl, fit = int(nl), float(fit)
            delta = float(np.linalg.norm(med - table[0]))
            # a colour off the predicted layer curve (debris, dirt, other material) is dropped
            if fit > min(cfg.max_fit_de, max(cfg.fit_floor_de, cfg.fit_ratio * delta)):
                continue
            ys, xs = np.nonzero(region)
            pad = cfg.edge_px
            x0, y0 = max(0, xs.min() - pad), max(0, ys.min() - pad)
            x1 = min(comp.shape[1], xs.max() + 1 + pad)
            y1 = min(comp.shape[0], ys.max() + 1 + pad)
            d = {
                "bbox": [
                    float(sl[1].start + x0),
                    float(sl[0].start + y0),
                    float(x1 - x0),
                    float(y1 - y0),
                ],  # fmt: skip
                "score": float(math.exp(-fit / cfg.fit_scale) * min(1.0, c / total)),
                "category_id": category_of(nl),
                "layers": nl,
                "delta_e": delta,
                "fit_de": fit,
                "area": int(c),
            }
            if image_id is not None:
                d["image_id"] = image_id
            dets.append(d)
    dets.sort(key=lambda d: -d["score"])
    return dets


def _detect_image(args: tuple) -> list[dict]:
    path, image_id, material, oxide_nm, illuminant, cfg, camera = args
    from PIL import Image

    img = np.asarray(Image.open(path).convert("RGB"))
    return detect(img, material, oxide_nm, illuminant, cfg, image_id=image_id, camera=camera)


def detect_coco(
    gt_json,
    images_dir=None,
    oxide_nm: float | None = None,
    illuminant: str = "D65",
    config: DetectorConfig | None = None,
    workers: int = 1,
    progress=None,
    camera=None,
) -> list[dict]:
    """Run :func:`detect` on every image of a COCO file (material from each image's
    ``material`` field; oxide from the annotations' ``substrate_oxide_nm`` unless given).
    Returns COCO results for :func:`qupaint.bench.evaluate_detection`."""
    import multiprocessing as mp
    import os
    from pathlib import Path

    from qupaint.bench.metrics import load_json
    from qupaint.bench.model_eval import resolve_image

    gt = load_json(gt_json)
    root = Path(images_dir) if images_dir else Path(gt_json).parent
    oxide_of = {a["image_id"]: a.get("substrate_oxide_nm") for a in gt["annotations"]}
    jobs = []
    for im in gt["images"]:
        if "material" not in im:
            raise ValueError(f"image {im['id']} has no 'material'; the detector needs it")
        ox = oxide_nm if oxide_nm is not None else oxide_of.get(im["id"]) or 285.0
        jobs.append((resolve_image(root, im), im["id"], im["material"], float(ox), illuminant,
                     config, camera))  # fmt: skip
    out: list[dict] = []
    if workers > 1:
        # not "fork": a child forked from a process whose OpenMP pool has run (our C++
        # kernels) hangs in its first parallel region (libgomp is not fork-safe)
        ctx = mp.get_context("forkserver" if os.name == "posix" else "spawn")
        with ctx.Pool(workers) as pool:
            for k, dets in enumerate(pool.imap(_detect_image, jobs, chunksize=4)):
                out += dets
                if progress:
                    progress(k + 1, len(jobs))
    else:
        for k, job in enumerate(jobs):
            out += _detect_image(job)
            if progress:
                progress(k + 1, len(jobs))
    return out
