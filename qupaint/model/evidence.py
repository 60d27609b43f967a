"""What a region-token QuPAINT model reads about a window besides its pixels: the evidence.

An evidence source (:class:`EvidenceSource`) writes the regions each window's region tokens
carry from an image's flake candidates, says whether the model's boxes are held to them, and
scores the boxes of an answer; :class:`Window` is one model-sized window of an image, with
what the evidence says of it. The physics candidates themselves (:func:`physics_candidates`)
also mark the windows that hold none (:func:`empty_windows`: answered "none" without the
model), whatever the evidence. :mod:`qupaint.model.whole_image` (whole micrographs in,
answers out) and :mod:`qupaint.bench.model_eval` (the model scored on real images) both
work on windows from a source, so a new source (a learned flake model, say) is one class:

- :class:`PhysicsEvidence` (``"physics"``): the physics detector's candidates
  (:func:`physics_candidates`, through the one door
  :meth:`~qupaint.detect.DetectorSettings.from_microscope`), written as region tokens; the
  model's boxes for a locate question are held to them, and each box reports the
  candidate's score;
- :class:`VisionEvidence` (``"vision"``): nothing but the pixels; a region-token model reads
  the regions of its own dense head.

>>> s = evidence_source("vision")
>>> s.name, s.reads_regions, s.regions([], 0, 0, 224)
('vision', False, None)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["EVIDENCE", "REGIONS_PER_WINDOW", "EvidenceSource", "PhysicsEvidence",
           "VisionEvidence", "Window", "empty_windows", "evidence_scores", "evidence_source",
           "physics_candidates", "proposal_windows", "resolve_evidence", "window_regions"]


#: the names of the evidence sources (:data:`SOURCES`)
EVIDENCE = ("physics", "vision")


@dataclass
class Window:
    """One window of an image as a model reads it.

    Attributes
    ----------
    x0, y0 : int
        Its top-left corner, in the pixels of the image it was cut from.
    crop : ndarray
        Its pixels [h, w, 3].
    regions : (boxes, classes) or None
        What its region tokens carry (boxes (x1, y1, x2, y2) as fractions of the window,
        layer classes), from the evidence; None: the model's own dense head.
    empty : bool
        The evidence sees nothing but substrate in it: answered "none" without the model.
    image : int
        The index of its image in the batch it belongs to.
    truth : int or None
        Where a mask scores it: the thin flakes in it.
    """

    x0: int
    y0: int
    crop: np.ndarray
    regions: tuple | None = None
    empty: bool = False
    image: int = 0
    truth: int | None = None

    @property
    def corner(self) -> tuple[int, int]:
        return self.x0, self.y0


@runtime_checkable
class EvidenceSource(Protocol):
    """What a source of evidence offers (see the module doc)."""

    name: str
    #: the model's region tokens carry this source's regions (not its own dense head's)
    reads_regions: bool
    #: a locate answer is written window by window around the candidates, each window's
    #: boxes held to its regions, and a box written twice is one flake
    holds_boxes: bool

    def regions(self, candidates, x0: int, y0: int, width: int, height: int | None = None,
                min_inside: float = 0.5) -> tuple | None:  # fmt: skip
        """The regions of the window at (x0, y0), ``width`` x ``height`` px."""

    def scores(self, boxes: Sequence, candidates) -> list[float]:
        """Each answer box's confidence from the evidence ([] when it has none);
        ``candidates``, a list or a function giving it (called only when needed)."""


class VisionEvidence:
    """No evidence besides the pixels: a region-token model reads its own dense head."""

    name = "vision"
    reads_regions = False
    holds_boxes = False

    def regions(self, candidates, x0, y0, width, height=None, min_inside=0.5):
        return None

    def scores(self, boxes, candidates) -> list[float]:
        return []


class PhysicsEvidence:
    """The physics detector's flake candidates (:func:`physics_candidates`), written as the
    region tokens; the boxes of a locate answer are held to them and report their scores."""

    name = "physics"
    reads_regions = True
    holds_boxes = True

    def regions(self, candidates, x0, y0, width, height=None, min_inside=0.5):
        return window_regions(candidates, x0, y0, width, height, min_inside)

    def scores(self, boxes, candidates) -> list[float]:
        if not boxes:
            return []
        return evidence_scores(boxes, candidates() if callable(candidates) else candidates)


def resolve_evidence(model, evidence, physics: bool):
    """What ``model`` reads about an image: ``evidence`` when given (one of
    :data:`EVIDENCE`, or an :class:`EvidenceSource` of one's own, returned as it is), else
    ``"physics"`` where the physics candidates can be had (``physics``: a material or the
    candidates are known) and the model reads region tokens, else ``"vision"``. A ValueError
    names what ``"physics"`` needs when it cannot be had."""
    if evidence is not None and not isinstance(evidence, str):
        return evidence_source(evidence)  # a source of one's own
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
    from qupaint.detect import DetectorSettings, detect

    floor = ANSWER_MIN_SCORE if min_score is None else min_score
    # the one door from a microscope to detection, as `qupaint detect` takes it
    settings = DetectorSettings.from_microscope(microscope)
    return [d for d in detect(image, material, settings) if d["score"] >= floor]


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
    from qupaint.boxes import box_iou_xywh, xyxy_to_xywh

    if not candidates or not boxes:
        return [0.0] * len(boxes)
    c = np.asarray([d["bbox"] for d in candidates], float)
    sc = np.asarray([float(d["score"]) for d in candidates])
    out = []
    for x1, y1, x2, y2 in boxes:
        iou = box_iou_xywh(np.asarray(xyxy_to_xywh((x1, y1, x2, y2)))[None], c)
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


#: the evidence sources by name
SOURCES: dict[str, type] = {"physics": PhysicsEvidence, "vision": VisionEvidence}


def evidence_source(evidence) -> EvidenceSource:
    """The source ``evidence`` names (one of :data:`EVIDENCE`), or ``evidence`` itself when
    it is an :class:`EvidenceSource` already."""
    if isinstance(evidence, str):
        if evidence not in SOURCES:
            raise ValueError(f"evidence: one of {EVIDENCE}; got {evidence!r}")
        return SOURCES[evidence]()
    if isinstance(evidence, EvidenceSource):
        return evidence
    raise TypeError(f"evidence: a name ({EVIDENCE}) or an EvidenceSource; got "
                    f"{type(evidence).__name__}")
