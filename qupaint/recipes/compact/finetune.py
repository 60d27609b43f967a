"""LoRA tuning of a compact model on a new material, scored before and after
(:func:`finetune_compact`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from qupaint._io import write_json
from qupaint.model.loading import load_model_and_processor
from qupaint.recipes.compact.data import prepare_data
from qupaint.recipes.compact.joint import evaluate_compact, final_loss, strip_answers

__all__ = ["FINETUNE_TARGETS", "finetune_compact"]

#: LoRA targets for a new material: the ViT's attention and MLP (a material changes the
#: colours the ViT must read) and the LM's attention projections
FINETUNE_TARGETS = (r".*(vision_tower.*\.(q_proj|k_proj|v_proj|projection_layer|fc1|fc2)"
                    r"|language_model.*\.(q_proj|k_proj|v_proj|o_proj))")  # fmt: skip


def finetune_compact(material: str, work_dir, base: str = "compact", images: int = 1000,
                     steps: int = 200, batch: int = 16, lr: float = 2e-3, rank: int = 16,
                     seed: int = 1, bench_images: int = 8, workers: int = 2,
                     threads: int = 2, command: str | None = None,
                     progress: Callable[[str, int, int], None] | None = None) -> dict:  # fmt: skip
    """LoRA-tune a compact model (``base``: ``"compact"`` or a folder) on one new material:
    render the compact style's Synthia of ``material`` (``images``, training ``seed``),
    build its corpus, train rank-``rank`` adapters (:data:`FINETUNE_TARGETS`, the PIA gate
    in full) for ``steps``, merge them, and score the model before and after on a held-out
    QF-Bench of that material (``bench_images``). Writes ``work_dir/model`` and
    ``work_dir/finetune.json``; returns the latter's content."""
    import torch

    from qupaint.optics import FLAKE_MATERIALS
    from qupaint.train import load_config
    from qupaint.train import train as run_train

    if material not in FLAKE_MATERIALS:
        raise ValueError(f"material: {material!r} is not one of {list(FLAKE_MATERIALS)}")
    if images < 10 or steps < 1 or batch < 1 or lr <= 0 or rank < 1:
        raise ValueError("images >= 10, steps >= 1, batch >= 1, lr > 0, rank >= 1 required")
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
