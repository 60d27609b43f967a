"""Constrained decoding (qupaint.model.constrain): every answer the corpus writes matches
its task's expression, the tasks are recognised from their questions, and generation held
to the expression produces answers in the format (both backends, the same tokens)."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from qupaint.categories import CATEGORY_IDS, CATEGORY_PHRASES
from qupaint.instruct import templates as T
from qupaint.instruct.formats import FORMATS, format_boxes
from qupaint.model.constrain import (
    CONSTRAINED_TASKS,
    answer_regex,
    task_of_question,
)


def _boxes(fmt, rng, n, labelled=True):
    W, H = 640, 480
    bx = []
    for _ in range(n):
        x, y = rng.uniform(0, W - 40), rng.uniform(0, H - 40)
        bx.append([x, y, rng.uniform(5, W - x), rng.uniform(5, H - y)])
    labels = [rng.choice(list(CATEGORY_IDS)) for _ in bx] if labelled else None
    return format_boxes(fmt, bx, labels, W, H)


def _answers(task, fmt, rng):
    cat = rng.choice(list(CATEGORY_PHRASES.values()))
    mat = rng.choice(["graphene", "hBN", "MoS2", "WSe2", "MoWSe2"])
    n = rng.randint(0, 30)
    if task == "count":
        return [t.format(n=n, cat=cat) for t in T.COUNT_A] + [
            f"There {'is' if n == 1 else 'are'} {n} flake{'' if n == 1 else 's'} in the image."
        ]
    if task == "locate":
        k = rng.randint(1, 12)
        many = _boxes(fmt, rng, k)
        return ([t.format(cat=cat, n=f"{k} flakes", box=many) for t in T.LOCATE_A]
                + [t.format(cat=cat) for t in T.LOCATE_NONE_A]
                + [f"Found {k} flake{'' if k == 1 else 's'}: {many}",
                   "There are no flakes in this image."])  # fmt: skip
    if task == "describe":
        n = rng.randint(1, 40)
        words = "a monolayer" if n == 1 else f"{n} layers"
        return [
            f"This is a {cat} {mat} flake ({words}). Its colour differs from the substrate "
            "by Delta-E = 4.1 (CIE76): it is darker.",
            f"This is a {cat} {mat} flake ({words}).",
        ]
    if task == "verify":
        one = _boxes(fmt, rng, 1)
        return ([t.format(cat=cat, material=mat, box=one) for t in T.VERIFY_YES_A]
                + [t.format(cat=cat, material=mat) for t in T.VERIFY_NO_A])  # fmt: skip
    return [_boxes(fmt, rng, 1, labelled=False)]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("task", CONSTRAINED_TASKS)
def test_every_corpus_answer_matches_its_task_expression(task, fmt):
    rng = random.Random(f"{task}-{fmt}")
    pat = re.compile(answer_regex(task, fmt), re.S)
    for _ in range(20):
        for a in _answers(task, fmt, rng):
            assert pat.fullmatch(a), (task, fmt, a)
    # and it is no catch-all
    for bad in ("", "I think so.", "There are many flakes.", "[0.1, 0.2]", "Yes."):
        assert not pat.fullmatch(bad), (task, bad)


def test_tasks_are_recognised_from_their_questions():
    mats = ("graphene", "WSe2")
    for task, qs in {"count": T.COUNT_Q + T.COUNT_ALL_Q, "locate": T.DETECT_Q + T.LOCATE_Q,
                     "verify": T.VERIFY_Q, "ground": T.GROUND_Q}.items():  # fmt: skip
        for q in qs:
            for m in mats:
                text = q.format(cat="monolayer", material=m, ref="the thickest flake")
                assert task_of_question(text) == task, text
                assert task_of_question("<image>\n" + text) == task
    assert task_of_question("What is the meaning of life?") is None
    assert task_of_question(T.DESCRIBE_Q[0].format(box="[0.1, 0.2, 0.3, 0.4]")) == "describe"
    with pytest.raises(ValueError, match="task"):
        answer_regex("dialogue")


def test_constrained_generation_follows_the_format_on_both_backends():
    from qupaint.model import load_model_and_processor
    from qupaint.model.inference import generate_answers

    model, proc = load_model_and_processor("tiny")
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (112, 112, 3), dtype=np.uint8) for _ in range(4)]
    qs = [T.COUNT_Q[0].format(cat="monolayer", material="graphene"), T.DETECT_Q[0],
          T.VERIFY_Q[0].format(cat="monolayer", material="graphene"),
          T.GROUND_Q[0].format(ref="the thickest flake")]  # fmt: skip
    free = generate_answers(model, proc, imgs, qs, temperature=0.0, max_new_tokens=600)
    # retries=0: the backends' masks compared, without the resampling of rejected answers
    held = generate_answers(model, proc, imgs, qs, temperature=0.0, max_new_tokens=600,
                            constrain=True, retries=0, repair=False)  # fmt: skip
    for q, a in zip(qs, held, strict=True):
        assert re.fullmatch(answer_regex(task_of_question(q)), a, re.S), (q, a)
    # the random model left free does not write the format
    assert not any(re.fullmatch(answer_regex(task_of_question(q)), a, re.S)
                   for q, a in zip(qs, free, strict=True))  # fmt: skip
    # lm-format-enforcer masks the same tokens (short answers: it is the slower backend)
    short = [0, 2, 3]
    lmfe = generate_answers(model, proc, [imgs[i] for i in short], [qs[i] for i in short],
                            temperature=0.0, max_new_tokens=600, constrain=True,
                            backend="lmfe", retries=0, repair=False)  # fmt: skip
    assert lmfe == [held[i] for i in short]


def test_per_task_evaluation_constrained_and_free(tmp_path):
    """``qupaint eval model --tasks``: every task's parse rate, its figure, and the physics
    detector's reference row, on a tiny QF-Bench. Constrained, the tiny random model's
    count and description answers all parse; left free, none does. (Its yes-answers and
    box lists hold the format but may carry a box with x2 <= x1, which a format cannot
    forbid and the parser rejects.)"""
    import json

    from typer.testing import CliRunner

    from qupaint.bench.model_eval import task_questions
    from qupaint.bench.qfbench import build_qfbench
    from qupaint.cli import app
    from qupaint.model import tiny_model
    from qupaint.synthia import SynthiaConfig

    small = SynthiaConfig(height=112, width=112, radius_px=(8.0, 24.0), flakes_per_image=(2, 3))
    build_qfbench(tmp_path / "qf", 1, materials=("graphene", "MoS2"), config=small)
    gt = tmp_path / "qf" / "annotations.json"
    coco = json.loads(gt.read_text())
    items = task_questions(coco, coco["images"])
    assert {t for t, *_ in items} == {"count", "verify", "describe", "locate"}
    assert sum(t == "count" for t, *_ in items) == 3 * len(coco["images"])
    model, proc = tiny_model()
    model.save_pretrained(tmp_path / "m")
    proc.save_pretrained(tmp_path / "m")
    out = {}
    for mode in ("--constrain", "--free"):
        res = CliRunner().invoke(app, ["eval", "model", "--checkpoint", str(tmp_path / "m"),
                                       "--gt", str(gt), "--tasks", mode, "--temperature", "0",
                                       "--max-new-tokens", "160",
                                       "--out", str(tmp_path / f"{mode}.json")])  # fmt: skip
        assert res.exit_code == 0, res.output
        out[mode] = json.loads((tmp_path / f"{mode}.json").read_text())
    held, free = out["--constrain"]["tasks"]["tasks"], out["--free"]["tasks"]["tasks"]
    for task in ("count", "describe"):
        assert held[task]["parse_rate"] == 1.0, (task, held[task])
    for task in ("count", "verify", "describe", "locate"):
        assert free[task]["parse_rate"] == 0.0, (task, free[task])
    ref = out["--constrain"]["detector_reference"]
    assert set(ref) == {"exact_count_accuracy", "monolayer_present_accuracy",
                        "layer_class_accuracy", "AP50", "Mono_AP50"}  # fmt: skip
    assert ref["AP50"] > 0.3  # the physics detector on its own synthetic images


def test_answers_the_strict_parser_rejects_are_drawn_again(monkeypatch):
    """What a format cannot hold (a box with y2 < y1) the strict parser rejects: such a
    constrained answer is drawn again by sampling, up to ``retries`` times; answers that
    parse, free answers and answers cut at the token limit are not. What still fails is
    repaired from what it validly says (corners put in order), unless ``repair=False``."""
    import qupaint.model.inference as inf
    from qupaint.model import tiny_model

    model, proc = tiny_model(seed=0)
    bad = "Found 1 flake: Thick: [0.781, 0.719, 0.969, 0.672]"
    good = "Found 1 flake: Thick: [0.781, 0.672, 0.969, 0.719]"
    calls = []

    def fake(model, processor, images, questions, rows, regexes, gen, *rest):
        calls.append((list(rows), gen["do_sample"]))
        first = len(calls) == 1
        texts = [bad if (first or questions[i] == "cut") else good for i in rows]
        return texts, [questions[i] != "cut" for i in rows]

    monkeypatch.setattr(inf, "_generate", fake)
    img = np.zeros((56, 56, 3), np.uint8)
    qs = ["Locate all flakes in the image with their layer category."] * 2 + ["cut"]
    out = inf.generate_answers(model, proc, [img] * 3, qs, constrain=True, temperature=0,
                               tasks=["locate", "locate", "locate"], batch_size=4)  # fmt: skip
    assert out == [good, good, good]  # the cut answer is not drawn again, but repaired
    assert calls == [([0, 1, 2], False), ([0, 1], True)]
    calls.clear()
    out = inf.generate_answers(model, proc, [img] * 3, qs, constrain=True, temperature=0,
                               tasks=["locate"] * 3, repair=False)  # fmt: skip
    assert out == [good, good, bad]  # without repair the cut answer is kept as it is
    calls.clear()
    out = inf.generate_answers(model, proc, [img] * 2, qs[:2], constrain=True, temperature=0,
                               tasks=["locate"] * 2, retries=0, repair=False)  # fmt: skip
    assert out == [bad, bad] and len(calls) == 1
    calls.clear()
    assert inf.generate_answers(model, proc, [img] * 2, qs[:2], temperature=0) == [bad, bad]
    assert len(calls) == 1  # free answers are never drawn again
    with pytest.raises(ValueError, match="retries"):
        inf.generate_answers(model, proc, [img], qs[:1], retries=-1)


def test_repaired_answers_keep_their_task_format_and_invent_nothing():
    from qupaint.model.inference import repair_answer

    loc = re.compile(answer_regex("locate", "llava"))
    swapped = "Found 2 flakes: Thick: [0.781, 0.719, 0.969, 0.672]; Mono: [0.1, 0.2, 0.3, 0.4]"
    fixed = repair_answer(swapped, "llava", "boxes")
    assert fixed == (
        "Found 2 flakes: Thick: [0.781, 0.672, 0.969, 0.719]; Mono: [0.1, 0.2, 0.3, 0.4]"
    )
    flat = "Found 2 flakes: Thick: [0.500, 0.100, 0.500, 0.300]; Mono: [0.100, 0.200, 0.300, 0.400]"
    dropped = repair_answer(flat, "llava", "boxes")  # a zero-width box cannot be put right
    assert dropped == "Found 1: Mono: [0.100, 0.200, 0.300, 0.400]" and loc.fullmatch(dropped)
    cut = "Found 2 flakes: Mono: [0.100, 0.200, 0.300, 0.400]; Few: [0.5"
    assert repair_answer(cut, "llava", "boxes") == "Found 1: Mono: [0.100, 0.200, 0.300, 0.400]"
    assert repair_answer("Found 1 flake: Few: [0.5", "llava", "boxes") == (
        "There are no flakes in this image."
    )
    ver = "Yes. There is a monolayer MoS2 flake at [0.400, 0.300, 0.200, 0.500]."
    assert repair_answer(ver, "llava", "yesno") == (
        "Yes. There is a monolayer MoS2 flake at [0.200, 0.300, 0.400, 0.500]."
    )
    assert repair_answer("x", "qwen", "boxes") == "x"  # pixel boxes: left as they are
