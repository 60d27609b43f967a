"""``qupaint`` command line (typer). Each pipeline stage has a subcommand."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="qupaint: physics-aware tools for 2D quantum-material discovery.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


def _parse_stack(stack: str) -> list[tuple]:
    layers = []
    for item in filter(None, (s.strip() for s in stack.split(","))):
        parts = item.split(":")
        if len(parts) not in (2, 3):
            raise typer.BadParameter(
                f"{item!r}: use MATERIAL:THICKNESS_NM or MATERIAL:THICKNESS_NM:N_LAYERS",
                param_hint="--stack",
            )
        try:
            spec = (parts[0], float(parts[1])) + ((int(parts[2]),) if len(parts) == 3 else ())
        except ValueError as exc:
            raise typer.BadParameter(f"{item!r}: {exc}", param_hint="--stack") from exc
        layers.append(spec)
    return layers


@app.command()
def optics(
    stack: str = typer.Option(None, help="Layers top to bottom, e.g. 'MoS2:0.615:1,SiO2:285'"),
    flake: str = typer.Option(None, help="Shortcut: material of a flake on oxide (with --layers)"),
    layers: int = typer.Option(1, help="Layer count for --flake"),
    oxide_nm: float = typer.Option(285.0, help="SiO2 thickness for --flake (nm)"),
    substrate: str = typer.Option("Si", help="Semi-infinite substrate"),
    incident: str = typer.Option("air", help="Semi-infinite incident medium"),
    wl_min: float = typer.Option(400.0, help="First wavelength (nm)"),
    wl_max: float = typer.Option(700.0, help="Last wavelength (nm)"),
    wl_step: float = typer.Option(1.0, help="Wavelength step (nm)"),
    theta_deg: float = typer.Option(0.0, help="Angle of incidence (degrees)"),
    pol: str = typer.Option("u", help="s, p or u (unpolarised)"),
    out: Path = typer.Option(None, help="Write the spectrum as CSV (wavelength_nm,R)"),
    backend: str = typer.Option(None, help="reference | cpu | cuda"),
):
    """Reflectance spectrum of a thin-film stack (transfer-matrix method)."""
    from qupaint.optics import flake_layers, stack_reflectance

    if (stack is None) == (flake is None):
        raise typer.BadParameter("give exactly one of --stack or --flake")
    spec = _parse_stack(stack) if stack else flake_layers(flake, layers, oxide_nm)
    if wl_step <= 0 or wl_max < wl_min:
        raise typer.BadParameter("need wl_step > 0 and wl_max >= wl_min")
    wl = np.arange(wl_min, wl_max + 0.5 * wl_step, wl_step)
    try:
        R = stack_reflectance(
            spec,
            wl,
            substrate=substrate,
            incident=incident,
            theta0=np.radians(theta_deg),
            pol=pol,
            backend=backend,
        )
    except (ValueError, TypeError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    desc = " / ".join([incident, *[f"{s[0]} {s[1]:g} nm" for s in spec], substrate])
    table = Table(title=f"R({pol}) of {desc} at {theta_deg:g} deg")
    table.add_column("wavelength (nm)", justify="right")
    table.add_column("R", justify="right")
    for i in np.linspace(0, len(wl) - 1, min(len(wl), 11)).astype(int):
        table.add_row(f"{wl[i]:g}", f"{R[i]:.5f}")
    console.print(table)
    console.print(
        f"mean R = {R.mean():.5f}, min {R.min():.5f} at {wl[R.argmin()]:g} nm, "
        f"max {R.max():.5f} at {wl[R.argmax()]:g} nm"
    )
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["wavelength_nm", "R"])
            w.writerows((f"{a:g}", f"{b:.8f}") for a, b in zip(wl, R, strict=True))
        console.print(f"wrote {out}")


@app.command()
def materials():
    """List the built-in materials, their ranges, monolayer thickness and sources."""
    from qupaint.optics import get_material, list_materials

    table = Table(title="qupaint materials")
    for col in ("name", "range (nm)", "monolayer (nm)", "source"):
        table.add_column(col)
    for name in list_materials():
        m = get_material(name)
        lo, hi = m.range_nm()
        src = m.citations()[0].split("REF:")[-1].split("|")[0].strip()[:90]
        table.add_row(name, f"{lo:g}-{hi:g}", f"{m.monolayer_nm:g}" if m.monolayer_nm else "-", src)
    console.print(table)


@app.command()
def backends():
    """Which kernels this build and machine can run."""
    from qupaint import _backend
    from qupaint.optics import tmm  # noqa: F401  (registers the optics ops)

    table = Table(title="qupaint backends")
    for col in ("backend", "available", "ops", "note"):
        table.add_column(col)
    for name, info in _backend.describe().items():
        table.add_row(
            name, "yes" if info["available"] else "no", ", ".join(info["ops"]) or "-", info["why"]
        )
    console.print(table)


@app.command()
def synthia(
    out: Path = typer.Option(..., help="Output folder (images/, annotations.json, manifest.json)"),
    num_images: int = typer.Option(100, help="Number of images"),
    materials: str = typer.Option(
        "BN,Graphene,MoS2,MoSe2,MoWSe2,WS2,WSe2,WTe2", help="Comma-separated materials"
    ),
    reference_dir: Path = typer.Option(None, help="Real microscopy backgrounds (PNG/JPEG/TIFF)"),
    oxide_nm: float = typer.Option(285.0, help="SiO2 thickness (nm)"),
    illuminant: str = typer.Option("D65", help="D65, A (halogen), E, ..."),
    size: int = typer.Option(512, help="Image height and width (px)"),
    workers: int = typer.Option(2, help="Worker processes"),
    shard_size: int = typer.Option(500, help="Images per shard (the unit of resume)"),
    seed: int = typer.Option(0, help="Data-set seed (image i depends only on seed and i)"),
):
    """Render synthetic flake images with COCO annotations (QuPAINT Alg. 1); resumable."""
    from rich.progress import Progress

    from qupaint.synthia import SynthiaConfig, generate

    try:
        cfg = SynthiaConfig(
            seed=seed,
            height=size,
            width=size,
            oxide_nm=oxide_nm,
            illuminant=illuminant,
            materials=tuple(m.strip() for m in materials.split(",") if m.strip()),
            reference_dir=str(reference_dir) if reference_dir else None,
        )
        cfg.validate()
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    t0 = time.perf_counter()
    with Progress(console=console) as bar:
        task = bar.add_task("shards", total=None)

        def report(done, total):
            bar.update(task, completed=done, total=total)

        try:
            manifest = generate(cfg, out, num_images, shard_size, workers, progress=report)
        except (ValueError, OSError) as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
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


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(2)


def _write_json(path: Path, obj) -> None:
    import json

    from qupaint.synthia.writer import atomic_write_bytes

    atomic_write_bytes(Path(path), (json.dumps(obj, indent=2) + "\n").encode())


@app.command()
def instruct(
    coco: Path = typer.Option(..., help="COCO file with Synthia-style annotations"),
    out: Path = typer.Option(..., help="Output folder (<format>/<split>.jsonl, summary.json)"),
    images_dir: Path = typer.Option(None, help="Folder file_name is relative to (default: COCO's)"),
    formats: str = typer.Option("llava", help="Comma-separated: llava, internvl, qwen"),
    seed: int = typer.Option(0, help="Template choice and split seed"),
    tasks: str = typer.Option(
        "count,locate,verify,describe,ground,dialogue", help="Comma-separated tasks"
    ),
    workers: int = typer.Option(2, help="Worker processes (the output does not depend on it)"),
):
    """Build the QMat-Instruct corpus (counting, localisation, verification, physics)."""
    from qupaint.instruct import build_corpus

    t0 = time.perf_counter()
    try:
        summary = build_corpus(
            coco,
            images_dir,
            out,
            formats=[f.strip() for f in formats.split(",") if f.strip()],
            seed=seed,
            tasks=[t.strip() for t in tasks.split(",") if t.strip()],
            workers=workers,
        )
    except (ValueError, OSError) as exc:
        raise _fail(exc) from exc
    dt = time.perf_counter() - t0
    table = Table(title=f"QMat-Instruct: {summary['images']} images in {dt:.2f} s")
    table.add_column("group")
    table.add_column("counts")
    for key in ("per_task", "per_split_images", "per_material_images", "per_category_annotations",
                "verification"):  # fmt: skip
        table.add_row(key, ", ".join(f"{k} {v}" for k, v in summary[key].items()))
    console.print(table)
    console.print(f"wrote {out}/ ({', '.join(summary['formats'])}) and {out}/summary.json")


eval_app = typer.Typer(help="QF-Bench evaluation: COCO AP and grounding accuracy.")
app.add_typer(eval_app, name="eval")


def _metric_table(title: str, rows: dict) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in rows.items():
        table.add_row(k, "-" if v is None else f"{100 * v:.1f}")
    return table


@eval_app.command("detection")
def eval_detection(
    gt: Path = typer.Option(..., help="Ground-truth COCO JSON"),
    pred: Path = typer.Option(..., help="COCO results JSON (image_id, category_id, bbox, score)"),
    out: Path = typer.Option(None, help="Write the metrics as JSON"),
):
    """COCO AP / AP50 / AP75, overall and Mono (QuPAINT Table 4 protocol)."""
    from qupaint.bench import evaluate_detection

    try:
        r = evaluate_detection(gt, pred)
    except (ValueError, TypeError) as exc:
        raise _fail(exc) from exc
    rows = {k: r[k] for k in ("AP", "AP50", "AP75")}
    rows.update({f"Mono {k}": v for k, v in r["Mono"].items()})
    console.print(_metric_table(f"detection ({r['engine']}, {r['images']} images)", rows))
    if out:
        _write_json(out, r)


@eval_app.command("grounding")
def eval_grounding(
    gt: Path = typer.Option(..., help="Referring boxes: JSON {id: [x,y,w,h]} or corpus JSONL"),
    pred: Path = typer.Option(..., help="Predictions: JSON {id: [x,y,w,h]} or [{id, bbox}]"),
    out: Path = typer.Option(None, help="Write the metrics as JSON"),
):
    """Grounding accuracy Acc@0.5 / Acc@0.75 (RefCOCO protocol, QuPAINT Table 3)."""
    from qupaint.bench import evaluate_grounding

    try:
        r = evaluate_grounding(gt, pred)
    except (ValueError, TypeError, KeyError) as exc:
        raise _fail(exc) from exc
    rows = {k: v for k, v in r.items() if k.startswith("Acc")}
    console.print(_metric_table(f"grounding ({r['n']} expressions, {r['missing']} missing)", rows))
    if out:
        _write_json(out, r)


@eval_app.command("detector")
def eval_detector(
    gt: Path = typer.Option(..., help="COCO JSON whose images name their material"),
    images_dir: Path = typer.Option(None, help="Folder file_name is relative to"),
    oxide_nm: float = typer.Option(None, help="SiO2 thickness (default: from the annotations)"),
    workers: int = typer.Option(2, help="Worker processes"),
    out: Path = typer.Option(None, help="Write metrics per material (and predictions) as JSON"),
):
    """Run the physics detector on a COCO set (e.g. QF-Bench) and score it per material."""
    from rich.progress import Progress

    from qupaint.bench.detector import detect_coco
    from qupaint.bench.metrics import evaluate_detection_by

    try:
        with Progress(console=console) as bar:
            task = bar.add_task("detect", total=None)

            def report(done, total):
                bar.update(task, completed=done, total=total)

            preds = detect_coco(gt, images_dir, oxide_nm, workers=workers, progress=report)
        r = evaluate_detection_by(gt, preds)
    except (ValueError, TypeError, OSError) as exc:
        raise _fail(exc) from exc
    table = Table(title="physics detector (training-free), COCO bbox AP (%)")
    for col in ("material", "AP", "AP50", "AP75", "Mono AP", "Mono AP50"):
        table.add_column(col, justify="right")

    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}"

    for name, m in r.items():
        table.add_row(str(name), pct(m["AP"]), pct(m["AP50"]), pct(m["AP75"]),
                      pct(m["Mono"]["AP"]), pct(m["Mono"]["AP50"]))  # fmt: skip
    console.print(table)
    if out:
        _write_json(out, {"metrics": r, "predictions": preds})


@eval_app.command("model")
def eval_model(
    checkpoint: str = typer.Option(..., help="Model folder (or 'tiny')"),
    gt: Path = typer.Option(..., help="QF-Bench COCO JSON"),
    images_dir: Path = typer.Option(None, help="Folder file_name is relative to"),
    fmt: str = typer.Option("llava", "--format", help="Answer format the model was trained on"),
    grounding: Path = typer.Option(None, help="QMat-Instruct JSONL with grounding records"),
    limit: int = typer.Option(None, help="First N images / expressions only"),
    batch_size: int = typer.Option(4, help="Generation batch size"),
    temperature: float = typer.Option(0.2, help="Sampling temperature (0 = greedy)"),
    max_new_tokens: int = typer.Option(512, help="Answer length limit"),
    out: Path = typer.Option(None, help="Write metrics (and answers) as JSON"),
):
    """End to end: model answers on QF-Bench -> parsed -> COCO AP (+ grounding accuracy)."""
    from qupaint.bench.model_eval import evaluate_model_detection, evaluate_model_grounding
    from qupaint.model import load_model_and_processor

    gen = dict(batch_size=batch_size, temperature=temperature, max_new_tokens=max_new_tokens)
    try:
        model, proc = load_model_and_processor(checkpoint)
        r = evaluate_model_detection(model, proc, gt, images_dir, fmt, limit, **gen)
        g = None
        if grounding:
            root = images_dir or gt.parent
            g = evaluate_model_grounding(model, proc, grounding, root, fmt, limit, **gen)
    except (ValueError, TypeError, OSError) as exc:
        raise _fail(exc) from exc
    rows = {k: r[k] for k in ("AP", "AP50", "AP75")}
    rows.update({f"Mono {k}": v for k, v in r["Mono"].items()})
    if g:
        rows.update({k: v for k, v in g.items() if k.startswith("Acc")})
    title = f"{checkpoint} on {r['images']} images ({r['parse_failures']} unparsable answers)"
    console.print(_metric_table(title, rows))
    if out:
        _write_json(out, {"detection": r, "grounding": g})


bench_app = typer.Typer(help="QF-Bench data.")
app.add_typer(bench_app, name="bench")


@bench_app.command("build")
def bench_build(
    out: Path = typer.Option(..., help="Output folder (materials/<name>/, annotations.json)"),
    images_per_material: int = typer.Option(50, help="Images per material"),
    materials: str = typer.Option(
        "BN,Graphene,MoS2,MoSe2,MoWSe2,WS2,WSe2,WTe2", help="Comma-separated materials"
    ),
    size: int = typer.Option(512, help="Image height and width (px)"),
    oxide_nm: float = typer.Option(285.0, help="SiO2 thickness (nm)"),
    workers: int = typer.Option(2, help="Worker processes"),
):
    """Render a held-out synthetic QF-Bench (seeds disjoint from training data)."""
    from rich.progress import Progress

    from qupaint.bench.qfbench import build_qfbench
    from qupaint.synthia import SynthiaConfig

    mats = [m.strip() for m in materials.split(",") if m.strip()]
    try:
        cfg = SynthiaConfig(height=size, width=size, oxide_nm=oxide_nm)
        with Progress(console=console) as bar:
            task = bar.add_task("QF-Bench", total=len(mats))
            done: set = set()

            def report(mat, d, n):
                if d == n:
                    done.add(mat)
                bar.update(task, completed=len(done), description=f"QF-Bench {mat}")

            m = build_qfbench(out, images_per_material, mats, cfg, workers, progress=report)
    except (ValueError, OSError) as exc:
        raise _fail(exc) from exc
    table = Table(title=f"QF-Bench in {out}")
    for col in ("material", "images", "Mono", "Few", "Thick"):
        table.add_column(col)
    for mat, row in m["materials"].items():
        table.add_row(mat, *(str(row[k]) for k in ("images", "Mono", "Few", "Thick")))
    console.print(table)


@app.command()
def detect(
    image: Path = typer.Argument(..., help="Micrograph (PNG/JPEG/TIFF)"),
    material: str = typer.Option(..., help="Material of the flakes, e.g. MoS2"),
    oxide_nm: float = typer.Option(285.0, help="SiO2 thickness (nm)"),
    illuminant: str = typer.Option("D65", help="D65, A (halogen), E, ..."),
    out: Path = typer.Option(None, help="Annotated PNG (default: <image>_detections.png)"),
    json_out: Path = typer.Option(None, "--json", help="Write COCO detections as JSON"),
):
    """Training-free physics detector: PIA contrast + TMM layer matching."""
    from PIL import Image

    from qupaint.bench.detector import detect as run_detect
    from qupaint.bench.draw import draw_detections

    try:
        img = np.asarray(Image.open(image).convert("RGB"))
        dets = run_detect(img, material, oxide_nm, illuminant)
    except (ValueError, OSError) as exc:
        raise _fail(exc) from exc
    table = Table(title=f"{len(dets)} flakes in {image.name} ({material}, {oxide_nm:g} nm SiO2)")
    for col in ("#", "class", "layers", "dE vs substrate", "fit dE", "score", "bbox x,y,w,h"):
        table.add_column(col)
    names = {1: "Mono", 2: "Few", 3: "Thick"}
    for k, d in enumerate(dets):
        table.add_row(str(k), names[d["category_id"]], str(d["layers"]), f"{d['delta_e']:.1f}",
                      f"{d['fit_de']:.1f}", f"{d['score']:.2f}",
                      ",".join(f"{v:.0f}" for v in d["bbox"]))  # fmt: skip
    console.print(table)
    out = out or image.with_name(image.stem + "_detections.png")
    draw_detections(img, dets, out)
    console.print(f"wrote {out}")
    if json_out:
        _write_json(json_out, dets)


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

    try:
        kw = {}
        for item in set_ or []:
            k, sep, v = item.partition("=")
            if not sep:
                raise ValueError(f"--set expects key=value; got {item!r}")
            kw[k] = yaml.safe_load(v)
        res = run_train(load_config(config, **kw))
    except (ValueError, OSError) as exc:
        raise _fail(exc) from exc
    console.print(
        f"trained {res['global_step']} steps, mean loss {res['train_loss']:.4f}; "
        f"model in {res['output_dir']}"
    )


@app.command()
def predict(
    checkpoint: str = typer.Option(..., help="Model folder (or 'tiny')"),
    image: Path = typer.Option(..., help="Image file or folder of images"),
    question: str = typer.Option(
        "Detect all flakes and classify each one as Mono, Few or Thick.", help="Prompt"
    ),
    fmt: str = typer.Option("llava", "--format", help="Answer format, for drawing boxes"),
    out: Path = typer.Option(Path("predictions"), help="Folder for JSON + annotated images"),
    batch_size: int = typer.Option(4, help="Generation batch size"),
    temperature: float = typer.Option(0.2, help="Sampling temperature (0 = greedy)"),
    max_new_tokens: int = typer.Option(512, help="Answer length limit"),
):
    """Ask a model about images; writes {image, prompt, response, boxes_px} JSON and PNGs."""
    from PIL import Image

    from qupaint.bench.draw import draw_detections
    from qupaint.bench.parse import parse_answer
    from qupaint.model import load_model_and_processor
    from qupaint.model.inference import generate_answers
    from qupaint.synthia.render import IMAGE_EXTS

    files = (
        sorted(f for f in image.iterdir() if f.suffix.lower() in IMAGE_EXTS)
        if image.is_dir()
        else [image]
    )
    try:
        if not files or not files[0].is_file():
            raise ValueError(f"image: no image file at {image}")
        model, proc = load_model_and_processor(checkpoint)
        answers = generate_answers(model, proc, files, [question] * len(files), batch_size,
                                   temperature, max_new_tokens)  # fmt: skip
    except (ValueError, OSError) as exc:
        raise _fail(exc) from exc
    results = []
    for f, text in zip(files, answers, strict=True):
        img = np.asarray(Image.open(f).convert("RGB"))
        a = parse_answer(text, fmt, image_size=(img.shape[1], img.shape[0]))
        boxes = [[round(float(v), 1) for v in b] for b in a.boxes]
        results.append({"image": str(f), "prompt": question, "response": text,
                        "boxes_px": boxes, "labels": a.labels})  # fmt: skip
        dets = [{"bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "category_id": c}
                for b, c in zip(boxes, a.category_ids, strict=True)]  # fmt: skip
        draw_detections(img, dets, out / f"{f.stem}_pred.png")
        console.print(f"[bold]{f.name}[/bold]: {text[:300]}")
    _write_json(out / "predictions.json", results)
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
        paths = demo_mod.run(out, backend, pipeline_steps=steps, log=console.print)
    for p in paths:
        console.print(f"wrote {p}")
    console.print(f"done in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":  # pragma: no cover
    app()
