"""QuPAINT model on transformers: gate placement, gradients, gate-off equivalence, save/load,
processor (template, label masking, tiling), colour jitter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ImageOutputSpy
from PIL import Image
from transformers import InternVLForConditionalGeneration

from qupaint.categories import CATEGORY_PHRASES
from qupaint.model import QuPAINTForConditionalGeneration, QuPAINTProcessor, tiny_model
from qupaint.model.image_processing import dynamic_tiles, lab_jitter, tile_grid
from qupaint.model.processing import IGNORE
from qupaint.model.regions import region_ids
from qupaint.pia import pia_scores


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(seed=0)


def _batch(proc, rng, n=2):
    items = []
    for k in range(n):
        img = rng.integers(0, 256, (70 + 9 * k, 90, 3), dtype=np.uint8)
        pv = proc.pixel_values(img)
        q = "<image>\nHow many monolayer flakes are in the image?"
        enc = proc.encode([(q, f"There are {k + 1} monolayer flakes in the image.")], len(pv))
        items.append({**enc, "pixel_values": pv})
    return proc.collate(items)


def test_forward_backward_and_gate_gradients(tiny, rng):
    model, proc = tiny
    batch = _batch(proc, rng)
    with torch.no_grad():  # a non-zero w makes alpha matter, so both grads are non-trivial
        model.pia_gate.w.fill_(1.5)
        model.pia_gate.b.fill_(-0.3)
    try:
        out = model(**batch)
        assert torch.isfinite(out.loss)
        out.loss.backward()
        assert model.pia_gate.w.grad is not None and model.pia_gate.w.grad.abs() > 0
        assert model.pia_gate.b.grad is not None and model.pia_gate.b.grad.abs() > 0
    finally:
        model.zero_grad()
        with torch.no_grad():
            model.pia_gate.w.zero_()
            model.pia_gate.b.zero_()


def test_gate_scales_each_patch_token_by_its_own_pia_score(tiny, rng):
    model, proc = tiny
    pv = _batch(proc, rng)["pixel_values"]
    seen = {}
    handle = model.model.multi_modal_projector.register_forward_hook(
        lambda m, i, o: seen.__setitem__("x", i[0])
    )
    try:
        with torch.no_grad():
            model.pia_gate.w.fill_(2.0)
            model.model.get_image_features(pv)
            gated = seen["x"]
            model.config.use_pia_gate = False
            model.model.get_image_features(pv)
            plain = seen["x"]
    finally:
        model.config.use_pia_gate = True
        handle.remove()
        with torch.no_grad():
            model.pia_gate.w.zero_()
    # undo the pixel shuffle: projector input = 2x2 blocks of patch tokens along channels
    alpha = pia_scores(pv, patch_size=14, image_size=56, mean=model.config.image_mean,
                       std=model.config.image_std)  # fmt: skip
    scale = torch.sigmoid(2.0 * alpha)  # [N, 16] on the 4x4 patch grid
    ratio = (gated / plain).reshape(pv.shape[0], 4, -1)  # [N, 4 shuffled tokens, 4C]
    C = plain.shape[-1] // 4
    got = ratio.reshape(pv.shape[0], 4, 4, C).mean(-1)  # one factor per original patch
    want = scale.reshape(pv.shape[0], 4, 4)
    # InternVL's shuffle: token (i, j) of the 2x2 grid holds patches of rows 2i..2i+1, cols 2j..
    assert torch.allclose(torch.sort(got.reshape(pv.shape[0], -1)).values,
                          torch.sort(want.reshape(pv.shape[0], -1)).values, atol=1e-4)  # fmt: skip


def test_gate_off_is_exactly_internvl_and_init_gate_is_invisible(tiny, rng, tmp_path):
    model, proc = tiny
    batch = _batch(proc, rng)
    plain = InternVLForConditionalGeneration(model.config)
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert not missing and set(unexpected) == {"model.pia_gate.w", "model.pia_gate.b"}
    with torch.no_grad():
        ref = plain(**batch).logits
        model.config.use_pia_gate = False
        off = model(**batch).logits
        model.config.use_pia_gate = True
        on = model(**batch).logits  # w = b = 0: every token x 0.5, removed by the LayerNorm
    assert torch.equal(off, ref)
    torch.testing.assert_close(on, ref, atol=2e-4, rtol=0)


def test_save_load_round_trip(tiny, rng, tmp_path):
    model, proc = tiny
    batch = _batch(proc, rng)
    with torch.no_grad():
        model.pia_gate.w.fill_(0.7)
    try:
        model.save_pretrained(tmp_path)
        proc.save_pretrained(tmp_path)
        again = QuPAINTForConditionalGeneration.from_pretrained(tmp_path)
        proc2 = QuPAINTProcessor.from_pretrained(tmp_path)
        assert again.pia_gate.w.item() == pytest.approx(0.7)
        with torch.no_grad():
            torch.testing.assert_close(again(**batch).logits, model(**batch).logits)
        assert proc2.encode([("q", "a")], 1) == proc.encode([("q", "a")], 1)
    finally:
        with torch.no_grad():
            model.pia_gate.w.zero_()


def test_internvl_checkpoint_gets_a_gate(tiny, rng, tmp_path):
    model, proc = tiny
    from transformers import InternVLConfig

    cfg = InternVLConfig(**{k: v for k, v in model.config.to_dict().items()
                            if k in ("vision_config", "text_config", "image_token_id",
                                     "image_seq_length", "downsample_ratio")})  # fmt: skip
    InternVLForConditionalGeneration(cfg).save_pretrained(tmp_path)  # random InternVL weights
    got = QuPAINTForConditionalGeneration.from_internvl(tmp_path)
    assert got.config.use_pia_gate and got.pia_gate.w.item() == 0 and got.pia_gate.b.item() == 0


def test_label_masking_covers_answers_only(tiny):
    model, proc = tiny
    enc = proc.encode([("<image>\nQ1?", "A one."), ("Q2?", "B two.")], 1)
    ids, labels = enc["input_ids"], enc["labels"]
    trained = proc.tokenizer.decode(
        [i for i, lab in zip(ids, labels, strict=True) if lab != IGNORE]
    )
    assert trained == "A one.<|im_end|>B two.<|im_end|>"
    assert ids.count(proc.image_token_id) == proc.tokens_per_tile
    with pytest.raises(ValueError, match="one image per conversation"):
        proc.encode([("<image><image>x", "y")], 1)


@pytest.mark.parametrize(
    "size, grid",
    [
        ((448, 448), (1, 1)),
        ((896, 448), (2, 1)),
        ((448, 1344), (1, 3)),
        ((1792, 1344), (4, 3)),
        ((1000, 10), (12, 1)),
        ((500, 400), (4, 3)),  # InternVL picks by aspect ratio, not size
    ],  # fmt: skip
)
def test_dynamic_tiling_grid_and_order(size, grid):
    assert tile_grid(*size, 448, 1, 12) == grid
    img = Image.fromarray(np.arange(size[0] * size[1] * 3, dtype=np.uint32).astype(np.uint8)
                          .reshape(size[1], size[0], 3))  # fmt: skip
    tiles = dynamic_tiles(img, 448, 12)
    n = grid[0] * grid[1]
    assert len(tiles) == n + (1 if n > 1 else 0)
    big = img.resize((grid[0] * 448, grid[1] * 448), resample=3)
    if n > 1:  # row-major: tile 1 is the second column of the first row (or row 2)
        r, c = divmod(1, grid[0])
        want = np.asarray(big)[r * 448 : (r + 1) * 448, c * 448 : (c + 1) * 448]
        assert np.array_equal(np.asarray(tiles[1]), want)
        assert tiles[-1].size == (448, 448)  # thumbnail last


def test_lab_jitter_moves_colour_by_the_requested_amount(rng):
    from qupaint.color import delta_e, srgb_to_lab

    img = np.full((8, 8, 3), (120, 140, 160), np.uint8)
    out = lab_jitter(img, 3.0, 3.0, np.random.default_rng(0))
    d = float(np.asarray(delta_e(srgb_to_lab(out[0, 0]), srgb_to_lab(img[0, 0]))))
    assert 0.5 < d < 15
    assert np.array_equal(out, lab_jitter(img, 3.0, 3.0, np.random.default_rng(0)))
    assert np.array_equal(lab_jitter(img, 0.0, 0.0, rng), img)


def test_compact_init_is_the_documented_size():
    """``compact-init``: the compact architecture, random (the start of training from
    scratch): 224-px images, 192 region-token slots per image read through a pointer,
    about 4 M parameters."""
    from qupaint.model import load_model_and_processor

    model, proc = load_model_and_processor("compact-init")
    n = sum(p.numel() for p in model.parameters())
    assert 3.5e6 < n < 4.5e6
    assert proc.image.image_size == 224 and proc.tokens_per_tile == 192
    no_gate, _ = load_model_and_processor("compact-init", use_pia_gate=False)
    assert model.config.use_pia_gate and not no_gate.config.use_pia_gate


def test_dense_head_adds_its_loss_and_trains_the_vit(rng):
    """``dense_classes``: a per-patch classifier on the gated ViT tokens. Its labels add
    ``dense_weight`` x their cross-entropy (computed here by hand from ``dense_logits``);
    all-ignored labels leave the language loss alone; the gradient reaches the ViT."""
    from qupaint.model import load_model_and_processor

    model, proc = load_model_and_processor("compact-init", seed=1)
    assert model.config.dense_classes == 4
    model.config.dense_weight = 0.5
    img = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    pv = proc.pixel_values(img)
    enc = proc.encode([("<image>\nHow many monolayer flakes are in the image?", "I count 1.")], 1)
    cells = 256 * model.config.dense_sub**2  # 16 x 16 patches, 4 x 4 cells each
    labels = torch.as_tensor(rng.integers(0, 4, (1, cells)))
    regions = torch.as_tensor([region_ids(proc.tokenizer, [(0.1, 0.1, 0.4, 0.3)], [1], 192,
                                          proc.image_token_id)])  # fmt: skip
    batch = proc.collate([{**enc, "pixel_values": pv, "dense_labels": labels,
                           "region_ids": regions}])  # fmt: skip
    assert batch["dense_labels"].shape == (1, cells)
    lm_only = model(**{k: v for k, v in batch.items() if k != "dense_labels"}).loss
    ignored = model(**batch | {"dense_labels": torch.full((1, cells), -100)}).loss
    out = model(**batch)
    tokens = out.image_outputs.patch_tokens  # what the dense head read, handed back
    want = torch.nn.functional.cross_entropy(model.dense_logits(tokens)[0], labels[0]) * 0.5 \
        + lm_only
    assert torch.allclose(out.loss, want, rtol=1e-5)
    assert torch.allclose(ignored, lm_only)
    out.loss.backward()
    vit = model.model.vision_tower.embeddings.patch_embeddings.projection.weight.grad
    assert vit is not None and vit.abs().sum() > 0
    assert model.model.dense_head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="dense_classes"):
        QuPAINTForConditionalGeneration.config_class(dense_classes=-1)


def test_patch_class_grids_from_coco_masks(tmp_path):
    """Patch classes of a hand-made COCO: a Mono square filling patches exactly, a Few
    flake covering a third of one patch (kept, >= 0.3), a Thick sliver under the cover
    threshold (substrate), and a Thick flake painted over part of the Mono one."""
    from pycocotools import mask as mask_utils

    from qupaint.train.data import patch_class_grids

    h = w = 64  # a 4 x 4 grid of 16-px patches
    masks = []
    m = np.zeros((h, w), np.uint8)
    m[0:32, 0:32] = 1  # Mono: patches (0,0) (0,1) (1,0) (1,1)
    masks.append((1, m))
    m = np.zeros((h, w), np.uint8)
    m[48:64, 48:54] = 1  # Few: 6/16 of patch (3,3)
    masks.append((2, m))
    m = np.zeros((h, w), np.uint8)
    m[48:64, 0:3] = 1  # Thick: 3/16 of patch (3,0) -> substrate
    masks.append((3, m))
    m = np.zeros((h, w), np.uint8)
    m[0:16, 16:32] = 1  # Thick over the Mono in patch (0,1)
    masks.append((3, m))
    anns = []
    for k, (cat, mk) in enumerate(masks):
        rle = mask_utils.encode(np.asfortranarray(mk))
        rle["counts"] = rle["counts"].decode()
        anns.append({"id": k + 1, "image_id": 0, "category_id": cat, "segmentation": rle,
                     "bbox": [0, 0, 1, 1], "area": int(mk.sum()), "iscrowd": 0})  # fmt: skip
    coco = {"images": [{"id": 0, "file_name": "a.png", "height": h, "width": w}],
            "annotations": anns, "categories": []}  # fmt: skip
    (tmp_path / "c.json").write_text(__import__("json").dumps(coco))
    grid = patch_class_grids(tmp_path / "c.json", 4)["a.png"].reshape(4, 4)
    want = np.zeros((4, 4), int)
    want[0, 0], want[0, 1], want[1, 0], want[1, 1], want[3, 3] = 1, 3, 1, 1, 2
    np.testing.assert_array_equal(grid, want)
    with pytest.raises(ValueError, match="grid"):
        patch_class_grids(tmp_path / "c.json", 0)


def test_coco_regions_in_annotation_order(tmp_path):
    from qupaint.train.data import coco_regions

    coco = {"images": [{"id": 3, "file_name": "a.png", "height": 100, "width": 200},
                       {"id": 4, "file_name": "b.png", "height": 50, "width": 50}],
            "annotations": [{"id": 1, "image_id": 3, "category_id": 3, "bbox": [20, 10, 40, 30]},
                            {"id": 2, "image_id": 3, "category_id": 1, "bbox": [0, 0, 10, 10]}],
            "categories": []}  # fmt: skip
    (tmp_path / "c.json").write_text(__import__("json").dumps(coco))
    got = coco_regions(tmp_path / "c.json")
    assert got["b.png"] == ([], [])
    boxes, cats = got["a.png"]
    assert cats == [3, 1]
    np.testing.assert_allclose(boxes, [(0.1, 0.1, 0.3, 0.4), (0.0, 0.0, 0.05, 0.1)])


def test_region_ids_keep_whole_regions_and_fill():
    """Region tokens: a tally of every region, then as many whole regions as fit, the
    largest first, written top to bottom; the rest is the fill id; no regions read
    "none"."""
    from qupaint.model.regions import region_text

    _, proc = tiny_model(seed=0)
    tok, fill = proc.tokenizer, proc.image_token_id
    # areas 0.01, 0.06, 0.08: the last is the largest, the first the smallest
    boxes = [(0.1, 0.1, 0.2, 0.2), (0.3, 0.3, 0.5, 0.6), (0.0, 0.7, 0.4, 0.9)]
    cats = [1, 3, 2]
    totals = [3, 1, 1, 1]

    def ids_of(k_boxes, k_cats):
        return tok(region_text(k_boxes, k_cats, totals), add_special_tokens=False)["input_ids"]

    one = ids_of(boxes[2:], [2])
    two = ids_of([boxes[1], boxes[2]], [3, 2])  # the two largest, top to bottom
    assert region_ids(tok, boxes, cats, len(two) + 2, fill) == two + [fill, fill]
    pad = [fill] * (len(two) - 1 - len(one))
    assert region_ids(tok, boxes, cats, len(two) - 1, fill) == one + pad
    assert region_ids(tok, boxes, cats, len(one), fill) == one
    empty = tok(region_text([], []), add_special_tokens=False)["input_ids"]
    assert region_ids(tok, [], [], len(empty) + 8, fill) == empty + [fill] * 8
    assert tok.decode(empty).strip() == "flakes 0, Mono 0, Few 0, Thick 0; none"
    assert tok.decode(two).strip() == ("flakes 3, Mono 1, Few 1, Thick 1; "
                                       "Thick: [0.300, 0.300, 0.500, 0.600]; "
                                       "Few: [0.000, 0.700, 0.400, 0.900]")  # fmt: skip


def test_region_tokens_read_the_dense_map_and_generation_is_consistent(rng):
    """``region_tokens``: the dense head's map, cut into connected regions per class, is
    what the LM reads (as the word embeddings of its region text); a map set by hand gives
    exactly its boxes; greedy cached generation equals the argmax of one uncached forward;
    different images give different logits."""
    from qupaint.model import load_model_and_processor
    from qupaint.model.regions import region_text

    model, proc = load_model_and_processor("compact-init", seed=2)
    model.eval()
    imgs = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(2)]
    batch = proc(imgs, questions=["How many monolayer flakes are in the image?"] * 2)
    mm, cfg = model.model, model.config
    s, c = cfg.dense_sub, cfg.dense_classes
    with torch.no_grad():
        mm.dense_head.weight.zero_()
        bias = torch.zeros(s, s, c)
        bias[..., 0] = 30.0  # every cell substrate ...
        mm.dense_head.bias.copy_(bias.flatten())
        image = mm.get_image_features(batch["pixel_values"])
        feats = image.pooler_output
        assert mm.regions(image.patch_tokens) == [([], []), ([], [])]
        # the vision side alone gives the same map without writing region tokens
        np.testing.assert_array_equal(mm.dense_map(batch["pixel_values"]),
                                      np.zeros((2, 64, 64), int))  # fmt: skip
        # ... then a Mono block of 2 x 3 patches (8 x 12 cells) and a Thick one, by hand
        logits = torch.zeros(2, 64, 64, c)
        logits[..., 0] = 1.0
        logits[:, 8:16, 4:16, 1] = 5.0
        logits[:, 40:64, 32:48, 3] = 5.0
        logits[:, 0, 0, 2] = 5.0  # one cell: under region_min_cells, dropped
        mm.dense_grid_logits = lambda tokens: logits
        regions = mm.regions(image.patch_tokens)
        want = [(32 / 64, 40 / 64, 48 / 64, 1.0), (4 / 64, 8 / 64, 16 / 64, 16 / 64)]
        assert regions[0] == (want, [3, 1])
        ids = mm.predicted_region_ids(image.patch_tokens)
        text = proc.tokenizer.decode([i for i in ids[0].tolist() if i != proc.image_token_id])
        (thick, mono), _ = regions[0]  # written top to bottom: Mono first
        assert text == region_text([mono, thick], [1, 3])
        assert text.startswith(" flakes 2, Mono 1, Few 0, Thick 1; Mono: [")
        want = mm.get_input_embeddings()(ids)
        del mm.dense_grid_logits
    assert feats.shape == (2, cfg.region_tokens, cfg.text_config.hidden_size)
    model2, _ = load_model_and_processor("compact-init", seed=2)
    model2.eval()
    with torch.no_grad():
        model2.model.dense_head.weight.mul_(20)  # a noisy map with regions of every class
        seq = model2.generate(**batch, max_new_tokens=6, do_sample=False, min_new_tokens=6,
                              pad_token_id=proc.pad_id, eos_token_id=None)  # fmt: skip
        n = batch["input_ids"].shape[1]
        att = torch.cat([batch["attention_mask"], torch.ones_like(seq[:, n:])], 1)
        full = model2(input_ids=seq, attention_mask=att, pixel_values=batch["pixel_values"])
        assert torch.equal(full.logits[:, n - 1 : -1].argmax(-1), seq[:, n:])
        assert (full.logits[0, -1] - full.logits[1, -1]).abs().max() > 1e-4
        # true regions passed in replace the predicted ones
        forced = model2(**batch, region_ids=ids).logits
        assert (forced - model2(**batch).logits).abs().max() > 1e-4
        torch.testing.assert_close(model2.model.get_input_embeddings()(ids), want)
    with pytest.raises(ValueError, match="dense head"):
        QuPAINTForConditionalGeneration.config_class(region_tokens=8)
    with pytest.raises(ValueError, match="dense_sub"):
        QuPAINTForConditionalGeneration.config_class(dense_classes=4, dense_sub=0)


def test_region_pointer_copies_and_its_training_loss_is_the_full_forwards(rng):
    """``region_pointer``: the logits are log-probabilities of the pointer-generator
    mixture; a gate forced open puts the next token's probability on the region tokens'
    ids in proportion to the attention; the training loss (mixture at labelled positions
    only) equals the loss of the full forward; the gradient reaches the pointer."""
    from qupaint.model import load_model_and_processor

    model, proc = load_model_and_processor("compact-init", seed=3)
    assert model.config.region_pointer
    img = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    enc = proc.encode([("<image>\nHow many monolayer flakes are in the image?",
                        "There are 2 monolayer flakes in the image.")], 1)  # fmt: skip
    regions = torch.as_tensor([region_ids(proc.tokenizer, [(0.1, 0.1, 0.4, 0.3),
                                                            (0.5, 0.5, 0.7, 0.9)], [1, 1], 192,
                                          proc.image_token_id)])  # fmt: skip
    batch = proc.collate([{**enc, "pixel_values": proc.pixel_values(img),
                           "region_ids": regions}])  # fmt: skip
    model.train()
    loss = model(**batch).loss  # grad enabled: the labelled positions only
    with torch.no_grad():
        full = model(**batch)
    torch.testing.assert_close(full.loss, loss.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(full.logits.exp().sum(-1), torch.ones(full.logits.shape[:2]),
                               rtol=1e-4, atol=1e-4)  # fmt: skip
    loss.backward()
    assert model.region_pointer.key.weight.grad.abs().sum() > 0
    assert model.region_pointer.gate.weight.grad.abs().sum() > 0
    with torch.no_grad():  # gate open: all probability on the region tokens read
        model.region_pointer.gate.bias.fill_(50.0)
        model.region_pointer.gate.weight.zero_()
        p = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0, -1].exp()
    read = set(regions[0][regions[0] != proc.image_token_id].tolist())
    assert abs(float(p[sorted(read)].sum()) - 1.0) < 1e-4
    with pytest.raises(ValueError, match="region_pointer"):
        QuPAINTForConditionalGeneration.config_class(region_pointer=True)


def test_referred_box_reads_describe_questions_in_every_dialect():
    """``referred_box``: the one box of a describe question, as fractions of the image, in
    each box dialect; None for other questions and for a describe question without one."""
    from qupaint.instruct.formats import format_boxes
    from qupaint.instruct.templates import DESCRIBE_Q
    from qupaint.model.regions import referred_box

    w, h = 300, 200
    bbox = [30.0, 40.0, 90.0, 60.0]  # x, y, w, h in pixels -> (0.1, 0.2, 0.4, 0.5)
    for fmt in ("llava", "internvl", "qwen"):
        for t in DESCRIBE_Q:
            q = t.format(box=format_boxes(fmt, [bbox], None, w, h))
            got = referred_box(q, fmt, (w, h))
            np.testing.assert_allclose(got, (0.1, 0.2, 0.4, 0.5), atol=2e-3, err_msg=(fmt, q))
    assert referred_box("How many monolayer flakes are in the image?", "llava", (w, h)) is None
    assert referred_box("Locate all flakes in the image with their layer category.", "llava",
                        (w, h)) is None  # fmt: skip
    assert referred_box("Describe the flake at the centre.", "llava", (w, h)) is None


def test_box_class_sums_probabilities_over_the_box(rng):
    """``box_class`` against a direct reference: the non-substrate class with the largest
    probability summed over every cell the box touches (edges rounded outwards), each cell
    weighted by a Gaussian of its offset from the box's centre in units of the box's size
    (a huge ``sigma``: the plain sum); a box thinner than a cell still reads its cell."""
    from qupaint.model.regions import BOX_SIGMA, box_class

    probs = rng.dirichlet(np.ones(4), size=(16, 12))  # h 16, w 12
    for k in range(60):
        sigma = (BOX_SIGMA, 0.3, 1e6)[k % 3]
        x1, x2 = np.sort(rng.random(2))
        y1, y2 = np.sort(rng.random(2))
        c0, c1 = int(np.floor(x1 * 12)), max(int(np.ceil(x2 * 12)), int(np.floor(x1 * 12)) + 1)
        r0, r1 = int(np.floor(y1 * 16)), max(int(np.ceil(y2 * 16)), int(np.floor(y1 * 16)) + 1)
        c1, r1 = min(c1, 12), min(r1, 16)
        total = np.zeros(3)
        for r in range(r0, r1):
            for c in range(c0, c1):
                dy = (r - r0 + 0.5) / (r1 - r0) - 0.5
                dx = (c - c0 + 0.5) / (c1 - c0) - 0.5
                total += probs[r, c, 1:] * np.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma))
        assert box_class(probs, (x1, y1, x2, y2), sigma) == 1 + int(np.argmax(total))
    one = np.zeros((16, 12, 4))
    one[..., 0] = 1.0
    one[5, 7] = [0.4, 0.1, 0.1, 0.4]
    assert box_class(one, (7.2 / 12, 5.5 / 16, 7.3 / 12, 5.6 / 16)) == 3
    # a Thick flake with a Few rim: the plain sum reads the rim, the centre the flake
    rim = np.zeros((10, 10, 4))
    rim[..., 2] = 1.0
    rim[3:7, 3:7] = [0, 0, 0, 1]
    assert box_class(rim, (0, 0, 1, 1), 1e6) == 2 and box_class(rim, (0, 0, 1, 1)) == 3


def test_generate_hands_region_ids_and_referred_boxes_to_the_vision_side(rng):
    """transformers' ``generate`` encodes the image before the first forward: the
    ``region_ids`` and ``ref_boxes`` given to it must still reach the region tokens.
    ``generate_answers`` gives a describe question its box: the region text then opens with
    the box's class (``box_class`` of the dense head); a count question gets none."""
    from qupaint.model import load_model_and_processor
    from qupaint.model.inference import generate_answers
    from qupaint.model.regions import box_class

    model, proc = load_model_and_processor("compact-init", seed=4)
    model.eval()
    assert model.config.region_refer
    img = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    batch = proc([img], questions=["How many monolayer flakes are in the image?"])
    ids = torch.as_tensor([region_ids(proc.tokenizer, [(0.1, 0.1, 0.4, 0.3)], [2], 192,
                                      proc.image_token_id)])  # fmt: skip
    spy = ImageOutputSpy(model)
    model.generate(**batch, region_ids=ids, max_new_tokens=1, do_sample=False)
    assert torch.equal(spy.read, ids)
    questions = ["Describe the flake at [0.100, 0.200, 0.300, 0.500].",
                 "How many monolayer flakes are in the image?"]  # fmt: skip
    generate_answers(model, proc, [img, img], questions, batch_size=2, temperature=0,
                     max_new_tokens=1)  # fmt: skip
    read = [proc.tokenizer.decode([i for i in r.tolist() if i != proc.image_token_id])
            for r in spy.read]  # fmt: skip
    # the vision side alone, on the same image
    probs = model.model.dense_probs(proc.pixel_values(img))
    with torch.no_grad():
        tokens = model.model.vision_tokens(proc.pixel_values(img))[1]
    [(boxes, cats)] = model.model.regions(tokens)
    asked = box_class(probs[0], (0.1, 0.2, 0.3, 0.5))
    want = region_ids(proc.tokenizer, boxes, cats, 192, proc.image_token_id, asked)
    assert spy.read[0].tolist() == want
    spy.remove()
    assert read[0].startswith(f" asked {CATEGORY_PHRASES[asked]}; flakes {len(cats)},")
    assert read[1].startswith(f" flakes {len(cats)},")
    with pytest.raises(ValueError, match="ref_boxes"):
        model(**{**batch, "ref_boxes": torch.zeros(2, 4)})
    with pytest.raises(ValueError, match="region_refer"):
        QuPAINTForConditionalGeneration.config_class(region_refer=True)


def test_training_regions_name_the_described_flakes_true_class(tmp_path, rng):
    """Training with ``refer``: the region text of a dialogue with a describe turn opens
    with the true class of the flake at the question's box (most overlapping region), left
    out in about :data:`REFER_DROP` of samples; without a describe turn, never."""
    import json

    from qupaint.instruct.formats import format_boxes
    from qupaint.model import load_model_and_processor
    from qupaint.train.data import REFER_DROP, InstructDataset, coco_regions

    _, proc = load_model_and_processor("compact-init")
    Image.fromarray(rng.integers(0, 256, (100, 200, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    anns = [([10, 10, 50, 40], 3), ([120, 50, 30, 20], 1), ([70, 60, 20, 30], 2)]
    coco = {"images": [{"id": 1, "file_name": "a.png", "height": 100, "width": 200}],
            "annotations": [{"id": k, "image_id": 1, "category_id": c, "bbox": b}
                            for k, (b, c) in enumerate(anns)], "categories": []}  # fmt: skip
    (tmp_path / "c.json").write_text(json.dumps(coco))

    def rec(k):
        box = format_boxes("llava", [anns[k][0]], None, 200, 100)
        return {"image": "a.png", "conversations": [
            {"from": "human", "value": "<image>\nHow many thick flakes are in the image?"},
            {"from": "gpt", "value": "There is 1 thick flake in the image."},
            {"from": "human", "value": f"Describe the flake at {box}."},
            {"from": "gpt", "value": "This is a flake."}]}  # fmt: skip

    records = [rec(k % 3) for k in range(60)]
    plain = {"image": "a.png", "conversations": records[0]["conversations"][:2]}
    regions = coco_regions(tmp_path / "c.json")
    ds = InstructDataset([*records, plain], tmp_path, proc, regions=regions, region_length=192,
                         refer=True)  # fmt: skip
    decode = lambda i: proc.tokenizer.decode(ds[i]["region_ids"][0])  # noqa: E731
    dropped = 0
    for i in range(60):
        text = decode(i)
        if text.startswith(" asked"):
            assert text.startswith(f" asked {CATEGORY_PHRASES[anns[i % 3][1]]};"), text
        else:
            dropped += 1
    assert 0.05 < dropped / 60 < 2.5 * REFER_DROP
    assert decode(60).startswith(" flakes 3,")
    off = InstructDataset(records, tmp_path, proc, regions=regions, region_length=192)
    assert proc.tokenizer.decode(off[0]["region_ids"][0]).startswith(" flakes 3,")


def test_the_model_keeps_no_per_call_state():
    """``forward``, ``generate`` and ``get_image_features`` of the model classes assign
    nothing to ``self`` (or ``self.model``): per-call inputs are arguments, outputs come back
    in ``image_outputs``."""
    import ast
    import inspect

    from qupaint.model import modeling

    tree = ast.parse(inspect.getsource(modeling))
    checked = set()
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            if fn.name not in ("forward", "generate", "get_image_features", "_pointer_forward",
                               "vision_tokens"):  # fmt: skip
                continue
            checked.add(fn.name)
            for node in ast.walk(fn):
                targets = []
                if isinstance(node, ast.Assign):
                    targets = node.targets
                elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                    targets = [node.target]
                for t in targets:
                    while isinstance(t, (ast.Attribute, ast.Subscript)):
                        t = t.value
                        if isinstance(t, ast.Name) and t.id == "self":
                            raise AssertionError(f"{cls.name}.{fn.name} assigns to self "
                                                 f"(line {node.lineno})")  # fmt: skip
                if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setattr"
                        and isinstance(node.args[0], ast.Name) and node.args[0].id == "self"):
                    raise AssertionError(f"{cls.name}.{fn.name} calls setattr on self")
    assert {"forward", "get_image_features"} <= checked
