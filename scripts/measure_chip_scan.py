"""Measure the chip-scan pipeline on a virtual chip (the figures quoted for issue #25).

Renders a virtual chip (default 10 x 8 frames of 1920 x 1200 px), then:
1. ``scan`` in batch: recall of thin flakes > 50 um^2, position error, flakes stored twice;
2. ``map``: stitching error against the true frame positions (and the stage's own error);
3. ``scan --watch`` while the frames arrive at ``--rate`` per second (replayed as a
   microscope writes them): throughput, per-frame latency, how far behind it ends.

Writes ``benchmarks/results/chip-scan-<tiles>-<machine>.json``.

    .venv/bin/python scripts/measure_chip_scan.py --machine cpu-2core-amd-epyc
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shutil
import tempfile
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from qupaint.bench.chip import score_chip, stitch_error
from qupaint.scan import scan_folder
from qupaint.scan.db import Image, open_db
from qupaint.scan.stitch import stitch
from qupaint.synthia.chip import ChipConfig, render_chip, replay_scan

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", type=int, nargs=2, default=(10, 8))
    ap.add_argument("--rate", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--machine", default="cpu-2core-amd-epyc")
    ap.add_argument("--keep", type=Path, default=None, help="keep the chip and outputs here")
    a = ap.parse_args()
    work = a.keep or Path(tempfile.mkdtemp(prefix="qupaint-chip-"))
    work.mkdir(parents=True, exist_ok=True)
    chip = work / "chip"
    cfg = ChipConfig(tiles=tuple(a.tiles), seed=a.seed)
    t = time.perf_counter()
    meta = render_chip(chip, cfg, workers=a.workers)
    render_s = time.perf_counter() - t
    db = work / "batch.sqlite"
    stats = scan_folder(chip, db, "graphene", workers=a.workers)
    score = score_chip(db, chip)
    # the rate it sustains once running (from the first frame stored to the last), beside
    # the whole run's (which also holds starting the workers: their imports, a few seconds)
    with open_db(db)() as s:
        stored = [p for (p,) in s.execute(sa.select(Image.processed).order_by(Image.processed))]
    span = (stored[-1] - stored[0]).total_seconds()
    stats["frames_per_s_steady"] = round((len(stored) - 1) / span, 2) if span > 0 else None
    stats["first_frame_stored_after_s"] = round(stats["seconds"] - span, 2)
    t = time.perf_counter()
    layout = stitch(db, work / "map", dzi=True)
    map_s = time.perf_counter() - t
    fit = {f["file"]: (f["fit_x_mm"], f["fit_y_mm"]) for f in layout["frames"]}
    nominal = {f["file"]: (f["x_mm"], f["y_mm"]) for f in layout["frames"]}
    # live: frames arrive at --rate while `scan --watch` runs
    live = work / "live"
    live.mkdir(exist_ok=True)
    shutil.copyfile(chip / "chip.json", live / "chip.json")
    arrivals: list[float] = []
    th = threading.Thread(target=lambda: arrivals.extend(replay_scan(chip, live, a.rate)))
    th.start()
    wdb = work / "live.sqlite"
    wstats = scan_folder(live, wdb, "graphene", workers=a.workers, watch=True, idle_s=30)
    end = time.time()
    th.join()
    S = open_db(wdb)
    with S() as s:
        done = [p for (p,) in s.execute(sa.select(Image.processed).order_by(Image.seq))]
    lat = sorted(p.replace(tzinfo=dt.timezone.utc).timestamp() - t0
                 for p, t0 in zip(done, arrivals, strict=True))  # fmt: skip
    wscore = score_chip(wdb, chip)
    out = {
        "machine": a.machine, "cpu": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d"), "workers": a.workers,
        "chip": {"tiles": list(a.tiles), "tile_px": list(cfg.tile_px), "frames": meta["tiles"],
                 "flake_parts": meta["flake_parts"], "oxide_nm": meta["oxide_nm"],
                 "render_s": round(render_s, 1)},
        "batch_scan": {**stats, **score},
        "stitch": {"fitted": stitch_error(fit, chip, cfg.um_per_px),
                   "stage_only": stitch_error(nominal, chip, cfg.um_per_px),
                   "pairs_measured": layout["pairs_measured"], "pairs_kept": layout["pairs_kept"],
                   "seconds_with_dzi": round(map_s, 1)},
        "watch": {"arrival_rate_per_s": a.rate, "frames": wstats["frames"],
                  "scan_seconds": wstats["seconds"],
                  "arrival_span_s": round(arrivals[-1] - arrivals[0], 2),
                  "done_after_last_arrival_s": round(end - arrivals[-1], 2),
                  "latency_median_s": round(lat[len(lat) // 2], 3),
                  "latency_p95_s": round(lat[int(0.95 * (len(lat) - 1))], 3),
                  "latency_max_s": round(lat[-1], 3),
                  "same_flakes_as_batch": wscore["found"] == score["found"]
                  and wstats["flakes"] == stats["flakes"]},
    }  # fmt: skip
    name = f"chip-scan-{a.tiles[0]}x{a.tiles[1]}-{a.machine}.json"
    (ROOT / "benchmarks" / "results" / name).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    if a.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
