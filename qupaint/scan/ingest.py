"""Scan ingest: every frame of a chip scan through the detector, into the flake database.

:func:`scan_folder` reads the stage positions (:mod:`qupaint.scan.positions`), detects
flakes on each frame (:func:`qupaint.detect.detect`, in worker processes), converts each to
stage coordinates and writes it to the database (:mod:`qupaint.scan.db`).

- **One flake, one row.** Frames overlap, so a flake near a border is seen twice (or four
  times at a corner). A new observation that overlaps a stored flake of another frame (their
  masks, on the chip's pixel grid, touch within ``match_px``) is merged into it: a complete
  observation (not cut by its frame's border) replaces a cut one; of two complete ones the
  larger stays; two cut ones are joined (the union of their masks).
- **Atomic and resumable.** Each frame and all its flakes are written in one transaction,
  in acquisition order, so a scan killed at any point holds whole frames only, and a rerun
  skips the frames already stored: it ends with the database an uninterrupted run gives.
- **Live** (``watch=True``): frames are taken as they appear (a row in ``positions.csv``
  and a complete image file), until ``scan_done`` appears in the folder or nothing new
  came for ``idle_s`` seconds.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import math
import multiprocessing as mp
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qupaint import rle
from qupaint._io import image_bytes, read_rgb
from qupaint.scan.db import Chip, Flake, Image, Scan, frame_corner, open_db, utcnow
from qupaint.scan.positions import Frame, read_positions

__all__ = ["Observation", "read_frame", "scan_folder", "shape_stats"]

DONE_MARKER = "scan_done"


# -- masks ------------------------------------------------------------------------------
def shape_stats(mask: np.ndarray) -> tuple[int, float, float, float, float]:
    """(area px, centroid x, centroid y (pixel centres at +0.5), longest and shortest side
    px of the mask's box along its principal axes)."""
    ys, xs = np.nonzero(mask)
    n = len(xs)
    if n == 0:
        return 0, 0.0, 0.0, 0.0, 0.0
    cx, cy = xs.mean() + 0.5, ys.mean() + 0.5
    if n < 3:
        return n, float(cx), float(cy), 1.0, 1.0
    pts = np.stack([xs - xs.mean(), ys - ys.mean()], 1)
    _, vecs = np.linalg.eigh(pts.T @ pts)
    proj = pts @ vecs
    ext = proj.max(0) - proj.min(0) + 1.0
    return n, float(cx), float(cy), float(ext.max()), float(ext.min())


@dataclass
class Observation:
    """One flake as one frame saw it, on the chip's pixel grid."""

    gx: int  # top-left of the mask's box on the chip grid
    gy: int
    mask: np.ndarray  # [h, w] bool
    layers: int
    category: int
    score: float
    contrast: tuple[float, float, float]
    clipped: bool  # cut by the frame's border
    thumbnail: bytes | None = None

    @property
    def area(self) -> int:
        return int(self.mask.sum())


# -- the worker: one frame --------------------------------------------------------------
_JOB: dict | None = None


def _init(job: dict) -> None:
    global _JOB
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from qupaint.color import Camera

    _JOB = dict(job)
    _JOB["camera"] = Camera.from_dict(job["camera"]) if job["camera"] else None


def read_frame(path) -> np.ndarray:
    """A frame as [H, W, 3] uint8 RGB; an unreadable file is a ValueError naming it."""
    return read_rgb(path)


def _thumb(img: np.ndarray, x0: int, y0: int, w: int, h: int, side: int = 160) -> bytes:
    from PIL import Image as PILImage

    pad = max(8, int(0.3 * max(w, h)))
    H, W = img.shape[:2]
    crop = img[max(0, y0 - pad) : min(H, y0 + h + pad), max(0, x0 - pad) : min(W, x0 + w + pad)]
    im = PILImage.fromarray(crop)
    im.thumbnail((side, side))
    return image_bytes(im, "JPEG", quality=85)


def _detect_frame(path: str) -> dict:
    from qupaint.detect import detect

    job = _JOB
    img = read_frame(path)
    H, W = img.shape[:2]
    dets = detect(img, job["material"], job["oxide_nm"], job["config"], camera=job["camera"],
                  um_per_px=job["um_per_px"], masks=True,
                  oxide_prior_nm=job["oxide_prior_nm"])  # fmt: skip
    out = []
    for d in dets:
        if d["score"] < job["min_score"]:
            continue
        x, y, w, h = (int(round(v)) for v in d["bbox"])
        m = rle.decode(d["segmentation"])[y : y + h, x : x + w]
        if not m.any():
            continue
        out.append({
            "x": x, "y": y, "mask": np.packbits(m), "shape": m.shape,
            "layers": int(d["layers"]), "category": int(d["category_id"]),
            "score": float(d["score"]), "contrast": [float(c) for c in d["contrast"]],
            "clipped": bool(x <= 0 or y <= 0 or x + w >= W or y + h >= H),
            "thumb": _thumb(img, x, y, w, h),
        })  # fmt: skip
    return {"width": W, "height": H, "dets": out}


# -- merging ----------------------------------------------------------------------------
def _obs_of(flake: Flake) -> Observation:
    return Observation(flake.mask_x, flake.mask_y,
                       rle.from_counts(flake.mask_rle, flake.mask_h, flake.mask_w), flake.layers,
                       flake.category, flake.probability,
                       (flake.contrast_r, flake.contrast_g, flake.contrast_b), flake.clipped,
                       flake.thumbnail)  # fmt: skip


def _apply(flake: Flake, o: Observation, um: float) -> None:
    """Write observation ``o``'s shape and readings into the row ``flake``."""
    area, cx, cy, long_px, short_px = shape_stats(o.mask)
    h, w = o.mask.shape
    mm = um / 1000.0
    flake.layers, flake.category, flake.probability = o.layers, o.category, o.score
    flake.contrast_r, flake.contrast_g, flake.contrast_b = (float(c) for c in o.contrast)
    flake.area_um2 = area * um * um
    flake.max_side_um, flake.min_side_um = long_px * um, short_px * um
    flake.aspect = long_px / max(short_px, 1.0)
    flake.x_mm, flake.y_mm = (o.gx + cx) * mm, (o.gy + cy) * mm
    flake.x0_mm, flake.y0_mm = o.gx * mm, o.gy * mm
    flake.x1_mm, flake.y1_mm = (o.gx + w) * mm, (o.gy + h) * mm
    flake.mask_x, flake.mask_y, flake.mask_w, flake.mask_h = o.gx, o.gy, w, h
    flake.mask_rle = rle.counts(o.mask)
    flake.clipped = o.clipped
    flake.thumbnail = o.thumbnail


def _union(a: Observation, b: Observation) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Both masks on their common box: (gx, gy, mask_a, mask_b)."""
    gx, gy = min(a.gx, b.gx), min(a.gy, b.gy)
    w = max(a.gx + a.mask.shape[1], b.gx + b.mask.shape[1]) - gx
    h = max(a.gy + a.mask.shape[0], b.gy + b.mask.shape[0]) - gy
    ma, mb = np.zeros((h, w), bool), np.zeros((h, w), bool)
    ma[a.gy - gy : a.gy - gy + a.mask.shape[0], a.gx - gx : a.gx - gx + a.mask.shape[1]] = a.mask
    mb[b.gy - gy : b.gy - gy + b.mask.shape[0], b.gx - gx : b.gx - gx + b.mask.shape[1]] = b.mask
    return gx, gy, ma, mb


def same_flake(a: Observation, b: Observation, match_px: int, share: float = 0.3) -> bool:
    """Whether two observations from different frames show one flake: their masks, one
    grown by ``match_px`` (the stage's error), share at least ``share`` of the smaller."""
    from scipy import ndimage

    _, _, ma, mb = _union(a, b)
    pad = match_px
    grown = ndimage.maximum_filter(np.pad(ma, pad), size=2 * pad + 1)[pad:-pad, pad:-pad]
    inter = int((grown & mb).sum())
    return inter >= share * min(int(ma.sum()), int(mb.sum()))


def merge(a: Observation, b: Observation) -> Observation:
    """The flake that observations ``a`` and ``b`` of one flake show together."""
    if a.clipped != b.clipped:  # a complete view wins over a cut one
        return b if a.clipped else a
    if not a.clipped:  # two complete views: the larger (ties: the first)
        return b if b.area > a.area else a
    gx, gy, ma, mb = _union(a, b)  # two cut views: their union, read from the larger
    big = b if b.area > a.area else a
    return Observation(gx, gy, ma | mb, big.layers, big.category, big.score, big.contrast,
                       True, big.thumbnail)  # fmt: skip


# -- the scan ---------------------------------------------------------------------------
def _job(material, camera, um_per_px, oxide_nm, oxide_prior_nm, config, min_score) -> dict:
    from qupaint.detect import DetectorConfig

    return {"material": material, "camera": camera.to_dict() if camera is not None else None,
            "um_per_px": float(um_per_px), "oxide_nm": oxide_nm,
            "oxide_prior_nm": oxide_prior_nm, "config": config or DetectorConfig(),
            "min_score": float(min_score)}  # fmt: skip


class _Writer:
    """Writes one frame's detections (and merges) in one transaction."""

    def __init__(self, Session, scan_id: int, chip_id: int, material: str, um: float,
                 match_px: int):  # fmt: skip
        self.Session, self.scan_id, self.chip_id = Session, scan_id, chip_id
        self.material, self.um, self.match_px = material, um, match_px

    def write(self, frame: Frame, res: dict) -> int:
        from sqlalchemy import select

        um = self.um
        W, H = res["width"], res["height"]
        fx, fy = frame_corner(frame.x_mm, frame.y_mm, W, H, um)
        tol = (self.match_px + 1) * um / 1000.0
        with self.Session.begin() as s:
            img = Image(
                scan_id=self.scan_id,
                file=frame.file,
                seq=frame.seq,
                x_mm=frame.x_mm,
                y_mm=frame.y_mm,
                width=W,
                height=H,
                detections=len(res["dets"]),
            )
            s.add(img)
            s.flush()
            for d in res["dets"]:
                h, w = d["shape"]
                m = np.unpackbits(d["mask"], count=h * w).reshape(h, w).astype(bool)
                o = Observation(
                    fx + d["x"],
                    fy + d["y"],
                    m,
                    d["layers"],
                    d["category"],
                    d["score"],
                    tuple(d["contrast"]),
                    d["clipped"],
                    d["thumb"],
                )
                mm = um / 1000.0
                x0, y0 = o.gx * mm - tol, o.gy * mm - tol
                x1, y1 = (o.gx + w) * mm + tol, (o.gy + h) * mm + tol
                near = s.scalars(select(Flake).where(
                    Flake.scan_id == self.scan_id, Flake.image_id != img.id,
                    Flake.x0_mm <= x1, Flake.x1_mm >= x0, Flake.y0_mm <= y1,
                    Flake.y1_mm >= y0).order_by(Flake.id)).all()  # fmt: skip
                same = [f for f in near if same_flake(_obs_of(f), o, self.match_px)]
                if not same:
                    f = Flake(
                        chip_id=self.chip_id,
                        scan_id=self.scan_id,
                        image_id=img.id,
                        material=self.material,
                        views=1,
                        used=False,
                        favourite=False,
                    )
                    _apply(f, o, um)
                    s.add(f)
                    continue
                base = same[0]
                best = _obs_of(base)
                views = base.views
                for other in same[1:]:  # this view joins flakes seen apart so far
                    best = merge(best, _obs_of(other))
                    views += other.views
                    base.used = base.used or other.used
                    base.favourite = base.favourite or other.favourite
                    s.delete(other)
                merged = merge(best, o)
                if merged is o:
                    base.image_id = img.id
                _apply(base, merged, um)
                base.views = views + 1
            s.flush()
        return len(res["dets"])


def _ready(path: Path, sizes: dict) -> bool:
    """A file a microscope may still be writing counts once its size held for one poll."""
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_size == 0:
        return False
    prev = sizes.get(path)
    sizes[path] = st.st_size
    return prev == st.st_size or time.time() - st.st_mtime > 1.0


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
    Session = open_db(db)
    directory = str(folder.resolve())
    chip_name = chip or folder.resolve().name
    from dataclasses import asdict

    from qupaint.detect import DetectorConfig

    config = config or DetectorConfig()
    # what decides the rows: a resumed scan must use the same (the camera included)
    settings = {"material": material, "um_per_px": float(um_per_px), "oxide_nm": oxide_nm,
                "oxide_prior_nm": oxide_prior_nm, "min_score": min_score,
                "match_px": match_px, "detector": asdict(config),
                "camera": camera.to_dict() if camera is not None else None}  # fmt: skip
    from sqlalchemy import select

    with Session.begin() as s:
        c = s.scalars(select(Chip).where(Chip.name == chip_name)).first()
        if c is None:
            c = Chip(
                name=chip_name,
                material=material,
                um_per_px=float(um_per_px),
                oxide_nm=oxide_nm if oxide_nm is not None else oxide_prior_nm,
                camera=json.dumps(camera.to_dict()) if camera is not None else None,
            )
            s.add(c)
            s.flush()
        elif c.material != material or abs(c.um_per_px - um_per_px) > 1e-9:
            raise ValueError(f"chip {chip_name!r} is in the database as {c.material} at "
                             f"{c.um_per_px} um/px; this scan says {material} at {um_per_px}: "
                             "give another --chip name")  # fmt: skip
        sc = s.scalars(select(Scan).where(Scan.chip_id == c.id,
                                          Scan.directory == directory)).first()  # fmt: skip
        if sc is None:
            sc = Scan(chip_id=c.id, directory=directory, user=user, status="running",
                      settings=json.dumps(settings, sort_keys=True))  # fmt: skip
            s.add(sc)
            s.flush()
        elif json.loads(sc.settings) != json.loads(json.dumps(settings)):
            raise ValueError(
                f"{folder} was scanned into this database with other settings "
                f"({sc.settings}); resume with the same ones or use another --db"
            )
        else:
            sc.status = "running"
        scan_id, chip_id = sc.id, c.id
        done = set(s.scalars(select(Image.file).where(Image.scan_id == scan_id)).all())
    writer = _Writer(Session, scan_id, chip_id, material, float(um_per_px), match_px)
    job = _job(material, camera, um_per_px, oxide_nm, oxide_prior_nm, config, min_score)
    frames = read_positions(folder, partial=watch)
    if not watch:
        missing = [f.file for f in frames if not (folder / f.file).is_file()]
        if missing:
            raise ValueError(
                f"{len(missing)} listed frames are missing from {folder} "
                f"(first: {missing[0]}); use --watch for a scan still running"
            )
    t0 = time.perf_counter()
    stats = {"frames": 0, "detections": 0, "skipped": len(done)}
    submitted: set[str] = set(done)
    pending: deque = deque()
    sizes: dict = {}
    last_new = time.time()
    ctx = mp.get_context("forkserver")
    pool = (cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init,
                                   initargs=(job,)) if workers > 1 else None)  # fmt: skip
    if pool is None:
        _init(job)
    try:
        while True:
            if watch:
                frames = read_positions(folder, partial=True)
            new = []
            for f in frames:  # in acquisition order; a frame not yet on disk holds the rest
                if f.file in submitted:
                    continue
                if watch and not _ready(folder / f.file, sizes):
                    break
                new.append(f)
                if len(pending) + len(new) >= 2 * workers:
                    break
            for f in new:
                submitted.add(f.file)
                path = str(folder / f.file)
                fut = pool.submit(_detect_frame, path) if pool else _Done(_detect_frame, path)
                pending.append((f, fut))
            if new:
                last_new = time.time()
            more = any(f.file not in submitted for f in frames)
            while pending and (
                pending[0][1].done() or len(pending) >= 2 * workers or not (watch or more)
            ):
                f, fut = pending.popleft()
                stats["detections"] += writer.write(f, fut.result())
                stats["frames"] += 1
                if progress is not None:
                    progress(len(done) + stats["frames"], None if watch else len(frames))
            if pending:
                cf.wait([pending[0][1]], timeout=poll_s)
                continue
            if not watch:
                if all(f.file in submitted for f in frames):
                    break
                continue
            if (folder / DONE_MARKER).exists():
                frames = read_positions(folder, partial=True)
                if all(f.file in submitted for f in frames):
                    break
            if time.time() - last_new > idle_s:
                break
            time.sleep(poll_s)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    elapsed = time.perf_counter() - t0
    with Session.begin() as s:
        sc = s.get(Scan, scan_id)
        listed = read_positions(folder, partial=True) if watch else frames
        stats["not_processed"] = [f.file for f in listed if f.file not in submitted]
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


class _Done:
    """A finished 'future' for the in-process path."""

    def __init__(self, fn, *args):
        self._value = fn(*args)

    def done(self) -> bool:
        return True

    def result(self):
        return self._value
