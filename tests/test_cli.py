"""The qupaint console script and the demo job."""

from __future__ import annotations

import csv

import numpy as np
from typer.testing import CliRunner

from qupaint.cli import app
from qupaint.optics import flake_layers, stack_reflectance

runner = CliRunner()


def test_help_lists_subcommands():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("optics", "materials", "backends", "demo"):
        assert cmd in res.output


def test_optics_writes_the_spectrum(tmp_path):
    out = tmp_path / "r.csv"
    res = runner.invoke(app, ["optics", "--stack", "MoS2:0.615:1,SiO2:285", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(out)))
    wl = np.array([float(r["wavelength_nm"]) for r in rows])
    R = np.array([float(r["R"]) for r in rows])
    assert wl[0] == 400 and wl[-1] == 700 and len(wl) == 301
    assert np.abs(R - stack_reflectance(flake_layers("MoS2", 1), wl)).max() < 1e-7


def test_optics_flake_shortcut_and_errors():
    res = runner.invoke(
        app, ["optics", "--flake", "graphene", "--layers", "2", "--theta-deg", "30", "--pol", "p"]
    )
    assert res.exit_code == 0 and "mean R" in res.output
    assert runner.invoke(app, ["optics"]).exit_code != 0
    res = runner.invoke(app, ["optics", "--stack", "kryptonite:3"])
    assert res.exit_code == 2 and "unknown" in res.output
    assert runner.invoke(app, ["optics", "--stack", "MoS2"]).exit_code != 0


def test_materials_and_backends():
    res = runner.invoke(app, ["materials"])
    assert res.exit_code == 0 and "MoWSe2" in res.output
    res = runner.invoke(app, ["backends"])
    assert res.exit_code == 0 and "reference" in res.output


def test_demo_writes_csv_and_png(tmp_path):
    res = runner.invoke(app, ["demo", "--out", str(tmp_path), "--steps", "30"])
    assert res.exit_code == 0, res.output
    import json

    pipe = json.loads((tmp_path / "pipeline" / "pipeline.json").read_text())
    assert pipe["train_loss"][-1] < pipe["train_loss"][0]  # the tiny model learned something
    assert pipe["physics_detector"]["AP50"] > 0.5
    assert set(pipe["tiny_model"]) >= {"AP", "Mono", "parse_failures"}
    chip = json.loads((tmp_path / "chip_scan" / "score.json").read_text())
    assert chip["truth"]["recall"] >= 0.9 and chip["truth"]["overlapping_rows"] == 0
    assert chip["stitch_px"]["median_px"] < 2.0
    assert (tmp_path / "chip_scan" / "map" / "overview.png").is_file()
    assert (tmp_path / "chip_scan" / "scan_2dmatgmm.zip").stat().st_size > 1000
    assert "qupaint serve --db" in res.output  # the command that serves the demo's chip
    rows = list(csv.DictReader(open(tmp_path / "flake_contrast.csv")))
    assert len(rows) == 8 * 10 * 2
    png = (tmp_path / "flake_contrast.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20000
    g1 = next(
        r
        for r in rows
        if r["material"] == "graphene" and r["layers"] == "1" and float(r["oxide_nm"]) == 285.0
    )
    # monolayer graphene on 285 nm SiO2: a few percent mean contrast, darker than substrate
    # (C = R / R_sub - 1 < 0, the sign of the detector's C = I / I_sub - 1)
    assert -0.2 < float(g1["mean_contrast"]) < 0.0
    colors = list(csv.DictReader(open(tmp_path / "flake_colors.csv")))
    assert len(colors) == 8 * 2 * 2 * 11  # materials x oxides x illuminants x (substrate + 10)
    for r in colors:
        rgb = [float(r[k]) for k in ("srgb_r", "srgb_g", "srgb_b")]
        assert all(0.0 <= v <= 1.0 for v in rgb)
    de = {
        (r["material"], r["oxide_nm"], r["illuminant"], r["layers"]): float(
            r["delta_e_vs_substrate"]
        )
        for r in colors
    }
    # contrast grows from 1 to 2 layers for a transparent crystal (hBN), under both lamps
    assert de[("hBN", "285.0", "D65", "2")] > de[("hBN", "285.0", "D65", "1")] > 0.3
    assert (tmp_path / "flake_colors.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "synthia_samples.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "synthia_vs_real.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files


def test_backends_lists_every_op_of_the_readme_table():
    # the docs' backends table is the documentation users read: every op named in its
    # "ops" column must be registered and listed by `qupaint backends`
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "docs" / "kernels.md").read_text()
    table = readme.split("| backend | what | device | ops |", 1)[1].split("\n\n", 1)[0]
    ops = set(
        re.findall(r"`([a-z_0-9]+)`", "\n".join(r.split("|")[4] for r in table.splitlines()[2:]))
    )
    assert {"tmm_reflectance", "stack_color", "pia", "pia_gate", "synthia_finish"} <= ops
    res = runner.invoke(app, ["backends"], terminal_width=400)
    assert res.exit_code == 0, res.output
    listed = set(re.findall(r"[a-z_0-9]+", res.output))
    assert ops <= listed, f"not listed by `qupaint backends`: {sorted(ops - listed)}"
