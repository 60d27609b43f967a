"""Issue 52's few-shot rows: the segmenter, Synthia-only and adapted, leave one image out.

For each of the nine shared expert-masked micrographs, the shipped Synthia-only segmenter is
fine-tuned (:func:`qupaint.seg.adapt.adapt_segmenter`) on the masks of the *other* eight
(both sets, each with its material) and scored on the one left out; the Synthia-only
weights are scored on every image as they ship. Scores: mask IoU 0.5 recall and precision
(issue 51's criterion), and as detections (:func:`qupaint.seg.flake_detections`) box-IoU
recall, thin AP50 and unmatched thin candidates per image (``qupaint eval real``'s).

    .venv/bin/python scripts/seg_adapt_loo.py --machine cpu-2core-amd-epyc --save MAPS  # ~20 min
    .venv/bin/python scripts/seg_adapt_loo.py --machine cpu-2core-amd-epyc --fuse MAPS

``--fuse`` adds the ``fused`` rows from the saved maps: ``qupaint detect``'s physics
detections, each thin one's score times its mean thin probability over its mask, those
under 0.25 dropped (``DetectorConfig.learned_min_p`` / ``learned_weight``; the detector
itself runs the segmenter on windows, this uses the whole-image maps).
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real" / "maskterial-labelled"
SETS = (("GrapheneH", "graphene"), ("WSe2", "WSe2"))


def main() -> None:
    from qupaint._io import read_mask, read_rgb, write_json
    from qupaint.bench.real import find_masked_images, mask_boxes, score_real
    from qupaint.bench.segreal import match_instances, summarise
    from qupaint.seg import flake_detections, load_segmenter, probability, segment
    from qupaint.seg.adapt import AdaptRecipe, adapt_segmenter

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=AdaptRecipe().steps)
    ap.add_argument("--machine", default=platform.node())
    ap.add_argument("--save", type=Path, help="Keep each held-out image's probability maps "
                    "here (<image>.<row>.npy, float16 [2, H, W]) to study fusions offline")
    ap.add_argument("--fuse", type=Path, help="Only add the fused rows, from maps saved here")
    a = ap.parse_args()
    np.seterr(all="ignore")
    if a.fuse:
        fuse(a.fuse, a.machine)
        return
    pairs = [(p, s, m) for s, m in SETS for p in find_masked_images(REAL / s / "images")]
    base = load_segmenter()
    rows = {"synthia-only": [], "adapted": []}
    adapt_s = []
    for k, (p, s, mat) in enumerate(pairs):
        img, mask = read_rgb(p.image), read_mask(p.mask)
        others = [q for j, q in enumerate(pairs) if j != k]
        t0 = time.time()
        net = adapt_segmenter([q[0] for q in others], [q[2] for q in others],
                              recipe=AdaptRecipe(steps=a.steps), threads=2)  # fmt: skip
        adapt_s.append(time.time() - t0)
        for name, model in (("synthia-only", base), ("adapted", net)):
            t0 = time.perf_counter()
            dets = flake_detections(img, model, mat)
            sec = time.perf_counter() - t0
            if a.save:
                a.save.mkdir(parents=True, exist_ok=True)
                np.save(a.save / f"{p.name}.{name}.npy",
                        probability(img, model, mat).astype(np.float16))  # fmt: skip
            lab = segment(img, model, material=mat)
            rows[name].append({"set": s, "image": p.name, "match": match_instances(mask, lab),
                               "boxes": mask_boxes(mask), "dets": dets,
                               "seconds": sec})  # fmt: skip
        print(k, s, p.name, {n: rows[n][-1]["match"]["found"] for n in rows},
              round(adapt_s[-1]), flush=True)
    out = {}
    for name, rs in rows.items():
        out[name] = {}
        for s, _ in SETS:
            sub = [r for r in rs if r["set"] == s]
            m = summarise([r["match"] for r in sub])
            b = score_real([r["boxes"] for r in sub], [r["dets"] for r in sub])
            out[name][s] = {
                "mask_iou_0.5": {k: m[k] for k in ("flakes", "found", "recall", "instances",
                                                  "precision", "false_per_image")},
                "box_iou_0.5": {k: b[k] for k in ("found", "recall", "AP50",
                                                 "unmatched_per_image")},
                "seconds_per_image": float(np.mean([r["seconds"] for r in sub])),
            }  # fmt: skip
            print(name, s, out[name][s], flush=True)
    write_json(ROOT / "benchmarks" / "results" / f"seg-adapt-loo-{a.machine}.json", {
        "what": "thin-flake segmenter on the nine shared expert-masked micrographs: the "
                "shipped Synthia-only weights, and the same fine-tuned on the other eight "
                "images' masks (leave one image out)",
        "adapt_recipe": AdaptRecipe(steps=a.steps).as_dict(),
        "adapt_seconds_mean": float(np.mean(adapt_s)), "rows": out, "machine": a.machine,
        "platform": platform.platform(), "date": dt.date.today().isoformat(),
    })  # fmt: skip


def fuse(maps: Path, machine: str) -> None:
    import json

    from qupaint._io import read_mask, read_rgb, write_json
    from qupaint.bench.real import find_masked_images, mask_boxes, score_real
    from qupaint.categories import THICK_MIN_LAYERS
    from qupaint.detect import DetectorConfig, DetectorSettings, detect

    cfg = DetectorConfig()
    settings = DetectorSettings.from_microscope("2dmatgmm")
    out_file = ROOT / "benchmarks" / "results" / f"seg-adapt-loo-{machine}.json"
    res = json.loads(out_file.read_text())
    fused = {}
    for s, mat in SETS:
        pairs = find_masked_images(REAL / s / "images")
        phys = [detect(read_rgb(p.image), mat, settings, masks="window") for p in pairs]
        boxes = [mask_boxes(read_mask(p.mask)) for p in pairs]
        for row in ("synthia-only", "adapted"):
            dets = []
            for p, ds in zip(pairs, phys, strict=True):
                prob = np.load(maps / f"{p.name}.{row}.npy").astype(np.float32)[0]
                kept = []
                for d in ds:
                    d = dict(d)
                    if d["layers"] < THICK_MIN_LAYERS:
                        x, y = (int(round(v)) for v in d["bbox"][:2])
                        m = d["mask"]
                        pl = float(prob[y : y + m.shape[0], x : x + m.shape[1]][m].mean())
                        if pl < cfg.learned_min_p:
                            continue
                        d["score"] *= pl**cfg.learned_weight
                    kept.append(d)
                dets.append([d for d in kept if d["score"] >= 0.05])
            r = score_real(boxes, dets)
            fused.setdefault(row, {})[s] = {k: r[k] for k in ("found", "recall", "AP50",
                                                              "unmatched_per_image")}  # fmt: skip
            print("fused", row, s, fused[row][s], flush=True)
        r = score_real(boxes, [[d for d in ds if d["score"] >= 0.05] for ds in phys])
        fused.setdefault("physics", {})[s] = {k: r[k] for k in ("found", "recall", "AP50",
                                                                "unmatched_per_image")}  # fmt: skip
    res["fused_whole_image_maps"] = fused
    write_json(out_file, res)


if __name__ == "__main__":
    main()
