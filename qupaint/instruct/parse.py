"""Turn model answers back into boxes, labels, counts and yes/no (inverse of the formats).

``parse_answer(text, fmt)`` never raises on model output: malformed or adversarial text
gives an empty prediction with ``ok=False`` and the reasons in ``errors``; callers count
those as parse failures (:func:`parse_answers` does).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from qupaint.boxes import xywh_to_xyxy
from qupaint.categories import CATEGORY_IDS, CATEGORY_PHRASES
from qupaint.instruct.templates import DESCRIBE_A

__all__ = [
    "Answer",
    "description_class",
    "PARSE_FORMATS",
    "parse_answer",
    "parse_answers",
    "LABELS",
    "label_to_category",
]

#: canonical labels and the words that map to them
LABELS = {
    **{name.lower(): name for name in CATEGORY_IDS},
    **{CATEGORY_PHRASES[i]: name for name, i in CATEGORY_IDS.items()},
}
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_BOX4 = rf"\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]"
_LLAVA = re.compile(rf"(?:\b([A-Za-z-]+)\s*:\s*)?{_BOX4}")
_INTERNVL = re.compile(r"(?:<ref>(.{0,64}?)</ref>\s*)?<box>\s*(\[.{0,4000}?\])\s*</box>", re.S)
_JSON_BLOCK = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
# the authors' release: <box>x, y, w, h</box> in percent; committed boxes in <CONCLUSION>
# (a missing or doubled slash in the closing tag is tolerated, as their parser does)
_CONCL = re.compile(r"<\s*/?\s*CONCLUSION\s*>(.*?)<\s*/?\s*CONCLUSION\s*>", re.S | re.I)
_PCT_BOX = re.compile(r"<box>(.{0,200}?)</box>", re.S)
_YES = re.compile(r"^\W*(yes|no)\b", re.I)
_WORDS = {
    "no": 0, "none": 0, "zero": 0, "one": 1, "a single": 1, "two": 2, "three": 3, "four": 4,
    "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
}  # fmt: skip
_COUNT = re.compile(r"\b(\d{1,6}|" + "|".join(_WORDS) + r")\b", re.I)
_NONE = re.compile(r"\b(no|none|zero)\b|\[\s*\]", re.I)
_MAX_CHARS = 200_000  # longer answers are cut (a runaway generation is not an attack vector)


@dataclass
class Answer:
    """A parsed answer. ``boxes`` [N, 4] are ``x1, y1, x2, y2`` in pixels when the image size
    was given, else in the format's own units (llava 0-1, internvl 0-1000, qwen pixels)."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    labels: list = field(default_factory=list)
    count: int | None = None
    yes: bool | None = None
    conclusion: str | None = None
    ok: bool = True
    errors: list = field(default_factory=list)

    @property
    def category_ids(self) -> list:
        """COCO category id per box (None for an unlabelled or unknown label)."""
        return [CATEGORY_IDS.get(lab) for lab in self.labels]


def label_to_category(label: str | None) -> int | None:
    return CATEGORY_IDS.get(_norm_label(label))


def _norm_label(label) -> str | None:
    if not isinstance(label, str):
        return None
    return LABELS.get(label.strip().lower().split()[0] if label.strip() else "", None)


def _scale(fmt: str) -> float:
    return {"llava": 1.0, "internvl": 1000.0, "qwen": 0.0, "qupaint": 100.0}[fmt]


def _boxes_llava(text: str, errors: list) -> tuple[list, list, str]:
    boxes, labels = [], []
    for m in _LLAVA.finditer(text):
        boxes.append([float(v) for v in m.groups()[1:]])
        labels.append(_norm_label(m.group(1)))
    return boxes, labels, _LLAVA.sub(" ", text)


def _boxes_internvl(text: str, errors: list) -> tuple[list, list, str]:
    boxes, labels = [], []
    for m in _INTERNVL.finditer(text):
        inner = list(re.finditer(_BOX4, m.group(2)))
        if not inner:
            errors.append(f"unreadable <box> content {m.group(2)[:40]!r}")
        for b in inner:
            boxes.append([float(v) for v in b.groups()])
            labels.append(_norm_label(m.group(1)))
    return boxes, labels, _INTERNVL.sub(" ", text)


def _boxes_qwen(text: str, errors: list) -> tuple[list, list, str]:
    m = _JSON_BLOCK.search(text)
    if m:
        body, rest = m.group(1), _JSON_BLOCK.sub(" ", text)
    else:  # a bare JSON list: from the first "[" to the last "]"
        i, j = text.find("["), text.rfind("]")
        body = text[i : j + 1] if 0 <= i < j else ""
        rest = text.replace(body, " ") if body else text
    if not body.strip():
        return [], [], rest
    try:
        items = json.loads(body)
    except (ValueError, RecursionError):
        errors.append("answer holds a JSON block that does not parse")
        return [], [], rest
    if isinstance(items, dict):
        items = [items]
    boxes, labels = [], []
    if not isinstance(items, list):
        errors.append("JSON answer is not a list of boxes")
        return [], [], rest
    for it in items:
        b = it.get("bbox_2d") if isinstance(it, dict) else None
        if (
            not isinstance(b, list)
            or len(b) != 4
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in b)
        ):
            errors.append(f"item without a 4-number bbox_2d: {str(it)[:60]}")
            continue
        boxes.append([float(v) for v in b])
        labels.append(_norm_label(it.get("label")))
    return boxes, labels, rest


def _boxes_qupaint(text: str, errors: list) -> tuple[list, list, str]:
    m = _CONCL.search(text)
    body = m.group(1) if m else text  # no conclusion: every box in the answer
    boxes = []
    for raw in _PCT_BOX.findall(body):
        try:
            x, y, w, h = (float(v) for v in raw.split(","))
        except ValueError:
            errors.append(f"unreadable <box> {raw[:40]!r}")
            continue
        boxes.append(xywh_to_xyxy((x, y, w, h)))
    return boxes, [None] * len(boxes), _PCT_BOX.sub(" ", text)


_READERS = {
    "llava": _boxes_llava,
    "internvl": _boxes_internvl,
    "qwen": _boxes_qwen,
    "qupaint": _boxes_qupaint,
}
PARSE_FORMATS = tuple(_READERS)


def parse_answer(
    text,
    fmt: str,
    image_size: tuple[int, int] | None = None,
    expect: str | None = None,
) -> Answer:
    """Parse a model answer written in dialect ``fmt`` (see :mod:`qupaint.instruct.formats`).

    Parameters
    ----------
    text : the model's answer (anything that is not a string is a parse failure).
    fmt : ``"llava"``, ``"internvl"``, ``"qwen"``, or ``"qupaint"`` (the authors' release:
        ``<box>x, y, w, h</box>`` in percent of width/height, the boxes inside
        ``<CONCLUSION>...</CONCLUSION>`` when that block is present).
    image_size : ``(width, height)`` in pixels; when given, boxes come back in pixels.
    expect : ``"boxes"``, ``"count"`` or ``"yesno"``: the answer must contain that, or be an
        explicit "none" (for boxes), else ``ok`` is False.

    Examples
    --------
    >>> text = "Mono: [0.1, 0.2, 0.3, 0.4]; Few: [0.5, 0.5, 0.6, 0.7]"
    >>> a = parse_answer(text, "llava", image_size=(100, 200))
    >>> a.boxes.tolist(), a.labels, a.ok
    ([[10.0, 40.0, 30.0, 80.0], [50.0, 100.0, 60.0, 140.0]], ['Mono', 'Few'], True)
    >>> parse_answer("<box>[[1, 2", "internvl", expect="boxes").ok
    False
    >>> parse_answer("Mono: [0.1, 0.2", "llava").ok, parse_answer("{{{{", "llava").ok
    (False, False)
    """
    if fmt not in PARSE_FORMATS:
        raise ValueError(f"fmt must be one of {PARSE_FORMATS}; got {fmt!r}")
    if expect not in (None, "boxes", "count", "yesno"):
        raise ValueError(f"expect must be None, 'boxes', 'count' or 'yesno'; got {expect!r}")
    if not isinstance(text, str):
        return Answer(ok=False, errors=[f"answer is {type(text).__name__}, not text"])
    text = text[:_MAX_CHARS]
    errors: list[str] = []
    for o, c in ("[]", "{}"):  # a cut-off or garbled answer leaves its brackets open
        if text.count(o) != text.count(c):
            errors.append(f"unbalanced {o}{c}: {text.count(o)} open, {text.count(c)} closed")
    boxes, labels, rest = _READERS[fmt](text, errors)
    unit = _scale(fmt)
    keep_b, keep_l = [], []
    for b, lab in zip(boxes, labels, strict=True):
        x1, y1, x2, y2 = b
        if not all(math.isfinite(v) for v in b) or x2 <= x1 or y2 <= y1:
            errors.append(f"degenerate box {b}")
            continue
        if unit and (min(b) < 0 or max(b) > unit * (1 + 1e-6)):
            errors.append(f"box {b} outside the 0-{unit:g} range of {fmt}")
            continue
        keep_b.append(b)
        keep_l.append(lab)
    arr = np.asarray(keep_b, dtype=np.float64).reshape(-1, 4)
    if image_size is not None and unit:
        w, h = image_size
        arr = arr / unit * np.array([w, h, w, h], dtype=np.float64)
    ans = Answer(boxes=arr, labels=keep_l, errors=errors)
    m = _CONCL.search(text)
    ans.conclusion = m.group(1).strip() if m else None
    yes = _YES.match(text)
    ans.yes = None if yes is None else yes.group(1).lower() == "yes"
    c = _COUNT.search(rest)
    if c:
        tok = c.group(1).lower()
        ans.count = int(tok) if tok.isdigit() else _WORDS[tok]
    if expect == "boxes" and not len(arr) and not _NONE.search(text):
        errors.append("no box found")
    elif expect == "count" and ans.count is None:
        errors.append("no count found")
    elif expect == "yesno" and ans.yes is None:
        errors.append("no yes/no found")
    ans.ok = not errors
    return ans


def parse_answers(
    texts: Iterable,
    fmt: str,
    image_sizes: Sequence[tuple[int, int] | None] | None = None,
    expect: str | None = None,
) -> tuple[list[Answer], int]:
    """Parse many answers; returns (answers, number of parse failures)."""
    texts = list(texts)
    sizes = image_sizes if image_sizes is not None else [None] * len(texts)
    out = [parse_answer(t, fmt, s, expect) for t, s in zip(texts, sizes, strict=True)]
    return out, sum(not a.ok for a in out)


def _description_head() -> re.Pattern:
    """The opening of :data:`~qupaint.instruct.templates.DESCRIBE_A` up to its class, as a
    pattern: its words literal (the article "a" also as "an"), the class one of
    :data:`~qupaint.categories.CATEGORY_PHRASES`."""
    head = DESCRIBE_A.split("{cat}")[0]  # "This is a "
    words = [r"an?" if w == "a" else re.escape(w) for w in head.split()]
    phrases = "|".join(re.escape(p) for p in CATEGORY_PHRASES.values())
    return re.compile(r"^\s*" + " ".join(words) + " (" + phrases + r")\b")


_DESCRIPTION_HEAD = _description_head()
_PHRASE_IDS = {p: c for c, p in CATEGORY_PHRASES.items()}


def description_class(text) -> int | None:
    """The layer class a description opens with (its sentence is
    :data:`~qupaint.instruct.templates.DESCRIBE_A`), or None when it does not open so.

    >>> description_class("This is a monolayer graphene flake (a monolayer). Its ...")
    1
    >>> description_class("I think it is thick.") is None
    True
    """
    m = _DESCRIPTION_HEAD.match(text) if isinstance(text, str) else None
    return None if m is None else _PHRASE_IDS[m.group(1)]
