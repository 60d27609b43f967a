"""Batched generation with a QuPAINT model (``qupaint predict``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["generate_answers"]


@torch.no_grad()
def generate_answers(
    model,
    processor,
    images: Sequence,
    questions: Sequence[str],
    batch_size: int = 4,
    temperature: float = 0.2,
    max_new_tokens: int = 512,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    constrain: bool = False,
    tasks: Sequence[str | None] | None = None,
    fmt: str = "llava",
    backend: str = "xgrammar",
) -> list[str]:
    """Answer ``questions[i]`` about ``images[i]`` (paths, PIL images or uint8 arrays).

    Sampling at ``temperature`` (the paper's 0.2); ``temperature=0`` is greedy. Batches are
    left-padded; the model's device and dtype are used.

    ``constrain=True`` holds each answer to its task's format in box dialect ``fmt``
    (:mod:`qupaint.model.constrain`, with ``backend`` xgrammar or lmfe): the task is
    ``tasks[i]`` when given, else recognised from the question; a question of no known task
    (or of ``describe``/``dialogue``) is answered freely.

    A model that reads referred boxes (``config.region_refer``) gets the box of each
    question about one flake (:func:`~qupaint.model.processing.referred_box`, in dialect
    ``fmt``) as ``ref_boxes``.
    """
    if len(images) != len(questions):
        raise ValueError(f"{len(images)} images but {len(questions)} questions")
    if temperature < 0:
        raise ValueError("temperature must be >= 0")
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
    regexes: list[str | None] = [None] * len(questions)
    if constrain:
        from qupaint.instruct.formats import FORMATS
        from qupaint.model.constrain import CONSTRAINED_TASKS, answer_regex, task_of_question

        if fmt not in FORMATS:
            raise ValueError(f"fmt: constrained answers are written in {FORMATS}; got {fmt!r}")

        for i, q in enumerate(questions):
            t = tasks[i] if tasks is not None else task_of_question(q)
            regexes[i] = answer_regex(t, fmt) if t in CONSTRAINED_TASKS else None
    refs = _ref_boxes(images, questions, fmt) if getattr(model.config, "region_refer", False) \
        else None
    out: list[str] = []
    torch.manual_seed(seed)
    for start in range(0, len(images), batch_size):
        batch = processor.prompt(images[start : start + batch_size],
                                 questions[start : start + batch_size])  # fmt: skip
        batch = {k: v.to(device) for k, v in batch.items()}
        batch["pixel_values"] = batch["pixel_values"].to(dtype)
        extra = {}
        rows = regexes[start : start + batch_size]
        if any(r is not None for r in rows):
            from transformers import LogitsProcessorList

            from qupaint.model.constrain import logits_processor

            proc = logits_processor(processor.tokenizer, model.config.text_config.vocab_size,
                                    rows, batch["input_ids"].shape[1], backend,
                                    eos_token_id=processor.im_end_id)  # fmt: skip
            extra["logits_processor"] = LogitsProcessorList([proc])
        if refs is not None:
            extra["ref_boxes"] = refs[start : start + batch_size].to(device)
        seq = model.generate(**batch, **gen, **extra)
        n = batch["input_ids"].shape[1]
        out += [processor.decode(s[n:]) for s in seq]
        if progress:
            progress(len(out), len(images))
    return out


def _ref_boxes(images: Sequence, questions: Sequence[str], fmt: str) -> torch.Tensor:
    """[N, 4] boxes (fractions) the questions refer to, NaN rows for the others."""
    import numpy as np
    from PIL import Image

    from qupaint.model.constrain import task_of_question
    from qupaint.model.processing import referred_box

    out = torch.full((len(questions), 4), float("nan"))
    for i, (img, q) in enumerate(zip(images, questions, strict=True)):
        if task_of_question(q) != "describe":
            continue
        if isinstance(img, np.ndarray):
            size = (img.shape[1], img.shape[0])
        elif isinstance(img, Image.Image):
            size = img.size
        else:
            with Image.open(img) as im:
                size = im.size
        box = referred_box(q, fmt, size)
        if box is not None:
            out[i] = torch.tensor(box)
    return out
