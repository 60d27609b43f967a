"""The compact recipe's data: its Synthia render and the QMat-Instruct corpus built from it,
reshaped for a small model (short descriptions, one multi-turn record per image)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from qupaint.recipes.compact.config import COMPACT_TASKS, compact_synthia_config

__all__ = ["image_dialogues", "prepare_data", "short_descriptions", "stage"]


def stage(progress, name: str, done: int, total: int) -> None:
    """Report ``done`` of ``total`` of stage ``name`` to ``progress`` (None: silent)."""
    if progress is not None:
        progress(name, done, total)


def short_descriptions(src, dst) -> int:
    """Copy QMat-Instruct JSONL ``src`` to ``dst`` with each description answer cut to its
    first sentence (the layer class and number: "This is a thick MoS2 flake (139
    layers)."). The physics explanation that follows is most of a description's tokens
    and, at this model's size, drowns the answer tokens of every task in the loss.
    Returns the number of answers cut."""
    import json

    from qupaint._io import atomic_write_bytes

    lines, cut = [], 0
    for line in Path(src).read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        if rec.get("meta", {}).get("task") == "describe":
            turn = rec["conversations"][1]
            head, sep, _ = turn["value"].partition(". ")
            if sep:
                turn["value"], cut = head + ".", cut + 1
        lines.append(json.dumps(rec))
    atomic_write_bytes(Path(dst), ("\n".join(lines) + "\n").encode())
    return cut


def image_dialogues(src, dst, seed: int = 0) -> int:
    """Copy QMat-Instruct JSONL ``src`` (llava) to ``dst`` with the records of each image
    joined into one multi-turn record, its turns in a seeded random order per image. The
    image and its region tokens are then read once for all of its questions: a sample's
    tokens are mostly the image and the prompt (about 270 of 335 in the compact corpus,
    with 25 answer tokens), so this trains on about three times the answers per second.
    Returns the number of records written.

    Examples
    --------
    >>> import json, tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> rec = lambda i, q: {"id": f"{i}-{q}", "image": f"{i}.png", "meta": {"task": q},
    ...     "conversations": [{"from": "human", "value": "<image>\\n" + q + "?"},
    ...                       {"from": "gpt", "value": q + "."}]}
    >>> _ = (d / "a.jsonl").write_text("\\n".join(json.dumps(rec(i, q))
    ...                                 for i in (0, 1) for q in ("count", "verify")))
    >>> image_dialogues(d / "a.jsonl", d / "b.jsonl")
    2
    >>> r = json.loads((d / "b.jsonl").read_text().splitlines()[0])
    >>> sorted(r["meta"]["tasks"]), [t["value"].startswith("<image>") for t in r["conversations"]]
    (['count', 'verify'], [True, False, False, False])
    """
    import json

    from qupaint._io import atomic_write_bytes

    groups: dict = {}
    for line in Path(src).read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            groups.setdefault(rec["image"], []).append(rec)
    rng = np.random.default_rng(seed)
    lines = []
    for image, recs in groups.items():
        turns = []
        for k in rng.permutation(len(recs)):
            conv = recs[k]["conversations"]
            turns += [{"from": "human", "value": conv[0]["value"].replace("<image>\n", "")},
                      *conv[1:]]  # fmt: skip
        turns[0] = {"from": "human", "value": "<image>\n" + turns[0]["value"]}
        meta = {**recs[0].get("meta", {}), "task": "multi",
                "tasks": [r.get("meta", {}).get("task") for r in recs]}  # fmt: skip
        lines.append(json.dumps({"id": f"{recs[0]['id']}-all", "image": image,
                                 "conversations": turns, "meta": meta}))  # fmt: skip
    atomic_write_bytes(Path(dst), ("\n".join(lines) + "\n").encode())
    return len(lines)


def prepare_data(work: Path, materials, images: int, seed: int, workers: int, progress,
                  times: dict) -> tuple[Path, Path]:  # fmt: skip
    """Render (or resume) the compact style's Synthia of ``materials`` in ``work/synthia``
    and build its corpus in ``work/qmat``; returns (image folder, training JSONL: short
    descriptions, one multi-turn record per image)."""
    from qupaint.instruct.builder import build_corpus
    from qupaint.synthia import generate

    t0 = time.perf_counter()
    syn = work / "synthia"
    cfg = replace(compact_synthia_config(), seed=seed, materials=tuple(materials))
    generate(cfg, syn, images, workers=workers,
             progress=lambda d, n: stage(progress, "render", d, n))  # fmt: skip
    times["render_s"] = round(time.perf_counter() - t0, 1)
    t1 = time.perf_counter()
    corpus = work / "qmat"
    if not (corpus / "llava" / "train.jsonl").is_file():
        build_corpus(syn / "annotations.json", syn, corpus, ("llava",), seed, COMPACT_TASKS,
                     workers=workers,
                     progress=lambda d, n: stage(progress, "corpus", d, n))  # fmt: skip
    short = corpus / "llava" / "train_short.jsonl"
    if not short.is_file():
        short_descriptions(corpus / "llava" / "train.jsonl", short)
    train_jsonl = corpus / "llava" / "train_dialogues.jsonl"
    if not train_jsonl.is_file():
        image_dialogues(short, train_jsonl, seed)
    times["corpus_s"] = round(time.perf_counter() - t1, 1)
    return syn, train_jsonl
