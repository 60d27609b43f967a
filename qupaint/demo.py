"""``make demo`` / ``qupaint demo``: the main job on built-in defaults.

For every material, 1-10 layers on 90 nm and 285 nm SiO2/Si at normal incidence
(unpolarised, 400-700 nm):

* ``flake_contrast.{csv,png}``: reflectance contrast C = (R_substrate - R_flake) / R_substrate;
* ``flake_colors.{csv,png}``: the rendered sRGB colour of substrate and flakes under D65
  daylight and illuminant A (halogen lamp) and the CIELAB contrast Delta-E (CIE76) vs the
  substrate, with Lab relative to the illuminant's white (the eye adapted to the lamp).
  Colours are shown without white balance: under A the whole chip looks warm, as it does
  through a halogen microscope before the camera's white balance.
"""

from __future__ import annotations

import csv
import json
from importlib import resources
from pathlib import Path

import numpy as np

from qupaint._io import atomic_open, read_mask, read_rgb, write_json
from qupaint.categories import CATEGORY_IDS, CATEGORY_NAMES, CATEGORY_PHRASES
from qupaint.constants import MIN_SCORE
from qupaint.optics import (
    DEFAULT_WAVELENGTHS_NM,
    FLAKE_MATERIALS,
    flake_layers,
    get_material,
    stack_reflectance,
)

#: the QF-Bench materials under their canonical names (hBN, graphene, ...)
MATERIALS = tuple(get_material(m).name for m in FLAKE_MATERIALS)
OXIDES_NM = (90.0, 285.0)
LAYERS = tuple(range(1, 11))


def contrast_table(wavelengths_nm=DEFAULT_WAVELENGTHS_NM, backend=None):
    """{(material, oxide_nm): (R_sub [W], R_flake [10, W])}, one batched call per flake."""
    out = {}
    for oxide in OXIDES_NM:
        r_sub = stack_reflectance([("SiO2", oxide)], wavelengths_nm, backend=backend)
        for mat in MATERIALS:
            # layer-resolved n,k differ per layer count, so each count is its own stack
            r = np.stack(
                [
                    stack_reflectance(flake_layers(mat, nl, oxide), wavelengths_nm, backend=backend)
                    for nl in LAYERS
                ]
            )
            out[(mat, oxide)] = (r_sub, r)
    return out


def _write_rows(path: Path, header: list[str], rows) -> None:
    """CSV with a header row, written atomically (temp file + rename)."""
    with atomic_open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def _save_fig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, dpi=110, format="png")
    plt.close(fig)


def write_csv(table, wavelengths_nm, path: Path) -> None:
    def rows():
        for (mat, oxide), (r_sub, r) in table.items():
            for i, nl in enumerate(LAYERS):
                c = (r_sub - r[i]) / r_sub
                k = int(np.argmax(np.abs(c)))
                t = flake_layers(mat, nl, oxide)[0][1]
                yield [
                    mat,
                    oxide,
                    nl,
                    f"{t:.3f}",
                    f"{r[i].mean():.5f}",
                    f"{r_sub.mean():.5f}",
                    f"{c.mean():.5f}",
                    f"{c[k]:.5f}",
                    f"{wavelengths_nm[k]:.0f}",
                ]

    header = [
        "material",
        "oxide_nm",
        "layers",
        "thickness_nm",
        "mean_R_flake",
        "mean_R_substrate",
        "mean_contrast",
        "peak_abs_contrast",
        "peak_wavelength_nm",
    ]
    _write_rows(path, header, rows())


def plot_contrast(table, wavelengths_nm, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(OXIDES_NM),
        len(MATERIALS),
        figsize=(2.6 * len(MATERIALS), 5.6),
        sharex=True,
        sharey="row",
        constrained_layout=True,
    )
    cmap = plt.get_cmap("viridis")
    for row, oxide in enumerate(OXIDES_NM):
        for col, mat in enumerate(MATERIALS):
            ax = axes[row, col]
            r_sub, r = table[(mat, oxide)]
            for i, nl in enumerate(LAYERS):
                ax.plot(
                    wavelengths_nm,
                    (r_sub - r[i]) / r_sub,
                    color=cmap(i / (len(LAYERS) - 1)),
                    lw=1.0,
                    label=f"{nl}L" if (row, col) == (0, 0) else None,
                )
            ax.axhline(0, color="0.6", lw=0.5)
            ax.set_title(f"{mat} / {oxide:g} nm SiO2", fontsize=9)
            if col == 0:
                ax.set_ylabel("contrast (R_sub - R) / R_sub")
            if row == len(OXIDES_NM) - 1:
                ax.set_xlabel("wavelength (nm)")
    fig.legend(loc="outside right center", fontsize=8, title="layers")
    fig.suptitle(
        "Optical contrast of 1-10 layer flakes on SiO2/Si (TMM, normal incidence, unpolarised)"
    )

    _save_fig(fig, path)


ILLUMINANTS = ("D65", "A")


def color_table(backend=None):
    """{(material, oxide, illuminant): (substrate rgb [3], flake rgb [10, 3], dE [10])}."""
    from qupaint.color import delta_e, srgb_encode, stack_color, xyz_to_lab, xyz_to_linear_srgb

    def rgb_lab(xyz, ill):
        rgb = np.clip(srgb_encode(np.clip(xyz_to_linear_srgb(xyz), 0.0, 1.0)), 0.0, 1.0)
        return rgb, xyz_to_lab(xyz, white=ill)

    out = {}
    for oxide in OXIDES_NM:
        for ill in ILLUMINANTS:
            sub_rgb, sub_lab = rgb_lab(
                stack_color([("SiO2", oxide)], illuminant=ill, space="xyz", backend=backend), ill
            )
            for mat in MATERIALS:
                xyz = np.stack(
                    [
                        stack_color(
                            flake_layers(mat, nl, oxide),
                            illuminant=ill,
                            space="xyz",
                            backend=backend,
                        )
                        for nl in LAYERS
                    ]
                )
                rgb, lab = rgb_lab(xyz, ill)
                out[(mat, oxide, ill)] = (sub_rgb, rgb, delta_e(lab, sub_lab[None, :]))
    return out


def write_color_csv(table, path: Path) -> None:
    def rows():
        for (mat, oxide, ill), (sub, rgb, de) in table.items():
            yield [mat, oxide, ill, 0, *(f"{v:.4f}" for v in sub), "0.00"]
            for i, nl in enumerate(LAYERS):
                yield [mat, oxide, ill, nl, *(f"{v:.4f}" for v in rgb[i]), f"{de[i]:.2f}"]

    header = [
        "material",
        "oxide_nm",
        "illuminant",
        "layers",
        "srgb_r",
        "srgb_g",
        "srgb_b",
        "delta_e_vs_substrate",
    ]
    _write_rows(path, header, rows())


def plot_colors(table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(ox, ill) for ox in OXIDES_NM for ill in ILLUMINANTS]
    fig, axes = plt.subplots(2, 2, figsize=(15, 9.5), constrained_layout=True)
    for ax, (oxide, ill) in zip(axes.flat, panels, strict=True):
        img = np.zeros((len(MATERIALS), len(LAYERS) + 1, 3))
        for r, mat in enumerate(MATERIALS):
            sub, rgb, de = table[(mat, oxide, ill)]
            img[r, 0] = sub
            img[r, 1:] = rgb
            for c in range(len(LAYERS)):
                lum = 0.2126 * rgb[c, 0] + 0.7152 * rgb[c, 1] + 0.0722 * rgb[c, 2]
                ax.text(
                    c + 1,
                    r,
                    f"{de[c]:.1f}",
                    ha="center",
                    va="center",
                    fontsize=7.5,
                    color="black" if lum > 0.45 else "white",
                )
        ax.imshow(img, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(len(LAYERS) + 1), ["sub", *[f"{n}L" for n in LAYERS]])
        ax.set_yticks(range(len(MATERIALS)), MATERIALS)
        ax.set_title(
            f"{oxide:g} nm SiO2/Si, illuminant {ill} (numbers: dE76 vs substrate)", fontsize=10
        )
    fig.suptitle("Rendered colour of 1-10 layer flakes (TMM + CIE 1931, sRGB, no white balance)")

    _save_fig(fig, path)


#: median per-channel contrast C = I/I_sub - 1 of 1-4 layer graphene on ~90 nm SiO2, measured
#: by qupaint (``qupaint eval crops``) on the 766 labelled graphene crops of the 2DMatGMM
#: data set (Uslu et al., Mach. Learn.: Sci. Technol. 5, 015027 (2024), MIT licence; a DFK
#: 33UX174 camera behind a Nikon microscope with a halogen lamp)
MEASURED_GRAPHENE_90NM = {
    1: (-0.1346, -0.1354, -0.0615),
    2: (-0.2453, -0.2549, -0.1391),
    3: (-0.3455, -0.3542, -0.1825),
    4: (-0.4314, -0.4465, -0.2305),
}


def camera_contrast(path_csv: Path, path_png: Path, max_layers: int = 6) -> None:
    """Per-channel contrast against layer number: the uncalibrated sRGB model (D65, nominal
    90 nm) and a camera calibrated on the measured 1-2 layer contrasts, with the measured
    1-4 layer values (3-4 layers are held out of the calibration)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qupaint.color import channel_contrast
    from qupaint.color.calibrate import fit_camera

    fit = fit_camera([("graphene", n, MEASURED_GRAPHENE_90NM[n]) for n in (1, 2)],
                     oxide_nm=(60, 120))  # fmt: skip
    layers = np.arange(1, max_layers + 1)
    models = {
        "sRGB D65, 90 nm (uncalibrated)": channel_contrast("graphene", layers, 90.0),
        f"calibrated camera, {fit.oxide_nm:.1f} nm": channel_contrast(
            "graphene", layers, fit.oxide_nm, fit.camera
        ),
    }
    measured = np.array([MEASURED_GRAPHENE_90NM[n] for n in sorted(MEASURED_GRAPHENE_90NM)])
    rows = []
    for name, c in models.items():
        rows += [[name, int(n), *(f"{v:.4f}" for v in c[i])] for i, n in enumerate(layers)]
    rows += [["measured (2DMatGMM crops)", n, *(f"{v:.4f}" for v in measured[n - 1])]
             for n in range(1, len(measured) + 1)]  # fmt: skip
    _write_rows(path_csv, ["model", "layers", "C_R", "C_G", "C_B"], rows)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharey=True, constrained_layout=True)
    for ch, (ax, color) in enumerate(zip(axes, ("tab:red", "tab:green", "tab:blue"), strict=True)):
        for (name, c), ls in zip(models.items(), ("--", "-"), strict=True):
            ax.plot(layers, c[:, ch], ls, color=color, label=name)
        ax.plot(np.arange(1, len(measured) + 1), measured[:, ch], "o", color="k",
                label="measured (1-2 L calibrate, 3-4 L held out)")  # fmt: skip
        ax.set_title(f"{'RGB'[ch]} channel")
        ax.set_xlabel("layers")
        ax.axhline(0, color="0.7", lw=0.5)
    axes[0].set_ylabel("contrast C = I / I_sub - 1")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Graphene on SiO2/Si: per-channel contrast ({fit.camera.describe()})", fontsize=9)
    _save_fig(fig, path_png)


#: the few real images shipped for the demo (sources and licences in their README)
REAL_DIR = Path(__file__).parent / "data" / "real"


def real_micrographs(out: Path, log=None) -> list[Path]:
    """The flake detector on real micrographs with ``qupaint detect``'s defaults (the
    calibrated ``2dmatgmm`` camera, the microscope these images were taken with).

    1. Two real WS2 / MoSe2 chips in batch mode: overlays, COCO JSON with masks, flakes.csv
       and report.html (thin candidates ranked, outlined thumbnails) under ``real/chips/``.
    2. Two windows of expert-masked whole GrapheneH micrographs (a white-balanced one with
       18 thin flakes beside bulk crystals, a purple one with a monolayer among dust
       specks): ``real_flakes.png`` draws the expert's flakes (green) and the detections
       (red: thin, with rank and area), ``real_flakes.csv`` lists every thin detection with
       whether it is an expert's flake.
    """

    from qupaint.bench.metrics import box_iou_xywh
    from qupaint.bench.real import mask_boxes, score_real
    from qupaint.color import Microscope
    from qupaint.detect import detect
    from qupaint.detect.batch import detect_batch, flake_counts_line
    from qupaint.detect.draw import outline_labels

    mic = Microscope.load("2dmatgmm")
    cam, prior, scale = mic.camera, mic.oxide_prior_nm, mic.um_per_px
    paths = []
    for mat in ("WS2", "MoSe2"):
        s = detect_batch([REAL_DIR / f"{mat}_chip.jpg"], out / "real" / "chips" / mat, mat,
                         "auto", camera=cam, um_per_px=scale, min_score=MIN_SCORE,
                         oxide_prior_nm=prior)  # fmt: skip
        if log:
            log(f"real {mat} chip: {flake_counts_line(s)}")
    paths.append(out / "real" / "chips")
    panels, rows, gts, all_dets = [], [], [], []
    for name in ("GrapheneH_grey", "GrapheneH_purple"):
        img = read_rgb(REAL_DIR / "whole" / f"{name}.jpg")
        mask = read_mask(REAL_DIR / "whole" / f"{name}_mask.png")
        gt = mask_boxes(mask)
        dets = [d for d in detect(img, "graphene", None, camera=cam, um_per_px=scale,
                                  oxide_prior_nm=prior, masks=True)
                if d["score"] >= MIN_SCORE and d["layers"] <= 5]  # fmt: skip
        gts.append(gt)
        all_dets.append(dets)
        panel = outline_labels(img, mask, (40, 220, 40))
        for rank, d in enumerate(dets, start=1):
            iou = float(box_iou_xywh(np.asarray(d["bbox"])[None], gt).max()) if len(gt) else 0.0
            rows.append([name, rank, d["layers"], f"{d['score']:.3f}", f"{d['area_um2']:.1f}",
                         ",".join(f"{v:.0f}" for v in d["bbox"]), f"{iou:.2f}",
                         "yes" if iou >= 0.5 else "no"])  # fmt: skip
        panels.append((name, panel, dets))
    _write_rows(out / "real_flakes.csv", ["image", "rank", "layers", "score", "area_um2",
                                          "bbox", "best_iou", "expert_flake"], rows)  # fmt: skip
    _plot_real(panels, out / "real_flakes.png")
    r = score_real(gts, all_dets)
    if log:
        top = [float(row[4]) for row in rows if int(row[1]) <= 5]
        log(f"expert-masked real chips: {r['found']}/{r['flakes']} thin flakes found, "
            f"{r['unmatched_per_image']:.1f} unmatched per image; the top-5 candidates of each "
            f"are {min(top):.0f}-{max(top):.0f} um^2 (no dust)")  # fmt: skip
    return paths + [out / "real_flakes.png", out / "real_flakes.csv"]


def _plot_real(panels, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 7.4),
                             constrained_layout=True)  # fmt: skip
    for ax, (name, img, dets) in zip(np.atleast_1d(axes), panels, strict=True):
        ax.imshow(img)
        for rank, d in enumerate(dets, start=1):
            x, y, w, h = d["bbox"]
            ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, color="red", lw=1.2))
            # the rank alone (layers, area and score are its row of real_flakes.csv), inside
            # the box's corner on a pale ground, so that neighbours' labels stay legible
            ax.text(x + 2, y + 2, str(rank), color="red", fontsize=8, va="top", ha="left",
                    clip_on=True, bbox={"boxstyle": "square,pad=0.1", "fc": "white",
                                        "ec": "none", "alpha": 0.7})  # fmt: skip
        ax.set_title(f"{name}\nexpert's thin flakes (green); detections (red), numbered as "
                     "the rows of real_flakes.csv", fontsize=10)  # fmt: skip
        ax.axis("off")
    _save_fig(fig, path)


def synthia_contact_sheet(path: Path, per_material: int = 4, size: int = 256) -> None:
    """A grid of Synthia samples: one row per material (QuPAINT Alg. 1 on built-in defaults)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qupaint.synthia import Synthia, SynthiaConfig

    fig, axes = plt.subplots(
        len(FLAKE_MATERIALS),
        per_material,
        figsize=(2.2 * per_material, 2.2 * len(FLAKE_MATERIALS)),
        constrained_layout=True,
    )
    colors = {1: "yellow", 2: "orange", 3: "red"}
    for r, mat in enumerate(FLAKE_MATERIALS):
        syn = Synthia(
            SynthiaConfig(seed=r, height=size, width=size, materials=(mat,), radius_px=(8.0, 40.0))
        )
        for col in range(per_material):
            s = syn.sample(col)
            ax = axes[r, col]
            ax.imshow(s.image)
            for a in s.annotations:
                x, y, w, h = a["bbox"]
                color = colors[a["category_id"]]
                ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, lw=0.6, ec=color))
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(get_material(mat).name)  # canonical: hBN, graphene
    legend = ", ".join(f"{colors[i]} {name}" for i, name in CATEGORY_NAMES.items())
    fig.suptitle(f"Synthia samples on 285 nm SiO2/Si, D65 (boxes: {legend})")
    _save_fig(fig, path)


def synthia_vs_real(path: Path, per_row: int = 4, size: int = 256) -> None:
    """Synthia next to real chips, one row each: real micrograph crops (the shipped MaskTerial
    chips), realistic Synthia (thin-flake labels outlined) and classic Synthia. (The
    Synthia-trained segmenter is not shown on the real crops: on whole real micrographs it
    finds 15 of 32 thin flakes at a precision of 0.03-0.13, not a result to show.)"""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qupaint.detect.draw import outline_labels
    from qupaint.seg.train import thin_mask
    from qupaint.synthia import Synthia, SynthiaConfig

    real_dir = Path(str(resources.files("qupaint") / "data" / "real"))
    chips = []
    for name in ("MoSe2_chip.jpg", "WS2_chip.jpg"):
        chips.append(read_rgb(real_dir / name))
    real = []
    for k in range(per_row):  # the busiest windows (most pixel variance), chips alternating
        c = chips[k % len(chips)]
        cands = [(float(c[y : y + size, x : x + size].std()), y, x)
                 for y in range(0, c.shape[0] - size + 1, size // 4)
                 for x in range(0, c.shape[1] - size + 1, size // 4)]  # fmt: skip
        cands.sort(reverse=True)
        _, y, x = cands[k // len(chips)]
        real.append(c[y : y + size, x : x + size])
    syn = Synthia(SynthiaConfig.realistic(seed=11, height=size, width=size))
    realistic = []
    for k in range(per_row):
        smp = syn.sample(k, masks=True)
        realistic.append(outline_labels(smp.image, thin_mask(smp) * smp.masks, (255, 220, 0)))
    classic_syn = Synthia(SynthiaConfig(seed=11, height=size, width=size, radius_px=(8.0, 40.0)))
    classic = [classic_syn.sample(k).image for k in range(per_row)]
    rows = [("real chips (MaskTerial)", real),
            ("Synthia realistic (thin flakes outlined)", realistic),
            ("Synthia classic", classic)]  # fmt: skip
    fig, axes = plt.subplots(len(rows), per_row, figsize=(2.4 * per_row, 2.5 * len(rows)),
                             constrained_layout=True)  # fmt: skip
    for r, (title, imgs) in enumerate(rows):
        for c, im in enumerate(imgs):
            ax = axes[r, c]
            ax.imshow(im)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(title, fontsize=7)
    fig.suptitle(f"Synthia next to real chips ({size} px at about 0.385 um/px)")
    _save_fig(fig, path)


def chip_scan(out: Path, log=None) -> list[Path]:
    """A chip scan end to end on a small virtual chip (3 x 3 frames of 960 x 600 px with
    stage jitter): ``qupaint synthia chip`` -> ``qupaint scan`` (flake database with stage
    coordinates, border flakes merged) -> ``qupaint map`` (stitched overview, deep zoom) ->
    ``qupaint export`` (2DMatGMM-Website ZIP and CSV), scored against the chip's truth."""
    from qupaint.bench.chip import score_chip, stitch_error
    from qupaint.scan import scan_folder
    from qupaint.scan.export import export
    from qupaint.scan.stitch import stitch
    from qupaint.synthia.chip import ChipConfig, render_chip

    base = out / "chip_scan"
    chip = base / "virtual_chip"
    render_chip(chip, ChipConfig(tiles=(3, 3), tile_px=(960, 600), seed=5), workers=2)
    db = base / "flakes.sqlite"
    stats = scan_folder(chip, db, "graphene", workers=2, min_score=MIN_SCORE)
    layout = stitch(db, base / "map", dzi=True)
    fit = {f["file"]: (f["fit_x_mm"], f["fit_y_mm"]) for f in layout["frames"]}
    err = stitch_error(fit, chip, layout["um_per_px"])
    n_zip = export(db, "2dmatgmm", base / "scan_2dmatgmm.zip", min_area_um2=50.0)
    export(db, "csv", base / "flakes.csv")
    score = score_chip(db, chip)
    write_json(base / "score.json", {"scan": stats, "truth": score, "stitch_px": err})
    if log:
        log(f"virtual chip scan: {stats['frames']} frames -> {stats['flakes']} flakes; thin "
            f"flakes > 50 um^2 found {score['found']}/{score['truth_thin_parts']}, median "
            f"position error {score['median_position_error_um']:.1f} um, "
            f"{score['overlapping_rows']} stored twice; stitching {err['median_px']:.2f} px "
            f"median; {n_zip} flakes in the 2DMatGMM ZIP")  # fmt: skip
        log(f"browse it: qupaint serve --db {db}  (then open http://127.0.0.1:8000/)")
    return [
        db,
        base / "map" / "overview.png",
        base / "map" / "mosaic.dzi",
        base / "scan_2dmatgmm.zip",
        base / "flakes.csv",
        base / "score.json",
    ]


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
        boxes = [([b[0], b[1], b[2] - b[0], b[3] - b[1]], c)
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
    _save_fig(fig, path)


def run(
    out_dir: str | Path = "demo_out",
    backend: str | None = None,
    pipeline_steps: int = 120,
    log=None,
) -> list[Path]:
    out = Path(out_dir)
    wl = DEFAULT_WAVELENGTHS_NM
    table = contrast_table(wl, backend)
    paths = [out / "flake_contrast.csv", out / "flake_contrast.png"]
    write_csv(table, wl, paths[0])
    plot_contrast(table, wl, paths[1])
    colors = color_table(backend)
    paths += [out / "flake_colors.csv", out / "flake_colors.png"]
    write_color_csv(colors, paths[2])
    plot_colors(colors, paths[3])
    paths.append(out / "synthia_samples.png")
    synthia_contact_sheet(paths[4])
    paths.append(out / "synthia_vs_real.png")
    synthia_vs_real(paths[-1])
    paths += [out / "camera_contrast.csv", out / "camera_contrast.png"]
    camera_contrast(paths[-2], paths[-1])
    paths += real_micrographs(out, log)
    paths += chip_scan(out, log)
    paths += compact_answers(out / "compact", log=log)
    if pipeline_steps:
        paths += pipeline(out / "pipeline", pipeline_steps, log)
    return paths
