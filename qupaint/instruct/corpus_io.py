"""QMat-Instruct file I/O: reading COCO input, writing the JSONL corpus and its summary.

Output layout (``out_dir``)::

    <format>/train.jsonl, <format>/val.jsonl, <format>/test.jsonl
    summary.json      counts per task, split, material and category; the build settings

Every file is streamed to a temporary name and renamed when complete
(:func:`qupaint._io.atomic_open`), so an interrupted build leaves no partial corpus.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from qupaint._io import atomic_open, json_loads

__all__ = ["SPLITS", "load_coco", "open_outputs"]

SPLITS = ("train", "val", "test")


def load_coco(coco_json: str | os.PathLike) -> dict:
    """Read a COCO file and check the keys the corpus needs."""
    path = Path(coco_json)
    if not path.is_file():
        raise ValueError(f"coco_json: no such file {str(path)!r}")
    coco = json_loads(path.read_bytes())
    for key in ("images", "annotations", "categories"):
        if key not in coco:
            raise ValueError(f"coco_json: {path} has no {key!r} key; is it a COCO detection file?")
    return coco


def open_outputs(stack: contextlib.ExitStack, out_dir: Path, formats: Sequence[str]) -> dict:
    """``{(format, split): text file}`` for the corpus, each renamed into place when
    ``stack`` closes without an error (and discarded otherwise)."""
    return {
        (fmt, split): stack.enter_context(
            atomic_open(out_dir / fmt / f"{split}.jsonl", "w", buffering=1 << 20)
        )
        for fmt in formats
        for split in SPLITS
    }
