"""The compact recipe end to end: joint training of the vision side and the language model,
then the vision stage, the region cut and the held-out score (:func:`train_compact`)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from qupaint._io import write_json
from qupaint.bench.dense import dense_maps, dense_region_row, region_scores
from qupaint.recipes.compact.config import (
    COMPACT_TASKS,
    VALIDATION_SEED,
    CompactRecipe,
    compact_materials,
    compact_synthia_config,
)
from qupaint.recipes.compact.data import prepare_data, stage
from qupaint.recipes.compact.vision import vision_stage

__all__ = ["evaluate_compact", "final_loss", "strip_answers", "train_compact", "tune_regions"]


def final_loss(res: dict) -> float | None:
    """The last logged training loss of a :func:`qupaint.train.train` result."""
    return next((h["loss"] for h in reversed(res["log_history"]) if "loss" in h), None)


def strip_answers(res: dict) -> dict:
    """Evaluation figures without the per-question answers."""
    return {k: v for k, v in res.items() if k != "answers"}


def evaluate_compact(model, processor, bench_dir, images_per_material: int = 4,
                     workers: int = 2, progress=None, materials=None, **gen) -> dict:  # fmt: skip
    """Build (or reuse) the compact model's held-out QF-Bench in ``bench_dir`` (of
    ``materials``, default :func:`compact_materials`) and score ``model`` on it per task,
    with the physics detector's row as reference."""
    from qupaint.bench.model_eval import detector_task_row, evaluate_model_tasks
    from qupaint.bench.qfbench import build_qfbench

    bench_dir = Path(bench_dir)
    mats = tuple(materials or compact_materials())
    build_qfbench(bench_dir, images_per_material, mats, config=compact_synthia_config(),
                  workers=workers)  # fmt: skip
    gt = bench_dir / "annotations.json"
    stage(progress, "evaluate", 0, 1)
    gen = {"temperature": 0.0, "max_new_tokens": 320, "constrain": True, **gen}
    res = evaluate_model_tasks(model, processor, gt, **gen)
    res["detector_reference"] = detector_task_row(gt)
    if getattr(model.config, "region_tokens", 0):
        res["dense_regions_reference"] = dense_region_row(model, processor, gt)
    stage(progress, "evaluate", 1, 1)
    return res


def train_compact(recipe: CompactRecipe,
                  progress: Callable[[str, int, int], None] | None = None) -> dict:  # fmt: skip
    """Run the compact recipe ``recipe`` and save the model to ``recipe.out``; returns the
    metadata written to ``recipe.out/metrics.json``: the arguments, the command, stage times
    and the held-out per-task figures.

    After the joint training, the vision side trains alone for ``recipe.vision_steps``
    (:func:`~qupaint.recipes.compact.vision.train_vision_side`, same data and batch; the
    result is kept in ``work_dir/vision`` and reused by a rerun). Before scoring,
    :func:`tune_regions` sets how the dense map is cut into regions on
    ``recipe.validation_images`` images of a validation render. ``progress(stage, done,
    total)`` is told of each stage.

    Raises
    ------
    TypeError
        When ``recipe`` is not a :class:`~qupaint.recipes.compact.config.CompactRecipe`.
    """
    import torch

    from qupaint.train import load_config
    from qupaint.train import train as run_train

    if not isinstance(recipe, CompactRecipe):
        raise TypeError(f"recipe: expected a CompactRecipe, got {type(recipe).__name__}; "
                        "build one with CompactRecipe(work_dir, steps=..., ...)")  # fmt: skip
    r = recipe
    work, out = r.work_dir, r.out
    torch.set_num_threads(r.threads)
    times: dict = {}
    t0 = time.perf_counter()
    mats = r.material_list
    syn, train_jsonl = prepare_data(r.data, mats, r.images, r.seed_of_data, r.workers, progress,
                                    times)  # fmt: skip
    torch.set_num_threads(r.threads)  # after rendering, whose in-process path may set 1
    t2 = time.perf_counter()
    cfg = load_config(
        None, model="compact-init", use_pia_gate=r.use_pia_gate,
        train_jsonl=str(train_jsonl), image_root=str(syn),
        dense_coco=str(syn / "annotations.json"), dense_weight=r.dense_weight,
        output_dir=str(work / "run"), per_device_batch_size=r.batch, max_steps=r.steps,
        learning_rate=r.lr, weight_decay=0.01, warmup_ratio=0.05, save_steps=200,
        save_total_limit=1, logging_steps=20, seed=r.seed, max_length=2048,
    )  # fmt: skip
    res = run_train(cfg)
    times["train_s"] = round(time.perf_counter() - t2, 1)
    t2 = time.perf_counter()
    model, proc = vision_stage(work, r.data, r.vision_steps, r.batch, r.vision_lr, r.seed,
                               r.threads)  # fmt: skip
    times["vision_s"] = round(time.perf_counter() - t2, 1)
    times["total_s"] = round(time.perf_counter() - t0, 1)
    model.eval()
    t3 = time.perf_counter()
    regions = tune_regions(model, proc, work, r.validation_images, r.workers, mats)
    times["regions_s"] = round(time.perf_counter() - t3, 1)
    t3 = time.perf_counter()
    figures = evaluate_compact(model, proc, work / "qfbench", r.bench_images_per_material,
                               r.workers, progress, mats)  # fmt: skip
    times["evaluate_s"] = round(time.perf_counter() - t3, 1)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    proc.save_pretrained(out)
    meta = {
        "command": r.command,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "threads": r.threads,
        "arguments": {
            "images": r.images,
            "steps": r.steps,
            "batch": r.batch,
            "lr": r.lr,
            "seed": r.seed,
            "data_seed": r.seed_of_data,
            "use_pia_gate": r.use_pia_gate,
            "dense_weight": r.dense_weight,
            "vision_steps": r.vision_steps,
            "vision_lr": r.vision_lr,
            "tasks": list(COMPACT_TASKS),
            "materials": list(mats),
        },  # fmt: skip
        "final_loss": final_loss(res),
        "times": times,
        "regions": regions,
        "qfbench": strip_answers(figures),
    }
    write_json(out / "metrics.json", meta)
    write_json(work / "answers.json", figures["answers"])
    return meta


def tune_regions(model, processor, work_dir, images: int = 200, workers: int = 2,
                 materials=None) -> dict:  # fmt: skip
    """Choose how the dense map is cut into regions (``region_min_cells``,
    ``region_absorb_cells``) on a validation render of the compact style
    (:data:`VALIDATION_SEED`, ``work_dir/validation``): the setting of :data:`REGION_GRID`
    with the best mean of count accuracy and region F1 (:func:`region_scores`). Sets it in
    ``model.config`` and returns ``{"chosen": ..., "grid": [...]}``."""
    import json

    from qupaint.synthia import generate

    val = Path(work_dir) / "validation"
    cfg = replace(compact_synthia_config(), seed=VALIDATION_SEED,
                  materials=tuple(materials or compact_materials()))  # fmt: skip
    generate(cfg, val, images, workers=workers)
    gt = json.loads((val / "annotations.json").read_text())
    rows = region_scores(dense_maps(model, processor, val, gt), gt)
    best = max(rows, key=lambda r: (r["count_accuracy"] + r["region_f1"]) / 2)
    model.config.region_min_cells = best["region_min_cells"]
    model.config.region_absorb_cells = best["region_absorb_cells"]
    return {"images": images, "seed": VALIDATION_SEED, "chosen": best, "grid": rows}
