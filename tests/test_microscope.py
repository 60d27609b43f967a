"""The microscope (qupaint.color.Microscope): one reader of a camera preset or file, used by
every command; `qupaint detect --camera f.json` reads the file once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from qupaint.cli import app
from qupaint.color import Camera, Microscope
from qupaint.color.camera import preset_file


def test_a_preset_states_its_scale_and_its_chip_as_a_prior_only():
    m = Microscope.load("2dmatgmm")
    spec = json.loads(preset_file("2dmatgmm").read_text())
    assert m.camera == Camera.preset("2dmatgmm")
    assert m.um_per_px == spec["um_per_px"] and m.oxide_prior_nm == spec["oxide_nm"]
    assert m.oxide_nm is None  # a preset's chip is not the user's chip
    srgb = Microscope.load("srgb")
    assert srgb.camera == Camera.srgb("D65") and srgb.um_per_px is None
    assert Microscope.load(None) == Microscope() and Microscope.load(m) is m


def test_a_file_round_trips_and_bad_ones_name_the_problem(tmp_path):
    cam = Camera.gaussian((610, 540, 465), (80, 80, 80), illuminant="A", na=0.2)
    m = Microscope(camera=cam, oxide_nm=91.5, um_per_px=0.5, response=(1.0, 0.9, 1.1))
    m.save(tmp_path / "m.json")
    back = Microscope.load(tmp_path / "m.json")
    assert back.camera == cam and back.oxide_nm == 91.5 and back.um_per_px == 0.5
    assert back.response == (1.0, 0.9, 1.1) and back.oxide_prior_nm is None
    with pytest.raises(ValueError, match="no such file"):
        Microscope.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        Microscope.load(tmp_path / "bad.json")
    (tmp_path / "neg.json").write_text(json.dumps({"camera": cam.to_dict(), "um_per_px": -1}))
    with pytest.raises(ValueError, match="um_per_px"):
        Microscope.load(tmp_path / "neg.json")
    with pytest.raises(ValueError, match="response"):
        Microscope(camera=cam, response=(1.0, 1.0))
    with pytest.raises(TypeError, match="camera"):
        Microscope.load(3.5)


def test_detect_reads_the_camera_file_once(tmp_path, monkeypatch):
    from PIL import Image

    spec = json.loads(preset_file("2dmatgmm").read_text())
    spec["oxide_nm"] = 90.0
    cam_file = tmp_path / "my_camera.json"
    cam_file.write_text(json.dumps(spec))
    img = np.full((96, 128, 3), (150, 120, 160), np.uint8)
    img[30:60, 40:80] = (120, 100, 150)
    Image.fromarray(img).save(tmp_path / "chip.png")
    reads = []
    real = Path.read_text

    def counting(self, *a, **kw):
        if self.name == cam_file.name:
            reads.append(self)
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "read_text", counting)
    res = CliRunner().invoke(app, ["detect", str(tmp_path / "chip.png"), "--material",
                                   "graphene", "--camera", str(cam_file), "--out",
                                   str(tmp_path / "out"), "--workers", "1"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert len(reads) == 1, reads
    rec = json.loads(next((tmp_path / "out" / "detections").glob("*.json")).read_text())
    assert rec["oxide"]["source"] == "given"  # the file's calibrated oxide was used
