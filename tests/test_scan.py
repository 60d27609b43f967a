"""Chip scan -> flake database, on a virtual chip whose truth is known (qupaint.scan,
qupaint.synthia.chip): positions, merging across frame borders, resume after kills,
live ingest, the schema's migrations, stitching, exports and the command line."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from qupaint.bench.chip import overlapping_rows, score_chip, stitch_error
from qupaint.cli import app
from qupaint.detect import DetectorSettings
from qupaint.scan import read_positions, scan_folder
from qupaint.scan.db import Base, Flake, Image, open_db
from qupaint.scan.export import export, query_flakes, read_2dmatgmm
from qupaint.scan.merge import Observation, merge, same_flake, shape_stats
from qupaint.scan.stitch import stitch, write_dzi
from qupaint.synthia.chip import ChipConfig, VirtualChip, render_chip, replay_scan

ROOT = Path(__file__).resolve().parents[1]
# small frames keep the tests quick; 4 x 3 frames, each 480 x 300 px (185 x 115 um)
SMALL = dict(tiles=(4, 3), tile_px=(480, 300), flakes_per_mm2=400.0, seed=3,
             size_um=(14.0, 0.4), max_side_um=40.0)  # fmt: skip


@pytest.fixture(scope="module")
def chip(tmp_path_factory):
    out = tmp_path_factory.mktemp("chip")
    render_chip(out, ChipConfig(**SMALL), workers=1)
    return out


@pytest.fixture(scope="module")
def scanned(chip, tmp_path_factory):
    db = tmp_path_factory.mktemp("db") / "chip.sqlite"
    stats = scan_folder(chip, db, "graphene", workers=1)
    return db, stats


def _table(db) -> list[tuple]:
    """The flake table without ids and timestamps, in a stable order."""
    S = open_db(db)
    with S() as s:
        rows = s.execute(sa.select(Image.file, Flake.layers, Flake.category, Flake.probability,
                                   Flake.area_um2, Flake.x_mm, Flake.y_mm, Flake.mask_x,
                                   Flake.mask_y, Flake.mask_rle, Flake.views, Flake.clipped)
                         .join(Image, Flake.image_id == Image.id)).all()  # fmt: skip
        frames = s.execute(sa.select(Image.file, Image.seq, Image.detections)).all()
    S.kw["bind"].dispose()
    return sorted(tuple(r) for r in rows) + sorted(tuple(f) for f in frames)


# -- the virtual microscope ---------------------------------------------------------------
def test_virtual_chip_files_and_overlaps_agree(chip):
    pos = list(csv.DictReader(open(chip / "positions.csv")))
    true = list(csv.DictReader(open(chip / "stage_truth.csv")))
    assert len(pos) == len(true) == 12
    # a serpentine: the second row runs right to left
    xs = [float(p["x_mm"]) for p in pos]
    assert xs[:4] == sorted(xs[:4]) and xs[4:8] == sorted(xs[4:8], reverse=True)
    truth = list(csv.DictReader(open(chip / "truth.csv")))
    assert len(truth) > 20 and {"material", "layers", "x_mm", "y_mm", "area_um2"} <= set(truth[0])
    # the jitter is real but small
    d = [abs(float(a["x_mm"]) - float(b["x_mm"])) * 1000 for a, b in zip(pos, true, strict=True)]
    assert 0 < max(d) < 6
    # two neighbouring frames show the same chip where they overlap: without the frame's
    # own noise and fall-off, pixel for pixel (away from the blur's edge)
    vc = VirtualChip.build(ChipConfig(**SMALL, sensor_noise=0.0, vignetting=0.0))
    a, b = vc.tile(0).astype(int), vc.tile(1).astype(int)
    (ax, ay), (bx, by) = (np.round(vc.true[k] - (240, 150)).astype(int) for k in (0, 1))
    dx, dy = bx - ax, by - ay
    assert 400 < dx < 460 and abs(dy) < 15
    y0, y1 = max(0, dy) + 3, 300 + min(0, dy) - 3
    sa_ = a[y0:y1, dx + 3 : 477]
    sb = b[y0 - dy : y1 - dy, 3 : 477 - dx]
    assert sa_.shape == sb.shape and sa_.size > 0
    assert np.abs(sa_ - sb).max() <= 1
    # the overlap holds content (the chip's texture): shifted by 2 px the strips differ
    same = np.abs(sa_ - sb).mean()
    assert np.abs(a[y0:y1, dx + 5 : 477] - sb[:, :-2]).mean() > 3 * same + 0.3


def test_chip_config_errors():
    with pytest.raises(ValueError, match="overlap"):
        ChipConfig(overlap=0.7).validate()
    with pytest.raises(ValueError, match="tiles"):
        ChipConfig(tiles=(0, 2)).validate()
    with pytest.raises(ValueError, match="size_mm"):
        ChipConfig.from_size((0.0, 1.0))
    # 10 x 8 frames of 1920 x 1200 px at 0.385 um/px, 10 % overlap, span 6.727 x 3.373 mm
    assert ChipConfig.from_size((6.72, 3.37)).tiles == (10, 8)
    assert ChipConfig.from_size((6.73, 3.37)).tiles == (11, 8)


# -- positions ----------------------------------------------------------------------------
def test_positions_csv_and_2dmatgmm_layout(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "positions.csv").write_text("file,x_mm,y_mm\na.png,1.5,2.0\nb.png,2.5,2\n")
    fr = read_positions(tmp_path)
    assert [(f.seq, f.file, f.x_mm, f.y_mm) for f in fr] == [(0, "a.png", 1.5, 2.0),
                                                            (1, "b.png", 2.5, 2.0)]  # fmt: skip
    (tmp_path / "positions.csv").write_text("file,x_mm,y_mm\na.png,1.5,2.0\nb.png,2.")
    assert len(read_positions(tmp_path, partial=True)) == 1  # a line still being written
    for bad, msg in (("file,x\na.png,1\n", "header"), ("file,x_mm,y_mm\na.png,x,1\n", "number"),
                     ("file,x_mm,y_mm\n../a.png,1,1\n", "inside"),
                     ("file,x_mm,y_mm\na.png,1,1\na.png,2,2\n", "twice")):  # fmt: skip
        (tmp_path / "positions.csv").write_text(bad)
        with pytest.raises(ValueError, match=msg):
            read_positions(tmp_path)
    g = tmp_path / "gmm"
    (g / "20x" / "Pictures").mkdir(parents=True)
    (g / "20x" / "Meta").mkdir()
    for n, pos in ((2, [1.0, 2.0]), (10, [3.0, 2.0]), (1, [0.5, 2.0])):
        (g / "20x" / "Pictures" / f"{n}.png").write_bytes(b"x")
        (g / "20x" / "Meta" / f"{n}.json").write_text(json.dumps({"motor_pos": pos, "gain": 0}))
    fr = read_positions(g)
    assert [f.file for f in fr] == ["20x/Pictures/1.png", "20x/Pictures/2.png",
                                    "20x/Pictures/10.png"]  # fmt: skip
    assert [f.x_mm for f in fr] == [0.5, 1.0, 3.0]
    with pytest.raises(ValueError, match="stage positions"):
        read_positions(tmp_path / "gmm" / "20x")


# -- merging ------------------------------------------------------------------------------
def _obs(x, y, mask, clipped, layers=1):
    return Observation(x, y, np.asarray(mask, bool), layers, 1, 0.9, (-0.1, -0.1, -0.05), clipped)


def test_merge_rules():
    full = np.ones((10, 10), bool)
    half = np.ones((10, 4), bool)
    a = _obs(100, 100, full, clipped=False)
    b = _obs(106, 101, half, clipped=True)  # the part another frame saw, 1 px off
    assert same_flake(a, b, 2) and same_flake(b, a, 2)
    assert merge(a, b) is a and merge(b, a) is a  # the complete view wins, either order
    far = _obs(140, 100, full, clipped=False)
    assert not same_flake(a, far, 8)
    near = _obs(113, 100, full, clipped=False)  # 3 px gap: a neighbour, not the same flake
    assert not same_flake(a, near, 2)
    left = _obs(0, 0, np.ones((6, 8), bool), clipped=True)
    right = _obs(5, 0, np.ones((6, 8), bool), clipped=True)
    u = merge(left, right)  # two cut views: their union
    assert (u.gx, u.gy, u.mask.shape, u.area, u.clipped) == (0, 0, (6, 13), 78, True)
    big = _obs(0, 0, np.ones((8, 8), bool), clipped=False)
    assert merge(a, big) is a and merge(big, a) is a  # two complete: the larger
    n, cx, cy, long_, short = shape_stats(np.ones((4, 10), bool))
    assert (n, cx, cy) == (40, 5.0, 2.0) and (long_, short) == (10.0, 4.0)


# -- the scan against the truth -----------------------------------------------------------
def test_scan_finds_the_chip_flakes_once(scanned, chip):
    db, stats = scanned
    assert stats["frames"] == 12 and stats["skipped"] == 0
    res = score_chip(db, chip, min_area_um2=50.0, radius_um=5.0)
    assert res["truth_thin_parts"] >= 20
    assert res["recall"] >= 0.9, res
    assert res["median_position_error_um"] < 2.5 and res["p95_position_error_um"] < 5.0, res
    assert res["counted_twice"] == 0 and res["overlapping_rows"] == 0, res
    S = open_db(db)
    with S() as s:
        seen_twice = s.scalar(sa.select(sa.func.count()).where(Flake.views > 1))
    assert seen_twice >= 3  # flakes on frame borders exist and were merged


def test_merging_off_stores_border_flakes_twice(chip, tmp_path, scanned):
    """The check above can fail: with merging disabled (match_px < 0 is refused, so
    compare per-frame detections) the frames hold more rows than the merged table."""
    db, stats = scanned
    assert stats["detections"] > stats["flakes"]
    assert overlapping_rows(db) == 0


def test_resume_after_kills_gives_the_same_database(chip, scanned, tmp_path):
    """Kill `qupaint scan` (SIGKILL) at three random points, resume each time: the result is
    the uninterrupted run's database."""
    ref = _table(scanned[0])
    db = tmp_path / "killed.sqlite"
    cmd = [sys.executable, "-m", "qupaint.cli", "scan", str(chip), "--material", "graphene",
           "--db", str(db), "--workers", "2", "--min-score", "0"]  # fmt: skip
    rng = random.Random(7)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    kills = 0
    for target in sorted(rng.sample(range(1, 11), 3)):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                             start_new_session=True)  # fmt: skip
        deadline = time.time() + 120
        while time.time() < deadline and p.poll() is None:
            n = 0
            if db.exists():
                try:
                    S = open_db(db, migrate=False)
                    with S() as s:
                        n = s.scalar(sa.select(sa.func.count()).select_from(Image))
                    S.kw["bind"].dispose()
                except sa.exc.OperationalError:
                    n = 0  # the schema is being created
            if n >= target:
                os.killpg(p.pid, signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.02)
        p.wait()
    assert kills == 3
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "already stored" in res.stdout
    assert _table(db) == ref


def test_watch_takes_frames_as_they_arrive(chip, scanned, tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    (live / "chip.json").write_bytes((chip / "chip.json").read_bytes())
    arrivals: list[float] = []
    th = threading.Thread(target=lambda: arrivals.extend(replay_scan(chip, live, rate=8.0)))
    th.start()
    db = tmp_path / "live.sqlite"
    stats = scan_folder(live, db, "graphene", workers=1, watch=True, idle_s=20, poll_s=0.05)
    th.join()
    assert stats["frames"] == 12
    assert _table(db) == _table(scanned[0])  # live or afterwards: the same database


def test_resume_refuses_other_settings_and_watch_reports_missing_frames(chip, tmp_path):
    from qupaint.detect import DetectorConfig
    from qupaint.scan.db import Scan

    db = tmp_path / "r.sqlite"
    part = tmp_path / "part"
    part.mkdir()
    (part / "chip.json").write_bytes((chip / "chip.json").read_bytes())
    rows = (chip / "positions.csv").read_text().splitlines()
    for r in rows[1:3]:
        (part / "tiles").mkdir(exist_ok=True)
        f = r.split(",")[0]
        (part / f).write_bytes((chip / f).read_bytes())
    # a third frame is listed but never arrives
    (part / "positions.csv").write_text("\n".join(rows[:4]) + "\n")
    stats = scan_folder(part, db, "graphene", workers=1, watch=True, idle_s=1.0, poll_s=0.05)
    assert stats["frames"] == 2 and stats["not_processed"] == [rows[3].split(",")[0]]
    S = open_db(db)
    with S() as s:
        assert s.scalars(sa.select(Scan.status)).one() == "incomplete"
    S.kw["bind"].dispose()
    with pytest.raises(ValueError, match="other settings"):
        scan_folder(part, db, "graphene", DetectorSettings(DetectorConfig(min_area_um2=40.0)),
                    workers=1, watch=True, idle_s=1.0)  # fmt: skip


def test_concurrent_reader_while_scanning(chip, tmp_path):
    db = tmp_path / "busy.sqlite"
    open_db(db)  # schema first
    counts, errors = [], []

    def read():
        S = open_db(db, migrate=False)
        while not done.is_set():
            try:
                with S() as s:
                    counts.append(s.scalar(sa.select(sa.func.count()).select_from(Flake)))
            except Exception as exc:  # noqa: BLE001 - any error fails the test
                errors.append(exc)
            time.sleep(0.01)
        S.kw["bind"].dispose()

    done = threading.Event()
    th = threading.Thread(target=read)
    th.start()
    scan_folder(chip, db, "graphene", workers=1)
    done.set()
    th.join()
    assert not errors and len(counts) > 5 and counts == sorted(counts) and counts[-1] > 0


def test_scan_errors(chip, tmp_path):
    with pytest.raises(ValueError, match="um_per_px"):
        scan_folder(tmp_path, tmp_path / "x.sqlite", "graphene")
    with pytest.raises(ValueError, match="unknown|material"):
        scan_folder(chip, tmp_path / "x.sqlite", "notamaterial")
    with pytest.raises(ValueError, match="folder"):
        scan_folder(chip, tmp_path / "missing" / "x.sqlite", "graphene")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "positions.csv").write_text("file,x_mm,y_mm\nnot_there.jpg,1,1\n")
    with pytest.raises(ValueError, match="missing"):
        scan_folder(broken, tmp_path / "b.sqlite", "graphene", DetectorSettings(um_per_px=0.385))
    (broken / "not_there.jpg").write_bytes(b"not a jpeg")
    # an unreadable frame is skipped and named, not fatal (tests/test_scan_faults.py)
    got = scan_folder(broken, tmp_path / "b.sqlite", "graphene", DetectorSettings(um_per_px=0.385))
    assert [u["file"] for u in got["unreadable"]] == ["not_there.jpg"]
    assert "not a readable image" in got["unreadable"][0]["error"]


# -- schema -------------------------------------------------------------------------------
def test_migrations_build_the_models_schema(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    S = open_db(tmp_path / "m.sqlite")
    with S.kw["bind"].connect() as c:
        assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
        assert c.execute(sa.text("select version_num from alembic_version")).scalar() == "0002"
        assert c.execute(sa.text("pragma journal_mode")).scalar() == "wal"
    open_db(tmp_path / "m.sqlite")  # upgrading an up-to-date database changes nothing


# -- stitching ----------------------------------------------------------------------------
def test_stitching_recovers_the_true_frame_positions(scanned, chip, tmp_path):
    layout = stitch(scanned[0], tmp_path / "map", dzi=True)
    fit = {f["file"]: (f["fit_x_mm"], f["fit_y_mm"]) for f in layout["frames"]}
    nominal = {f["file"]: (f["x_mm"], f["y_mm"]) for f in layout["frames"]}
    err = stitch_error(fit, chip, 0.385)
    stage = stitch_error(nominal, chip, 0.385)
    assert err["median_px"] < 1.0 and err["max_px"] < 2.0, err
    assert stage["median_px"] > err["median_px"]  # the stage alone is worse: the fit works
    assert layout["pairs_kept"] >= 17  # 4 x 3 frames: 17 side-by-side neighbours at least
    png = tmp_path / "map" / "overview.png"
    assert png.stat().st_size > 1000
    from PIL import Image as PILImage

    from qupaint.detect.draw import CATEGORY_COLORS

    ov = np.asarray(PILImage.open(png).convert("RGB"))
    corner = ov[-ov.shape[0] // 8 :, -ov.shape[1] // 3 :].reshape(-1, 3)  # the legend
    for cat in (1, 2):  # a swatch of each class on the map
        assert (corner == CATEGORY_COLORS[cat]).all(-1).any()
    bar = ov[-ov.shape[0] // 8 :, : ov.shape[1] // 3].reshape(-1, 3)  # the scale bar
    assert (bar == 255).all(-1).sum() > 20
    dzi = (tmp_path / "map" / "mosaic.dzi").read_text()
    assert 'TileSize="254"' in dzi and "Width=" in dzi
    assert (tmp_path / "map" / "mosaic_files" / "0" / "0_0.jpg").is_file()


def _substrate_spread(png) -> float:
    """The coefficient of variation of the substrate's brightness over 16 px blocks of an
    overview (blocks mostly substrate: within 8 % of the median grey)."""
    from PIL import Image as PILImage

    g = np.asarray(PILImage.open(png)).astype(float).mean(-1)
    sub = np.abs(g / np.median(g[g > 0]) - 1) < 0.08
    b = 16
    vals = np.array([np.median(g[y : y + b, x : x + b][sub[y : y + b, x : x + b]])
                     for y in range(0, g.shape[0] - b, b) for x in range(0, g.shape[1] - b, b)
                     if sub[y : y + b, x : x + b].mean() > 0.8])  # fmt: skip
    return float(vals.std() / vals.mean())


def test_the_map_is_corrected_for_the_lamps_fall_off(scanned, tmp_path):
    """Each frame's vignetting showed as seams on the map. The flat field measured from the
    12 frames (their per-pixel median) evens out the substrate: measured spread 2.5 % ->
    0.75 % on 4 x 3 frames of 1920 x 1200, and on these small ones as asserted."""
    raw = stitch(scanned[0], tmp_path / "raw", flat=False)
    fixed = stitch(scanned[0], tmp_path / "flat")
    assert raw["flat_field"] is None and fixed["flat_field"]["frames"] == 12
    lo, hi = fixed["flat_field"]["gain_min"], fixed["flat_field"]["gain_max"]
    assert all(a < 0.97 for a in lo) and all(1.0 < b < 1.1 for b in hi)  # the corners darker
    before = _substrate_spread(tmp_path / "raw" / "overview.png")
    after = _substrate_spread(tmp_path / "flat" / "overview.png")
    assert after < 0.5 * before, (before, after)
    # the layout itself does not depend on it
    assert [f["mosaic_x"] for f in raw["frames"]] == [f["mosaic_x"] for f in fixed["frames"]]


def test_write_dzi_levels(tmp_path):
    img = np.zeros((300, 600, 3), np.uint8)
    n = write_dzi(img, tmp_path / "m", tile=254, overlap=1)
    top = int(np.ceil(np.log2(600)))
    assert (tmp_path / "m_files" / str(top) / "2_1.jpg").is_file()
    assert not (tmp_path / "m_files" / str(top + 1)).exists()
    assert n == sum(int(np.ceil(np.ceil(600 / 2**k) / 254)) * int(np.ceil(np.ceil(300 / 2**k)
                    / 254)) for k in range(top + 1))  # fmt: skip


# -- exports ------------------------------------------------------------------------------
def _copy_db(src: Path, dst: Path) -> Path:
    """A copy of a SQLite database (the backup API also takes what is still in the WAL)."""
    import sqlite3

    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    return dst


def test_2dmatgmm_export_round_trips_field_by_field(scanned, tmp_path):
    db = _copy_db(scanned[0], tmp_path / "marked.sqlite")  # the marks stay in this test
    S = open_db(db)
    with S.begin() as s:  # a lab's marks travel with the flake
        f0 = s.scalars(sa.select(Flake).where(Flake.layers < 6).order_by(Flake.id)).first()
        f0.used, f0.favourite, f0.note = True, True, "for the hBN stack"
    z = tmp_path / "scan_A.zip"
    n = export(db, "2dmatgmm", z, min_area_um2=30)
    rows = {r["id"]: r for r in query_flakes(db, thin_only=True, min_area_um2=30)}
    back = read_2dmatgmm(z)
    assert n == len(rows) == len(back["flakes"]) > 5
    assert back["meta"]["scan_name"] == "scan_A" and back["meta"]["scan_exfoliated_material"]
    with zipfile.ZipFile(z) as zz:
        names = set(zz.namelist())
    for fl in back["flakes"]:
        r = rows[fl["qupaint_id"]]
        assert fl["position_x"] == pytest.approx(r["x_mm"], abs=1e-5)  # mm
        assert fl["position_y"] == pytest.approx(r["y_mm"], abs=1e-5)
        assert fl["size"] == pytest.approx(r["area_um2"], abs=1e-2)  # um^2
        assert fl["thickness"] == str(r["layers"])
        assert fl["max_sidelength"] == pytest.approx(r["max_side_um"], abs=1e-2)  # um
        assert fl["min_sidelength"] == pytest.approx(r["min_side_um"], abs=1e-2)
        assert fl["false_positive_probability"] == pytest.approx(1 - r["probability"], abs=1e-4)
        for ch in "rgb":
            assert fl[f"mean_contrast_{ch}"] == pytest.approx(r[f"contrast_{ch}"], abs=1e-5)
        assert (fl["used"], fl["favorite"], fl["note"]) == (r["used"], r["favourite"], r["note"])
        assert 0 < fl["entropy"] < 8
        for f in ("meta.json", "20x.jpg", "flake_mask.png", "eval_img.jpg"):
            assert f"{fl['folder']}/{f}" in names
    assert any(fl["used"] for fl in back["flakes"])


def test_coco_and_csv_exports(scanned, tmp_path):
    from pycocotools.coco import COCO

    db = scanned[0]
    n = export(db, "coco", tmp_path / "c.json")
    coco = COCO(str(tmp_path / "c.json"))
    assert len(coco.getAnnIds()) == n > 0
    a = coco.loadAnns(coco.getAnnIds())[0]
    assert {"x_mm", "y_mm", "area_um2", "layers"} <= set(a)
    assert coco.annToMask(a).sum() == a["area"] > 0
    assert export(db, "csv", tmp_path / "f.csv", layers=[1]) == len(query_flakes(db, layers=1))
    rows = list(csv.DictReader(open(tmp_path / "f.csv")))
    assert rows and all(r["layers"] == "1" for r in rows)
    with pytest.raises(ValueError, match="format"):
        export(db, "xml", tmp_path / "x")
    with pytest.raises(ValueError, match="sort"):
        query_flakes(db, sort="colour")
    big = query_flakes(db, min_area_um2=100, sort="area")
    assert all(r["area_um2"] >= 100 for r in big)
    assert [r["area_um2"] for r in big] == sorted((r["area_um2"] for r in big), reverse=True)


# -- command line -------------------------------------------------------------------------
def test_cli_chip_scan_flakes_map_export(tmp_path):
    run = CliRunner().invoke
    out = tmp_path / "vchip"
    r = run(app, ["synthia", "chip", "--out", str(out), "--tiles", "2", "2", "--tile-px",
                  "400x300", "--workers", "1", "--flakes-per-mm2", "300"])  # fmt: skip
    assert r.exit_code == 0, r.output
    db = tmp_path / "c.sqlite"
    r = run(app, ["scan", str(out), "--material", "graphene", "--db", str(db), "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert "4 frames" in r.output
    r = run(app, ["flakes", "--db", str(db), "--layers", "1", "--min-area-um2", "20", "--sort",
                  "area"])  # fmt: skip
    assert r.exit_code == 0 and "flakes" in r.output, r.output
    r = run(app, ["flakes", "--db", str(db), "--csv", "--thin"])
    assert r.exit_code == 0 and r.output.startswith("id,chip,"), r.output
    r = run(app, ["map", "--db", str(db), "--out", str(tmp_path / "map")])
    assert r.exit_code == 0 and (tmp_path / "map" / "overview.png").is_file(), r.output
    r = run(app, ["export", "--db", str(db), "--format", "csv", "--out", str(tmp_path / "x.csv")])
    assert r.exit_code == 0, r.output
    r = run(app, ["eval", "chip", "--db", str(db), "--truth", str(out), "--map-dir",
                  str(tmp_path / "map")])  # fmt: skip
    assert r.exit_code == 0 and "recall" in r.output and "stitch" in r.output, r.output
    for args in (
        ["flakes", "--db", str(tmp_path / "none.sqlite")],
        ["flakes", "--db", str(db), "--sort", "colour"],
        ["flakes", "--db", str(db), "--layers", "one"],
        ["export", "--db", str(db), "--format", "xml", "--out", "x"],
        ["synthia", "chip", "--out", str(tmp_path / "y"), "--tile-px", "big"],
    ):
        r = run(app, args)
        assert r.exit_code == 2 and r.output.strip().startswith("error:"), (args, r.output)
        assert r.output.strip().count("\n") == 0, r.output


# -- PostgreSQL ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def postgres_url():
    """A throw-away PostgreSQL server on a unix socket (skipped where none is installed)."""
    import shutil
    import tempfile

    pytest.importorskip("psycopg2")
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    d = Path(tempfile.mkdtemp(prefix="qpg"))
    d.chmod(0o755)
    (d / "sock").mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user")
        for p in (d, d / "sock"):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    opts = f"-k {d / 'sock'} -c listen_addresses=''"
    try:
        subprocess.run(
            [*as_user, initdb, "-D", str(d / "data"), "-A", "trust", "-U", "qupaint"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [
                *as_user,
                pg_ctl,
                "-D",
                str(d / "data"),
                "-o",
                opts,
                "-w",
                "-l",
                str(d / "log"),
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        shutil.rmtree(d, ignore_errors=True)
        pytest.skip(f"could not start a PostgreSQL server: {exc}")
    yield f"postgresql+psycopg2://qupaint@/postgres?host={d / 'sock'}"
    subprocess.run([*as_user, pg_ctl, "-D", str(d / "data"), "-w", "stop"], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


def test_postgresql_url_gives_the_same_database(chip, scanned, postgres_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    stats = scan_folder(chip, postgres_url, "graphene", workers=1)
    assert stats["frames"] == 12
    assert _table(postgres_url) == _table(scanned[0])
    S = open_db(postgres_url)
    with S.kw["bind"].connect() as c:
        assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
    S.kw["bind"].dispose()
    rows = query_flakes(postgres_url, thin_only=True, min_area_um2=50, sort="area")
    assert rows == query_flakes(scanned[0], thin_only=True, min_area_um2=50, sort="area")
