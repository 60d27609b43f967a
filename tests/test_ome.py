"""Acquisitions as labs save them: an OME-TIFF tile scan (qupaint.scan.ome) scans to the
flakes its folder-of-frames twin gives, and flakes go back to the stage as a Micro-Manager 2
position list (qupaint.scan.export.export_micromanager)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import render_small_chip
from PIL import Image
from typer.testing import CliRunner

pytest.importorskip("sqlalchemy")
tifffile = pytest.importorskip("tifffile")

from qupaint.cli import app  # noqa: E402
from qupaint.scan import scan_folder  # noqa: E402
from qupaint.scan.export import export, query_flakes  # noqa: E402
from qupaint.scan.ome import list_ome, read_frame, split_key  # noqa: E402


def _write_ome(path, frames, um_per_px, unit="µm", drop_position=()):
    """An OME-TIFF with one series per frame (image, x_um, y_um), positions in Plane
    PositionX/Y (left out for the series in ``drop_position``)."""
    with tifffile.TiffWriter(path, ome=True) as tif:
        for k, (img, x_um, y_um) in enumerate(frames):
            md = {"axes": "YXS", "Name": f"Pos{k}", "PhysicalSizeX": um_per_px,
                  "PhysicalSizeXUnit": "µm", "PhysicalSizeY": um_per_px,
                  "PhysicalSizeYUnit": "µm"}  # fmt: skip
            if k not in drop_position:
                scale = {"µm": 1.0, "mm": 1e-3}[unit]
                md["Plane"] = {"PositionX": [x_um * scale], "PositionY": [y_um * scale],
                               "PositionXUnit": [unit], "PositionYUnit": [unit]}  # fmt: skip
            tif.write(img, photometric="rgb", metadata=md)
    return path


@pytest.fixture(scope="module")
def chip(tmp_path_factory):
    return render_small_chip(tmp_path_factory.mktemp("chip"), tiles=(3, 2))


def _frames(chip):
    with open(chip / "positions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [(np.asarray(Image.open(chip / r["file"]).convert("RGB")),
             float(r["x_mm"]) * 1000.0, float(r["y_mm"]) * 1000.0) for r in rows]  # fmt: skip


@pytest.fixture(scope="module")
def scans(chip, tmp_path_factory):
    """The chip scanned as its folder, and as one multi-position OME-TIFF (positions in
    µm), into two databases."""
    root = tmp_path_factory.mktemp("ome")
    (root / "chip.json").write_bytes((chip / "chip.json").read_bytes())
    um = json.loads((chip / "chip.json").read_text())["um_per_px"]
    ome = _write_ome(root / "acq.ome.tif", _frames(chip), um)
    folder_db, ome_db = root / "folder.sqlite", root / "ome.sqlite"
    scan_folder(chip, folder_db, "graphene", workers=1)
    stats = scan_folder(ome, ome_db, "graphene", workers=1)
    return folder_db, ome_db, stats, ome


def _thin(db):
    return sorted((f["layers"], f["x_mm"], f["y_mm"], f["area_um2"]) for f in query_flakes(db)
                  if f["layers"] <= 5)  # fmt: skip


def test_an_ome_tiff_scans_to_the_folder_s_flakes(scans):
    folder_db, ome_db, stats, ome = scans
    assert stats["frames"] == 6 and not stats["problems"] and not stats["unreadable"]
    again = scan_folder(ome, ome_db, "graphene", workers=1)  # resumable: nothing to redo
    assert again["skipped"] == 6 and again["frames"] == 0
    a, b = _thin(folder_db), _thin(ome_db)
    assert len(a) == len(b) > 5
    for (la, xa, ya, sa), (lb, xb, yb, sb) in zip(a, b, strict=True):
        assert la == lb and sa == pytest.approx(sb, rel=1e-6)
        assert abs(xa - xb) * 1000 < 2.0 and abs(ya - yb) * 1000 < 2.0  # within 2 um


def test_positions_units_and_keys(tmp_path):
    img = np.full((32, 48, 3), 90, np.uint8)
    p = _write_ome(tmp_path / "a.ome.tif", [(img, 1500.0, -250.0), (img, 1600.0, -250.0)],
                   0.5, unit="mm")  # fmt: skip
    got = list_ome(p)
    assert [k for k, *_ in got.frames] == ["a.ome.tif#0", "a.ome.tif#1"]
    assert got.frames[0][1:] == pytest.approx((1500.0, -250.0)) and got.um_per_px == 0.5
    assert split_key("a.ome.tif#1") == ("a.ome.tif", 1)
    assert read_frame(str(tmp_path / "a.ome.tif#1")).shape == (32, 48, 3)


def test_the_position_list_holds_every_flake_where_the_stage_finds_it(scans, tmp_path):
    _, ome_db, _, _ = scans
    out = tmp_path / "flakes.pos"
    n = export(ome_db, "micromanager", out, thin_only=True)
    doc = json.loads(out.read_text())
    # Micro-Manager 2's documented property-map structure
    assert doc["format"] == "Micro-Manager Property Map" and doc["major_version"] == 2
    assert doc["map"]["StagePositions"]["type"] == "PROPERTY_MAP"
    positions = doc["map"]["StagePositions"]["array"]
    flakes = {f["id"]: f for f in query_flakes(ome_db, thin_only=True)}
    assert len(positions) == n == len(flakes) > 0
    for pos in positions:
        assert {"DefaultXYStage", "DefaultZStage", "DevicePositions", "GridCol", "GridRow",
                "Label", "Properties"} <= set(pos)  # fmt: skip
        assert all(v["type"] in ("STRING", "INTEGER", "DOUBLE", "PROPERTY_MAP")
                   for v in pos.values())  # fmt: skip
        [dev] = pos["DevicePositions"]["array"]
        assert dev["Device"]["scalar"] == pos["DefaultXYStage"]["scalar"] == "XYStage"
        x, y = dev["Position_um"]["array"]
        fid = int(pos["Label"]["scalar"].split()[1])
        f = flakes[fid]
        assert pos["Label"]["scalar"] == f"flake {fid} ({f['layers']} L)"
        assert abs(x - f["x_mm"] * 1000) < 2.0 and abs(y - f["y_mm"] * 1000) < 2.0


def test_the_cli_exports_a_position_list(scans, tmp_path):
    _, ome_db, _, _ = scans
    out = tmp_path / "f.pos"
    res = CliRunner().invoke(app, ["export", "--db", str(ome_db), "--format", "micromanager",
                                   "--out", str(out), "--thin"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["map"]["StagePositions"]["array"]


def test_a_series_without_position_and_a_truncated_file_are_named(scans, chip, tmp_path):
    _, ome_db, _, ome = scans
    before = _thin(ome_db)
    # one series without a position: named in one line; the others are scanned
    frames = _frames(chip)
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "chip.json").write_bytes((chip / "chip.json").read_bytes())
    um = json.loads((chip / "chip.json").read_text())["um_per_px"]
    _write_ome(odd / "acq.ome.tif", frames, um, drop_position=(2,))
    stats = scan_folder(odd / "acq.ome.tif", tmp_path / "odd.sqlite", "graphene", workers=1)
    assert stats["frames"] == 5 and len(stats["problems"]) == 1
    assert "acq.ome.tif series 2 (Pos2): no stage position" in stats["problems"][0]
    # a truncated file (its OME-XML, written last, is cut off) into the database that holds
    # the first scan: one line, and nothing stored before is lost
    cut = tmp_path / "cut"
    cut.mkdir()
    data = ome.read_bytes()
    (cut / "acq.ome.tif").write_bytes(data[: int(0.6 * len(data))])
    res = CliRunner().invoke(app, ["scan", str(cut / "acq.ome.tif"), "--material", "graphene",
                                   "--db", str(ome_db), "--workers", "1"])  # fmt: skip
    assert res.exit_code == 2, res.output
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("error:") and "acq.ome.tif" in line and "no OME metadata" in line
    assert _thin(ome_db) == before
    # a file with no position at all: one line, nothing stored
    bare = tmp_path / "bare"
    bare.mkdir()
    _write_ome(bare / "acq.ome.tif", frames[:2], um, drop_position=(0, 1))
    res = CliRunner().invoke(app, ["scan", str(bare / "acq.ome.tif"), "--material", "graphene",
                                   "--db", str(ome_db), "--workers", "1"])  # fmt: skip
    assert res.exit_code == 2 and "no OME-TIFF series with a stage position" in res.output
    assert _thin(ome_db) == before
