"""QMat-Instruct builder: COCO annotations -> physics-aware instruction JSONL (Sec. 4.3).

Every answer is derived from the annotations (counts, boxes, measured colours) and from the
TMM layer model of the image's material and oxide; nothing is invented. The choice of task
phrasing is drawn from a generator seeded by ``(seed, image_id)``, so the corpus is the same
whatever the order in which images are processed, and the train/val/test split is by image.

The pieces: :mod:`~qupaint.instruct.context` (an image's physics and phrases),
:mod:`~qupaint.instruct.tasks` (the task registry), :mod:`~qupaint.instruct.corpus_io`
(files; the output layout is described there) and this driver, which cuts the images into
chunks and builds them in worker processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qupaint._io import json_dumps, write_json
from qupaint._pool import run_tasks
from qupaint.categories import CATEGORY_NAMES
from qupaint.color import Camera, layer_model, linear_srgb_to_lab
from qupaint.instruct.context import ImageContext, render
from qupaint.instruct.corpus_io import SPLITS, load_coco, open_outputs
from qupaint.instruct.formats import FORMATS, check_format, make_record
from qupaint.instruct.tasks import TASK_FNS, TASKS

__all__ = ["TASKS", "SPLITS", "build_corpus", "merge_corpus", "load_coco", "image_split"]

_COUNTS = ("task", "split", "material", "category", "verify")


def image_split(seed: int, image_id: int, fractions: Sequence[float]) -> str:
    """Deterministic split of one image ("train" / "val" / "test")."""
    u = random.Random(f"split:{seed}:{image_id}").random()
    acc = 0.0
    for name, f in zip(SPLITS, fractions, strict=True):
        acc += f
        if u < acc:
            return name
    return SPLITS[-1]


@dataclass
class _Job:
    by_image: dict
    materials: list
    cfg: dict
    illuminant: str
    camera: object
    max_layers: int
    seed: int
    fractions: np.ndarray
    tasks: tuple
    formats: tuple


_JOB: _Job | None = None


def _set_job(job: _Job) -> None:
    global _JOB
    _JOB = job


def _build_chunk(part: list[dict]) -> tuple[dict, dict]:
    """Records of a chunk of images as JSONL text per (format, split), plus counts."""
    job = _JOB
    counts = {k: Counter() for k in _COUNTS}
    lines: dict[tuple[str, str], list[str]] = {}
    # one CIELAB call per chunk: substrate + predicted layers + flakes of every image
    rows, models = [], []
    for im in part:
        anns = job.by_image.get(im["id"], [])
        mat = im.get("material") or (anns[0]["material"] if anns else job.materials[0])
        oxide = anns[0]["substrate_oxide_nm"] if anns else job.cfg.get("oxide_nm", 285.0)
        lamp = job.illuminant if job.camera is None else None  # a camera brings its lamp
        model = layer_model(mat, float(oxide), lamp, job.max_layers, job.camera)
        gain = np.asarray(im.get("gain", (1.0, 1.0, 1.0)), float)
        cols = [model.colors(gain)]
        if anns:
            cols.append(np.array([a["color_linear_rgb"] for a in anns], float))
        rows.append(np.vstack(cols))
        models.append((mat, model, anns))
    lab = linear_srgb_to_lab(np.vstack(rows))
    off = 0
    for im, rws, (mat, model, anns) in zip(part, rows, models, strict=True):
        ctx = ImageContext(im, anns, lab[off : off + len(rws)], mat, model, job.materials)
        off += len(rws)
        sp = image_split(job.seed, im["id"], job.fractions)
        rng = random.Random(f"{job.seed}:{im['id']}")
        counts["split"][sp] += 1
        counts["material"][mat] += 1
        counts["category"].update(CATEGORY_NAMES[a["category_id"]] for a in anns)
        for task in job.tasks:
            made = TASK_FNS[task](ctx, rng)
            if made is None:
                continue
            turns, meta = made
            counts["task"][task] += 1
            if task == "verify":
                counts["verify"][meta["answer"]] += 1
                counts["verify"]["hard_negative"] += meta["hard_negative"]
            meta = {"task": task, "image_id": im["id"], "split": sp, **meta}
            rid = f"{im['id']}-{task}"
            for fmt in job.formats:
                boxes_only = fmt == "qwen" and task in ("locate", "ground")
                rt = [(render(q, fmt), render(a, fmt, boxes_only)) for q, a in turns]
                rec = make_record(fmt, rid, im["file_name"], rt, meta)
                lines.setdefault((fmt, sp), []).append(json_dumps(rec))
    return {k: "\n".join(v) + "\n" for k, v in lines.items()}, counts


def build_corpus(
    coco_json: str | os.PathLike,
    images_dir: str | os.PathLike | None = None,
    out_path: str | os.PathLike = "qmat_instruct",
    formats: Sequence[str] = ("llava",),
    seed: int = 0,
    tasks: Sequence[str] = TASKS,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    illuminant: str | None = None,
    camera=None,
    chunk: int = 256,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
    shard: tuple[int, int] | None = None,
) -> dict:
    """Build QMat-Instruct from a COCO file (e.g. a Synthia ``annotations.json``).

    Parameters
    ----------
    coco_json : COCO detection file whose images carry ``material`` and annotations carry
        ``layers``, ``substrate_oxide_nm`` and ``color_linear_rgb`` (as Synthia writes).
    images_dir : folder that ``file_name`` is relative to (default: the COCO file's folder);
        records keep ``file_name`` relative and ``summary.json`` stores this folder.
    out_path : output folder (see the module docstring for the layout).
    formats : any of ``"llava"``, ``"internvl"``, ``"qwen"``.
    tasks : subset of :data:`TASKS`; one record per task per image (a task that has no true
        answer for an image, e.g. grounding with no uniquely describable flake, is skipped).
    split : train / val / test fractions, by image.
    illuminant : for the TMM predictions; default from a ``manifest.json`` beside the COCO
        file, else ``"D65"``.
    camera : a :class:`~qupaint.color.Camera` (or its dict) the predictions are seen
        through; default the manifest's (Synthia's ``camera``), else sRGB under
        ``illuminant``. Use the camera the annotations' colours were rendered with.
    chunk, workers : images per work unit and worker processes; the output does not depend
        on either.
    shard : ``(I, N)`` builds only the chunks c with c % N == I into ``out_path/parts/``
        (idempotent: built chunks are kept); :func:`merge_corpus` then writes the corpus,
        byte-identical to a one-machine build with the same ``chunk``.

    Returns
    -------
    dict, the summary also written to ``summary.json``.
    """
    formats = tuple(check_format(f) for f in formats)
    if not formats:
        raise ValueError(f"formats: give at least one of {FORMATS}")
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        raise ValueError(f"tasks: unknown {bad}; choose from {TASKS}")
    fr = np.asarray(split, float)
    if fr.shape != (3,) or np.any(fr < 0) or not np.isclose(fr.sum(), 1.0):
        raise ValueError(f"split: three non-negative fractions summing to 1; got {split}")
    coco = load_coco(coco_json)
    root = Path(coco_json).parent
    images_dir = Path(images_dir) if images_dir is not None else root
    manifest = root / "manifest.json"
    cfg = json.loads(manifest.read_text()).get("config", {}) if manifest.is_file() else {}
    illuminant = illuminant or cfg.get("illuminant", "D65")
    camera = camera if camera is not None else cfg.get("camera")
    if isinstance(camera, dict):
        camera = Camera.from_dict(camera)
    by_image: dict[int, list] = {im["id"]: [] for im in coco["images"]}
    for a in coco["annotations"]:
        for key in ("layers", "substrate_oxide_nm", "color_linear_rgb", "material"):
            if key not in a:
                raise ValueError(
                    f"coco_json: annotation {a.get('id')} has no {key!r}; QMat-Instruct needs "
                    "Synthia-style annotations (material, layers, oxide, measured colour)"
                )
        by_image.setdefault(a["image_id"], []).append(a)
    max_layers = max(
        [int(cfg.get("max_layers", 30))] + [int(a["layers"]) for a in coco["annotations"]]
    )
    materials = sorted(
        {a["material"] for a in coco["annotations"]}
        | {im["material"] for im in coco["images"] if "material" in im}
    )
    # TMM tables before any fork, so workers share them (one per material and oxide)
    for mat, oxide in {
        (a["material"], float(a["substrate_oxide_nm"])) for a in coco["annotations"]
    }:
        layer_model(mat, oxide, illuminant if camera is None else None, max_layers, camera)
    if chunk < 1 or workers < 1:
        raise ValueError(f"chunk and workers must be >= 1; got {chunk}, {workers}")
    out_dir = Path(out_path)
    job = _Job(
        by_image, materials, cfg, illuminant, camera, max_layers, seed, fr, tuple(tasks), formats
    )
    images = coco["images"]
    chunks = [images[i : i + chunk] for i in range(0, len(images), chunk)]
    head = {
        "coco_json": str(Path(coco_json).resolve()),
        "images_dir": str(images_dir.resolve()),
        "formats": list(formats),
        "seed": seed,
        "split_fractions": [float(v) for v in fr],
        "illuminant": illuminant,
        "camera": camera.describe() if camera is not None else None,
        "images": len(images),
    }
    if shard is not None:
        return _build_shard(job, chunks, head, out_dir, shard, chunk, tasks, workers, progress)
    counts: dict[str, Counter] = {k: Counter() for k in _COUNTS}
    with contextlib.ExitStack() as stack:
        files = open_outputs(stack, out_dir, formats)
        # forkserver, not fork: the layer tables above ran the OpenMP kernels in this
        # process, and a forked child hangs in its first parallel region (libgomp is not
        # fork-safe; seen with --workers 2 on realistic Synthia). In order, so the output
        # does not depend on the worker count.
        results = run_tasks(_build_chunk, chunks, workers, _set_job, (job,),
                            preload=("qupaint.instruct.builder",))  # fmt: skip
        done = 0
        for part, (lines, cnt) in zip(chunks, results, strict=True):
            for key, block in lines.items():
                files[key].write(block)
            for k, c in cnt.items():
                counts[k].update(c)
            done += len(part)
            if progress:
                progress(done, len(images))
    return _write_summary(out_dir, head, counts)


def _write_summary(out_dir: Path, head: dict, counts: dict) -> dict:
    summary = {
        **head,
        "records_per_format": sum(counts["task"].values()),
        "per_task": dict(counts["task"]),
        "per_split_images": dict(counts["split"]),
        "per_material_images": dict(counts["material"]),
        "per_category_annotations": dict(counts["category"]),
        "verification": dict(counts["verify"]),
    }
    write_json(out_dir / "summary.json", summary)
    return summary


def _build_shard(job, chunks, head, out_dir, shard, chunk, tasks, workers, progress) -> dict:
    """Build the chunks c with c % N == I into ``out_dir/parts/`` (one JSON per chunk, the
    "done" mark); :func:`merge_corpus` assembles the corpus once every chunk is done."""
    from qupaint._io import atomic_write_bytes, pin_json

    i, n = shard
    if not 0 <= i < n:
        raise ValueError(f"shard: need 0 <= I < N; got {i}/{n}")
    parts = out_dir / "parts"
    plan = {"head": head, "chunks": len(chunks), "chunk": chunk, "tasks": list(tasks)}
    if pin_json(parts / "plan.json", plan) is not None:
        raise ValueError(
            f"{out_dir} holds a corpus built with other settings; use a new --out folder "
            "(or the same settings to resume)"
        )
    ours = range(i, len(chunks), n)
    mine = [c for c in ours if not (parts / f"chunk_{c:05d}.json").exists()]
    done = len(ours) - len(mine)
    results = run_tasks(_build_chunk, [chunks[c] for c in mine], workers, _set_job, (job,),
                        preload=("qupaint.instruct.builder",))  # fmt: skip
    for c, (lines, cnt) in zip(mine, results, strict=True):
        rec = {"lines": [[f, sp, block] for (f, sp), block in lines.items()],
               "counts": {k: dict(v) for k, v in cnt.items()}}  # fmt: skip
        atomic_write_bytes(parts / f"chunk_{c:05d}.json", json_dumps(rec).encode())
        done += 1
        if progress:
            progress(done, len(ours))
    return {"shard": f"{i}/{n}", "chunks_done": done, "chunks": len(ours),
            "chunks_total": len(chunks)}  # fmt: skip


def merge_corpus(out_path: str | os.PathLike) -> dict:
    """Assemble a corpus built with ``build_corpus(..., shard=(I, N))`` for every I: the
    JSONL files and ``summary.json``, byte-identical to a one-machine build. Raises
    ``ValueError`` naming the chunks not yet built."""
    from qupaint._io import json_loads

    out_dir = Path(out_path)
    parts = out_dir / "parts"
    if not (parts / "plan.json").exists():
        raise ValueError(f"{out_dir}: no parts/plan.json; build it with --shard I/N first")
    plan = json_loads((parts / "plan.json").read_bytes())
    missing = [c for c in range(plan["chunks"]) if not (parts / f"chunk_{c:05d}.json").exists()]
    if missing:
        raise ValueError(
            f"{out_dir}: {len(missing)} of {plan['chunks']} chunks are not built "
            f"({', '.join(map(str, missing[:10]))}); run their --shard I/N again, then merge"
        )
    counts: dict[str, Counter] = {k: Counter() for k in _COUNTS}
    with contextlib.ExitStack() as stack:
        files = open_outputs(stack, out_dir, plan["head"]["formats"])
        for c in range(plan["chunks"]):
            rec = json_loads((parts / f"chunk_{c:05d}.json").read_bytes())
            for fmt, sp, block in rec["lines"]:
                files[(fmt, sp)].write(block)
            for k, v in rec["counts"].items():
                counts[k].update(v)
    return _write_summary(out_dir, plan["head"], counts)
