"""End-to-end QF-Bench evaluation of a model: ask for every flake, parse, score (Table 4)."""

from __future__ import annotations

from pathlib import Path

from qupaint.bench.metrics import evaluate_detection, evaluate_grounding, load_json
from qupaint.bench.parse import parse_answer
from qupaint.instruct.templates import DETECT_Q

__all__ = ["evaluate_model_detection", "evaluate_model_grounding", "answers_to_detections"]


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
                               [q] * len(images), **gen)  # fmt: skip
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
    answers = generate_answers(model, processor, paths, turns, **gen)
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
