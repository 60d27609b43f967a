"""Where a QF-Bench image lives on disk: the one home of the benchmark's file layout, shared by
the builder (:mod:`qupaint.bench.qfbench`) and the model scorer
(:mod:`qupaint.bench.model_eval`)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["resolve_image"]


def resolve_image(root: Path, im: dict) -> Path:
    """Path of a COCO image: ``root/file_name``, else the released QF-Bench layout
    ``root/materials/<material>/<file_name>``, else a unique match under ``root/materials``."""
    p = root / im["file_name"]
    if p.is_file():
        return p
    name = Path(im["file_name"]).name
    if im.get("material"):
        q = root / "materials" / im["material"] / name
        if q.is_file():
            return q
    hits = sorted((root / "materials").glob(f"*/{name}")) if (root / "materials").is_dir() else []
    if len(hits) == 1:
        return hits[0]
    raise ValueError(f"image {im['file_name']!r} not found under {root} (nor materials/*/)")
