"""QF-Bench (QuPAINT Sec. 6, 11): metrics, answer parsing, the benchmark builder and a
training-free physics detector."""

from __future__ import annotations

from qupaint.bench.metrics import box_iou_xywh, evaluate_detection, evaluate_grounding
from qupaint.instruct.parse import Answer, parse_answer, parse_answers

__all__ = [
    "Answer",
    "box_iou_xywh",
    "evaluate_detection",
    "evaluate_grounding",
    "parse_answer",
    "parse_answers",
]
