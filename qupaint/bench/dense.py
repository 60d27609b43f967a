"""Scoring the compact model's vision side alone: its dense head's class maps, the regions cut
from them (what its language model reads) as COCO detections, and how well they match the
truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qupaint.bench.metrics import rank_score

__all__ = ["REGION_GRID", "dense_maps", "dense_region_row", "region_detections",
           "region_scores"]  # fmt: skip

#: the (region_min_cells, region_absorb_cells) settings :func:`region_scores` compares
REGION_GRID = tuple((m, a) for m in (3, 6, 12) for a in (0, 12, 24, 48, 96))


def region_detections(maps, gt: dict, classes: int, min_cells: int,
                      absorb_cells: int) -> list[dict]:  # fmt: skip
    """COCO detections (pixel ``bbox``, score by rank: larger regions first) of the regions
    (:func:`~qupaint.model.regions.map_regions`) of dense class maps ``maps``
    (``{image_id: class map [h, w]}``) of the images of COCO ``gt``."""
    from qupaint.model.regions import map_regions

    size = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    dets = []
    for iid, lab in maps.items():
        w, h = size[iid]
        boxes, cats = map_regions(lab, classes, min_cells, absorb_cells)
        dets += [{"image_id": iid, "category_id": c, "score": rank_score(k),
                  "bbox": [x1 * w, y1 * h, (x2 - x1) * w, (y2 - y1) * h]}
                 for k, ((x1, y1, x2, y2), c) in enumerate(zip(boxes, cats, strict=True))]
    return dets


def region_scores(maps, gt: dict, grid=REGION_GRID, classes: int = 4) -> list[dict]:
    """How well the regions of dense class maps match the truth, per setting of ``grid``:
    exact per-class count accuracy (each image and class: as many regions as flakes) and
    the F1 of regions against flakes (box IoU >= 0.5, same class, one-to-one, greedy by
    IoU). ``maps``: ``{image_id: class map [h, w]}``; ``gt``: a COCO dict."""
    from qupaint.bench.metrics import box_iou_xywh, by_image

    truth = by_image(gt["annotations"], gt["images"])
    out = []
    for min_cells, absorb in grid:
        found = by_image(region_detections(maps, gt, classes, min_cells, absorb))
        right = total = tp = n_pred = n_true = 0
        for iid in maps:
            dets, anns = found.get(iid, []), truth[iid]
            for c in range(1, classes):
                right += (sum(d["category_id"] == c for d in dets)
                          == sum(a["category_id"] == c for a in anns))  # fmt: skip
                total += 1
            n_pred, n_true = n_pred + len(dets), n_true + len(anns)
            if dets and anns:
                iou = box_iou_xywh(np.array([d["bbox"] for d in dets])[:, None],
                                   np.array([a["bbox"] for a in anns])[None])  # fmt: skip
                same = (np.array([d["category_id"] for d in dets])[:, None]
                        == np.array([a["category_id"] for a in anns]))  # fmt: skip
                iou[~same] = 0
                while iou.max() >= 0.5:
                    i, j = np.unravel_index(iou.argmax(), iou.shape)
                    tp, iou[i, :], iou[:, j] = tp + 1, 0, 0
        f1 = 2 * tp / max(n_pred + n_true, 1)
        out.append({"region_min_cells": min_cells, "region_absorb_cells": absorb,
                    "count_accuracy": right / max(total, 1), "region_f1": f1})  # fmt: skip
    return out


def dense_maps(model, processor, image_dir, gt: dict, batch: int = 16,
               probs: bool = False) -> dict:  # fmt: skip
    """The dense head's class map [h, w] of every image of COCO ``gt`` in ``image_dir``
    (:meth:`~qupaint.model.modeling.QuPAINTModel.dense_map`: the vision side only);
    ``probs=True``: its class probabilities [h, w, classes] instead."""
    import torch

    from qupaint.bench.dataset import resolve_image

    out = {}
    ims = gt["images"]
    for k in range(0, len(ims), batch):
        part = ims[k : k + batch]
        pv = torch.cat([processor.pixel_values(resolve_image(Path(image_dir), im)) for im in part])
        pv = pv.to(model.dtype)
        cls = model.model.dense_probs(pv) if probs else model.model.dense_map(pv)
        out.update({im["id"]: c for im, c in zip(part, cls, strict=True)})
    return out


def dense_region_row(model, processor, gt_json, images_dir=None) -> dict:
    """The compact model's vision side alone on a QF-Bench: its dense head's regions
    (:meth:`~qupaint.model.modeling.QuPAINTModel.regions`, the text its LM reads) as
    detections, scored like the physics detector's reference row
    (:func:`~qupaint.bench.model_eval.detections_task_row`), and
    ``layer_class_accuracy_referred``: the described flakes' class read off the dense map
    at their boxes (:func:`~qupaint.model.regions.box_class`, what a ``region_refer``
    model's LM is given)."""
    from qupaint.bench.metrics import load_json
    from qupaint.bench.model_eval import detections_task_row, task_questions
    from qupaint.model.regions import box_class

    gt = load_json(gt_json)
    root = Path(images_dir) if images_dir else Path(gt_json).parent
    cfg = model.config
    probs = dense_maps(model, processor, root, gt, probs=True)
    maps = {k: p.argmax(-1) for k, p in probs.items()}
    dets = region_detections(maps, gt, cfg.dense_classes, cfg.region_min_cells,
                             cfg.region_absorb_cells)  # fmt: skip
    row = detections_task_row(gt, dets)
    right = []
    for task, im, _, truth in task_questions(gt, gt["images"]):
        if task == "describe":
            (cat, (x, y, w, h)), size = truth, (im["width"], im["height"])
            box = (x / size[0], y / size[1], (x + w) / size[0], (y + h) / size[1])
            right.append(box_class(probs[im["id"]], box) == cat)
    row["layer_class_accuracy_referred"] = float(np.mean(right)) if right else None
    return row
