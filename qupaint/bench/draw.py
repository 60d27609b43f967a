"""Draw labelled boxes on an image (detector output, model predictions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qupaint.categories import CATEGORY_NAMES

__all__ = ["draw_detections", "CATEGORY_COLORS"]

CATEGORY_COLORS = {1: (255, 40, 40), 2: (40, 200, 255), 3: (255, 220, 0), None: (255, 255, 255)}


def draw_detections(image: np.ndarray, dets: list[dict], out: str | Path) -> Path:
    """Write ``image`` [H, W, 3] uint8 with a box and label per detection
    (``bbox`` [x, y, w, h], optional ``category_id``, ``layers``, ``score``) as PNG."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(np.asarray(image, dtype=np.uint8))
    draw = ImageDraw.Draw(im)
    for d in dets:
        x, y, w, h = d["bbox"]
        cat = d.get("category_id")
        color = CATEGORY_COLORS.get(cat, CATEGORY_COLORS[None])
        draw.rectangle([x, y, x + w, y + h], outline=color, width=2)
        text = CATEGORY_NAMES.get(cat, d.get("label") or "")
        if "layers" in d:
            text += f" {d['layers']}L"
        if "score" in d:
            text += f" {d['score']:.2f}"
        draw.text((x + 2, max(0, y - 11)), text.strip(), fill=color)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    im.save(out)
    return out
