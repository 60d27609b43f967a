"""Whole micrographs in, answers about the whole image out.

A QuPAINT model reads one window of ``image_size`` pixels (224 for the compact model) at
the scale it was trained on (:data:`MODEL_UM_PER_PX`, 0.385 µm per pixel, the scale of the
2DMatGMM / MaskTerial microscope and of realistic Synthia). A whole 1920x1200 micrograph
squeezed into one window would show every flake a few pixels wide. So
:func:`answer_whole_images`:

1. brings the image to the model's scale (a :class:`~qupaint.color.Microscope` says the
   image's µm per pixel; without one the image is taken at the model's scale);
2. cuts it into windows of the model's size that cover it evenly (:func:`window_starts`);
3. with ``material`` given, skips the windows where the physics detector
   (:func:`qupaint.detect.find_flakes`) sees no flake candidate: their answer is "none"
   without asking the model (:func:`empty_windows`);
4. asks the question of every other window, in batches;
5. merges the window answers: counts add up, a "yes" anywhere is a yes, and boxes are moved
   to the whole image, where two boxes of one class that overlap across a window border
   become one (:func:`merge_boxes`).

Count, verify and locate questions are answered this way. Any other question (a
description of one flake, grounding) and any image no larger than one window is asked of
the whole image, as :func:`~qupaint.model.inference.generate_answers` does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

__all__ = ["EVIDENCE", "MODEL_UM_PER_PX", "WHOLE_IMAGE_TASKS", "WholeImageAnswer",
           "answer_whole_images", "empty_windows", "evidence_scores", "merge_boxes",
           "physics_candidates", "proposal_windows", "REGIONS_PER_WINDOW", "resolve_evidence",
           "window_regions",
           "window_starts"]  # fmt: skip

#: the image scale the shipped models were trained at (µm per pixel)
MODEL_UM_PER_PX = 0.385
#: the tasks answered window by window and merged
WHOLE_IMAGE_TASKS = ("count", "verify", "locate")
#: what a region-token model reads about a window: ``"physics"``, the physics detector's
#: flake candidates; ``"vision"``, the regions of its own dense head
EVIDENCE = ("physics", "vision")


@dataclass
class WholeImageAnswer:
    """The answer about one whole image.

    Attributes
    ----------
    task : str or None
        The task the question asks (:func:`~qupaint.model.constrain.task_of_question`).
    answer : str
        The merged answer, written in the box dialect asked for.
    boxes : list of [x1, y1, x2, y2]
        Boxes in the original image's pixels (locate, and the first box of a "yes").
    labels : list of str
        The layer class of each box ("Mono", "Few", "Thick").
    count : int or None
        The merged count (count questions).
    yes : bool or None
        The merged yes / no (verify questions).
    windows : int
        Windows the image was cut into (1: asked whole).
    asked : int
        Windows the model was asked about (the rest held nothing, by physics).
    parsed : int
        Window answers the strict parser read.
    seconds : float
        Wall time for this image's share of the work.
    window_answers : list of (x, y, str)
        Each asked window's top-left corner (original pixels) and its answer.
    scores : list of float
        With physics evidence, each box's confidence: the physics score of the flake
        candidate it reports (its box overlaps the box by IoU >= 0.5; 0 for none). Empty
        otherwise.
    """

    task: str | None
    answer: str
    boxes: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    count: int | None = None
    yes: bool | None = None
    windows: int = 1
    asked: int = 1
    parsed: int = 0
    seconds: float = 0.0
    window_answers: list = field(default_factory=list)
    scores: list = field(default_factory=list)


def window_starts(length: int, tile: int) -> list[int]:
    """Starts of windows of ``tile`` pixels that cover ``length`` evenly, the first at 0 and
    the last flush with the end (neighbours overlap by less than a window).

    >>> window_starts(500, 224), window_starts(200, 224)
    ([0, 138, 276], [0])
    """
    if length <= tile:
        return [0]
    n = -(-length // tile)
    return [round(k * (length - tile) / (n - 1)) for k in range(n)]


def merge_boxes(boxes: Sequence, labels: Sequence[str], cut: Sequence[bool] | None = None,
                share: float = 0.5) -> tuple[list, list]:  # fmt: skip
    """Boxes [x1, y1, x2, y2] of several windows as one list: two boxes of one label become
    their union when they overlap by at least ``share`` of the smaller (one flake seen whole
    from two overlapping windows), or when they overlap at all and both are ``cut`` (each
    touches its window's border inside the image: one flake cut by the border). The order
    of first appearance is kept.

    >>> merge_boxes([[0, 0, 10, 10], [2, 1, 10, 9], [50, 50, 60, 60]], ["Mono"] * 3)
    ([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]], ['Mono', 'Mono'])
    >>> merge_boxes([[0, 0, 10, 10], [8, 0, 20, 10]], ["Few"] * 2, cut=[True, True])
    ([[0.0, 0.0, 20.0, 10.0]], ['Few'])
    """
    cut = list(cut) if cut is not None else [False] * len(boxes)
    out: list = []
    lab: list = []
    was_cut: list = []
    for b, lb, c in zip(boxes, labels, cut, strict=True):
        b = [float(v) for v in b]
        for k, o in enumerate(out):
            if lab[k] != lb:
                continue
            iw = min(o[2], b[2]) - max(o[0], b[0])
            ih = min(o[3], b[3]) - max(o[1], b[1])
            if iw <= 0 or ih <= 0:
                continue
            small = min((o[2] - o[0]) * (o[3] - o[1]), (b[2] - b[0]) * (b[3] - b[1]))
            if iw * ih >= share * max(small, 1e-9) or (c and was_cut[k]):
                out[k] = [min(o[0], b[0]), min(o[1], b[1]), max(o[2], b[2]), max(o[3], b[3])]
                break
        else:
            out.append(b)
            lab.append(lb)
            was_cut.append(c)
    return [[round(v, 1) for v in b] for b in out], lab


def _phrase(question: str) -> str | None:
    """The layer class phrase a question names ("monolayer", "few-layer", "thick"), or None."""
    from qupaint.categories import CATEGORY_PHRASES

    q = question.lower()
    return next((p for p in CATEGORY_PHRASES.values() if p in q), None)


def resolve_evidence(model, evidence: str | None, physics: bool) -> str:
    """What ``model`` reads about an image (one of :data:`EVIDENCE`): ``evidence`` when
    given, else ``"physics"`` where the physics candidates can be had (``physics``: a
    material or the candidates are known) and the model reads region tokens, else
    ``"vision"``. A ValueError names what ``"physics"`` needs when it cannot be had."""
    reads_regions = bool(getattr(model.config, "region_tokens", 0))
    if evidence is None:
        evidence = "physics" if physics and reads_regions else "vision"
    if evidence not in EVIDENCE:
        raise ValueError(f"evidence: one of {EVIDENCE}; got {evidence!r}")
    if evidence == "physics" and not (physics and reads_regions):
        raise ValueError("evidence='physics' needs the physics detector's candidates "
                         "(material= names its material, or candidates= gives them) and a "
                         "model that reads region tokens; or use evidence='vision'")  # fmt: skip
    return evidence


def physics_candidates(image: np.ndarray, material: str, microscope=None,
                       min_score: float | None = None) -> list[dict]:  # fmt: skip
    """The flake candidates the physics detector (:func:`qupaint.detect.find_flakes`,
    through ``microscope``) finds on ``image`` scoring ``min_score`` or more (default
    :data:`~qupaint.constants.ANSWER_MIN_SCORE`): COCO detections (``bbox`` x, y, w, h in pixels,
    ``category_id``, ``score``). Pieces the detector's named rules reject (dust, residue,
    fibres, halos, bulk crystals) are not among them."""
    from qupaint.constants import ANSWER_MIN_SCORE
    from qupaint.detect import find_flakes

    mic = microscope
    floor = ANSWER_MIN_SCORE if min_score is None else min_score
    res = find_flakes(image, material, camera=mic.camera if mic else None,
                      um_per_px=mic.um_per_px if mic else None,
                      oxide_prior_nm=mic.oxide_prior_nm if mic else None)  # fmt: skip
    return [d for d in res.detections if d["score"] >= floor]


def _touches(box, x0: int, y0: int, tile: int) -> bool:
    x, y, w, h = box
    return x < x0 + tile and x + w > x0 and y < y0 + tile and y + h > y0


def window_regions(candidates: Sequence[dict], x0: int, y0: int, tile: int,
                   height: int | None = None, min_inside: float = 0.5) -> tuple[list, list]:
    """The candidates of the ``tile``-px window at (``x0``, ``y0``) (``tile`` wide and
    ``height``, default ``tile``, high) as region tokens read them: (boxes (x1, y1, x2, y2)
    as fractions of the window, clipped to it; layer classes), for each candidate with at least
    ``min_inside`` of its box inside the window (the rule
    by which a window's true flakes are counted).

    >>> window_regions([{"bbox": [10, 20, 40, 40], "category_id": 1}], 0, 0, 100)
    ([(0.1, 0.2, 0.5, 0.6)], [1])
    >>> window_regions([{"bbox": [90, 0, 40, 40], "category_id": 1}], 0, 0, 100)
    ([], [])
    """
    tw, th = tile, tile if height is None else height
    boxes, cats = [], []
    for d in candidates:
        x, y, w, h = (float(v) for v in d["bbox"])
        x1, y1 = max(x, x0), max(y, y0)
        x2, y2 = min(x + w, x0 + tw), min(y + h, y0 + th)
        if x2 <= x1 or y2 <= y1 or (x2 - x1) * (y2 - y1) < min_inside * max(w * h, 1e-9):
            continue
        boxes.append((round((x1 - x0) / tw, 6), round((y1 - y0) / th, 6),
                      round((x2 - x0) / tw, 6), round((y2 - y0) / th, 6)))
        cats.append(int(d["category_id"]))
    return boxes, cats


#: the most flake candidates one window's region tokens hold whole (the compact model's 192
#: region tokens write the tally and six boxes, about 28 tokens each)
REGIONS_PER_WINDOW = 6


def proposal_windows(candidates: Sequence[dict], width: int, height: int, tile: int,
                     per_window: int = REGIONS_PER_WINDOW) -> list[tuple[int, int, list]]:
    """Windows of ``tile`` px over a ``width`` x ``height`` image that show every flake
    candidate whole where it fits in one window, each candidate given to one window: the
    best-scoring candidate not yet given gets a window centred on it (moved inside the
    image), which takes it and the other candidates wholly inside it, best first, up to
    ``per_window`` (what its region tokens can hold). A locate question is asked of these,
    so that no flake is cut by the border of a fixed grid (224-px windows over 1920 px
    overlap by 12 px). Returns [(x0, y0, indices of its candidates)].

    >>> proposal_windows([{"bbox": [200, 10, 40, 20], "score": 0.9},
    ...                   {"bbox": [230, 20, 10, 10], "score": 0.5}], 500, 300, 100)
    [(170, 0, [0, 1])]
    """
    order = sorted(range(len(candidates)), key=lambda k: -float(candidates[k].get("score", 0)))
    boxes = [[float(v) for v in d["bbox"]] for d in candidates]
    given: set = set()
    out: list = []

    def inside(b, x0, y0):
        x, y, w, h = b
        return x >= x0 and y >= y0 and x + w <= x0 + tile and y + h <= y0 + tile

    for k in order:
        if k in given:
            continue
        x, y, w, h = boxes[k]
        x0 = int(min(max(round(x + w / 2 - tile / 2), 0), max(width - tile, 0)))
        y0 = int(min(max(round(y + h / 2 - tile / 2), 0), max(height - tile, 0)))
        members = [k] + [j for j in order if j not in given and j != k
                         and inside(boxes[j], x0, y0)][: per_window - 1]  # fmt: skip
        given.update(members)
        out.append((x0, y0, members))
    return out


def evidence_scores(boxes: Sequence, candidates: Sequence[dict]) -> list[float]:
    """Per box [x1, y1, x2, y2], the physics score of the flake candidate (``bbox`` x, y, w,
    h, ``score``) whose box it overlaps most, when by IoU >= 0.5; else 0.

    >>> cands = [{"bbox": [1, 0, 10, 10], "score": 0.8}]
    >>> evidence_scores([[0, 0, 10, 10], [50, 50, 60, 60]], cands)
    [0.8, 0.0]
    """
    from qupaint.boxes import box_iou_xywh

    if not candidates or not boxes:
        return [0.0] * len(boxes)
    c = np.asarray([d["bbox"] for d in candidates], float)
    sc = np.asarray([float(d["score"]) for d in candidates])
    out = []
    for x1, y1, x2, y2 in boxes:
        iou = box_iou_xywh(np.asarray([x1, y1, x2 - x1, y2 - y1], float)[None], c)
        k = int(iou.argmax())
        out.append(round(float(sc[k]), 4) if iou[k] >= 0.5 else 0.0)
    return out


def empty_windows(image: np.ndarray, starts, tile: int, material: str, microscope=None,
                  min_score: float | None = None, candidates=None) -> set:  # fmt: skip
    """The windows of ``image`` (their top-left corners ``starts``, ``tile`` px) that no
    physics flake candidate (:func:`physics_candidates`, or the ``candidates`` given)
    touches: the model is asked only where the physics sees a flake."""
    if candidates is None:
        candidates = physics_candidates(image, material, microscope, min_score)
    boxes = [d["bbox"] for d in candidates]
    return {(x0, y0) for x0, y0 in starts if not any(_touches(b, x0, y0, tile) for b in boxes)}


def _compose(task: str, fmt: str, question: str, material: str | None, count, yes, boxes,
             labels, size) -> str:  # fmt: skip
    """The merged answer written as the corpus writes answers of ``task``."""
    from qupaint.instruct import templates as T
    from qupaint.instruct.formats import format_boxes

    w, h = size
    xywh = [[b[0], b[1], b[2] - b[0], b[3] - b[1]] for b in boxes]
    phrase = _phrase(question)
    if task == "count":
        if phrase is None:
            return f"There {'is' if count == 1 else 'are'} {count} flake" \
                   f"{'' if count == 1 else 's'} in the image."  # fmt: skip
        return T.COUNT_A[0].format(n=count, cat=phrase)
    if task == "verify":
        cat, mat = phrase or "thin", material or "2D"
        if yes and xywh:
            box = format_boxes(fmt, xywh[:1], None, w, h)
            return T.VERIFY_YES_A[0].format(cat=cat, material=mat, box=box)
        return T.VERIFY_NO_A[0].format(cat=cat, material=mat) if not yes else "Yes."
    if not xywh:
        return "There are no flakes in this image."
    return T.LOCATE_A[1].format(n=len(xywh), box=format_boxes(fmt, xywh, labels, w, h))


def answer_whole_images(model, processor, images: Sequence, questions: Sequence[str],
                        microscope=None, material: str | None = None, fmt: str = "llava",
                        batch_size: int = 8, evidence: str | None = None,
                        candidates: Sequence | None = None,
                        **gen) -> list[WholeImageAnswer]:  # fmt: skip
    """Answer ``questions[i]`` about the whole image ``images[i]`` (a path or a uint8 array
    [H, W, 3]); see the module doc. ``microscope`` (a :class:`~qupaint.color.Microscope`
    or a preset name / camera file) gives the images' scale; ``material`` lets the physics
    skip empty windows. ``evidence`` (one of :data:`EVIDENCE`; default ``"physics"`` when
    ``material`` is given and the model reads region tokens, else ``"vision"``): what the
    model reads about each window, the physics detector's flake candidates in it
    (:func:`window_regions`) or its own dense head's regions. ``candidates``: per image, its
    flake candidates (COCO detections in its pixels, e.g. from a detector run with settings
    of your own) in place of :func:`physics_candidates`'. ``gen`` goes to
    :func:`~qupaint.model.inference.generate_answers` (``temperature``, ``constrain``, ...).
    """
    from PIL import Image

    from qupaint._io import read_rgb
    from qupaint.color import Microscope
    from qupaint.instruct.parse import parse_answer
    from qupaint.model.constrain import task_of_question
    from qupaint.model.inference import generate_answers

    if len(images) != len(questions):
        raise ValueError(f"{len(images)} images but {len(questions)} questions")
    evidence = resolve_evidence(model, evidence, material is not None or candidates is not None)
    if candidates is not None and len(candidates) != len(images):
        raise ValueError(f"candidates: {len(candidates)} lists for {len(images)} images")
    mic = Microscope.load(microscope) if microscope is not None else None
    tile = int(processor.image.image_size)
    scale = 1.0  # original pixels -> model pixels
    if mic is not None and mic.um_per_px is not None:
        scale = float(mic.um_per_px) / MODEL_UM_PER_PX
    seen: dict = {}  # an image asked several questions is read, scaled and gated once

    def prepared(img):
        key = id(img) if isinstance(img, np.ndarray) else str(img)
        if key not in seen:
            arr = read_rgb(img) if not isinstance(img, np.ndarray) else np.asarray(img)
            H, W = arr.shape[:2]
            arr_m = arr
            if abs(scale - 1.0) > 0.02:
                arr_m = np.asarray(Image.fromarray(arr).resize(
                    (max(1, round(W * scale)), max(1, round(H * scale))), resample=3))  # fmt: skip
            h, w = arr_m.shape[:2]
            starts = [(x0, y0) for y0 in window_starts(h, tile) for x0 in window_starts(w, tile)]
            seen[key] = [arr, arr_m, starts, None, None]  # ... candidates, empty windows
        return seen[key]

    for img, given in zip(images, candidates or [], strict=False):
        entry = prepared(img)  # candidates given: in the model's pixels
        entry[3] = [{**d, "bbox": [float(v) * scale for v in d["bbox"]]} for d in given]

    def candidates_of(entry):  # the physics reads the image at the scale it now has
        arr, arr_m = entry[:2]
        if entry[3] is None and material:
            mic_m = replace(mic, um_per_px=MODEL_UM_PER_PX) if mic and arr_m is not arr else mic
            entry[3] = physics_candidates(arr_m, material, mic_m)
        return entry[3]

    # per image: (task, windows [(x0, y0, crop)], (W, H), empty windows, asked whole, seconds)
    plans = []
    for img, q in zip(images, questions, strict=True):
        t0 = time.perf_counter()
        task = task_of_question(q)
        entry = prepared(img)
        arr, arr_m, starts = entry[:3]
        H, W = arr.shape[:2]
        h, w = arr_m.shape[:2]
        held_locate = task == "locate" and evidence == "physics"
        if task not in WHOLE_IMAGE_TASKS or (w <= tile and h <= tile and not held_locate):
            plans.append((task, [(0, 0, arr, None)], (W, H), set(), True,
                          time.perf_counter() - t0, 1))  # fmt: skip
            continue
        cands = candidates_of(entry)
        if entry[4] is None:
            entry[4] = set() if cands is None else empty_windows(arr_m, starts, tile, material,
                                                                 candidates=cands)  # fmt: skip
        empty = entry[4]
        n_windows = len(starts)
        if held_locate:  # windows around the candidates, each holding what it can write
            empty = set()
            wins = [(x0, y0, arr_m[y0 : y0 + tile, x0 : x0 + tile],
                     window_regions([cands[k] for k in members], x0, y0, min(tile, w - x0),
                                    min(tile, h - y0), min_inside=0))
                    for x0, y0, members in proposal_windows(cands, w, h, tile)]  # fmt: skip
        else:
            wins = [(x0, y0, arr_m[y0 : y0 + tile, x0 : x0 + tile],
                     window_regions(cands, x0, y0, tile) if evidence == "physics" else None)
                    for x0, y0 in starts]  # fmt: skip
        plans.append((task, wins, (W, H), empty, False, time.perf_counter() - t0, n_windows))
    asks = [(i, j) for i, p in enumerate(plans) for j, (x0, y0, *_) in enumerate(p[1])
            if (x0, y0) not in p[3]]  # fmt: skip
    regions = None
    if evidence == "physics" and asks:
        # an image asked whole (smaller than a window, or a question not merged) is read
        # through the physics too, as one window
        regions = []
        for i, j in asks:
            reg = plans[i][1][j][3]
            if reg is None:
                entry = prepared(images[i])
                h, w = entry[1].shape[:2]
                reg = window_regions(candidates_of(entry), 0, 0, w, h)
            regions.append(reg)
    t0 = time.perf_counter()
    texts = []
    if asks:
        texts = generate_answers(model, processor, [plans[i][1][j][2] for i, j in asks],
                                 [questions[i] for i, _ in asks], batch_size=batch_size,
                                 fmt=fmt, tasks=[plans[i][0] for i, _ in asks],
                                 regions=regions, **gen)  # fmt: skip
    per_ask = (time.perf_counter() - t0) / max(len(asks), 1)
    by_image: dict = {}
    for (i, j), text in zip(asks, texts, strict=True):
        by_image.setdefault(i, []).append((j, text))
    out = []
    for i, (task, wins, (W, H), empty, whole, prep_s, n_windows) in enumerate(plans):
        got = by_image.get(i, [])
        secs = prep_s + per_ask * len(got)
        if whole:
            text = got[0][1] if got else ""
            a = parse_answer(text, fmt, image_size=(W, H))
            out.append(WholeImageAnswer(task, text, [list(map(float, b)) for b in a.boxes],
                                        list(a.labels), a.count, a.yes, 1, 1, int(a.ok), secs,
                                        [(0, 0, text)]))  # fmt: skip
            continue
        expect = {"count": "count", "verify": "yesno", "locate": "boxes"}[task]
        count, yes, parsed, boxes, labels, window_answers = 0, False, 0, [], [], []
        cut = []
        hm, wm = (round(H * scale), round(W * scale))
        for j, text in got:
            x0, y0, crop, _ = wins[j]
            size = (crop.shape[1], crop.shape[0])
            a = parse_answer(text, fmt, image_size=size, expect=expect)
            parsed += a.ok
            window_answers.append((round(x0 / scale), round(y0 / scale), text))
            if not a.ok:
                continue
            if task == "count":
                count += int(a.count or 0)
            if task == "verify":
                yes = yes or bool(a.yes)
            th, tw = crop.shape[:2]
            for b, lb in zip(a.boxes, a.labels, strict=True):
                x1, y1, x2, y2 = (float(v) for v in b)
                boxes.append([(x0 + x1) / scale, (y0 + y1) / scale,
                              (x0 + x2) / scale, (y0 + y2) / scale])  # fmt: skip
                labels.append(lb or "Mono")
                # cut by its window's border where that border is not the image's
                cut.append((x1 <= 2 and x0 > 0) or (y1 <= 2 and y0 > 0)
                           or (x2 >= tw - 2 and x0 + tw < wm) or (y2 >= th - 2 and y0 + th < hm))
        if task == "locate" and evidence == "physics":
            # each candidate was given to one window: only a box written twice is one flake
            # (merging overlaps would join nested or touching flakes the physics separated)
            kept = dict.fromkeys((tuple(round(v) for v in b), lb)
                                 for b, lb in zip(boxes, labels, strict=True))  # fmt: skip
            boxes, labels = [list(map(float, b)) for b, _ in kept], [lb for _, lb in kept]
        else:
            boxes, labels = merge_boxes(boxes, labels, cut)
        scores = []
        if evidence == "physics" and boxes:  # the evidence each box reports, in these pixels
            cands = [{**d, "bbox": [v / scale for v in d["bbox"]]}
                     for d in candidates_of(prepared(images[i]))]  # fmt: skip
            scores = evidence_scores(boxes, cands)
            order = sorted(range(len(boxes)), key=lambda k: -scores[k])  # best first
            boxes, labels, scores = ([v[k] for k in order] for v in (boxes, labels, scores))
        text = _compose(task, fmt, questions[i], material, count, yes, boxes, labels, (W, H))
        out.append(WholeImageAnswer(task, text, boxes, labels,
                                    count if task == "count" else None,
                                    yes if task == "verify" else None, n_windows,
                                    len(wins) - len(empty), parsed, round(secs, 3),
                                    window_answers, scores))  # fmt: skip
    return out
