"""What the camera's tone curve (``fit_camera(response=True)``: a per-channel
``1 + C -> (1 + C)^k`` fitted beside the Gaussian camera) buys on the labelled real crops
(``shared/data/real/layer-crops``): layer-number accuracy with a 5+5-flake calibration over
10 draws (:func:`qupaint.bench.layers.evaluate_layer_crops`), and the contrast of 3-4 layer
graphene / 2-3 layer WSe2 predicted from a fit to 1-2 (1) layers' medians. Writes
``benchmarks/results/camera-tone-curve-<machine>.json``.

    .venv/bin/python scripts/measure_tone_curve.py --machine cpu-2core-amd-epyc
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
from pathlib import Path

import numpy as np

from qupaint._io import write_json
from qupaint.bench.layers import (
    evaluate_layer_crops,
    find_layer_crops,
    measure_crops,
    predicted_contrast,
)
from qupaint.color.calibrate import fit_camera

ROOT = Path(__file__).resolve().parents[1]
CROPS = ROOT.parent / "shared" / "data" / "real" / "layer-crops"


def extrapolation(response: bool, illuminant: str = "A") -> dict:
    """Fit to the medians of the calibration layers, error on the held-out layers."""
    crops = find_layer_crops(CROPS)
    C = measure_crops(crops)
    out = {}
    for mat, calib, held, rng in (("Graphene", (1, 2), (3, 4), (60, 120)),
                                  ("WSe2", (1,), (2, 3), (40, 100))):  # fmt: skip
        med = {L: np.median(C[[i for i, c in enumerate(crops) if c.material == mat
                               and c.layers == L]], axis=0) for L in (*calib, *held)}  # fmt: skip
        name = "graphene" if mat == "Graphene" else mat
        fit = fit_camera([(name, L, med[L]) for L in calib], oxide_nm=rng, response=response,
                         illuminant=illuminant)  # fmt: skip
        pred = predicted_contrast(name, list(held), fit.oxide_nm, fit.camera, fit.response)
        err = pred - np.array([med[L] for L in held])
        out[mat] = {"calibrated_on": list(calib), "held_out": list(held),
                    "max_abs_error": round(float(np.abs(err).max()), 4),
                    "error": np.round(err, 4).tolist(), "oxide_nm": round(fit.oxide_nm, 1),
                    "response": None if fit.response is None else
                    [round(k, 3) for k in fit.response]}  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--machine", default=platform.node())
    ap.add_argument("--lamps", action="store_true", help="Only add the lamp-temperature "
                    "sweep (blackbody lamps, spectral camera) to the existing results")
    a = ap.parse_args()
    out = ROOT / "benchmarks" / "results" / f"camera-tone-curve-{a.machine}.json"
    if a.lamps:
        import json

        res = json.loads(out.read_text())
        res["lamp_temperature"] = {
            "what": "the extrapolation error with the lamp a blackbody of each temperature "
                    "(the bands, NA and oxide fitted as always)",
            "rows": {str(t): extrapolation(False, f"blackbody:{t}")
                     for t in (2400, 2856, 3200, 3600, 4500, 6500)}}  # fmt: skip
        write_json(out, res)
        print(res["lamp_temperature"])
        return
    rows = {}
    for response in (False, True):
        key = "tone curve" if response else "spectral camera only"
        acc = evaluate_layer_crops(CROPS, response=response)
        rows[key] = {
            "layer_accuracy": {m: {k: round(d[k], 3) for k in ("calibrated_accuracy",
                                                             "calibrated_accuracy_min",
                                                             "ceiling_accuracy")}
                               for m, d in acc.items()},  # fmt: skip
            "extrapolation": extrapolation(response),
        }
        print(key, rows[key], flush=True)
    write_json(out, {"what": __doc__.split("\n\n")[0], "rows": rows, "machine": a.machine,
                     "platform": platform.platform(), "date": dt.date.today().isoformat()})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
