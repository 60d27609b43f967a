"""The demo's model part: the whole pipeline (Synthia, QMat-Instruct, a tiny QuPAINT model,
QF-Bench) on CPU, and the shipped compact model's answers."""

from __future__ import annotations

import json
from pathlib import Path

from qupaint._io import read_rgb, write_json
from qupaint.boxes import xyxy_to_xywh
from qupaint.categories import CATEGORY_IDS, CATEGORY_NAMES, CATEGORY_PHRASES
from qupaint.demo.files import save_fig

__all__ = ["compact_answers", "pipeline"]


def pipeline(out: Path, steps: int = 120, log=None) -> list[Path]:
    """The whole system end to end on CPU in a few minutes: Synthia -> QMat-Instruct ->
    a few steps of the tiny QuPAINT model -> QF-Bench evaluation (model and the physics
    detector). The tiny model is random and trained for seconds: its AP shows the plumbing
    works, not what a real model achieves."""
    from qupaint.bench.metrics import evaluate_detection
    from qupaint.bench.model_eval import evaluate_model_detection
    from qupaint.bench.qfbench import build_qfbench, detect_coco
    from qupaint.instruct import build_corpus
    from qupaint.model import QuPAINTProcessor
    from qupaint.model.modeling import QuPAINTForConditionalGeneration
    from qupaint.synthia import SynthiaConfig, generate
    from qupaint.train import load_config, train

    def say(msg):
        if log:
            log(msg)

    small = SynthiaConfig(height=160, width=160, radius_px=(8.0, 36.0), flakes_per_image=(2, 4))
    say("Synthia: 48 images (36 train, 6 val, 6 test by image)")
    generate(small, out / "synthia", 48, shard_size=16)
    say("QMat-Instruct: counting, localisation, verification")
    build_corpus(out / "synthia" / "annotations.json", out_path=out / "qmat",
                 tasks=("count", "locate", "verify"), split=(0.75, 0.125, 0.125))  # fmt: skip
    say(f"training the tiny QuPAINT model for {steps} steps")
    run_dir = out / "tiny_model"
    res = train(load_config(None, model="tiny", train_jsonl=str(out / "qmat/llava/train.jsonl"),
                            image_root=str(out / "synthia"), output_dir=str(run_dir),
                            max_steps=steps, learning_rate=2e-3, save_steps=10_000,
                            logging_steps=5, resume="no"))  # fmt: skip
    say("QF-Bench (held-out seeds): 1 image per material")
    build_qfbench(out / "qfbench", 1, config=small)
    gt = out / "qfbench" / "annotations.json"
    model = QuPAINTForConditionalGeneration.from_pretrained(run_dir)
    proc = QuPAINTProcessor.from_pretrained(run_dir)
    m = evaluate_model_detection(model, proc, gt, temperature=0.0, max_new_tokens=96)
    d = evaluate_detection(gt, detect_coco(gt))
    report = {
        "train_loss": [h["loss"] for h in res["log_history"] if "loss" in h],
        "tiny_model": {k: m[k] for k in ("AP", "AP50", "AP75", "Mono", "parse_failures")},
        "physics_detector": {k: d[k] for k in ("AP", "AP50", "AP75", "Mono")},
        "example_answer": m["answers"][0][:400],
    }
    path = out / "pipeline.json"
    write_json(path, report)
    return [path, run_dir / "model.safetensors"]


def compact_answers(out: Path, materials=("MoS2", "graphene", "WSe2", "hBN"),
                    log=None) -> list[Path]:
    """The shipped compact QuPAINT model (``compact``) on one held-out QF-Bench image of each
    of ``materials`` (the compact style: realistic Synthia at 224 px, seeds no training
    image used): its constrained answers to the count, "is there a monolayer?", "describe
    the flake at <box>" (its layer class) and "detect all flakes" questions next to the
    truth (``compact_answers.json``), and its boxes beside the true ones
    (``compact_answers.png``). Without shipped weights it says so and skips."""
    from qupaint.bench.dataset import resolve_image
    from qupaint.bench.metrics import by_image
    from qupaint.bench.model_eval import task_questions
    from qupaint.bench.qfbench import build_qfbench
    from qupaint.bench.scoring import score_answer
    from qupaint.model import load_model_and_processor
    from qupaint.model.inference import generate_answers
    from qupaint.model.loading import COMPACT_DIR
    from qupaint.recipes.compact import compact_synthia_config

    if not (COMPACT_DIR / "config.json").is_file():
        if log:
            log(f"compact model: no weights in {COMPACT_DIR} (qupaint train-compact); skipped")
        return []
    bench = out / "qfbench"
    build_qfbench(bench, 1, materials, config=compact_synthia_config())
    gt = json.loads((bench / "annotations.json").read_text())
    items = task_questions(gt, gt["images"])
    model, proc = load_model_and_processor("compact")
    model.eval()
    answers = generate_answers(model, proc, [resolve_image(bench, im) for _, im, _, _ in items],
                               [q for _, _, q, _ in items], temperature=0.0,
                               max_new_tokens=192, constrain=True,
                               tasks=[t for t, _, _, _ in items])  # fmt: skip
    truths = by_image(gt["annotations"], gt["images"])
    rows, right, asked = [], 0, 0
    for (task, im, q, truth), text in zip(items, answers, strict=True):
        if task in ("count", "verify", "describe"):
            ok = score_answer(task, text, truth)[1]
            if task == "count":
                want = truth[1]
            elif task == "verify":
                want = truth
            else:
                want = CATEGORY_PHRASES[truth[0]]
        else:
            want = [{"category": CATEGORY_NAMES[x["category_id"]],
                     "bbox": [round(v, 1) for v in x["bbox"]]}
                    for x in truths[im["id"]]]  # fmt: skip
            ok = None
        if ok is not None:
            right, asked = right + bool(ok), asked + 1
        rows.append({"image": im["file_name"], "task": task, "question": q, "answer": text,
                     "truth": want, "right": ok})  # fmt: skip
    write_json(out / "compact_answers.json", {"right": right, "asked": asked, "answers": rows})
    _plot_compact(bench, gt, [r for r in rows if r["task"] == "locate"],
                  out / "compact_answers.png")  # fmt: skip
    if log:
        log(f"compact model on {len(gt['images'])} held-out images: {right}/{asked} count, "
            "monolayer and layer-class answers right; e.g.")  # fmt: skip
        shown = rows[:4] + [next(r for r in rows if r["task"] == t) for t in ("describe", "locate")
                            if any(r["task"] == t for r in rows)]  # fmt: skip
        for r in shown:
            log(f"  Q: {r['question']}\n  A: {r['answer'][:160]}\n  truth: {r['truth']}")
    return [out / "compact_answers.json", out / "compact_answers.png"]


def _plot_compact(bench: Path, gt: dict, located: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    from qupaint.bench.dataset import resolve_image
    from qupaint.instruct.parse import parse_answer

    colors = {1: "red", 2: "orange", 3: "deepskyblue"}
    ims = {im["file_name"]: im for im in gt["images"]}
    fig, axes = plt.subplots(2, len(located), figsize=(3.2 * len(located), 6.6), squeeze=False)
    for k, r in enumerate(located):
        im = ims[r["image"]]
        img = read_rgb(resolve_image(bench, im))
        pred = parse_answer(r["answer"], "llava", image_size=(img.shape[1], img.shape[0]))
        truth = [(t["bbox"], CATEGORY_IDS[t["category"]]) for t in r["truth"]]
        boxes = [(xyxy_to_xywh(b), c)
                 for b, c in zip(pred.boxes, pred.category_ids, strict=True)]  # fmt: skip
        for row, (title, dets) in enumerate((("truth", truth), ("compact model", boxes))):
            ax = axes[row, k]
            ax.imshow(img)
            for (x, y, w, h), c in dets:
                ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, color=colors.get(c, "w"),
                                           lw=1.5))  # fmt: skip
                ax.text(x, y - 2, CATEGORY_NAMES.get(c, "?"), color=colors.get(c, "w"),
                        fontsize=7)  # fmt: skip
            ax.set_title(f"{title}: {im.get('material', '')}", fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    save_fig(fig, path)

