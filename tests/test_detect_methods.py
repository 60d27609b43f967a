"""The detector's methods (physics, learned, fused), the one door that picks them, and the
adapted segmenter a calibration writes beside its camera file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_shared

from qupaint.color import Camera, Microscope, channel_contrast
from qupaint.detect import DetectorSettings, find_flakes
from qupaint.detect.config import DEFAULT_METHOD, METHODS

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "maskterial-labelled"


def _chip():
    """A purple 2dmatgmm-like chip (400x480) with two graphene flakes (2 and 3 layers on
    90 nm, as the 2dmatgmm camera sees them) and the camera's noise."""
    rng = np.random.default_rng(0)
    sub = np.array((130.0, 112.0, 158.0))
    img = sub + 1.5 * rng.standard_normal((400, 480, 3))
    c = channel_contrast("graphene", [2, 3], 90.0, Camera.preset("2dmatgmm"))
    img[80:150, 60:170] *= 1 + c[0]
    img[220:300, 260:400] *= 1 + c[1]
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def test_methods_and_their_door():
    assert DEFAULT_METHOD in METHODS == ("physics", "learned", "fused")
    s = DetectorSettings.from_microscope("2dmatgmm", method="fused")
    assert s.method == "fused" and s.describe()["method"] == "fused"
    assert DetectorSettings.from_microscope("2dmatgmm").method == DEFAULT_METHOD
    with pytest.raises(ValueError, match="method: one of physics, learned, fused; got 'magic'"):
        DetectorSettings.from_microscope("2dmatgmm", method="magic")
    from qupaint.detect.config import DetectorConfig

    for bad in (dict(learned_min_p=1.0), dict(learned_weight=-1.0)):
        with pytest.raises(ValueError, match="learned"):
            DetectorConfig(**bad).validate()


def test_learned_and_fused_on_a_chip():
    img = _chip()
    base = DetectorSettings.from_microscope("2dmatgmm")
    phys = find_flakes(img, "graphene", base)
    thin = [d for d in phys.detections if d["layers"] <= 5]
    assert len(thin) == 2 and all("p_learned" not in d for d in thin)
    learned = find_flakes(img, "graphene", base.replace(method="learned"), masks="window")
    assert learned.ladder is not None and learned.rejected == []
    # the two flakes, at the physics' layer counts (measured: 2 and 3 layers, score 0.98)
    assert sorted(d["layers"] for d in learned.detections) == [2, 3]
    # the same fields as the physics reports, so every writer (CSV, report, scan) takes them
    assert set(learned.detections[0]) - {"mask"} == set(phys.detections[0])
    for d in learned.detections:  # the segmenter marks thin flakes; the ladder counts them
        assert 1 <= d["layers"] <= 5 and 0.5 <= d["score"] <= 1.0
        assert d["mask"].shape == (int(d["bbox"][3]), int(d["bbox"][2]))
    fused = find_flakes(img, "graphene", base.replace(method="fused"))
    assert len(fused.detections) == 2
    by_box = {tuple(d["bbox"]): d for d in phys.detections}
    for d in fused.detections:
        if d["layers"] > 5:
            assert "p_learned" not in d
            continue
        p = by_box[tuple(d["bbox"])]  # the same flake, its score times p_learned
        assert d["p_learned"] >= base.config.learned_min_p
        assert d["score"] == pytest.approx(p["score"] * d["p_learned"], rel=1e-3)
    # a verifier nothing satisfies rejects every thin flake, by name
    from qupaint.detect.config import DetectorConfig

    strict = base.replace(method="fused", config=DetectorConfig(learned_min_p=0.999))
    res = find_flakes(img, "graphene", strict)
    assert not [d for d in res.detections if d["layers"] <= 5]
    assert res.rejected_by().get("learned", 0) == 2


def test_a_camera_file_names_its_adapted_segmenter(tmp_path):
    cam = Microscope.load("2dmatgmm").to_dict()
    (tmp_path / "w.safetensors").write_bytes(b"x")
    f = tmp_path / "cam.json"
    f.write_text(json.dumps({**cam, "segmenter": "w.safetensors"}))
    mic = Microscope.load(f)  # relative to the file's folder
    assert mic.segmenter == str(tmp_path / "w.safetensors")
    assert DetectorSettings.from_microscope(mic).segmenter == mic.segmenter
    assert Microscope.from_dict(mic.to_dict()).segmenter == mic.segmenter
    f.write_text(json.dumps({**cam, "segmenter": "gone.safetensors"}))
    with pytest.raises(ValueError, match="cam.json names segmenter weights .*gone.safetensors"):
        Microscope.load(f)


@needs_shared("maskterial-labelled")
def test_calibrate_adapts_the_segmenter_and_detect_uses_it(tmp_path, monkeypatch):
    import shutil

    from typer.testing import CliRunner

    from qupaint.bench.real import find_masked_images
    from qupaint.cli import app

    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    for p in find_masked_images(REAL / "WSe2" / "images")[:2]:
        shutil.copy(p.image, tmp_path / "images")
        shutil.copy(p.mask, tmp_path / "masks")
    cam = tmp_path / "out" / "cam.json"
    args = ["calibrate", "--material", "WSe2", "--images", str(tmp_path / "images"),
            "--max-layers", "3", "--out", str(cam)]  # fmt: skip
    res = CliRunner().invoke(app, [*args, "--adapt-steps", "2"])
    assert res.exit_code == 0, res.output
    spec = json.loads(cam.read_text())
    weights = cam.parent / spec["segmenter"]
    assert weights.is_file() and weights.name.startswith("cam.segmenter-")
    assert json.loads(weights.with_suffix(".json").read_text())["adapted"]["recipe"]["steps"] == 2
    assert DetectorSettings.from_microscope(cam).segmenter == str(weights)
    img = tmp_path / "images" / sorted(p.name for p in (tmp_path / "images").iterdir())[0]
    out = tmp_path / "det"
    res = CliRunner().invoke(app, ["detect", str(img), "--material", "WSe2", "--camera",
                                   str(cam), "--method", "learned", "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["detect", str(img), "--material", "WSe2", "--method", "x"])
    assert res.exit_code != 0 and "method: one of physics, learned, fused" in res.output
    # an adaptation that dies leaves the camera file and its weights as they were
    before = cam.read_bytes()
    files = sorted(cam.parent.iterdir())

    def boom(*a, **k):
        raise RuntimeError("killed")

    monkeypatch.setattr("qupaint.seg.adapt.adapt_segmenter", boom)
    res = CliRunner().invoke(app, [*args, "--adapt-steps", "5"])
    assert res.exit_code != 0
    assert cam.read_bytes() == before and sorted(cam.parent.iterdir()) == files


@needs_shared("maskterial-labelled")
def test_leave_one_out_adapts_on_the_others(monkeypatch):
    """``eval real --loo --method fused --adapt-steps N``: each image is scored with a
    segmenter adapted on the other images only."""
    import qupaint.seg.adapt as adapt
    from qupaint.bench.real import calibrated_detector_from, evaluate_real_loo

    seen = []
    real = adapt.adapt_segmenter

    def spy(pairs, *a, **k):
        seen.append(sorted(p.name for p in pairs))
        return real(pairs, *a, **k)

    monkeypatch.setattr(adapt, "adapt_segmenter", spy)
    build = calibrated_detector_from("WSe2", max_layers=3, method="fused", adapt_steps=1)
    r = evaluate_real_loo(REAL / "WSe2" / "images", None, build)
    names = [p["image"] for p in r["per_image"]]
    assert r["flakes"] == 7 and len(seen) == 4
    for name, used in zip(names, seen, strict=True):
        assert name not in used and len(used) == 3
