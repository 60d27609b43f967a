"""The demo's real chips: the flake detector on the real micrographs shipped with the
package, and a chip scan of a virtual chip into a flake database, map and exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qupaint._io import read_mask, read_rgb, write_json
from qupaint.constants import MIN_SCORE
from qupaint.demo.files import save_fig, write_rows

__all__ = ["REAL_DIR", "chip_scan", "real_micrographs"]


#: the few real images shipped for the demo (sources and licences in their README)
REAL_DIR = Path(__file__).parent.parent / "data" / "real"


def real_micrographs(out: Path, log=None) -> list[Path]:
    """The flake detector on real micrographs with ``qupaint detect``'s defaults (the
    calibrated ``2dmatgmm`` camera, the microscope these images were taken with).

    1. Two real WS2 / MoSe2 chips in batch mode: overlays, COCO JSON with masks, flakes.csv
       and report.html (thin candidates ranked, outlined thumbnails) under ``real/chips/``.
    2. Two windows of expert-masked whole GrapheneH micrographs (a white-balanced one with
       18 thin flakes beside bulk crystals, a purple one with a monolayer among dust
       specks): ``real_flakes.png`` draws the expert's flakes (green) and the detections
       (red: thin, with rank and area), ``real_flakes.csv`` lists every thin detection with
       whether it is an expert's flake.
    """

    from qupaint.bench.metrics import box_iou_xywh
    from qupaint.bench.real import mask_boxes, score_real
    from qupaint.detect import DetectorSettings, detect
    from qupaint.detect.batch import detect_batch, flake_counts_line
    from qupaint.detect.draw import outline_labels

    settings = DetectorSettings.from_microscope("2dmatgmm")  # as `qupaint detect` takes it
    paths = []
    for mat in ("WS2", "MoSe2"):
        s = detect_batch([REAL_DIR / f"{mat}_chip.jpg"], out / "real" / "chips" / mat, mat,
                         settings, min_score=MIN_SCORE)  # fmt: skip
        if log:
            log(f"real {mat} chip: {flake_counts_line(s)}")
    paths.append(out / "real" / "chips")
    panels, rows, gts, all_dets = [], [], [], []
    for name in ("GrapheneH_grey", "GrapheneH_purple"):
        img = read_rgb(REAL_DIR / "whole" / f"{name}.jpg")
        mask = read_mask(REAL_DIR / "whole" / f"{name}_mask.png")
        gt = mask_boxes(mask)
        dets = [d for d in detect(img, "graphene", settings, masks=True)
                if d["score"] >= MIN_SCORE and d["layers"] <= 5]  # fmt: skip
        gts.append(gt)
        all_dets.append(dets)
        panel = outline_labels(img, mask, (40, 220, 40))
        for rank, d in enumerate(dets, start=1):
            iou = float(box_iou_xywh(np.asarray(d["bbox"])[None], gt).max()) if len(gt) else 0.0
            rows.append([name, rank, d["layers"], f"{d['score']:.3f}", f"{d['area_um2']:.1f}",
                         ",".join(f"{v:.0f}" for v in d["bbox"]), f"{iou:.2f}",
                         "yes" if iou >= 0.5 else "no"])  # fmt: skip
        panels.append((name, panel, dets))
    write_rows(out / "real_flakes.csv", ["image", "rank", "layers", "score", "area_um2",
                                          "bbox", "best_iou", "expert_flake"], rows)  # fmt: skip
    _plot_real(panels, out / "real_flakes.png")
    r = score_real(gts, all_dets)
    if log:
        top = [float(row[4]) for row in rows if int(row[1]) <= 5]
        log(f"expert-masked real chips: {r['found']}/{r['flakes']} thin flakes found, "
            f"{r['unmatched_per_image']:.1f} unmatched per image; the top-5 candidates of each "
            f"are {min(top):.0f}-{max(top):.0f} um^2 (no dust)")  # fmt: skip
    return paths + [out / "real_flakes.png", out / "real_flakes.csv"]


def _plot_real(panels, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 7.4),
                             constrained_layout=True)  # fmt: skip
    for ax, (name, img, dets) in zip(np.atleast_1d(axes), panels, strict=True):
        ax.imshow(img)
        for rank, d in enumerate(dets, start=1):
            x, y, w, h = d["bbox"]
            ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, color="red", lw=1.2))
            # the rank alone (layers, area and score are its row of real_flakes.csv), inside
            # the box's corner on a pale ground, so that neighbours' labels stay legible
            ax.text(x + 2, y + 2, str(rank), color="red", fontsize=8, va="top", ha="left",
                    clip_on=True, bbox={"boxstyle": "square,pad=0.1", "fc": "white",
                                        "ec": "none", "alpha": 0.7})  # fmt: skip
        ax.set_title(f"{name}\nexpert's thin flakes (green); detections (red), numbered as "
                     "the rows of real_flakes.csv", fontsize=10)  # fmt: skip
        ax.axis("off")
    save_fig(fig, path)


def chip_scan(out: Path, log=None) -> list[Path]:
    """A chip scan end to end on a small virtual chip (3 x 3 frames of 960 x 600 px with
    stage jitter): ``qupaint synthia chip`` -> ``qupaint scan`` (flake database with stage
    coordinates, border flakes merged) -> ``qupaint map`` (stitched overview, deep zoom) ->
    ``qupaint export`` (2DMatGMM-Website ZIP and CSV), scored against the chip's truth."""
    from qupaint.bench.chip import score_chip, stitch_error
    from qupaint.scan import scan_folder
    from qupaint.scan.export import export
    from qupaint.scan.stitch import stitch
    from qupaint.synthia.chip import ChipConfig, render_chip

    base = out / "chip_scan"
    chip = base / "virtual_chip"
    render_chip(chip, ChipConfig(tiles=(3, 3), tile_px=(960, 600), seed=5), workers=2)
    db = base / "flakes.sqlite"
    stats = scan_folder(chip, db, "graphene", workers=2, min_score=MIN_SCORE)
    layout = stitch(db, base / "map", dzi=True)
    fit = {f["file"]: (f["fit_x_mm"], f["fit_y_mm"]) for f in layout["frames"]}
    err = stitch_error(fit, chip, layout["um_per_px"])
    n_zip = export(db, "2dmatgmm", base / "scan_2dmatgmm.zip", min_area_um2=50.0)
    export(db, "csv", base / "flakes.csv")
    score = score_chip(db, chip)
    write_json(base / "score.json", {"scan": stats, "truth": score, "stitch_px": err})
    if log:
        log(f"virtual chip scan: {stats['frames']} frames -> {stats['flakes']} flakes; thin "
            f"flakes > 50 um^2 found {score['found']}/{score['truth_thin_parts']}, median "
            f"position error {score['median_position_error_um']:.1f} um, "
            f"{score['overlapping_rows']} stored twice; stitching {err['median_px']:.2f} px "
            f"median; {n_zip} flakes in the 2DMatGMM ZIP")  # fmt: skip
        log(f"browse it: qupaint serve --db {db}  (then open http://127.0.0.1:8000/)")
    return [
        db,
        base / "map" / "overview.png",
        base / "map" / "mosaic.dzi",
        base / "scan_2dmatgmm.zip",
        base / "flakes.csv",
        base / "score.json",
    ]

