"""Registration of a scan: its chip and its scan row in the database, checked against what
is stored (a resumed scan must use the same settings), and the frames already stored."""

from __future__ import annotations

import json

from qupaint.scan.db import Chip, Image, Scan

__all__ = ["register_scan"]


def register_scan(Session, chip_name: str, directory: str, user: str | None, material: str,
                  um_per_px: float, oxide_nm: float | None, oxide_prior_nm: float | None,
                  camera, settings: dict, folder) -> tuple[int, int, set[str]]:  # fmt: skip
    """Find or create the chip ``chip_name`` and the scan of ``directory`` in one
    transaction; returns (scan id, chip id, the files of the frames already stored).

    Raises
    ------
    ValueError
        When the chip is stored with another material or scale, or the scan with other
        ``settings``.
    """
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
        # a frame recorded as unreadable is tried again (its file may have been fixed)
        done = set(s.scalars(select(Image.file).where(Image.scan_id == scan_id,
                                                      Image.error.is_(None))).all())  # fmt: skip
    return scan_id, chip_id, done
