"""Constrained decoding (issue 27: choose the library by measurement): the same greedy
generation on the tiny model (4 questions: count, detect, verify, ground; up to 200 new
tokens), held to the task expressions by xgrammar (ours, the default) or by
lm-format-enforcer; free generation for the cost of the mask itself."""

from __future__ import annotations

import numpy as np
import pytest

from qupaint.instruct import templates as T

QS = [T.COUNT_Q[0].format(cat="monolayer", material="graphene"), T.DETECT_Q[0],
      T.VERIFY_Q[0].format(cat="monolayer", material="graphene"),
      T.GROUND_Q[0].format(ref="the thickest flake")]  # fmt: skip


@pytest.fixture(scope="module")
def setup():
    from qupaint.model import load_model_and_processor

    model, proc = load_model_and_processor("tiny")
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (112, 112, 3), dtype=np.uint8) for _ in QS]
    return model, proc, imgs


def _run(setup, **kw):
    from qupaint.model.inference import generate_answers

    model, proc, imgs = setup
    return lambda: generate_answers(model, proc, imgs, QS, temperature=0.0, max_new_tokens=200,
                                    **kw)  # fmt: skip


def test_xgrammar(peer, setup):
    _run(setup, constrain=True)()  # compile the grammars once
    peer("constrain-tiny-4q", "xgrammar", _run(setup, constrain=True), ours=True, rounds=3)


def test_lm_format_enforcer(peer, setup):
    pytest.importorskip("lmformatenforcer")
    _run(setup, constrain=True, backend="lmfe")()
    peer("constrain-tiny-4q", "lm-format-enforcer",
         _run(setup, constrain=True, backend="lmfe"), rounds=3)  # fmt: skip


def test_free(peer, setup):
    peer("constrain-tiny-4q", "free-generation", _run(setup), rounds=3)
