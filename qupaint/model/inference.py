"""Batched generation with a QuPAINT model (``qupaint predict``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from qupaint.boxes import xyxy_to_xywh

__all__ = ["AnswerSettings", "generate_answers", "repair_answer"]


@dataclass(frozen=True)
class AnswerSettings:
    """How :func:`generate_answers` decodes: ``batch_size`` questions at a time, sampling at
    ``temperature`` (0: greedy) with ``seed``, up to ``max_new_tokens``; ``constrain``
    holds each answer to its task's format in box dialect ``fmt`` (with ``backend``),
    drawing a rejected answer again up to ``retries`` times and then ``repair``-ing it;
    ``hold`` holds the boxes of locate, verify and ground answers to the regions given."""

    batch_size: int = 4
    temperature: float = 0.2
    max_new_tokens: int = 512
    seed: int = 0
    constrain: bool = False
    fmt: str = "llava"
    backend: str = "xgrammar"
    retries: int = 3
    repair: bool = True
    hold: bool = True

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if self.retries < 0:
            raise ValueError("retries must be >= 0")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")


@torch.no_grad()
def generate_answers(
    model,
    processor,
    images: Sequence,
    questions: Sequence[str],
    settings: AnswerSettings | None = None,
    *,
    tasks: Sequence[str | None] | None = None,
    regions: Sequence | None = None,
    progress: Callable[[int, int], None] | None = None,
    **fields,
) -> list[str]:
    """Answer ``questions[i]`` about ``images[i]`` (paths, PIL images or uint8 arrays), as
    ``settings`` (:class:`AnswerSettings`, or its fields as keywords) say.

    Sampling at ``temperature`` (the paper's 0.2); ``temperature=0`` is greedy. Batches are
    left-padded; the model's device and dtype are used.

    ``constrain=True`` holds each answer to its task's format in box dialect ``fmt``
    (:mod:`qupaint.model.constrain`, with ``backend`` xgrammar or lmfe): the task is
    ``tasks[i]`` when given, else recognised from the question; a question of no known task
    (or of ``dialogue``) is answered freely. What a regular expression cannot hold, a
    box's x2 > x1 and y2 > y1, is checked by the strict parser
    (:func:`~qupaint.instruct.parse.parse_answer`): an answer it rejects is drawn again by
    sampling (temperature 0.7, seeded), up to ``retries`` times, and the last draw is kept
    (an answer cut at ``max_new_tokens`` is not drawn again: it would be cut again).

    ``repair=True``: a constrained box or yes/no answer that the strict parser still rejects
    after the retries (a box with its corners swapped or of zero width, an answer cut at
    the token limit) is written again from what it validly says (:func:`repair_answer`).

    A model that reads referred boxes (``config.region_refer``) gets the box of each
    question about one flake as ``ref_boxes`` from its processor
    (:meth:`~qupaint.model.processing.QuPAINTProcessor.__call__` with ``questions=``, ``refer``).

    ``regions`` (a region-token model, ``config.region_tokens``): per question, the regions
    its image holds, (boxes (x1, y1, x2, y2) as fractions of the image, layer classes), as
    evidence from outside the model (the physics detector's candidates,
    :func:`~qupaint.model.whole_image.window_regions`), written as the region tokens it
    reads in place of its own dense head's (:func:`~qupaint.model.regions.region_ids`).
    With ``constrain``, the boxes of locate, verify and ground answers are then held to
    those regions' boxes (:func:`~qupaint.model.constrain.answer_regex`'s ``held``): the
    model chooses which and their classes, and copies each exactly (``hold=False``: any box).
    """
    if len(images) != len(questions):
        raise ValueError(f"{len(images)} images but {len(questions)} questions")
    st = replace(settings or AnswerSettings(), **fields)
    batch_size, temperature, max_new_tokens, seed = (st.batch_size, st.temperature,
                                                     st.max_new_tokens, st.seed)  # fmt: skip
    constrain, fmt, backend, retries, repair, hold = (st.constrain, st.fmt, st.backend,
                                                      st.retries, st.repair, st.hold)  # fmt: skip
    model.eval()
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    gen = dict(max_new_tokens=max_new_tokens, pad_token_id=processor.pad_id,
               eos_token_id=processor.im_end_id)  # fmt: skip
    if temperature > 0:
        gen.update(do_sample=True, temperature=temperature, top_p=1.0, top_k=0)
    else:
        gen.update(do_sample=False)
    if tasks is not None and len(tasks) != len(questions):
        raise ValueError(f"{len(tasks)} tasks for {len(questions)} questions")
    if regions is not None:
        if len(regions) != len(questions):
            raise ValueError(f"regions: {len(regions)} for {len(questions)} questions")
        if not getattr(model.config, "region_tokens", 0):
            raise ValueError("regions: this model reads no region tokens "
                             "(config.region_tokens is 0); give regions=None")  # fmt: skip
    regexes: list[str | None] = [None] * len(questions)
    expects: list[str | None] = [None] * len(questions)
    if constrain:
        from qupaint.instruct.formats import FORMATS
        from qupaint.model.constrain import CONSTRAINED_TASKS, answer_regex, task_of_question

        if fmt not in FORMATS:
            raise ValueError(f"fmt: constrained answers are written in {FORMATS}; got {fmt!r}")

        for i, q in enumerate(questions):
            t = tasks[i] if tasks is not None else task_of_question(q)
            held = None
            if regions is not None and hold and t in _HELD:
                held = _held_boxes(regions[i], fmt, images[i])
            regexes[i] = answer_regex(t, fmt, held) if t in CONSTRAINED_TASKS else None
            expects[i] = _EXPECT.get(t)
    out: list[str] = []
    ended: list[bool] = []
    torch.manual_seed(seed)
    for start in range(0, len(images), batch_size):
        rows = list(range(start, min(start + batch_size, len(images))))
        texts, done = _generate(model, processor, images, questions, rows, regexes, gen, backend,
                                device, dtype, regions)  # fmt: skip
        out, ended = out + texts, ended + done
        if progress:
            progress(len(out), len(images))
    redo = [i for i, e in enumerate(expects) if e and ended[i] and not _parses(out[i], fmt, e)]
    for attempt in range(retries):
        if not redo:
            break
        torch.manual_seed(seed + 1 + attempt)
        sampled = {**gen, "do_sample": True, "temperature": 0.7, "top_p": 1.0, "top_k": 0}
        for start in range(0, len(redo), batch_size):
            rows = redo[start : start + batch_size]
            texts, _ = _generate(model, processor, images, questions, rows, regexes, sampled,
                                 backend, device, dtype, regions)  # fmt: skip
            for i, text in zip(rows, texts, strict=True):
                out[i] = text
        redo = [i for i in redo if not _parses(out[i], fmt, expects[i])]
    if repair and constrain:
        for i, e in enumerate(expects):
            if e in ("boxes", "yesno") and not _parses(out[i], fmt, e):
                out[i] = repair_answer(out[i], fmt, e)
    return out


def repair_answer(text: str, fmt: str, expect: str) -> str:
    """An answer the strict parser rejects, written again from what it validly says, in its
    own template (so it still holds its task's format):

    1. a box whose corners come in the wrong order (x2 < x1 or y2 < y1: the two corners of
       one rectangle written swapped) gets them in order, its numbers written as they were;
    2. if that does not make it parse, a box answer (``expect="boxes"``) is written again as
       "Found N: <its well-formed boxes>" (or "There are no flakes in this image."), which
       drops a box of zero width and the unfinished tail of an answer cut at the token
       limit.

    Nothing is invented. A yes / no answer with a box that stays malformed, and answers in a
    dialect with pixel boxes (qwen), are returned as they are.

    >>> repair_answer("Found 1 flake: Thick: [0.781, 0.719, 0.969, 0.672]", "llava", "boxes")
    'Found 1 flake: Thick: [0.781, 0.672, 0.969, 0.719]'
    >>> repair_answer("Found 2 flakes: Mono: [0.1, 0.2, 0.3, 0.4]; Few: [0.5, 0.6, 0.5, 0.9]",
    ...               "llava", "boxes")
    'Found 1: Mono: [0.100, 0.200, 0.300, 0.400]'
    """
    import re

    from qupaint.instruct import templates as T
    from qupaint.instruct.formats import format_boxes
    from qupaint.instruct.parse import parse_answer

    if fmt == "qwen" or not isinstance(text, str):
        return text
    num = r"[-+]?(?:\d+\.?\d*|\.\d+)"
    box = re.compile(rf"\[(\s*)({num})(\s*,\s*)({num})(\s*,\s*)({num})(\s*,\s*)({num})(\s*)\]")

    def in_order(m: re.Match) -> str:
        x1, y1, x2, y2 = m.group(2), m.group(4), m.group(6), m.group(8)
        if float(x2) < float(x1):
            x1, x2 = x2, x1
        if float(y2) < float(y1):
            y1, y2 = y2, y1
        g = m.groups()
        return f"[{g[0]}{x1}{g[2]}{y1}{g[4]}{x2}{g[6]}{y2}{g[8]}]"

    fixed = box.sub(in_order, text)
    if parse_answer(fixed, fmt, image_size=(1000, 1000), expect=expect).ok or expect != "boxes":
        return fixed
    a = parse_answer(fixed, fmt, image_size=(1000, 1000))
    if not len(a.boxes):
        return "There are no flakes in this image."
    xywh = [xyxy_to_xywh(b) for b in a.boxes.tolist()]
    labels = [lb or "Mono" for lb in a.labels]
    return T.LOCATE_A[1].format(n=len(xywh), box=format_boxes(fmt, xywh, labels, 1000, 1000))


#: the strict parser's check of each constrained task's answers (a description's format
#: names its class; nothing more to check)
#: tasks whose answer boxes are held to the regions given (``generate_answers(regions=)``)
_HELD = ("locate", "verify", "ground")


def _held_boxes(regions, fmt: str, image) -> tuple[str, ...]:
    """The boxes of ``regions`` (fractions) as coordinate texts of dialect ``fmt`` for
    ``image`` (its pixel size matters to the qwen dialect only)."""
    from qupaint.instruct.formats import box_coords

    w = h = 1
    if fmt == "qwen":
        if isinstance(image, str | os.PathLike):
            from qupaint._io import image_size

            w, h = image_size(image)
        else:
            w, h = getattr(image, "size", None) or (image.shape[1], image.shape[0])
    boxes = sorted(regions[0], key=lambda b: (b[1], b[0]))  # as the region text writes them
    return tuple(dict.fromkeys(box_coords(fmt, (x1 * w, y1 * h, (x2 - x1) * w, (y2 - y1) * h),
                                          w, h) for x1, y1, x2, y2 in boxes))  # fmt: skip


_EXPECT = {"count": "count", "verify": "yesno", "locate": "boxes", "ground": "boxes"}


def _parses(text: str, fmt: str, expect: str) -> bool:
    """Whether the strict parser reads ``text`` as an answer of kind ``expect``."""
    from qupaint.instruct.parse import parse_answer

    return parse_answer(text, fmt, image_size=(1000, 1000), expect=expect).ok


def _referred_class(regions, box) -> int | None:
    """The layer class of the region (boxes as fractions, classes) that overlaps the
    referred ``box`` (x1, y1, x2, y2 fractions; NaN for none) most, or None.

    >>> regions = ([(0.1, 0.1, 0.3, 0.3), (0.5, 0.5, 0.9, 0.9)], [1, 3])
    >>> _referred_class(regions, [0.6, 0.6, 0.8, 0.8])
    3
    """
    import math

    if any(math.isnan(v) for v in box):
        return None
    best, cls = 0.0, None
    for (x1, y1, x2, y2), c in zip(*regions, strict=True):
        iw = min(x2, box[2]) - max(x1, box[0])
        ih = min(y2, box[3]) - max(y1, box[1])
        if iw > 0 and ih > 0 and iw * ih > best:
            best, cls = iw * ih, int(c)
    return cls


def _generate(model, processor, images, questions, rows, regexes, gen, backend, device,
              dtype, regions=None) -> tuple[list[str], list[bool]]:  # fmt: skip
    """Answers to questions ``rows`` (indices), as one left-padded batch, and whether each
    ended (rather than being cut at the token limit); ``regions`` as in
    :func:`generate_answers`."""
    batch = processor([images[i] for i in rows], questions=[questions[i] for i in rows])
    batch = {k: v.to(device) for k, v in batch.items()}
    batch["pixel_values"] = batch["pixel_values"].to(dtype)
    extra = {}
    if regions is not None:
        from qupaint.model.regions import region_ids

        cfg = model.config
        if batch["pixel_values"].shape[0] != len(rows):
            raise ValueError("regions: each image must be one tile (an image of the model's "
                             f"{processor.image.image_size} px); cut larger ones into windows")
        refs = batch.pop("ref_boxes", None)
        asked = [None] * len(rows) if refs is None else [
            _referred_class(regions[i], r.tolist()) for i, r in zip(rows, refs, strict=True)]
        extra["region_ids"] = torch.tensor(
            [region_ids(processor.tokenizer, *regions[i], cfg.region_tokens, cfg.image_token_id,
                        a) for i, a in zip(rows, asked, strict=True)],
            dtype=torch.long, device=device)  # fmt: skip
    row_regexes = [regexes[i] for i in rows]
    if any(r is not None for r in row_regexes):
        from transformers import LogitsProcessorList

        from qupaint.model.constrain import logits_processor

        proc = logits_processor(processor.tokenizer, model.config.text_config.vocab_size,
                                row_regexes, batch["input_ids"].shape[1], backend,
                                eos_token_id=processor.im_end_id)  # fmt: skip
        extra["logits_processor"] = LogitsProcessorList([proc])
    seq = model.generate(**batch, **gen, **extra)
    n = batch["input_ids"].shape[1]
    ended = [bool((s[n:] == processor.im_end_id).any()) for s in seq]
    return [processor.decode(s[n:]) for s in seq], ended
