"""One scorer of task answers (qupaint.bench.scoring): a model's text and a detector's
reading are judged by the same rule, and the describe sentence is parsed from its one
definition (qupaint.instruct.templates.DESCRIBE_A)."""

from __future__ import annotations

import random
import re

import pytest

from qupaint.bench.model_eval import detections_reading
from qupaint.bench.scoring import Reading, read_answer, score_answer
from qupaint.categories import CATEGORY_PHRASES
from qupaint.instruct import templates as T
from qupaint.instruct.context import layers_words
from qupaint.instruct.parse import description_class
from qupaint.model.constrain import answer_regex


def test_every_described_sentence_reads_back_its_class_and_matches_the_constraint():
    rng = random.Random(0)
    pattern = re.compile(answer_regex("describe", "llava"))
    for _ in range(200):
        cat = rng.choice(list(CATEGORY_PHRASES))
        n = rng.randint(1, 120)
        text = (
            T.DESCRIBE_A.format(
                cat=CATEGORY_PHRASES[cat],
                material=rng.choice(["graphene", "MoS2", "hBN", "WSe2"]),
                layers=layers_words(n),
            )
            + " More text."
        )
        assert description_class(text) == cat
        assert pattern.fullmatch(text), text
    assert description_class("This is an thick flake") == 3  # the article is forgiven
    assert description_class("Thick, I think.") is None and description_class(None) is None


@pytest.mark.parametrize(
    "task, text, truth, want",
    [("count", "There are 3 few-layer MoS2 flakes.", (2, 3), (True, True)),
     ("count", "There are 3 few-layer MoS2 flakes.", (2, 4), (True, False)),
     ("count", "Many.", (2, 4), (False, False)),
     ("verify", "Yes. There is a monolayer MoS2 flake at Mono: [0.1, 0.1, 0.2, 0.2].", True,
      (True, True)),
     ("verify", "No, there is no monolayer MoS2 flake here.", True, (True, False)),
     ("describe", "This is a few-layer MoS2 flake (3 layers).", (2, [0, 0, 1, 1]), (True, True)),
     ("describe", "A flake.", (2, [0, 0, 1, 1]), (False, False)),
     ("locate", "Mono: [0.1, 0.1, 0.2, 0.2]", None, (True, None))],
)  # fmt: skip
def test_score_answer(task, text, truth, want):
    assert score_answer(task, text, truth) == want
    # a reading of the same answer is judged the same way
    assert score_answer(task, read_answer(task, text), truth) == want


def test_detections_are_read_and_scored_by_the_same_rule():
    dets = [{"bbox": [0, 0, 10, 10], "category_id": 1, "score": 0.9},
            {"bbox": [50, 50, 10, 10], "category_id": 2, "score": 0.8}]  # fmt: skip
    assert score_answer("count", detections_reading("count", dets, (2, 1)), (2, 1)) == (True, True)
    assert detections_reading("verify", dets, True) == Reading(True, yes=True)
    # the class of the best-overlapping detection, only at IoU >= 0.5
    assert detections_reading("describe", dets, (1, [1, 1, 10, 10])).layer_class == 1
    assert detections_reading("describe", dets, (1, [20, 20, 10, 10])).layer_class is None
    assert score_answer("describe", detections_reading("describe", [], (1, [0, 0, 1, 1])),
                        (1, [0, 0, 1, 1])) == (False, False)  # fmt: skip
    with pytest.raises(ValueError, match="task"):
        score_answer("dance", "x", None)
