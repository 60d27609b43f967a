"""The thin-flake segmenter scored on whole real micrographs by mask overlap.

Issue 51's criterion: an expert flake is *found* when one predicted instance overlaps its
mask with IoU >= 0.5 (pixels, not boxes); *precision* is the share of predicted instances
that find a flake; *false instances* are the rest. The data layout is that of
:mod:`qupaint.bench.real` (``images/<id>.jpg`` with ``masks/<id>.png``, 0 for everything
but the thin flakes, k for the k-th).

Example
-------
>>> import numpy as np
>>> gt = np.zeros((8, 8), np.uint8); gt[1:4, 1:4] = 1; gt[5:8, 5:8] = 2
>>> pred = np.zeros((8, 8), np.int32); pred[1:4, 1:5] = 1; pred[0, 7] = 2
>>> r = match_instances(gt, pred)
>>> r["flakes"], r["found"], r["instances"], r["true_instances"]
(2, 1, 2, 1)
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from qupaint.bench.real import camera_setting, find_masked_images, timed_runs

__all__ = ["match_instances", "evaluate_segmenter_real", "summarise"]


def match_instances(gt: np.ndarray, pred: np.ndarray, iou: float = 0.5) -> dict:
    """Mask-IoU matching of two instance label images of one shape (0 = background).

    Returns ``flakes`` (ground-truth instances), ``found`` (those that some predicted
    instance overlaps with IoU >= ``iou``), ``instances`` (predicted), ``true_instances``
    (predicted instances with IoU >= ``iou`` to some flake) and ``best_iou`` per flake.
    """
    g = np.asarray(gt).astype(np.int64)
    p = np.asarray(pred).astype(np.int64)
    if g.shape != p.shape:
        raise ValueError(f"pred: shape {p.shape} differs from the mask's {g.shape}")
    gi, gk = np.unique(g, return_inverse=True)
    pi, pk = np.unique(p, return_inverse=True)
    gk, pk = gk.reshape(-1), pk.reshape(-1)
    inter = np.zeros((len(gi), len(pi)), np.int64)
    np.add.at(inter, (gk, pk), 1)
    ga, pa = inter.sum(1), inter.sum(0)
    union = ga[:, None] + pa[None, :] - inter
    ious = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    gsel, psel = gi > 0, pi > 0
    ious = ious[gsel][:, psel]
    hit = ious >= iou
    return {
        "flakes": int(gsel.sum()),
        "found": int(hit.any(1).sum()),
        "instances": int(psel.sum()),
        "true_instances": int(hit.any(0).sum()),
        "best_iou": [round(float(v), 3) for v in (ious.max(1) if ious.shape[1] else
                                                  np.zeros(ious.shape[0]))],  # fmt: skip
    }


def summarise(rows: list[dict]) -> dict:
    """Totals of :func:`match_instances` rows: recall, precision and false instances per image."""
    f = sum(r["flakes"] for r in rows)
    found = sum(r["found"] for r in rows)
    inst = sum(r["instances"] for r in rows)
    true = sum(r["true_instances"] for r in rows)
    return {
        "images": len(rows),
        "flakes": f,
        "found": found,
        "recall": found / f if f else None,
        "instances": inst,
        "precision": true / inst if inst else None,
        "false_per_image": (inst - true) / max(1, len(rows)),
    }


def evaluate_segmenter_real(
    images_dir: str | os.PathLike,
    segment: Callable[[np.ndarray], np.ndarray],
    masks_dir: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Run ``segment(image) -> [H, W] labels`` on every masked image of a folder; the
    :func:`summarise` totals with ``per_image`` rows (name, camera setting, seconds) and
    ``seconds_per_image``."""
    rows = []
    pairs = find_masked_images(images_dir, masks_dir)
    for p, img, mask, labels, dt in timed_runs(pairs, lambda k: segment, progress):
        row = match_instances(mask, labels)
        row.update(image=p.name, setting=camera_setting(img), seconds=round(dt, 3))
        rows.append(row)
    out = summarise(rows)
    out["seconds_per_image"] = float(np.mean([r["seconds"] for r in rows]))
    out["per_image"] = rows
    return out
