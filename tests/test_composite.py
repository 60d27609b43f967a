"""Synthia flakes on real chips (qupaint.synthia.composite) and the segmenter's real-image score."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import needs_shared

from qupaint.bench.segreal import evaluate_segmenter_real, match_instances, summarise
from qupaint.color import Camera, channel_contrast
from qupaint.seg import load_segmenter, segment
from qupaint.seg.net import UNet
from qupaint.seg.train import (
    COMPOSITE_STEPS,
    chip_files,
    composite_overrides,
    crop_pieces,
    render_training_set,
)
from qupaint.synthia.composite import ChipComposer, CompositeConfig, chip_material

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
SUB = (150, 110, 160)
# one flat chip, one graphene flake at 90 nm, no camera finish: the pixels are the physics
PLAIN = dict(size=96, flakes=(1, 1), materials=("graphene",), oxide_nm=(90.0, 90.0),
             thick_oxide_prob=0.0, thin_prob=1.0, field_stop_prob=0.0, size_um=(12.0, 0.0),
             sliver_prob=0.0,
             terrace_prob=0.0, fold_prob=0.0, touching_prob=0.0, crystal_prob=0.0,
             rough_px=(0.0, 0.0), tone=(1.0, 1.0), contrast_jitter=0.0, exposure=(1.0, 1.0),
             gamma_prob=0.0, scale=(1.0, 1.0), jpeg_quality=0)  # fmt: skip


def _flat(h=160, w=200):
    return np.broadcast_to(np.array(SUB, np.uint8), (h, w, 3)).copy()


def test_a_composited_flake_has_the_contrast_the_optics_predicts():
    comp = ChipComposer([_flat()], CompositeConfig(**PLAIN), seed=3)
    want = channel_contrast("graphene", [1, 2, 3, 4, 5], 90.0, Camera.preset("2dmatgmm"))
    seen = 0
    for i in range(6):
        img, target, material, oxide = comp.sample(i)
        assert material == "graphene" and oxide == 90.0
        assert img.shape == (96, 96, 3) and target.shape == (3, 96, 96)
        thin, cut, ignore = target
        assert not cut.any() and not ignore.any()
        if thin.sum() < 30:
            continue
        from scipy.ndimage import binary_erosion

        core = binary_erosion(thin, iterations=2)
        c = img[core].astype(float).mean(0) / np.array(SUB) - 1
        assert np.abs(want - c).max(1).min() < 0.012, (c, want)  # 8-bit rounding
        bare = ~thin & binary_erosion(~thin, iterations=3)
        assert np.all(img[bare] == SUB)  # off the flake the chip is untouched
        seen += 1
    assert seen >= 3
    # a pure function of (seed, index)
    a, b = comp.sample(4), ChipComposer([_flat()], CompositeConfig(**PLAIN), seed=3).sample(4)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.target, b.target)
    assert not np.array_equal(a[0], comp.sample(5)[0])


def test_ignored_pixels_stay_ignored_and_crystals_are_never_thin():
    chip = _flat(200, 200)
    chip[60:140, 60:140] = 255  # a saturated crystal
    ign = np.zeros((200, 200), bool)
    ign[:30] = True
    cfg = CompositeConfig(**{**PLAIN, "flakes": (3, 3), "crystal_prob": 0.8,
                             "touching_prob": 0.5, "size": 200})  # fmt: skip
    comp = ChipComposer([chip], cfg, [ign], seed=0)
    any_cut = False
    for i in range(8):
        img, (thin, cut, ignore), _, _ = comp.sample(i)
        crystal = (img >= 250).all(-1)
        assert not (thin & crystal).any()  # the real crystal is painted back on top
        assert not (cut & ~thin).any()
        assert not (thin & ignore).any()
        any_cut |= bool(cut.any())
        assert ignore.sum() >= 0.1 * 200 * 200 - thin.sum()  # a rotated / flipped band
    assert any_cut  # flakes running out from the crystal are cut from it


def test_composite_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        ChipComposer([])
    with pytest.raises(ValueError, match=r"chips\[0\].*uint8"):
        ChipComposer([_flat().astype(np.float32)])
    with pytest.raises(ValueError, match="too small"):
        ChipComposer([_flat(20, 20)])
    with pytest.raises(ValueError, match="one mask per chip"):
        ChipComposer([_flat()], ignore=[])
    with pytest.raises(ValueError, match="size"):
        CompositeConfig(size=8)
    with pytest.raises(ValueError, match="oxide_nm"):
        CompositeConfig(oxide_nm=(0.0, 90.0))
    with pytest.raises(ValueError, match="step"):
        render_training_set(2, chips=["x"], step="nope")
    with pytest.raises(ValueError, match="no image or folder"):
        chip_files(["/nonexistent/folder"])


def test_chip_material_reads_the_folder():
    assert chip_material("maskterial/WS2/a.jpg") == "WS2"
    assert chip_material("maskterial/MoSe2/a.jpg") == "MoSe2"
    assert chip_material("maskterial/hBN_Thin/a.jpg") == "hBN"
    assert chip_material("2dmatgmm-demo/images/a.jpg") == "graphene"
    assert chip_material("elsewhere/a.jpg") is None


def test_render_training_set_from_chip_files(tmp_path):
    from PIL import Image

    d = tmp_path / "chips"
    d.mkdir()
    for k in range(2):
        Image.fromarray(_flat(128, 160)).save(d / f"c{k}.png")
    imgs, targets, materials = render_training_set(4, seed=1, size=96, workers=1,
                                                   chips=[str(d)], step="camera")  # fmt: skip
    assert len(materials) == 4 and set(materials) <= {"graphene", "WSe2", "MoS2", "MoSe2", "WS2"}
    assert imgs.shape == (4, 96, 96, 3) and targets.shape == (4, 3, 96, 96)
    assert targets[:, 0].any()
    assert list(COMPOSITE_STEPS) == ["backgrounds", "shapes", "terraces", "camera", "pasted"]


def test_steps_are_cumulative_or_named_groups():
    assert COMPOSITE_STEPS["pasted"] == {}  # the full CompositeConfig
    assert COMPOSITE_STEPS["camera"] == {"paste_prob": 0.0}
    both = composite_overrides("backgrounds+pasted")
    assert "paste_prob" not in both and both["sliver_prob"] == 0.0 and both["jpeg_quality"] == 0
    assert composite_overrides("terraces") == COMPOSITE_STEPS["terraces"]
    for bad in ("backgrounds+glitter", "", "+"):
        with pytest.raises(ValueError, match="groups joined by"):
            composite_overrides(bad)


def _crop():
    """A 40x50 box crop: substrate ring, a flake (C = -0.2) reaching the box edges, a
    thicker island inside it and a neighbour the box cuts at the right."""
    img = np.empty((40, 50, 3), np.uint8)
    img[:] = SUB
    img[6:34, 0:40] = (np.array(SUB) * 0.8).round()
    img[15:22, 15:22] = (np.array(SUB) * 0.5).round()  # island: not the labelled flake
    img[10:30, 44:50] = (np.array(SUB) * 1.4).clip(0, 255).round()  # cut by the box
    return img


def test_cut_out_crop_keeps_contrast_and_drops_what_the_box_cuts():
    from qupaint.bench.layers import cut_out_crop, measure_crop

    img = _crop()
    ratio, part = cut_out_crop(img)
    assert ratio.shape == (40, 50, 3) and part.shape == (40, 50) and ratio.dtype == np.float32
    assert (part[8:32, 2:12] == 1).all() and (part[30, 30] == 1)
    assert (part[17:20, 17:20] == 2).all()  # the island: pasted, left out of the loss
    assert (part[:, 44:] != 1).all() and (part[12:28, 45:] == 0).all()  # the cut neighbour
    assert (part[:4] == 0).all()
    np.testing.assert_allclose(np.median(ratio[part == 1], axis=0), 0.8, atol=0.01)
    flake, sub = measure_crop(img)  # the same clusters measure it
    np.testing.assert_allclose(flake / sub, 0.8, atol=0.01)


def test_pasted_real_flakes_keep_their_contrast_and_material():
    from qupaint.bench.layers import cut_out_crop

    ratio, part = cut_out_crop(_crop())
    cfg = CompositeConfig(**{**PLAIN, "size": 128, "paste_prob": 1.0, "pasted": (1, 1),
                             "flakes": (0, 0)})  # fmt: skip
    comp = ChipComposer([_flat(200, 200)], cfg, seed=2, pieces=[(ratio, part, "WSe2")])
    from scipy.ndimage import binary_erosion

    seen = 0
    for i in range(6):
        img, (thin, cut, ignore), material, _ = comp.sample(i)
        assert material == "WSe2"
        assert not (thin & ignore).any()
        core = binary_erosion(thin, iterations=2)
        if core.sum() < 50:
            continue
        c = np.median(img[core].astype(float) / np.array(SUB), axis=0)
        np.testing.assert_allclose(c, 0.8, atol=0.02)
        seen += 1
    assert seen >= 3
    # a piece of another material leaves images without pieces to Synthia's materials
    plain = ChipComposer([_flat(200, 200)], CompositeConfig(**PLAIN), seed=2)
    assert plain.sample(0).material == "graphene"
    with pytest.raises(ValueError, match=r"pieces\[0\]"):
        ChipComposer([_flat()], pieces=[(ratio, part[:5], "WSe2")])


@needs_shared("layer-crops")
def test_crop_pieces_from_the_shared_layer_crops():
    pieces = crop_pieces(REAL / "layer-crops")
    by = {m: sum(p[2] == m for p in pieces) for m in ("graphene", "WSe2")}
    # of 766 graphene and 206 WSe2 crops (1-4 layers), most cut cleanly
    assert 600 <= by["graphene"] <= 766 and 150 <= by["WSe2"] <= 206
    assert len(pieces) == by["graphene"] + by["WSe2"]
    for ratio, part, _ in pieces[::50]:
        flake = part == 1
        assert flake.mean() >= 0.15 and np.median(ratio[flake][:, 1]) < 1.0


def test_match_instances_by_mask_iou():
    gt = np.zeros((20, 20), np.uint8)
    gt[2:10, 2:10] = 1  # 64 px
    gt[12:18, 12:18] = 2
    pred = np.zeros((20, 20), np.int32)
    pred[2:10, 2:7] = 1  # 5/8 of flake 1: IoU 0.625 -> found
    pred[2:10, 7:10] = 2  # the rest (0.375): a split is one hit and one false instance
    pred[0, 0] = 3
    r = match_instances(gt, pred)
    assert (r["flakes"], r["found"], r["instances"], r["true_instances"]) == (2, 1, 3, 1)
    assert r["best_iou"] == [0.625, 0.0]
    s = summarise([r, match_instances(gt, gt.astype(np.int32))])
    assert s["recall"] == 3 / 4 and s["precision"] == 3 / 5 and s["false_per_image"] == 1.0
    assert match_instances(gt, np.zeros_like(pred))["found"] == 0
    with pytest.raises(ValueError, match="shape"):
        match_instances(gt, pred[:5])


def test_half_resolution_unet_and_weight_errors(tmp_path):
    net = UNet(4, 2, stem=2).eval()
    with torch.no_grad():
        for h, w in ((17, 33), (64, 48)):
            assert net(torch.zeros(1, 3, h, w)).shape == (1, 2, h, w)
    with pytest.raises(ValueError, match="stem"):
        UNet(4, 2, stem=3)
    from safetensors.torch import save_file

    good = tmp_path / "good.safetensors"
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    arch = {"name": "UNet", "width": 4, "depth": 2, "stem": 2}
    save_file(state, str(good), metadata={"qupaint": json.dumps(arch)})
    assert load_segmenter(good).stem == 2
    wrong = tmp_path / "wrong.safetensors"
    save_file(state, str(wrong), metadata={"qupaint": json.dumps({**arch, "stem": 1})})
    with pytest.raises(ValueError, match="wrong.safetensors.*metadata"):
        load_segmenter(wrong)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="cut.safetensors.*readable"):
        load_segmenter(cut)


@needs_shared("maskterial-labelled")
def test_shipped_segmenter_on_real_masked_images():
    """The shipped weights (Synthia flakes on unlabelled chips, no real label) on the shared
    expert-masked WSe2 micrographs: the floor the shipped model's docs row stands above."""
    r = evaluate_segmenter_real(REAL / "maskterial-labelled" / "WSe2" / "images",
                                lambda im: segment(im, material="WSe2"))  # fmt: skip
    assert r["images"] == 4 and r["flakes"] == 7
    weights = Path(__file__).resolve().parents[1] / "qupaint" / "seg" / "weights"
    want = json.loads((weights / "thin-flakes.json").read_text())["real"]["WSe2"]
    assert r["found"] == want["found"] and r["instances"] == want["instances"]


def test_field_stop_darkens_one_side_smoothly():
    from qupaint.synthia.composite import field_stop

    rng = np.random.default_rng(0)
    for _ in range(20):
        f = field_stop(rng, 128)
        assert f.shape == (128, 128) and f.dtype == np.float32
        assert 0.09 <= f.min() and f.max() <= 1.0
        assert np.abs(np.diff(f, axis=0)).max() < 0.1  # no hard edge: over 15 px or more
    # on a flat chip every pixel it darkens is no flake: the targets do not change
    cfg = CompositeConfig(**{**PLAIN, "field_stop_prob": 1.0})
    img, target, *_ = ChipComposer([_flat()], cfg, seed=3).sample(0)
    img0, target0, *_ = ChipComposer([_flat()], CompositeConfig(**PLAIN), seed=3).sample(0)
    assert np.array_equal(target, target0) and not np.array_equal(img, img0)


def test_segmenter_keeps_the_detectors_minimum_size():
    from qupaint.detect.config import DetectorConfig
    from qupaint.seg import MIN_AREA_PX, instances

    assert MIN_AREA_PX == DetectorConfig().min_area_px
    p = np.zeros((2, 40, 40), np.float32)
    p[0, 2:12, 2:12] = 0.9  # 100 px: kept
    p[0, 20:29, 20:31] = 0.9  # 99 px: dropped
    lab = instances(p)
    assert lab.max() == 1 and lab[5, 5] == 1 and lab[25, 25] == 0


@needs_shared("maskterial-labelled")
def test_cli_eval_seg_real(tmp_path):
    from typer.testing import CliRunner

    from qupaint.cli import app

    images = REAL / "maskterial-labelled" / "WSe2" / "images"
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["eval", "seg-real", str(images), "--material", "WSe2",
                                   "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert r["flakes"] == 7 and len(r["per_image"]) == 4 and "precision" in res.output
    res = CliRunner().invoke(app, ["eval", "seg-real", str(images), "--material", "kryptonite"])
    assert res.exit_code != 0 and "kryptonite" in res.output
