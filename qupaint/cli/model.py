"""``qupaint train``, ``qupaint predict`` and ``qupaint demo``."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from qupaint._io import read_rgb, write_json
from qupaint.boxes import xyxy_to_xywh
from qupaint.cli._common import app, console, load_microscope, user_errors
from qupaint.constants import REFERENCE_UM_PER_PX


@app.command()
def train(
    config: Path = typer.Option(..., help="YAML (see configs/); keys = TrainConfig fields"),
    set_: list[str] = typer.Option(None, "--set", help="Override: key=value (repeatable)"),
):
    """Instruction-tune a QuPAINT model on QMat-Instruct (HF Trainer; resumable).

    Multi-GPU: torchrun --nproc_per_node N -m qupaint.train --config X.yaml
    (or accelerate launch with configs/accelerate_*.yaml; DeepSpeed via deepspeed: in the YAML).
    """
    import yaml

    from qupaint.train import load_config
    from qupaint.train import train as run_train

    with user_errors():
        kw = {}
        for item in set_ or []:
            k, sep, v = item.partition("=")
            if not sep:
                raise ValueError(f"--set expects key=value; got {item!r}")
            kw[k] = yaml.safe_load(v)
        res = run_train(load_config(config, **kw))
    console.print(
        f"trained {res['global_step']} steps, mean loss {res['train_loss']:.4f}; "
        f"model in {res['output_dir']}"
    )


@app.command("train-compact")
def train_compact_cmd(
    work: Path = typer.Option(
        Path("runs/compact"), help="Work folder (data, corpus, run; each stage resumes)"
    ),
    out: Path = typer.Option(None, help="Model folder to write (default WORK/model)"),
    images: int = typer.Option(10000, help="Realistic Synthia images rendered (224 px)"),
    steps: int = typer.Option(650, help="Optimiser steps"),
    batch: int = typer.Option(16, help="Samples per step"),
    lr: float = typer.Option(2e-3, help="Peak learning rate (cosine)"),
    vision_steps: int = typer.Option(
        1000, help="Then steps of the vision side alone (dense head; a tenth of a joint step)"
    ),
    vision_lr: float = typer.Option(1e-3, help="Peak learning rate of those steps"),
    seed: int = typer.Option(0, help="Synthia, corpus and training seed"),
    pia: bool = typer.Option(
        True, "--pia/--no-pia", help="With the PIA gate (--no-pia: the ablation)"
    ),
    dense_weight: float = typer.Option(1.0, help="Weight of the dense layer-class loss"),
    bench_images: int = typer.Option(4, help="Held-out QF-Bench images per material"),
    workers: int = typer.Option(2, help="Rendering and corpus processes"),
    threads: int = typer.Option(2, help="Torch threads for training"),
):
    """Train the compact QuPAINT model from scratch on CPU (qupaint.recipes.compact), score it
    on a held-out QF-Bench, and save it with metrics.json. With --out set to
    qupaint/model/weights/compact it becomes the `compact` checkpoint."""
    from qupaint.cli._common import invoked_command, progress
    from qupaint.recipes.compact import CompactRecipe, train_compact

    command = invoked_command("train-compact")
    with user_errors(), progress("render") as report:
        recipe = CompactRecipe(work, out, images=images, steps=steps, batch=batch, lr=lr,
                               vision_steps=vision_steps, vision_lr=vision_lr, seed=seed,
                               use_pia_gate=pia, dense_weight=dense_weight,
                               bench_images_per_material=bench_images, workers=workers,
                               threads=threads, command=command)  # fmt: skip
        meta = train_compact(recipe, progress=lambda stage, d, t: report(d, t, stage))
    figures = meta["qfbench"]["tasks"]
    console.print(
        "held-out QF-Bench: "
        + ", ".join(
            f"{t} {k} {v:.3f}"
            for t, d in figures.items()
            for k, v in d.items()
            if k not in ("questions",)
        )  # fmt: skip
    )
    console.print(f"wrote {out or work / 'model'} in {meta['times']['total_s']:.0f} s")


@app.command("ablate-compact")
def ablate_compact_cmd(
    work: Path = typer.Option(Path("runs/ablation"), help="Work folder (every run resumes)"),
    seeds: int = typer.Option(3, help="Training seeds: 0, 1, ..., SEEDS - 1"),
    images: int = typer.Option(10000, help="Realistic Synthia images rendered, shared"),
    steps: int = typer.Option(1500, help="Optimiser steps of every run"),
    batch: int = typer.Option(16, help="Samples per step"),
    bench_images: int = typer.Option(4, help="Held-out QF-Bench images per material"),
    workers: int = typer.Option(2, help="Rendering and corpus processes"),
    threads: int = typer.Option(2, help="Torch threads for training"),
    lm_from: Path = typer.Option(
        None, help="A trained compact model: ablate only the vision side (all the gate "
        "touches), each arm read by this model's LM"),
    data_dir: Path = typer.Option(
        None, help="With --lm-from: the work folder of the run that trained it (its data)"),
):
    """The PIA ablation: the compact recipe with and without the PIA gate for each seed,
    same data and budget; writes WORK/ablation.json (mean and spread per figure)."""
    from qupaint.cli._common import invoked_command, progress
    from qupaint.recipes.compact import ablate_compact

    command = invoked_command("ablate-compact")
    with user_errors(), progress("render") as report:
        meta = ablate_compact(work, tuple(range(seeds)), images, steps, batch,
                              bench_images_per_material=bench_images, workers=workers,
                              threads=threads, command=command, lm_from=lm_from,
                              data_dir=data_dir,
                              progress=lambda stage, d, t: report(d, t, stage))  # fmt: skip
    for arm, figs in meta["table"].items():
        console.print(f"{arm}: " + ", ".join(f"{k} {v['mean']:.3f} ± {v['spread']:.3f}"
                                             for k, v in figs.items()))  # fmt: skip
    console.print(f"wrote {work / 'ablation.json'}")


@app.command("tune-compact")
def tune_compact_cmd(
    material: str = typer.Option(..., help="The new material (one of qupaint materials)"),
    work: Path = typer.Option(..., help="Work folder: data, corpus, model/, finetune.json"),
    base: str = typer.Option("compact", help="Model to adapt: 'compact' or a folder"),
    images: int = typer.Option(1000, help="Synthia images of the material rendered"),
    steps: int = typer.Option(200, help="Optimiser steps"),
    batch: int = typer.Option(16, help="Samples per step"),
    lr: float = typer.Option(2e-3, help="Peak learning rate (cosine)"),
    rank: int = typer.Option(16, help="LoRA rank"),
    seed: int = typer.Option(1, help="Synthia, corpus and training seed"),
    bench_images: int = typer.Option(8, help="Held-out QF-Bench images of the material"),
    workers: int = typer.Option(2, help="Rendering and corpus processes"),
    threads: int = typer.Option(2, help="Torch threads for training"),
):
    """LoRA-tune the compact model on a new material (qupaint.recipes.compact): render its
    Synthia, build its corpus, train adapters, merge, and score before and after on a
    held-out QF-Bench of that material. The merged model is WORK/model."""
    from qupaint.cli._common import invoked_command, pct, progress
    from qupaint.recipes.compact import FinetuneRecipe, finetune_compact

    command = invoked_command("tune-compact")
    with user_errors(), progress("render") as report:
        recipe = FinetuneRecipe(base, images, steps, batch, lr, rank, seed, bench_images,
                                workers, threads)  # fmt: skip
        meta = finetune_compact(material, work, recipe, command,
                                lambda stage, d, t: report(d, t, stage))  # fmt: skip
    for when in ("before", "after"):
        figures = meta[when]["tasks"]
        console.print(
            f"{material} {when}: "
            + ", ".join(
                f"{t} {k} {pct(v)}"
                for t, d in figures.items()
                for k, v in d.items()
                if k not in ("questions", "parse_rate")
            )  # fmt: skip
        )
    console.print(f"wrote {work / 'model'} in {meta['times']['total_s']:.0f} s")


@app.command()
def predict(
    checkpoint: str = typer.Option(
        "compact", help="'compact' (the shipped model), a model folder, or 'tiny'"
    ),
    image: Path = typer.Option(..., help="Image file or folder of images (whole micrographs too)"),
    question: str = typer.Option(
        "Detect all flakes and classify each one as Mono, Few or Thick.", help="Prompt"
    ),
    camera: str = typer.Option(
        None, help="The images' microscope (preset or camera JSON): its um/px brings a whole "
        f"micrograph to the model's {REFERENCE_UM_PER_PX} um/px; default: the images are at "
        "that scale"),
    material: str = typer.Option(
        None, help="The flakes' material: windows where the physics sees nothing are "
        "answered 'none' without the model"),
    evidence: str = typer.Option(
        None, help="What the model reads about each window: 'physics' (the detector's flake "
        "candidates; the default with --material) or 'vision' (its own dense head)"),
    fmt: str = typer.Option("llava", "--format", help="Answer format, for drawing boxes"),
    out: Path = typer.Option(Path("predictions"), help="Folder for JSON + annotated images"),
    batch_size: int = typer.Option(4, help="Generation batch size"),
    temperature: float = typer.Option(0.2, help="Sampling temperature (0 = greedy)"),
    max_new_tokens: int = typer.Option(512, help="Answer length limit"),
    constrain: bool = typer.Option(
        True,
        "--constrain/--free",
        help="Hold the answer to its task's format (the task is "
        "recognised from the question; others are answered freely)",
    ),
):
    """Ask a model about images; writes {image, prompt, response, boxes_px} JSON and PNGs.

    A micrograph larger than the model's window is cut into windows at the model's scale;
    count, verify and locate answers are merged over the windows (boxes across window
    borders become one)."""
    from qupaint._io import IMAGE_EXTS
    from qupaint.detect.draw import draw_detections
    from qupaint.instruct.formats import FORMATS
    from qupaint.instruct.parse import label_to_category
    from qupaint.model import load_model_and_processor
    from qupaint.model.whole_image import answer_whole_images

    files = (
        sorted(f for f in image.iterdir() if f.suffix.lower() in IMAGE_EXTS)
        if image.is_dir()
        else [image]
    )
    mic = load_microscope(camera) if camera else None
    with user_errors():
        if not files or not files[0].is_file():
            raise ValueError(f"image: no image file at {image}")
        if material is not None:
            from qupaint.optics import get_material

            material = get_material(material).name
        model, proc = load_model_and_processor(checkpoint)
        answers = answer_whole_images(model, proc, files, [question] * len(files), mic,
                                      material, fmt, batch_size, evidence,
                                      temperature=temperature,
                                      max_new_tokens=max_new_tokens,
                                      constrain=constrain and fmt in FORMATS)  # fmt: skip
    results = []
    for f, a in zip(files, answers, strict=True):
        img = read_rgb(f)
        boxes = [[round(float(v), 1) for v in b] for b in a.boxes]
        results.append({"image": str(f), "prompt": question, "response": a.answer,
                        "boxes_px": boxes, "labels": a.labels, "windows": a.windows,
                        "windows_asked": a.asked, "seconds": a.seconds})  # fmt: skip
        dets = [{"bbox": xyxy_to_xywh(b),
                 "category_id": label_to_category(lb)}
                for b, lb in zip(boxes, a.labels, strict=True)]  # fmt: skip
        draw_detections(img, dets, out / f"{f.stem}_pred.png")
        console.print(f"[bold]{f.name}[/bold]: {a.answer[:300]}")
    write_json(out / "predictions.json", results)
    console.print(f"wrote {out}/predictions.json and {len(files)} annotated images")


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), help="Output folder"),
    backend: str = typer.Option(None, help="reference | cpu | cuda"),
    steps: int = typer.Option(120, help="Tiny-model training steps (0 skips the pipeline)"),
):
    """The main job on built-in defaults: flake contrast and colour charts, then the whole
    pipeline (Synthia -> QMat-Instruct -> tiny QuPAINT model -> QF-Bench) on CPU."""
    from qupaint import demo as demo_mod

    t0 = time.perf_counter()
    with console.status("flake contrast and colours, Synthia, QMat-Instruct, tiny model, QF-Bench"):
        paths = demo_mod.run(out, backend, pipeline_steps=steps, log=console.print).paths()
    for p in paths:
        console.print(f"wrote {p}")
    console.print(f"done in {time.perf_counter() - t0:.1f} s")
