"""Issue 53's whole-image criterion: of the expert thin flakes on the shared expert-masked
micrographs that some detection matches (box IoU >= 0.5), the share whose best match
(highest IoU) is called thin (1-5 layers), as taken and under three camera settings (a
darker exposure, a grey white balance, a gamma 1.4), with ``qupaint detect``'s defaults.
Writes ``benchmarks/results/thin-calls-<machine>.json``.

    .venv/bin/python scripts/measure_thin_calls.py --machine cpu-2core-amd-epyc
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
from pathlib import Path

import numpy as np

from qupaint._io import read_mask, read_rgb, write_json
from qupaint.bench.real import find_masked_images, mask_boxes, other_camera_settings
from qupaint.boxes import box_iou_xywh
from qupaint.categories import THICK_MIN_LAYERS
from qupaint.detect import DetectorSettings, detect

ROOT = Path(__file__).resolve().parents[1]
LABELLED = ROOT.parent / "shared" / "data" / "real" / "maskterial-labelled"
SETS = {"GrapheneH": "graphene", "WSe2": "WSe2"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--machine", default=platform.node())
    a = ap.parse_args()
    settings = DetectorSettings.from_microscope("2dmatgmm")
    rows: dict = {}
    for s, material in SETS.items():
        for p in find_masked_images(LABELLED / s / "images"):
            gt = mask_boxes(read_mask(p.mask))
            taken = read_rgb(p.image)
            for name, img in {"as taken": taken, **other_camera_settings(taken)}.items():
                r = rows.setdefault(s, {}).setdefault(name, {"matched": 0, "called_thin": 0,
                                                               "flakes": 0})  # fmt: skip
                r["flakes"] += len(gt)
                dets = detect(img, material, settings)
                if not dets or not len(gt):
                    continue
                iou = box_iou_xywh(np.array([d["bbox"] for d in dets], float)[:, None], gt[None])
                for j in range(len(gt)):
                    if iou[:, j].max() >= 0.5:
                        r["matched"] += 1
                        r["called_thin"] += dets[int(iou[:, j].argmax())]["layers"] < \
                            THICK_MIN_LAYERS
    for per in rows.values():
        for r in per.values():
            r["share"] = round(r["called_thin"] / r["matched"], 3) if r["matched"] else None
    print(rows)
    write_json(ROOT / "benchmarks" / "results" / f"thin-calls-{a.machine}.json",
               {"what": __doc__.split("\n\n")[0], "sets": rows, "machine": a.machine,
                "platform": platform.platform(), "date": dt.date.today().isoformat()})


if __name__ == "__main__":
    main()
