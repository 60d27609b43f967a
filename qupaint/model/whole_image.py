"""Whole micrographs in, answers about the whole image out.

A QuPAINT model reads one window of ``image_size`` pixels (224 for the compact model) at
the scale it was trained on (:data:`MODEL_UM_PER_PX`: the reference scale,
:data:`~qupaint.constants.REFERENCE_UM_PER_PX`, of the 2DMatGMM / MaskTerial microscope and
of realistic Synthia). A whole 1920x1200 micrograph
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

from qupaint.boxes import xyxy_to_xywh
from qupaint.constants import REFERENCE_UM_PER_PX
from qupaint.model.evidence import (
    EVIDENCE,
    REGIONS_PER_WINDOW,
    Window,
    empty_windows,
    evidence_scores,
    evidence_source,
    physics_candidates,
    proposal_windows,
    resolve_evidence,
    window_regions,
)

__all__ = ["EVIDENCE", "MODEL_UM_PER_PX", "REGIONS_PER_WINDOW", "WHOLE_IMAGE_TASKS",
           "WholeImageAnswer", "answer_whole_images", "empty_windows", "evidence_scores",
           "merge_boxes", "physics_candidates", "proposal_windows", "resolve_evidence",
           "window_regions", "window_starts"]  # fmt: skip

#: the image scale the shipped models were trained at (µm per pixel)
MODEL_UM_PER_PX = REFERENCE_UM_PER_PX
#: the tasks answered window by window and merged
WHOLE_IMAGE_TASKS = ("count", "verify", "locate")


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


















def _compose(task: str, fmt: str, question: str, material: str | None, count, yes, boxes,
             labels, size) -> str:  # fmt: skip
    """The merged answer written as the corpus writes answers of ``task``."""
    from qupaint.instruct import templates as T
    from qupaint.instruct.formats import format_boxes

    w, h = size
    xywh = [xyxy_to_xywh(b) for b in boxes]
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


@dataclass
class _Image:
    """One image as read once: its pixels, at the model's scale, its windows' corners and,
    once needed, its physics candidates (model pixels) and empty windows."""

    arr: np.ndarray
    arr_m: np.ndarray
    starts: list
    cands: list | None = None
    empty: set | None = None


@dataclass
class _Plan:
    """How one question about one image is asked: its task, the windows (:class:`Window`;
    one whole-image window when ``whole``), the image's size, the windows in the grid, and
    the seconds its preparation took."""

    task: str | None
    windows: list[Window]
    size: tuple[int, int]
    whole: bool
    seconds: float
    n_windows: int = 1


def answer_whole_images(model, processor, images: Sequence, questions: Sequence[str],
                        microscope=None, material: str | None = None, fmt: str = "llava",
                        batch_size: int = 8, evidence: str | None = None,
                        candidates: Sequence | None = None,
                        **gen) -> list[WholeImageAnswer]:  # fmt: skip
    """Answer ``questions[i]`` about the whole image ``images[i]`` (a path or a uint8 array
    [H, W, 3]); see the module doc. ``microscope`` (a :class:`~qupaint.color.Microscope`
    or a preset name / camera file) gives the images' scale; ``material`` lets the physics
    skip empty windows. ``evidence`` (one of :data:`EVIDENCE`, an
    :class:`~qupaint.model.evidence.EvidenceSource`; default ``"physics"`` when
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
    from qupaint.model.inference import generate_answers

    if len(images) != len(questions):
        raise ValueError(f"{len(images)} images but {len(questions)} questions")
    source = evidence_source(resolve_evidence(model, evidence, material is not None
                                              or candidates is not None))
    if candidates is not None and len(candidates) != len(images):
        raise ValueError(f"candidates: {len(candidates)} lists for {len(images)} images")
    mic = Microscope.load(microscope) if microscope is not None else None
    tile = int(processor.image.image_size)
    scale = 1.0  # original pixels -> model pixels
    if mic is not None and mic.um_per_px is not None:
        scale = float(mic.um_per_px) / MODEL_UM_PER_PX
    seen: dict = {}  # an image asked several questions is read, scaled and gated once

    def prepared(img) -> _Image:
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
            seen[key] = _Image(arr, arr_m, starts)
        return seen[key]

    for img, given in zip(images, candidates or [], strict=False):
        entry = prepared(img)  # candidates given: in the model's pixels
        entry.cands = [{**d, "bbox": [float(v) * scale for v in d["bbox"]]} for d in given]

    def candidates_of(entry: _Image):  # the physics reads the image at the scale it now has
        if entry.cands is None and material:
            rescaled = mic and entry.arr_m is not entry.arr
            mic_m = replace(mic, um_per_px=MODEL_UM_PER_PX) if rescaled else mic
            entry.cands = physics_candidates(entry.arr_m, material, mic_m)
        return entry.cands

    plans = [_plan(prepared(img), q, tile, source, material, candidates_of)
             for img, q in zip(images, questions, strict=True)]  # fmt: skip
    asks = [(i, j) for i, p in enumerate(plans) for j, win in enumerate(p.windows)
            if not win.empty]  # fmt: skip
    regions = None
    if source.reads_regions and asks:
        # an image asked whole (smaller than a window, or a question not merged) is read
        # through the evidence too, as one window
        regions = []
        for i, j in asks:
            reg = plans[i].windows[j].regions
            if reg is None:
                entry = prepared(images[i])
                h, w = entry.arr_m.shape[:2]
                reg = source.regions(candidates_of(entry), 0, 0, w, h)
            regions.append(reg)
    t0 = time.perf_counter()
    texts = []
    if asks:
        texts = generate_answers(model, processor, [plans[i].windows[j].crop for i, j in asks],
                                 [questions[i] for i, _ in asks], batch_size=batch_size,
                                 fmt=fmt, tasks=[plans[i].task for i, _ in asks],
                                 regions=regions, **gen)  # fmt: skip
    per_ask = (time.perf_counter() - t0) / max(len(asks), 1)
    by_image: dict = {}
    for (i, j), text in zip(asks, texts, strict=True):
        by_image.setdefault(i, []).append((j, text))
    out = []
    for i, plan in enumerate(plans):
        got = by_image.get(i, [])
        secs = plan.seconds + per_ask * len(got)
        W, H = plan.size
        if plan.whole:
            text = got[0][1] if got else ""
            a = parse_answer(text, fmt, image_size=(W, H))
            out.append(WholeImageAnswer(plan.task, text, [list(map(float, b)) for b in a.boxes],
                                        list(a.labels), a.count, a.yes, 1, 1, int(a.ok), secs,
                                        [(0, 0, text)]))  # fmt: skip
            continue

        def cands_here(i=i):  # the evidence each box reports, in the original pixels
            return [{**d, "bbox": [v / scale for v in d["bbox"]]}
                    for d in candidates_of(prepared(images[i]))]  # fmt: skip

        out.append(_merge(plan, got, questions[i], fmt, scale, source, material, cands_here,
                          secs))  # fmt: skip
    return out


def _plan(entry: _Image, question: str, tile: int, source, material, candidates_of) -> _Plan:
    """How ``question`` is asked of the image ``entry``: whole, or window by window (windows
    around the candidates for a locate question whose boxes the evidence holds, else the
    grid, its empty windows marked)."""
    t0 = time.perf_counter()
    from qupaint.model.constrain import task_of_question

    task = task_of_question(question)
    arr, arr_m, starts = entry.arr, entry.arr_m, entry.starts
    H, W = arr.shape[:2]
    h, w = arr_m.shape[:2]
    held_locate = task == "locate" and source.holds_boxes
    if task not in WHOLE_IMAGE_TASKS or (w <= tile and h <= tile and not held_locate):
        return _Plan(task, [Window(0, 0, arr)], (W, H), True, time.perf_counter() - t0)
    cands = candidates_of(entry)
    if entry.empty is None:
        entry.empty = set() if cands is None else empty_windows(arr_m, starts, tile, material,
                                                                candidates=cands)  # fmt: skip
    if held_locate:  # windows around the candidates, each holding what it can write
        wins = [Window(x0, y0, arr_m[y0 : y0 + tile, x0 : x0 + tile],
                       source.regions([cands[k] for k in members], x0, y0, min(tile, w - x0),
                                      min(tile, h - y0), min_inside=0))
                for x0, y0, members in proposal_windows(cands, w, h, tile)]  # fmt: skip
    else:
        wins = [Window(x0, y0, arr_m[y0 : y0 + tile, x0 : x0 + tile],
                       source.regions(cands, x0, y0, tile), (x0, y0) in entry.empty)
                for x0, y0 in starts]  # fmt: skip
    return _Plan(task, wins, (W, H), False, time.perf_counter() - t0, len(starts))


def _merge(plan: _Plan, got, question: str, fmt: str, scale: float, source, material,
           cands_here, secs: float) -> WholeImageAnswer:  # fmt: skip
    """The window answers ``got`` [(window index, text)] of ``plan`` merged into one answer
    about the whole image: counts added, any yes, boxes moved to the image and merged."""
    from qupaint.instruct.parse import parse_answer

    task, (W, H) = plan.task, plan.size
    expect = {"count": "count", "verify": "yesno", "locate": "boxes"}[task]
    count, yes, parsed, boxes, labels, window_answers = 0, False, 0, [], [], []
    cut = []
    hm, wm = (round(H * scale), round(W * scale))
    for j, text in got:
        win = plan.windows[j]
        x0, y0, crop = win.x0, win.y0, win.crop
        a = parse_answer(text, fmt, image_size=(crop.shape[1], crop.shape[0]), expect=expect)
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
    if task == "locate" and source.holds_boxes:
        # each candidate was given to one window: only a box written twice is one flake
        # (merging overlaps would join nested or touching flakes the physics separated)
        kept = dict.fromkeys((tuple(round(v) for v in b), lb)
                             for b, lb in zip(boxes, labels, strict=True))  # fmt: skip
        boxes, labels = [list(map(float, b)) for b, _ in kept], [lb for _, lb in kept]
    else:
        boxes, labels = merge_boxes(boxes, labels, cut)
    scores = source.scores(boxes, cands_here)
    if scores:  # best first
        order = sorted(range(len(boxes)), key=lambda k: -scores[k])
        boxes, labels, scores = ([v[k] for k in order] for v in (boxes, labels, scores))
    text = _compose(task, fmt, question, material, count, yes, boxes, labels, (W, H))
    asked = sum(not w.empty for w in plan.windows)
    return WholeImageAnswer(task, text, boxes, labels, count if task == "count" else None,
                            yes if task == "verify" else None, plan.n_windows, asked, parsed,
                            round(secs, 3), window_answers, scores)  # fmt: skip
