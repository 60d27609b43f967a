"""``qupaint eval ...`` and ``qupaint bench build``: QF-Bench and the scores of the physics
detector and the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from rich.table import Table

from qupaint._io import write_json
from qupaint.cli._common import (
    METHOD_HELP,
    app,
    console,
    detector_settings,
    fail,
    load_microscope,
    metric_table,
    parse_range,
    pct,
    progress,
    split_list,
    user_errors,
)
from qupaint.constants import MIN_SCORE

eval_app = typer.Typer(help="QF-Bench evaluation: COCO AP and grounding accuracy.")
app.add_typer(eval_app, name="eval")
bench_app = typer.Typer(help="QF-Bench data.")
app.add_typer(bench_app, name="bench")


def _detection_rows(r: dict) -> dict:
    rows = {k: r[k] for k in ("AP", "AP50", "AP75")}
    rows.update({f"Mono {k}": v for k, v in r["Mono"].items()})
    return rows


@eval_app.command("detection")
def eval_detection(
    gt: Path = typer.Option(..., help="Ground-truth COCO JSON"),
    pred: Path = typer.Option(..., help="COCO results JSON (image_id, category_id, bbox, score)"),
    out: Path = typer.Option(None, help="Write the metrics as JSON"),
):
    """COCO AP / AP50 / AP75, overall and Mono (QuPAINT Table 4 protocol)."""
    from qupaint.bench import evaluate_detection

    with user_errors():
        r = evaluate_detection(gt, pred)
        console.print(metric_table(f"detection ({r['engine']}, {r['images']} images)",
                                   _detection_rows(r)))  # fmt: skip
        if out:
            write_json(out, r)


@eval_app.command("grounding")
def eval_grounding(
    gt: Path = typer.Option(..., help="Referring boxes: JSON {id: [x,y,w,h]} or corpus JSONL"),
    pred: Path = typer.Option(..., help="Predictions: JSON {id: [x,y,w,h]} or [{id, bbox}]"),
    out: Path = typer.Option(None, help="Write the metrics as JSON"),
):
    """Grounding accuracy Acc@0.5 / Acc@0.75 (RefCOCO protocol, QuPAINT Table 3)."""
    from qupaint.bench import evaluate_grounding

    with user_errors(KeyError):
        r = evaluate_grounding(gt, pred)
        rows = {k: v for k, v in r.items() if k.startswith("Acc")}
        console.print(metric_table(f"grounding ({r['n']} expressions, {r['missing']} missing)",
                                   rows))  # fmt: skip
        if out:
            write_json(out, r)


@eval_app.command("detector")
def eval_detector(
    gt: Path = typer.Option(..., help="COCO JSON whose images name their material"),
    images_dir: Path = typer.Option(None, help="Folder file_name is relative to"),
    oxide_nm: float = typer.Option(None, help="SiO2 thickness (default: from the annotations)"),
    workers: int = typer.Option(2, help="Worker processes"),
    out: Path = typer.Option(None, help="Write metrics per material (and predictions) as JSON"),
):
    """Run the physics detector on a COCO set (e.g. QF-Bench) and score it per material."""
    from qupaint.bench.metrics import evaluate_detection_by
    from qupaint.bench.qfbench import detect_coco

    with user_errors():
        with progress("detect") as report:
            preds = detect_coco(gt, images_dir, oxide_nm, workers=workers, progress=report)
        r = evaluate_detection_by(gt, preds)
    table = Table(title="physics detector (training-free), COCO bbox AP (%)")
    for col in ("material", "AP", "AP50", "AP75", "Mono AP", "Mono AP50"):
        table.add_column(col, justify="right")
    for name, m in r.items():
        table.add_row(str(name), pct(m["AP"]), pct(m["AP50"]), pct(m["AP75"]),
                      pct(m["Mono"]["AP"]), pct(m["Mono"]["AP50"]))  # fmt: skip
    console.print(table)
    if out:
        with user_errors():
            write_json(out, {"metrics": r, "predictions": preds})


def _material_of(name: str) -> str | None:
    """The flake material a data set's folder name says (``GrapheneH`` -> graphene), or None."""
    from qupaint.optics import FLAKE_MATERIALS

    low = name.lower()
    return next((m for m in sorted(FLAKE_MATERIALS, key=len, reverse=True) if m.lower() in low),
                None)  # fmt: skip


@eval_app.command("model")
def eval_model(
    checkpoint: str = typer.Option(
        ..., help="Model folder, 'compact' (once trained: qupaint train-compact) or 'tiny'"
    ),
    gt: Path = typer.Option(..., help="QF-Bench COCO JSON"),
    images_dir: Path = typer.Option(None, help="Folder file_name is relative to"),
    fmt: str = typer.Option("llava", "--format", help="Answer format the model was trained on"),
    grounding: Path = typer.Option(None, help="QMat-Instruct JSONL with grounding records"),
    limit: int = typer.Option(None, help="First N images / expressions only"),
    batch_size: int = typer.Option(4, help="Generation batch size"),
    temperature: float = typer.Option(0.2, help="Sampling temperature (0 = greedy)"),
    max_new_tokens: int = typer.Option(512, help="Answer length limit"),
    constrain: bool = typer.Option(
        True,
        "--constrain/--free",
        help="Hold each answer to its task's format (qupaint.model.constrain), as predict "
        "does; --free measures free decoding",
    ),
    tasks: bool = typer.Option(
        False,
        "--tasks",
        help="Also per task: parse rate, exact count, monolayer present, "
        "layer class, AP50 / Mono AP50, with the physics detector as the reference row",
    ),
    real: list[Path] = typer.Option(
        None,
        "--real",
        help="Also on expert-masked real micrographs: a folder of images with masks/ beside "
        "(e.g. maskterial-labelled/WSe2/images; repeatable): thin-flake count and presence "
        "per 224-px window, grounding recall",
    ),
    skip_empty: bool = typer.Option(
        True, "--skip-empty/--ask-all",
        help="--real: windows where the physics detector sees only substrate are answered "
        "'none' without the model (the set's material from its folder name)"),
    evidence: str = typer.Option(
        None, help="What a region-token model reads about each image or window: 'physics' (the "
        "detector's flake candidates; the default, with --skip-empty for --real) or 'vision' "
        "(its own dense head)"),
    out: Path = typer.Option(None, help="Write metrics (and answers) as JSON"),
):
    """End to end: model answers on QF-Bench -> parsed -> COCO AP (+ grounding accuracy)."""
    from qupaint.bench.model_eval import evaluate_model_detection, evaluate_model_grounding
    from qupaint.model import load_model_and_processor

    gen = dict(batch_size=batch_size, temperature=temperature, max_new_tokens=max_new_tokens,
               constrain=constrain)  # fmt: skip
    with user_errors():
        model, proc = load_model_and_processor(checkpoint)
        r = evaluate_model_detection(model, proc, gt, images_dir, fmt, limit, evidence, **gen)
        g = None
        if grounding:
            root = images_dir or gt.parent
            g = evaluate_model_grounding(model, proc, grounding, root, fmt, limit, **gen)
        per_task = reference = None
        if tasks:
            from qupaint.bench.model_eval import detector_task_row, evaluate_model_tasks

            per_task = evaluate_model_tasks(model, proc, gt, images_dir, fmt, limit, **gen)
            reference = detector_task_row(gt)
        real_rows = {}
        for folder in real or []:
            from qupaint.bench.model_eval import evaluate_model_real

            name = folder.parent.name if folder.name == "images" else folder.name
            mat = _material_of(name) if skip_empty else None
            real_rows[name] = evaluate_model_real(model, proc, folder, fmt=fmt, material=mat,
                                                  evidence=evidence, **gen)  # fmt: skip
    rows = _detection_rows(r)
    if g:
        rows.update({k: v for k, v in g.items() if k.startswith("Acc")})
    title = f"{checkpoint} on {r['images']} images ({r['parse_failures']} unparsable answers)"
    console.print(metric_table(title, rows))
    if per_task:
        table = Table(title="per task (model | physics detector)")
        for col in ("task", "questions", "parse rate", "figure", "model", "detector"):
            table.add_column(col, justify="left" if col in ("task", "figure") else "right")
        for task, d in per_task["tasks"].items():
            for k, v in d.items():
                if k in ("questions", "parse_rate"):
                    continue
                table.add_row(task, str(d["questions"]), pct(d["parse_rate"]), k, pct(v),
                              pct(reference.get(k)))  # fmt: skip
        console.print(table)
    if real_rows:
        table = Table(title="expert-masked real micrographs (224-px windows)")
        cols = ("parse_rate", "exact_thin_count_accuracy", "always_zero_thin_count_accuracy",
                "thin_present_accuracy", "grounding_recall", "AP50")  # fmt: skip
        for col in ("set", "images", "windows", "asked", "flakes", *cols, "s / image"):
            table.add_column(col, justify="left" if col == "set" else "right")
        for name, d in real_rows.items():
            table.add_row(name, str(d["images"]), str(d["windows"]), str(d["windows_asked"]),
                          str(d["flakes"]), *(pct(d[c]) for c in cols),
                          f"{d['seconds_per_image']:.1f}")  # fmt: skip
        console.print(table)
    if out:
        with user_errors():
            write_json(out, {"detection": r, "grounding": g, "tasks": per_task,
                             "detector_reference": reference,
                             "real": real_rows or None})  # fmt: skip


@bench_app.command("build")
def bench_build(
    out: Path = typer.Option(..., help="Output folder (materials/<name>/, annotations.json)"),
    images_per_material: int = typer.Option(50, help="Images per material"),
    materials: str = typer.Option(
        None, help="Comma-separated materials (default: the eight QF-Bench materials)"
    ),
    size: int = typer.Option(512, help="Image height and width (px)"),
    oxide_nm: float = typer.Option(285.0, help="SiO2 thickness (nm)"),
    workers: int = typer.Option(2, help="Worker processes"),
):
    """Render a held-out synthetic QF-Bench (seeds disjoint from training data)."""
    from qupaint.bench.qfbench import build_qfbench
    from qupaint.categories import CATEGORY_NAMES
    from qupaint.optics import FLAKE_MATERIALS
    from qupaint.synthia import SynthiaConfig

    mats = split_list(materials) if materials else list(FLAKE_MATERIALS)
    with user_errors(), progress("QF-Bench", total=len(mats)) as report:
        cfg = SynthiaConfig(height=size, width=size, oxide_nm=oxide_nm)
        done: set = set()

        def material_done(mat, d, n):
            if d == n:
                done.add(mat)
            report(len(done), description=f"QF-Bench {mat}")

        m = build_qfbench(out, images_per_material, mats, cfg, workers, progress=material_done)
    cols = ("images", *CATEGORY_NAMES.values())
    table = Table(title=f"QF-Bench in {out}")
    for col in ("material", *cols):
        table.add_column(col)
    for mat, row in m["materials"].items():
        table.add_row(mat, *(str(row[k]) for k in cols))
    console.print(table)


@eval_app.command("real")
def eval_real(
    images: Path = typer.Option(..., help="Folder of whole micrographs"),
    masks: Path = typer.Option(
        None,
        help="Folder of instance masks <stem>.png (default: the 'masks' folder beside --images)",
    ),
    material: str = typer.Option(..., help="Material of the flakes, e.g. graphene"),
    camera: str = typer.Option("2dmatgmm", help="Camera JSON or preset (as for detect)"),
    oxide_nm: float = typer.Option(None, help="SiO2 thickness; default fitted per image"),
    um_per_px: float = typer.Option(None, help="Image scale; default the --camera's"),
    min_score: float = typer.Option(MIN_SCORE, help="Drop detections scoring below this"),
    loo: bool = typer.Option(
        False, "--loo",
        help="Leave one image out: calibrate a camera on the other images' masks (as "
        "'qupaint calibrate --images --masks' does) and score each image with it"),
    max_layers: int = typer.Option(
        5, help="With --loo: the most layers the masks mark (calibrate's --max-layers)"),
    out: Path = typer.Option(None, help="Write the figures as JSON here"),
    method: str = typer.Option(None, help=METHOD_HELP),
    adapt_steps: int = typer.Option(
        0, help="With --loo and --method learned or fused: also fine-tune the segmenter on "
        "the other images' masks for this many steps (as calibrate --adapt-steps)"),
):
    """Score `qupaint detect` (its defaults) on whole expert-masked micrographs: recall at
    box IoU 0.5, thin-flake AP50 (Mono and Few are thin) and unmatched thin detections per
    image, overall and per camera setting (read from the substrate: colour, grey, dark).

    The default detector fits nothing across images (the oxide and response are fitted per
    image), so its figures hold for any image but are in-sample for the thresholds chosen
    on the images scored. With --loo every image is scored with a camera calibrated on the
    others."""
    from qupaint.bench.real import calibrated_detector_from, evaluate_real, evaluate_real_loo
    from qupaint.detect import detect as run_detect

    mic = load_microscope(camera)
    if not 0 <= min_score <= 1:
        fail("--min-score must be in [0, 1]")
    settings = detector_settings(mic, oxide_nm, um_per_px, method=method)

    def detector(img):
        return [d for d in run_detect(img, material, settings) if d["score"] >= min_score]

    with user_errors(), progress("eval real" + (" (leave one out)" if loo else "")) as report:
        if loo:
            build = calibrated_detector_from(material, mic, min_score, um_per_px, max_layers,
                                             method, adapt_steps)  # fmt: skip
            r = evaluate_real_loo(images, masks, build, progress=report)
        else:
            r = evaluate_real(images, masks, detector, progress=report)
    how = ", each with a camera calibrated on the others" if loo else ""
    table = Table(title=f"{material}: {r['images']} whole images{how}, {r['flakes']} thin flakes")
    for col in ("group", "images", "flakes", "found", "recall", "AP50", "unmatched / image"):
        table.add_column(col)
    groups = {"all": r, **r.get("groups", {})}
    for name, g in groups.items():
        table.add_row(name, str(g["images"]), str(g["flakes"]), str(g["found"]), pct(g["recall"]),
                      pct(g["AP50"]), f"{g['unmatched_per_image']:.1f}")  # fmt: skip
    console.print(table)
    console.print(f"{r['seconds_per_image']:.3f} s per image (detection only)")
    if out:
        write_json(out, r)
        console.print(f"wrote {out}")


@eval_app.command("crops")
def eval_crops(
    root: Path = typer.Argument(
        ..., help="Labelled crops: <layers>/<Material>_<img>_ann<k>_L<n>.png"
    ),
    per_class: int = typer.Option(5, help="Calibration flakes per calibrated layer count"),
    calib_layers: str = typer.Option("1,2", help="Layer counts calibrated on"),
    oxide_nm: str = typer.Option("50:110", help="SiO2 thickness range LO:HI (nm) of the fit"),
    seeds: int = typer.Option(10, help="Random calibration draws averaged"),
    out: Path = typer.Option(None, help="Write the results as JSON"),
):
    """Layer counting on real labelled flakes: calibrate the camera on a few, classify the
    rest by per-channel contrast, and compare with the labels' own ceiling."""
    from qupaint.bench.layers import evaluate_layer_crops

    lo, hi = parse_range(oxide_nm, "--oxide-nm")
    with user_errors(), progress("calibrate and classify") as report:
        r = evaluate_layer_crops(root, per_class, [int(v) for v in split_list(calib_layers)],
                                 (lo, hi), seeds, progress=report)  # fmt: skip
    table = Table(title=f"layer accuracy on {root} (calibrated on {per_class} flakes/class)")
    for col in (
        "material",
        "crops",
        "calibrated",
        "uncalibrated sRGB",
        "ceiling (kNN)",
        "oxide nm",
    ):
        table.add_column(col, justify="right")
    for mat, m in r.items():
        ox = np.asarray(m["oxide_nm"])
        table.add_row(mat, str(m["crops"]),
                      f"{pct(m['calibrated_accuracy'])} ± {pct(m['calibrated_accuracy_std'])}",
                      pct(m["uncalibrated_accuracy"]), pct(m["ceiling_accuracy"]),
                      f"{ox.mean():.0f} ± {ox.std():.0f}")  # fmt: skip
    console.print(table)
    if out:
        with user_errors():
            write_json(out, r)


@eval_app.command("seg-crops")
def eval_seg_crops(
    root: Path = typer.Argument(
        ..., help="Labelled crops: <layers>/<Material>_<img>_ann<k>_L<n>.png"
    ),
    model: Path = typer.Option(None, help="Segmenter weights (default: the shipped model)"),
    grid: int = typer.Option(4, help="Crops per canvas side"),
    seed: int = typer.Option(0, help="Canvas layout seed"),
    out: Path = typer.Option(None, help="Write the results as JSON"),
):
    """The Synthia-trained segmenter on real labelled flakes (none used in training): recall
    and precision at box IoU 0.5, per material and layer count."""
    from qupaint.bench.layers import evaluate_segmenter_on_crops

    with user_errors(), progress("segment") as report:
        r = evaluate_segmenter_on_crops(
            root, model, grid, seed, progress=lambda m, d, t: report(d, t)
        )
    table = Table(title=f"thin-flake segmenter on {root}")
    for col in ("material", "flakes", "recall@0.5", "by layers", "precision@0.5",
                "unmatched in crops", "unmatched on canvas"):  # fmt: skip
        table.add_column(col, justify="right")
    for mat, m in r.items():
        by = " ".join(f"{k}L {pct(v)}" for k, v in m["recall_by_layers"].items())
        table.add_row(mat, str(m["flakes"]), pct(m["recall_iou50"]), by,
                      pct(m["precision_iou50"]), str(m["unmatched_inside_crops"]),
                      str(m["unmatched_on_canvas"]))  # fmt: skip
    console.print(table)
    if out:
        with user_errors():
            write_json(out, r)


@eval_app.command("seg-real")
def eval_seg_real(
    images: Path = typer.Argument(..., help="Folder of whole micrographs (masks/ beside it)"),
    material: str = typer.Option(..., help="Material of the flakes, e.g. graphene"),
    masks: Path = typer.Option(None, help="Instance masks (default: ../masks beside images)"),
    model: Path = typer.Option(None, help="Segmenter weights (default: the shipped model)"),
    threshold: float = typer.Option(0.5, help="Probability threshold"),
    out: Path = typer.Option(None, help="Write the results as JSON"),
):
    """The segmenter on whole real micrographs with expert masks: recall and precision at
    mask IoU 0.5, false instances and seconds per image (issue 51's criterion)."""
    from qupaint.bench.segreal import evaluate_segmenter_real
    from qupaint.seg import load_segmenter, segment

    with user_errors(), progress("segment") as report:
        net = load_segmenter(model)
        r = evaluate_segmenter_real(images, lambda im: segment(im, net, threshold,
                                                               material=material),
                                    masks, progress=report)  # fmt: skip
    table = Table(title=f"thin-flake segmenter on {images}")
    for col in ("image", "setting", "flakes", "found", "instances", "true", "s"):
        table.add_column(col, justify="right")
    for row in r["per_image"]:
        table.add_row(row["image"][:12], row["setting"], str(row["flakes"]), str(row["found"]),
                      str(row["instances"]), str(row["true_instances"]), f"{row['seconds']:.2f}")
    console.print(table)
    prec = "-" if r["precision"] is None else f"{r['precision']:.3f}"
    console.print(f"recall {r['found']}/{r['flakes']}, precision {prec}, "
                  f"{r['false_per_image']:.1f} false instances and "
                  f"{r['seconds_per_image']:.2f} s per image")  # fmt: skip
    if out:
        with user_errors():
            write_json(out, r)


@eval_app.command("chip")
def eval_chip(
    db: str = typer.Option(..., help="The flake database qupaint scan wrote"),
    truth: Path = typer.Option(..., help="The virtual chip's folder (truth.csv)"),
    min_area_um2: float = typer.Option(50.0, help="Thin flakes above this area count"),
    radius_um: float = typer.Option(5.0, help="A flake is found within this distance"),
    map_dir: Path = typer.Option(None, help="A `qupaint map` folder: also score its stitching"),
    out: Path = typer.Option(None, help="Write the figures as JSON here"),
):
    """Score a scanned virtual chip: recall of thin flakes, position error, layer accuracy,
    flakes stored twice, and (with --map-dir) the stitching error against the true frame
    positions."""
    import json

    from qupaint.bench.chip import score_chip, stitch_error

    if not radius_um > 0:
        fail("--radius-um must be > 0")
    with user_errors():
        res = score_chip(db, truth, min_area_um2=min_area_um2, radius_um=radius_um)
        if map_dir is not None:
            layout = json.loads((map_dir / "layout.json").read_text())
            fit = {f["file"]: (f["fit_x_mm"], f["fit_y_mm"]) for f in layout["frames"]}
            nominal = {f["file"]: (f["x_mm"], f["y_mm"]) for f in layout["frames"]}
            res["stitch"] = stitch_error(fit, truth, layout["um_per_px"])
            res["stage_only"] = stitch_error(nominal, truth, layout["um_per_px"])
    table = Table(title=f"virtual chip {truth}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for k, v in res.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a} {b:.2f}" if isinstance(b, float) else f"{a} {b}"
                          for a, b in v.items())  # fmt: skip
        elif isinstance(v, float):
            v = f"{v:.3f}"
        table.add_row(k, str(v))
    console.print(table)
    if out is not None:
        from qupaint._io import write_json

        write_json(out, res)
