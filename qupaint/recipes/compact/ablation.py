"""The PIA ablation of the compact recipe: every run with and without the gate, same data and
budget, over several training seeds (:func:`ablate_compact`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from qupaint._io import write_json
from qupaint.model.loading import load_model_and_processor
from qupaint.recipes.compact.config import CompactRecipe
from qupaint.recipes.compact.joint import (
    evaluate_compact,
    strip_answers,
    train_compact,
    tune_regions,
)
from qupaint.recipes.compact.vision import VISION_PREFIXES, train_vision_side

__all__ = ["ablate_compact", "flat_figures"]


def _vision_arm(work: Path, lm_from, data_dir, seed: int, gate: bool, steps: int, batch: int,
                lr: float, workers: int, threads: int, bench_images_per_material: int,
                materials, validation_images: int, progress) -> dict:  # fmt: skip
    """One arm of the vision-side ablation: a fresh vision side (gate on or off, init
    ``seed``) trained by :func:`train_vision_side`, read by the LM of ``lm_from``, regions
    tuned and the model scored as :func:`train_compact` does. Resumes from
    ``work/model/metrics.json``."""
    import json

    done = work / "model" / "metrics.json"
    if done.is_file():
        return json.loads(done.read_text())
    lm, proc = load_model_and_processor(str(lm_from))
    model, _ = load_model_and_processor("compact-init", use_pia_gate=gate, seed=seed)
    own = {k: v for k, v in lm.state_dict().items() if not k.startswith(VISION_PREFIXES)}
    missing = set(model.state_dict()) - set(own)
    if any(not k.startswith(VISION_PREFIXES) for k in missing):
        raise ValueError(f"lm_from: {lm_from} is not a compact model like compact-init")
    model.load_state_dict(own, strict=False)
    model.attach_tokenizer(proc.tokenizer)
    trained = train_vision_side(model, proc, data_dir, work / "run", steps, batch, lr, seed,
                                threads)  # fmt: skip
    model.eval()
    regions = tune_regions(model, proc, work.parent, validation_images, workers, materials)
    figures = evaluate_compact(model, proc, work.parent / "qfbench", bench_images_per_material,
                               workers, progress, materials)  # fmt: skip
    (work / "model").mkdir(parents=True, exist_ok=True)
    model.save_pretrained(work / "model")
    proc.save_pretrained(work / "model")
    meta = {"arguments": {"seed": seed, "use_pia_gate": gate, "steps": steps, "batch": batch,
                          "lr": lr, "lm_from": str(lm_from), "data_dir": str(data_dir)},
            "times": trained, "regions": regions, "qfbench": strip_answers(figures)}  # fmt: skip
    write_json(done, meta)
    return meta


def ablate_compact(work_dir, seeds=(0, 1, 2), images: int = 10000, steps: int = 1500,
                   batch: int = 16, lr: float = 2e-3, bench_images_per_material: int = 4,
                   workers: int = 2, threads: int = 2, command: str | None = None,
                   materials=None, validation_images: int = 200, lm_from=None,
                   data_dir=None, vision_steps: int = 1000,
                   progress: Callable[[str, int, int], None] | None = None) -> dict:  # fmt: skip
    """The PIA ablation: the compact recipe with and without the PIA gate, at the
    same budget, for each training seed of ``seeds``, all on one rendered data set
    (``work_dir/data``, data seed 0) and one held-out QF-Bench. Each run lives in
    ``work_dir/{pia,no_pia}-s{seed}`` and resumes. Writes and returns
    ``work_dir/ablation.json``: per arm and figure the values per seed, their mean and
    spread (half the max - min range).

    ``lm_from`` (a trained compact model's folder) ablates the vision side alone, which is
    all the gate touches: each arm trains a fresh vision side (:func:`train_vision_side`,
    ``steps`` x ``batch`` images of ``data_dir``, the work folder of the run that trained
    ``lm_from``) and reads it with ``lm_from``'s language model. About a tenth of the full
    runs' time; the seed spread is then the vision side's alone. Without it, each run is
    :func:`train_compact` with ``vision_steps`` after its joint steps."""
    work = Path(work_dir)
    runs: dict = {"pia": [], "no_pia": []}
    if lm_from is not None and data_dir is None:
        raise ValueError("lm_from: pass data_dir too (the work folder of the run that trained it)")
    for seed in seeds:
        for arm, gate in (("pia", True), ("no_pia", False)):
            if lm_from is not None:
                meta = _vision_arm(work / f"{arm}-s{seed}", lm_from, Path(data_dir), seed, gate,
                                   steps, batch, lr, workers, threads,
                                   bench_images_per_material, materials, validation_images,
                                   progress)  # fmt: skip
            else:
                meta = train_compact(CompactRecipe(
                    work / f"{arm}-s{seed}", images=images, steps=steps, batch=batch, lr=lr,
                    seed=seed, use_pia_gate=gate,
                    bench_images_per_material=bench_images_per_material, workers=workers,
                    threads=threads, materials=materials, data_dir=work / "data", data_seed=0,
                    validation_images=validation_images, vision_steps=vision_steps),
                    progress=progress)  # fmt: skip
            runs[arm].append({"seed": seed, "train_s": meta["times"]["train_s"],
                              **flat_figures(meta["qfbench"])})  # fmt: skip
    table: dict = {}
    for arm, rows in runs.items():
        keys = [k for k in rows[0] if k not in ("seed", "train_s")]
        table[arm] = {}
        for k in keys:
            v = np.array([r[k] for r in rows], float)
            table[arm][k] = {"values": v.tolist(), "mean": float(v.mean()),
                             "spread": float((v.max() - v.min()) / 2)}  # fmt: skip
    meta = {"command": command, "seeds": list(seeds), "steps": steps, "images": images,
            "batch": batch, "lr": lr, "lm_from": None if lm_from is None else str(lm_from),
            "runs": runs, "table": table}  # fmt: skip
    write_json(work / "ablation.json", meta)
    return meta


def flat_figures(figures: dict) -> dict[str, float]:
    """``{"count/exact_count_accuracy": 0.6, "locate/AP50": ...}`` from per-task figures
    (:func:`~qupaint.bench.model_eval.evaluate_model_tasks`), questions counts left out."""
    return {f"{t}/{k}": float(v) for t, d in figures["tasks"].items() for k, v in d.items()
            if k != "questions"}  # fmt: skip
