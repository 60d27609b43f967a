"""The one scorer of a task answer against its truth (:func:`score_answer`), whatever gave
the answer: a model's text, or a reading of detections (:class:`Reading`).

The truths are those of :func:`qupaint.bench.model_eval.task_questions`:

========  ==================================  =============================================
task      truth                               an answer is right when
========  ==================================  =============================================
count     (layer class, number of flakes)     the number it states equals the truth's
verify    True when a monolayer is present    its yes / no matches
describe  (layer class, box)                  its opening sentence names the class
locate    None (scored by AP over the set)    - (only whether it parses)
========  ==================================  =============================================

Examples
--------
>>> score_answer("count", "There are 2 monolayer graphene flakes.", (1, 2))
(True, True)
>>> score_answer("describe", "This is a thick MoS2 flake (12 layers).", (2, [0, 0, 5, 5]))
(True, False)
>>> score_answer("verify", Reading(True, yes=False), False)
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass

from qupaint.instruct.parse import description_class, parse_answer

__all__ = ["TASKS_SCORED", "Reading", "read_answer", "score_answer"]

#: the tasks :func:`score_answer` knows
TASKS_SCORED = ("count", "verify", "describe", "locate")


@dataclass(frozen=True)
class Reading:
    """What an answer says, read from a model's text (:func:`read_answer`) or built from a
    detector's output.

    Attributes
    ----------
    parsed : bool
        Whether the answer could be read at all.
    count : int, optional
        The number it states (count).
    yes : bool, optional
        Its yes or no (verify).
    layer_class : int, optional
        The layer class it names (describe): 1 Mono, 2 Few, 3 Thick.
    """

    parsed: bool
    count: int | None = None
    yes: bool | None = None
    layer_class: int | None = None


def read_answer(task: str, text: str, fmt: str = "llava") -> Reading:
    """The :class:`Reading` of a model's answer ``text`` to a ``task`` question in box dialect
    ``fmt`` (the strict parser, :func:`qupaint.instruct.parse.parse_answer`)."""
    if task == "count":
        a = parse_answer(text, fmt, expect="count")
        return Reading(a.ok, count=a.count if a.ok else None)
    if task == "verify":
        a = parse_answer(text, fmt, expect="yesno")
        return Reading(a.ok, yes=a.yes if a.ok else None)
    if task == "describe":
        c = description_class(text)
        return Reading(c is not None, layer_class=c)
    if task == "locate":
        return Reading(parse_answer(text, fmt, expect="boxes").ok)
    raise ValueError(f"task: one of {TASKS_SCORED}; got {task!r}")


def score_answer(task: str, answer: str | Reading, truth, fmt: str = "llava"
                 ) -> tuple[bool, bool | None]:  # fmt: skip
    """(parsed, right) of ``answer`` (a model's text, or a :class:`Reading`) to a ``task``
    question whose truth is ``truth`` (see the module's table); ``right`` is None for
    ``locate``, which is scored by AP over the whole set."""
    r = answer if isinstance(answer, Reading) else read_answer(task, answer, fmt)
    if task == "count":
        return r.parsed, bool(r.parsed and r.count == truth[1])
    if task == "verify":
        return r.parsed, bool(r.parsed and r.yes == truth)
    if task == "describe":
        return r.parsed, r.layer_class == truth[0]
    if task == "locate":
        return r.parsed, None
    raise ValueError(f"task: one of {TASKS_SCORED}; got {task!r}")
