"""One door per setting: one real micrograph and one microscope give the same thin-flake
candidates through every way into detection, `qupaint detect`, the web app's
``/api/detect``, `qupaint scan` and the QuPAINT model's physics evidence, because each builds
its settings with ``DetectorSettings.from_microscope``.

The web upload used to drop the preset's oxide prior (20 of the command line's 23 thin
candidates on a 1920x1200 graphene chip, 65 % of them with the same box and layer count).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import qupaint
from qupaint._io import read_rgb
from qupaint.categories import THICK_MIN_LAYERS
from qupaint.constants import ANSWER_MIN_SCORE, MIN_SCORE, REFERENCE_UM_PER_PX

IMAGE = Path(qupaint.__file__).parent / "data" / "real" / "whole" / "GrapheneH_grey.jpg"
CAMERA = "2dmatgmm"


def _thin(dets, floor=MIN_SCORE):
    """(box, layers) of the thin candidates scoring ``floor`` or more, sorted."""
    return sorted((tuple(round(v, 3) for v in d["bbox"]), int(d["layers"])) for d in dets
                  if d["layers"] < THICK_MIN_LAYERS and d["score"] >= floor)  # fmt: skip


@pytest.fixture(scope="module")
def cli_thin(tmp_path_factory):
    """The thin candidates ``qupaint detect IMAGE --material graphene`` reports."""
    from qupaint.cli import app

    out = tmp_path_factory.mktemp("cli") / "out"
    res = CliRunner().invoke(app, ["detect", str(IMAGE), "--material", "graphene",
                                   "--camera", CAMERA, "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    rec = json.loads(next((out / "detections").glob("*.json")).read_text())
    return rec["annotations"]


def test_the_cli_finds_thin_flakes_on_the_image(cli_thin):
    assert len(_thin(cli_thin)) >= 10  # a chip with many thin flakes: a real comparison


def test_the_web_upload_gives_the_cli_s_flakes(cli_thin, tmp_path):
    from fastapi.testclient import TestClient

    from qupaint.web import create_app

    client = TestClient(create_app(tmp_path / "web.sqlite"), base_url="http://127.0.0.1")
    r = client.post("/api/detect", files={"file": (IMAGE.name, IMAGE.read_bytes(), "image/jpeg")},
                    data={"material": "graphene", "camera": CAMERA})  # fmt: skip
    assert r.status_code == 200, r.text
    assert _thin(r.json()["detections"]) == _thin(cli_thin)


def test_the_scan_stores_the_cli_s_flakes(cli_thin, tmp_path):
    pytest.importorskip("sqlalchemy")
    from qupaint.cli import app
    from qupaint.scan.export import query_flakes

    folder = tmp_path / "scan"
    folder.mkdir()
    (folder / IMAGE.name).write_bytes(IMAGE.read_bytes())
    (folder / "positions.csv").write_text(f"file,x_mm,y_mm\n{IMAGE.name},1.0,2.0\n")
    db = tmp_path / "flakes.sqlite"
    res = CliRunner().invoke(app, ["scan", str(folder), "--material", "graphene", "--camera",
                                   CAMERA, "--db", str(db), "--workers", "1"])  # fmt: skip
    assert res.exit_code == 0, res.output
    stored = sorted((f["layers"], f["area_um2"]) for f in query_flakes(db)
                    if f["layers"] < THICK_MIN_LAYERS)  # fmt: skip
    want = sorted((d["layers"], round(d["area"] * REFERENCE_UM_PER_PX**2, 2)) for d in cli_thin
                  if d["layers"] < THICK_MIN_LAYERS and d["score"] >= MIN_SCORE)  # fmt: skip
    assert stored == want


def test_the_model_s_physics_evidence_is_the_cli_s_flakes(cli_thin):
    from qupaint.color import Microscope
    from qupaint.model.whole_image import physics_candidates

    got = physics_candidates(read_rgb(IMAGE), "graphene", Microscope.load(CAMERA))
    assert _thin(got, ANSWER_MIN_SCORE) == _thin(cli_thin, ANSWER_MIN_SCORE)
    assert _thin(got, ANSWER_MIN_SCORE)  # it holds some
