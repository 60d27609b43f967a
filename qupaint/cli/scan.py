"""``qupaint scan``, ``flakes``, ``map`` and ``export``: from a chip scan to a flake database."""

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
from qupaint.constants import MIN_SCORE

DB_HELP = "The flake database: a SQLite file (created if missing) or a SQLAlchemy URL"


@app.command()
def scan(
    folder: Path = typer.Argument(
        ...,
        help="The scan folder: frames + positions.csv "
        "(file,x_mm,y_mm), a 2DMatGMM-System scan folder, an OME-TIFF file "
        "(ACQ.ome.tif: a frame per series) or a folder of them",
    ),
    material: str = typer.Option(..., help="Material of the flakes, e.g. graphene"),
    db: str = typer.Option(None, help=DB_HELP + "; default FOLDER/flakes.sqlite (the "
                           "OME-TIFF's folder for a file)"),
    camera: str = typer.Option(
        None,
        help="Camera JSON (qupaint calibrate) or preset; default the folder's chip.json "
        "camera (a virtual chip), else 2dmatgmm",
    ),
    um_per_px: float = typer.Option(
        None, help="Image scale; default an OME-TIFF's PhysicalSizeX, else the camera's or "
        "chip.json's"),
    oxide_nm: str = typer.Option(
        None,
        help="SiO2 thickness in nm, or 'auto' (default: the "
        "camera file's calibrated oxide, else auto)",
    ),
    min_area_um2: float = typer.Option(15.0, help="Physical minimum flake area (um^2)"),
    min_score: float = typer.Option(MIN_SCORE, help="Drop detections scoring below this (0-1)"),
    chip: str = typer.Option(None, help="Chip name in the database (default: the folder's)"),
    user: str = typer.Option(None, help="Who scanned (stored with the scan)"),
    workers: int = typer.Option(2, help="Worker processes"),
    match_px: int = typer.Option(
        8, help="Frames' stage error (px) within which two views of one flake are merged"
    ),
    watch: bool = typer.Option(
        False,
        "--watch",
        help="Keep taking frames as the microscope "
        "writes them, until FOLDER/scan_done appears or --idle-s passes",
    ),
    idle_s: float = typer.Option(60.0, help="--watch: stop after this long without a new frame"),
    method: str = typer.Option(None, help=METHOD_HELP),
):
    """Detect every frame of a chip scan into a flake database, in stage coordinates.

    Flakes seen in two overlapping frames are stored once. Each frame is written in one
    transaction: a killed scan resumes where it stopped (run the same command again), with
    nothing lost and nothing counted twice."""
    from qupaint.scan import ScanOptions, scan_folder
    from qupaint.scan.ome import list_ome
    from qupaint.scan.positions import scan_layout

    base = folder.parent if folder.is_file() else folder
    if camera is None and not (base / "chip.json").is_file():
        camera = "2dmatgmm"
    mic = load_microscope(camera)
    if um_per_px is None and scan_layout(folder) == "ome":
        with user_errors():
            um_per_px = list_ome(folder).um_per_px  # the file's own pixel size, if stated
    if not 0 <= min_score <= 1:
        fail("--min-score must be in [0, 1] (a probability)")
    if not idle_s > 0:
        fail("--idle-s must be > 0 (seconds)")
    # the oxide: given, else the camera file's, else fitted (around the camera's or the
    # chip's oxide)
    settings = detector_settings(mic, parse_oxide_option(oxide_nm), um_per_px, min_area_um2,
                                 method)  # fmt: skip
    with user_errors():
        options = ScanOptions(chip=chip, user=user, workers=workers, min_score=min_score,
                              match_px=match_px, watch=watch, idle_s=idle_s)  # fmt: skip
    db = db or str(base / "flakes.sqlite")
    with user_errors(), progress("scan" + (" (watching)" if watch else "")) as report:
        stats = scan_folder(folder, db, material, settings, options, progress=report)
    console.print(
        f"{stats['frames']} frames ({stats['skipped']} already stored), "
        f"{stats['detections']} detections -> {stats['flakes']} flakes in {db} "
        f"({stats['frames_per_s'] or 0:.2f} frames/s)"
    )
    for bad in stats["unreadable"]:
        console.print(f"[yellow]skipped[/yellow] unreadable frame {bad['file']}: {bad['error']}")
    for problem in stats.get("problems", []):
        console.print(f"[yellow]skipped[/yellow] {problem}")
    missing = stats["not_processed"]
    if missing:
        console.print(
            f"[yellow]warning:[/yellow] {len(missing)} listed frames never arrived (first: "
            f"{missing[0]}); run the command again when they are there"
        )


def _filters(layers, min_area_um2, max_area_um2, min_probability, thin, used, favourite, chip,
             sort, limit) -> dict:  # fmt: skip
    from qupaint.scan.export import SORT_KEYS

    if sort not in SORT_KEYS:
        fail(f"--sort must be one of {', '.join(SORT_KEYS)}")
    ls = None
    if layers:
        try:
            ls = [int(v) for v in layers.split(",") if v.strip()]
        except ValueError:
            fail("--layers: counts separated by commas, e.g. 1 or 1,2")
        if any(v < 1 or v > 400 for v in ls):
            fail("--layers: counts from 1 to 400")
    return {"layers": ls, "min_area_um2": min_area_um2, "max_area_um2": max_area_um2,
            "min_probability": min_probability, "thin_only": thin, "used": used,
            "favourite": favourite, "chip": chip, "sort": sort, "limit": limit}  # fmt: skip


LAYERS_OPT = typer.Option(None, help="Layer counts to keep, e.g. 1 or 1,2")
THIN_OPT = typer.Option(False, "--thin", help="Only thin flakes (Mono and Few)")
USED_OPT = typer.Option(None, "--used/--unused", help="Only used (or unused) flakes")
FAV_OPT = typer.Option(None, "--favourite/--not-favourite", help="Only favourites (or not)")


@app.command()
def flakes(
    db: str = typer.Option(..., help=DB_HELP),
    layers: str = LAYERS_OPT,
    min_area_um2: float = typer.Option(0.0, help="Smallest area (um^2)"),
    max_area_um2: float = typer.Option(None, help="Largest area (um^2)"),
    min_probability: float = typer.Option(0.0, help="Lowest detector score (0-1)"),
    thin: bool = THIN_OPT,
    used: bool = USED_OPT,
    favourite: bool = FAV_OPT,
    chip: str = typer.Option(None, help="Only this chip"),
    sort: str = typer.Option("area", help="area, probability, layers, aspect, id, x or y"),
    limit: int = typer.Option(50, help="Rows shown"),
    csv: bool = typer.Option(False, "--csv", help="Print CSV instead of a table"),
):
    """List flakes of the database, filtered and sorted (stage coordinates in mm)."""
    from qupaint.scan.export import CSV_FIELDS, query_flakes

    if not 0 <= min_probability <= 1:
        fail("--min-probability must be in [0, 1]")
    if not Path(db).exists() and "://" not in db:
        fail(f"--db {db} does not exist (qupaint scan writes it)")
    with user_errors():
        rows = query_flakes(db, **_filters(layers, min_area_um2, max_area_um2, min_probability,
                                           thin, used, favourite, chip, sort, limit))  # fmt: skip
    if csv:
        import csv as _csv
        import sys

        wr = _csv.DictWriter(sys.stdout, fieldnames=CSV_FIELDS)
        wr.writeheader()
        wr.writerows(rows)
        return
    table = Table(title=f"{len(rows)} flakes")
    cols = ("id", "layers", "area_um2", "probability", "aspect", "x_mm", "y_mm", "image")
    for c in cols:
        table.add_column(c, justify="left" if c == "image" else "right")
    for r in rows:
        table.add_row(*(str(r[c]) for c in cols))
    console.print(table)


@app.command("map")
def map_(
    db: str = typer.Option(..., help=DB_HELP),
    out: Path = typer.Option(..., help="Output folder (overview.png, layout.json, mosaic.dzi)"),
    scan_id: int = typer.Option(None, help="Which scan (default: the newest)"),
    overview_px: int = typer.Option(4000, help="Longest side of the overview (px)"),
    dzi: bool = typer.Option(False, "--dzi", help="Also write a deep-zoom pyramid"),
    flat: bool = typer.Option(
        True, "--flat/--no-flat",
        help="Divide the frames by the lamp's fall-off measured from them (8 frames or more)"),
):
    """Stitch a scan: frames placed by stage position and refined by phase correlation on
    their overlaps, corrected for the lamp's fall-off (vignetting) measured from the frames;
    an overview with every flake marked; a deep-zoom pyramid."""
    from qupaint.scan.stitch import stitch

    if not 64 <= overview_px <= 65536:
        fail("--overview-px must be in 64-65536")
    with user_errors(), progress("map") as report:
        layout = stitch(db, out, scan_id=scan_id, overview_px=overview_px, dzi=dzi,
                        progress=report, flat=flat)  # fmt: skip
    console.print(f"{len(layout['frames'])} frames, {layout['pairs_kept']} of "
                  f"{layout['pairs_measured']} overlaps registered; wrote {out / 'overview.png'}"
                  + (f" and {out / 'mosaic.dzi'}" if dzi else ""))  # fmt: skip


@app.command()
def export(
    db: str = typer.Option(..., help=DB_HELP),
    format: str = typer.Option(
        ..., help="2dmatgmm (the 2DMatGMM-Website upload ZIP), coco, csv or micromanager (a "
        "Micro-Manager 2 position list, .pos)"),
    out: Path = typer.Option(..., help="Output file (.zip, .json, .csv or .pos)"),
    layers: str = LAYERS_OPT,
    min_area_um2: float = typer.Option(0.0, help="Smallest area (um^2)"),
    min_probability: float = typer.Option(0.0, help="Lowest detector score (0-1)"),
    thin: bool = THIN_OPT,
    used: bool = USED_OPT,
    favourite: bool = FAV_OPT,
    chip: str = typer.Option(None, help="Only this chip"),
):
    """Export flakes: 2dmatgmm (thin flakes unless --layers), coco (stage coordinates as
    extra fields), csv, or micromanager: a position list Micro-Manager's Stage Position
    List loads, one position per flake, to drive the stage back to each."""
    from qupaint.scan.export import EXPORT_FORMATS
    from qupaint.scan.export import export as run_export

    if format.lower() not in EXPORT_FORMATS:
        fail(f"--format must be one of {', '.join(EXPORT_FORMATS)}")
    if not Path(db).exists() and "://" not in db:
        fail(f"--db {db} does not exist (qupaint scan writes it)")
    filters = _filters(layers, min_area_um2, None, min_probability, thin, used, favourite,
                       chip, "id", None)  # fmt: skip
    if format.lower() == "2dmatgmm" and not layers:
        filters["thin_only"] = True
    with user_errors():
        n = run_export(db, format, out, **filters)
    console.print(f"wrote {n} flakes to {out}")
