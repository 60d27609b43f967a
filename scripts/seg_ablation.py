"""Issue 51's ablation: the thin-flake segmenter trained on each Synthia step, scored on real
images, with the domain gap of each step's training images.

Rows (each trained the same way, 800 images, 1500 steps, the shipped architecture):
``realistic`` (Synthia's fully rendered realistic scenes, the old data), then Synthia flakes
composited onto unlabelled real chips (``qupaint.synthia.composite``) in the steps of
``qupaint.seg.train.COMPOSITE_STEPS``: ``backgrounds`` -> ``shapes`` -> ``terraces`` ->
``camera`` -> ``pasted`` (real thin flakes cut out of the labelled layer crops and pasted;
their layer labels only pick the 1-5 layer crops), and ``backgrounds+pasted``. No expert
mask goes into training; the nine shared expert-masked micrographs only score (mask IoU
0.5), and every fourth unlabelled chip is held out of the compositing to count instances
on chips the model never saw.

    .venv/bin/python scripts/seg_ablation.py train camera OUT_DIR      # one row (~11 min)
    .venv/bin/python scripts/seg_ablation.py report OUT_DIR --machine cpu-2core-amd-epyc
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
CHIPS = (str(REAL / "maskterial"), str(REAL / "2dmatgmm-demo" / "images"))
CROPS = str(REAL / "layer-crops")
ROWS = ("realistic", "backgrounds", "shapes", "terraces", "camera", "pasted",
        "backgrounds+pasted")  # fmt: skip
#: the shipped recipe's defaults (SegmenterRecipe), on 2 processes and 2 torch threads
RECIPE = dict(workers=2, threads=2)


def recipe(step: str, images: int = 800, steps: int = 1500):
    from qupaint.seg.train import SegmenterRecipe

    chips = () if step == "realistic" else CHIPS
    return SegmenterRecipe(images=images, steps=steps, chips=chips,
                           step=step if chips else "camera",
                           crops=CROPS if "pasted" in step else "", **RECIPE)  # fmt: skip


def score(net) -> dict:
    """Recall / precision on the two shared masked sets, instances on held-out chips."""
    from qupaint._io import read_rgb
    from qupaint.bench.segreal import evaluate_segmenter_real
    from qupaint.seg import segment
    from qupaint.seg.train import chip_files
    from qupaint.synthia.composite import chip_material

    res = {}
    for s, mat in (("GrapheneH", "graphene"), ("WSe2", "WSe2")):
        e = evaluate_segmenter_real(REAL / "maskterial-labelled" / s / "images",
                                    lambda im, m=mat: segment(im, net, material=m))  # fmt: skip
        res[s] = {k: v for k, v in e.items() if k != "per_image"}
        print(s, res[s], flush=True)
    held = chip_files(CHIPS, "held-out")
    counts = [int(segment(read_rgb(f), net, material=chip_material(f)).max()) for f in held]
    res["unlabelled_held_out"] = {"chips": len(held), "per_chip": counts,
                                  "instances_per_chip": sum(counts) / len(counts)}  # fmt: skip
    return res


def train(step: str, out_dir: Path, images: int, steps: int) -> None:
    from qupaint.seg import load_segmenter
    from qupaint.seg.train import train_segmenter

    out = out_dir / f"{step}.safetensors"
    t0, last = time.time(), [0.0]

    def prog(stage, d, t):
        if time.time() - last[0] > 30:
            print(stage, d, t, round(time.time() - t0), flush=True)
            last[0] = time.time()

    meta = train_segmenter(out, recipe(step, images, steps),
                           f"scripts/seg_ablation.py train {step}", progress=prog)  # fmt: skip
    res = score(load_segmenter(out))
    (out_dir / f"{step}.score.json").write_text(json.dumps({"meta": meta, "real": res}, indent=1))


def domain_auc(step: str, work: Path, n: int = 96) -> list[float]:
    """Held-out ROC AUC of the window classifier: ``step``'s training images against real
    images none of them was made from (the nine masked micrographs and the held-out chips)."""
    from PIL import Image

    from qupaint.recipes.domain import domain_gap
    from qupaint.seg.train import chip_files, render_training_set

    d = work / f"gap-{step}"
    d.mkdir(parents=True, exist_ok=True)
    if len(list(d.glob("*.png"))) < n:
        chips = () if step == "realistic" else CHIPS
        imgs, _, _ = render_training_set(n, seed=0, size=320, workers=2, chips=chips,
                                      step=step if chips else "camera",
                                      crops=CROPS if "pasted" in step else None)  # fmt: skip
        for k, im in enumerate(imgs):
            Image.fromarray(im).save(d / f"{k:04d}.png")
    real = [REAL / "maskterial-labelled" / s / "images" for s in ("GrapheneH", "WSe2")]
    real += chip_files(CHIPS, "held-out")
    return [domain_gap(d, real, seed=s, threads=2, window=96)["auc"] for s in (0, 1)]


def report(out_dir: Path, machine: str) -> None:
    from qupaint._io import write_json

    out = ROOT / "benchmarks" / "results" / f"seg-ablation-{machine}.json"
    done = json.loads(out.read_text())["rows"] if out.is_file() else {}
    rows = {}
    for step in ROWS:
        f = out_dir / f"{step}.score.json"
        if not f.is_file():
            if step in done:  # a row measured before, kept as it was
                rows[step] = done[step]
            else:
                print(f"no {f}: skipped")
            continue
        d = json.loads(f.read_text())
        same = step in done and done[step]["training"] == d["meta"]["training"]
        rows[step] = {"real": d["real"], "training": d["meta"]["training"],
                      "synthia_val_pixel_iou": d["meta"]["validation"]["pixel_iou"],
                      "domain_auc": done[step]["domain_auc"] if same
                      else domain_auc(step, out_dir)}  # fmt: skip
        print(step, rows[step]["domain_auc"], flush=True)
    write_json(out, {
        "what": "thin-flake segmenter (UNet width 12, depth 4, half-resolution stem; 800 "
                "images, 1500 steps each) per Synthia step, no real label in training; "
                "recall / precision at mask IoU 0.5 on the shared expert-masked whole "
                "micrographs; instances per held-out unlabelled chip (every 4th of "
                "maskterial/ + 2dmatgmm-demo/, never composited onto; real thin flakes "
                "there count too); domain AUC of a CNN telling 96-px windows of the step's "
                "training images from real ones (masked micrographs + held-out chips), "
                "two seeds",
        "rows": rows, "machine": machine, "platform": platform.platform(),
        "date": dt.date.today().isoformat(),
    })
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("step", choices=ROWS)
    t.add_argument("out_dir", type=Path)
    t.add_argument("--images", type=int, default=800)
    t.add_argument("--steps", type=int, default=1500)
    r = sub.add_parser("report")
    r.add_argument("out_dir", type=Path)
    r.add_argument("--machine", default=platform.node())
    a = ap.parse_args()
    np.seterr(all="ignore")
    if a.cmd == "train":
        a.out_dir.mkdir(parents=True, exist_ok=True)
        train(a.step, a.out_dir, a.images, a.steps)
    else:
        report(a.out_dir, a.machine)


if __name__ == "__main__":
    main()
