"""The QMat-Instruct tasks (QuPAINT Sec. 4.3), one generator each, in a registry.

A task is ``fn(ctx, rng) -> (turns, meta) | None``: ``turns`` is a list of
``(question, answer)`` pairs whose parts are text or :class:`~qupaint.instruct.context.Boxes`
segments, ``meta`` a dict stored with the record, and ``None`` means the image has no true
answer for the task (e.g. grounding with no uniquely describable flake). ``rng`` is the
image's ``random.Random``; tasks draw from it in :data:`TASKS` order.

Add a task with ``@task("name")``; it is then accepted by ``build_corpus(tasks=...)`` and
``qupaint instruct --tasks``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from qupaint.categories import CATEGORY_IDS, CATEGORY_PHRASES, MONO
from qupaint.instruct import templates as T
from qupaint.instruct.context import ImageContext, layers_words, plural

__all__ = ["TASKS", "TASK_FNS", "task"]

#: non-monolayer candidates that a dialogue reasons about (all monolayers always are)
MAX_REASONED_OTHERS = 3
_ALL_CATS = tuple(CATEGORY_IDS.values())
#: category asked about by counting and localisation (None = every flake); Mono weighted up
_ASKED_CATS = (MONO, MONO, MONO, 2, 3, None)

TaskFn = Callable[[ImageContext, random.Random], "tuple[list, dict] | None"]
#: name -> generator, in the order tasks are generated for an image
TASK_FNS: dict[str, TaskFn] = {}


def task(name: str) -> Callable[[TaskFn], TaskFn]:
    """Register ``fn`` as task ``name``."""

    def deco(fn: TaskFn) -> TaskFn:
        TASK_FNS[name] = fn
        return fn

    return deco


@task("count")
def _count(ctx: ImageContext, rng: random.Random):
    cat = rng.choice(_ASKED_CATS)
    n = len(ctx.by_cat(cat))
    if cat is None:
        q = rng.choice(T.COUNT_ALL_Q).format(material=ctx.material)
        a = f"There {'is' if n == 1 else 'are'} {plural(n)} in the image."
        return [(q, [a])], {"category_id": None, "count": n}
    word = CATEGORY_PHRASES[cat]
    q = rng.choice(T.COUNT_Q).format(cat=word, material=ctx.material)
    a = rng.choice(T.COUNT_A).format(n=n, cat=word)
    return [(q, [a])], {"category_id": cat, "count": n}


@task("locate")
def _locate(ctx: ImageContext, rng: random.Random):
    cat = rng.choice(_ASKED_CATS)
    idx = ctx.by_cat(cat)
    if cat is None:
        q = rng.choice(T.DETECT_Q).format(material=ctx.material)
        if not idx:
            return [(q, ["There are no flakes in this image.", ctx.boxes([])])], {"boxes": 0}
        return [(q, [f"Found {plural(len(idx))}: ", ctx.boxes(idx)])], {"boxes": len(idx)}
    word = CATEGORY_PHRASES[cat]
    q = rng.choice(T.LOCATE_Q).format(cat=word, material=ctx.material)
    if not idx:
        a = rng.choice(T.LOCATE_NONE_A).format(cat=word)
        return [(q, [a, ctx.boxes([])])], {"category_id": cat, "boxes": 0}
    head, _, tail = rng.choice(T.LOCATE_A).partition("{box}")
    a = [head.format(cat=word, n=plural(len(idx))), ctx.boxes(idx), tail]
    return [(q, a)], {"category_id": cat, "boxes": len(idx)}


@task("verify")
def _verify(ctx: ImageContext, rng: random.Random):
    present = {a["category_id"] for a in ctx.anns}
    want_yes = rng.random() < 0.5 and bool(present)
    absent = [c for c in _ALL_CATS if c not in present]
    others = [m for m in ctx.materials if m != ctx.material]
    if not (absent or others):  # every category here, one material: no true "no" exists
        want_yes = True
    if want_yes:
        cat, mat = rng.choice(sorted(present)), ctx.material
    else:
        # hard negatives first: "is there a monolayer?" on an image without one
        if absent and (MONO in absent or not others or rng.random() < 0.7):
            cat, mat = (MONO if MONO in absent else rng.choice(absent)), ctx.material
        else:
            cat, mat = rng.choice(list(_ALL_CATS)), rng.choice(others)
    word = CATEGORY_PHRASES[cat]
    q = rng.choice(T.VERIFY_Q).format(cat=word, material=mat)
    if want_yes:
        i = rng.choice(ctx.by_cat(cat))
        head, _, tail = rng.choice(T.VERIFY_YES_A).partition("{box}")
        a = [
            head.format(cat=word, material=mat),
            ctx.boxes([i]),
            tail.format(cat=word, material=mat),
        ]
    else:
        a = [rng.choice(T.VERIFY_NO_A).format(cat=word, material=mat)]
    hard = (not want_yes) and cat == MONO and mat == ctx.material
    return [(q, a)], {"answer": "yes" if want_yes else "no", "hard_negative": hard}


@task("describe")
def _describe(ctx: ImageContext, rng: random.Random):
    if not ctx.anns:
        return None
    mono = ctx.by_cat(MONO)
    i = rng.choice(mono) if mono and rng.random() < 0.5 else rng.randrange(len(ctx.anns))
    head, _, tail = rng.choice(T.DESCRIBE_Q).partition("{box}")
    a = ctx.anns[i]
    intro = T.DESCRIBE_A.format(cat=CATEGORY_PHRASES[a["category_id"]], material=ctx.material,
                                layers=layers_words(int(a["layers"]))) + " "
    return [([head, ctx.boxes([i], False), tail], [intro + ctx.explain(i)])], {"ann_index": i}


@task("ground")
def _ground(ctx: ImageContext, rng: random.Random):
    if not ctx.anns:
        return None
    options = []  # (expression, category, annotation) where the expression names one flake
    for cat in _ALL_CATS:
        idx = ctx.by_cat(cat)
        areas = [ctx.anns[i]["area"] for i in idx]
        if idx and areas.count(max(areas)) == 1:
            options.append(("largest", cat, idx[areas.index(max(areas))]))
        if len(idx) >= 2 and areas.count(min(areas)) == 1:
            options.append(("smallest", cat, idx[areas.index(min(areas))]))
    if len(ctx.anns) >= 2:
        de = ctx.de.tolist()
        order = sorted(range(len(de)), key=de.__getitem__)
        if de[order[1]] - de[order[0]] > 1.0:
            options.append(("faintest", None, order[0]))
        if de[order[-1]] - de[order[-2]] > 1.0:
            options.append(("strongest", None, order[-1]))
        layers = [int(a["layers"]) for a in ctx.anns]
        if layers.count(max(layers)) == 1:
            options.append(("thickest", None, layers.index(max(layers))))
    if not options:
        return None
    key, cat, i = rng.choice(options)
    ref = T.REFS[key].format(cat=CATEGORY_PHRASES[cat] if cat else "")
    q = rng.choice(T.GROUND_Q).format(ref=ref)
    meta = {"ref": ref, "ann_id": ctx.anns[i].get("id"), "bbox": ctx.anns[i]["bbox"]}
    return [(q, [ctx.boxes([i], False)])], meta


@task("dialogue")
def _dialogue(ctx: ImageContext, rng: random.Random):
    if not ctx.anns:
        return None
    allidx = ctx.by_cat(None)
    cand = [f"I see {plural(len(allidx), 'candidate')}: ", ctx.boxes(allidx)]
    mono = ctx.by_cat(MONO)
    # reason about every monolayer and the hardest other candidates (closest in contrast to
    # a monolayer), which keeps dialogues to a trainable length on crowded images
    mono_de = min((ctx.de[i] for i in mono), default=0.0)
    others = sorted(set(allidx) - set(mono), key=lambda i: abs(ctx.de[i] - mono_de))
    lines = []
    for i in sorted(mono + others[:MAX_REASONED_OTHERS]):
        a = ctx.anns[i]
        verdict = "a monolayer" if a["category_id"] == MONO else "not a monolayer"
        lines.append(["Candidate ", ctx.boxes([i], False), f" is {verdict}. " + ctx.explain(i)])
    reasoning = [seg for line in lines for seg in [*line, "\n"]][:-1]
    if mono:
        concl = [
            f"<CONCLUSION>There {'is' if len(mono) == 1 else 'are'} "
            f"{plural(len(mono), 'monolayer flake')}: ",
            ctx.boxes(mono),
            "</CONCLUSION>",
        ]
    else:
        concl = ["<CONCLUSION>There are no monolayer flakes in this image.</CONCLUSION>"]
    turns = [
        (rng.choice(T.DIALOGUE_Q1), cand),
        (rng.choice(T.DIALOGUE_Q2), reasoning),
        (rng.choice(T.DIALOGUE_Q3), concl),
    ]
    return turns, {"monolayers": len(mono)}


#: the task names, in generation order
TASKS = tuple(TASK_FNS)
