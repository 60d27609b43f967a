"""QF-Bench: metrics vs pycocotools, grounding accuracy, answer parsing, the physics detector,
the benchmark builder and their command lines."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from qupaint.bench import box_iou_xywh, evaluate_detection, evaluate_grounding, parse_answer
from qupaint.bench.qfbench import build_qfbench
from qupaint.cli import app
from qupaint.detect import DetectorConfig, detect
from qupaint.instruct.parse import parse_answers
from qupaint.synthia import SynthiaConfig

runner = CliRunner()
METRIC_TOL = 1e-6


def _random_predictions(gt, seed):
    rng = np.random.default_rng(seed)
    preds = []
    for a in gt["annotations"]:
        for _ in range(int(rng.integers(0, 3))):  # misses, duplicates, jitter, wrong class
            b = np.array(a["bbox"]) + rng.normal(0, 0.15 * np.sqrt(a["area"] + 1), 4)
            b[2:] = np.abs(b[2:]) + 1
            cat = a["category_id"] if rng.random() < 0.8 else int(rng.integers(1, 4))
            preds.append({"image_id": a["image_id"], "category_id": cat,
                          "bbox": b.tolist(), "score": float(rng.random())})  # fmt: skip
    for im in gt["images"]:  # false positives
        for _ in range(int(rng.integers(0, 3))):
            x, y = rng.uniform(0, im["width"] - 20, 2)
            preds.append({"image_id": im["id"], "category_id": int(rng.integers(1, 4)),
                          "bbox": [x, y, 15.0, 12.0], "score": float(rng.random())})  # fmt: skip
    return preds


def _pycocotools(gt, preds, cats):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        g = COCO()
        g.dataset = json.loads(json.dumps(gt))
        g.createIndex()
        d = g.loadRes(json.loads(json.dumps(preds)))
        E = COCOeval(g, d, "bbox")
        E.params.catIds = cats
        E.evaluate()
        E.accumulate()
        E.summarize()
    return E.stats[:3]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("engine", ["faster-coco-eval", "pycocotools"])
def test_detection_metrics_match_pycocotools(synth_dataset, seed, engine):
    gt = json.loads((synth_dataset / "annotations.json").read_text())
    preds = _random_predictions(gt, seed)
    r = evaluate_detection(gt, preds, engine=engine)
    ref_all = _pycocotools(gt, preds, [1, 2, 3])
    ref_mono = _pycocotools(gt, preds, [1])
    np.testing.assert_allclose([r["AP"], r["AP50"], r["AP75"]], ref_all, atol=METRIC_TOL)
    np.testing.assert_allclose([r["Mono"][k] for k in ("AP", "AP50", "AP75")], ref_mono,
                               atol=METRIC_TOL)  # fmt: skip
    assert 0 < r["AP"] < 1


def test_detection_perfect_empty_and_bad(synth_dataset, tmp_path):
    gt = json.loads((synth_dataset / "annotations.json").read_text())
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                "score": 1.0} for a in gt["annotations"]]  # fmt: skip
    r = evaluate_detection(gt, perfect)
    assert r["AP"] == pytest.approx(1.0) and r["Mono"]["AP"] == pytest.approx(1.0)
    assert evaluate_detection(gt, [])["AP"] == 0.0
    (tmp_path / "p.json").write_text(json.dumps(perfect))
    (tmp_path / "g.json").write_text(json.dumps(gt))
    assert evaluate_detection(tmp_path / "g.json", tmp_path / "p.json")["AP"] == pytest.approx(1)
    with pytest.raises(ValueError, match="not in the ground truth"):
        evaluate_detection(gt, [{**perfect[0], "image_id": -5}])
    with pytest.raises(ValueError, match="finite"):
        evaluate_detection(gt, [{**perfect[0], "bbox": [0, 0, float("nan"), 1]}])
    with pytest.raises(ValueError, match="needs image_id"):
        evaluate_detection(gt, [{"bbox": [0, 0, 1, 1]}])
    with pytest.raises(ValueError, match="engine"):
        evaluate_detection(gt, perfect, engine="yolo")


def test_box_iou_hand_values():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 0, 0]])
    b = np.array([[0, 0, 10, 5], [5, 5, 10, 10], [20, 20, 5, 5], [0, 0, 0, 0]])
    np.testing.assert_allclose(box_iou_xywh(a, b), [0.5, 25 / 175, 0.0, 0.0])


def test_grounding_accuracy_hand_checked(tmp_path):
    gt = {"a": [0, 0, 10, 10], "b": [0, 0, 10, 10], "c": [50, 50, 20, 20], "d": [0, 0, 4, 4]}
    pred = {"a": [0, 0, 10, 5], "b": [0, 0, 10, 8], "c": [52, 52, 20, 20], "d": None}
    # IoU a = 0.5 (>= 0.5 counts), b = 0.8, c = 324 / 476 = 0.68, d missing
    r = evaluate_grounding(gt, pred)
    assert r == {"Acc@0.5": 0.75, "Acc@0.75": 0.25, "n": 4, "missing": 1}
    recs = [{"id": "x", "meta": {"task": "ground", "bbox": [0, 0, 10, 10]}},
            {"id": "y", "meta": {"task": "count"}}]  # fmt: skip
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    r = evaluate_grounding(tmp_path / "c.jsonl", [{"id": "x", "bbox": [0, 0, 10, 10]}])
    assert r["n"] == 1 and r["Acc@0.75"] == 1.0
    with pytest.raises(ValueError, match="no referring"):
        evaluate_grounding({}, {})


@pytest.mark.parametrize(
    "fmt, text, boxes, labels",
    [
        ("llava", "Mono: [0.1, 0.2, 0.3, 0.4]", [[10, 40, 30, 80]], ["Mono"]),
        (
            "llava",
            "found [0.5,0.5,1,1] and few-layer: [0, 0, .5, .5]",
            [[50, 100, 100, 200], [0, 0, 50, 100]],
            [None, "Few"],
        ),  # fmt: skip
        (
            "internvl",
            "<ref>Thick</ref><box>[[100, 200, 300, 400]]</box>",
            [[10, 40, 30, 80]],
            ["Thick"],
        ),  # fmt: skip
        (
            "internvl",
            "<ref>Mono</ref><box>[[0,0,500,500],[500,500,1000,1000]]</box>",
            [[0, 0, 50, 100], [50, 100, 100, 200]],
            ["Mono", "Mono"],
        ),  # fmt: skip
        (
            "qwen",
            '```json\n[{"bbox_2d": [1, 2, 3, 4], "label": "Mono"}]\n```',
            [[1, 2, 3, 4]],
            ["Mono"],
        ),  # fmt: skip
        ("qwen", 'Sure! [{"bbox_2d": [5, 6, 7, 8]}]', [[5, 6, 7, 8]], [None]),
    ],
)
def test_parser_well_formed(fmt, text, boxes, labels):
    a = parse_answer(text, fmt, image_size=(100, 200), expect="boxes")
    assert a.ok, a.errors
    np.testing.assert_allclose(a.boxes, boxes)
    assert a.labels == labels


@pytest.mark.parametrize(
    "fmt, text",
    [
        ("llava", "Mono: [0.1, 0.2, 0.3"),  # truncated
        ("llava", "Mono: [0.3, 0.2, 0.1, 0.4]"),  # x2 < x1
        ("llava", "Mono: [0.1, 0.2, 3.0, 0.4]"),  # outside 0-1
        ("llava", "Mono: [nan, 0.2, 0.3, 0.4]"),
        ("internvl", "<ref>Mono</ref><box>[[1, 2, 3]]</box>"),
        ("internvl", "<box>[[1, 2, 3, 4000]]</box>"),
        ("qwen", '```json\n[{"bbox_2d": [1, 2, 3]}]\n```'),
        ("qwen", "```json\n{not json at all\n```"),
        ("qwen", '[{"bbox_2d": ["a", "b", "c", "d"]}]'),
        ("qwen", '[{"bbox_2d": [true, 1, 2, 3]}]'),
        ("qwen", "[" * 5000 + "]" * 5000),  # nesting bomb
        ("qwen", '"just a string"'),
        ("llava", ""),
        ("internvl", "\x00\ufffd<box>" * 1000),
        ("llava", None),
        ("qwen", 12345),
    ],
)
def test_parser_malformed_never_crashes(fmt, text):
    a = parse_answer(text, fmt, image_size=(100, 100), expect="boxes")
    assert not a.ok and len(a.boxes) == 0 and a.errors


def test_parser_counts_yes_no_and_failure_tally():
    assert parse_answer("There are 3 monolayer flakes.", "llava", expect="count").count == 3
    assert parse_answer("No monolayer flakes are visible.", "qwen", expect="count").count == 0
    assert parse_answer("I count two.", "internvl").count == 2
    assert parse_answer("Yes: [0.1, 0.1, 0.2, 0.2] is one", "llava", expect="yesno").yes is True
    assert parse_answer("no.", "llava", expect="yesno").yes is False
    assert not parse_answer("maybe", "llava", expect="yesno").ok
    a = parse_answer("x <CONCLUSION>There are no monolayer flakes.</CONCLUSION>", "qwen", None,
                     "boxes")  # fmt: skip
    assert a.ok and a.conclusion.startswith("There are no") and len(a.boxes) == 0
    _, failed = parse_answers(["Mono: [0.1, 0.1, 0.2, 0.2]", "garbage", None], "llava",
                              expect="boxes")  # fmt: skip
    assert failed == 2
    with pytest.raises(ValueError, match="fmt"):
        parse_answer("x", "yaml")


def test_detector_finds_synthia_flakes(synth_dataset):
    gt = json.loads((synth_dataset / "annotations.json").read_text())
    preds = []
    # Synthia's camera is known exactly (sRGB), so the per-image gain is held at 1; its
    # flakes are smaller than the physical minimum of real chips
    cfg = DetectorConfig(response_range=(1.0, 1.0), min_area_px=24, max_layers=30, bright=10.0)
    for im in gt["images"]:
        img = np.asarray(Image.open(synth_dataset / im["file_name"]))
        preds += detect(img, im["material"], oxide_nm=285.0, config=cfg, image_id=im["id"])
    r = evaluate_detection(gt, preds)
    # measured AP50 0.69, Mono 0.80 on this set; a broken detector falls far below
    assert r["AP50"] > 0.5 and r["Mono"]["AP50"] > 0.6, r


def test_detector_edge_cases():
    flat = np.full((64, 64, 3), 120, np.uint8)
    assert detect(flat, "MoS2") == []
    assert detect(flat.astype(np.float32) / 255, "MoS2") == []
    with pytest.raises(ValueError, match="H, W, 3"):
        detect(np.zeros((4, 4)), "MoS2")
    with pytest.raises(ValueError, match="NaN"):
        detect(np.full((8, 8, 3), np.nan), "MoS2")
    with pytest.raises(TypeError, match="uint8 or float"):
        detect(np.zeros((8, 8, 3), np.int32), "MoS2")
    with pytest.raises(ValueError, match="nobelium|[Uu]nknown"):
        detect(flat, "nobelium")
    with pytest.raises(ValueError, match="thin_layers"):
        detect(flat, "MoS2", config=DetectorConfig(thin_layers=0))


def test_qfbench_layout_ids_and_seeds(tmp_path):
    cfg = SynthiaConfig(height=96, width=96, radius_px=(6.0, 20.0))
    m = build_qfbench(tmp_path, 2, ("MoS2", "WSe2"), cfg)
    coco = json.loads((tmp_path / "annotations.json").read_text())
    assert len(coco["images"]) == 4 and set(m["materials"]) == {"MoS2", "WSe2"}
    assert [c["name"] for c in coco["categories"]] == ["Mono", "Few", "Thick"]
    ids = [a["id"] for a in coco["annotations"]]
    assert len(set(ids)) == len(ids) and min(ids) > 0
    assert len({im["id"] for im in coco["images"]}) == 4
    for im in coco["images"]:
        assert im["file_name"].startswith(f"materials/{im['material']}/")
        assert (tmp_path / im["file_name"]).is_file()
    # resume: a second call renders nothing new and gives the same file
    before = (tmp_path / "annotations.json").read_bytes()
    build_qfbench(tmp_path, 2, ("MoS2", "WSe2"), cfg)
    assert (tmp_path / "annotations.json").read_bytes() == before
    with pytest.raises(ValueError, match="training"):
        build_qfbench(tmp_path / "x", 1, ("MoS2",), cfg, seed=0)


def test_cli_instruct_eval_detect_bench(synth_dataset, tmp_path):
    res = runner.invoke(app, ["instruct", "--coco", str(synth_dataset / "annotations.json"),
                              "--out", str(tmp_path / "c"), "--formats", "llava,qwen"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (tmp_path / "c" / "qwen" / "train.jsonl").is_file()
    res = runner.invoke(app, ["instruct", "--coco", str(tmp_path / "nope.json"), "--out", "x"])
    assert res.exit_code == 2 and "no such file" in res.output

    im = json.loads((synth_dataset / "annotations.json").read_text())["images"][0]
    src = synth_dataset / im["file_name"]
    args = ["--camera", "srgb", "--oxide-nm", "285", "--out", str(tmp_path / "det")]
    res = runner.invoke(app, ["detect", str(src), "--material", im["material"], *args])
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "det" / "overlays" / f"{src.stem}.png").size == (
        im["width"], im["height"])  # fmt: skip
    dets = json.loads((tmp_path / "det" / "detections" / f"{src.stem}.json").read_text())
    preds = [{**d, "image_id": im["id"]} for d in dets["annotations"]]
    (tmp_path / "pred.json").write_text(json.dumps(preds))
    res = runner.invoke(app, ["eval", "detection", "--gt", str(synth_dataset / "annotations.json"),
                              "--pred", str(tmp_path / "pred.json"),
                              "--out", str(tmp_path / "m.json")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "AP50" in res.output and "AP" in json.loads((tmp_path / "m.json").read_text())

    gt = tmp_path / "c" / "llava" / "train.jsonl"
    refs = [json.loads(x) for x in gt.read_text().splitlines()]
    pred = {r["id"]: r["meta"]["bbox"] for r in refs if r["meta"]["task"] == "ground"}
    (tmp_path / "g.json").write_text(json.dumps(pred))
    res = runner.invoke(app, ["eval", "grounding", "--gt", str(gt), "--pred",
                              str(tmp_path / "g.json")])  # fmt: skip
    assert res.exit_code == 0 and "100.0" in res.output, res.output

    res = runner.invoke(app, ["bench", "build", "--out", str(tmp_path / "qf"),
                              "--images-per-material", "1", "--materials", "MoS2",
                              "--size", "96", "--workers", "1"])  # fmt: skip
    assert res.exit_code == 2 and "radius_px" in res.output  # 96 px is too small for defaults


def test_detect_coco_and_per_material_scores(synth_dataset):
    from qupaint.bench.metrics import evaluate_detection_by
    from qupaint.bench.qfbench import detect_coco

    gt = synth_dataset / "annotations.json"
    preds = detect_coco(gt)
    assert preds == detect_coco(gt, workers=2)  # worker processes change nothing
    r = evaluate_detection_by(gt, preds)
    coco = json.loads(gt.read_text())
    assert set(r) == {"all"} | {im["material"] for im in coco["images"]}
    assert r["all"] == evaluate_detection(gt, preds)


def test_malformed_answers_do_not_parse():
    # issue 24: these returned ok=True; the README says malformed output gives ok=False
    for text in (
        "Mono: [0.1, 0.2",
        "{{{{",
        "Few: [0.1, 0.2, 0.3, 0.4]]",
        "<box>[[1, 2, 3, 4]</box>",
    ):
        for fmt in ("llava", "internvl", "qwen"):
            a = parse_answer(text, fmt)
            assert not a.ok and any("unbalanced" in e for e in a.errors), (text, fmt, a)
    assert parse_answer("Mono: [0.1, 0.2, 0.3, 0.4]", "llava").ok


def test_real_window_truth_and_model_scoring(tmp_path, monkeypatch):
    """``evaluate_model_real``: windows cut from a masked micrograph get their thin-flake
    count from the mask (a flake counts in the window holding >= half of it); an oracle
    that answers from the mask scores 1 on count, presence and grounding recall, and one
    that always says "none" scores the empty windows only and finds nothing."""
    from qupaint.bench import model_eval
    from qupaint.bench.model_eval import real_tile_questions
    from qupaint.bench.real import mask_boxes
    from qupaint.instruct.formats import format_boxes
    from qupaint.model.whole_image import window_starts as _tile_starts

    assert _tile_starts(100, 224) == [0]
    assert _tile_starts(448, 224) == [0, 224]
    assert _tile_starts(500, 224) == [0, 138, 276]
    img = np.random.default_rng(0).integers(0, 256, (300, 460, 3), dtype=np.uint8)
    mask = np.zeros((300, 460), np.uint8)
    mask[10:40, 10:50] = 1  # inside window (0, 0)
    mask[100:140, 200:260] = 2  # split between windows; most of it in x0 = 0
    mask[250:290, 400:450] = 3  # bottom-right window only
    wins = real_tile_questions(img, mask, 224)
    starts = [(x0, y0) for _, (x0, y0), _ in wins]
    assert starts == [(0, 0), (118, 0), (236, 0), (0, 76), (118, 76), (236, 76)]
    counts = {s: n for _, s, n in wins}
    # flake 2 spans x 200-260: windows x0=0 and x0=236 hold 24/60 of it (< half), x0=118
    # all of it, in both rows; flake 3 lies in the bottom-right window only
    assert counts == {(0, 0): 1, (118, 0): 1, (236, 0): 0, (0, 76): 0, (118, 76): 1,
                      (236, 76): 1}  # fmt: skip
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(img).save(tmp_path / "images" / "a.png")
    Image.fromarray(mask).save(tmp_path / "masks" / "a.png")
    truth = {np.asarray(c).tobytes(): (s, n) for c, s, n in wins}
    boxes = mask_boxes(mask)

    def oracle(model, proc, images, questions, fmt="llava", tasks=None, **kw):
        out = []
        for crop, q in zip(images, questions, strict=True):
            (x0, y0), n = truth[np.asarray(crop).tobytes()]
            inside = [[b[0] - x0, b[1] - y0, b[2], b[3]] for b in boxes
                      if b[0] >= x0 and b[1] >= y0 and b[0] + b[2] <= x0 + 224
                      and b[1] + b[3] <= y0 + 224]  # fmt: skip
            if "monolayer flakes" in q:
                out.append(f"I count {n} monolayer flakes.")
            elif "few-layer" in q:
                out.append("I count 0 few-layer flakes.")
            elif q.startswith("Is there"):
                out.append("Yes, for example the flake at [0.1, 0.1, 0.2, 0.2] is monolayer."
                           if n else "No, there is no monolayer flake here.")  # fmt: skip
            else:
                out.append("Found: " + format_boxes("llava", inside, ["Mono"] * len(inside),
                                                    224, 224) if inside else
                           "There are no flakes in this image.")  # fmt: skip
        return out

    from types import SimpleNamespace

    # a model that reads no region tokens, with 224-px windows
    model = SimpleNamespace(config=SimpleNamespace(region_tokens=0))
    proc = SimpleNamespace(image=SimpleNamespace(image_size=224))
    monkeypatch.setattr("qupaint.model.inference.generate_answers", oracle)
    import time

    t0 = time.perf_counter()
    r = model_eval.evaluate_model_real(model, proc, tmp_path / "images")
    wall = time.perf_counter() - t0
    assert r["windows"] == 6 and r["flakes"] == 3 and r["windows_with_thin_flakes"] == 4
    assert r["windows_asked"] == 6 and r["always_zero_thin_count_accuracy"] == 2 / 6
    # the wall time per micrograph, measured: within the call's own time over its images
    assert 0 < r["seconds_per_image"] <= wall / r["images"] + 1e-4, (r, wall)
    assert r["exact_thin_count_accuracy"] == 1.0 and r["thin_present_accuracy"] == 1.0
    assert r["grounding_recall"] == 1.0

    def none(model, proc, images, questions, **kw):
        return ["I count 0 monolayer flakes." if "monolayer flakes" in q else
                "I count 0 few-layer flakes." if "few-layer" in q else
                "No, there is no monolayer flake here." if q.startswith("Is there") else
                "There are no flakes in this image." for q in questions]  # fmt: skip

    monkeypatch.setattr("qupaint.model.inference.generate_answers", none)
    r = model_eval.evaluate_model_real(model, proc, tmp_path / "images")
    assert r["exact_thin_count_accuracy"] == r["thin_present_accuracy"] == 2 / 6
    assert r["grounding_recall"] == 0.0
    # physics skips the windows holding nothing but substrate: answered none, not asked
    flat = np.full((300, 460, 3), (150, 120, 160), np.uint8)
    flat[10:40, 10:50] = (110, 95, 150)  # one flake, in window (0, 0) only
    Image.fromarray(flat).save(tmp_path / "images" / "a.png")
    seen = []

    def counting(model, proc, images, questions, **kw):
        seen.extend(questions)
        return none(model, proc, images, questions)

    monkeypatch.setattr("qupaint.model.inference.generate_answers", counting)
    r = model_eval.evaluate_model_real(model, proc, tmp_path / "images", material="graphene")
    assert r["windows_asked"] == 1 and len(seen) == 4  # the other five: substrate only
