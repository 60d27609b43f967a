"""How boxes and conversations are written in each instruction format.

One place defines the three on-disk dialects (and ``qupaint.instruct.parse`` inverts them):

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

from collections.abc import Sequence

FORMATS = ("llava", "internvl", "qwen")
IMAGE_TOKEN = "<image>"

__all__ = [
    "FORMATS",
    "IMAGE_TOKEN",
    "box_coords",
    "format_boxes",
    "join_boxes",
    "make_record",
    "xywh_to_xyxy",
]


def xywh_to_xyxy(b: Sequence[float]) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in b)
    return x, y, x + w, y + h


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}; got {fmt!r}")
    return fmt


def box_coords(fmt: str, bbox_xywh: Sequence[float], width: int, height: int) -> str:
    """The coordinate text of one box in dialect ``fmt`` (no label)."""
    x, y, w, h = bbox_xywh
    if fmt == "qwen":
        return f"[{round(x)}, {round(y)}, {round(x + w)}, {round(y + h)}]"
    if fmt == "llava":
        return f"[{x / width:.3f}, {y / height:.3f}, {(x + w) / width:.3f}, {(y + h) / height:.3f}]"
    sx, sy = 1000 / width, 1000 / height
    q = (
        round(sx * x),
        round(sy * y),
        min(1000, round(sx * (x + w))),
        min(1000, round(sy * (y + h))),
    )
    return f"[{q[0]}, {q[1]}, {q[2]}, {q[3]}]"


def join_boxes(fmt: str, coords: Sequence[str], labels: Sequence[str | None]) -> str:
    """Assemble per-box coordinate texts (:func:`box_coords`) and labels into an answer."""
    if fmt == "qwen":
        items = [
            f'{{"bbox_2d": {c}' + (f', "label": "{lab}"}}' if lab else "}")
            for c, lab in zip(coords, labels, strict=True)
        ]
        return "```json\n[" + ", ".join(items) + "]\n```"
    if fmt == "llava":
        return "; ".join(
            (f"{lab}: " if lab else "") + c for c, lab in zip(coords, labels, strict=True)
        )
    groups: dict[str | None, list[str]] = {}
    for c, lab in zip(coords, labels, strict=True):
        groups.setdefault(lab, []).append(c)
    return "".join(
        (f"<ref>{lab}</ref>" if lab else "") + f"<box>[{', '.join(bs)}]</box>"
        for lab, bs in groups.items()
    )


def format_boxes(
    fmt: str,
    boxes_xywh: Sequence[Sequence[float]],
    labels: Sequence[str] | None,
    width: int,
    height: int,
) -> str:
    """The text for a list of boxes in dialect ``fmt`` (empty list allowed).

    ``labels=None`` writes bare boxes (a box referred to in a question, a grounding answer).

    >>> format_boxes("internvl", [[10, 20, 30, 40]], ["Mono"], 100, 200)
    '<ref>Mono</ref><box>[[100, 100, 400, 300]]</box>'
    >>> format_boxes("qwen", [[10, 20, 30, 40]], None, 100, 200)
    '```json\\n[{"bbox_2d": [10, 20, 40, 60]}]\\n```'
    """
    check_format(fmt)
    coords = [box_coords(fmt, b, width, height) for b in boxes_xywh]
    return join_boxes(fmt, coords, labels if labels is not None else [None] * len(coords))


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
