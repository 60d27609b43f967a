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

from qupaint._io import atomic_write_bytes, pin_json
from qupaint._pool import run_tasks
from qupaint.categories import CATEGORIES
from qupaint.synthia.config import SynthiaConfig
from qupaint.synthia.render import Synthia

__all__ = ["generate", "merge", "parse_shard", "prepare", "render_shard_with", "shard_tasks"]

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


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N: this machine renders the shards s with
    s % N == I."""
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise ValueError(f"shard: use I/N, e.g. 0/4 (got {text!r})") from None
    if not 0 <= i < n:
        raise ValueError(f"shard: need 0 <= I < N; got {i}/{n}")
    return i, n


def _check_state(root: Path, cfg: dict, num_images: int, shard_size: int) -> None:
    """Record (or check) the data set's configuration and plan in ``shards/``: every
    machine and every resume must render the same images."""
    legacy = root / "shards" / "config.json"  # data sets written before plan.json
    state = root / "shards" / "plan.json"
    if not state.exists() and legacy.exists():
        if json.loads(legacy.read_text()) != json.loads(_json_bytes(cfg)):
            raise ValueError(
                f"{root} holds a data set made with a different configuration; use a new "
                "--out folder (or the same settings to resume)"
            )
    old = pin_json(state, {"config": cfg, "num_images": num_images, "shard_size": shard_size})
    if old is not None:
        what = "configuration" if old.get("config") != json.loads(_json_bytes(cfg)) \
            else "number of images or shard size"  # fmt: skip
        raise ValueError(
            f"{root} holds a data set made with a different {what}; use a new --out "
            "folder (or the same settings to resume)"
        )


def shard_tasks(root: Path, num_images: int, shard_size: int, shard=(0, 1)) -> list[tuple]:
    """The (out_dir, shard, start, stop) tasks of this machine's shards not yet done."""
    i, n = shard
    n_shards = (num_images + shard_size - 1) // shard_size
    return [
        (str(root), s, s * shard_size, min((s + 1) * shard_size, num_images))
        for s in range(i, n_shards, n)
        if not (root / "shards" / f"shard_{s:05d}.json").exists()
    ]


def prepare(
    config: SynthiaConfig, out_dir: str | Path, num_images: int, shard_size: int = 500,
    shard: tuple[int, int] = (0, 1),
) -> list[tuple]:  # fmt: skip
    """Check the settings, record them in ``out_dir/shards/plan.json`` (or check them
    against it), clear a killed run's temp files, and return the tasks of ``shard`` not yet
    done: ``(out_dir, shard, start, stop)`` for :func:`render_shard_with`. Any engine (a
    Ray remote function, a batch script) renders these, then :func:`merge` finishes."""
    if num_images < 0 or shard_size < 1:
        raise ValueError("need num_images >= 0 and shard_size >= 1")
    parse_shard(f"{shard[0]}/{shard[1]}")
    config.validate()
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    _check_state(root, config.to_dict(), num_images, shard_size)
    for stray in root.rglob(".*.tmp"):  # leftovers of a killed run
        stray.unlink()
    return shard_tasks(root, num_images, shard_size, shard)


def generate(
    config: SynthiaConfig,
    out_dir: str | Path,
    num_images: int,
    shard_size: int = 500,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
    shard: tuple[int, int] | str | None = None,
    engine: str = "local",
    scheduler: str | None = None,
) -> dict:
    """Render ``num_images`` images into ``out_dir``; resumes an interrupted run.

    ``shard=(I, N)`` (or ``"I/N"``) renders only the shards s with s % N == I and does not
    merge: run every I (any machines, any order, again after a crash), then :func:`merge`.
    ``engine="dask"`` sends the shards to a Dask cluster (``scheduler`` address; None
    starts a local cluster of ``workers`` processes); ``"local"`` uses a process pool.

    Returns the manifest (or, for one shard, ``{"shards_done": ..., "shards": ...}``).
    ``progress(done_shards, total_shards)`` is called as shards finish.

    Raises
    ------
    ValueError
        Bad counts, or ``out_dir`` already holds a data set made with another config.
    OSError
        Disk full (the message says how to resume).
    """
    if num_images < 0 or shard_size < 1 or workers < 1:
        raise ValueError("need num_images >= 0, shard_size >= 1 and workers >= 1")
    if engine not in ("local", "dask"):
        raise ValueError(f"engine must be 'local' or 'dask'; got {engine!r}")
    part = parse_shard(shard) if isinstance(shard, str) else (shard or (0, 1))
    todo = prepare(config, out_dir, num_images, shard_size, part)
    root, cfg = Path(out_dir), config.to_dict()
    n_shards = (num_images + shard_size - 1) // shard_size
    mine = len(range(part[0], n_shards, part[1]))
    done = mine - len(todo)
    if progress:
        progress(done, mine)
    if engine == "dask":
        results = _dask_run(cfg, todo, workers, scheduler)
    else:  # import torch & co. once in the forkserver; workers fork it
        results = run_tasks(_render_shard, todo, workers, _init_worker, (cfg,), ordered=False,
                            preload=["qupaint.synthia.writer"])  # fmt: skip
    for _ in results:
        done += 1
        if progress:
            progress(done, mine)
    if part[1] > 1:
        return {"shard": f"{part[0]}/{part[1]}", "shards_done": done, "shards": mine,
                "shards_total": n_shards}  # fmt: skip
    return merge(root)


def _dask_run(cfg: dict, todo: list, workers: int, scheduler: str | None):
    """Yield as the shards finish on a Dask cluster (one task per shard)."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ValueError(
            "engine='dask' needs dask.distributed: pip install 'qupaint[dask]'"
        ) from None
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True)
        client = Client(cluster)
    try:
        futures = [client.submit(render_shard_with, cfg, t, key=f"synthia-shard-{t[1]}",
                                 pure=False) for t in todo]  # fmt: skip
        for fut in as_completed(futures):
            yield fut.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def render_shard_with(cfg: dict, task: tuple) -> tuple[int, dict]:
    """Render one shard in any process (a Dask or Ray worker, a Slurm task): the
    renderer is built once per process and configuration."""
    global _WORKER_CFG
    key = _json_bytes(cfg)
    if _WORKER is None or _WORKER_CFG != key:
        _init_worker(cfg)
        _WORKER_CFG = key
    return _render_shard(task)


_WORKER_CFG: bytes | None = None


def merge(out_dir: str | Path) -> dict:
    """Write ``annotations.json`` and ``manifest.json`` from a data set's finished shards
    (after ``generate(..., shard=...)`` ran for every shard); byte-identical to a
    one-machine run. Raises ``ValueError`` naming the missing shards."""
    from qupaint import __version__

    root = Path(out_dir)
    state = root / "shards" / "plan.json"
    if not state.exists():
        raise ValueError(f"{root}: no shards/plan.json; render into it with qupaint synthia")
    plan = json.loads(state.read_text())
    cfg, num_images, shard_size = plan["config"], plan["num_images"], plan["shard_size"]
    n_shards = (num_images + shard_size - 1) // shard_size
    missing = [s for s in range(n_shards) if not (root / "shards" / f"shard_{s:05d}.json").exists()]
    if missing:
        head = ", ".join(str(s) for s in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise ValueError(
            f"{root}: {len(missing)} of {n_shards} shards are not done ({head}); run their "
            "--shard I/N again, then merge"
        )
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
