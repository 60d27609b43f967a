"""The compact QuPAINT model: its recipe (render -> corpus -> train with the dense head ->
held-out QF-Bench), the LoRA tuning on a new material, and the shipped weights."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from qupaint.cli import app
from qupaint.recipes.compact import HELD_OUT_MATERIAL, compact_materials


def test_short_descriptions_cut_only_descriptions(tmp_path):
    from qupaint.recipes.compact import short_descriptions

    recs = [
        {"id": "a", "meta": {"task": "describe"}, "conversations": [
            {"from": "human", "value": "<image>\nDescribe the flake at [0.1, 0.2, 0.3, 0.4]."},
            {"from": "gpt", "value": "This is a thick MoS2 flake (12 layers). Its colour "
                                     "differs by Delta-E = 4.5 (CIE76). More."}]},
        {"id": "b", "meta": {"task": "count"}, "conversations": [
            {"from": "human", "value": "<image>\nHow many?"},
            {"from": "gpt", "value": "I count 2 thick flakes. Really."}]},
    ]  # fmt: skip
    src, dst = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    assert short_descriptions(src, dst) == 1
    out = [json.loads(line) for line in dst.read_text().splitlines()]
    assert out[0]["conversations"][1]["value"] == "This is a thick MoS2 flake (12 layers)."
    assert out[1] == recs[1]  # other tasks untouched
    assert out[0]["conversations"][0] == recs[0]["conversations"][0]


def test_held_out_material_is_not_trained_on():
    assert HELD_OUT_MATERIAL not in compact_materials() and len(compact_materials()) == 7


def test_recipe_and_lora_tuning_end_to_end(tmp_path, monkeypatch):
    """``train_compact`` at toy size (12 images, 3 steps, one material): every stage runs,
    the model loads, the held-out figures are there for every task, count and describe
    answers parse (constrained), and ``qupaint tune-compact`` adapts it to another material
    and scores it before and after."""
    from qupaint.model import load_model_and_processor
    from qupaint.recipes.compact import CompactRecipe, train_compact

    with pytest.raises(TypeError, match="CompactRecipe"):
        train_compact(tmp_path / "w")
    with pytest.raises(ValueError, match="steps >= 1"):
        CompactRecipe(tmp_path / "w", steps=0)
    meta = train_compact(CompactRecipe(tmp_path / "w", images=12, steps=3, batch=4,
                                       vision_steps=2, bench_images_per_material=1, workers=1,
                                       materials=("MoS2",), validation_images=8))  # fmt: skip
    tasks = meta["qfbench"]["tasks"]
    assert set(tasks) == {"count", "verify", "describe", "locate"}
    for t in ("count", "describe"):
        assert tasks[t]["parse_rate"] == 1.0, (t, tasks[t])
    # the format holds a box's text, not its area: a 3-step model may copy one number
    # into all four coordinates, a degenerate box that the strict parser rejects
    v = tasks["verify"]
    parsed = v["parse_rate"] * v["questions"]  # a count of answers the strict parser read
    assert v["questions"] >= 1 and abs(parsed - round(parsed)) < 1e-9, v
    assert round(parsed) >= 1, v  # constrained: the rejects are the degenerate boxes only
    assert meta["arguments"]["materials"] == ["MoS2"] and meta["times"]["train_s"] > 0
    dense = meta["qfbench"]["dense_regions_reference"]  # the vision side's own row
    assert set(dense) == set(meta["qfbench"]["detector_reference"]) | {
        "layer_class_accuracy_referred"
    }
    model, proc = load_model_and_processor(str(tmp_path / "w" / "model"))
    # the row is the saved model's vision side on the held-out bench, as measured again
    from qupaint.bench.dense import dense_region_row

    assert dense == dense_region_row(model, proc, tmp_path / "w" / "qfbench" / "annotations.json")
    assert model.config.region_tokens == 192 and proc.image.image_size == 224
    assert meta["regions"]["chosen"]["region_min_cells"] == model.config.region_min_cells
    # the demo's section on the compact model, with this model in COMPACT_DIR's place
    import qupaint.model.loading as loading
    from qupaint.demo import compact_answers

    monkeypatch.setattr(loading, "COMPACT_DIR", tmp_path / "w" / "model")
    paths = compact_answers(tmp_path / "demo", materials=("MoS2",))
    shown = json.loads(paths[0].read_text())
    tasks_shown = [r["task"] for r in shown["answers"]]
    assert tasks_shown.count("count") == 3 and tasks_shown.count("locate") == 1
    assert 1 <= tasks_shown.count("describe") <= 2 and paths[1].is_file()
    assert shown["asked"] == len(tasks_shown) - 1  # all but "detect all flakes" are scored
    assert all("truth" in r and r["answer"] for r in shown["answers"])
    # resumable: a rerun reuses the rendered images and the corpus
    assert (tmp_path / "w" / "qmat" / "llava" / "train_short.jsonl").is_file()
    res = CliRunner().invoke(app, ["tune-compact", "--material", "WSe2",
                                   "--work", str(tmp_path / "t"),
                                   "--base", str(tmp_path / "w" / "model"), "--images", "12",
                                   "--steps", "2", "--batch", "4", "--bench-images", "1",
                                   "--workers", "1"])  # fmt: skip
    assert res.exit_code == 0, res.output
    tuned = json.loads((tmp_path / "t" / "finetune.json").read_text())
    assert tuned["material"] == "WSe2" and set(tuned["before"]["tasks"]) == set(tasks)
    assert (tmp_path / "t" / "model" / "adapter").is_dir()
    bad = CliRunner().invoke(app, ["tune-compact", "--material", "Unobtainium",
                                   "--work", str(tmp_path / "u")])  # fmt: skip
    assert bad.exit_code != 0 and "material" in bad.output


def test_ablation_runs_both_arms_on_one_data_set(tmp_path):
    """``ablate_compact`` at toy size: the gated and ungated runs share one rendered data
    set, differ only in the gate, and the table holds each figure's values, mean and
    spread."""
    from qupaint.recipes.compact import ablate_compact

    meta = ablate_compact(tmp_path, seeds=(0,), images=12, steps=2, batch=4, vision_steps=1,
                          bench_images_per_material=1, workers=1, materials=("MoS2",),
                          validation_images=8)  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ablation.json", "data",
                                                          "no_pia-s0", "pia-s0"]  # fmt: skip
    assert not (tmp_path / "pia-s0" / "synthia").exists()
    gated = json.loads((tmp_path / "pia-s0" / "model" / "metrics.json").read_text())
    plain = json.loads((tmp_path / "no_pia-s0" / "model" / "metrics.json").read_text())
    assert gated["arguments"]["use_pia_gate"] and not plain["arguments"]["use_pia_gate"]
    row = meta["table"]["pia"]["count/exact_count_accuracy"]
    assert len(row["values"]) == 1 and row["mean"] == row["values"][0] and row["spread"] == 0
    assert meta["table"]["no_pia"].keys() == meta["table"]["pia"].keys()
    # the vision side alone: each arm reads with the LM of a trained model, unchanged
    import torch

    from qupaint.model import load_model_and_processor
    from qupaint.recipes.compact import VISION_PREFIXES

    base = tmp_path / "pia-s0" / "model"
    with pytest.raises(ValueError, match="data_dir"):
        ablate_compact(tmp_path / "v", seeds=(0,), lm_from=base)
    vis = ablate_compact(tmp_path / "v", seeds=(0,), steps=2, batch=4,
                         bench_images_per_material=1, workers=1, materials=("MoS2",),
                         validation_images=8, lm_from=base, data_dir=tmp_path / "data")  # fmt: skip
    assert vis["lm_from"] == str(base) and vis["table"]["pia"].keys() == meta["table"]["pia"].keys()
    lm = load_model_and_processor(str(base))[0].state_dict()
    arms = [load_model_and_processor(str(tmp_path / "v" / f"{a}-s0" / "model"))[0]
            for a in ("pia", "no_pia")]  # fmt: skip
    assert arms[0].config.use_pia_gate and not arms[1].config.use_pia_gate
    for arm in arms:
        for k, v in arm.state_dict().items():
            if not k.startswith(VISION_PREFIXES):
                assert torch.equal(v, lm[k]), k
    k = "model.dense_head.weight"
    assert not torch.equal(arms[0].state_dict()[k], lm[k])


def test_region_scores_count_and_match_regions():
    """One image, 16 x 16 map over 64 x 64 px: a Thick flake with a Few edge and a Mono
    flake. Without absorbing the edge, the Few count is wrong and the edge is an unmatched
    region (F1 = 2 * 2 / (3 + 2)); absorbed, both are right."""
    import numpy as np

    from qupaint.bench.dense import region_scores

    lab = np.zeros((16, 16), int)
    lab[2:10, 2:10] = 3
    lab[9, 2:5] = 2
    lab[12:16, 12:16] = 1
    gt = {"images": [{"id": 5, "width": 64, "height": 64}],
          "annotations": [{"image_id": 5, "category_id": 3, "bbox": [8, 8, 32, 32]},
                          {"image_id": 5, "category_id": 1, "bbox": [48, 48, 16, 16]}]}  # fmt: skip
    plain, absorbed = region_scores({5: lab}, gt, grid=((3, 0), (3, 12)))
    assert plain["count_accuracy"] == 2 / 3 and plain["region_f1"] == 0.8
    assert absorbed["count_accuracy"] == 1.0 and absorbed["region_f1"] == 1.0
