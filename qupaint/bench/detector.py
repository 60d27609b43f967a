"""A training-free physics detector of 2D flakes (the QF-Bench baseline any lab can run).

Pipeline, for one micrograph of a known material on a known oxide, seen through a camera
(:class:`~qupaint.color.Camera`; default sRGB under ``illuminant``):

1. Linear camera values: the pixels are decoded through the camera's response (the sRGB
   curve for the default camera, ``v^gamma`` for a calibrated one) and lightly blurred
   against sensor and JPEG noise.
2. Substrate and illumination: the image is averaged over blocks, the blocks that match the
   substrate (iteratively: start from the median, keep blocks within a tolerance of the
   current field, none saturated) are smoothed into a field I_sub(x, y) that follows
   vignetting and an uneven lamp, and upsampled. Flakes, debris and saturated crystals do
   not pull it, and it does not depend on where the image was cropped or how it is flipped.
3. Contrast: ``C = I / I_sub - 1`` per channel and pixel (the MaskTerial / 2DMatGMM
   definition). It is independent of the camera's white balance and exposure.
4. Classes: the layer model (TMM through the camera) predicts C_L for 1..``max_layers``
   layers. Each pixel that differs significantly from the substrate is assigned the layer
   class of highest Gaussian likelihood, with a per-channel standard deviation
   ``sqrt(noise^2 + (rel_sigma C_L)^2)`` (``noise`` measured on the image's own
   substrate, ``rel_sigma`` the model/calibration uncertainty). A saturated pixel, or one
   very far from every class (chi-square beyond ``other_chi2``), is "other": a thick
   crystal, dirt, another material.
5. Flakes: connected regions of candidate pixels; regions that are mostly "other" are
   dropped. Inside each, edge pixels (blends) are set aside, and every layer class covering
   a sizeable share of the rest becomes a detection (terraces), re-classified from its
   median contrast. Rejected: pieces whose median contrast fits no layer (chi-square beyond
   ``max_chi2``: debris and residue, whose colour is off the layer curve), and pieces lying
   mostly within ``halo_px`` of "other" pixels (the halos of thick crystals).
6. Score: the class posterior of the median contrast among all classes and the substrate,
   times the share of the region the piece covers, times the share of it that is not a
   halo, times ``exp(-fit / fit_scale)`` for its distance to the predicted contrast (in
   standard deviations), so thresholds read roughly as probabilities. Category from the layer count
   (:mod:`qupaint.categories`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from qupaint._pool import run_tasks
from qupaint.categories import category_of
from qupaint.color import Camera, layer_model, linear_srgb_to_lab

__all__ = [
    "DetectorConfig",
    "detect",
    "detect_coco",
    "estimate_oxide_from_flakes",
    "substrate_field",
    "linear_pixels",
]


@dataclass
class DetectorConfig:
    """Settings of :func:`detect` (tuned on Synthia images and checked on real ones)."""

    blur_sigma_px: float = 1.0  # denoising before the per-pixel contrast
    rel_sigma: float = 0.1  # model/calibration uncertainty, relative to |C_L|
    min_noise: float = 0.01  # floor of the per-channel contrast noise
    fg_chi2: float = 25.0  # chi-square vs the substrate above which a pixel is a candidate
    max_chi2: float = 30.0  # a piece whose median is farther from every class is dropped
    other_chi2: float = 120.0  # a pixel farther than this from every class is "other"
    min_area_px: int = 24  # smaller regions / pieces are dropped
    edge_px: int = 2  # pixels eroded from a region before layer classification
    min_share: float = 0.15  # a layer class must cover this share of a region's core
    halo_px: int = 3  # a piece within this distance of saturated / "other" pixels ...
    max_halo: float = 0.6  # ... for more than this share of its area is a halo
    saturation: int = 250  # 8-bit value at which a channel counts as saturated
    block_px: int = 8  # block size of the substrate field
    field_sigma: float = 0.12  # smoothing of the field, as a fraction of the image size
    max_layers: int = 30
    fit_scale: float = 2.0  # score x exp(-fit / fit_scale), fit in standard deviations
    box_pad_px: int = 1  # a piece's box and mask: its eroded core grown by this much

    def validate(self) -> None:
        if self.min_area_px < 1 or self.max_layers < 1 or self.block_px < 1:
            raise ValueError("min_area_px, max_layers and block_px must be >= 1")
        if not 0 < self.min_share <= 1:
            raise ValueError("min_share must be in (0, 1]")
        if self.fg_chi2 <= 0 or self.max_chi2 <= 0 or self.min_noise <= 0:
            raise ValueError("fg_chi2, max_chi2 and min_noise must be > 0")


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


def linear_pixels(img: np.ndarray, camera: Camera) -> np.ndarray:
    """uint8 pixels -> the camera's linear values, float32 (:meth:`Camera.decode_table`)."""
    return camera.decode_table().astype(np.float32)[img]


def substrate_field(
    lin: np.ndarray, saturated: np.ndarray, block: int = 8, sigma: float = 0.12
) -> tuple[np.ndarray, np.ndarray]:
    """(field [H, W, 3], substrate blocks [h, w] bool): the substrate's colour at every pixel.

    Block means of the image (``block`` px, saturated blocks excluded) that lie within a
    tolerance of the current field are smoothed (normalised Gaussian convolution, ``sigma``
    times the image's smaller side); three rounds, starting from the median block colour.
    """
    H, W = lin.shape[:2]
    b = max(1, min(block, H // 16, W // 16))
    h, w = H // b, W // b
    small = lin[: h * b, : w * b].reshape(h, b, w, b, 3).mean(axis=(1, 3))
    sat = saturated[: h * b, : w * b].reshape(h, b, w, b).any(axis=(1, 3))
    dark = small.sum(-1) <= 1e-4
    ok = ~sat & ~dark
    if not ok.any():
        ok = ~dark if (~dark).any() else np.ones((h, w), bool)
    s = max(1.0, sigma * min(h, w))
    field = np.broadcast_to(np.median(small[ok], axis=0), small.shape)
    mask = ok
    for tol in (0.15, 0.08, 0.05):
        rel = np.abs(small / np.maximum(field, 1e-6) - 1.0).max(-1)
        cand = ok & (rel < max(tol, 3.0 * float(np.median(rel[ok]))))
        if cand.sum() >= 4:
            mask = cand
        m = mask.astype(np.float32)
        num = ndimage.gaussian_filter(small * m[..., None], (s, s, 0), mode="nearest")
        den = ndimage.gaussian_filter(m, s, mode="nearest")[..., None]
        field = np.where(den > 1e-3, num / np.maximum(den, 1e-6), np.median(small[mask], axis=0))
    # bilinear back to full resolution (block centres, edges held), separably: along x on the
    # h block rows, then along y by blending whole rows (numpy, so thread-count independent)
    field = field.astype(np.float32)
    xs = np.clip((np.arange(W) + 0.5) / b - 0.5, 0, w - 1)
    x0 = xs.astype(np.int64)
    x1 = np.minimum(x0 + 1, w - 1)
    fx = (xs - x0).astype(np.float32)[None, :, None]
    rows = field[:, x0] * (1 - fx) + field[:, x1] * fx  # [h, W, 3]
    ys = np.clip((np.arange(H) + 0.5) / b - 0.5, 0, h - 1)
    y0 = ys.astype(np.int64)
    y1 = np.minimum(y0 + 1, h - 1)
    fy = (ys - y0).astype(np.float32)[:, None, None]
    out = rows[y0]
    out += (rows[y1] - out) * fy
    return out, mask


def _classes(material, oxide_nm, illuminant, camera, max_layers):
    """Predicted linear contrast C_L [K, 3] of 1..K layers, and the substrate colour."""
    m = layer_model(material, float(oxide_nm), illuminant, max_layers, camera)
    return m.linear / m.substrate[None, :] - 1.0, m


def _contrast_map(img: np.ndarray, cam: Camera, cfg: DetectorConfig):
    """(C [H, W, 3], saturated [H, W], noise [3]): per-pixel contrast to the substrate field."""
    sat = (img >= cfg.saturation).any(-1)
    lin = linear_pixels(img, cam)
    field, _ = substrate_field(lin, sat, cfg.block_px, cfg.field_sigma)
    if cfg.blur_sigma_px > 0:
        # truncated at 2 sigma: the tails add nothing against pixel noise, and cost half
        s_px = cfg.blur_sigma_px
        lin = ndimage.gaussian_filter(lin, (s_px, s_px, 0), truncate=2.0)
    C = lin / np.maximum(field, 1e-6) - 1.0
    # noise of C on the substrate (robust, per channel), from a subsample
    sub_c = C[::4, ::4][~sat[::4, ::4]].reshape(-1, 3)
    noise = np.maximum(1.4826 * np.median(np.abs(sub_c - np.median(sub_c, 0)), 0), cfg.min_noise)
    return C, sat, noise


def estimate_oxide_from_flakes(
    image, material: str, camera: Camera | None = None,
    candidates: tuple[float, float] = (60.0, 320.0), config: DetectorConfig | None = None,
    step_nm: float = 5.0, max_layers: int = 8, min_pixels: int = 200,
) -> tuple[float | None, int]:  # fmt: skip
    """(oxide_nm, pixels explained) from the flakes themselves: the thickness at which the
    most flake pixels of the image have a contrast within ``max_chi2`` of some 1-``max_layers``
    layer prediction. Unlike the substrate's colour this does not depend on the camera's
    white balance, but it needs thin flakes in the image: (None, n) when fewer than
    ``min_pixels`` pixels fit at any thickness."""
    from qupaint.color.calibrate import layer_contrast_grid

    cfg = config or DetectorConfig()
    img = _as_uint8(image)
    cam = camera or Camera.srgb("D65")
    C, sat, noise = _contrast_map(img, cam, cfg)
    cand = (((C / noise) ** 2).sum(-1) > cfg.fg_chi2) & ~sat
    # regions that touch a saturated crystal are its body and rim, not thin flakes
    comps, _ = ndimage.label(cand | sat, structure=np.ones((3, 3), bool))
    crystal = np.unique(comps[sat])
    cand &= ~np.isin(comps, crystal[crystal > 0])
    px = C[cand]
    if len(px) > 5000:
        px = px[np.random.default_rng(0).choice(len(px), 5000, replace=False)]

    def inliers(oxides: np.ndarray) -> np.ndarray:
        mu = layer_contrast_grid(material, range(1, max_layers + 1), oxides, cam)  # [T, K, 3]
        sig = np.sqrt(noise**2 + (cfg.rel_sigma * mu) ** 2)
        return np.array([int((_chi2(px, mu[t], sig[t]).min(1) < cfg.max_chi2).sum())
                         for t in range(len(oxides))])  # fmt: skip

    lo, hi = candidates
    coarse = np.arange(lo, hi + 0.5 * step_nm, step_nm)  # then 1 nm around the best
    n = inliers(coarse)
    c = float(coarse[int(np.argmax(n))])
    fine = np.arange(max(lo, c - step_nm), min(hi, c + step_nm) + 0.5, 1.0)
    m = inliers(fine)
    best = int(np.argmax(m))
    scale = len(C[cand]) / max(1, len(px))  # inliers among all candidate pixels
    count = int(m[best] * scale)
    return (float(fine[best]) if count >= min_pixels else None), count


def _chi2(C: np.ndarray, mu: np.ndarray, sig: np.ndarray) -> np.ndarray:
    """[N, K] sum over channels of ((C - mu_k) / sigma_k)^2."""
    return (((C[:, None, :] - mu[None]) / sig[None]) ** 2).sum(-1)


def detect(
    image,
    material: str,
    oxide_nm: float = 285.0,
    illuminant: str = "D65",
    config: DetectorConfig | None = None,
    image_id: int | None = None,
    camera: Camera | None = None,
    um_per_px: float | None = None,
    masks: bool = False,
) -> list[dict]:
    """Detect flakes in a micrograph ``image`` [H, W, 3] (uint8 or float in [0, 1]).

    Returns COCO detections sorted by score: ``bbox`` [x, y, w, h], ``score``,
    ``category_id`` (1 Mono, 2 Few, 3 Thick), ``layers``, ``contrast`` (median C per
    channel), ``fit_sigma`` (its distance to the predicted contrast, in standard
    deviations), ``delta_e`` (CIELAB distance to the substrate), ``area`` (pixels), plus
    ``area_um2`` when ``um_per_px`` is given, ``image_id`` when given and ``segmentation``
    (COCO RLE) when ``masks``. ``camera`` is what the image was taken through (e.g. from
    ``qupaint calibrate``); default sRGB under ``illuminant``.
    """
    cfg = config or DetectorConfig()
    cfg.validate()
    img = _as_uint8(image)
    cam = camera or Camera.srgb(illuminant)
    H, W = img.shape[:2]
    mu, model = _classes(material, oxide_nm, illuminant, camera, cfg.max_layers)
    C, sat, noise = _contrast_map(img, cam, cfg)
    chi_sub = ((C / noise) ** 2).sum(-1)
    eight = np.ones((3, 3), bool)
    fg = ndimage.binary_opening((chi_sub > cfg.fg_chi2) | sat, structure=eight)
    comps, n = ndimage.label(fg, structure=eight)
    dets: list[dict] = []
    if n == 0:
        return dets
    sig = np.sqrt(noise[None] ** 2 + (cfg.rel_sigma * mu) ** 2)  # [K, 3]
    log_norm = np.log(sig).sum(-1)  # [K]
    sub_lab = linear_srgb_to_lab(model.substrate)
    for k, sl in enumerate(ndimage.find_objects(comps), start=1):
        comp = comps[sl] == k
        area = int(comp.sum())
        if area < cfg.min_area_px:
            continue
        c_reg = C[sl]
        sat_reg = sat[sl] & comp
        chi = _chi2(c_reg[comp], mu, sig)  # [n, K]
        cls = np.zeros(comp.shape, np.int64)
        best = chi.argmin(1)
        # per pixel only what is far off every class is "other" (crystals, dirt); whether a
        # piece fits a layer is decided on its median contrast, below
        other = (chi[np.arange(len(best)), best] > cfg.other_chi2) | sat_reg[comp]
        cls[comp] = np.where(other, -1, best + 1)
        if np.mean(other) > 0.8:
            continue  # a crystal, debris or dirt: nothing here fits a layer
        core = ndimage.binary_erosion(comp, iterations=cfg.edge_px) if cfg.edge_px else comp
        if core.sum() < cfg.min_area_px // 2:
            core = comp
        total = int(core.sum())
        bad = (
            ndimage.binary_dilation(cls == -1, iterations=cfg.halo_px)
            if (cls == -1).any()
            else None
        )
        values, counts = np.unique(cls[core & (cls > 0)], return_counts=True)
        for v, cnt in zip(values, counts, strict=True):
            if cnt < max(cfg.min_area_px // 2, cfg.min_share * total):
                continue
            # flakes that touch share a region; one layer class may still be two flakes
            lab_v, nv = ndimage.label(core & (cls == v), structure=np.ones((3, 3)))
            for j in range(1, nv + 1):
                piece = lab_v == j
                pa = int(piece.sum())
                if pa < cfg.min_area_px // 2:
                    continue
                halo = float(np.mean(bad[piece])) if bad is not None else 0.0
                if halo > cfg.max_halo:
                    continue
                med = np.median(c_reg[piece], axis=0)
                d2 = _chi2(med[None], mu, sig)[0]
                nl = int(d2.argmin()) + 1
                if d2[nl - 1] > cfg.max_chi2:
                    continue  # its colour is off every layer's curve
                logp = np.concatenate([[-0.5 * float((med / noise) ** 2 @ np.ones(3))
                                        - float(np.log(noise).sum())],
                                       -0.5 * d2 - log_norm])  # fmt: skip
                post = math.exp(logp[nl] - np.logaddexp.reduce(logp))
                ys, xs = np.nonzero(piece)
                pad = cfg.box_pad_px
                x0, y0 = max(0, xs.min() - pad), max(0, ys.min() - pad)
                x1 = min(comp.shape[1], xs.max() + 1 + pad)
                y1 = min(comp.shape[0], ys.max() + 1 + pad)
                lab = linear_srgb_to_lab(model.substrate * (1.0 + med))
                d = {
                    "bbox": [
                        float(sl[1].start + x0),
                        float(sl[0].start + y0),
                        float(x1 - x0),
                        float(y1 - y0),
                    ],  # fmt: skip
                    "score": float(
                        post
                        * min(1.0, pa / total)
                        * (1.0 - halo)
                        * math.exp(-math.sqrt(d2[nl - 1] / 3.0) / cfg.fit_scale)
                    ),
                    "category_id": category_of(nl),
                    "layers": nl,
                    "contrast": [round(float(c), 5) for c in med],
                    "fit_sigma": float(math.sqrt(d2[nl - 1] / 3.0)),
                    "delta_e": float(np.linalg.norm(lab - sub_lab)),
                    "area": pa,
                }
                if um_per_px:
                    d["area_um2"] = float(pa * um_per_px**2)
                if masks:
                    d["segmentation"] = _rle(piece, sl, pad, H, W)
                if image_id is not None:
                    d["image_id"] = image_id
                dets.append(d)
    dets.sort(key=lambda d: -d["score"])
    return dets


def _rle(piece: np.ndarray, sl: tuple, pad: int, H: int, W: int) -> dict:
    """COCO RLE of a piece (grown by ``pad`` like its box) in full-image coordinates."""
    from pycocotools import mask as mask_utils

    grown = ndimage.binary_dilation(piece, iterations=pad) if pad else piece
    full = np.zeros((H, W), np.uint8, order="F")
    full[sl][grown] = 1
    rle = mask_utils.encode(full)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


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
    for k, dets in enumerate(run_tasks(_detect_image, jobs, workers, chunksize=4)):
        out += dets
        if progress:
            progress(k + 1, len(jobs))
    return out
