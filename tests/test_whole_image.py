"""Whole micrographs in, whole-image answers out (qupaint.model.whole_image): windows at the
model's scale, empty windows skipped by physics, answers merged."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ImageOutputSpy

from qupaint.color import Camera, Microscope
from qupaint.instruct.parse import parse_answer
from qupaint.model import tiny_model
from qupaint.model.whole_image import answer_whole_images, merge_boxes, window_starts


@pytest.fixture(scope="module")
def tiny():
    model, proc = tiny_model()
    return model.eval(), proc


def _chip(h=150, w=260):
    img = np.full((h, w, 3), (150, 120, 160), np.uint8)  # a purple substrate
    img[20:45, 30:60] = (110, 95, 150)  # one darker flake in the top-left window
    return img


def test_windows_cover_the_image_and_merge_joins_a_flake_cut_by_a_border():
    for n, tile in ((1920, 224), (1200, 224), (224, 224), (300, 56)):
        s = window_starts(n, tile)
        assert s[0] == 0 and s[-1] + tile == max(n, tile)
        assert all(b - a <= tile for a, b in zip(s, s[1:], strict=False))  # no gap
    boxes, labels = merge_boxes([[0, 0, 10, 10], [8, 0, 20, 10], [0, 0, 10, 10]],
                                ["Mono", "Mono", "Few"], cut=[True, True, False])  # fmt: skip
    assert boxes == [[0.0, 0.0, 20.0, 10.0], [0.0, 0.0, 10.0, 10.0]]
    assert labels == ["Mono", "Few"]
    # two whole flakes side by side that barely touch stay two
    assert len(merge_boxes([[0, 0, 10, 10], [9, 0, 20, 10]], ["Mono"] * 2)[0]) == 2


def test_a_whole_image_is_cut_asked_and_merged(tiny):
    model, proc = tiny
    tile = proc.image.image_size
    img = _chip()
    qs = ["How many monolayer flakes are in the image?",
          "Detect all flakes and classify each one as Mono, Few or Thick.",
          "Is there any monolayer graphene flake in the image?"]  # fmt: skip
    res = answer_whole_images(model, proc, [img] * 3, qs, temperature=0.0, max_new_tokens=48,
                              constrain=True)  # fmt: skip
    n_windows = len(window_starts(img.shape[0], tile)) * len(window_starts(img.shape[1], tile))
    assert [r.task for r in res] == ["count", "locate", "verify"]
    for r in res:
        assert r.windows == n_windows == r.asked and len(r.window_answers) == n_windows
    # the merged count is the windows' counts added up, the merged yes any window's yes
    windows = [[parse_answer(t, "llava", expect=e) for _, _, t in r.window_answers]
               for r, e in ((res[0], "count"), (res[2], "yesno"))]  # fmt: skip
    assert res[0].count == sum(a.count for a in windows[0] if a.ok)
    assert res[0].answer.endswith("in the image.") and f" {res[0].count} " in res[0].answer
    assert res[2].yes == any(a.yes for a in windows[1] if a.ok)
    assert res[2].answer.startswith("Yes" if res[2].yes else "No")
    for x1, y1, x2, y2 in res[1].boxes:  # boxes in the whole image's pixels
        assert 0 <= x1 < x2 <= img.shape[1] + 1 and 0 <= y1 < y2 <= img.shape[0] + 1
    # an image no larger than one window, or another task, is asked whole
    small = answer_whole_images(model, proc, [img[:tile, :tile]], [qs[0]], temperature=0.0,
                                max_new_tokens=48, constrain=True)[0]  # fmt: skip
    assert small.windows == 1 and small.asked == 1


def test_physics_skips_empty_windows_and_the_scale_sets_the_windows(tiny):
    model, proc = tiny
    img = _chip()
    q = ["How many monolayer flakes are in the image?"]
    full = answer_whole_images(model, proc, [img], q, temperature=0.0, max_new_tokens=48,
                               constrain=True)[0]  # fmt: skip
    skip = answer_whole_images(model, proc, [img], q, material="graphene", temperature=0.0,
                               max_new_tokens=48, constrain=True)[0]  # fmt: skip
    assert skip.windows == full.windows and 1 <= skip.asked < full.asked
    # an image at half the model's scale (0.77 um/px) is enlarged twice: more windows
    mic = Microscope(camera=Camera.srgb("D65"), um_per_px=0.77)
    big = answer_whole_images(model, proc, [img], q, mic, temperature=0.0, max_new_tokens=48,
                              constrain=True)[0]  # fmt: skip
    assert big.windows > full.windows
    assert all(x <= img.shape[1] and y <= img.shape[0] for x, y, _ in big.window_answers)
    with pytest.raises(ValueError, match="questions"):
        answer_whole_images(model, proc, [img, img], q)


def test_predict_answers_a_whole_micrograph(tmp_path, tiny):
    from PIL import Image
    from typer.testing import CliRunner

    from qupaint.cli import app

    model, proc = tiny
    model.save_pretrained(tmp_path / "m")
    proc.save_pretrained(tmp_path / "m")
    Image.fromarray(_chip()).save(tmp_path / "chip.png")
    res = CliRunner().invoke(app, ["predict", "--checkpoint", str(tmp_path / "m"), "--image",
                                   str(tmp_path / "chip.png"), "--out", str(tmp_path / "p"),
                                   "--material", "graphene", "--temperature", "0",
                                   "--max-new-tokens", "48"])  # fmt: skip
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "p" / "predictions.json").read_text())[0]
    assert rec["windows"] > 1 and 1 <= rec["windows_asked"] < rec["windows"]
    assert (tmp_path / "p" / "chip_pred.png").is_file()


def test_an_image_asked_several_questions_is_gated_once(tiny, monkeypatch):
    import qupaint.model.whole_image as wi

    model, proc = tiny
    img = _chip()
    calls = []
    real = wi.empty_windows
    monkeypatch.setattr(wi, "empty_windows", lambda *a, **k: calls.append(1) or real(*a, **k))
    qs = ["How many monolayer flakes are in the image?",
          "Detect all flakes and classify each one as Mono, Few or Thick."]  # fmt: skip
    res = answer_whole_images(model, proc, [img, img], qs, material="graphene",
                              temperature=0.0, max_new_tokens=48, constrain=True)  # fmt: skip
    assert len(calls) == 1 and res[0].asked == res[1].asked < res[0].windows


# -- physics evidence: the detector's candidates as the region tokens a model reads ---------
@pytest.fixture(scope="module")
def region_model():
    from qupaint.model.loading import compact_model

    model, proc = compact_model(seed=0)
    return model.eval(), proc


def test_physics_regions_are_what_the_model_reads_and_hold_its_boxes(region_model):
    from qupaint.instruct.parse import parse_answer
    from qupaint.model.inference import generate_answers
    from qupaint.model.regions import region_ids

    model, proc = region_model
    cfg = model.config
    img = np.full((224, 224, 3), 128, np.uint8)
    regions = ([(0.1, 0.2, 0.3, 0.4), (0.5, 0.5, 0.7, 0.8)], [1, 2])
    q = "Detect all flakes and classify each one as Mono, Few or Thick."
    spy = ImageOutputSpy(model)
    texts = generate_answers(model, proc, [img] * 6, [q] * 6, temperature=1.0, seed=1,
                             max_new_tokens=80, constrain=True, regions=[regions] * 6)  # fmt: skip
    spy.remove()
    want = region_ids(proc.tokenizer, *regions, cfg.region_tokens, cfg.image_token_id)
    assert spy.read[0].tolist() == want
    held = {(22.4, 44.8, 67.2, 89.6), (112.0, 112.0, 156.8, 179.2)}
    listed = 0
    for text in texts:
        a = parse_answer(text, "llava", image_size=(224, 224), expect="boxes")
        assert a.ok, text
        got = {tuple(round(float(v), 1) for v in b) for b in a.boxes}
        assert got <= held, text
        listed += len(got)
        if text.startswith("Found"):  # a held list is as long as it says
            assert text.startswith(f"Found {len(a.boxes)} flake"), text
    assert listed  # some draw listed boxes (a random model at temperature 1)
    # no candidate: a locate answer can only say there is none, a yes / no only no
    none = generate_answers(model, proc, [img, img], [q, "Is there any monolayer graphene "
                                                          "flake in the image?"],
                            temperature=0.0, max_new_tokens=80, constrain=True,
                            regions=[([], [])] * 2)  # fmt: skip
    a = parse_answer(none[0], "llava", expect="boxes")
    assert a.ok and len(a.boxes) == 0, none[0]
    assert parse_answer(none[1], "llava", expect="yesno").yes is False


def test_physics_evidence_is_refused_clearly_where_it_cannot_be_read(tiny, region_model):
    from qupaint.model.inference import generate_answers

    model, proc = tiny  # no region tokens
    img = np.full((56, 56, 3), 128, np.uint8)
    with pytest.raises(ValueError, match="regions"):
        generate_answers(model, proc, [img], ["How many flakes?"], regions=[([], [])])
    rmodel, rproc = region_model
    with pytest.raises(ValueError, match="regions: 2 for 1"):
        generate_answers(rmodel, rproc, [img], ["How many flakes?"], regions=[([], [])] * 2)
    with pytest.raises(ValueError, match="material"):
        answer_whole_images(rmodel, rproc, [img], ["How many flakes?"], evidence="physics")
    with pytest.raises(ValueError, match="evidence"):
        answer_whole_images(model, proc, [img], ["How many flakes?"], evidence="both")


def test_held_lists_say_how_many_they_list():
    import re

    from qupaint.model.constrain import MAX_HELD_LISTS, answer_regex

    held = ("[0.100, 0.100, 0.200, 0.200]", "[0.300, 0.300, 0.400, 0.400]")
    r = answer_regex("locate", "llava", held)
    one, two = (f"Mono: {h}" for h in held)
    assert re.fullmatch(r, f"Found 2 flakes: {one}; {two}")
    assert re.fullmatch(r, f"Found 1 flake: {two}")
    assert not re.fullmatch(r, f"Found 2 flakes: {one}")  # says 2, lists 1
    assert not re.fullmatch(r, f"Found 2 flakes: {one}; {one}")  # one box twice
    assert not re.fullmatch(r, "Found 1 flake: Mono: [0.100, 0.100, 0.200, 0.300]")
    # many candidates: any held box, in order, each once, the count not checked
    many = tuple(f"[0.{k:03d}, 0.100, 0.{k + 1:03d}, 0.200]" for k in range(100, 110))
    assert sum(1 for _ in range(len(many))) and 2 ** len(many) > MAX_HELD_LISTS
    r = answer_regex("locate", "llava", many)
    assert re.fullmatch(r, f"Found 3 flakes: Few: {many[0]}; Few: {many[5]}")
    assert not re.fullmatch(r, f"Found 2 flakes: Few: {many[5]}; Few: {many[0]}")


def test_proposal_windows_show_every_candidate_whole_and_scores_come_from_the_evidence(
        region_model):  # fmt: skip
    from qupaint.model.whole_image import REGIONS_PER_WINDOW, evidence_scores, proposal_windows

    rng = np.random.default_rng(0)
    W, H, tile = 1920, 1200, 224
    cands = []
    for _ in range(40):
        w, h = rng.integers(4, 200, 2)
        cands.append({"bbox": [float(rng.integers(0, W - w)), float(rng.integers(0, H - h)),
                               float(w), float(h)], "score": float(rng.random())})  # fmt: skip
    wins = proposal_windows(cands, W, H, tile, per_window=3)
    given = sorted(k for *_, members in wins for k in members)
    assert given == list(range(len(cands)))  # each candidate given to one window
    for x0, y0, members in wins:
        assert 0 <= x0 <= W - tile and 0 <= y0 <= H - tile and 1 <= len(members) <= 3
        for k in members:  # ... which shows it whole (all of these fit in one)
            x, y, w, h = cands[k]["bbox"]
            assert x >= x0 and y >= y0 and x + w <= x0 + tile and y + h <= y0 + tile
    # a dense cluster is spread over several windows, none holding more than fits
    cluster = [{"bbox": [500 + 3 * k, 500, 10, 10], "score": 1 - k / 100} for k in range(14)]
    assert [len(m) for *_, m in proposal_windows(cluster, W, H, tile)] == [6, 6, 2]
    assert proposal_windows([], W, H, tile) == []
    # a box reporting a candidate carries its score; a box reporting none carries 0
    x, y, w, h = cands[3]["bbox"]
    got = evidence_scores([[x, y, x + w, y + h], [0, 0, 0.5, 0.5]], cands)
    assert got == [round(cands[3]["score"], 4), 0.0]
    # the compact model's region tokens hold a full window's candidates whole
    from qupaint.model.regions import regions_that_fit

    model, proc = region_model
    boxes = [(0.001 * k, 0.123, 0.999, 0.987) for k in range(REGIONS_PER_WINDOW)]
    assert regions_that_fit(proc.tokenizer, boxes, [3] * len(boxes),
                            model.config.region_tokens) == REGIONS_PER_WINDOW  # fmt: skip
