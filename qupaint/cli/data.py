"""``qupaint synthia`` and ``qupaint instruct``: the data-generating stages."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from qupaint.cli._common import (
    app,
    console,
    load_camera,
    oxide_or,
    progress,
    split_list,
    user_errors,
)


@app.command()
def synthia(
    out: Path = typer.Option(..., help="Output folder (images/, annotations.json, manifest.json)"),
    num_images: int = typer.Option(100, help="Number of images"),
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
):
    """Render synthetic flake images with COCO annotations (QuPAINT Alg. 1); resumable."""
    from qupaint.optics import FLAKE_MATERIALS
    from qupaint.synthia import SynthiaConfig, generate

    cam, cal_oxide = load_camera(camera)
    t0 = time.perf_counter()
    with user_errors():
        cfg = SynthiaConfig(
            seed=seed,
            height=size,
            width=size,
            oxide_nm=oxide_or(oxide_nm, cal_oxide),
            illuminant=illuminant,
            camera=cam.to_dict() if cam is not None else None,
            materials=tuple(split_list(materials)) if materials else FLAKE_MATERIALS,
            reference_dir=str(reference_dir) if reference_dir else None,
        )
        cfg.validate()
        with progress("shards") as report:
            manifest = generate(cfg, out, num_images, shard_size, workers, progress=report)
    dt = time.perf_counter() - t0
    console.print(
        f"wrote {num_images} images, {manifest['annotations']} annotations "
        f"{manifest['per_category']} to {out} in {dt:.1f} s"
    )
    if manifest["flakes_placed"] < manifest["flakes_requested"]:
        console.print(
            f"placed {manifest['flakes_placed']} of {manifest['flakes_requested']} "
            "flakes (no clean substrate left for the rest; see manifest.json)"
        )


@app.command()
def instruct(
    coco: Path = typer.Option(..., help="COCO file with Synthia-style annotations"),
    out: Path = typer.Option(..., help="Output folder (<format>/<split>.jsonl, summary.json)"),
    images_dir: Path = typer.Option(None, help="Folder file_name is relative to (default: COCO's)"),
    formats: str = typer.Option("llava", help="Comma-separated: llava, internvl, qwen"),
    seed: int = typer.Option(0, help="Template choice and split seed"),
    tasks: str = typer.Option(
        None, help="Comma-separated tasks (default: count,locate,verify,describe,ground,dialogue)"
    ),
    workers: int = typer.Option(2, help="Worker processes (the output does not depend on it)"),
    camera: Path = typer.Option(
        None, help="Camera JSON for the physics explanations (default: the data set's own)"
    ),
):
    """Build the QMat-Instruct corpus (counting, localisation, verification, physics)."""
    from qupaint.instruct import TASKS, build_corpus

    cam, _ = load_camera(camera)
    t0 = time.perf_counter()
    with user_errors(), progress("images") as report:
        summary = build_corpus(
            coco,
            images_dir,
            out,
            formats=split_list(formats),
            seed=seed,
            tasks=split_list(tasks) if tasks else TASKS,
            workers=workers,
            camera=cam,
            progress=report,
        )
    dt = time.perf_counter() - t0
    table = Table(title=f"QMat-Instruct: {summary['images']} images in {dt:.2f} s")
    table.add_column("group")
    table.add_column("counts")
    for key in ("per_task", "per_split_images", "per_material_images", "per_category_annotations",
                "verification"):  # fmt: skip
        table.add_row(key, ", ".join(f"{k} {v}" for k, v in summary[key].items()))
    console.print(table)
    console.print(f"wrote {out}/ ({', '.join(summary['formats'])}) and {out}/summary.json")
