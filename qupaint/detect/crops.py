"""Labelled real flake crops: find them, measure a crop's flake and substrate, cut the flake
out.

The crops this is built for are tight bounding-box crops of expert-labelled flakes, one per
file, named ``<Material>_<image>_ann<k>_L<layers>.png`` in folders named by the layer count
(the 2DMatGMM layer crops; see ``shared/data/real/README.md``). Scoring on them lives in
:mod:`qupaint.bench.layers`; these readers sit in the detect layer because training data
(:func:`qupaint.seg.train.crop_pieces`) needs them too, and training may not import scoring.

Measuring a crop (:func:`measure_crop`): the pixels (3x3 median-filtered) are split into
``k`` colour clusters (k-means). The substrate is the cluster that holds most of the crop's
border ring; a brighter cluster with at least a quarter of the ring wins over it, because
thin flakes here are darker than the substrate. The flake is the remaining cluster whose
largest connected region spans most of the crop (the crop is the flake's box, so the
labelled flake touches its edges), with its pixel count as the tie-break.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["LayerCrop", "cut_out_crop", "find_layer_crops", "measure_crop"]

_NAME = re.compile(r"^(?P<material>[A-Za-z0-9]+)_(?P<image>.+)_ann(?P<ann>\d+)_L(?P<layers>\d+)$")


@dataclass
class LayerCrop:
    """One labelled crop: ``source`` names the micrograph it was cut from."""

    path: Path
    material: str
    layers: int
    source: str


def find_layer_crops(root: str | os.PathLike) -> list[LayerCrop]:
    """Every ``<n>/<Material>_<image>_ann<k>_L<n>.png`` under ``root``, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"root: no such folder {str(root)!r}")
    out = []
    for path in sorted(root.glob("*/*.png")):
        m = _NAME.match(path.stem)
        if m is None:
            continue
        out.append(
            LayerCrop(path, m["material"], int(m["layers"]), f"{m['material']}_{m['image']}")
        )
    if not out:
        raise ValueError(
            f"root: no labelled crops in {root} (expected <layers>/<Material>_<image>_ann<k>_"
            "L<layers>.png)"
        )
    return out


def _clusters(image: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy import ndimage
    from scipy.cluster.vq import kmeans2

    x = ndimage.median_filter(np.asarray(image, dtype=np.float64), size=(3, 3, 1))
    k = max(2, min(k, x.shape[0] * x.shape[1]))
    _, lab = kmeans2(x.reshape(-1, 3), k, seed=0, minit="++")
    return x, lab.reshape(x.shape[:2])


def _crop_parts(image, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int | None]:
    """(filtered pixels, cluster labels, cluster medians, substrate cluster, flake cluster or
    None) of a flake's box crop, as the module docstring says."""
    from scipy import ndimage

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 3 or min(img.shape[:2]) < 3:
        raise ValueError(f"image must be [H, W, 3] with H, W >= 3; got shape {img.shape}")
    x, lab = _clusters(img, k)
    H, W = lab.shape
    r = max(1, min(H, W) // 10)
    ring = np.ones((H, W), bool)
    ring[r : H - r, r : W - r] = False
    n = int(lab.max()) + 1
    px, flat = x.reshape(-1, 3), lab.ravel()
    size = np.bincount(flat, minlength=n)
    ring_share = np.bincount(lab[ring], minlength=n) / ring.sum()
    med = np.array([np.median(px[flat == j], axis=0) if size[j] else np.zeros(3) for j in range(n)])
    s = int(np.argmax(ring_share))
    for j in range(n):
        if j != s and ring_share[j] >= 0.25 and med[j].sum() > med[s].sum():
            s = j
    others = [j for j in range(n) if j != s and size[j] > 0]
    if not others:
        return x, lab, med, s, None

    def span(j: int) -> float:
        comp, m = ndimage.label(lab == j)
        areas = np.bincount(comp.ravel())[1:]
        ys, xs = ndimage.find_objects(comp)[int(np.argmax(areas))]
        return (ys.stop - ys.start) * (xs.stop - xs.start) / (H * W) + 0.5 * size[j] / size.sum()

    return x, lab, med, s, max(others, key=span)


def measure_crop(image, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(flake RGB [3], substrate RGB [3]) pixel values of a flake's box crop (see the module
    docstring); ``image`` is [H, W, 3] uint8 or float."""
    _, _, med, s, f = _crop_parts(image, k)
    return (med[s] if f is None else med[f]), med[s]


def cut_out_crop(image, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(ratio float32 [H, W, 3], part uint8 [H, W]) of a flake's box crop, cut out by its
    contrast to paste elsewhere: ``ratio`` is each (3x3 median-filtered) pixel over the
    crop's substrate, so ``background * ratio`` puts the flake on another substrate with its
    contrast kept; ``part`` is 1 on the labelled flake (the largest connected region of the
    flake cluster of :func:`measure_crop`, with the substrate-like pits in it), 2 on
    whatever else is not substrate and does not reach the crop's edge (a thicker island, a
    fold: of unknown thickness) and 0 elsewhere: the substrate, and neighbours that the box
    cuts, which pasted would bring the box's straight edge along."""
    from scipy import ndimage

    x, lab, med, s, f = _crop_parts(image, k)
    flake = np.zeros(lab.shape, bool)
    if f is not None:
        comp, _ = ndimage.label(lab == f)
        areas = np.bincount(comp.ravel())
        areas[0] = 0
        flake = comp == int(np.argmax(areas))
        flake |= ndimage.binary_fill_holes(flake) & (lab == s)  # pits and noise, not islands
    comp, _ = ndimage.label((lab != s) & ~flake)
    edge = np.unique(np.concatenate([comp[0], comp[-1], comp[:, 0], comp[:, -1]]))
    part = np.where((comp > 0) & ~np.isin(comp, edge), 2, 0).astype(np.uint8)
    part[flake] = 1
    ratio = (x / np.maximum(med[s], 1.0)).astype(np.float32)
    return ratio, part
