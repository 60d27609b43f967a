"""Synthia realism: each effect against its physics or statistics, masks, speed-free."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from qupaint.color import tmm_substrate_color
from qupaint.synthia import Synthia, SynthiaConfig
from qupaint.synthia.flakes import random_flake, random_sliver, rasterize, split_fold
from qupaint.synthia.realism import (
    background_crop,
    background_pack,
    camera_white_balance,
    chromatic_shift,
    field_defocus,
    flake_radius_px,
    jpeg_roundtrip,
    paint_residue,
)

SMALL = dict(height=256, width=256)
QUIET = dict(noise_range=(0.0, 0.0), sensor_noise=0.0, jpeg_quality=(0, 0), blur_sigma_px=0.0,
             defocus_px=0.0, chromatic_px=0.0, flake_noise=0.0)  # fmt: skip


def test_realistic_is_deterministic_and_differs_from_classic():
    a = Synthia(SynthiaConfig.realistic(seed=4, **SMALL)).sample(2, masks=True)
    b = Synthia(SynthiaConfig.realistic(seed=4, **SMALL)).sample(2, masks=True)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
    assert a.annotations == b.annotations
    c = Synthia(SynthiaConfig(seed=4, **SMALL)).sample(2)
    assert not np.array_equal(a.image, c.image)
    assert a.info["background"].endswith(".jpg") and "jpeg_quality" in a.info


def test_masks_match_annotations_and_rle():
    syn = Synthia(SynthiaConfig.realistic(seed=1, rough_px=(1.0, 2.0), **SMALL))
    checked = 0
    for index in range(4):
        s = syn.sample(index, masks=True)
        assert s.masks.shape == (256, 256) and s.masks.dtype == np.int32
        for k, a in enumerate(s.annotations):
            m = s.masks == k + 1
            # a later part takes the shared edge pixels of an earlier one (a terrace's step
            # line, where both are at alpha 0.5): at most about one perimeter's worth
            assert a["area"] - 4 * math.sqrt(a["area"]) - 4 <= m.sum() <= a["area"]
            seg = a["segmentation"]
            if isinstance(seg, dict):  # rough flakes carry their raster outline
                dec = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})
                assert dec.sum() == a["area"]
                assert np.all(dec.astype(bool) | ~m)  # every mask pixel is in its RLE
                checked += 1
    assert checked > 0


def test_fold_has_twice_the_layers_and_its_colour():
    cfg = SynthiaConfig.realistic(seed=3, fold_prob=1.0, attached_prob=0.0, sliver_prob=0.0,
                                  category_weights=(1, 0, 0), terrace_prob=0.0,
                                  white_balance_strength=(0, 0), exposure=(1, 1),
                                  bulk_crystals=(0, 0), residue=(0, 0), scratches=(0, 0),
                                  wrinkle_prob=0.0, bubble_prob=0.0, debris=(0, 0), **QUIET,
                                  **SMALL)  # fmt: skip
    syn = Synthia(cfg)
    pairs = 0
    for index in range(3):
        s = syn.sample(index, masks=True)
        by_flake: dict[int, list] = {}
        for k, a in enumerate(s.annotations):
            by_flake.setdefault(a["flake_id"], []).append((k, a))
        for parts in by_flake.values():
            if len(parts) != 2:
                continue
            (k1, a1), (k2, a2) = parts
            assert a2["layers"] == 2 * a1["layers"]
            # the fold's pixels are the flat part's colour times c_2L / c_L (noise off)
            inner1 = _interior(s.masks == k1 + 1)
            inner2 = _interior(s.masks == k2 + 1)
            if inner1.sum() < 10 or inner2.sum() < 10:
                continue
            v1 = np.median(s.image[inner1].astype(float), axis=0)
            v2 = np.median(s.image[inner2].astype(float), axis=0)
            tab = syn._table(a1["material"], s.info["substrate_oxide_nm"])
            want = tab[a2["layers"]] / tab[a1["layers"]]
            # linear camera (gamma 1): pixel ratios are intensity ratios; the background
            # under the two parts differs by its own texture (a few per cent)
            np.testing.assert_allclose(v2 / v1, want, rtol=0.06, atol=0.02)
            pairs += 1
    assert pairs >= 1


def _interior(m: np.ndarray) -> np.ndarray:
    from scipy.ndimage import binary_erosion

    return binary_erosion(m, iterations=3)


def test_residue_colour_is_its_thin_film_and_paint_is_exact():
    syn = Synthia(SynthiaConfig.realistic(seed=0, **SMALL))
    ox = 90.0
    ratio = syn._substrate(ox + 5.0) / syn._substrate(ox)
    cam = syn.camera
    want = tmm_substrate_color(ox + 5.0, camera=cam) / tmm_substrate_color(ox, camera=cam)
    np.testing.assert_allclose(ratio, want, rtol=1e-12)
    assert np.all(np.abs(ratio - 1) < 0.2) and np.any(np.abs(ratio - 1) > 1e-3)
    img = np.full((120, 120, 3), 0.4, np.float32)
    box = paint_residue(img, np.random.default_rng(1), ratio, 80.0)
    x0, y0, x1, y1 = box
    patch = img[y0:y1, x0:x1] / 0.4
    # every pixel is between bare (1) and fully covered (ratio), and some are fully covered
    lo, hi = np.minimum(1, ratio), np.maximum(1, ratio)
    assert np.all(patch >= lo - 1e-6) and np.all(patch <= hi + 1e-6)
    full = np.all(np.isclose(patch, ratio.astype(np.float32), rtol=1e-5), axis=-1)
    assert full.sum() > 20
    assert np.all(img[:y0] == np.float32(0.4)) if y0 > 0 else True


@pytest.mark.parametrize("exposure", [1.25, 0.3])
def test_bright_crystals_clip_as_the_exposure_says(exposure):
    cfg = SynthiaConfig.realistic(seed=2, bulk_crystals=(2, 2), flakes_per_image=(0, 0),
                                  exposure=(exposure, exposure), white_balance_strength=(0, 0),
                                  residue=(0, 0), debris=(0, 0), scratches=(0, 0), **QUIET,
                                  **SMALL)  # fmt: skip
    syn = Synthia(cfg)
    seen = {"clip": 0, "free": 0}
    for index in range(4):
        s = syn.sample(index, masks=True)
        assert s.info["exposure"] == exposure
        for k, a in enumerate(s.annotations):
            inner = _interior(s.masks == k + 1)
            if inner.sum() < 30:
                continue
            # linear camera: pixel / 255 = colour * exposure, clipped at 1
            level = np.asarray(a["color_linear_rgb"]) * exposure
            px = s.image[inner].astype(float)
            for ch in range(3):
                if level[ch] > 1.1:
                    assert np.mean(px[:, ch] == 255) > 0.95
                    seen["clip"] += 1
                elif level[ch] < 0.85:
                    assert np.mean(px[:, ch] == 255) < 0.05
                    np.testing.assert_allclose(np.median(px[:, ch]) / 255, level[ch],
                                               rtol=0.1)  # fmt: skip
                    seen["free"] += 1
    assert seen["clip" if exposure > 1 else "free"] >= 3, seen


def test_jpeg_roundtrip_error_in_range():
    rng = np.random.default_rng(0)
    img = Synthia(SynthiaConfig.realistic(seed=0, **SMALL)).sample(0).image
    assert img.dtype == np.uint8
    flat = np.clip(120 + 3 * rng.standard_normal((64, 64, 3)), 0, 255).astype(np.uint8)
    e = {}
    for q in (30, 90):
        out = jpeg_roundtrip(flat, q)
        assert out.shape == flat.shape and out.dtype == np.uint8
        e[q] = float(np.abs(out.astype(float) - flat).mean())
    assert 0 < e[90] < 3.0 and e[30] > e[90]
    with pytest.raises(ValueError, match="quality"):
        jpeg_roundtrip(flat, 0)


def test_camera_white_balance_keeps_contrast():
    sub = np.array([0.3, 0.2, 0.45])
    flake = sub * np.array([0.9, 0.85, 1.1])
    g1 = camera_white_balance(sub, 1.0)
    assert np.ptp(g1 * sub) < 1e-12  # fully balanced: grey
    np.testing.assert_allclose(np.mean(g1 * sub), sub.mean())
    g0 = camera_white_balance(sub, 0.0)
    np.testing.assert_allclose(g0, 1.0)
    for g in (g1, camera_white_balance(sub, 0.5)):
        np.testing.assert_allclose((g * flake) / (g * sub), flake / sub)


def test_chromatic_shift_moves_red_out_and_blue_in():
    img = np.zeros((101, 101, 3), np.float32)
    img[:, 90:92] = 1.0  # a bright line right of centre
    out = chromatic_shift(img, 2.0)
    col = np.arange(101)

    def centroid(ch):
        w = out[50, :, ch]
        return float((w * col).sum() / w.sum())

    c0 = 90.5
    assert centroid(0) > c0 + 1.0 and centroid(2) < c0 - 1.0  # 2 px * 40/50 = 1.6 px
    assert abs(centroid(1) - c0) < 1e-6
    assert chromatic_shift(img, 0.0) is img


def test_field_defocus_blurs_one_side_more():
    rng = np.random.default_rng(3)
    img = rng.random((128, 128, 3)).astype(np.float32)
    before = img.copy()
    field_defocus(img, np.random.default_rng(0), 2.0)
    diff = np.abs(img - before).mean(-1)
    # the weight ramps across the field: the change is small on one side, large on the other
    q = np.quantile(diff, [0.05, 0.95])
    assert q[1] > 5 * q[0] + 1e-3
    same = before.copy()
    field_defocus(same, np.random.default_rng(0), 0.0)
    assert np.array_equal(same, before)


def test_size_distribution_in_um():
    rng = np.random.default_rng(0)
    r = np.array([flake_radius_px(rng, (18.0, 0.48), 0.385, (1.0, 1e9)) for _ in range(4000)])
    side_um = 2 * r * 0.385
    assert abs(np.median(side_um) / 18.0 - 1) < 0.05
    assert abs(np.std(np.log(side_um)) / 0.48 - 1) < 0.05
    clipped = [flake_radius_px(rng, (18.0, 0.48), 0.385, (10.0, 20.0)) for _ in range(200)]
    assert min(clipped) >= 10.0 and max(clipped) <= 20.0


def test_sliver_is_elongated_and_rough_edge_stays_near_the_smooth_one():
    rng = np.random.default_rng(5)
    s = random_sliver(rng, 80.0, 10.0)
    v = s.vertices()
    ev = np.linalg.eigvalsh(np.cov(v.T))
    assert math.sqrt(ev[1] / ev[0]) > 3.5
    shape = random_flake(rng, 30.0)
    from qupaint.synthia.flakes import FlakeShape

    rough = FlakeShape(shape.normals, shape.offsets, 2.0, 3.0, 7)
    a_s, box_s = rasterize(shape, 50, 50, 100, 100, 0.01)
    a_r, box_r = rasterize(rough, 50, 50, 100, 100, 0.01)
    m_s = np.zeros((100, 100), bool)
    m_r = np.zeros((100, 100), bool)
    m_s[box_s[1] : box_s[3], box_s[0] : box_s[2]] = a_s >= 0.5
    m_r[box_r[1] : box_r[3], box_r[0] : box_r[2]] = a_r >= 0.5
    from scipy.ndimage import binary_dilation, binary_erosion

    assert not np.array_equal(m_s, m_r)
    assert np.all(m_r <= binary_dilation(m_s, iterations=3))
    assert np.all(binary_erosion(m_s, iterations=3) <= m_r)


def test_split_fold_partitions_the_flake():
    rng = np.random.default_rng(2)
    shape = random_flake(rng, 25.0)
    flat, fold = split_fold(rng, shape)
    assert abs(flat.area() + fold.area() - shape.area()) < 1e-6 * shape.area()
    assert 0.05 * shape.area() < fold.area() < 0.5 * shape.area()


def test_bubble_colour_tends_to_the_flake_as_the_gap_closes():
    syn = Synthia(SynthiaConfig.realistic(seed=0, **SMALL))
    tab = syn._table("MoS2", 90.0)
    np.testing.assert_allclose(syn._bubble("MoS2", 6, 0.0, 90.0), tab[6], rtol=1e-9)
    assert np.max(np.abs(syn._bubble("MoS2", 6, 40.0, 90.0) / tab[6] - 1)) > 0.02


def test_background_pack_is_real_and_flake_free():
    pack = background_pack()
    assert len(pack) >= 4
    for img, info in pack:
        assert img.dtype == np.uint8 and min(img.shape[:2]) >= 512
        assert info["source"].startswith("maskterial/")
        sub = np.median(img.reshape(-1, 3), axis=0)
        off = np.abs(img / sub - 1).max(-1) > 0.1
        assert off.mean() < 0.005, info["file"]
    crop, info = background_crop(np.random.default_rng(0), 300, 200)
    assert crop.shape == (300, 200, 3)
    big, _ = background_crop(np.random.default_rng(0), 900, 900)  # upsampled when larger
    assert big.shape == (900, 900, 3)


def test_realism_config_errors():
    with pytest.raises(ValueError, match="backgrounds"):
        SynthiaConfig(backgrounds="moon").validate()
    with pytest.raises(ValueError, match="fold_prob"):
        SynthiaConfig(fold_prob=1.5).validate()
    with pytest.raises(ValueError, match="jpeg_quality"):
        SynthiaConfig(jpeg_quality=(50, 120)).validate()
    with pytest.raises(ValueError, match="size_um"):
        SynthiaConfig(size_um=(0.0, 0.3)).validate()
    with pytest.raises(ValueError, match="oxide_choices_nm"):
        SynthiaConfig(oxide_choices_nm=(10.0,), oxide_jitter_nm=20.0).validate()


def _write_set(folder, cfg, n):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    syn = Synthia(cfg)
    for i in range(n):
        Image.fromarray(syn.sample(i).image).save(folder / f"{i}.png")


def test_compare_sets_same_set_is_zero_and_realism_is_closer(tmp_path):
    from qupaint.bench.realism import compare_sets, plot_comparison

    _write_set(tmp_path / "classic", SynthiaConfig(seed=0, **SMALL), 4)
    _write_set(tmp_path / "real_like", SynthiaConfig.realistic(seed=1, **SMALL), 4)
    same = compare_sets(tmp_path / "classic", tmp_path / "classic", size=256)
    assert all(row["distance"] < 1e-12 for row in same["summary"].values())
    diff = compare_sets(tmp_path / "classic", tmp_path / "real_like", size=256)
    assert sum(row["distance"] for row in diff["summary"].values()) > 0.5
    assert diff["images"] == {"synthetic": 4, "real": 4}
    png = plot_comparison(diff, tmp_path / "cmp.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="no image"):
        compare_sets(tmp_path / "classic", _empty(tmp_path), size=256)


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_cli_synthia_realistic_default_and_compare(tmp_path):
    import json

    from typer.testing import CliRunner

    from qupaint.cli import app

    r = CliRunner().invoke(app, ["synthia", "--out", str(tmp_path / "s"), "--num-images", "3",
                                 "--size", "128", "--workers", "1"])  # fmt: skip
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["config"]["backgrounds"] == "real"
    args = ["--num-images", "2", "--size", "128", "--workers", "1", "--style", "classic"]
    r = CliRunner().invoke(app, ["synthia", "--out", str(tmp_path / "c"), *args])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["synthia", "compare", "--synthetic", str(tmp_path / "c"),
                                 "--real", str(tmp_path / "s"), "--size", "128",
                                 "--out", str(tmp_path / "cmp")])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "substrate RGB" in r.output and (tmp_path / "cmp" / "compare.png").is_file()
    r = CliRunner().invoke(app, ["synthia", "--num-images", "2"])
    assert r.exit_code == 2 and "--out" in r.output


def test_every_effect_alone_renders_with_thick_flakes():
    """Colour tables cover what each effect can ask for on its own: folds of the thickest
    terraces (twice max_layers + 3), specks and crystals (bulk_layers)."""
    off = dict(attached_prob=0.0, bulk_crystals=(0, 0), specks=(0, 0), fold_prob=0.0,
               wrinkle_prob=0.0, category_weights=(0, 0, 1), terrace_prob=1.0, **SMALL)  # fmt: skip
    for on in ({"fold_prob": 1.0}, {"wrinkle_prob": 1.0}, {"specks": (5, 5)},
               {"bulk_crystals": (2, 2)}, {"attached_prob": 1.0}):  # fmt: skip
        syn = Synthia(SynthiaConfig.realistic(seed=5, **{**off, **on}))
        for index in range(3):
            assert syn.sample(index).image.shape == (256, 256, 3)
