"""Few-shot calibration of a microscope from a few annotated whole images.

A lab labels two or three of its own micrographs (an instance mask per image, 0 for
everything else, k for the k-th flake; the layout of ``qupaint eval real``) and gets a camera
file for ``qupaint detect --camera``:

- with layer numbers (``layers``: ``{(image stem, instance id): layers}``), the camera's
  bands, NA and the oxide are fitted to the median contrast of each layer count
  (:func:`qupaint.color.calibrate.fit_camera`, the same fit as ``qupaint calibrate
  --contrast``);
- without them, the layer ladder is fitted to the flakes' contrasts
  (:func:`qupaint.detect.ladder.fit_ladder`): the oxide and the per-channel response of these
  camera settings, which become the detector's prior (``response`` in the file), and every
  flake gets its inferred layer count.

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
from qupaint.detect.ladder import fit_ladder

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
            c = np.median(cm.C[sl][core], axis=0).astype(float).tolist()
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
        to have 1..``max_layers`` layers (default: the Mono and Few categories, 1-5).
    """
    from qupaint.color.calibrate import fit_camera
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
        obs = []
        for n in counts:
            sel = [i for i, f in enumerate(flakes) if known.get((f["image"], f["id"])) == n]
            obs.append((material, n, tuple(np.median(C[sel], axis=0))))
        fit = fit_camera(obs, oxide_nm=oxide_range, illuminant=cam.illuminant, gamma=cam.gamma)
        out.update(fit.to_dict())
        out["method"] = "fit_camera on the median contrast per labelled layer count"
        for f in flakes:
            f["layers"] = known.get((f["image"], f["id"]))
    else:
        noise = np.full(3, 0.01)
        w = np.log1p(np.array([f["area"] for f in flakes]) / 100.0)
        thin = replace(cfg, max_layers=max_layers, thin_layers=min(cfg.thin_layers, max_layers))
        lad = fit_ladder(C, material, cam, noise, tuple(oxide_range), w, thin)
        sig = np.sqrt(noise**2 + (cfg.rel_sigma * C) ** 2)
        d2 = (((C[:, None] - lad.contrast[None]) / sig[:, None]) ** 2).sum(-1)
        for f, row in zip(flakes, d2, strict=True):
            f["layers"] = int(row.argmin()) + 1
            f["fit_sigma"] = round(float(np.sqrt(row.min() / 3)), 3)
        out.update({
            "camera": cam.to_dict(),
            "oxide_nm": lad.oxide_nm,
            "response": [round(float(k), 4) for k in lad.response],
            "method": "ladder fit (oxide and per-channel response) to the flakes' contrasts, "
                      f"each taken as 1-{max_layers} layers (the masks mark thin flakes); "
                      "layer counts inferred",
        })  # fmt: skip
    out["observations"] = flakes
    return out
