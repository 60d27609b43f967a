"""Synthia renderer and writer: determinism, geometry, colours, COCO validity, resume."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from qupaint.color import srgb_encode
from qupaint.synthia import Synthia, SynthiaConfig, category_of, generate

SMALL = dict(height=192, width=192, radius_px=(8.0, 30.0), flakes_per_image=(3, 6))


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_sample_is_deterministic_in_seed_and_index():
    a, b = Synthia(SynthiaConfig(seed=5, **SMALL)), Synthia(SynthiaConfig(seed=5, **SMALL))
    s1, s2 = a.sample(3), b.sample(3)
    assert np.array_equal(s1.image, s2.image) and s1.annotations == s2.annotations
    assert not np.array_equal(a.sample(4).image, s1.image)
    assert not np.array_equal(Synthia(SynthiaConfig(seed=6, **SMALL)).sample(3).image, s1.image)
    assert s1.image.dtype == np.uint8 and s1.image.shape == (192, 192, 3)


def test_annotations_geometry_categories_and_no_overlap():
    syn = Synthia(SynthiaConfig(seed=1, **SMALL))
    n_checked = 0
    for index in range(6):
        s = syn.sample(index)
        H, W = s.image.shape[:2]
        owner = np.full((H, W), -1)
        for a in s.annotations:
            assert a["category_id"] == category_of(a["layers"])
            assert a["thickness_nm"] > 0 and a["material"] == s.info["material"]
            rle = mask_utils.frPyObjects(a["segmentation"], H, W)
            m = mask_utils.decode(mask_utils.merge(rle)).astype(bool)
            # boxes and masks agree (polygon raster vs alpha >= 0.5 box: within 2 px)
            ys, xs = np.nonzero(m)
            if len(xs) > 20:
                x, y, w, h = a["bbox"]
                assert abs(xs.min() - x) <= 2 and abs(ys.min() - y) <= 2
                assert abs(xs.max() + 1 - (x + w)) <= 2 and abs(ys.max() + 1 - (y + h)) <= 2
                n_checked += 1
            # flakes never overlap (terrace parts of one flake share only their step edge)
            other = (owner >= 0) & (owner != a["flake_id"]) & m
            assert other.sum() == 0
            owner[m & (owner < 0)] = a["flake_id"]
    assert n_checked > 10


def test_flakes_avoid_existing_structures_in_the_reference(tmp_path):
    from PIL import Image

    ref = np.zeros((192, 192, 3), np.uint8)
    ref[:] = (118, 92, 160)
    ref[20:80, 100:170] = (60, 190, 90)  # a real flake already on the chip
    Image.fromarray(ref).save(tmp_path / "chip.png")
    syn = Synthia(SynthiaConfig(seed=2, reference_dir=str(tmp_path), **SMALL))
    for index in range(4):
        s = syn.sample(index)
        for a in s.annotations:
            m = mask_utils.decode(
                mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], 192, 192))
            )
            assert m[22:78, 102:168].sum() == 0
        # the reference flake survives in the output image
        assert np.abs(s.image[50, 135].astype(int) - [60, 190, 90]).max() < 12


def test_flake_colours_are_tmm_times_gain():
    cfg = SynthiaConfig(
        seed=4,
        sensor_noise=0.0,
        flake_noise=0.0,
        blur_sigma_px=0.0,
        vignetting=0.0,
        debris=(0, 0),
        terrace_prob=0.0,
        **SMALL,
    )
    syn = Synthia(cfg)
    s = syn.sample(0)
    g = np.array(s.info["gain"])
    assert len(s.annotations) >= 2
    for a in s.annotations:
        lin = syn.colors[a["material"]][a["layers"]] * g
        assert np.allclose(a["color_linear_rgb"], lin)
        v = np.array(a["segmentation"][0]).reshape(-1, 2).mean(0)  # centroid, away from edges
        px = s.image[int(v[1]), int(v[0])].astype(float)
        expect = np.clip(np.asarray(srgb_encode(np.clip(lin, 0, 1))), 0, 1) * 255
        assert np.abs(px - expect).max() <= 1.0
    # the white-balance gain recovers the per-image calibration gain of the background
    assert np.all((g > 0.8) & (g < 1.2))


def test_generate_coco_resume_and_worker_independence(tmp_path):
    cfg = SynthiaConfig(seed=9, **SMALL)
    a, b = tmp_path / "a", tmp_path / "b"
    m = generate(cfg, a, num_images=6, shard_size=2, workers=1)
    generate(cfg, b, num_images=6, shard_size=2, workers=2)
    assert digest(a) == digest(b)  # worker count does not change a byte
    coco = COCO(str(a / "annotations.json"))
    assert len(coco.getImgIds()) == 6 and len(coco.getAnnIds()) == m["annotations"] > 0
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == {"Mono", "Few", "Thick"}
    assert all(c["supercategory"] == "flake" for c in coco.loadCats(coco.getCatIds()))
    # interrupt: lose a shard mark and an image, leave a stray temp file; resume
    before = digest(a)
    (a / "shards" / "shard_00001.json").unlink()
    (a / "images" / "00000003.png").unlink()
    (a / "images" / ".00000002.png.x.tmp").write_bytes(b"partial")
    generate(cfg, a, num_images=6, shard_size=2, workers=1)
    assert digest(a) == before
    manifest = json.loads((a / "manifest.json").read_text())
    assert manifest["num_images"] == 6 and manifest["config"]["seed"] == 9
    with pytest.raises(ValueError, match="different configuration"):
        generate(SynthiaConfig(seed=10, **SMALL), a, num_images=6, shard_size=2)


def test_disk_full_is_a_clear_error_and_resumes(tmp_path, monkeypatch):
    # The disk fills up after a few files: generate() raises an OSError that says so and how
    # to resume, leaves no temporary or truncated file, and a re-run completes the data set
    # byte-identically to an uninterrupted one.
    import errno
    import io
    import os

    from PIL import Image

    cfg = SynthiaConfig(seed=4, **SMALL)
    clean = tmp_path / "clean"
    generate(cfg, clean, num_images=6, shard_size=2, workers=1)

    real_fdopen, writes = os.fdopen, {"n": 0}

    class Full(io.RawIOBase):
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            writes["n"] += 1
            if writes["n"] > 4:
                self.fh.write(bytes(data)[: len(data) // 2])  # part of it lands, then ENOSPC
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.fh.write(data)

        def close(self):
            self.fh.close()
            super().close()

    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r": Full(real_fdopen(fd, mode)))
    out = tmp_path / "full"
    with pytest.raises(OSError, match="disk full.*re-run the same command"):
        generate(cfg, out, num_images=6, shard_size=2, workers=1)
    monkeypatch.setattr(os, "fdopen", real_fdopen)
    assert not list(out.rglob("*.tmp"))
    for png in (out / "images").glob("*.png"):  # whatever was finished is whole
        with Image.open(png) as im:
            im.load()
    generate(cfg, out, num_images=6, shard_size=2, workers=1)
    assert digest(out) == digest(clean)


BAD = [
    (dict(materials=()), "materials"),
    (dict(materials=("Kryptonite",)), "unknown"),
    (dict(radius_px=(10.0, 400.0)), "too large"),
    (dict(flakes_per_image=(5, 2)), "flakes_per_image"),
    (dict(reference_dir="/nonexistent/folder"), "no image"),
]


@pytest.mark.parametrize("kw,match", BAD, ids=[b[1] for b in BAD])
def test_impossible_configs(kw, match):
    with pytest.raises(ValueError, match=match):
        Synthia(SynthiaConfig(**kw))


def test_unreadable_reference_image(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot be read"):
        Synthia(SynthiaConfig(reference_dir=str(tmp_path), **SMALL)).sample(0)


def test_cli(tmp_path):
    from typer.testing import CliRunner

    from qupaint.cli import app

    res = CliRunner().invoke(
        app,
        [
            "synthia",
            "--out",
            str(tmp_path / "d"),
            "--num-images",
            "3",
            "--size",
            "128",
            "--workers",
            "1",
            "--materials",
            "MoS2,BN",
        ],
    )
    assert res.exit_code == 0, res.output
    coco = json.loads((tmp_path / "d" / "annotations.json").read_text())
    assert len(coco["images"]) == 3 and {i["material"] for i in coco["images"]} <= {"MoS2", "hBN"}
    res = CliRunner().invoke(app, ["synthia", "--out", str(tmp_path / "e"), "--materials", "Xx"])
    assert res.exit_code == 2 and "unknown" in res.output


def test_lab_colour_jitter_moves_colours_by_about_the_requested_delta_e():
    base = dict(seed=11, terrace_prob=0.0, **SMALL)
    plain = Synthia(SynthiaConfig(**base)).sample(0).annotations
    jit = Synthia(SynthiaConfig(lab_jitter=2.0, **base)).sample(0).annotations
    assert len(plain) == len(jit) > 0
    for a, b in zip(plain, jit, strict=True):
        assert a["bbox"] == b["bbox"] and a["layers"] == b["layers"]  # geometry untouched
    moved = [
        abs(a["delta_e_vs_substrate"] - b["delta_e_vs_substrate"])
        for a, b in zip(plain, jit, strict=True)
    ]
    assert all(np.isfinite(moved)) and 0 < max(moved) < 12  # sigma 2 per Lab axis
