"""Thin-flake segmentation trained on Synthia only: the sim-to-real proof model.

``segment(image)`` takes an ``[H, W, 3]`` uint8 micrograph and returns ``[H, W]`` int32
instance labels (0 = background, 1..n = thin flakes of 1-5 layers), from a compact U-Net
(:mod:`qupaint.seg.net`) that saw only Synthia images in training
(:mod:`qupaint.seg.train`). The shipped weights are the default model; ``qupaint seg train``
reproduces them and ``qupaint seg predict`` runs them on image files.

It proposes thin-flake candidates; the physics detector (``qupaint detect``) labels layer
counts.

Example
-------
>>> import numpy as np
>>> from qupaint.seg import segment
>>> labels = segment(np.full((64, 96, 3), 120, np.uint8), material="graphene")  # a bare chip
>>> labels.shape, labels.dtype, int(labels.max())
((64, 96), dtype('int32'), 0)
"""

from __future__ import annotations

import functools
import json
import os
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from qupaint.constants import MIN_AREA_PX
from qupaint.seg.net import UNet, contrast_input, segmenter_input

__all__ = [
    "segment",
    "probability",
    "load_segmenter",
    "instances",
    "instance_boxes",
    "flake_detections",
    "window_probability",
    "network_input",
    "DEFAULT_WEIGHTS",
    "MIN_AREA_PX",
]

DEFAULT_WEIGHTS = "thin-flakes.safetensors"
# MIN_AREA_PX, the smallest instance kept (pixels), is the physics detector's own minimum
# where the scale is unknown (qupaint.constants: one value for both)


def _default_path() -> Path:
    return Path(str(resources.files("qupaint") / "seg" / "weights" / DEFAULT_WEIGHTS))


@functools.lru_cache(maxsize=4)
def load_segmenter(path: str | os.PathLike | None = None) -> UNet:
    """The U-Net of a ``.safetensors`` file written by ``qupaint seg train`` (default: the
    shipped weights), in eval mode, float32."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    p = Path(path) if path is not None else _default_path()
    if not p.is_file():
        raise ValueError(f"model: {p} does not exist (train one with `qupaint seg train`)")
    try:
        with safe_open(str(p), "pt") as f:
            arch = json.loads((f.metadata() or {}).get("qupaint", "{}"))
        tensors = load_file(p)
    except Exception as exc:  # safetensors raises its own kinds on a truncated file
        raise ValueError(f"model: {p} is not a readable .safetensors file ({exc})") from exc
    if arch.get("name") != "UNet":
        raise ValueError(f"model: {p} is not a qupaint segmenter (no UNet metadata)")
    planes = {"contrast": 3, "contrast+material": 6}.get(arch.get("in", "contrast"))
    if planes is None:
        raise ValueError(f"model: {p} takes input {arch.get('in')!r}, which this version "
                         "does not know")  # fmt: skip
    net = UNet(int(arch["width"]), int(arch["depth"]), in_channels=planes,
               stem=int(arch.get("stem", 1)))  # fmt: skip
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:  # a truncated file or another architecture's tensors
        raise ValueError(f"model: {p} does not hold the weights its metadata names ({arch}): "
                         f"{str(exc).splitlines()[0]}") from exc
    return net.eval().to(memory_format=torch.channels_last)


def network_input(net: UNet, image: np.ndarray, material: str | None) -> torch.Tensor:
    """What ``net`` reads of an image: its contrast map, and the material's planes when the
    network was trained with them (then ``material`` is required)."""
    if net.in_channels == 3:
        return contrast_input(image)
    _require_material(net, material)
    return segmenter_input(image, material)


def _require_material(net: UNet, material: str | None) -> None:
    if net.in_channels != 3 and material is None:
        raise ValueError("material: this segmenter reads the flakes' material (its one-layer "
                         "contrast); give it, e.g. material='graphene'")  # fmt: skip


@torch.no_grad()
def probability(image: np.ndarray, model: str | os.PathLike | UNet | None = None,
                material: str | None = None) -> np.ndarray:  # fmt: skip
    """[2, H, W] float32: the probability that each pixel belongs to a thin (1-5 layer)
    flake of ``material``, and that it lies on a cut between two touching flakes or flake
    parts."""
    net = model if isinstance(model, UNet) else load_segmenter(model)
    x = network_input(net, image, material)[None].contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return torch.sigmoid(net(x))[0].contiguous().numpy()


@torch.no_grad()
def window_probability(image: np.ndarray, windows, model: str | os.PathLike | UNet | None = None,
                       material: str | None = None,
                       bucket: int = 32) -> list[np.ndarray]:  # fmt: skip
    """:func:`probability` on windows of ``image`` only: per ``(y0, y1, x0, x1)`` window, the
    [2, y1 - y0, x1 - x0] probabilities, the contrast taken against the whole image's
    substrate (:func:`~qupaint.seg.net.image_substrate`). Cheaper than the whole image when
    only a few places are in question. Each window is widened (within the image) to a
    multiple of ``bucket`` px a side, and windows of one size go through the network as one
    batch: a small window costs the network's per-call overhead (about 3.5 ms on one core)
    more than its pixels. Near a window's edge the network sees less context than on the
    whole image."""
    from qupaint.seg.net import image_substrate, material_planes, with_planes

    net = model if isinstance(model, UNet) else load_segmenter(model)
    _require_material(net, material)
    H, W = image.shape[:2]
    sub = image_substrate(image)
    planes = material_planes(material) if net.in_channels != 3 else None
    groups: dict[tuple[int, int], list] = {}
    for k, (y0, y1, x0, x1) in enumerate(windows):
        h = min(H, -(-(y1 - y0) // bucket) * bucket)
        w = min(W, -(-(x1 - x0) // bucket) * bucket)
        wy = min(max(0, (y0 + y1 - h) // 2), H - h)  # the window, widened about its centre
        wx = min(max(0, (x0 + x1 - w) // 2), W - w)
        groups.setdefault((h, w), []).append((k, wy, wx))
    out: list = [None] * len(windows)
    for (h, w), members in groups.items():
        xs = []
        for _, wy, wx in members:
            x = contrast_input(image[wy : wy + h, wx : wx + w], sub)
            xs.append(with_planes(x, planes) if planes is not None else x)
        batch = torch.stack(xs).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            prob = torch.sigmoid(net(batch)).numpy()
        for (k, wy, wx), p in zip(members, prob, strict=True):
            y0, y1, x0, x1 = windows[k]
            out[k] = np.ascontiguousarray(p[:, y0 - wy : y1 - wy, x0 - wx : x1 - wx])
    return out


def instances(
    prob: np.ndarray, threshold: float = 0.5, min_area: int = MIN_AREA_PX,
    low: float | None = None,
) -> np.ndarray:
    """[H, W] int32 labels from :func:`probability`'s output, by hysteresis: regions of
    ``thin > low`` (default ``threshold / 2``) that hold a pixel above ``threshold`` are
    flakes. Their pixels off the cuts split into 4-connected cores; the cut pixels join
    their nearest core. Instances smaller than ``min_area`` pixels are dropped; the rest
    are numbered 1..n by size (largest first)."""
    from scipy.ndimage import distance_transform_edt, label

    p = np.asarray(prob)
    low = threshold / 2 if low is None else low
    weak, nw = label(p[0] > low)
    strong = np.zeros(nw + 1, bool)
    strong[np.unique(weak[p[0] > threshold])] = True
    strong[0] = False
    thin = strong[weak]
    core = thin & (p[1] <= threshold) if p.shape[0] > 1 else thin
    lab, n = label(core)
    if n == 0:
        return np.zeros(thin.shape, np.int32)
    rest = thin & (lab == 0)
    if rest.any():  # cut pixels go to the nearest core
        _, (iy, ix) = distance_transform_edt(lab == 0, return_indices=True)
        lab[rest] = lab[iy[rest], ix[rest]]
    area = np.bincount(lab.ravel(), minlength=n + 1)
    area[0] = 0
    order = [k for k in np.argsort(-area, kind="stable") if area[k] >= min_area and k > 0]
    remap = np.zeros(n + 1, np.int32)
    remap[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    return remap[lab]


def instance_boxes(labels: np.ndarray) -> dict[int, list[int]]:
    """``{id: [x, y, w, h]}`` (pixels) of every instance of a label image (0 = background)."""
    from scipy.ndimage import find_objects

    return {
        k + 1: [s[1].start, s[0].start, s[1].stop - s[1].start, s[0].stop - s[0].start]
        for k, s in enumerate(find_objects(np.asarray(labels)))
        if s is not None
    }


def segment(
    image: np.ndarray,
    model: str | os.PathLike | UNet | None = None,
    threshold: float = 0.5,
    min_area: int = MIN_AREA_PX,
    material: str | None = None,
) -> np.ndarray:
    """Thin-flake instances of a micrograph of ``material``'s flakes: ``[H, W, 3]`` uint8
    (or float in [0, 1]) -> ``[H, W]`` int32 labels (0 background, 1..n flakes, largest
    first). ``model``: a weights file or a loaded :class:`UNet` (default: the shipped
    model, trained on Synthia only, which needs ``material``). A flake is a region above
    ``threshold / 2`` holding a pixel above ``threshold`` (:func:`instances`), of at least
    ``min_area`` pixels (the detector's minimum)."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1); got {threshold}")
    if min_area < 0:
        raise ValueError(f"min_area must be >= 0 pixels; got {min_area}")
    return instances(probability(image, model, material), threshold, min_area)


def flake_detections(image: np.ndarray, model: str | os.PathLike | UNet | None = None,
                     material: str | None = None, threshold: float = 0.5,
                     min_area: int = MIN_AREA_PX) -> list[dict]:  # fmt: skip
    """The segmenter's thin flakes as detections, best first: ``bbox`` [x, y, w, h] px,
    ``area`` px, ``score`` (the instance's mean thin probability), ``category_id`` 1 (thin,
    1-5 layers: the segmenter does not count layers) and ``instance`` (its label in what
    :func:`segment` returns with the same settings)."""
    prob = probability(image, model, material)
    lab = instances(prob, threshold, min_area)
    n = int(lab.max())
    if n == 0:
        return []
    area = np.bincount(lab.ravel(), minlength=n + 1)
    mean = np.bincount(lab.ravel(), weights=prob[0].ravel(), minlength=n + 1) / np.maximum(area, 1)
    out = [{"bbox": box, "area": int(area[k]), "score": round(float(mean[k]), 4),
            "category_id": 1, "instance": k} for k, box in instance_boxes(lab).items()]  # fmt: skip
    return sorted(out, key=lambda d: -d["score"])
