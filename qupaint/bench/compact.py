"""The compact QuPAINT model: trained from scratch on CPU.

:func:`train_compact` is the whole recipe, and ``qupaint train-compact`` runs it:

1. render realistic Synthia at 224 px (:func:`compact_synthia_config`, training seed);
2. build QMat-Instruct from it (llava boxes; count, locate, verify, describe, ground);
3. train ``compact-init`` (:func:`~qupaint.model.configuration.compact_config`) on it:
   the dense head learns the per-cell layer classes of the same masks, and the language
   model learns to answer from the true regions written as region tokens
   (``QuPAINTConfig.region_tokens``);
4. train the vision side alone for ``vision_steps`` more (:func:`train_vision_side`): it
   costs about a tenth of a joint step, and the layer class of a described flake is read
   off its dense map (``region_refer``);
5. score it on a held-out QF-Bench of the same style (QF-Bench seeds) with
   :func:`~qupaint.bench.model_eval.evaluate_model_tasks`, the physics detector beside it;
   there the language model reads the regions of the dense head's own map.

Everything is written under one work folder and each stage resumes: rendered shards, the
corpus, and the trainer's checkpoints are reused by a rerun with the same arguments.
``load_model_and_processor("compact")`` loads the result from
:data:`~qupaint.model.loading.COMPACT_DIR`, where ``--out`` writes it.
:func:`ablate_compact` runs the PIA ablation and :func:`finetune_compact` the LoRA tuning
on a new material.
The recipe lives in the bench layer because it spans every stage below it (Synthia,
QMat-Instruct, model, trainer, QF-Bench).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from qupaint._io import write_json
from qupaint.model.loading import COMPACT_DIR, load_model_and_processor

__all__ = ["COMPACT_DIR", "COMPACT_TASKS", "HELD_OUT_MATERIAL", "ablate_compact",
           "compact_materials", "compact_synthia_config", "dense_region_row", "evaluate_compact",
           "image_dialogues",
           "region_detections", "region_scores", "tune_regions",
           "finetune_compact", "flat_figures", "short_descriptions", "train_compact",
           "train_vision_side"]  # fmt: skip

#: the QMat-Instruct tasks it is trained on (dialogue's long turns are left out)
COMPACT_TASKS = ("count", "locate", "verify", "describe", "ground")
#: the QF-Bench material left out of its training, for the LoRA demonstration
HELD_OUT_MATERIAL = "WTe2"


def compact_materials() -> tuple[str, ...]:
    """The materials the compact model is trained and scored on: QF-Bench's eight
    less :data:`HELD_OUT_MATERIAL`."""
    from qupaint.optics import FLAKE_MATERIALS

    return tuple(m for m in FLAKE_MATERIALS if m != HELD_OUT_MATERIAL)


def compact_synthia_config(**overrides):
    """Realistic Synthia (every realism effect, the ``2dmatgmm`` camera) at the compact
    model's 224 px, with 1-4 flakes per image so that a 224-px view is not crowded."""
    from qupaint.synthia import SynthiaConfig

    kw = dict(height=224, width=224, flakes_per_image=(1, 4))
    kw.update(overrides)
    return SynthiaConfig.realistic(**kw)


def short_descriptions(src, dst) -> int:
    """Copy QMat-Instruct JSONL ``src`` to ``dst`` with each description answer cut to its
    first sentence (the layer class and number: "This is a thick MoS2 flake (139
    layers)."). The physics explanation that follows is most of a description's tokens
    and, at this model's size, drowns the answer tokens of every task in the loss.
    Returns the number of answers cut."""
    import json

    from qupaint._io import atomic_write_bytes

    lines, cut = [], 0
    for line in Path(src).read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        if rec.get("meta", {}).get("task") == "describe":
            turn = rec["conversations"][1]
            head, sep, _ = turn["value"].partition(". ")
            if sep:
                turn["value"], cut = head + ".", cut + 1
        lines.append(json.dumps(rec))
    atomic_write_bytes(Path(dst), ("\n".join(lines) + "\n").encode())
    return cut


def image_dialogues(src, dst, seed: int = 0) -> int:
    """Copy QMat-Instruct JSONL ``src`` (llava) to ``dst`` with the records of each image
    joined into one multi-turn record, its turns in a seeded random order per image. The
    image and its region tokens are then read once for all of its questions: a sample's
    tokens are mostly the image and the prompt (about 270 of 335 in the compact corpus,
    with 25 answer tokens), so this trains on about three times the answers per second.
    Returns the number of records written.

    >>> import json, tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> rec = lambda i, q: {"id": f"{i}-{q}", "image": f"{i}.png", "meta": {"task": q},
    ...     "conversations": [{"from": "human", "value": "<image>\\n" + q + "?"},
    ...                       {"from": "gpt", "value": q + "."}]}
    >>> _ = (d / "a.jsonl").write_text("\\n".join(json.dumps(rec(i, q))
    ...                                 for i in (0, 1) for q in ("count", "verify")))
    >>> image_dialogues(d / "a.jsonl", d / "b.jsonl")
    2
    >>> r = json.loads((d / "b.jsonl").read_text().splitlines()[0])
    >>> sorted(r["meta"]["tasks"]), [t["value"].startswith("<image>") for t in r["conversations"]]
    (['count', 'verify'], [True, False, False, False])
    """
    import json

    from qupaint._io import atomic_write_bytes

    groups: dict = {}
    for line in Path(src).read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            groups.setdefault(rec["image"], []).append(rec)
    rng = np.random.default_rng(seed)
    lines = []
    for image, recs in groups.items():
        turns = []
        for k in rng.permutation(len(recs)):
            conv = recs[k]["conversations"]
            turns += [{"from": "human", "value": conv[0]["value"].replace("<image>\n", "")},
                      *conv[1:]]  # fmt: skip
        turns[0] = {"from": "human", "value": "<image>\n" + turns[0]["value"]}
        meta = {**recs[0].get("meta", {}), "task": "multi",
                "tasks": [r.get("meta", {}).get("task") for r in recs]}  # fmt: skip
        lines.append(json.dumps({"id": f"{recs[0]['id']}-all", "image": image,
                                 "conversations": turns, "meta": meta}))  # fmt: skip
    atomic_write_bytes(Path(dst), ("\n".join(lines) + "\n").encode())
    return len(lines)


def _final_loss(res: dict) -> float | None:
    """The last logged training loss of a :func:`qupaint.train.train` result."""
    return next((h["loss"] for h in reversed(res["log_history"]) if "loss" in h), None)


def _figures(res: dict) -> dict:
    """Evaluation figures without the per-question answers."""
    return {k: v for k, v in res.items() if k != "answers"}


def _stage(progress, name: str, done: int, total: int) -> None:
    if progress is not None:
        progress(name, done, total)


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
    _stage(progress, "evaluate", 0, 1)
    gen = {"temperature": 0.0, "max_new_tokens": 320, "constrain": True, **gen}
    res = evaluate_model_tasks(model, processor, gt, **gen)
    res["detector_reference"] = detector_task_row(gt)
    if getattr(model.config, "region_tokens", 0):
        res["dense_regions_reference"] = dense_region_row(model, processor, gt)
    _stage(progress, "evaluate", 1, 1)
    return res


def _prepare_data(work: Path, materials, images: int, seed: int, workers: int, progress,
                  times: dict) -> tuple[Path, Path]:  # fmt: skip
    """Render (or resume) the compact style's Synthia of ``materials`` in ``work/synthia``
    and build its corpus in ``work/qmat``; returns (image folder, training JSONL: short
    descriptions, one multi-turn record per image)."""
    from qupaint.instruct.builder import build_corpus
    from qupaint.synthia import generate

    t0 = time.perf_counter()
    syn = work / "synthia"
    cfg = replace(compact_synthia_config(), seed=seed, materials=tuple(materials))
    generate(cfg, syn, images, workers=workers,
             progress=lambda d, n: _stage(progress, "render", d, n))  # fmt: skip
    times["render_s"] = round(time.perf_counter() - t0, 1)
    t1 = time.perf_counter()
    corpus = work / "qmat"
    if not (corpus / "llava" / "train.jsonl").is_file():
        build_corpus(syn / "annotations.json", syn, corpus, ("llava",), seed, COMPACT_TASKS,
                     workers=workers,
                     progress=lambda d, n: _stage(progress, "corpus", d, n))  # fmt: skip
    short = corpus / "llava" / "train_short.jsonl"
    if not short.is_file():
        short_descriptions(corpus / "llava" / "train.jsonl", short)
    train_jsonl = corpus / "llava" / "train_dialogues.jsonl"
    if not train_jsonl.is_file():
        image_dialogues(short, train_jsonl, seed)
    times["corpus_s"] = round(time.perf_counter() - t1, 1)
    return syn, train_jsonl


def train_compact(work_dir, out_dir=None, images: int = 10000, steps: int = 650,
                  batch: int = 16, lr: float = 2e-3, seed: int = 0, use_pia_gate: bool = True,
                  dense_weight: float = 1.0, bench_images_per_material: int = 4,
                  workers: int = 2, threads: int = 2, command: str | None = None,
                  materials=None, data_dir=None, data_seed: int | None = None,
                  validation_images: int = 200, vision_steps: int = 1000,
                  vision_lr: float = 1e-3,
                  progress: Callable[[str, int, int], None] | None = None) -> dict:  # fmt: skip
    """Run the compact recipe in ``work_dir`` and save the model to ``out_dir`` (default
    ``work_dir/model``); returns the metadata written to ``out_dir/metrics.json``: the
    arguments, the command, stage times and the held-out per-task figures.

    After the joint training, the vision side trains alone for ``vision_steps`` at peak
    rate ``vision_lr`` (:func:`train_vision_side`, same data and batch; the result is kept
    in ``work_dir/vision`` and reused by a rerun).

    Before scoring, :func:`tune_regions` sets how the dense map is cut into regions on
    ``validation_images`` images of a validation render. ``seed`` seeds the rendering, the
    corpus, the model's initialisation and the data order. ``data_dir`` (default ``work_dir``) and ``data_seed`` (default ``seed``) let
    several runs share one rendered data set (:func:`ablate_compact`)."""
    import torch

    from qupaint.train import load_config
    from qupaint.train import train as run_train

    if images < 10 or steps < 1 or batch < 1 or lr <= 0 or vision_steps < 0 or vision_lr <= 0:
        raise ValueError("images >= 10, steps >= 1, batch >= 1, lr > 0, vision_steps >= 0 "
                         "and vision_lr > 0 required")  # fmt: skip
    work = Path(work_dir)
    out = Path(out_dir) if out_dir else work / "model"
    torch.set_num_threads(threads)
    times: dict = {}
    t0 = time.perf_counter()
    mats = tuple(materials or compact_materials())
    data_seed = seed if data_seed is None else int(data_seed)
    syn, train_jsonl = _prepare_data(Path(data_dir) if data_dir else work, mats, images,
                                     data_seed, workers, progress, times)  # fmt: skip
    torch.set_num_threads(threads)  # after rendering, whose in-process path may set 1
    t2 = time.perf_counter()
    cfg = load_config(
        None, model="compact-init", use_pia_gate=use_pia_gate,
        train_jsonl=str(train_jsonl), image_root=str(syn),
        dense_coco=str(syn / "annotations.json"), dense_weight=dense_weight,
        output_dir=str(work / "run"), per_device_batch_size=batch, max_steps=steps,
        learning_rate=lr, weight_decay=0.01, warmup_ratio=0.05, save_steps=200,
        save_total_limit=1, logging_steps=20, seed=seed, max_length=2048,
    )  # fmt: skip
    res = run_train(cfg)
    times["train_s"] = round(time.perf_counter() - t2, 1)
    t2 = time.perf_counter()
    model, proc = _vision_stage(work, Path(data_dir) if data_dir else work, vision_steps, batch,
                                vision_lr, seed, threads)  # fmt: skip
    times["vision_s"] = round(time.perf_counter() - t2, 1)
    times["total_s"] = round(time.perf_counter() - t0, 1)
    model.eval()
    t3 = time.perf_counter()
    regions = tune_regions(model, proc, work, validation_images, workers, mats)
    times["regions_s"] = round(time.perf_counter() - t3, 1)
    t3 = time.perf_counter()
    figures = evaluate_compact(model, proc, work / "qfbench", bench_images_per_material,
                               workers, progress, mats)  # fmt: skip
    times["evaluate_s"] = round(time.perf_counter() - t3, 1)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    proc.save_pretrained(out)
    meta = {
        "command": command,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "threads": threads,
        "arguments": {
            "images": images,
            "steps": steps,
            "batch": batch,
            "lr": lr,
            "seed": seed,
            "data_seed": data_seed,
            "use_pia_gate": use_pia_gate,
            "dense_weight": dense_weight,
            "vision_steps": vision_steps,
            "vision_lr": vision_lr,
            "tasks": list(COMPACT_TASKS),
            "materials": list(mats),
        },  # fmt: skip
        "final_loss": _final_loss(res),
        "times": times,
        "regions": regions,
        "qfbench": _figures(figures),
    }
    write_json(out / "metrics.json", meta)
    write_json(work / "answers.json", figures["answers"])
    return meta


def _vision_stage(work: Path, data: Path, steps: int, batch: int, lr: float, seed: int,
                  threads: int):  # fmt: skip
    """The jointly trained model of ``work/run`` with its vision side trained alone for
    ``steps`` more (:func:`train_vision_side`), saved in (and, on a rerun, loaded from)
    ``work/vision``; ``steps=0``: the joint model as it is. Returns (model, processor)."""
    done = work / "vision"
    if steps and (done / "config.json").is_file():
        return load_model_and_processor(str(done))
    model, proc = load_model_and_processor(str(work / "run"))
    if steps:
        train_vision_side(model, proc, data, work / "vision-run", steps, batch, lr, seed, threads)
        model.save_pretrained(done)
        proc.save_pretrained(done)
    return model, proc


#: the seed of the validation render that sets how the dense map is cut into regions
#: (neither the training seeds nor QF-Bench's)
VALIDATION_SEED = 2_000_003
#: the (region_min_cells, region_absorb_cells) tried by :func:`tune_regions`
REGION_GRID = tuple((m, a) for m in (3, 6, 12) for a in (0, 12, 24, 48, 96))


def region_detections(maps, gt: dict, classes: int, min_cells: int,
                      absorb_cells: int) -> list[dict]:  # fmt: skip
    """COCO detections (pixel ``bbox``, score by rank: larger regions first) of the regions
    (:func:`~qupaint.model.modeling.map_regions`) of dense class maps ``maps``
    (``{image_id: class map [h, w]}``) of the images of COCO ``gt``."""
    from qupaint.model.modeling import map_regions

    size = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    dets = []
    for iid, lab in maps.items():
        w, h = size[iid]
        boxes, cats = map_regions(lab, classes, min_cells, absorb_cells)
        dets += [{"image_id": iid, "category_id": c, "score": 1.0 / (1 + k),
                  "bbox": [x1 * w, y1 * h, (x2 - x1) * w, (y2 - y1) * h]}
                 for k, ((x1, y1, x2, y2), c) in enumerate(zip(boxes, cats, strict=True))]  # fmt: skip
    return dets


def region_scores(maps, gt: dict, grid=REGION_GRID, classes: int = 4) -> list[dict]:
    """How well the regions of dense class maps match the truth, per setting of ``grid``:
    exact per-class count accuracy (each image and class: as many regions as flakes) and
    the F1 of regions against flakes (box IoU >= 0.5, same class, one-to-one, greedy by
    IoU). ``maps``: ``{image_id: class map [h, w]}``; ``gt``: a COCO dict."""
    from qupaint.bench.metrics import box_iou_xywh, by_image

    truth = by_image(gt["annotations"], gt["images"])
    out = []
    for min_cells, absorb in grid:
        found = by_image(region_detections(maps, gt, classes, min_cells, absorb))
        right = total = tp = n_pred = n_true = 0
        for iid in maps:
            dets, anns = found.get(iid, []), truth[iid]
            for c in range(1, classes):
                right += (sum(d["category_id"] == c for d in dets)
                          == sum(a["category_id"] == c for a in anns))  # fmt: skip
                total += 1
            n_pred, n_true = n_pred + len(dets), n_true + len(anns)
            if dets and anns:
                iou = box_iou_xywh(np.array([d["bbox"] for d in dets])[:, None],
                                   np.array([a["bbox"] for a in anns])[None])  # fmt: skip
                same = (np.array([d["category_id"] for d in dets])[:, None]
                        == np.array([a["category_id"] for a in anns]))  # fmt: skip
                iou[~same] = 0
                while iou.max() >= 0.5:
                    i, j = np.unravel_index(iou.argmax(), iou.shape)
                    tp, iou[i, :], iou[:, j] = tp + 1, 0, 0
        f1 = 2 * tp / max(n_pred + n_true, 1)
        out.append({"region_min_cells": min_cells, "region_absorb_cells": absorb,
                    "count_accuracy": right / max(total, 1), "region_f1": f1})  # fmt: skip
    return out


def dense_maps(model, processor, image_dir, gt: dict, batch: int = 16,
               probs: bool = False) -> dict:  # fmt: skip
    """The dense head's class map [h, w] of every image of COCO ``gt`` in ``image_dir``
    (:meth:`~qupaint.model.modeling.QuPAINTModel.dense_map`: the vision side only);
    ``probs=True``: its class probabilities [h, w, classes] instead."""
    import torch

    from qupaint.bench.model_eval import resolve_image

    out = {}
    ims = gt["images"]
    for k in range(0, len(ims), batch):
        part = ims[k : k + batch]
        pv = torch.cat([processor.pixel_values(resolve_image(Path(image_dir), im)) for im in part])
        cls = model.model.dense_map(pv.to(model.dtype))
        if probs:
            with torch.no_grad():
                cls = model.model.dense_grid_logits().float().softmax(-1).cpu().numpy()
        out.update({im["id"]: c for im, c in zip(part, cls, strict=True)})
    return out


def dense_region_row(model, processor, gt_json, images_dir=None) -> dict:
    """The compact model's vision side alone on a QF-Bench: its dense head's regions
    (:meth:`~qupaint.model.modeling.QuPAINTModel.regions`, the text its LM reads) as
    detections, scored like the physics detector's reference row
    (:func:`~qupaint.bench.model_eval.detections_task_row`), and
    ``layer_class_accuracy_referred``: the described flakes' class read off the dense map
    at their boxes (:func:`~qupaint.model.modeling.box_class`, what a ``region_refer``
    model's LM is given)."""
    from qupaint.bench.metrics import load_json
    from qupaint.bench.model_eval import detections_task_row, task_questions
    from qupaint.model.modeling import box_class

    gt = load_json(gt_json)
    root = Path(images_dir) if images_dir else Path(gt_json).parent
    cfg = model.config
    probs = dense_maps(model, processor, root, gt, probs=True)
    maps = {k: p.argmax(-1) for k, p in probs.items()}
    dets = region_detections(maps, gt, cfg.dense_classes, cfg.region_min_cells,
                             cfg.region_absorb_cells)  # fmt: skip
    row = detections_task_row(gt, dets)
    right = []
    for task, im, _, truth in task_questions(gt, gt["images"]):
        if task == "describe":
            (cat, (x, y, w, h)), size = truth, (im["width"], im["height"])
            box = (x / size[0], y / size[1], (x + w) / size[0], (y + h) / size[1])
            right.append(box_class(probs[im["id"]], box) == cat)
    row["layer_class_accuracy_referred"] = float(np.mean(right)) if right else None
    return row


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


#: the parts of a compact model that the PIA gate can change: it gates the ViT's patch
#: tokens, which only the dense head reads (the LM reads region tokens, discrete text)
VISION_PREFIXES = ("model.vision_tower.", "model.pia_gate.", "model.dense_head.")


def _vision_side_loss(model, pixel_values, dense_labels):
    """The dense head's cross-entropy of ``pixel_values`` against ``dense_labels``: the
    only loss that reaches the vision side of a region-token model."""
    import torch

    model.model._gated_image_features(pixel_values)
    logits = model.dense_logits()
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), dense_labels.reshape(-1).to(logits.device),
        ignore_index=-100)  # fmt: skip


def train_vision_side(model, processor, data_dir, out_dir, steps: int, batch: int = 16,
                      lr: float = 2e-3, seed: int = 0, threads: int = 2) -> dict:  # fmt: skip
    """Train only the vision side (:data:`VISION_PREFIXES`) of ``model`` on the dense
    labels of the images of ``data_dir``'s training corpus, with the compact recipe's
    optimiser settings (the transformers Trainer, AdamW, cosine, 5 % warmup, weight decay
    0.01, ``seed`` for the data order) and its steps and batch. In the joint recipe no
    gradient passes between the LM and the vision side (the LM reads the true regions),
    so this is the vision half of it at the same budget, for :func:`ablate_compact`'s
    ``lm_from``. Returns ``{"train_s", "final_loss"}``."""
    import torch
    from torch.utils.data import Dataset
    from transformers import Trainer, TrainingArguments

    from qupaint.train.data import patch_class_grids, read_jsonl

    data = Path(data_dir)
    names = sorted({r["image"] for r in read_jsonl(data / "qmat" / "llava" /
                                                   "train_dialogues.jsonl")})  # fmt: skip
    vc = model.config.vision_config
    grids = patch_class_grids(data / "synthia" / "annotations.json",
                              int(vc.image_size[0]) // int(vc.patch_size[0]) * model.config.dense_sub)  # fmt: skip

    class Images(Dataset):
        def __len__(self):
            return len(names)

        def __getitem__(self, i):
            pv = processor.pixel_values(data / "synthia" / names[i])
            return {"pixel_values": pv, "dense_labels": torch.as_tensor(grids[names[i]])[None]}

    class VisionSide(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, pixel_values, dense_labels):
            return {"loss": _vision_side_loss(self.inner, pixel_values, dense_labels)}

    for name, prm in model.named_parameters():
        prm.requires_grad_(name.startswith(VISION_PREFIXES))
    torch.set_num_threads(threads)
    args = TrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=batch, learning_rate=lr,
        weight_decay=0.01, max_steps=steps, warmup_steps=0.05, lr_scheduler_type="cosine",
        optim="adamw_torch", save_strategy="no", logging_steps=20, seed=seed, data_seed=seed,
        use_cpu=not torch.cuda.is_available(), report_to="none", remove_unused_columns=False,
    )  # fmt: skip
    collate = lambda items: {k: torch.cat([it[k] for it in items]) for k in items[0]}  # noqa: E731
    t0 = time.perf_counter()
    res = Trainer(model=VisionSide(), args=args, train_dataset=Images(),
                  data_collator=collate).train()  # fmt: skip
    for prm in model.parameters():
        prm.requires_grad_(True)
    return {"train_s": round(time.perf_counter() - t0, 1), "final_loss": res.training_loss}


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
            "times": trained, "regions": regions, "qfbench": _figures(figures)}  # fmt: skip
    write_json(done, meta)
    return meta


def ablate_compact(work_dir, seeds=(0, 1, 2), images: int = 10000, steps: int = 1500,
                   batch: int = 16, lr: float = 2e-3, bench_images_per_material: int = 4,
                   workers: int = 2, threads: int = 2, command: str | None = None,
                   materials=None, validation_images: int = 200, lm_from=None,
                   data_dir=None, vision_steps: int = 1000,
                   progress: Callable[[str, int, int], None] | None = None) -> dict:  # fmt: skip
    """The PIA ablation (issue 27): the compact recipe with and without the PIA gate, at the
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
                meta = train_compact(work / f"{arm}-s{seed}", images=images, steps=steps,
                                     batch=batch, lr=lr, seed=seed, use_pia_gate=gate,
                                     bench_images_per_material=bench_images_per_material,
                                     workers=workers, threads=threads, materials=materials,
                                     data_dir=work / "data", data_seed=0,
                                     validation_images=validation_images,
                                     vision_steps=vision_steps,
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
    syn, train_jsonl = _prepare_data(work, (material,), images, seed, workers, progress, times)
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
        "final_loss": _final_loss(res),
        "times": times,
        "before": _figures(before),
        "after": _figures(after),
    }
    write_json(work / "finetune.json", meta)
    return meta
