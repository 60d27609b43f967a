"""COCO run-length encoding of masks: the one place masks are encoded and decoded.

Every mask the library writes (Synthia's annotations, detections, the flake database, COCO
exports) is COCO compressed RLE with ``counts`` as an ASCII string, the form JSON holds.

>>> import numpy as np
>>> m = np.zeros((4, 5), bool); m[1:3, 2:4] = True
>>> seg = encode(m); seg["size"], isinstance(seg["counts"], str)
([4, 5], True)
>>> bool((decode(seg) == m).all()), bool((from_counts(counts(m), 4, 5) == m).all())
(True, True)
>>> bool((decode(encode_window(m[1:3, 2:4], 1, 2, 4, 5)) == m).all())
True
"""

from __future__ import annotations

import numpy as np

__all__ = ["counts", "decode", "encode", "encode_window", "from_counts"]


def _coco_mask():
    from pycocotools import mask as mask_utils

    return mask_utils


def encode(mask: np.ndarray) -> dict:
    """``{"size": [H, W], "counts": str}`` of a 2-D mask (bool or 0/1)."""
    rle = _coco_mask().encode(np.asfortranarray(np.asarray(mask).astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def encode_window(mask: np.ndarray, y0: int, x0: int, H: int, W: int) -> dict:
    """The RLE of an [H, W] image's mask that is ``mask`` in the window whose top-left pixel is
    (``y0``, ``x0``) and empty elsewhere."""
    full = np.zeros((H, W), np.uint8, order="F")
    full[y0 : y0 + mask.shape[0], x0 : x0 + mask.shape[1]] = mask
    return encode(full)


def decode(seg: dict, height: int | None = None, width: int | None = None) -> np.ndarray:
    """[H, W] bool mask of a COCO segmentation: compressed RLE (``counts`` str or bytes),
    uncompressed RLE (``counts`` a list) or polygons (a list; ``height`` and ``width``
    needed)."""
    mu = _coco_mask()
    if isinstance(seg, list):  # polygons
        if height is None or width is None:
            raise ValueError("decode: polygons need height and width")
        return mu.decode(mu.merge(mu.frPyObjects(seg, height, width))).astype(bool)
    if isinstance(seg.get("counts"), list):  # uncompressed RLE
        h, w = seg["size"]
        return mu.decode(mu.frPyObjects(seg, h, w)).astype(bool)
    c = seg["counts"]
    c = c.encode("ascii") if isinstance(c, str) else c
    return mu.decode({"size": seg["size"], "counts": c}).astype(bool)


def counts(mask: np.ndarray) -> str:
    """The RLE ``counts`` string alone (the flake database stores it with the frame's size)."""
    return encode(mask)["counts"]


def from_counts(counts_: str, height: int, width: int) -> np.ndarray:
    """[H, W] bool mask from an RLE ``counts`` string and the mask's size."""
    return decode({"size": [height, width], "counts": counts_})
