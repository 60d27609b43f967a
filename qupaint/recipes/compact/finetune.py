"""LoRA tuning of a compact model on a new material, scored before and after
(:func:`finetune_compact`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qupaint._io import write_json
from qupaint.model.loading import load_model_and_processor
from qupaint.recipes.compact.data import prepare_data
from qupaint.recipes.compact.joint import evaluate_compact, final_loss, strip_answers

__all__ = ["FINETUNE_TARGETS", "FinetuneRecipe", "finetune_compact"]

#: LoRA targets for a new material: the ViT's attention and MLP (a material changes the
#: colours the ViT must read) and the LM's attention projections
FINETUNE_TARGETS = (r".*(vision_tower.*\.(q_proj|k_proj|v_proj|projection_layer|fc1|fc2)"
                    r"|language_model.*\.(q_proj|k_proj|v_proj|o_proj))")  # fmt: skip


@dataclass(frozen=True)
class FinetuneRecipe:
    """How :func:`finetune_compact` tunes: from ``base`` (``"compact"`` or a folder), on
    ``images`` Synthia images (seed ``seed``), rank-``rank`` adapters for ``steps`` steps of
    ``batch`` at learning rate ``lr``, scored on ``bench_images`` held-out QF-Bench images;
    ``workers`` rendering processes, ``threads`` torch threads."""

    base: str = "compact"
    images: int = 1000
    steps: int = 200
    batch: int = 16
    lr: float = 2e-3
    rank: int = 16
    seed: int = 1
    bench_images: int = 8
    workers: int = 2
    threads: int = 2

    def __post_init__(self):
        if (self.images < 10 or self.steps < 1 or self.batch < 1 or self.lr <= 0
                or self.rank < 1):  # fmt: skip
            raise ValueError("images >= 10, steps >= 1, batch >= 1, lr > 0, rank >= 1 required")


def finetune_compact(material: str, work_dir, recipe: FinetuneRecipe | None = None,
                     command: str | None = None,
                     progress: Callable[[str, int, int], None] | None = None,
                     **fields) -> dict:  # fmt: skip
    """LoRA-tune a compact model on one new material as ``recipe`` says (or its fields as
    keywords): render the compact style's Synthia of ``material``, build its corpus, train
    the adapters (:data:`FINETUNE_TARGETS`, the PIA gate in full), merge them, and score the
    model before and after on a held-out QF-Bench of that material. Writes
    ``work_dir/model`` and ``work_dir/finetune.json``; returns the latter's content."""
    from dataclasses import replace

    import torch

    from qupaint.optics import FLAKE_MATERIALS
    from qupaint.train import load_config
    from qupaint.train import train as run_train

    if material not in FLAKE_MATERIALS:
        raise ValueError(f"material: {material!r} is not one of {list(FLAKE_MATERIALS)}")
    r = replace(recipe or FinetuneRecipe(), **fields)
    base, images, steps, batch, lr, rank, seed, bench_images, workers, threads = (
        r.base, r.images, r.steps, r.batch, r.lr, r.rank, r.seed, r.bench_images, r.workers,
        r.threads)  # fmt: skip
    work = Path(work_dir)
    torch.set_num_threads(threads)
    times: dict = {}
    t0 = time.perf_counter()
    syn, train_jsonl = prepare_data(work, (material,), images, seed, workers, progress, times)
    torch.set_num_threads(threads)  # after rendering, whose in-process path may set 1
    model, proc = load_model_and_processor(base)
    before = evaluate_compact(model, proc, work / "qfbench", bench_images, workers, progress,
                              (material,))  # fmt: skip
    del model
    t1 = time.perf_counter()
    cfg = load_config(
        None, model=str(base), train_jsonl=str(train_jsonl), image_root=str(syn),
        dense_coco=str(syn / "annotations.json"), output_dir=str(work / "model"),
        per_device_batch_size=batch, max_steps=steps, learning_rate=lr, weight_decay=0.0,
        warmup_ratio=0.05, save_steps=10_000, logging_steps=20, seed=seed, max_length=2048,
        resume="no", lora={"r": rank, "alpha": 2 * rank, "target_modules": FINETUNE_TARGETS},
    )  # fmt: skip
    res = run_train(cfg)
    times["train_s"] = round(time.perf_counter() - t1, 1)
    model, proc = load_model_and_processor(str(work / "model"))
    after = evaluate_compact(model, proc, work / "qfbench", bench_images, workers, progress,
                             (material,))  # fmt: skip
    times["total_s"] = round(time.perf_counter() - t0, 1)
    meta = {
        "command": command,
        "material": material,
        "base": base,
        "arguments": {
            "images": images,
            "steps": steps,
            "batch": batch,
            "lr": lr,
            "rank": rank,
            "seed": seed,
            "bench_images": bench_images,
        },  # fmt: skip
        "final_loss": final_loss(res),
        "times": times,
        "before": strip_answers(before),
        "after": strip_answers(after),
    }
    write_json(work / "finetune.json", meta)
    return meta
