"""Box geometry shared by every stage: boxes as ``x, y, w, h`` in continuous pixel
coordinates (COCO's convention).

>>> float(box_iou_xywh([0, 0, 10, 10], [5, 0, 10, 10]))
0.3333333333333333
"""

from __future__ import annotations

import numpy as np

__all__ = ["box_iou_xywh", "xywh_to_xyxy", "xyxy_to_xywh"]


def xyxy_to_xywh(box) -> list[float]:
    """``[x1, y1, x2, y2]`` (corners, as answers and region tokens write boxes) ->
    ``[x, y, w, h]`` (COCO's), as floats.

    >>> xyxy_to_xywh([1, 2, 4, 6])
    [1.0, 2.0, 3.0, 4.0]
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def xywh_to_xyxy(box) -> list[float]:
    """``[x, y, w, h]`` -> ``[x1, y1, x2, y2]``, as floats.

    >>> xywh_to_xyxy([1, 2, 3, 4])
    [1.0, 2.0, 4.0, 6.0]
    """
    x, y, w, h = (float(v) for v in box)
    return [x, y, x + w, y + h]


def box_iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise IoU of boxes ``[..., 4]`` given as ``x, y, w, h`` (continuous coordinates)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ix = np.clip(np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2])
                 - np.maximum(a[..., 0], b[..., 0]), 0, None)  # fmt: skip
    iy = np.clip(np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3])
                 - np.maximum(a[..., 1], b[..., 1]), 0, None)  # fmt: skip
    inter = ix * iy
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
