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
                merged = merge(best, o)
                if merged is o:
                    base.image_id = img.id
                apply_to(base, merged, um)
                base.views = views + 1
            s.flush()
        return len(res["dets"])
