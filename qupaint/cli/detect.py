"""``qupaint detect``: find and classify thin flakes on whole micrographs."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from qupaint.cli._common import (
    METHOD_HELP,
    app,
    console,
    detector_settings,
    fail,
    load_microscope,
    parse_oxide_option,
    progress,
    user_errors,
)
from qupaint.constants import MAX_OXIDE_NM, MIN_SCORE, REFERENCE_UM_PER_PX


@app.command()
def detect(
    inputs: list[str] = typer.Argument(..., help="Micrographs: files, folders or globs"),
    material: str = typer.Option(..., help="Material of the flakes, e.g. graphene"),
    oxide_nm: str = typer.Option(
        None,
        help=f"SiO2 thickness in nm (0-{MAX_OXIDE_NM:.0f}), or 'auto': fitted per image from "
        "its flakes "
        "(around the --camera's calibration chip); default: the --camera file's "
        "calibrated oxide, else auto",
    ),
    camera: str = typer.Option(
        "2dmatgmm",
        help="Camera JSON (qupaint calibrate) or preset: 2dmatgmm (a calibrated "
        "flake-hunting microscope), srgb (for Synthia images)",
    ),
    um_per_px: float = typer.Option(
        None, help=f"Image scale; default the --camera's (2dmatgmm: {REFERENCE_UM_PER_PX} um/px)"
    ),
    min_area_um2: float = typer.Option(15.0, help="Physical minimum flake area (um^2)"),
    out: Path = typer.Option(None, help="Output folder (batch mode; see below)"),
    workers: int = typer.Option(2, help="Worker processes (batch mode)"),
    min_score: float = typer.Option(MIN_SCORE, help="Drop detections scoring below this (0-1)"),
    method: str = typer.Option(None, help=METHOD_HELP),
):
    """Find and classify thin flakes on whole micrographs.

    Per image, the oxide and the camera settings' per-channel gain are fitted so that the
    pieces' contrasts fall on the material's layer ladder; dust specks, residue, fibres,
    crystal halos and bulk crystals are rejected by named rules (counted per image in the
    JSON). One image without --out: a table, and its results (overlay, COCO JSON, CSV,
    report) in <image>_qupaint/; nothing is written beside the image. With --out (or
    several images): per-image COCO JSON with masks, overlays, flakes.csv and report.html
    ranking thin-flake candidates; resumable and parallel. Images qupaint wrote are never
    read as input.
    """
    from qupaint.categories import CATEGORY_NAMES
    from qupaint.detect.batch import detect_batch, find_images

    mic = load_microscope(camera)  # the one read of the preset or file
    if um_per_px is not None and not um_per_px > 0:
        fail("--um-per-px must be > 0 (the image scale in um per pixel)")
    if not min_area_um2 >= 0:
        fail("--min-area-um2 must be >= 0")
    if not 0 <= min_score <= 1:
        fail("--min-score must be in [0, 1] (a probability)")
    settings = detector_settings(mic, parse_oxide_option(oxide_nm), um_per_px, min_area_um2,
                                 method)  # fmt: skip
    with user_errors():
        files = find_images(inputs)
    from qupaint.detect.batch import RESULTS_SUFFIX, flake_counts_line

    # nothing is written beside the input: one image's results go to <stem>_qupaint/
    folder = out or Path(files[0]).with_name(Path(files[0]).stem + RESULTS_SUFFIX)
    existed = folder.exists()
    with user_errors(), progress("detect", total=len(files)) as report:
        summary = detect_batch(files, folder, material, settings, workers, min_score,
                               progress=report)  # fmt: skip
    if summary["done"] == 0:  # nothing could be processed: say why, leave nothing behind
        if not existed:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
        why = summary["failed"][0]["error"] if summary["failed"] else "no image processed"
        fail(f"{summary['failed'][0]['image'] if summary['failed'] else folder}: {why}")
    if out is None and len(files) == 1:  # one image: show its flakes and where they went
        import json

        rec = json.loads(next((folder / "detections").glob("*.json")).read_text())
        dets = rec["annotations"]
        ox = rec["oxide"]
        title = f"{flake_counts_line(summary)} in {files[0].name} ({material}, " \
                f"{ox['nm']:.1f} nm SiO2)"  # fmt: skip
        table = Table(title=title)
        for col in (
            "#",
            "class",
            "layers",
            "score",
            "contrast R,G,B",
            "fit (sigma)",
            "bbox x,y,w,h",
        ):
            table.add_column(col)
        for k, d in enumerate(dets):
            contrast = ", ".join(f"{c:+.3f}" for c in d["contrast"])
            box = ",".join(f"{v:.0f}" for v in d["bbox"])
            table.add_row(str(k), CATEGORY_NAMES[d["category_id"]], str(d["layers"]),
                          f"{d['score']:.2f}", contrast, f"{d['fit_sigma']:.1f}", box)  # fmt: skip
        console.print(table)
        overlay = next((folder / "overlays").glob("*.png"))
        console.print(f"wrote {overlay} (and COCO JSON, CSV, report in {folder}/)")
    else:
        console.print(f"{summary['done']} of {summary['images']} images, "
                      f"{flake_counts_line(summary)}; report: {folder}/report.html")
    for f in summary["failed"]:
        console.print(f"[yellow]skipped[/yellow] {f['image']}: {f['error']}")
    if summary["oxide_ambiguous"]:
        console.print(
            f"[yellow]warning:[/yellow] the oxide is ambiguous in "
            f"{len(summary['oxide_ambiguous'])} image(s) (interference colours repeat); "
            "give --oxide-nm or a calibrated --camera (qupaint calibrate)"
        )
