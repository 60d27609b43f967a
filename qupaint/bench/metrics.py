"""QF-Bench metrics: COCO detection AP (general and Mono) and RefCOCO grounding accuracy.

Detection uses faster-coco-eval (the C++ COCO evaluator) when it is installed and
pycocotools otherwise; both implement the COCO protocol (101-point interpolated AP over
IoU 0.50:0.95, 100 detections per image), so the numbers agree (tested to 1e-6).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from qupaint.boxes import box_iou_xywh
from qupaint.categories import MONO

__all__ = [
    "by_image",
    "evaluate_detection",
    "evaluate_detection_by",
    "evaluate_grounding",
    "box_iou_xywh",
    "load_json",
    "rank_score",
]


def rank_score(rank: int) -> float:
    """The COCO score of the box at position ``rank`` (0 first) of an answer that gives no
    scores (a model's, a region list's): ``1 / (1 + rank)``, so AP ranks boxes in the order
    they were given.

    Examples
    --------
    >>> [rank_score(k) for k in range(3)]
    [1.0, 0.5, 0.3333333333333333]
    """
    return 1.0 / (1 + rank)


def by_image(rows, images=()) -> dict[int, list[dict]]:
    """COCO annotations or detections grouped by ``image_id``, in their order; every image
    of ``images`` (COCO image dicts) has an entry, if only an empty one."""
    out: dict = {im["id"]: [] for im in images}
    for r in rows:
        out.setdefault(r["image_id"], []).append(r)
    return out


def load_json(obj):
    """A path to a JSON / JSONL file, or the object itself."""
    if isinstance(obj, str | os.PathLike):
        p = Path(obj)
        if not p.is_file():
            raise ValueError(f"no such file: {str(p)!r}")
        text = p.read_text()
        if p.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        return json.loads(text)
    return obj


def _engine(engine: str):
    if engine in ("auto", "faster-coco-eval"):
        try:
            from faster_coco_eval import COCO, COCOeval_faster

            return "faster-coco-eval", COCO, COCOeval_faster
        except ImportError:
            if engine != "auto":
                raise ValueError("engine: faster-coco-eval is not installed") from None
    if engine in ("auto", "pycocotools"):
        try:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval

            return "pycocotools", COCO, COCOeval
        except ImportError:
            raise ValueError(
                "engine: install faster-coco-eval or pycocotools (pip install faster-coco-eval)"
            ) from None
    raise ValueError(f"engine must be 'auto', 'faster-coco-eval' or 'pycocotools'; got {engine!r}")


def _coco_from_dict(COCO, d: dict):
    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO()
        c.dataset = copy.deepcopy(d)
        c.createIndex()
    return c


def _check_predictions(preds, gt_images: set) -> list[dict]:
    if not isinstance(preds, Sequence) or isinstance(preds, str | bytes):
        raise TypeError("predictions: a list of {image_id, category_id, bbox, score} dicts")
    out = []
    for k, p in enumerate(preds):
        try:
            bbox = [float(v) for v in p["bbox"]]
            rec = {
                "image_id": p["image_id"],
                "category_id": int(p["category_id"]),
                "bbox": bbox,
                "score": float(p.get("score", 1.0)),
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"predictions[{k}]: needs image_id, category_id, bbox [x, y, w, h], score; "
                f"got {str(p)[:80]}"
            ) from exc
        if len(bbox) != 4 or not np.all(np.isfinite(bbox + [rec["score"]])):
            raise ValueError(f"predictions[{k}]: bbox must be 4 finite numbers; got {bbox}")
        if rec["image_id"] not in gt_images:
            raise ValueError(
                f"predictions[{k}]: image_id {rec['image_id']!r} is not in the ground truth"
            )
        out.append(rec)
    return out


def _stats(E, cat_ids) -> dict:
    E.params.catIds = list(cat_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        E.evaluate()
        E.accumulate()
        E.summarize()
    s = [float(v) for v in E.stats[:3]]
    return {k: (v if v >= 0 else None) for k, v in zip(("AP", "AP50", "AP75"), s, strict=True)}


def evaluate_detection(gt_json, predictions, engine: str = "auto") -> dict:
    """COCO bbox AP / AP50 / AP75 over all categories and for Mono (QF-Bench, Table 4).

    Parameters
    ----------
    gt_json : COCO ground truth (path or dict).
    predictions : COCO results, a list of ``{image_id, category_id, bbox [x, y, w, h], score}``
        or a path to such a JSON file. An empty list scores 0.
    engine : ``"auto"`` (faster-coco-eval, else pycocotools), or either by name.

    Returns
    -------
    dict with ``AP``, ``AP50``, ``AP75`` (0-1), ``Mono`` (the same three for category 1),
    ``per_category`` and ``engine``. A metric with no ground truth to score is None.
    """
    gt = load_json(gt_json)
    if not isinstance(gt, dict) or "annotations" not in gt or "images" not in gt:
        raise ValueError("gt_json: a COCO dict or file with images, annotations, categories")
    preds = _check_predictions(load_json(predictions), {im["id"] for im in gt["images"]})
    name, COCO, COCOeval = _engine(engine)
    cats = [c["id"] for c in gt.get("categories", [])]
    result = {"engine": name, "images": len(gt["images"]), "detections": len(preds)}
    if not preds:
        zero = {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
        return {**result, **zero, "Mono": dict(zero), "per_category": {}}
    gt_c = _coco_from_dict(COCO, gt)
    with contextlib.redirect_stdout(io.StringIO()):
        dt_c = gt_c.loadRes(copy.deepcopy(preds))
    E = COCOeval(gt_c, dt_c, "bbox")
    result.update(_stats(E, cats))
    per_cat = {c: _stats(E, [c]) for c in cats}  # one evaluation per category, Mono included
    result["Mono"] = per_cat.get(MONO, {"AP": None, "AP50": None, "AP75": None})
    names = {c["id"]: c["name"] for c in gt["categories"]}
    result["per_category"] = {names[c]: per_cat[c]["AP"] for c in cats}
    return result


def evaluate_detection_by(gt_json, predictions, key: str = "material", **kw) -> dict:
    """:func:`evaluate_detection` per value of an image field (default ``material``), plus
    ``"all"``. Images without the field are grouped under ``"?"``."""
    gt = load_json(gt_json)
    preds = load_json(predictions)
    groups: dict = {}
    for im in gt["images"]:
        groups.setdefault(im.get(key, "?"), set()).add(im["id"])
    out = {"all": evaluate_detection(gt, preds, **kw)}
    for name, ids in sorted(groups.items(), key=lambda kv: str(kv[0])):
        sub = {
            **gt,
            "images": [im for im in gt["images"] if im["id"] in ids],
            "annotations": [a for a in gt["annotations"] if a["image_id"] in ids],
        }
        out[name] = evaluate_detection(sub, [p for p in preds if p["image_id"] in ids], **kw)
    return out


def _refs(gt) -> dict:
    gt = load_json(gt)
    if isinstance(gt, Mapping):
        return {k: v for k, v in gt.items()}
    out = {}
    for k, r in enumerate(gt):
        if "meta" in r:  # a QMat-Instruct record: only grounding tasks refer to one box
            if r["meta"].get("task") != "ground":
                continue
            out[r["id"]] = r["meta"]["bbox"]
        elif "id" in r and "bbox" in r:
            out[r["id"]] = r["bbox"]
        else:
            raise ValueError(f"gt[{k}]: needs 'id' and 'bbox' (or a QMat-Instruct record)")
    return out


def evaluate_grounding(gt, predictions, thresholds: Sequence[float] = (0.5, 0.75)) -> dict:
    """RefCOCO accuracy: a referring expression is correct when IoU(pred, gt) >= threshold.

    Parameters
    ----------
    gt : ``{ref_id: [x, y, w, h]}``, a list of ``{"id", "bbox"}``, or QMat-Instruct records
        (their ``ground`` tasks), or a path to any of these (JSON / JSONL).
    predictions : ``{ref_id: [x, y, w, h] or None}`` or a list of ``{"id", "bbox"}``; a
        missing or None prediction counts as wrong.

    Returns
    -------
    dict ``{"Acc@0.5": ..., "Acc@0.75": ..., "n": ..., "missing": ...}`` (fractions 0-1).
    """
    refs = _refs(gt)
    preds = load_json(predictions)
    if not isinstance(preds, Mapping):
        preds = {p["id"]: p.get("bbox") for p in preds}
    if not refs:
        raise ValueError("gt: no referring expressions to score")
    ids = list(refs)
    g = np.array([refs[i] for i in ids], float).reshape(-1, 4)
    p = np.array([preds.get(i) if preds.get(i) is not None else [0, 0, 0, 0] for i in ids], float)
    missing = sum(preds.get(i) is None for i in ids)
    iou = box_iou_xywh(p.reshape(-1, 4), g)
    out = {f"Acc@{t:g}": float(np.mean(iou >= t)) for t in thresholds}
    return {**out, "n": len(ids), "missing": int(missing)}
