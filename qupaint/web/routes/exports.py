"""Exports of the flake database (``/api/export``: the 2DMatGMM-Website ZIP, COCO, CSV)
and the health check (``/api/health``)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from qupaint.web.routes.flakes import parse_layers
from qupaint.web.state import AppState, app_state

__all__ = ["router"]

router = APIRouter()


@router.get("/api/export")
def export_flakes(format: str = Query(..., pattern="^(2dmatgmm|coco|csv|micromanager)$"),
                  layers: str | None = None, min_area_um2: float = Query(0.0, ge=0),
                  thin: bool = False, state: AppState = Depends(app_state)):  # fmt: skip
    from qupaint.scan.export import export

    ls = parse_layers(layers, example="")
    ext = {"2dmatgmm": "zip", "coco": "json", "csv": "csv", "micromanager": "pos"}[format]
    tmp = Path(tempfile.mkdtemp(prefix="qupaint-export-"))
    path = tmp / f"flakes.{ext}"
    filters = {"layers": ls, "min_area_um2": min_area_um2, "thin_only": thin}
    if format == "2dmatgmm" and ls is None:
        filters["thin_only"] = True
    try:
        export(state.db, format, path, **filters)
    except BaseException:  # a failed export leaves no temporary folder behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FileResponse(path, filename=path.name,
                        background=BackgroundTask(shutil.rmtree, tmp, True))  # fmt: skip


@router.get("/api/health")
def health(state: AppState = Depends(app_state)):
    from sqlalchemy import select

    from qupaint.scan.db import Flake
    from qupaint.scan.export import CSV_FIELDS

    with state.Session() as s:
        n = s.scalar(select(Flake.id).order_by(Flake.id.desc()).limit(1))
    return {"ok": True, "last_flake_id": n, "csv_fields": CSV_FIELDS}
