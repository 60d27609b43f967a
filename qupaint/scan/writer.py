"""The scan's writer: each frame and all its flakes in one transaction, in acquisition order,
a flake seen by an earlier frame merged into its row (:mod:`qupaint.scan.merge`). A scan
killed at any point holds whole frames only."""

from __future__ import annotations

import numpy as np

from qupaint.scan.db import Flake, Image, frame_corner
from qupaint.scan.merge import Observation, apply_to, merge, observation_of, same_flake
from qupaint.scan.positions import Frame

__all__ = ["FrameWriter"]


class FrameWriter:
    """Writes one frame's detections (and merges them with the flakes of earlier frames) in
    one transaction."""

    def __init__(self, Session, scan_id: int, chip_id: int, material: str, um: float,
                 match_px: int):  # fmt: skip
        self.Session, self.scan_id, self.chip_id = Session, scan_id, chip_id
        self.material, self.um, self.match_px = material, um, match_px

    def write(self, frame: Frame, res: dict) -> int:
        from sqlalchemy import delete, select

        um = self.um
        W, H = res["width"], res["height"]
        fx, fy = frame_corner(frame.x_mm, frame.y_mm, W, H, um)
        tol = (self.match_px + 1) * um / 1000.0
        with self.Session.begin() as s:
            # a frame tried again replaces the record of its earlier failure
            s.execute(delete(Image).where(Image.scan_id == self.scan_id,
                                          Image.file == frame.file, Image.error.is_not(None)))
            img = Image(
                scan_id=self.scan_id,
                file=frame.file,
                seq=frame.seq,
                x_mm=frame.x_mm,
                y_mm=frame.y_mm,
                width=W,
                height=H,
                detections=len(res["dets"]),
                error=res.get("error"),
            )
            s.add(img)
            s.flush()
            # the flakes this frame can touch, read once (one query a detection cost 2 ms):
            # every detection lies in the frame, so any flake near one is near the frame
            mm = um / 1000.0
            near_frame = s.scalars(select(Flake).where(
                Flake.scan_id == self.scan_id, Flake.image_id != img.id,
                Flake.x0_mm <= (fx + W) * mm + tol, Flake.x1_mm >= fx * mm - tol,
                Flake.y0_mm <= (fy + H) * mm + tol, Flake.y1_mm >= fy * mm - tol,
            ).order_by(Flake.id)).all() if res["dets"] else []  # fmt: skip
            gone: set[int] = set()  # flakes this frame merged away
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
                x0, y0 = o.gx * mm - tol, o.gy * mm - tol
                x1, y1 = (o.gx + w) * mm + tol, (o.gy + h) * mm + tol
                # as a query per detection would find them now: not merged away, not yet
                # seen in this frame (a flake this frame joined now carries its image id)
                near = [f for f in near_frame if f.id not in gone and f.image_id != img.id
                        and f.x0_mm <= x1 and f.x1_mm >= x0 and f.y0_mm <= y1
                        and f.y1_mm >= y0]  # fmt: skip
                same = [f for f in near if same_flake(observation_of(f), o, self.match_px)]
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
                    apply_to(f, o, um)
                    s.add(f)
                    continue
                base = same[0]
                best = observation_of(base)
                views = base.views
                for other in same[1:]:  # this view joins flakes seen apart so far
                    best = merge(best, observation_of(other))
                    views += other.views
                    base.used = base.used or other.used
                    base.favourite = base.favourite or other.favourite
                    s.delete(other)
                    gone.add(other.id)
                merged = merge(best, o)
                if merged is o:
                    base.image_id = img.id
                apply_to(base, merged, um)
                base.views = views + 1
            s.flush()
        return len(res["dets"])
