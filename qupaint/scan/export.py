"""Query the flake database and export it in the formats labs already use.

- :func:`query_flakes` (``qupaint flakes``): filter by layers, area, probability, aspect,
  used/favourite; sort by any column.
- :func:`export_csv`, :func:`export_coco` (frames as COCO images, each flake annotated on
  the frame it was best seen in, with ``x_mm``, ``y_mm``, ``area_um2``, ``layers`` and
  ``probability`` as extra fields) and :func:`export_2dmatgmm`: the upload ZIP of
  2DMatGMM-Website, laid out as 2DMatGMM-System writes a scan folder. Units follow that
  project's code (``Utils/etc_functions.reformat_flake_dict``, ``Backend/functions.py``):
  ``position_x``/``position_y`` in mm, ``size`` in um^2, ``max_sidelength`` /
  ``min_sidelength`` in um (the code multiplies pixels by micrometres per pixel),
  ``thickness`` the layer count as a string, ``false_positive_probability`` in [0, 1].
  :func:`read_2dmatgmm` reads such a ZIP back.
- :func:`export_micromanager`: a Micro-Manager 2 position list (``.pos``, the "Micro-Manager
  Property Map" JSON its Stage Position List saves and loads): one position per flake, at
  its centroid in µm on the XY stage, labelled with its id and layer count, so that the
  microscope drives back to each flake.
"""

from __future__ import annotations

import csv
import json
import time
import zipfile
from pathlib import Path

import numpy as np

from qupaint import rle
from qupaint._io import atomic_open, image_bytes, write_json
from qupaint.categories import THICK_MIN_LAYERS

__all__ = [
    "SORT_KEYS",
    "export",
    "export_2dmatgmm",
    "export_coco",
    "csv_cell",
    "export_csv",
    "EXPORT_FORMATS",
    "export_micromanager",
    "micromanager_positions",
    "flake_conditions",
    "flake_page",
    "query_flakes",
    "read_2dmatgmm",
    "row_dict",
]

#: what ``--sort`` accepts: (column, descending)
SORT_KEYS = {"area": ("area_um2", True), "probability": ("probability", True),
             "layers": ("layers", False), "aspect": ("aspect", False), "id": ("id", False),
             "x": ("x_mm", False), "y": ("y_mm", False)}  # fmt: skip
CSV_FIELDS = [
    "id",
    "chip",
    "scan_id",
    "image",
    "material",
    "layers",
    "category",
    "probability",
    "area_um2",
    "aspect",
    "max_side_um",
    "min_side_um",
    "contrast_r",
    "contrast_g",
    "contrast_b",
    "x_mm",
    "y_mm",
    "views",
    "clipped",
    "used",
    "favourite",
    "note",
]


def flake_conditions(layers=None, min_area_um2: float = 0.0, max_area_um2: float | None = None,
                     min_probability: float = 0.0, max_aspect: float | None = None,
                     thin_only: bool = False, used: bool | None = None,
                     favourite: bool | None = None, chip: str | None = None,
                     material: str | None = None) -> list:  # fmt: skip
    """The SQL conditions of a flake filter (``layers``: one count or a collection)."""
    from qupaint.scan.db import Chip, Flake

    conds = [Flake.area_um2 >= min_area_um2, Flake.probability >= min_probability]
    if layers is not None:
        ls = [int(layers)] if np.isscalar(layers) else [int(v) for v in layers]
        conds.append(Flake.layers.in_(ls))
    if thin_only:
        conds.append(Flake.layers < THICK_MIN_LAYERS)
    if max_area_um2 is not None:
        conds.append(Flake.area_um2 <= max_area_um2)
    if max_aspect is not None:
        conds.append(Flake.aspect <= max_aspect)
    if used is not None:
        conds.append(Flake.used == used)
    if favourite is not None:
        conds.append(Flake.favourite == favourite)
    if chip is not None:
        conds.append(Chip.name == chip)
    if material is not None:
        conds.append(Flake.material == material)
    return conds


def flake_page(session, sort: str = "area", offset: int = 0, limit: int | None = None,
               **filters) -> tuple[int, list[dict]]:  # fmt: skip
    """(number of flakes that pass ``filters``, the rows ``offset`` to ``offset + limit``
    in ``sort`` order) on an open session."""
    from sqlalchemy import func, select

    from qupaint.scan.db import Chip, Flake, Image

    if sort not in SORT_KEYS:
        raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)}; got {sort!r}")
    conds = flake_conditions(**filters)
    count = select(func.count(Flake.id)).select_from(Flake)
    if filters.get("chip") is not None:
        count = count.join(Chip, Flake.chip_id == Chip.id)
    total = int(session.scalar(count.where(*conds)))
    col, desc = SORT_KEYS[sort]
    c = getattr(Flake, col)
    q = (select(Flake, Chip.name, Image.file).join(Chip, Flake.chip_id == Chip.id)
         .join(Image, Flake.image_id == Image.id).where(*conds)
         .order_by(c.desc() if desc else c, Flake.id).offset(int(offset)))  # fmt: skip
    if limit is not None:
        q = q.limit(int(limit))
    return total, [row_dict(f, name, file) for f, name, file in session.execute(q).all()]


def query_flakes(db, sort: str = "area", limit: int | None = None, **filters) -> list[dict]:
    """Flakes of database ``db`` as dicts (the :data:`CSV_FIELDS`), filtered
    (:func:`flake_conditions`) and sorted (:data:`SORT_KEYS`)."""
    from qupaint.scan.db import reading

    with reading(db) as s:
        _, out = flake_page(s, sort=sort, limit=limit, **filters)
    return out


def row_dict(f, chip: str, file: str) -> dict:
    """One flake row as the CSV, ``qupaint flakes`` and the web API show it."""
    return {"id": f.id, "chip": chip, "scan_id": f.scan_id, "image": file,
            "material": f.material, "layers": f.layers, "category": f.category,
            "probability": round(f.probability, 4), "area_um2": round(f.area_um2, 2),
            "aspect": round(f.aspect, 3), "max_side_um": round(f.max_side_um, 2),
            "min_side_um": round(f.min_side_um, 2), "contrast_r": round(f.contrast_r, 5),
            "contrast_g": round(f.contrast_g, 5), "contrast_b": round(f.contrast_b, 5),
            "x_mm": round(f.x_mm, 6), "y_mm": round(f.y_mm, 6), "views": f.views,
            "clipped": bool(f.clipped), "used": bool(f.used), "favourite": bool(f.favourite),
            "note": f.note or ""}  # fmt: skip


#: what a spreadsheet takes for the start of a formula in a text cell
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """A value as a CSV cell a spreadsheet shows as text: a text cell that would start a
    formula (``=``, ``+``, ``-``, ``@``, tab, carriage return) gets a leading ``'``, as
    OWASP advises against CSV injection; numbers are kept.

    >>> csv_cell("=HYPERLINK(1)"), csv_cell("fine"), csv_cell(-0.25)
    ("'=HYPERLINK(1)", 'fine', -0.25)
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def export_csv(db, path: str | Path, **filters) -> int:
    rows = query_flakes(db, **filters)
    with atomic_open(path, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        wr.writeheader()
        wr.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)
    return len(rows)


def _frames(db, flake_ids: list[int]) -> tuple[dict, dict, dict]:
    """(flake rows by id, their frames by image id, scan directory and scale by scan id)."""
    from sqlalchemy import select

    from qupaint.scan.db import Chip, Flake, Image, Scan, reading

    with reading(db) as s:
        flakes = {f.id: f for f in s.scalars(select(Flake).where(Flake.id.in_(flake_ids)))}
        images = {i.id: i for i in s.scalars(select(Image).where(
            Image.id.in_({f.image_id for f in flakes.values()})))}  # fmt: skip
        scans = {}
        for sc, chip in s.execute(select(Scan, Chip).join(Chip, Scan.chip_id == Chip.id)).all():
            scans[sc.id] = {"directory": Path(sc.directory), "um": chip.um_per_px,
                            "chip": chip.name, "oxide_nm": chip.oxide_nm, "user": sc.user,
                            "started": sc.started, "material": chip.material}  # fmt: skip
    return flakes, images, scans


def frame_mask(f, img, um: float) -> tuple[np.ndarray, int, int]:
    """Flake row ``f``'s mask on its frame ``img`` (an image row): ([H, W] bool, the
    frame's corner x, y on the chip grid); the part outside the frame is cut off."""
    from qupaint.scan.db import frame_corner

    fx, fy = frame_corner(img.x_mm, img.y_mm, img.width, img.height, um)
    full = np.zeros((img.height, img.width), bool)
    m = rle.from_counts(f.mask_rle, f.mask_h, f.mask_w)
    x, y = f.mask_x - fx, f.mask_y - fy
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(img.width, x + f.mask_w), min(img.height, y + f.mask_h)
    if x1 > x0 and y1 > y0:
        full[y0:y1, x0:x1] = m[y0 - y : y1 - y, x0 - x : x1 - x]
    return full, fx, fy


def export_coco(db, path: str | Path, **filters) -> dict:
    from qupaint.categories import CATEGORIES

    rows = query_flakes(db, **filters)
    flakes, images, scans = _frames(db, [r["id"] for r in rows])
    coco_images, anns, seen = [], [], {}
    for r in rows:
        f = flakes[r["id"]]
        img = images[f.image_id]
        if img.id not in seen:
            seen[img.id] = len(coco_images) + 1
            coco_images.append({"id": seen[img.id], "file_name": img.file, "width": img.width,
                                "height": img.height, "x_mm": img.x_mm, "y_mm": img.y_mm,
                                "scan_id": img.scan_id})  # fmt: skip
        m, _, _ = frame_mask(f, img, scans[f.scan_id]["um"])
        seg = rle.encode(m)
        ys, xs = np.nonzero(m)
        bbox = ([float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                 float(ys.max() - ys.min() + 1)] if len(xs) else [0.0, 0.0, 0.0, 0.0])  # fmt: skip
        anns.append({"id": len(anns) + 1, "image_id": seen[img.id], "category_id": f.category,
                     "bbox": bbox, "area": float(m.sum()), "iscrowd": 0,
                     "segmentation": {"size": [img.height, img.width],
                                      "counts": seg["counts"]},
                     "score": f.probability, "layers": f.layers, "flake_id": f.id,
                     "x_mm": f.x_mm, "y_mm": f.y_mm, "area_um2": f.area_um2,
                     "material": f.material})  # fmt: skip
    coco = {"info": {"description": "qupaint scan export", "date_created":
                     time.strftime("%Y-%m-%d %H:%M:%S")},
            "images": coco_images, "annotations": anns,
            "categories": [dict(c) for c in CATEGORIES]}  # fmt: skip
    write_json(path, coco)
    return coco


def _entropy(grey: np.ndarray) -> float:
    """Shannon entropy (bits) of the 8-bit grey values under a flake's mask."""
    if grey.size == 0:
        return 0.0
    p = np.bincount(grey.ravel(), minlength=256).astype(float)
    p = p[p > 0] / grey.size
    return float(-(p * np.log2(p)).sum())


def export_2dmatgmm(db, path: str | Path, user: str = "qupaint", magnification: int = 20,
                    **filters) -> int:  # fmt: skip
    """The 2DMatGMM-Website upload ZIP of the selected flakes (default: thin ones); see the
    module doc. Returns the number of flakes written."""
    from qupaint._io import read_rgb
    from qupaint.detect.draw import CATEGORY_COLORS, outline_labels

    filters.setdefault("thin_only", True)
    filters.setdefault("sort", "id")
    rows = query_flakes(db, **filters)
    flakes, images, scans = _frames(db, [r["id"] for r in rows])
    chips: dict[str, int] = {}
    count: dict[int, int] = {}
    first = scans[flakes[rows[0]["id"]].scan_id] if rows else None
    meta = {
        "scan_name": Path(path).stem, "scan_user": (first or {}).get("user") or user,
        "scan_time": (first["started"].timestamp() if first else time.time()),
        "scan_exfoliated_material": (first or {}).get("material", ""),
        "chip_thickness": (f"{first['oxide_nm']:.0f}nm" if first and first["oxide_nm"]
                           else "unknown"),
        "scan_magnification": magnification, "scan_comment": "exported by qupaint",
        "size_threshold": filters.get("min_area_um2", 0.0),
    }  # fmt: skip
    cache: dict[int, np.ndarray] = {}
    with atomic_open(path, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as z:
        z.writestr("meta.json", json.dumps(meta, indent=4, sort_keys=True))
        for r in rows:
            f = flakes[r["id"]]
            sc = scans[f.scan_id]
            chip_no = chips.setdefault(sc["chip"], len(chips) + 1)
            count[chip_no] = count.get(chip_no, 0) + 1
            folder = f"Chip_{chip_no}/Flake_{count[chip_no]}"
            img = images[f.image_id]
            if img.id not in cache:
                cache.clear()  # flakes come by id: frames are mostly in order
                cache[img.id] = read_rgb(sc["directory"] / img.file)
            rgb = cache[img.id]
            m, _, _ = frame_mask(f, img, sc["um"])
            grey = rgb.mean(axis=2).astype(np.uint8)[m]
            flake = {
                "chip_id": chip_no, "position_x": round(f.x_mm, 5),
                "position_y": round(f.y_mm, 5), "size": round(f.area_um2, 3),
                "thickness": str(f.layers), "entropy": round(_entropy(grey), 5),
                "aspect_ratio": round(f.aspect, 3), "max_sidelength": round(f.max_side_um, 3),
                "min_sidelength": round(f.min_side_um, 3),
                "mean_contrast_r": round(f.contrast_r, 5),
                "mean_contrast_g": round(f.contrast_g, 5),
                "mean_contrast_b": round(f.contrast_b, 5),
                "false_positive_probability": round(1.0 - f.probability, 5),
                "path": f"{meta['scan_name']}/{folder}",
                # qupaint's own (the website ignores unknown keys)
                "qupaint_id": f.id, "used": bool(f.used), "favorite": bool(f.favourite),
                "note": f.note or "",
            }  # fmt: skip
            z.writestr(
                f"{folder}/meta.json",
                json.dumps({"flake": flake, "images": {}}, indent=4, sort_keys=True),
            )
            z.writestr(f"{folder}/{magnification}x.jpg", image_bytes(rgb, "JPEG", quality=90))
            z.writestr(
                f"{folder}/flake_mask.png",
                image_bytes(m.astype(np.uint8) * 255, "PNG", optimize=True),
            )
            marked = outline_labels(rgb, m.astype(np.int32), CATEGORY_COLORS[f.category])
            z.writestr(f"{folder}/eval_img.jpg", image_bytes(marked, "JPEG", quality=90))
    return len(rows)


def read_2dmatgmm(path: str | Path) -> dict:
    """A 2DMatGMM upload ZIP as ``{"meta": scan meta, "flakes": [flake dicts with their
    "folder"]}`` (the fields the website's upload reads, and any others)."""
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        if "meta.json" not in names:
            raise ValueError(f"{path}: no meta.json at the top (not a 2DMatGMM scan ZIP)")
        meta = json.loads(z.read("meta.json"))
        flakes = []
        for n in sorted(names):
            parts = n.split("/")
            if len(parts) == 3 and parts[2] == "meta.json" and parts[0].startswith("Chip"):
                d = json.loads(z.read(n))
                flakes.append({**d["flake"], "folder": f"{parts[0]}/{parts[1]}",
                               "images": d.get("images", {})})  # fmt: skip
    return {"meta": meta, "flakes": flakes}


#: the formats of :func:`export`
EXPORT_FORMATS = ("2dmatgmm", "coco", "csv", "micromanager")


def micromanager_positions(rows: list[dict], xy_stage: str = "XYStage") -> dict:
    """The Micro-Manager 2 position list (a "Micro-Manager Property Map") of flake
    ``rows`` (:func:`query_flakes`' dicts): one ``StagePositions`` entry per flake, its
    ``XYStage`` device at the flake's centroid in µm, labelled ``flake <id> (<n> L)``.

    Examples
    --------
    >>> pl = micromanager_positions([{"id": 7, "layers": 1, "x_mm": 1.5, "y_mm": -0.25}])
    >>> pos = pl["map"]["StagePositions"]["array"][0]
    >>> pos["Label"]["scalar"], pos["DevicePositions"]["array"][0]["Position_um"]["array"]
    ('flake 7 (1 L)', [1500.0, -250.0])
    """

    def prop(kind: str, value):
        return {"type": kind, "array" if isinstance(value, list) else "scalar": value}

    entries = []
    for k, r in enumerate(rows):
        xy = prop("DOUBLE", [round(float(r["x_mm"]) * 1000.0, 3),
                             round(float(r["y_mm"]) * 1000.0, 3)])  # fmt: skip
        entries.append({
            "DefaultXYStage": prop("STRING", xy_stage),
            "DefaultZStage": prop("STRING", ""),
            "DevicePositions": prop("PROPERTY_MAP", [{"Device": prop("STRING", xy_stage),
                                                      "Position_um": xy}]),
            "GridCol": prop("INTEGER", 0),
            "GridRow": prop("INTEGER", k),
            "Label": prop("STRING", f"flake {r['id']} ({r['layers']} L)"),
            "Properties": {"type": "PROPERTY_MAP", "scalar": {}},
        })  # fmt: skip
    return {"encoding": "UTF-8", "format": "Micro-Manager Property Map", "major_version": 2,
            "minor_version": 0,
            "map": {"StagePositions": {"type": "PROPERTY_MAP", "array": entries}}}  # fmt: skip


def export_micromanager(db, path: str | Path, xy_stage: str = "XYStage", **filters) -> int:
    """The filtered flakes of ``db`` as a Micro-Manager 2 position list at ``path``
    (:func:`micromanager_positions`), written atomically; returns how many."""
    rows = query_flakes(db, **filters)
    write_json(path, micromanager_positions(rows, xy_stage))
    return len(rows)


def export(db, fmt: str, out: str | Path, **filters):
    """``qupaint export``: ``fmt`` is one of :data:`EXPORT_FORMATS`."""
    fmt = fmt.lower()
    if fmt == "2dmatgmm":
        return export_2dmatgmm(db, out, **filters)
    if fmt == "coco":
        return len(export_coco(db, out, **filters)["annotations"])
    if fmt == "csv":
        return export_csv(db, out, **filters)
    if fmt == "micromanager":
        return export_micromanager(db, out, **filters)
    raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}; got {fmt!r}")
