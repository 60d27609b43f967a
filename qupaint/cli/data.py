"""``qupaint synthia`` and ``qupaint instruct``: the data-generating stages."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from qupaint.cli._common import (
    app,
    console,
    load_microscope,
    progress,
    split_list,
    user_errors,
)
from qupaint.constants import REFERENCE_UM_PER_PX

synthia_app = typer.Typer(
    help="Render synthetic flake images (QuPAINT Alg. 1), or compare them with real ones.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(synthia_app, name="synthia")


@synthia_app.callback()
def synthia(
    ctx: typer.Context,
    out: Path = typer.Option(None, help="Output folder (images/, annotations.json, manifest.json)"),
    num_images: int = typer.Option(100, help="Number of images"),
    style: str = typer.Option(
        "realistic",
        help="realistic: real chip backgrounds, the calibrated 2dmatgmm camera, ragged "
        "flakes, clutter and image optics (SynthiaConfig.realistic); classic: clean "
        "procedural chips (QuPAINT Alg. 1 as published)",
    ),
    materials: str = typer.Option(
        None, help="Comma-separated materials (default: the eight QF-Bench materials)"
    ),
    reference_dir: Path = typer.Option(None, help="Real microscopy backgrounds (PNG/JPEG/TIFF)"),
    oxide_nm: float = typer.Option(
        None, help="SiO2 thickness (nm; default the --camera's calibrated, or 285)"
    ),
    illuminant: str = typer.Option("D65", help="D65, A (halogen), E, ... (without --camera)"),
    camera: Path = typer.Option(None, help="Camera JSON (qupaint calibrate) to render through"),
    size: int = typer.Option(512, help="Image height and width (px)"),
    workers: int = typer.Option(2, help="Worker processes"),
    shard_size: int = typer.Option(500, help="Images per shard (the unit of resume)"),
    seed: int = typer.Option(0, help="Data-set seed (image i depends only on seed and i)"),
    shard: str = typer.Option(
        None,
        help="I/N: render only the shards s with s mod N = I (machine I of N), then run "
        "`qupaint synthia merge OUT`; 'slurm' reads SLURM_ARRAY_TASK_ID/COUNT",
    ),
    engine: str = typer.Option("local", help="local (process pool) or dask"),
    scheduler: str = typer.Option(
        None, help="Dask scheduler address (tcp://host:8786); default a local cluster"
    ),
):
    """Render synthetic flake images with COCO annotations (QuPAINT Alg. 1); resumable.

    ``qupaint synthia compare`` puts them next to real micrographs."""
    if ctx.invoked_subcommand is not None:
        return
    if out is None:
        console.print("[red]error:[/red] --out is required (the output folder)")
        raise typer.Exit(2)
    from qupaint.optics import FLAKE_MATERIALS
    from qupaint.synthia import SynthiaConfig, generate

    if style not in ("realistic", "classic"):
        console.print(f"[red]error:[/red] --style must be realistic or classic; got {style!r}")
        raise typer.Exit(2)
    mic = load_microscope(camera)
    cam, cal_oxide = mic.camera, mic.oxide_nm
    t0 = time.perf_counter()
    with user_errors():
        kw = dict(
            seed=seed,
            height=size,
            width=size,
            materials=tuple(split_list(materials)) if materials else FLAKE_MATERIALS,
            reference_dir=str(reference_dir) if reference_dir else None,
        )
        if cam is not None:
            kw["camera"] = cam.to_dict()
        if style == "classic" or oxide_nm is not None or cal_oxide is not None:
            kw["oxide_nm"] = mic.oxide_or(oxide_nm)
        if style == "realistic":
            if oxide_nm is not None or cal_oxide is not None:
                kw["oxide_choices_nm"] = ()  # a known oxide: every image on it
            if reference_dir:
                kw["backgrounds"] = "procedural"  # the user's references replace the pack
            cfg = SynthiaConfig.realistic(**kw)
        else:
            cfg = SynthiaConfig(illuminant=illuminant, **kw)
        cfg.validate()
        part = shard_from_env() if shard == "slurm" else shard
        with progress("shards") as report:
            manifest = generate(cfg, out, num_images, shard_size, workers, progress=report,
                                shard=part, engine=engine, scheduler=scheduler)  # fmt: skip
    dt = time.perf_counter() - t0
    if "shard" in manifest:
        console.print(
            f"shard {manifest['shard']}: {manifest['shards_done']} of its {manifest['shards']} "
            f"shards done ({manifest['shards_total']} in all) in {dt:.1f} s; when every "
            f"shard is done: qupaint synthia merge {out}"
        )
        return
    console.print(
        f"wrote {num_images} images, {manifest['annotations']} annotations "
        f"{manifest['per_category']} to {out} in {dt:.1f} s"
    )
    if manifest["flakes_placed"] < manifest["flakes_requested"]:
        console.print(
            f"placed {manifest['flakes_placed']} of {manifest['flakes_requested']} "
            "flakes (no clean substrate left for the rest; see manifest.json)"
        )


instruct_app = typer.Typer(
    help="Build the QMat-Instruct corpus, whole or by shards (then `instruct merge`).",
    invoke_without_command=True,
)
app.add_typer(instruct_app, name="instruct")


@instruct_app.callback()
def instruct(
    ctx: typer.Context,
    coco: Path = typer.Option(None, help="COCO file with Synthia-style annotations"),
    out: Path = typer.Option(None, help="Output folder (<format>/<split>.jsonl, summary.json)"),
    images_dir: Path = typer.Option(None, help="Folder file_name is relative to (default: COCO's)"),
    formats: str = typer.Option("llava", help="Comma-separated: llava, internvl, qwen"),
    seed: int = typer.Option(0, help="Template choice and split seed"),
    tasks: str = typer.Option(
        None, help="Comma-separated tasks (default: count,locate,verify,describe,ground,dialogue)"
    ),
    workers: int = typer.Option(2, help="Worker processes (the output does not depend on it)"),
    chunk: int = typer.Option(256, help="Images per work unit (shards are made of chunks)"),
    camera: Path = typer.Option(
        None, help="Camera JSON for the physics explanations (default: the data set's own)"
    ),
    shard: str = typer.Option(
        None,
        help="I/N: build only the chunks c with c mod N = I, then run "
        "`qupaint instruct merge OUT`; 'slurm' reads SLURM_ARRAY_TASK_ID/COUNT",
    ),
):
    """Build the QMat-Instruct corpus (counting, localisation, verification, physics)."""
    if ctx.invoked_subcommand is not None:
        return
    if coco is None or out is None:
        console.print("[red]error:[/red] --coco and --out are required")
        raise typer.Exit(2)
    from qupaint.instruct import TASKS, build_corpus
    from qupaint.synthia import parse_shard

    cam = load_microscope(camera).camera
    t0 = time.perf_counter()
    with user_errors(), progress("images") as report:
        part = parse_shard(shard_from_env() if shard == "slurm" else shard) if shard else None
        summary = build_corpus(
            coco,
            images_dir,
            out,
            formats=split_list(formats),
            seed=seed,
            tasks=split_list(tasks) if tasks else TASKS,
            workers=workers,
            chunk=chunk,
            camera=cam,
            progress=report,
            shard=part,
        )
    dt = time.perf_counter() - t0
    if "shard" in summary:
        console.print(
            f"shard {summary['shard']}: {summary['chunks_done']} of its {summary['chunks']} "
            f"chunks built in {dt:.1f} s; when every shard is done: qupaint instruct merge {out}"
        )
        return
    _print_summary(summary, out, dt)


@instruct_app.command("merge")
def instruct_merge(out: Path = typer.Argument(..., help="The corpus folder")):
    """Write the corpus JSONL files and summary.json once every shard is built."""
    from qupaint.instruct import merge_corpus

    t0 = time.perf_counter()
    with user_errors():
        summary = merge_corpus(out)
    _print_summary(summary, out, time.perf_counter() - t0)


def _print_summary(summary: dict, out: Path, dt: float) -> None:
    table = Table(title=f"QMat-Instruct: {summary['images']} images in {dt:.2f} s")
    table.add_column("group")
    table.add_column("counts")
    for key in ("per_task", "per_split_images", "per_material_images", "per_category_annotations",
                "verification"):  # fmt: skip
        table.add_row(key, ", ".join(f"{k} {v}" for k, v in summary[key].items()))
    console.print(table)
    console.print(f"wrote {out}/ ({', '.join(summary['formats'])}) and {out}/summary.json")


def shard_from_env() -> str:
    """``I/N`` of a Slurm job-array task: SLURM_ARRAY_TASK_ID minus SLURM_ARRAY_TASK_MIN
    over SLURM_ARRAY_TASK_COUNT (arrays may start at 1)."""
    import os

    try:
        task = int(os.environ["SLURM_ARRAY_TASK_ID"])
        count = int(os.environ["SLURM_ARRAY_TASK_COUNT"])
        first = int(os.environ.get("SLURM_ARRAY_TASK_MIN", "0"))
    except (KeyError, ValueError):
        raise ValueError(
            "--shard slurm: SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT must be set "
            "(run inside an sbatch --array job)"
        ) from None
    return f"{task - first}/{count}"


@synthia_app.command("merge")
def synthia_merge(out: Path = typer.Argument(..., help="The data set's folder")):
    """Write annotations.json and manifest.json once every shard is rendered."""
    from qupaint.synthia import merge

    with user_errors():
        manifest = merge(out)
    console.print(
        f"merged {manifest['num_images']} images, {manifest['annotations']} annotations "
        f"into {out / 'annotations.json'}"
    )


@synthia_app.command("compare")
def synthia_compare(
    synthetic: Path = typer.Option(..., help="Folder of Synthia images (searched recursively)"),
    real: Path = typer.Option(..., help="Folder of real micrographs (searched recursively)"),
    out: Path = typer.Option(None, help="Write compare.json and compare.png here"),
    max_images: int = typer.Option(40, help="Images read per side (evenly spread)"),
    size: int = typer.Option(512, help="Images are cut to centred squares of this side (px)"),
):
    """Where Synthia still differs from real chips: substrate colour, contrast, edges,
    flake sizes and shapes, sharpness and noise, side by side (a table, a JSON, a plot)."""
    from qupaint.bench.realism import compare_sets, plot_comparison

    with user_errors():
        result = compare_sets(synthetic, real, max_images=max_images, size=size)
    table = Table(title="Synthia vs real")
    for col in ("statistic", "synthetic", "real", "distance"):
        table.add_column(col, justify="right" if col != "statistic" else "left")
    for name, row in result["summary"].items():
        table.add_row(name, row["synthetic"], row["real"], f"{row['distance']:.3f}")
    console.print(table)
    if out is not None:
        from qupaint._io import write_json

        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "compare.json", result)
        plot_comparison(result, out / "compare.png")
        console.print(f"wrote {out / 'compare.json'} and {out / 'compare.png'}")


@synthia_app.command("gap")
def synthia_gap(
    real: list[Path] = typer.Option(
        ..., "--real", help="Real micrographs without labels: folders or files (repeatable)"
    ),
    mode: str = typer.Option(
        "realistic", help="Synthia to compare: realistic, classic, or a folder of images"
    ),
    images: int = typer.Option(96, help="Synthia images rendered (or read from the folder)"),
    windows: int = typer.Option(24, help="Random windows cut from every image"),
    window: int = typer.Option(96, help="Window side (px)"),
    steps: int = typer.Option(400, help="Classifier training steps"),
    seed: int = typer.Option(0, help="Seed of every draw"),
    substrate_only: bool = typer.Option(
        False, "--substrate-only", help="Only windows of bare substrate: the texture alone"
    ),
    out: Path = typer.Option(None, help="Write the figures as JSON here"),
):
    """How well a small network tells Synthia from real chips: the held-out ROC AUC of a
    CNN trained on windows of both (0.5: it cannot tell them apart; 1.0: it always can)."""
    from qupaint.recipes.domain import DomainGapRecipe, domain_gap, synthia_mode

    try:
        synthia = synthia_mode(mode)
    except ValueError:
        raise typer.BadParameter("realistic, classic or a folder of images",
                                 param_hint="--mode") from None  # fmt: skip
    with user_errors(), progress("gap") as report:
        recipe = DomainGapRecipe(window=window, windows_per_image=windows,
                                 synthetic_images=images, steps=steps, seed=seed,
                                 substrate_only=substrate_only)  # fmt: skip
        r = domain_gap(synthia, real, recipe, progress=lambda s, d, t: report(d, t, s))
    console.print(f"domain AUC {r['auc']:.3f} (0.5: indistinguishable) on "
                  f"{r['windows']['test_real']} real and {r['windows']['test_synthetic']} "
                  f"Synthia windows of held-out images, {r['seconds']:.0f} s")  # fmt: skip
    if out is not None:
        from qupaint._io import write_json

        write_json(out, {"mode": str(mode), **r})
        console.print(f"wrote {out}")


@synthia_app.command("chip")
def synthia_chip(
    out: Path = typer.Option(..., help="Output folder (tiles/, positions.csv, truth.csv, ...)"),
    size_mm: tuple[float, float] = typer.Option(
        None, help="Chip width and height in mm (the scan covers it); or --tiles"
    ),
    tiles: tuple[int, int] = typer.Option((4, 3), help="Frames across and down"),
    tile_px: str = typer.Option("1920x1200", help="Frame size WIDTHxHEIGHT (px)"),
    um_per_px: float = typer.Option(REFERENCE_UM_PER_PX, help="Image scale"),
    overlap: float = typer.Option(0.1, help="Share of a frame shared with its neighbour"),
    material: str = typer.Option("graphene", help="Material of the flakes"),
    camera: str = typer.Option("2dmatgmm", help="Camera preset or JSON to render through"),
    oxide_nm: float = typer.Option(None, help="SiO2 thickness (default: the camera's, else 90)"),
    flakes_per_mm2: float = typer.Option(60.0, help="Flake density"),
    jitter_um: float = typer.Option(1.0, help="The stage's landing error (std per axis, um)"),
    seed: int = typer.Option(0, help="Chip seed"),
    workers: int = typer.Option(2, help="Worker processes"),
):
    """A virtual microscope: one continuous synthetic chip scanned in overlapping frames at
    stage positions (a serpentine, with stage jitter), with the truth of every flake."""
    from qupaint.synthia.chip import ChipConfig, render_chip

    w, _, h = tile_px.lower().partition("x")
    try:
        tile = (int(w), int(h))
    except ValueError:
        raise typer.BadParameter(
            "use WIDTHxHEIGHT, e.g. 1920x1200", param_hint="--tile-px"
        ) from None
    if camera in ("2dmatgmm", "srgb"):
        cam_spec = camera
    else:
        cam_spec = load_microscope(camera).camera.to_dict()
    kw = dict(tile_px=tile, um_per_px=um_per_px, overlap=overlap, material=material,
              camera=cam_spec, oxide_nm=oxide_nm, flakes_per_mm2=flakes_per_mm2,
              jitter_um=jitter_um, seed=seed)  # fmt: skip
    with user_errors():
        cfg = (ChipConfig.from_size(tuple(size_mm), **kw) if size_mm
               else ChipConfig(tiles=tuple(tiles), **kw))  # fmt: skip
        cfg.validate()
    n = cfg.tiles[0] * cfg.tiles[1]
    t0 = time.perf_counter()
    with user_errors(), progress("render chip", total=n) as report:
        meta = render_chip(out, cfg, workers=workers, progress=report)
    console.print(
        f"{meta['tiles']} frames ({cfg.tiles[0]}x{cfg.tiles[1]}), {meta['flake_parts']} flake "
        f"parts, {meta['oxide_nm']:.0f} nm SiO2, in {time.perf_counter() - t0:.1f} s: {out}"
    )
