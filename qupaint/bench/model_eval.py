"""End-to-end QF-Bench evaluation of a model: ask for every flake, parse, score (Table 4)."""

from __future__ import annotations

from pathlib import Path

from qupaint._io import image_size, read_mask, read_rgb
from qupaint.bench.dataset import resolve_image
from qupaint.bench.metrics import (
    by_image,
    evaluate_detection,
    evaluate_grounding,
    load_json,
    rank_score,
)
from qupaint.bench.scoring import Reading, score_answer
from qupaint.boxes import xyxy_to_xywh
from qupaint.categories import CATEGORY_IDS, CATEGORY_PHRASES, MONO
from qupaint.constants import ANSWER_MIN_SCORE
from qupaint.instruct.parse import parse_answer
from qupaint.instruct.templates import DETECT_Q

__all__ = [
    "answers_to_detections",
    "detections_reading",
    "detections_task_row",
    "detector_task_row",
    "evaluate_model_real",
    "evaluate_model_detection",
    "evaluate_model_grounding",
    "evaluate_model_tasks",
    "task_questions",
]


def answers_to_detections(answers, images, fmt: str) -> tuple[list[dict], int]:
    """COCO results from detection answers (one per image). A model gives no scores, so
    boxes are ranked by their order in the answer. Returns (detections, parse failures)."""
    dets, failed = [], 0
    for text, im in zip(answers, images, strict=True):
        a = parse_answer(text, fmt, image_size=(im["width"], im["height"]), expect="boxes")
        failed += not a.ok
        for k, (box, cat) in enumerate(zip(a.boxes, a.category_ids, strict=True)):
            dets.append({"image_id": im["id"], "category_id": cat or 1,
                         "bbox": xyxy_to_xywh(box), "score": rank_score(k)})  # fmt: skip
    return dets, failed


def evaluate_model_detection(model, processor, gt_json, images_dir=None, fmt: str = "llava",
                             limit: int | None = None, evidence: str | None = None,
                             workers: int = 1, **gen) -> dict:  # fmt: skip
    """Ask the model to detect all flakes on each QF-Bench image; COCO AP of its answers.

    ``evidence`` (a region-token model; default ``"physics"``, and ``"vision"`` for any other
    model): ``"vision"``, the model reads its own dense head's regions; ``"physics"``, it
    reads the physics detector's flake candidates on the image
    (:func:`~qupaint.bench.qfbench.detect_coco`, with ``workers`` processes; the material
    and oxide from each image's record) as its region tokens, asked as a whole micrograph
    is (:func:`~qupaint.model.whole_image.answer_whole_images`: windows around the
    candidates, each box ranked by the physics score of the candidate it reports)."""
    from qupaint.model.evidence import evidence_source, resolve_evidence
    from qupaint.model.inference import generate_answers
    from qupaint.model.whole_image import answer_whole_images

    # the images' records name their material: the physics can run
    source = evidence_source(resolve_evidence(model, evidence, True))
    gt = load_json(gt_json)
    root = Path(images_dir) if images_dir else Path(gt_json).parent
    images = gt["images"][:limit] if limit else gt["images"]
    ids = {im["id"] for im in images}
    sub = {**gt, "images": images, "annotations": [a for a in gt["annotations"]
                                                   if a["image_id"] in ids]}  # fmt: skip
    q = DETECT_Q[0]
    paths = [resolve_image(root, im) for im in images]
    if source.reads_regions:  # as on a whole micrograph: windows around the candidates
        from qupaint.bench.qfbench import detect_coco

        found = [d for d in detect_coco(sub, root, workers=workers)
                 if d["score"] >= ANSWER_MIN_SCORE]  # fmt: skip
        cands = [[d for d in found if d["image_id"] == im["id"]] for im in images]
        got = answer_whole_images(model, processor, paths, [q] * len(images), fmt=fmt,
                                  evidence=source, candidates=cands, **gen)  # fmt: skip
        answers = [a.answer for a in got]
        failed = sum(a.parsed < len(a.window_answers) for a in got)
        dets = [{"image_id": im["id"], "category_id": CATEGORY_IDS.get(lb, MONO),
                 "bbox": xyxy_to_xywh(b), "score": sc}
                for im, a in zip(images, got, strict=True)
                for b, lb, sc in zip(a.boxes, a.labels, a.scores, strict=True)]  # fmt: skip
    else:
        answers = generate_answers(model, processor, paths, [q] * len(images), fmt=fmt,
                                   tasks=["locate"] * len(images), **gen)  # fmt: skip
        dets, failed = answers_to_detections(answers, images, fmt)
    r = evaluate_detection(sub, dets)
    return {**r, "parse_failures": failed, "evidence": source.name, "answers": answers}


def evaluate_model_grounding(model, processor, corpus_jsonl, images_dir, fmt: str = "llava",
                             limit: int | None = None, **gen) -> dict:  # fmt: skip
    """Grounding accuracy of the model on the ``ground`` records of a QMat-Instruct file."""

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
        size = image_size(p)
        a = parse_answer(text, fmt, image_size=size, expect="boxes")
        failed += not a.ok
        if len(a.boxes):
            preds[r["id"]] = xyxy_to_xywh(a.boxes[0])
    res = evaluate_grounding({r["id"]: r["meta"]["bbox"] for r in recs}, preds)
    return {**res, "parse_failures": failed}


def task_questions(gt: dict, images: list, fmt: str = "llava", describe_per_image: int = 2):
    """The per-task questions of :func:`evaluate_model_tasks` for ``images`` of QF-Bench
    ``gt``: (task, image, question, truth) in a fixed order. Per image: a count for each
    layer class (truth: class, count), "is there a monolayer?" (truth: bool), a description
    of its largest and smallest flakes (truth: class, box) and "detect all flakes" (None)."""
    from qupaint.categories import MONO
    from qupaint.instruct import templates as T
    from qupaint.instruct.formats import format_boxes

    by_img = by_image(gt["annotations"])
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
        if task == "locate":  # scored by AP over the set, below
            locate.append((text, im))
            continue
        parsed, right = score_answer(task, text, truth, fmt)
        d["parsed"] += parsed
        d["right"] += right
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


def detector_task_row(gt_json, min_score: float = ANSWER_MIN_SCORE) -> dict:
    """The physics detector as the reference row of :func:`evaluate_model_tasks`
    (:func:`detections_task_row` of its detections scoring ``min_score`` or more)."""
    from qupaint.bench.qfbench import detect_coco

    return detections_task_row(gt_json, detect_coco(gt_json), min_score)


def detections_task_row(gt_json, dets: list[dict], min_score: float = 0.0) -> dict:
    """COCO detections ``dets`` scored as answers to :func:`evaluate_model_tasks`'
    questions, a reference row: their counts (detections scoring ``min_score`` or more),
    monolayer presence, the layer class of the detection that best overlaps each
    described flake (IoU >= 0.5), and AP50 / Mono AP50 (of all of ``dets``)."""


    gt = load_json(gt_json)
    by_img = by_image(dets)
    items = task_questions(gt, gt["images"])
    right: dict = {"count": [0, 0], "verify": [0, 0], "describe": [0, 0]}
    for task, im, _, truth in items:
        if task not in right:
            continue
        mine = [d for d in by_img.get(im["id"], []) if d["score"] >= min_score]
        right[task][0] += score_answer(task, detections_reading(task, mine, truth), truth)[1]
        right[task][1] += 1
    r = evaluate_detection(gt, dets)
    row = {k: (v[0] / v[1] if v[1] else None) for k, v in right.items()}
    return {"exact_count_accuracy": row["count"], "monolayer_present_accuracy": row["verify"],
            "layer_class_accuracy": row["describe"], "AP50": r["AP50"],
            "Mono_AP50": r["Mono"]["AP50"]}  # fmt: skip


def detections_reading(task: str, dets: list[dict], truth) -> Reading:
    """What detections ``dets`` of one image answer to a ``task`` question (a
    :class:`~qupaint.bench.scoring.Reading`): their count of the asked class, whether any
    is a monolayer, or the class of the one that best overlaps the described flake (box IoU
    at least 0.5; none below)."""
    import numpy as np

    from qupaint.bench.metrics import box_iou_xywh

    if task == "count":
        return Reading(True, count=sum(d["category_id"] == truth[0] for d in dets))
    if task == "verify":
        return Reading(True, yes=any(d["category_id"] == MONO for d in dets))
    if task == "describe":
        if not dets:
            return Reading(False)
        iou = box_iou_xywh(np.asarray([truth[1]], float),
                           np.asarray([d["bbox"] for d in dets], float))  # fmt: skip
        k = int(np.argmax(iou))
        return Reading(True, layer_class=dets[k]["category_id"] if iou[k] >= 0.5 else None)
    raise ValueError(f"task: count, verify or describe; got {task!r}")


def real_tile_questions(image, mask, tile: int = 224, min_inside: float = 0.5):
    """The questions of :func:`evaluate_model_real` for one masked micrograph: it is cut
    into ``tile``-px windows at its own scale (the compact model's training scale is the
    same reference scale), and each window gets its truth from the mask: the thin flakes
    (instances) with at least ``min_inside`` of their area in it. Returns
    [(crop, (x0, y0), thin count)]."""
    import numpy as np

    img, m = np.asarray(image), np.asarray(mask)
    if img.shape[:2] != m.shape:
        raise ValueError(f"mask {m.shape} does not match image {img.shape[:2]}")
    ids, area = np.unique(m[m > 0], return_counts=True)
    total = dict(zip(ids.tolist(), area.tolist(), strict=True))
    out = []
    from qupaint.model.whole_image import window_starts

    for y0 in window_starts(m.shape[0], tile):
        for x0 in window_starts(m.shape[1], tile):
            win = m[y0 : y0 + tile, x0 : x0 + tile]
            k, a = np.unique(win[win > 0], return_counts=True)
            n = sum(c >= min_inside * total[i] for i, c in zip(k.tolist(), a.tolist(),
                                                               strict=True))  # fmt: skip
            out.append((img[y0 : y0 + tile, x0 : x0 + tile], (x0, y0), int(n)))
    return out


def evaluate_model_real(model, processor, images_dir, masks_dir=None, tile: int = 224,
                        fmt: str = "llava", material: str | None = None,
                        microscope="2dmatgmm", evidence: str | None = None,
                        **gen) -> dict:  # fmt: skip
    """A model on whole expert-masked real micrographs (``../shared/data/real/
    maskterial-labelled/<set>/images``; layer numbers are not given, so every masked
    flake is "thin"). Each image is cut into ``tile``-px windows (:func:`real_tile_questions`)
    and each window is asked:

    - how many monolayer and how many few-layer flakes it holds; the sum is the thin count,
      right when it equals the mask's (exact thin-count accuracy, beside
      ``always_zero_thin_count_accuracy``: the share of windows without a thin flake);
    - whether it holds a monolayer (a yes, or a few-layer count above 0, says "thin flake
      present"; thin-present accuracy against the mask);
    - and each whole image, to detect all flakes
      (:func:`~qupaint.model.whole_image.answer_whole_images`): its Mono and Few boxes find
      a masked flake when their IoU with its box is >= 0.5 (grounding recall; thin-flake
      AP50, ranked by the boxes' physics scores with physics evidence, else in the answer's
      order, and unmatched boxes per image as in :func:`~qupaint.bench.real.score_real`).

    With ``material``, the windows where the physics detector (through ``microscope``) sees
    nothing that differs from the substrate are answered "none" without the model
    (:func:`~qupaint.model.whole_image.empty_windows`); ``windows_asked`` counts the rest.
    ``evidence`` is what a region-token model reads about a window
    (:data:`~qupaint.model.whole_image.EVIDENCE`; default ``"physics"``, the detector's
    candidates, when ``material`` is given, as
    :func:`~qupaint.model.whole_image.answer_whole_images` does). Boxes of one image's
    windows are merged across window borders
    (:func:`~qupaint.model.whole_image.merge_boxes`). ``parse_rate`` is over the model's
    answers. ``seconds_per_image`` is the wall time per micrograph (physics and model).
    """
    import time

    from qupaint.bench.real import find_masked_images, mask_boxes, score_real
    from qupaint.categories import FEW, MONO
    from qupaint.color import Microscope
    from qupaint.instruct import templates as T
    from qupaint.model.evidence import (
        Window,
        empty_windows,
        evidence_source,
        physics_candidates,
        resolve_evidence,
    )
    from qupaint.model.inference import generate_answers
    from qupaint.model.whole_image import answer_whole_images

    evidence = resolve_evidence(model, evidence, bool(material))
    source = evidence_source(evidence)
    t0 = time.perf_counter()
    pairs = find_masked_images(images_dir, masks_dir)
    mic = Microscope.load(microscope) if material else None
    # per window: name -> (task, question); the locate question is asked of each whole image
    qs = {"mono": ("count", T.COUNT_Q[0].format(cat=CATEGORY_PHRASES[MONO], material="flake")),
          "few": ("count", T.COUNT_Q[0].format(cat=CATEGORY_PHRASES[FEW], material="flake")),
          "verify": ("verify",
                     T.VERIFY_Q[1].format(cat=CATEGORY_PHRASES[MONO], material="2D"))}  # fmt: skip
    tiles, gt_boxes, images, found = [], [], [], []
    for k, p in enumerate(pairs):
        img, mask = read_rgb(p.image), read_mask(p.mask)
        gt_boxes.append(mask_boxes(mask))
        images.append(img)
        win = real_tile_questions(img, mask, tile)
        cands = physics_candidates(img, material, mic) if material else []
        found.append(cands)  # the physics runs once per image, for every question
        empty = (empty_windows(img, [xy for _, xy, _ in win], tile, material, candidates=cands)
                 if material else set())  # fmt: skip
        tiles += [Window(*xy, crop, source.regions(cands, *xy, tile), xy in empty, k, truth)
                  for crop, xy, truth in win]  # fmt: skip
    asked_tiles = [t for t in tiles if not t.empty]
    # every asked window asks each question of qs, in qs's order
    regions = [t.regions for t in asked_tiles for _ in qs] if source.reads_regions else None
    answers = generate_answers(model, processor, [t.crop for t in asked_tiles for _ in qs],
                               [q for _ in asked_tiles for _, q in qs.values()], fmt=fmt,
                               tasks=[t for _ in asked_tiles for t, _ in qs.values()],
                               regions=regions, **gen) if asked_tiles else []  # fmt: skip
    count_right = present_right = parsed = asked = 0
    w = 0
    for t in tiles:
        truth = t.truth
        if t.empty:  # physics: nothing but substrate; the answer is none
            count_right += truth == 0
            present_right += truth == 0
            continue
        rec = dict(zip(qs, answers[w * len(qs) : (w + 1) * len(qs)], strict=True))
        w += 1
        a_mono = parse_answer(rec["mono"], fmt, expect="count")
        a_few = parse_answer(rec["few"], fmt, expect="count")
        a_yes = parse_answer(rec["verify"], fmt, expect="yesno")
        parsed += a_mono.ok + a_few.ok + a_yes.ok
        asked += 3
        if a_mono.ok and a_few.ok:
            count_right += a_mono.count + a_few.count == truth
        present = bool(a_yes.ok and a_yes.yes) or bool(a_few.ok and a_few.count)
        present_right += present == (truth > 0)
    # locate: the whole image, as answer_whole_images answers it (windows around the physics
    # candidates with physics evidence, else the grid; boxes merged over windows)
    located = answer_whole_images(model, processor, images, [DETECT_Q[0]] * len(images), mic,
                                  material, fmt, evidence=evidence,
                                  candidates=found if material else None, **gen)  # fmt: skip
    dets: list[list[dict]] = []
    for a in located:
        parsed += a.parsed
        asked += len(a.window_answers)
        dets.append([{"bbox": xyxy_to_xywh(b),
                      "category_id": CATEGORY_IDS.get(lb, MONO),
                      "score": a.scores[j] if a.scores else rank_score(j)}
                     for j, (b, lb) in enumerate(zip(a.boxes, a.labels, strict=True))])
    n = len(tiles)
    score = score_real(gt_boxes, dets)
    return {
        "images": len(pairs), "windows": n, "tile_px": tile,
        "windows_with_thin_flakes": sum(t.truth > 0 for t in tiles),
        "windows_asked": len(asked_tiles), "evidence": source.name,
        "parse_rate": parsed / asked if asked else 1.0,
        "exact_thin_count_accuracy": count_right / n,
        "always_zero_thin_count_accuracy": sum(t.truth == 0 for t in tiles) / n,
        "thin_present_accuracy": present_right / n,
        "grounding_recall": score["recall"], "flakes": score["flakes"], "found": score["found"],
        "AP50": score["AP50"], "unmatched_per_image": score["unmatched_per_image"],
        "seconds_per_image": round((time.perf_counter() - t0) / max(len(pairs), 1), 4),
    }  # fmt: skip
