"""How boxes and conversations are written in each instruction format.

One place defines the three on-disk dialects (and ``qupaint.bench.parse`` inverts them):

``llava``
    ``{"id", "image", "conversations": [{"from": "human", "value": "<image>\\n..."},
    {"from": "gpt", "value": ...}, ...]}``; a box is ``Mono: [x1, y1, x2, y2]`` with
    coordinates normalised to [0, 1] (3 decimals), the LLaVA grounding convention.
``internvl``
    the same record; boxes are ``<ref>Mono</ref><box>[[x1, y1, x2, y2], ...]</box>`` with
    integer coordinates normalised to 0-1000 (InternVL's grounding convention).
``qwen``
    ``{"id", "images": [path], "messages": [{"role": "user", "content": "<image>..."},
    {"role": "assistant", "content": ...}]}``; boxes are a JSON list
    ``[{"bbox_2d": [x1, y1, x2, y2], "label": "Mono"}]`` in absolute pixels (Qwen2.5/3-VL).

Boxes arrive as COCO ``[x, y, w, h]`` in pixels.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

FORMATS = ("llava", "internvl", "qwen")
IMAGE_TOKEN = "<image>"

__all__ = ["FORMATS", "IMAGE_TOKEN", "format_boxes", "make_record", "xywh_to_xyxy"]


def xywh_to_xyxy(b: Sequence[float]) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in b)
    return x, y, x + w, y + h


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}; got {fmt!r}")
    return fmt


def format_boxes(
    fmt: str,
    boxes_xywh: Sequence[Sequence[float]],
    labels: Sequence[str] | None,
    width: int,
    height: int,
) -> str:
    """The text for a list of boxes in dialect ``fmt`` (empty list allowed).

    ``labels=None`` writes bare boxes (a box referred to in a question, a grounding answer).
    """
    check_format(fmt)
    xyxy = [xywh_to_xyxy(b) for b in boxes_xywh]
    if labels is None:
        labels = [None] * len(xyxy)
    if fmt == "qwen":
        items = [
            {"bbox_2d": [round(x1), round(y1), round(x2), round(y2)]}
            | ({"label": lab} if lab else {})
            for (x1, y1, x2, y2), lab in zip(xyxy, labels, strict=True)
        ]
        return "```json\n" + json.dumps(items) + "\n```"
    if fmt == "llava":
        parts = [
            (f"{lab}: " if lab else "")
            + f"[{x1 / width:.3f}, {y1 / height:.3f}, {x2 / width:.3f}, {y2 / height:.3f}]"
            for (x1, y1, x2, y2), lab in zip(xyxy, labels, strict=True)
        ]
        return "; ".join(parts)
    groups: dict[str | None, list[str]] = {}
    for (x1, y1, x2, y2), lab in zip(xyxy, labels, strict=True):
        q = [round(1000 * x1 / width), round(1000 * y1 / height)]
        q += [round(1000 * x2 / width), round(1000 * y2 / height)]
        groups.setdefault(lab, []).append("[" + ", ".join(str(min(1000, v)) for v in q) + "]")
    return "".join(
        (f"<ref>{lab}</ref>" if lab else "") + f"<box>[{', '.join(bs)}]</box>"
        for lab, bs in groups.items()
    )


def make_record(
    fmt: str, rec_id: str, image: str, turns: Sequence[tuple[str, str]], meta: dict
) -> dict:
    """One JSONL record; ``turns`` = [(question, answer), ...]; the image token opens turn 1."""
    check_format(fmt)
    if fmt == "qwen":
        msgs = []
        for k, (q, a) in enumerate(turns):
            msgs.append({"role": "user", "content": (IMAGE_TOKEN if k == 0 else "") + q})
            msgs.append({"role": "assistant", "content": a})
        return {"id": rec_id, "images": [image], "messages": msgs, "meta": meta}
    conv = []
    for k, (q, a) in enumerate(turns):
        conv.append({"from": "human", "value": (IMAGE_TOKEN + "\n" if k == 0 else "") + q})
        conv.append({"from": "gpt", "value": a})
    return {"id": rec_id, "image": image, "conversations": conv, "meta": meta}
