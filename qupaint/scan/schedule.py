"""The frame scheduler of a scan: which frames to detect next, in acquisition order, in
worker processes, and when a scan is over (:class:`FrameScheduler`).

A batch scan takes every listed frame. A live scan (``watch=True``) takes frames as they
appear (a row in ``positions.csv`` and a complete image file: :func:`frame_ready`), until
``scan_done`` appears in the folder or nothing new came for ``idle_s`` seconds. Results
come out in acquisition order, so the writer stores whole frames in that order.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from qupaint._io import image_bytes
from qupaint._pool import watched_pool
from qupaint.scan.ome import split_key
from qupaint.scan.positions import Frame, frame_path, read_positions

__all__ = ["DONE_MARKER", "FrameScheduler", "detect_frame", "frame_ready", "init_worker"]

#: the file a microscope writes into the scan folder when the scan is over
DONE_MARKER = "scan_done"

# -- the worker: one frame --------------------------------------------------------------
_JOB = None


def init_worker(job) -> None:
    """Set a worker process up for :func:`detect_frame` with the scan's
    :class:`~qupaint.detect.job.DetectJob`."""
    global _JOB
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _JOB = job


def _thumb(img: np.ndarray, x0: int, y0: int, w: int, h: int, side: int = 160) -> bytes:
    from PIL import Image as PILImage

    pad = max(8, int(0.3 * max(w, h)))
    H, W = img.shape[:2]
    crop = img[max(0, y0 - pad) : min(H, y0 + h + pad), max(0, x0 - pad) : min(W, x0 + w + pad)]
    im = PILImage.fromarray(crop)
    im.thumbnail((side, side))
    return image_bytes(im, "JPEG", quality=85)


def unreadable(reason: str) -> dict:
    """The result of a frame that cannot be read: no pixels, no detections, the reason."""
    return {"width": 0, "height": 0, "dets": [], "error": reason}


def detect_frame(path: str) -> dict:
    """One frame's detections above the minimum score (the worker's
    :class:`~qupaint.detect.job.DetectJob`, the one per-image worker ``qupaint detect``
    shares), each with its mask (bit-packed), its box in the frame, whether the frame's
    border cuts it, and a JPEG thumbnail; a frame that cannot be read gives no detections
    and its ``error``."""
    got = _JOB(path)
    if got.error is not None:  # a truncated or corrupt frame: skipped, with the reason
        return unreadable(got.error)
    img = got.image
    H, W = img.shape[:2]
    out = []
    for d in got.detections:
        x, y, w, h = (int(round(v)) for v in d["bbox"])
        m = d["mask"]  # the box's mask (an image-size RLE cost 7 ms a detection both ways)
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


#: a live scan (``watch``) reads a frame that fails to decode up to this many times ...
READ_TRIES = 3
#: ... this many seconds apart, before it is recorded as unreadable
RETRY_S = 2.0


def frame_ready(path: Path, sizes: dict) -> bool:
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


class FrameScheduler:
    """Detect the frames of ``folder`` not in ``done``, in worker processes, and yield
    ``(frame, result)`` in acquisition order (:func:`detect_frame`'s result).

    At most ``2 * workers`` frames are in flight. After the iteration, ``submitted`` holds
    every frame taken and ``frames`` the last listing of the folder.
    """

    def __init__(self, folder: Path, job, done: set[str], workers: int = 2,
                 watch: bool = False, idle_s: float = 60.0, poll_s: float = 0.2,
                 source: Path | None = None):  # fmt: skip
        self.folder, self.job, self.workers = Path(folder), job, workers
        self.source = Path(source) if source is not None else self.folder  # what is listed
        self.watch, self.idle_s, self.poll_s = watch, idle_s, poll_s
        self.submitted: set[str] = set(done)
        self.frames: list[Frame] = read_positions(self.source, partial=watch)
        if not watch:
            missing = [f.file for f in self.frames
                       if not (self.folder / split_key(f.file)[0]).is_file()]  # fmt: skip
            if missing:
                raise ValueError(
                    f"{len(missing)} listed frames are missing from {self.folder} "
                    f"(first: {missing[0]}); use --watch for a scan still running"
                )

    def __iter__(self) -> Iterator[tuple[Frame, dict]]:
        folder, workers, watch = self.folder, self.workers, self.watch
        submitted = self.submitted
        pending: deque = deque()
        sizes: dict = {}
        tries: dict = {}  # frame -> failed reads (watch)
        wait_until: dict = {}  # frame -> when to read it again
        last_new = time.time()
        # workers that exit when this process is gone (a killed scan leaves none behind)
        pool = watched_pool(workers, init_worker, (self.job,)) if workers > 1 else None
        if pool is None:
            init_worker(self.job)
        try:
            while True:
                if watch:
                    self.frames = read_positions(self.source, partial=True)
                frames = self.frames
                new = []
                for f in frames:  # in acquisition order; a frame not yet on disk holds the rest
                    if f.file in submitted:
                        continue
                    if watch and (time.time() < wait_until.get(f.file, 0.0)
                                  or not frame_ready(folder / split_key(f.file)[0], sizes)):
                        break
                    new.append(f)
                    if len(pending) + len(new) >= 2 * workers:
                        break
                for f in new:
                    submitted.add(f.file)
                    try:
                        path = str(frame_path(folder, f.file))
                    except ValueError as exc:  # recorded as unreadable, never read
                        pending.append((f, _Done(unreadable, str(exc))))
                        continue
                    fut = pool.submit(detect_frame, path) if pool else _Done(detect_frame, path)
                    pending.append((f, fut))
                if new:
                    last_new = time.time()
                more = any(f.file not in submitted for f in frames)
                while pending and (
                    pending[0][1].done() or len(pending) >= 2 * workers or not (watch or more)
                ):
                    f, fut = pending.popleft()
                    res = fut.result()
                    if watch and res.get("error") and tries.get(f.file, 0) < READ_TRIES - 1:
                        # a live scan's frame may be half written: read it again later
                        tries[f.file] = tries.get(f.file, 0) + 1
                        submitted.discard(f.file)
                        sizes.pop(folder / split_key(f.file)[0], None)
                        wait_until[f.file] = time.time() + RETRY_S
                        continue
                    yield f, res
                if pending:
                    cf.wait([pending[0][1]], timeout=self.poll_s)
                    continue
                if not watch:
                    if all(f.file in submitted for f in frames):
                        break
                    continue
                if (folder / DONE_MARKER).exists():
                    self.frames = read_positions(folder, partial=True)
                    if all(f.file in submitted for f in self.frames):
                        break
                if time.time() - last_new > self.idle_s:
                    break
                time.sleep(self.poll_s)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def not_processed(self) -> list[str]:
        """The listed frames never taken (a live scan that stopped early)."""
        listed = read_positions(self.folder, partial=True) if self.watch else self.frames
        return [f.file for f in listed if f.file not in self.submitted]


class _Done:
    """A finished 'future' for the in-process path."""

    def __init__(self, fn, *args):
        self._value = fn(*args)

    def done(self) -> bool:
        return True

    def result(self):
        return self._value
