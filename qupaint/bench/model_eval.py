"""End-to-end QF-Bench evaluation of a model: ask for every flake, parse, score (Table 4)."""

from __future__ import annotations

import re
from pathlib import Path

from qupaint.bench.metrics import evaluate_detection, evaluate_grounding, load_json
from qupaint.bench.parse import parse_answer
from qupaint.categories import CATEGORY_PHRASES
from qupaint.instruct.templates import DETECT_Q

__all__ = [
    "answers_to_detections",
    "detector_task_row",
    "evaluate_model_detection",
    "evaluate_model_grounding",
    "evaluate_model_tasks",
    "task_questions",
]


def resolve_image(root: Path, im: dict) -> Path:
    """Path of a COCO image: ``root/file_name``, else the released QF-Bench layout
    ``root/materials/<material>/<file_name>``, else a unique match under ``root/materials``."""
    p = root / im["file_name"]
    if p.is_file():
        return p
    name = Path(im["file_name"]).name
    if im.get("material"):
        q = root / "materials" / im["material"] / name
        if q.is_file():
            return q
    hits = sorted((root / "materials").glob(f"*/{name}")) if (root / "materials").is_dir() else []
    if len(hits) == 1:
        return hits[0]
    raise ValueError(f"image {im['file_name']!r} not found under {root} (nor materials/*/)")


def answers_to_detections(answers, images, fmt: str) -> tuple[list[dict], int]:
    """COCO results from detection answers (one per image). A model gives no scores, so
    boxes are ranked by their order in the answer. Returns (detections, parse failures)."""
    dets, failed = [], 0
    for text, im in zip(answers, images, strict=True):
        a = parse_answer(text, fmt, image_size=(im["width"], im["height"]), expect="boxes")
        failed += not a.ok
        for k, (box, cat) in enumerate(zip(a.boxes, a.category_ids, strict=True)):
            x1, y1, x2, y2 = (float(v) for v in box)
            dets.append({"image_id": im["id"], "category_id": cat or 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "score": 1.0 / (1 + k)})  # fmt: skip
    return dets, failed


def evaluate_model_detection(model, processor, gt_json, images_dir=None, fmt: str = "llava",
                             limit: int | None = None, **gen) -> dict:  # fmt: skip
    """Ask the model to detect all flakes on each QF-Bench image; COCO AP of its answers."""
    from qupaint.model.inference import generate_answers

    gt = load_json(gt_json)
    root = Path(images_dir) if images_dir else Path(gt_json).parent
    images = gt["images"][:limit] if limit else gt["images"]
    q = DETECT_Q[0]
    answers = generate_answers(model, processor, [resolve_image(root, im) for im in images],
                               [q] * len(images), fmt=fmt, tasks=["locate"] * len(images),
                               **gen)  # fmt: skip
    dets, failed = answers_to_detections(answers, images, fmt)
    ids = {im["id"] for im in images}
    sub = {**gt, "images": images, "annotations": [a for a in gt["annotations"]
                                                   if a["image_id"] in ids]}  # fmt: skip
    r = evaluate_detection(sub, dets)
    return {**r, "parse_failures": failed, "answers": answers}


def evaluate_model_grounding(model, processor, corpus_jsonl, images_dir, fmt: str = "llava",
                             limit: int | None = None, **gen) -> dict:  # fmt: skip
    """Grounding accuracy of the model on the ``ground`` records of a QMat-Instruct file."""
    from PIL import Image

    from qupaint.model.inference import generate_answers

    recs = [r for r in load_json(corpus_jsonl) if r.get("meta", {}).get("task") == "ground"]
    recs = recs[:limit] if limit else recs
    if not recs:
        raise ValueError(f"{corpus_jsonl}: no grounding records")
    root = Path(images_dir)
    paths = [root / (r.get("image") or r["images"][0]) for r in recs]
    turns = [processor.turns_of(r)[0][0].replace("<image>", "").strip() for r in recs]
    answers = generate_answers(model, processor, paths, turns, fmt=fmt,
                               tasks=["ground"] * len(turns), **gen)  # fmt: skip
    preds, failed = {}, 0
    for r, p, text in zip(recs, paths, answers, strict=True):
        with Image.open(p) as im:
            size = im.size
        a = parse_answer(text, fmt, image_size=size, expect="boxes")
        failed += not a.ok
        if len(a.boxes):
            x1, y1, x2, y2 = (float(v) for v in a.boxes[0])
            preds[r["id"]] = [x1, y1, x2 - x1, y2 - y1]
    res = evaluate_grounding({r["id"]: r["meta"]["bbox"] for r in recs}, preds)
    return {**res, "parse_failures": failed}


#: a description's opening: "This is a monolayer graphene flake ..." -> its layer class
_CLASS = re.compile(
    r"^\s*This is an? (" + "|".join(re.escape(p) for p in CATEGORY_PHRASES.values()) + r")\b"
)
_CLASS_IDS = {p: c for c, p in CATEGORY_PHRASES.items()}


def _class_of_description(text: str) -> int | None:
    """The layer class a description opens with ("This is a monolayer ... flake"), or None."""
    m = _CLASS.match(text) if isinstance(text, str) else None
    return None if m is None else _CLASS_IDS[m.group(1)]


def task_questions(gt: dict, images: list, fmt: str = "llava", describe_per_image: int = 2):
    """The per-task questions of :func:`evaluate_model_tasks` for ``images`` of QF-Bench
    ``gt``: (task, image, question, truth) in a fixed order. Per image: a count for each
    layer class (truth: class, count), "is there a monolayer?" (truth: bool), a description
    of its largest and smallest flakes (truth: class, box) and "detect all flakes" (None)."""
    from qupaint.categories import MONO
    from qupaint.instruct import templates as T
    from qupaint.instruct.formats import format_boxes

    by_img: dict = {}
    for a in gt["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a)
    out = []
    for im in images:
        anns = by_img.get(im["id"], [])
        mat = im.get("material") or next((a.get("material") for a in anns if a.get("material")),
                                         "graphene")  # fmt: skip
        for cat, word in CATEGORY_PHRASES.items():
            q = T.COUNT_Q[0].format(cat=word, material=mat)
            out.append(("count", im, q, (cat, sum(a["category_id"] == cat for a in anns))))
        q = T.VERIFY_Q[1].format(cat=CATEGORY_PHRASES[MONO], material=mat)
        out.append(("verify", im, q, any(a["category_id"] == MONO for a in anns)))
        ranked = sorted(anns, key=lambda a: a["area"])
        picks = [ranked[-1], ranked[0]][:describe_per_image] if len(ranked) > 1 else ranked
        for a in picks:
            box = format_boxes(fmt, [a["bbox"]], None, im["width"], im["height"])
            q = T.DESCRIBE_Q[0].format(box=box)
            out.append(("describe", im, q, (a["category_id"], a["bbox"])))
        out.append(("locate", im, T.DETECT_Q[0], None))
    return out


def evaluate_model_tasks(model, processor, gt_json, images_dir=None, fmt: str = "llava",
                         limit: int | None = None, **gen) -> dict:  # fmt: skip
    """Per-task figures of a model on QF-Bench (issue 27): for each task its parse rate,
    and exact count accuracy, monolayer-present accuracy, layer-class accuracy (of the
    described flakes) and grounding AP50 / Mono AP50 (from "detect all flakes")."""
    from qupaint.model.inference import generate_answers

    gt = load_json(gt_json)
    root = Path(images_dir) if images_dir else Path(gt_json).parent
    images = gt["images"][:limit] if limit else gt["images"]
    items = task_questions(gt, images, fmt)
    answers = generate_answers(model, processor, [resolve_image(root, im) for _, im, _, _ in items],
                               [q for _, _, q, _ in items], fmt=fmt,
                               tasks=[t for t, _, _, _ in items], **gen)  # fmt: skip
    res: dict = {"images": len(images), "tasks": {}}
    per: dict = {}
    locate = []
    for (task, im, _, truth), text in zip(items, answers, strict=True):
        d = per.setdefault(task, {"n": 0, "parsed": 0, "right": 0})
        d["n"] += 1
        if task == "count":
            a = parse_answer(text, fmt, expect="count")
            d["parsed"] += a.ok
            d["right"] += bool(a.ok and a.count == truth[1])
        elif task == "verify":
            a = parse_answer(text, fmt, expect="yesno")
            d["parsed"] += a.ok
            d["right"] += bool(a.ok and a.yes == truth)
        elif task == "describe":
            c = _class_of_description(text)
            d["parsed"] += c is not None
            d["right"] += c == truth[0]
        else:
            locate.append((text, im))
    names = {"count": "exact_count_accuracy", "verify": "monolayer_present_accuracy",
             "describe": "layer_class_accuracy"}  # fmt: skip
    for task, d in per.items():
        if task == "locate":
            continue
        res["tasks"][task] = {"questions": d["n"], "parse_rate": d["parsed"] / d["n"],
                              names[task]: d["right"] / d["n"]}  # fmt: skip
    if locate:
        dets, failed = answers_to_detections([t for t, _ in locate], [im for _, im in locate], fmt)
        ids = {im["id"] for _, im in locate}
        sub = {**gt, "images": [im for _, im in locate],
               "annotations": [a for a in gt["annotations"] if a["image_id"] in ids]}  # fmt: skip
        r = evaluate_detection(sub, dets)
        res["tasks"]["locate"] = {"questions": len(locate), "parse_rate": 1 - failed / len(locate),
                                  "AP50": r["AP50"], "Mono_AP50": r["Mono"]["AP50"]}  # fmt: skip
    res["answers"] = [
        {"task": t, "image_id": im["id"], "question": q, "truth": tr, "answer": a}
        for (t, im, q, tr), a in zip(items, answers, strict=True)
    ]
    return res


def detector_task_row(gt_json, min_score: float = 0.3) -> dict:
    """The physics detector as the reference row of :func:`evaluate_model_tasks`: its counts
    (detections scoring ``min_score`` or more), monolayer presence, the layer class of the
    detection that best overlaps each described flake, and AP50 / Mono AP50."""
    import numpy as np

    from qupaint.bench.metrics import box_iou_xywh
    from qupaint.bench.qfbench import detect_coco

    gt = load_json(gt_json)
    dets = detect_coco(gt_json)
    by_img: dict = {}
    for d in dets:
        by_img.setdefault(d["image_id"], []).append(d)
    items = task_questions(gt, gt["images"])
    right: dict = {"count": [0, 0], "verify": [0, 0], "describe": [0, 0]}
    for task, im, _, truth in items:
        mine = [d for d in by_img.get(im["id"], []) if d["score"] >= min_score]
        if task == "count":
            cat, n = truth
            right["count"][0] += sum(d["category_id"] == cat for d in mine) == n
        elif task == "verify":
            right["verify"][0] += any(d["category_id"] == 1 for d in mine) == truth
        elif task == "describe":  # the class of the detection that best overlaps the flake
            cat, box = truth
            if mine:
                iou = box_iou_xywh(np.asarray([box], float),
                                   np.asarray([d["bbox"] for d in mine], float))  # fmt: skip
                k = int(np.argmax(iou))
                right["describe"][0] += bool(iou[k] >= 0.5 and mine[k]["category_id"] == cat)
        if task in right:
            right[task][1] += 1
    r = evaluate_detection(gt, dets)
    row = {k: (v[0] / v[1] if v[1] else None) for k, v in right.items()}
    return {"exact_count_accuracy": row["count"], "monolayer_present_accuracy": row["verify"],
            "layer_class_accuracy": row["describe"], "AP50": r["AP50"],
            "Mono_AP50": r["Mono"]["AP50"]}  # fmt: skip
