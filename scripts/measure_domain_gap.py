"""Measure the domain gap between Synthia and the unlabelled real chips of the shared data
(``qupaint synthia gap``, :func:`qupaint.recipes.domain.domain_gap`), per Synthia mode, and
write ``benchmarks/results/synthia-domain-gap-<machine>.json``.

    .venv/bin/python scripts/measure_domain_gap.py --machine cpu-2core-amd-epyc
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
from pathlib import Path

from qupaint._io import write_json
from qupaint.recipes.domain import SYNTHIA_MODES, domain_gap, synthia_mode

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--machine", default=platform.node())
    ap.add_argument("--modes", nargs="+", default=list(SYNTHIA_MODES))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    a = ap.parse_args()
    real = [REAL / "maskterial", REAL / "2dmatgmm-demo" / "images"]
    rows = {}
    for mode in a.modes:
        for bare in (False, True):  # every window; windows of bare substrate only
            key = f"{mode}, substrate only" if bare else mode
            try:
                runs = [domain_gap(synthia_mode(mode), real, seed=s, threads=2,
                                   substrate_only=bare)
                        for s in a.seeds]  # fmt: skip
            except ValueError as exc:  # e.g. classic's vignetting leaves no bare window
                rows[key] = {"auc": None, "why": str(exc)}
                print(key, exc, flush=True)
                continue
            rows[key] = {"auc": [r["auc"] for r in runs], "windows": runs[0]["windows"],
                         "seconds": [r["seconds"] for r in runs], "recipe": runs[0]["recipe"]}
            print(key, rows[key]["auc"], flush=True)
    out = ROOT / "benchmarks" / "results" / f"synthia-domain-gap-{a.machine}.json"
    write_json(out, {
        "what": "held-out ROC AUC of a small CNN telling 96-px windows (contrast maps, "
                "C = I / I_median - 1) of Synthia renders from those of the unlabelled real "
                "chips (maskterial/, 2dmatgmm-demo/ of the shared data; real images split by "
                "image, the sources of Synthia's real backgrounds always in training); 0.5: "
                "indistinguishable, 1.0: always told apart; 'substrate only': windows of bare "
                "substrate (no pixel beyond |C| = 0.04), the texture alone",
        "modes": rows, "machine": a.machine, "platform": platform.platform(),
        "date": dt.date.today().isoformat(),
    })
    print(json.dumps(rows, indent=1)[:400])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
