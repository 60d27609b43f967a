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

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from qupaint.scan.db import Flake, Scan, open_db, utcnow
from qupaint.scan.register import register_scan
from qupaint.scan.schedule import DONE_MARKER, FrameScheduler
from qupaint.scan.writer import FrameWriter

__all__ = ["DONE_MARKER", "ScanOptions", "scan_folder"]


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


@dataclass(frozen=True)
class ScanOptions:
    """How a scan runs and stores, beside what the detector sees (its
    :class:`~qupaint.detect.DetectorSettings`).

    Parameters
    ----------
    chip : str, optional
        The chip's name in the database (default: the folder's).
    user : str, optional
        Who scanned (stored with the scan).
    workers : int
        Worker processes, >= 1.
    min_score : float
        Detections scoring below this are not stored, 0-1.
    match_px : int
        Frames' stage error (px) within which two views of one flake are merged, >= 0.
    watch : bool
        Take frames as they appear, until ``scan_done`` appears or ``idle_s`` passes.
    idle_s, poll_s : float
        A live scan's idle limit and polling interval (s).
    """

    chip: str | None = None
    user: str | None = None
    workers: int = 2
    min_score: float = 0.0
    match_px: int = 8
    watch: bool = False
    idle_s: float = 60.0
    poll_s: float = 0.2

    def __post_init__(self):
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1; got {self.workers}")
        if self.match_px < 0:
            raise ValueError(f"match_px must be >= 0; got {self.match_px}")
        if not 0 <= self.min_score <= 1:
            raise ValueError(f"min_score must be in [0, 1]; got {self.min_score}")


def scan_folder(folder: str | Path, db: str | Path, material: str, settings=None,
                options: ScanOptions | None = None, progress=None, **option_fields) -> dict:
    """Detect every frame of the scan in ``folder`` into the database ``db`` (a path or a
    SQLAlchemy URL); see the module doc. ``folder`` may also be one OME-TIFF file (its
    series are the frames; :mod:`qupaint.scan.ome`). ``settings``
    (:meth:`DetectorSettings.from_microscope <qupaint.detect.DetectorSettings.from_microscope>`)
    take their camera and scale, when they have none, from the folder's ``chip.json`` (a
    virtual chip), whose oxide is then the prior. ``options`` (:class:`ScanOptions`, or its
    fields as keywords) say how the scan runs. ``progress(done, total)`` is called after
    each frame. Returns a summary."""
    from dataclasses import replace

    from qupaint.color import Microscope
    from qupaint.detect import DetectorSettings
    from qupaint.detect.job import DetectJob
    from qupaint.optics import get_material
    from qupaint.scan.ome import list_ome, read_frame
    from qupaint.scan.positions import scan_layout

    opts = replace(options or ScanOptions(), **option_fields)
    source = Path(folder)
    folder = source.parent if source.is_file() else source
    material = get_material(material).name
    settings = DetectorSettings.of(settings)
    ome = None  # an OME-TIFF scan: its problems are reported, its pixel size is the default
    if scan_layout(source) == "ome":
        ome = list_ome(source)
        if not ome.frames:
            raise ValueError(f"{source}: no OME-TIFF series with a stage position ("
                             + "; ".join(ome.problems[:3]) + ")")  # fmt: skip
    # a virtual chip's chip.json states its microscope (camera, oxide, scale)
    chip_json = folder / "chip.json"
    mic = Microscope.load(chip_json) if chip_json.is_file() else Microscope()
    fill = {}
    if settings.camera is None and mic.camera is not None:
        fill["camera"] = mic.camera
    if settings.um_per_px is None and ome is not None and ome.um_per_px is not None:
        fill["um_per_px"] = ome.um_per_px
    elif settings.um_per_px is None and mic.um_per_px is not None:
        fill["um_per_px"] = mic.um_per_px
    if settings.oxide_prior_nm is None and settings.oxide_nm is None and mic.oxide_nm is not None:
        fill["oxide_prior_nm"] = mic.oxide_nm
    settings = settings.replace(**fill)
    camera, um_per_px = settings.camera, settings.um_per_px
    if um_per_px is None:
        raise ValueError("um_per_px: give the image scale (--um-per-px, or a --camera file "
                         "that states um_per_px); stage coordinates need it")  # fmt: skip
    oxide_nm, oxide_prior_nm = settings.oxide_nm, settings.oxide_prior_nm
    lock = _writer_lock(db)  # held until this function returns (or the process dies)
    Session = scan_id = None
    try:
        Session = open_db(db)
        directory = str(folder.resolve())
        chip_name = opts.chip or (source.name.split(".")[0] if source.is_file()
                                  else folder.resolve().name)  # fmt: skip
        # what decides the rows: a resumed scan must use the same (the camera included)
        recorded = {"material": material, "um_per_px": float(um_per_px), "oxide_nm": oxide_nm,
                    "oxide_prior_nm": oxide_prior_nm, "min_score": opts.min_score,
                    "match_px": opts.match_px, "detector": asdict(settings.config),
                    "camera": camera.to_dict() if camera is not None else None}  # fmt: skip
        scan_id, chip_id, done = register_scan(Session, chip_name, directory, opts.user,
                                               material, um_per_px, oxide_nm, oxide_prior_nm,
                                               camera, recorded, folder)  # fmt: skip
        writer = FrameWriter(Session, scan_id, chip_id, material, float(um_per_px),
                             opts.match_px)  # fmt: skip
        job = DetectJob(material, settings, opts.min_score, masks="window",
                        reader=read_frame if ome is not None else None)  # fmt: skip
        frames = FrameScheduler(folder, job, done, opts.workers, opts.watch, opts.idle_s,
                                opts.poll_s, source=source)  # fmt: skip
        t0 = time.perf_counter()
        stats = {"frames": 0, "detections": 0, "skipped": len(done), "unreadable": [],
                 "problems": list(ome.problems) if ome is not None else []}  # fmt: skip
        for frame, result in frames:
            stats["detections"] += writer.write(frame, result)
            stats["frames"] += 1
            if result.get("error"):
                stats["unreadable"].append({"file": frame.file, "error": result["error"]})
            if progress is not None:
                progress(len(done) + stats["frames"], None if opts.watch else len(frames.frames))
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
