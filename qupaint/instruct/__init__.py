"""QMat-Instruct (QuPAINT Sec. 4.3): physics-aware instruction corpus from COCO annotations.

``build_corpus(coco_json, images_dir, out_path, formats=("llava",))`` or
``qupaint instruct --coco annotations.json --out corpus/``.
"""

from __future__ import annotations

from qupaint.instruct.builder import build_corpus, image_split, merge_corpus
from qupaint.instruct.corpus_io import SPLITS, load_coco
from qupaint.instruct.formats import FORMATS, format_boxes, make_record
from qupaint.instruct.tasks import TASKS, task

__all__ = [
    "FORMATS",
    "SPLITS",
    "TASKS",
    "build_corpus",
    "merge_corpus",
    "format_boxes",
    "image_split",
    "load_coco",
    "make_record",
    "task",
]
