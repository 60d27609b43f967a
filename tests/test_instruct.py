"""QMat-Instruct: answers agree with the annotations, in every format; determinism; splits."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import numpy as np
import pytest

from qupaint.bench import parse_answer
from qupaint.instruct import FORMATS, TASKS, build_corpus, format_boxes

CAT = {"monolayer": 1, "few-layer": 2, "thick": 3}


@pytest.fixture(scope="module")
def corpus(synth_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    summary = build_corpus(synth_dataset / "annotations.json", out_path=out, formats=FORMATS)
    coco = json.loads((synth_dataset / "annotations.json").read_text())
    return out, summary, coco


def _records(out, fmt):
    recs = []
    for split in ("train", "val", "test"):
        for line in (out / fmt / f"{split}.jsonl").read_text().splitlines():
            recs.append(json.loads(line))
    return recs


def _turns(rec):
    if "messages" in rec:
        m = rec["messages"]
        return [(m[i]["content"], m[i + 1]["content"]) for i in range(0, len(m), 2)]
    c = rec["conversations"]
    return [(c[i]["value"], c[i + 1]["value"]) for i in range(0, len(c), 2)]


def _anns(coco, image_id, cat=None):
    return [
        a
        for a in coco["annotations"]
        if a["image_id"] == image_id and (cat is None or a["category_id"] == cat)
    ]


def _tol(fmt, W):  # rounding of each dialect, in pixels
    return {"llava": 0.0005 * W + 1e-9, "internvl": 0.5e-3 * W + 1e-9, "qwen": 0.5}[fmt]


@pytest.mark.parametrize("fmt", FORMATS)
def test_counts_and_boxes_equal_the_annotations(corpus, fmt):
    out, summary, coco = corpus
    images = {im["id"]: im for im in coco["images"]}
    recs = _records(out, fmt)
    assert len(recs) == summary["records_per_format"]
    seen = Counter()
    for rec in recs:
        meta = rec["meta"]
        im = images[meta["image_id"]]
        W, H = im["width"], im["height"]
        q, a = _turns(rec)[0]
        if meta["task"] == "count":
            n = len(_anns(coco, im["id"], meta["category_id"]))
            assert meta["count"] == n
            assert parse_answer(a, fmt, expect="count").count == n, a
        elif meta["task"] == "locate":
            cat = meta.get("category_id")
            want = np.array(
                [
                    [x, y, x + w, y + h]
                    for x, y, w, h in (g["bbox"] for g in _anns(coco, im["id"], cat))
                ]
            ).reshape(-1, 4)
            got = parse_answer(a, fmt, image_size=(W, H), expect="boxes")
            assert got.ok, (a, got.errors)
            assert got.boxes.shape == want.shape
            # internvl groups boxes by label: compare in a canonical order
            g_order, w_order = np.lexsort(got.boxes.T[::-1]), np.lexsort(want.T[::-1])
            np.testing.assert_allclose(got.boxes[g_order], want[w_order], atol=_tol(fmt, W))
            if cat is None:  # detection answers carry each box's class
                names = {1: "Mono", 2: "Few", 3: "Thick"}
                truth = [names[g["category_id"]] for g in _anns(coco, im["id"])]
                assert [got.labels[i] for i in g_order] == [truth[i] for i in w_order]
        elif meta["task"] == "verify":
            got = parse_answer(a, fmt, expect="yesno")
            assert got.yes == (meta["answer"] == "yes")
            word = next(w for w in CAT if f" {w} " in q)
            mat = im["material"]
            truth = any(g["material"] == mat for g in _anns(coco, im["id"], CAT[word])) and (
                mat in q
            )
            assert got.yes == truth, (q, a)
        elif meta["task"] == "ground":
            got = parse_answer(a, fmt, image_size=(W, H), expect="boxes")
            x, y, w, h = meta["bbox"]
            np.testing.assert_allclose(got.boxes, [[x, y, x + w, y + h]], atol=_tol(fmt, W))
        elif meta["task"] == "describe":
            ann = _anns(coco, im["id"])[meta["ann_index"]]
            layers = "a monolayer" if ann["layers"] == 1 else f"{ann['layers']} layers"
            assert f"({layers})" in a and im["material"] in a
            assert f"Delta-E = {ann['delta_e_vs_substrate']:.1f}" in a
        elif meta["task"] == "dialogue":
            concl = parse_answer(_turns(rec)[2][1], fmt, image_size=(W, H), expect="boxes")
            assert concl.ok and len(concl.boxes) == len(_anns(coco, im["id"], 1))
            assert concl.conclusion is not None
        seen[meta["task"]] += 1
    assert set(seen) == set(TASKS)


def test_splits_are_by_image_and_summary_counts(corpus):
    out, summary, coco = corpus
    where = {}
    for rec in _records(out, "llava"):
        where.setdefault(rec["meta"]["image_id"], set()).add(rec["meta"]["split"])
    assert all(len(s) == 1 for s in where.values())
    assert sum(summary["per_split_images"].values()) == len(coco["images"])
    cats = Counter(a["category_id"] for a in coco["annotations"])
    assert summary["per_category_annotations"] == {
        "Mono": cats[1], "Few": cats[2], "Thick": cats[3]
    }  # fmt: skip
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))


def test_deterministic_and_seed_dependent(synth_dataset, tmp_path):
    def digest(folder):
        return hashlib.sha256((folder / "llava" / "train.jsonl").read_bytes()).hexdigest()

    coco = synth_dataset / "annotations.json"
    build_corpus(coco, out_path=tmp_path / "a", seed=1)
    build_corpus(coco, out_path=tmp_path / "b", seed=1, chunk=5)  # other batching
    build_corpus(coco, out_path=tmp_path / "c", seed=2)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")
    assert not list(tmp_path.rglob("*.tmp"))


def test_hard_negatives_on_images_without_monolayers(tmp_path):
    coco = {
        "images": [
            {
                "id": i,
                "file_name": f"{i}.png",
                "width": 100,
                "height": 100,
                "material": "MoS2",
                "gain": [1, 1, 1],
            }
            for i in range(40)
        ],  # fmt: skip
        "annotations": [
            {
                "id": i + 1,
                "image_id": i,
                "bbox": [10, 10, 20, 20],
                "area": 400.0,
                "category_id": 3,
                "iscrowd": 0,
                "material": "MoS2",
                "layers": 8,
                "thickness_nm": 5.2,
                "substrate_oxide_nm": 285.0,
                "color_linear_rgb": [0.2, 0.2, 0.3],
                "delta_e_vs_substrate": 30.0,
            }
            for i in range(40)
        ],  # fmt: skip
        "categories": [
            {"id": c, "name": n, "supercategory": "flake"}
            for c, n in ((1, "Mono"), (2, "Few"), (3, "Thick"))
        ],  # fmt: skip
    }
    (tmp_path / "a.json").write_text(json.dumps(coco))
    s = build_corpus(tmp_path / "a.json", out_path=tmp_path / "o", tasks=("verify", "count"))
    v = s["verification"]
    assert v["hard_negative"] > 0 and v.get("yes", 0) > 5 and v.get("no", 0) > 5


def test_bad_inputs(synth_dataset, tmp_path):
    coco = synth_dataset / "annotations.json"
    with pytest.raises(ValueError, match="format"):
        build_corpus(coco, out_path=tmp_path, formats=("alpaca",))
    with pytest.raises(ValueError, match="tasks"):
        build_corpus(coco, out_path=tmp_path, tasks=("poetry",))
    with pytest.raises(ValueError, match="split"):
        build_corpus(coco, out_path=tmp_path, split=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="no such file"):
        build_corpus(tmp_path / "missing.json", out_path=tmp_path)
    plain = {"images": [{"id": 1, "file_name": "a.png", "width": 9, "height": 9}],
             "annotations": [{"id": 1, "image_id": 1, "bbox": [0, 0, 1, 1], "category_id": 1}],
             "categories": []}  # fmt: skip
    (tmp_path / "plain.json").write_text(json.dumps(plain))
    with pytest.raises(ValueError, match="Synthia-style"):
        build_corpus(tmp_path / "plain.json", out_path=tmp_path / "o")


@pytest.mark.parametrize("fmt", FORMATS)
def test_format_boxes_round_trip(fmt):
    boxes = [[10, 20, 30, 40], [0, 0, 640, 480]]
    text = format_boxes(fmt, boxes, ["Mono", "Thick"], 640, 480)
    got = parse_answer(text, fmt, image_size=(640, 480), expect="boxes")
    np.testing.assert_allclose(got.boxes, [[10, 20, 40, 60], [0, 0, 640, 480]], atol=0.5)
    assert got.labels == ["Mono", "Thick"]


def test_two_workers_on_realistic_synthia_finish_and_match_one(tmp_path):
    """Regression: the builder's layer tables run the OpenMP kernels in the parent, and a
    forked worker hung in its first parallel region (24 realistic 224-px images, --workers 2
    never finished). Workers now start from a forkserver; the output equals one worker's."""
    import subprocess
    import sys

    from qupaint.synthia import SynthiaConfig, generate

    generate(SynthiaConfig.realistic(height=224, width=224, seed=1), tmp_path / "s", 24,
             shard_size=24)  # fmt: skip
    outs = []
    for w in ("2", "1"):
        cmd = [sys.executable, "-m", "qupaint.cli", "instruct", "--coco",
               str(tmp_path / "s" / "annotations.json"), "--out", str(tmp_path / f"q{w}"),
               "--formats", "llava", "--workers", w, "--chunk", "4"]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
        assert res.returncode == 0, res.stderr[-2000:]
        outs.append((tmp_path / f"q{w}" / "llava" / "train.jsonl").read_bytes())
    assert outs[0] == outs[1] and len(outs[0]) > 1000
