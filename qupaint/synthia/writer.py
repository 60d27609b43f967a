"""Sharded, resumable, atomic writing of Synthia data sets (images + COCO JSON).

Layout of ``out_dir``::

    images/00000000.png ...           one PNG per image (index-named)
    shards/shard_00000.json ...       COCO images + annotations of one shard (the "done" mark)
    annotations.json                  merged COCO (written last)
    manifest.json                     config, version, counts

Every file is written to a temporary name in the same folder and renamed into place, so a
killed run never leaves a truncated file under a final name. A shard counts as done once
its JSON exists; re-running the same command skips done shards and re-renders the rest,
and since ``Synthia.sample`` is a pure function of (seed, index), the output is
byte-identical whatever the interruption or worker count.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from qupaint._io import atomic_write_bytes
from qupaint._pool import run_tasks
from qupaint.categories import CATEGORIES
from qupaint.synthia.render import Synthia, SynthiaConfig

__all__ = ["generate"]

_WORKER: Synthia | None = None


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n").encode()


def _png_bytes(image: np.ndarray) -> bytes:
    from qupaint.synthia.png import encode_png

    return encode_png(image)


def _init_worker(config_dict: dict) -> None:
    global _WORKER
    import torch

    from qupaint import _C

    torch.set_num_threads(1)  # one process per core; no oversubscription
    _C.set_num_threads(1)
    _WORKER = Synthia(SynthiaConfig(**_tuples(config_dict)))


def _tuples(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def _render_shard(args: tuple[str, int, int, int]) -> tuple[int, dict]:
    out_dir, shard, start, stop = args
    root = Path(out_dir)
    images, anns, stats = [], [], {"requested": 0, "placed": 0}
    for index in range(start, stop):
        s = _WORKER.sample(index)
        name = f"images/{index:08d}.png"
        atomic_write_bytes(root / name, _png_bytes(s.image))
        h, w = s.image.shape[:2]
        images.append(
            {
                "id": index,
                "file_name": name,
                "height": h,
                "width": w,
                "material": s.info["material"],
                "gain": s.info["gain"],
            }
        )
        for k, a in enumerate(s.annotations):
            # ids start at 1: COCO evaluators use annotation id 0 to mean "unmatched"
            anns.append({**a, "id": index * 1000 + k + 1, "image_id": index})
        stats["requested"] += s.info["flakes_requested"]
        stats["placed"] += s.info["flakes_placed"]
    atomic_write_bytes(
        root / "shards" / f"shard_{shard:05d}.json",
        _json_bytes({"images": images, "annotations": anns, "stats": stats}),
    )
    return shard, stats


def generate(
    config: SynthiaConfig,
    out_dir: str | Path,
    num_images: int,
    shard_size: int = 500,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Render ``num_images`` images into ``out_dir``; resumes an interrupted run.

    Returns the manifest. ``progress(done_shards, total_shards)`` is called as shards finish.

    Raises
    ------
    ValueError
        Bad counts, or ``out_dir`` already holds a data set made with another config.
    OSError
        Disk full (the message says how to resume).
    """
    from qupaint import __version__

    if num_images < 0 or shard_size < 1 or workers < 1:
        raise ValueError("need num_images >= 0, shard_size >= 1 and workers >= 1")
    config.validate()
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    cfg = config.to_dict()
    state = root / "shards" / "config.json"
    if state.exists():
        old = json.loads(state.read_text())
        if old != json.loads(_json_bytes(cfg)):
            raise ValueError(
                f"{root} holds a data set made with a different configuration; "
                "use a new --out folder (or the same settings to resume)"
            )
    else:
        atomic_write_bytes(state, _json_bytes(cfg))
    for stray in root.rglob(".*.tmp"):  # leftovers of a killed run
        stray.unlink()
    n_shards = (num_images + shard_size - 1) // shard_size
    todo = [
        (str(root), s, s * shard_size, min((s + 1) * shard_size, num_images))
        for s in range(n_shards)
        if not (root / "shards" / f"shard_{s:05d}.json").exists()
    ]
    done = n_shards - len(todo)
    if progress:
        progress(done, n_shards)
    # import torch & co. once in the forkserver; workers fork it
    for _ in run_tasks(_render_shard, todo, workers, _init_worker, (cfg,), ordered=False,
                       preload=["qupaint.synthia.writer"]):  # fmt: skip
        done += 1
        if progress:
            progress(done, n_shards)
    images, anns, req, placed = [], [], 0, 0
    for s in range(n_shards):
        shard = json.loads((root / "shards" / f"shard_{s:05d}.json").read_text())
        images += shard["images"]
        anns += shard["annotations"]
        req += shard["stats"]["requested"]
        placed += shard["stats"]["placed"]
    coco = {
        "info": {
            "description": "Synthia synthetic 2D-flake images (qupaint)",
            "version": __version__,
        },
        "images": images,
        "annotations": anns,
        "categories": CATEGORIES,
    }
    atomic_write_bytes(root / "annotations.json", _json_bytes(coco))
    per_cat = {c["name"]: sum(a["category_id"] == c["id"] for a in anns) for c in CATEGORIES}
    manifest = {
        "version": __version__,
        "config": cfg,
        "num_images": num_images,
        "shard_size": shard_size,
        "annotations": len(anns),
        "per_category": per_cat,
        "flakes_requested": req,
        "flakes_placed": placed,
    }
    atomic_write_bytes(root / "manifest.json", _json_bytes(manifest))
    return manifest
