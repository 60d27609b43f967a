"""``qupaint seg train`` and ``qupaint seg predict``: the thin-flake segmenter."""

from __future__ import annotations

from pathlib import Path

import typer

from qupaint._io import read_rgb
from qupaint.cli._common import app, console, fail, invoked_command, progress, user_errors

seg_app = typer.Typer(help="Thin-flake segmentation trained on Synthia only (qupaint.seg).")
app.add_typer(seg_app, name="seg")


@seg_app.command("train")
def seg_train(
    out: Path = typer.Option(..., help="Weights file to write (.safetensors; a .json beside)"),
    images: int = typer.Option(800, help="Synthia images rendered for training"),
    steps: int = typer.Option(1500, help="Optimiser steps"),
    batch: int = typer.Option(8, help="Crops per step"),
    crop: int = typer.Option(256, help="Crop side (px)"),
    size: int = typer.Option(320, help="Side of the rendered images (px)"),
    width: int = typer.Option(12, help="U-Net channels at the top level"),
    depth: int = typer.Option(4, help="U-Net levels (poolings)"),
    stem: int = typer.Option(2, help="1: full resolution; 2: the net runs at half resolution"),
    chips: list[Path] = typer.Option(
        None, help="Folders of unlabelled real chips: composite Synthia flakes onto them "
        "(no real label is used; without it, realistic Synthia renders)"),
    step: str = typer.Option("backgrounds", help="With --chips, the composite step: "
                             "backgrounds (the shipped one), shapes, terraces, camera or "
                             "pasted (all), or groups joined by '+' (backgrounds+pasted)"),
    crops: Path = typer.Option(None, help="With a step that has 'pasted': a folder of "
                               "labelled layer crops (<layers>/<Material>_..._L<n>.png) whose "
                               "1-5 layer flakes are cut out and pasted"),
    lr: float = typer.Option(3e-3, help="Peak learning rate (one-cycle)"),
    seed: int = typer.Option(0, help="Synthia seed and training seed"),
    workers: int = typer.Option(2, help="Rendering processes"),
    threads: int = typer.Option(2, help="Torch threads for training"),
):
    """Train the segmenter on Synthia (no real labels): Synthia flakes composited onto the
    unlabelled real chips of --chips, or realistic Synthia renders; save it."""
    from qupaint.seg.train import SegmenterRecipe, train_segmenter

    command = invoked_command("seg train")
    with user_errors(), progress("render") as report:
        recipe = SegmenterRecipe(images=images, steps=steps, batch=batch, crop=crop,
                                 width=width, depth=depth, stem=stem, lr=lr, seed=seed,
                                 size=size, workers=workers, threads=threads,
                                 chips=tuple(str(c) for c in chips or ()), step=step,
                                 crops=str(crops) if crops else "")  # fmt: skip
        meta = train_segmenter(out, recipe, command,
                               progress=lambda stage, d, t: report(d, t, stage))
    console.print(
        f"wrote {out}: validation pixel IoU {meta['validation']['pixel_iou']:.3f} on "
        f"{meta['validation']['synthia_images']} held-out Synthia images, "
        f"{meta['training']['total_s']:.0f} s"
    )


@seg_app.command("predict")
def seg_predict(
    images: list[str] = typer.Argument(..., help="Image files, folders or globs"),
    out: Path = typer.Option(..., help="Output folder: <name>.labels.png, overlays, JSON"),
    material: str = typer.Option(..., help="Material of the flakes, e.g. graphene"),
    model: Path = typer.Option(None, help="Weights (.safetensors; default: the shipped model)"),
    threshold: float = typer.Option(0.5, help="Probability threshold"),
    min_area: int = typer.Option(None, help="Smallest instance kept (px; default: the "
                                 "detector's minimum, qupaint.seg.MIN_AREA_PX)"),
):
    """Segment thin flakes: per image a 16-bit label PNG (0 background, 1..n flakes), an
    outline overlay and the instances' boxes and areas in instances.json."""
    import numpy as np

    from qupaint._io import atomic_write_bytes, write_json
    from qupaint.detect.batch import find_images
    from qupaint.detect.draw import outline_labels
    from qupaint.seg import MIN_AREA_PX, instance_boxes, load_segmenter, segment

    min_area = MIN_AREA_PX if min_area is None else min_area
    with user_errors():
        files = find_images(images)
        if not files:
            raise ValueError(f"images: nothing found in {images}")
        net = load_segmenter(model)
        out.mkdir(parents=True, exist_ok=True)
        result, skipped = {}, []
        with progress("segment", len(files)) as report:
            for k, f in enumerate(files):
                report(k + 1)
                try:
                    img = read_rgb(f)
                except (OSError, ValueError) as exc:  # one bad file does not stop the batch
                    skipped.append((f, exc))
                    continue
                lab = segment(img, net, threshold, min_area, material)
                stem = Path(f).stem
                atomic_write_bytes(out / f"{stem}.labels.png", _png16(lab))
                atomic_write_bytes(out / f"{stem}.overlay.jpg", _jpeg(outline_labels(img, lab)))
                area = np.bincount(lab.ravel())
                result[str(f)] = [{"id": i, "bbox": box, "area_px": int(area[i])}
                                  for i, box in instance_boxes(lab).items()]  # fmt: skip
        for f, exc in skipped:
            console.print(f"[yellow]skipped[/yellow] {f}: cannot read the image ({exc})")
        if not result:
            fail(f"no image could be read ({len(skipped)} tried)")
        write_json(out / "instances.json", result)
    n = sum(len(v) for v in result.values())
    console.print(f"{n} thin-flake instances in {len(result)} images; wrote {out}")


def _png16(lab) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.minimum(lab, 65535).astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(img) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()
