"""From a chip scan to a flake database: the layer right above :mod:`qupaint.detect`.

- :func:`scan_folder` (``qupaint scan``): every frame of a stage scan through the detector,
  each flake in stage coordinates, flakes seen in two frames merged, resumable and live;
- :mod:`~qupaint.scan.db`: the database (SQLAlchemy; SQLite by default; Alembic migrations);
- :func:`query_flakes` (``qupaint flakes``): filter and sort the flakes;
- :func:`stitch` (``qupaint map``): frame positions refined by phase correlation, an
  overview with every flake marked and a deep-zoom pyramid;
- :func:`export` (``qupaint export``): the 2DMatGMM-Website upload ZIP, COCO and CSV.
"""

from __future__ import annotations

from qupaint._extras import require

require("scan", "qupaint.scan")  # a missing extra: one line naming it

from qupaint.scan.db import SCHEMA_VERSION, open_db
from qupaint.scan.ingest import ScanOptions, scan_folder
from qupaint.scan.positions import Frame, read_positions

__all__ = ["SCHEMA_VERSION", "Frame", "ScanOptions", "open_db", "read_positions", "scan_folder"]
