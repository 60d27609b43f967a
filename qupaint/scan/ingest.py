"""Scan ingest: every frame of a chip scan through the detector, into the flake database.

:func:`scan_folder` reads the stage positions (:mod:`qupaint.scan.positions`), registers
the chip and the scan (:mod:`qupaint.scan.register`), detects flakes on each frame in worker
processes (:mod:`qupaint.scan.schedule`), and writes each frame's flakes in stage
coordinates (:mod:`qupaint.scan.writer`), one flake one row (:mod:`qupaint.scan.merge`).

- **Atomic and resumable.** Each frame and all its flakes are written in one transaction,
  in acquisition order, so a scan killed at any point holds whole frames only, and a rerun
  skips the frames already stored: it ends with the database an uninterrupted run gives.
- **Live** (``watch=True``): frames are taken as they appear, until ``scan_done`` appears
  in the folder or nothing new came for ``idle_s`` seconds.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

from qupaint.scan.db import Flake, Scan, open_db, utcnow
from qupaint.scan.register import register_scan
from qupaint.scan.schedule import DONE_MARKER, FrameScheduler, detector_job
from qupaint.scan.writer import FrameWriter

__all__ = ["DONE_MARKER", "scan_folder"]


def _writer_lock(db):
    """An exclusive lock on a SQLite database's ``<file>.lock`` for the scan writing to it,
    or None (another database, or no ``fcntl``): a second ``qupaint scan`` on the same file
    is refused in one line. The operating system releases it when the process ends, so a
    killed scan leaves no stale lock."""
    from qupaint.scan.db import database_url

    url = database_url(db)
    if not url.startswith("sqlite:///"):
        return None
    try:
        import fcntl
    except ImportError:  # not POSIX
        return None
    path = Path(url[len("sqlite:///") :])
    if not path.parent.is_dir():
        return None  # open_db names the missing folder
    fh = open(path.with_name(path.name + ".lock"), "a")  # noqa: SIM115 - held open on purpose
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise ValueError(f"db: another qupaint scan is writing to {path}; wait for it to "
                         "finish, or give another --db") from None
    return fh


def scan_folder(
    folder: str | Path,
    db: str | Path,
    material: str,
    camera=None,
    um_per_px: float | None = None,
    oxide_nm: float | None = None,
    oxide_prior_nm: float | None = None,
    config=None,
    chip: str | None = None,
    user: str | None = None,
    workers: int = 2,
    min_score: float = 0.0,
    match_px: int = 8,
    watch: bool = False,
    idle_s: float = 60.0,
    poll_s: float = 0.2,
    progress=None,
) -> dict:
    """Detect every frame of the scan in ``folder`` into the database ``db`` (a path or a
    SQLAlchemy URL); see the module doc. ``camera`` (a :class:`~qupaint.color.Camera`) and
    ``um_per_px`` default to the folder's ``chip.json`` (a virtual chip) when it has one.
    ``progress(done, total)`` is called after each frame. Returns a summary."""
    from qupaint.color import Microscope
    from qupaint.detect import DetectorConfig
    from qupaint.optics import get_material

    folder = Path(folder)
    material = get_material(material).name
    # a virtual chip's chip.json states its microscope (camera, oxide, scale)
    chip_json = folder / "chip.json"
    mic = Microscope.load(chip_json) if chip_json.is_file() else Microscope()
    if camera is None:
        camera = mic.camera
    if um_per_px is None:
        um_per_px = mic.um_per_px
    if um_per_px is None or not (math.isfinite(um_per_px) and um_per_px > 0):
        raise ValueError("um_per_px: give the image scale (--um-per-px, or a --camera file "
                         "that states um_per_px); stage coordinates need it")  # fmt: skip
    if oxide_prior_nm is None and mic.oxide_nm is not None and oxide_nm is None:
        oxide_prior_nm = mic.oxide_nm
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")
    if match_px < 0:
        raise ValueError(f"match_px must be >= 0; got {match_px}")
    lock = _writer_lock(db)  # held until this function returns (or the process dies)
    Session = scan_id = None
    try:
        Session = open_db(db)
        directory = str(folder.resolve())
        chip_name = chip or folder.resolve().name
        config = config or DetectorConfig()
        # what decides the rows: a resumed scan must use the same (the camera included)
        settings = {"material": material, "um_per_px": float(um_per_px), "oxide_nm": oxide_nm,
                    "oxide_prior_nm": oxide_prior_nm, "min_score": min_score,
                    "match_px": match_px, "detector": asdict(config),
                    "camera": camera.to_dict() if camera is not None else None}  # fmt: skip
        scan_id, chip_id, done = register_scan(Session, chip_name, directory, user, material,
                                               um_per_px, oxide_nm, oxide_prior_nm, camera,
                                               settings, folder)  # fmt: skip
        writer = FrameWriter(Session, scan_id, chip_id, material, float(um_per_px), match_px)
        job = detector_job(material, camera, um_per_px, oxide_nm, oxide_prior_nm, config, min_score)
        frames = FrameScheduler(folder, job, done, workers, watch, idle_s, poll_s)
        t0 = time.perf_counter()
        stats = {"frames": 0, "detections": 0, "skipped": len(done), "unreadable": []}
        for frame, result in frames:
            stats["detections"] += writer.write(frame, result)
            stats["frames"] += 1
            if result.get("error"):
                stats["unreadable"].append({"file": frame.file, "error": result["error"]})
            if progress is not None:
                progress(len(done) + stats["frames"], None if watch else len(frames.frames))
        elapsed = time.perf_counter() - t0
        with Session.begin() as s:
            sc = s.get(Scan, scan_id)
            stats["not_processed"] = frames.not_processed()
            sc.status = "done" if not stats["not_processed"] else "incomplete"
            sc.finished = utcnow()
            n_flakes = s.query(Flake).filter(Flake.scan_id == scan_id).count()
        stats.update(
            {
                "flakes": n_flakes,
                "seconds": round(elapsed, 3),
                "scan_id": scan_id,
                "frames_per_s": round(stats["frames"] / elapsed, 3) if elapsed > 0 else None,
            }
        )
        Session.kw["bind"].dispose()
        return stats
    except BaseException as exc:  # the scan says how it ended; a rerun resumes it
        if scan_id is not None:
            with Session.begin() as s:
                sc = s.get(Scan, scan_id)
                sc.status = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
                sc.finished = utcnow()
        raise
    finally:
        if lock is not None:
            lock.close()
