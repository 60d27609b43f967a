"""Whole micrographs in, whole-image answers out (qupaint.model.whole_image): windows at the
model's scale, empty windows skipped by physics, answers merged."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qupaint.color import Camera, Microscope
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
    assert res[0].count is not None and res[0].answer.endswith("in the image.")
    assert res[2].yes in (True, False) and res[2].answer.startswith(("Yes", "No"))
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
