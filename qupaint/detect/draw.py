"""Draw labelled flakes on an image (detector output, model predictions)."""

from __future__ import annotations

from pathlib import Path
from typing import IO

import numpy as np

from qupaint.categories import CATEGORY_NAMES
from qupaint.rle import decode as decode_rle

__all__ = ["draw_detections", "outline_labels", "CATEGORY_COLORS"]

CATEGORY_COLORS = {1: (255, 40, 40), 2: (40, 200, 255), 3: (255, 220, 0), None: (255, 255, 255)}


def _outline(seg: dict, shape: tuple[int, int]) -> np.ndarray:
    """Boundary pixels of a COCO RLE mask."""
    from scipy import ndimage

    m = decode_rle(seg)
    return m & ~ndimage.binary_erosion(m) if m.shape == shape else np.zeros(shape, bool)


def outline_labels(
    image: np.ndarray, labels: np.ndarray, color: tuple[int, int, int] = (255, 40, 40)
) -> np.ndarray:
    """A copy of ``image`` [H, W, 3] uint8 with the outline of every instance of
    ``labels`` [H, W] (0 = background) drawn in ``color``."""
    lab = np.asarray(labels)
    edge = np.zeros(lab.shape, bool)
    edge[:-1] |= lab[:-1] != lab[1:]
    edge[1:] |= lab[:-1] != lab[1:]
    edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    edge[:, 1:] |= lab[:, :-1] != lab[:, 1:]
    out = np.array(image, dtype=np.uint8)
    out[edge & (lab > 0)] = color
    return out


def draw_detections(
    image: np.ndarray, dets: list[dict], out: str | Path | IO[bytes]
) -> Path | None:
    """Write ``image`` [H, W, 3] uint8 with each detection outlined (its ``segmentation``
    RLE when present, else its ``bbox`` [x, y, w, h]) and labelled (class, ``layers``,
    ``score``) as PNG, to a path (returned) or a binary file object."""
    from PIL import Image, ImageDraw

    arr = np.array(image, dtype=np.uint8)
    for d in dets:
        seg = d.get("segmentation")
        if isinstance(seg, dict) and "counts" in seg:
            arr[_outline(seg, arr.shape[:2])] = CATEGORY_COLORS.get(
                d.get("category_id"), CATEGORY_COLORS[None]
            )
    im = Image.fromarray(arr)
    draw = ImageDraw.Draw(im)
    for d in dets:
        x, y, w, h = d["bbox"]
        cat = d.get("category_id")
        color = CATEGORY_COLORS.get(cat, CATEGORY_COLORS[None])
        if not isinstance(d.get("segmentation"), dict):
            draw.rectangle([x, y, x + w, y + h], outline=color, width=2)
        text = CATEGORY_NAMES.get(cat, d.get("label") or "")
        if "layers" in d:
            text += f" {d['layers']}L"
        if "score" in d:
            text += f" {d['score']:.2f}"
        draw.text((x + 2, max(0, y - 11)), text.strip(), fill=color)
    if hasattr(out, "write"):
        im.save(out, format="PNG")
        return None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    im.save(out)
    return out
