"""Score a scanned virtual chip against its truth (``qupaint eval chip``).

A truth flake part (``truth.csv`` of :func:`qupaint.synthia.chip.render_chip`) is *found*
when a database flake's centroid lies within ``radius_um`` of its centroid; its position
error is that distance. A truth part found by more than one flake row is *counted twice*
(the duplicate merge across frame borders failed). Recall is over the thin parts (fewer
than :data:`~qupaint.categories.THICK_MIN_LAYERS` layers) above ``min_area_um2``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from qupaint.categories import THICK_MIN_LAYERS

__all__ = ["overlapping_rows", "read_truth", "score_chip", "stitch_error"]


def read_truth(folder: str | Path) -> list[dict]:
    path = Path(folder) / "truth.csv"
    if not path.is_file():
        raise ValueError(f"{folder} has no truth.csv (a virtual chip from qupaint synthia chip)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{"material": r["material"], "layers": int(r["layers"]), "x_mm": float(r["x_mm"]),
             "y_mm": float(r["y_mm"]), "area_um2": float(r["area_um2"]),
             "flake_id": int(r["flake_id"])} for r in rows]  # fmt: skip


def score_chip(db, folder: str | Path, min_area_um2: float = 50.0, radius_um: float = 5.0,
               scan_id: int | None = None) -> dict:  # fmt: skip
    """Recall, position error, layer accuracy and double counts of a scan (see the module)."""
    from sqlalchemy import select

    from qupaint.scan.db import Flake, reading

    truth = [t for t in read_truth(folder)
             if t["layers"] < THICK_MIN_LAYERS and t["area_um2"] > min_area_um2]  # fmt: skip
    with reading(db) as s:
        q = select(Flake.x_mm, Flake.y_mm, Flake.layers, Flake.area_um2)
        if scan_id is not None:
            q = q.where(Flake.scan_id == scan_id)
        rows = np.array(s.execute(q).all(), float).reshape(-1, 4)
    found, errors, layers_ok, doubles = 0, [], 0, 0
    for t in truth:
        if len(rows) == 0:
            break
        d_um = np.hypot(rows[:, 0] - t["x_mm"], rows[:, 1] - t["y_mm"]) * 1000.0
        k = int(np.argmin(d_um))
        if d_um[k] <= radius_um:
            found += 1
            errors.append(float(d_um[k]))
            layers_ok += int(rows[k, 2] == t["layers"])
            # another row of the same thickness about this flake: counted twice
            near = d_um <= max(radius_um, 0.5 * np.sqrt(t["area_um2"]))
            doubles += int((near & (rows[:, 2] == rows[k, 2])).sum() > 1)
    n = len(truth)
    return {
        "truth_thin_parts": n,
        "found": found,
        "recall": found / n if n else None,
        "median_position_error_um": float(np.median(errors)) if errors else None,
        "p95_position_error_um": float(np.percentile(errors, 95)) if errors else None,
        "layer_accuracy": layers_ok / found if found else None,
        "counted_twice": doubles,
        "overlapping_rows": overlapping_rows(db, scan_id),
        "flake_rows": len(rows),
        "min_area_um2": min_area_um2,
        "radius_um": radius_um,
    }


def overlapping_rows(db, scan_id: int | None = None, share: float = 0.3) -> int:
    """Pairs of flake rows from different frames whose masks (on the chip's pixel grid)
    overlap by at least ``share`` of the smaller: one flake stored twice."""
    from sqlalchemy import select

    from qupaint.rle import from_counts
    from qupaint.scan.db import Flake, reading

    with reading(db) as s:
        q = select(Flake.image_id, Flake.mask_x, Flake.mask_y, Flake.mask_w, Flake.mask_h,
                   Flake.mask_rle)  # fmt: skip
        if scan_id is not None:
            q = q.where(Flake.scan_id == scan_id)
        rows = s.execute(q).all()
    box = np.array([(r[1], r[2], r[1] + r[3], r[2] + r[4]) for r in rows]).reshape(-1, 4)
    n = 0
    for i in range(len(rows)):
        hit = ((box[:, 0] < box[i, 2]) & (box[:, 2] > box[i, 0]) & (box[:, 1] < box[i, 3])
               & (box[:, 3] > box[i, 1]))  # fmt: skip
        hit[: i + 1] = False
        others = [j for j in np.nonzero(hit)[0] if rows[j][0] != rows[i][0]]
        a = from_counts(rows[i][5], rows[i][4], rows[i][3]) if others else None
        for j in others:
            b = from_counts(rows[j][5], rows[j][4], rows[j][3])
            x0, y0 = max(box[i, 0], box[j, 0]), max(box[i, 1], box[j, 1])
            x1, y1 = min(box[i, 2], box[j, 2]), min(box[i, 3], box[j, 3])
            sa = a[y0 - box[i, 1] : y1 - box[i, 1], x0 - box[i, 0] : x1 - box[i, 0]]
            sb = b[y0 - box[j, 1] : y1 - box[j, 1], x0 - box[j, 0] : x1 - box[j, 0]]
            n += int((sa & sb).sum() >= share * min(a.sum(), b.sum()))
    return n


def stitch_error(fitted: dict[str, tuple[float, float]], folder: str | Path,
                 um_per_px: float) -> dict:  # fmt: skip
    """Pixel error of fitted frame centres against ``stage_truth.csv`` (after removing the
    common offset, which no stitching can know): median, 95th percentile, max."""
    with open(Path(folder) / "stage_truth.csv", newline="") as f:
        true = {r["file"]: (float(r["x_mm"]), float(r["y_mm"])) for r in csv.DictReader(f)}
    keys = [k for k in fitted if k in true]
    if not keys:
        raise ValueError("no fitted frame is in stage_truth.csv")
    a = np.array([fitted[k] for k in keys]) * 1000.0 / um_per_px
    b = np.array([true[k] for k in keys]) * 1000.0 / um_per_px
    d = (a - b) - np.median(a - b, axis=0)
    err = np.hypot(d[:, 0], d[:, 1])
    return {"frames": len(keys), "median_px": float(np.median(err)),
            "p95_px": float(np.percentile(err, 95)), "max_px": float(err.max())}  # fmt: skip
