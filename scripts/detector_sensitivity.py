"""How far the detector's figures on the expert-masked images move when one setting moves.

Every numeric field of :class:`qupaint.detect.DetectorConfig` is scaled by 0.8 and by 1.25
(integers by one step at least), one at a time, and the shared expert-masked images
(``../shared/data/real/maskterial-labelled``) are scored with ``qupaint detect``'s
defaults otherwise: thin flakes found, thin AP50 and unmatched thin detections per image,
per set. A setting whose small change loses flakes sits at a cliff: its value fits these
nine images rather than the physics, and the hidden images may fall off it. Read it
beside the leave-one-out figures (``qupaint eval real --loo``) before tuning anything.

Writes ``benchmarks/results/detector-sensitivity-<machine>.json`` and prints the settings
that changed a count or moved AP50 by more than 0.02.

    .venv/bin/python scripts/detector_sensitivity.py --machine cpu-2core-amd-epyc
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import platform
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from qupaint._io import read_mask, read_rgb
from qupaint.bench.real import find_masked_images, mask_boxes, score_real
from qupaint.detect import DetectorConfig, DetectorSettings, detect

ROOT = Path(__file__).resolve().parents[1]
LABELLED = ROOT.parent / "shared" / "data" / "real" / "maskterial-labelled"
SETS = {"GrapheneH": "graphene", "WSe2": "WSe2"}
#: fields that are choices or grids rather than thresholds
FIXED = {"max_layers", "thin_layers", "min_area_px", "response_steps", "oxide_step_nm",
         "fit_pieces", "oxide_window_nm"}  # fmt: skip
_DATA: dict = {}


def _load() -> None:
    for s, material in SETS.items():
        pairs = find_masked_images(LABELLED / s / "images")
        _DATA[s] = (material, [(read_rgb(p.image), mask_boxes(read_mask(p.mask))) for p in pairs])


def _score(change: tuple[str | None, float | None]) -> dict:
    name, value = change
    settings = DetectorSettings.from_microscope("2dmatgmm", **({name: value} if name else {}))
    settings.config.validate()
    out = {}
    for s, (material, rows) in _DATA.items():
        found = [[d for d in detect(img, material, settings) if d["score"] >= 0.05]
                 for img, _ in rows]  # fmt: skip
        r = score_real([gt for _, gt in rows], found)
        out[s] = {"found": r["found"], "flakes": r["flakes"], "AP50": round(r["AP50"], 4),
                  "unmatched_per_image": r["unmatched_per_image"]}  # fmt: skip
    return {"field": name, "value": value, **out}


def changes(factors=(0.8, 1.25)) -> list[tuple[str | None, float | None]]:
    """(field, value) of every one-at-a-time change, the defaults first as (None, None)."""
    base = DetectorConfig()
    out: list[tuple[str | None, float | None]] = [(None, None)]
    for f in dataclasses.fields(base):
        v = getattr(base, f.name)
        if f.name in FIXED or isinstance(v, (bool, tuple, str)):
            continue
        for k in factors:
            if isinstance(v, int):
                w = int(round(v * k))
                out.append((f.name, w if w != v else v + (1 if k > 1 else -1)))
            else:
                out.append((f.name, float(np.round(v * k, 6))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--machine", default=platform.node() or "unknown")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if not LABELLED.is_dir():
        raise SystemExit(f"no expert-masked images at {LABELLED}")
    _load()  # before the pool: the workers inherit the images (fork)
    with Pool(args.workers) as pool:
        rows = pool.map(_score, changes())
    base = rows[0]
    moved = []
    for r in rows[1:]:
        d = {s: (r[s]["found"] - base[s]["found"], round(r[s]["AP50"] - base[s]["AP50"], 3))
             for s in SETS}  # fmt: skip
        r["delta"] = d
        if any(f != 0 or abs(a) > 0.02 for f, a in d.values()):
            moved.append(r)
            print(f"{r['field']:>22} = {r['value']:<9g}"
                  + "".join(f"  {s} {f:+d} found, AP50 {a:+.3f}" for s, (f, a) in d.items()))
    out = ROOT / "benchmarks" / "results" / f"detector-sensitivity-{args.machine}.json"
    out.write_text(json.dumps({"machine": args.machine, "date": dt.date.today().isoformat(),
                               "protocol": __doc__.split("\n\n")[1].replace("\n", " "),
                               "defaults": base, "changes": rows[1:],
                               "moved": [(r["field"], r["value"]) for r in moved]},
                              indent=1) + "\n")  # fmt: skip
    print(f"{len(moved)} of {len(rows) - 1} changes moved a figure; wrote {out}")


if __name__ == "__main__":
    main()
