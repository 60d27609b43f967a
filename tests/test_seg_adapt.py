"""Few-shot adaptation of the segmenter to masked real images (qupaint.seg.adapt)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from qupaint.seg import flake_detections, load_segmenter, segment
from qupaint.seg.adapt import AdaptRecipe, adapt_segmenter, mask_targets, read_masked
from qupaint.seg.net import UNet

SUB = np.array((150, 110, 160), float)


def _chip(rng, h=96, w=128):
    """A flat chip with one dark square flake (C = -0.25) and its instance mask."""
    img = np.clip(SUB + 3 * rng.standard_normal((h, w, 3)), 0, 255)
    mask = np.zeros((h, w), np.uint8)
    y, x = int(rng.integers(10, h - 50)), int(rng.integers(10, w - 50))
    img[y : y + 30, x : x + 36] *= 0.75
    mask[y : y + 30, x : x + 36] = 1
    return img.round().astype(np.uint8), mask


def _write(tmp_path, n=3, seed=0):
    rng = np.random.default_rng(seed)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    pairs = []
    for k in range(n):
        img, mask = _chip(rng)
        Image.fromarray(img).save(tmp_path / "images" / f"c{k}.png")
        Image.fromarray(mask).save(tmp_path / "masks" / f"c{k}.png")
        pairs.append((tmp_path / "images" / f"c{k}.png", tmp_path / "masks" / f"c{k}.png"))
    return pairs


def _tiny_base(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = UNet(4, 2, in_channels=6, stem=2)
    path = tmp_path / "base.safetensors"
    arch = {"name": "UNet", "width": 4, "depth": 2, "stem": 2, "in": "contrast+material"}
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path),
              metadata={"qupaint": json.dumps(arch)})  # fmt: skip
    return path


def test_mask_targets_mark_flakes_and_the_cut_between_touching_ones():
    m = np.zeros((10, 16), np.uint8)
    m[2:8, 1:5] = 1
    m[2:8, 5:9] = 2  # touches flake 1 along x = 4|5
    m[2:4, 13:16] = 3  # alone
    thin, cut, ignore = mask_targets(m)
    assert (thin == (m > 0)).all() and not ignore.any()
    assert cut[2:8, 3:7].all() and not cut[:, :3].any() and not cut[:, 7:].any()
    assert not cut[m == 3].any()  # a flake's edge on bare chip is no cut


def test_adapting_learns_the_masked_flakes_and_writes_weights(tmp_path):
    pairs = _write(tmp_path)
    base = _tiny_base(tmp_path)
    out = tmp_path / "adapted.safetensors"
    before = load_segmenter(base)
    net = adapt_segmenter(pairs, "graphene", base,
                          AdaptRecipe(steps=150, batch=8, crop=64, lr=2e-2), out)  # fmt: skip
    img, mask = _chip(np.random.default_rng(9))
    iou = {}
    for name, model in (("before", before), ("after", net)):
        lab = segment(img, model, material="graphene", min_area=20)
        iou[name] = ((lab > 0) & (mask > 0)).sum() / max(1, ((lab > 0) | (mask > 0)).sum())
    assert iou["after"] > 0.5 > iou["before"], iou
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["adapted"]["flakes"] == 3 and meta["adapted"]["materials"] == ["graphene"] * 3
    again = load_segmenter(out)  # the written file loads and gives the same mask
    assert np.array_equal(segment(img, again, material="graphene", min_area=20),
                          segment(img, net, material="graphene", min_area=20))  # fmt: skip
    dets = flake_detections(img, net, "graphene", min_area=20)
    assert dets and dets[0]["category_id"] == 1 and 0.5 < dets[0]["score"] <= 1.0
    assert all(dets[i]["score"] >= dets[i + 1]["score"] for i in range(len(dets) - 1))


def test_adapt_bad_input(tmp_path):
    pairs = _write(tmp_path)
    base = _tiny_base(tmp_path)
    with pytest.raises(ValueError, match="at least 2"):
        adapt_segmenter(pairs[:1], "graphene", base)
    with pytest.raises(ValueError, match="one for all or one per image"):
        adapt_segmenter(pairs, ["graphene"] * 2, base)
    with pytest.raises(ValueError, match=r"\.safetensors"):
        adapt_segmenter(pairs, "graphene", base, out=tmp_path / "x.pt")
    small = tmp_path / "masks" / "small.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(small)
    with pytest.raises(ValueError, match="small.png is 10x10 px but its image .*c0.png is 128x96"):
        read_masked([(pairs[0][0], small)])
    empty = []
    for k, (img, _) in enumerate(pairs):
        e = tmp_path / "masks" / f"empty{k}.png"
        Image.fromarray(np.zeros((96, 128), np.uint8)).save(e)
        empty.append((img, e))
    with pytest.raises(ValueError, match="every mask is empty"):
        adapt_segmenter(empty, "graphene", base)
    for bad in (dict(steps=0), dict(focus=2.0), dict(lr=0.0)):
        with pytest.raises(ValueError):
            AdaptRecipe(**bad)
    # a killed adaptation leaves the previous weights intact: nothing is written before the end
    out = tmp_path / "keep.safetensors"
    out.write_bytes(b"previous")

    def stop(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        adapt_segmenter(pairs, "graphene", base, AdaptRecipe(steps=5, batch=2, crop=32), out,
                        progress=stop)  # fmt: skip
    assert out.read_bytes() == b"previous"
