"""The Synthia-trained thin-flake segmenter: network, instances, training, real flakes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import needs_shared
from typer.testing import CliRunner

from qupaint.cli import app
from qupaint.seg import (
    MIN_AREA_PX,
    instance_boxes,
    instances,
    load_segmenter,
    probability,
    segment,
)
from qupaint.seg.net import UNet, contrast_input
from qupaint.seg.train import boundary_mask, thin_mask, train_segmenter
from qupaint.synthia import Synthia, SynthiaConfig

CROPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "layer-crops"


def test_unet_any_size_and_contrast_input_is_exposure_free():
    net = UNet(4, 2).eval()
    with torch.no_grad():
        for h, w in ((17, 33), (64, 64)):
            assert net(torch.zeros(1, 3, h, w)).shape == (1, 2, h, w)
    rng = np.random.default_rng(0)
    img = np.clip(100 + 10 * rng.standard_normal((40, 50, 3)), 0, 255).astype(np.uint8)
    x = contrast_input(img)
    assert x.shape == (3, 40, 50) and x.dtype == torch.float32
    assert abs(float(x.median())) < 0.02  # the substrate is at zero contrast
    brighter = np.clip(img.astype(float) * 1.5, 0, 255).round().astype(np.uint8)
    assert float((contrast_input(brighter) - x).abs().mean()) < 0.02
    # float images in [0, 1] are accepted (the package's convention), out-of-range ones refused
    np.testing.assert_allclose(contrast_input(img / 255.0), x, atol=1e-6)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        contrast_input(img.astype(float))
    with pytest.raises(TypeError, match="uint8"):
        contrast_input(img.astype(np.int32))
    with pytest.raises(ValueError, match="H, W, 3"):
        contrast_input(img[..., 0])


def test_instances_cut_numbering_and_min_area():
    p = np.zeros((2, 40, 60), np.float32)
    p[0, 5:25, 5:45] = 0.9  # one thin region ...
    p[1, 5:25, 24:26] = 0.9  # ... cut in two by a boundary line
    p[0, 30:33, 50:53] = 0.9  # a 9-px speck
    lab = instances(p, 0.5, min_area=16)
    assert lab.dtype == np.int32 and lab.max() == 2
    assert np.all(lab[5:25, 5:45] > 0)  # the cut pixels join a neighbour
    assert lab[10, 10] != lab[10, 40]
    a1, a2 = (lab == 1).sum(), (lab == 2).sum()
    assert a1 >= a2  # largest first
    assert lab[31, 51] == 0  # speck dropped
    boxes = instance_boxes(lab)
    assert set(boxes) == {1, 2} and all(b[1] == 5 and b[3] == 20 for b in boxes.values())
    xs = sorted((b[0], b[0] + b[2]) for b in boxes.values())
    assert xs[0][0] == 5 and xs[1][1] == 45 and xs[0][1] == xs[1][0]  # the two halves tile it
    assert instances(np.zeros((2, 8, 8)), 0.5).max() == 0


def test_thin_and_boundary_masks_from_synthia():
    cfg = SynthiaConfig.realistic(seed=7, height=256, width=256, terrace_prob=1.0)
    s = Synthia(cfg).sample(0, masks=True)
    thin = thin_mask(s)
    want = np.zeros_like(thin)
    for k, a in enumerate(s.annotations):
        if a["layers"] <= 5 and not a.get("bulk"):
            want |= s.masks == k + 1
    assert np.array_equal(thin, want) and thin.any()
    cut = boundary_mask(s, 2)
    assert np.all(cut <= thin)
    with pytest.raises(ValueError, match="masks=True"):
        thin_mask(Synthia(cfg).sample(0))


def test_train_tiny_writes_a_loadable_model(tmp_path):
    out = tmp_path / "m.safetensors"
    meta = train_segmenter(out, images=4, steps=2, batch=2, crop=32, width=4, depth=2,
                           size=64, workers=1, command="test")  # fmt: skip
    assert out.is_file() and json.loads(out.with_suffix(".json").read_text()) == meta
    assert meta["training"]["images"] == 4 and 0 <= meta["validation"]["pixel_iou"] <= 1
    net = load_segmenter(out)
    assert isinstance(net, UNet) and net.width == 4 and not net.training
    lab = segment(np.full((40, 40, 3), 90, np.uint8), net, material="graphene")
    assert lab.shape == (40, 40)
    with pytest.raises(ValueError, match="safetensors"):
        train_segmenter(tmp_path / "m.pt", images=4, steps=1)
    with pytest.raises(ValueError, match="does not exist"):
        load_segmenter(tmp_path / "missing.safetensors")


def test_shipped_model_finds_thin_synthia_flakes_it_never_saw():
    """Held-out Synthia (another seed): recall of thin flakes at mask IoU >= 0.5."""
    syn = Synthia(SynthiaConfig.realistic(seed=991, height=384, width=384))
    found = total = 0
    for index in range(6):
        s = syn.sample(index, masks=True)
        lab = segment(s.image, material=s.info["material"])
        for k, a in enumerate(s.annotations):
            if a["layers"] > 5 or a.get("bulk") or a["area"] < MIN_AREA_PX:
                continue
            m = s.masks == k + 1
            ids, counts = np.unique(lab[m], return_counts=True)
            best = 0.0
            for i, c in zip(ids, counts, strict=True):
                if i > 0:
                    best = max(best, c / float(np.sum(m | (lab == i))))
            found += best >= 0.5
            total += 1
    assert total >= 10 and found / total >= 0.6, (found, total)


def test_segment_bare_chip_and_bad_threshold():
    rng = np.random.default_rng(1)
    chip = np.clip(120 + 2 * rng.standard_normal((96, 128, 3)), 0, 255).astype(np.uint8)
    assert segment(chip, material="graphene").max() == 0
    p = probability(chip, material="WSe2")
    assert p.shape == (2, 96, 128) and p.dtype == np.float32
    with pytest.raises(ValueError, match="threshold"):
        segment(chip, threshold=1.5, material="graphene")
    with pytest.raises(ValueError, match="material"):
        segment(chip)
    with pytest.raises(ValueError, match="adamantium"):
        segment(chip, material="adamantium")


@needs_shared("layer-crops")
def test_real_labelled_flakes_are_found():
    """Real 2DMatGMM flakes (never used in training), pasted on their substrate: a subset
    of 32 graphene crops; the full set is `qupaint eval seg-crops`."""
    from qupaint.bench.layers import crop_canvases, find_layer_crops
    from qupaint.bench.metrics import box_iou_xywh

    crops = [c for c in find_layer_crops(CROPS) if c.material == "Graphene"][::24][:32]
    found = []
    for img, gts, _ in crop_canvases(crops, np.random.default_rng(0), grid=4):
        boxes = list(instance_boxes(segment(img, material="graphene")).values())
        for box, _layers in gts:
            found.append(max((box_iou_xywh(box, b) for b in boxes), default=0) >= 0.5)
    assert len(found) == len(crops) and np.mean(found) >= 0.6, np.mean(found)


def test_cli_seg_predict(tmp_path):
    from PIL import Image

    src = Path(__file__).resolve().parents[1] / "qupaint" / "data" / "real" / "WS2_chip.jpg"
    res = CliRunner().invoke(app, ["seg", "predict", str(src), "--out", str(tmp_path),
                                   "--material", "WS2"])  # fmt: skip
    assert res.exit_code == 0, res.output
    lab = np.asarray(Image.open(tmp_path / "WS2_chip.labels.png"))
    assert lab.shape == (600, 900)
    inst = json.loads((tmp_path / "instances.json").read_text())
    (rows,) = inst.values()
    assert len(rows) == int(lab.max())
    assert (tmp_path / "WS2_chip.overlay.jpg").is_file()
    res = CliRunner().invoke(app, ["seg", "predict", str(tmp_path / "nothing*.png"),
                                   "--out", str(tmp_path), "--material", "WS2"])  # fmt: skip
    assert res.exit_code == 2
