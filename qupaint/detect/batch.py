"""Batch flake hunting: the physics detector over a folder of chip images, resumable and
parallel, with outputs a lab can act on.

Layout of ``out_dir``::

    detections/<stem>.json   per image: COCO image + annotations (RLE masks, boxes, layers,
                             contrast, area in um^2 when the scale is given), the oxide
                             used and the settings; written last, so it marks the image done
    overlays/<stem>.png      the image with each flake outlined and labelled
    thumbs/<stem>_<k>.png    a thumbnail per monolayer / few-layer candidate
    flakes.csv               every flake of every image, one row each
    report.html              thin-flake candidates ranked by score, with outlined thumbnails
    summary.json             counts, failed images and why, the settings

Every file is written atomically. Re-running the same command skips images whose
detections exist for the same settings; an unreadable or truncated image is reported in
``summary.json`` and skipped, and nothing else is lost.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import html
import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qupaint._io import IMAGE_EXTS, atomic_open, atomic_write_bytes, image_bytes, write_json
from qupaint._pool import run_tasks
from qupaint.categories import CATEGORY_NAMES, MONO, THICK_MIN_LAYERS
from qupaint.detect.config import DetectorSettings
from qupaint.detect.job import DetectJob

__all__ = ["find_images", "detect_batch"]


#: the folder one image's results go to without ``--out`` (``<stem>_qupaint``)
RESULTS_SUFFIX = "_qupaint"
#: names of image files qupaint writes (overlays, predictions), never read back as input
_WRITTEN_STEMS = ("_detections", "_pred")


def written_by_qupaint(path: str | os.PathLike) -> bool:
    """Whether an image file is one qupaint wrote: a ``<stem>_detections`` or ``<stem>_pred``
    picture, anything in a ``<stem>_qupaint`` results folder, or an overlay or thumbnail of
    a results folder (one holding ``summary.json``). Batch readers skip them, so that a
    second run over a folder does not take the first run's pictures for micrographs.

    >>> written_by_qupaint("chips/a_detections.png"), written_by_qupaint("chips/a.png")
    (True, False)
    >>> written_by_qupaint("chips/a_qupaint/overlays/a.png")
    True
    """
    p = Path(path)
    if p.stem.endswith(_WRITTEN_STEMS):
        return True
    if any(d.name.endswith(RESULTS_SUFFIX) for d in p.parents):
        return True
    return p.parent.name in ("overlays", "thumbs") and (p.parent.parent / "summary.json").is_file()


def find_images(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Image files from paths, folders (their images, sorted) and glob patterns; images that
    qupaint wrote (:func:`written_by_qupaint`) are skipped unless named one by one."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(
                f
                for f in p.iterdir()
                if f.suffix.lower() in IMAGE_EXTS and not written_by_qupaint(f)
            )
        elif p.is_file():
            out.append(p)
        else:
            hits = sorted(Path(h) for h in glob.glob(str(item), recursive=True)
                          if Path(h).is_file())  # fmt: skip
            if not hits:
                raise ValueError(f"inputs: {str(item)!r} is no image, folder or matching glob")
            out += [h for h in hits if h.suffix.lower() in IMAGE_EXTS
                    and not written_by_qupaint(h)]  # fmt: skip
    seen, unique = set(), []
    for f in out:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f)
    if not unique:
        raise ValueError("inputs: no image files found (PNG, JPEG, TIFF or BMP)")
    return unique


def _stem(path: Path, taken: dict) -> str:
    """A unique output name per input (same stems in different folders get a suffix)."""
    s = path.stem
    if s in taken and taken[s] != path:
        s = f"{s}-{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:6]}"
    taken[s] = path
    return s


_JOB: dict = {}


def _init(job: DetectJob, out_dir: str, settings_key: str) -> None:
    global _JOB
    from qupaint import _C

    _C.set_num_threads(1)
    _JOB = {"job": job, "out_dir": out_dir, "settings_key": settings_key}


def _one(task: tuple[int, str, str]) -> dict:
    """Detect in one image and write its files; returns a summary row (an unreadable image
    gives a row with its ``error`` instead of raising)."""
    from qupaint.detect.draw import draw_detections, outline_labels
    from qupaint.rle import decode as decode_rle

    image_id, path, stem = task
    job, out = _JOB["job"], Path(_JOB["out_dir"])
    got = job(path, image_id)
    if got.error is not None:
        return {"image": path, "error": f"cannot read the image: {got.error}"}
    img, ladder, given = got.image, got.result.ladder, job.settings.oxide_given
    rejected = dict(Counter(r["rejected"] for r in got.result.rejected))
    oxide_info: dict[str, Any] = {
        "nm": ladder.oxide_nm,
        "source": "given" if given else "flakes",
        "response": [round(float(g), 3) for g in ladder.response],
        "pieces_fitted": ladder.pieces,
        "ambiguous": bool(not given and ladder.pieces == 0),
    }
    dets = list(got.detections)
    for k, d in enumerate(dets, start=1):
        d["id"] = image_id * 100_000 + k
    H, W = img.shape[:2]
    um_per_px = job.settings.um_per_px
    for k, d in enumerate(dets):
        if d["layers"] < THICK_MIN_LAYERS:
            x, y, w, h = (int(round(v)) for v in d["bbox"])
            m = max(8, (w + h) // 4)
            ys = slice(max(0, y - m), min(H, y + h + m))
            xs = slice(max(0, x - m), min(W, x + w + m))
            crop = img[ys, xs]
            outlined = outline_labels(crop, decode_rle(d["segmentation"])[ys, xs])  # its outline
            name = f"thumbs/{stem}_{k}.png"
            atomic_write_bytes(out / name, image_bytes(np.concatenate([crop, outlined], 1)))
            d["thumbnail"] = name
    with atomic_open(out / "overlays" / f"{stem}.png", "wb") as fh:
        draw_detections(img, dets, fh, um_per_px=um_per_px, numbers=True)
    record = {
        "image": {"id": image_id, "file_name": str(path), "height": H, "width": W,
                  "material": job.material},  # fmt: skip
        "annotations": dets,
        "oxide": oxide_info,
        "settings": _JOB["settings_key"],
        "rejected": rejected,
    }
    write_json(out / "detections" / f"{stem}.json", record)
    return {"image": path, "flakes": len(dets), "oxide": oxide_info}


def detect_batch(
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    material: str,
    settings: DetectorSettings | None = None,
    workers: int = 1,
    min_score: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Run the detector on every image of ``inputs`` with ``settings``
    (:meth:`DetectorSettings.from_microscope <qupaint.detect.DetectorSettings.from_microscope>`;
    default: sRGB under D65, the oxide fitted per image) and write the layout above.

    With the oxide not given, it is fitted per image from its flakes together with the
    per-channel response of the camera settings (:func:`qupaint.detect.ladder.fit_ladder`),
    around the settings' oxide prior when there is one (a calibrated camera's chip); the
    fitted oxide and response are recorded per image. Returns the summary (also written to
    ``summary.json``).
    """
    from qupaint.optics import get_material

    files = find_images(inputs)
    get_material(material)  # unknown material: fail before any work
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")
    settings = DetectorSettings.of(settings)
    job = DetectJob(material, settings, min_score, masks=True)
    out = Path(out_dir)
    described = {"material": material, "min_score": min_score, **settings.describe()}
    key = hashlib.sha1(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]
    taken: dict = {}
    tasks, done = [], 0
    for i, f in enumerate(files):
        stem = _stem(f, taken)
        det = out / "detections" / f"{stem}.json"
        if det.is_file():
            try:
                if json.loads(det.read_text()).get("settings") == key:
                    done += 1
                    continue
            except (OSError, json.JSONDecodeError):
                pass  # damaged: redo it
        tasks.append((i + 1, str(f), stem))
    for stray in out.rglob(".*.tmp") if out.is_dir() else ():
        stray.unlink()
    rows: list[dict] = []
    total = len(files)
    if progress:
        progress(done, total)
    for r in run_tasks(_one, tasks, workers, _init, (job, str(out), key), ordered=False):
        rows.append(r)
        done += 1
        if progress:
            progress(done, total)
    return _finish(out, files, taken, rows, described)


def _finish(out: Path, files, taken, rows, settings) -> dict:
    """flakes.csv, report.html and summary.json from every image's detections."""
    failed = [{"image": r["image"], "error": r["error"]} for r in rows if "error" in r]
    records = []
    for stem in sorted(taken, key=lambda k: str(taken[k])):
        det = out / "detections" / f"{stem}.json"
        if det.is_file():
            records.append((stem, json.loads(det.read_text())))
    header = ["image", "flake", "layers", "class", "score", "x", "y", "w", "h", "area_px",
              "area_um2", "C_R", "C_G", "C_B", "fit_sigma", "oxide_nm"]  # fmt: skip
    with atomic_open(out / "flakes.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for _, rec in records:
            for d in rec["annotations"]:
                w.writerow([rec["image"]["file_name"], d["id"], d["layers"],
                            CATEGORY_NAMES[d["category_id"]], f"{d['score']:.4f}",
                            *(f"{v:.1f}" for v in d["bbox"]), d["area"],
                            f"{d['area_um2']:.2f}" if "area_um2" in d else "",
                            *(f"{c:.4f}" for c in d["contrast"]), f"{d['fit_sigma']:.2f}",
                            f"{rec['oxide']['nm']:.1f}"])  # fmt: skip
    _report(out, records)
    ambiguous = [rec["image"]["file_name"] for _, rec in records if rec["oxide"].get("ambiguous")]
    summary = {
        "images": len(files),
        "done": len(records),
        "failed": failed,
        **count_flakes([d for _, rec in records for d in rec["annotations"]]),
        "oxide_ambiguous": ambiguous,
        "settings": settings,
    }
    write_json(out / "summary.json", summary)
    return summary


def count_flakes(dets: Sequence[dict]) -> dict:
    """The one count vocabulary of ``detect``'s command line, ``summary.json`` and report:
    ``flakes`` (every detection), ``thin`` (the thin-flake candidates, 1-5 layers: Mono and
    Few, the report's rows), ``monolayer_candidates`` (Mono) and ``thick``.

    >>> count_flakes([{"layers": 1, "category_id": 1}, {"layers": 3, "category_id": 2},
    ...               {"layers": 9, "category_id": 3}])
    {'flakes': 3, 'thin': 2, 'monolayer_candidates': 1, 'thick': 1}
    """
    thin = sum(d["layers"] < THICK_MIN_LAYERS for d in dets)
    return {"flakes": len(dets), "thin": thin,
            "monolayer_candidates": sum(d.get("category_id") == MONO for d in dets),
            "thick": len(dets) - thin}  # fmt: skip


def flake_counts_line(counts: dict) -> str:
    """``count_flakes``' figures in words, as the command line and the report say them.

    >>> flake_counts_line({'flakes': 3, 'thin': 2, 'monolayer_candidates': 1, 'thick': 1})
    '3 flakes: 2 thin-flake candidates (1 monolayer), 1 thick'
    """
    return (
        f"{counts['flakes']} flakes: {counts['thin']} thin-flake candidates "
        f"({counts['monolayer_candidates']} monolayer), {counts['thick']} thick"
    )


def _report(out: Path, records) -> None:
    counts = count_flakes([d for _, rec in records for d in rec["annotations"]])
    cands = [(d, rec, stem) for stem, rec in records for d in rec["annotations"]
             if d["layers"] < THICK_MIN_LAYERS]  # fmt: skip
    cands.sort(key=lambda t: -t[0]["score"])
    rows = []
    for rank, (d, rec, stem) in enumerate(cands, start=1):
        thumb = d.get("thumbnail")
        img = f'<img src="{html.escape(thumb)}" height="96">' if thumb else ""
        area = f"{d['area_um2']:.1f} &micro;m&sup2;" if "area_um2" in d else f"{d['area']} px"
        name = html.escape(Path(rec["image"]["file_name"]).name)
        rows.append(
            f"<tr><td>{rank}</td><td>{img}</td><td>{d['layers']}</td><td>{d['score']:.2f}</td>"
            f"<td>{area}</td>"
            f"<td>{', '.join(f'{c:+.3f}' for c in d['contrast'])}</td>"
            f'<td><a href="overlays/{html.escape(stem)}.png">{name}</a></td>'
            f"<td>{', '.join(f'{v:.0f}' for v in d['bbox'])}</td></tr>"
        )
    title = "qupaint: thin-flake candidates"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif}} td,th{{padding:4px 8px;border-bottom:1px solid #ddd}}</style>
</head><body><h1>Thin-flake candidates ({len(cands)} in {len(records)} images)</h1>
<p>{html.escape(flake_counts_line(counts))} in all.</p>
<p>Ranked by score (how well the colour fits a thin layer of the fitted ladder x size).
Thumbnails: the flake, and its outline. Contrast C = I/I<sub>sub</sub> - 1, R, G, B.</p>
<table><tr><th>#</th><th>flake</th><th>layers</th><th>score</th><th>area</th><th>contrast</th><th>image</th>
<th>box x, y, w, h</th></tr>
{chr(10).join(rows)}
</table></body></html>
"""
    with atomic_open(out / "report.html", "w", encoding="utf-8") as fh:
        fh.write(page)
