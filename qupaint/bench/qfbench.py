"""Build a held-out synthetic QF-Bench in the paper's COCO layout (QuPAINT Sec. 11).

Layout of ``out_dir``::

    materials/<Material>/images/*.png    Synthia renders of one material each
    materials/<Material>/...             that material's shards and manifest (resumable)
    annotations.json                     merged COCO: categories Mono / Few / Thick,
                                         ``file_name`` relative to ``out_dir``
    manifest.json                        seeds, counts per material and category

Seeds: material k is rendered with seed ``QFBENCH_SEED + k``. Training data made with
``qupaint synthia`` uses small seeds (default 0), so the benchmark images come from
generator streams that training never draws (Synthia streams are keyed by (seed, index)).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from qupaint._io import atomic_write_bytes, read_rgb, write_json
from qupaint.categories import CATEGORIES
from qupaint.optics import FLAKE_MATERIALS
from qupaint.synthia import SynthiaConfig, generate

QFBENCH_SEED = 1_000_003
#: image ids of material k start at k * ID_STRIDE (annotation ids keep Synthia's scheme)
ID_STRIDE = 10_000_000

__all__ = ["QFBENCH_SEED", "build_qfbench", "detect_coco"]


def build_qfbench(
    out_dir: str | Path,
    images_per_material: int = 50,
    materials: Sequence[str] = FLAKE_MATERIALS,
    config: SynthiaConfig | None = None,
    workers: int = 1,
    seed: int = QFBENCH_SEED,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """Render ``images_per_material`` images of each material and merge them into one COCO.

    ``config`` sets everything but the material and seed (default: :class:`SynthiaConfig`).
    Re-running resumes (each material folder is a resumable Synthia data set). Returns the
    manifest.
    """
    if images_per_material < 1:
        raise ValueError("images_per_material must be >= 1")
    if seed < QFBENCH_SEED // 2:
        raise ValueError(
            f"seed {seed} is in the range used for training data; QF-Bench seeds start at "
            f"{QFBENCH_SEED // 2} (default {QFBENCH_SEED})"
        )
    base = config or SynthiaConfig()
    root = Path(out_dir)
    images, anns, per = [], [], {}
    for k, mat in enumerate(materials):
        cfg = replace(base, materials=(mat,), seed=seed + k)
        sub = root / "materials" / mat
        generate(
            cfg,
            sub,
            images_per_material,
            shard_size=max(1, min(100, images_per_material)),
            workers=workers,
            progress=(lambda d, n, m=mat: progress(m, d, n)) if progress else None,
        )
        coco = json.loads((sub / "annotations.json").read_text())
        offset = k * ID_STRIDE
        for im in coco["images"]:
            images.append({**im, "id": im["id"] + offset,
                           "file_name": f"materials/{mat}/{im['file_name']}"})  # fmt: skip
        for a in coco["annotations"]:
            anns.append({**a, "id": a["id"] + offset * 1000, "image_id": a["image_id"] + offset})
        per[mat] = {
            "images": len(coco["images"]),
            **{
                c["name"]: sum(a["category_id"] == c["id"] for a in coco["annotations"])
                for c in CATEGORIES
            },  # fmt: skip
        }
    merged = {
        "info": {"description": "QF-Bench (synthetic, qupaint)", "seed": seed},
        "images": images,
        "annotations": anns,
        "categories": CATEGORIES,
    }
    atomic_write_bytes(root / "annotations.json", (json.dumps(merged) + "\n").encode())
    manifest = {
        "seed": seed,
        "images_per_material": images_per_material,
        "materials": per,
        "config": {**base.to_dict(), "materials": list(materials), "seed": None},
    }
    write_json(root / "manifest.json", manifest)
    return manifest


def _synthia_detector():
    from qupaint.detect import DetectorConfig

    # a rendered set's camera is known exactly (no per-image response to fit), its flakes
    # may be smaller than a real chip's physical minimum, and its Thick flakes (bright at
    # 285 nm) are a category of the benchmark, not bulk crystals to reject
    return DetectorConfig(response_range=(1.0, 1.0), min_area_px=24, max_layers=30, bright=10.0)


def _detect_image(args: tuple) -> list[dict]:
    path, image_id, material, oxide_nm, illuminant, cfg, camera = args

    img = read_rgb(path)
    from qupaint.color import Camera
    from qupaint.detect import DetectorSettings, detect

    cam = camera or Camera.srgb(illuminant)
    settings = DetectorSettings(cfg, cam, oxide_nm)
    return detect(img, material, settings, image_id=image_id)


def detect_coco(
    gt_json,
    images_dir=None,
    oxide_nm: float | None = None,
    illuminant: str = "D65",
    config=None,
    workers: int = 1,
    progress=None,
    camera=None,
) -> list[dict]:
    """Run :func:`detect` on every image of a COCO file (material from each image's
    ``material`` field; oxide from the annotations' ``substrate_oxide_nm`` unless given).
    Without ``config`` the response is held at the camera's (a rendered set's camera is
    known), pieces down to 24 px count and thick (bright) flakes are reported as Thick.
    Returns COCO results for :func:`qupaint.bench.evaluate_detection`."""
    from pathlib import Path

    from qupaint._pool import run_tasks
    from qupaint.bench.dataset import resolve_image
    from qupaint.bench.metrics import load_json

    gt = load_json(gt_json)
    root = Path(images_dir) if images_dir else Path(gt_json).parent
    oxide_of = {a["image_id"]: a.get("substrate_oxide_nm") for a in gt["annotations"]}
    synthia_cfg = _synthia_detector()
    jobs = []
    for im in gt["images"]:
        if "material" not in im:
            raise ValueError(f"image {im['id']} has no 'material'; the detector needs it")
        ox = oxide_nm if oxide_nm is not None else oxide_of.get(im["id"]) or 285.0
        jobs.append((resolve_image(root, im), im["id"], im["material"], float(ox), illuminant,
                     config if config is not None else synthia_cfg, camera))  # fmt: skip
    out: list[dict] = []
    for k, dets in enumerate(run_tasks(_detect_image, jobs, workers, chunksize=4)):
        out += dets
        if progress:
            progress(k + 1, len(jobs))
    return out
