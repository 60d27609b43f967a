"""The chip map: the deep-zoom pyramid of a ``qupaint map --dzi`` folder and a marker per
flake (``/api/map``)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Query

from qupaint.web.state import AppState, app_state

__all__ = ["router"]

router = APIRouter()


@router.get("/api/map")
def chip_map(min_area_um2: float = Query(0.0, ge=0), thin: bool = True,
             limit: int = Query(5000, ge=1, le=100000),
             state: AppState = Depends(app_state)):  # fmt: skip
    map_dir = state.map_dir
    if map_dir is None or not (map_dir / "layout.json").is_file():
        return {
            "dzi": None,
            "markers": [],
            "hint": "run `qupaint map --db DB --out DIR --dzi` and serve with --map DIR",
        }
    from qupaint.scan.export import flake_page
    from qupaint.scan.stitch import mosaic_xy

    layout = json.loads((map_dir / "layout.json").read_text())
    frames = layout["frames"]

    def one(s):
        _, rows = flake_page(s, sort="area", limit=limit, thin_only=thin,
                             min_area_um2=min_area_um2)  # fmt: skip
        return rows

    rows = state.run(one)
    at = mosaic_xy([(r["x_mm"], r["y_mm"]) for r in rows],
                   [(f["x_mm"], f["y_mm"]) for f in frames],
                   [(f["fit_x_mm"], f["fit_y_mm"]) for f in frames], layout["origin_mm"],
                   layout["um_per_px"])  # fmt: skip
    markers = [{"id": r["id"], "x": float(x), "y": float(y), "layers": r["layers"],
                "area_um2": r["area_um2"], "r": 0.5 * r["max_side_um"] / layout["um_per_px"]}
               for r, (x, y) in zip(rows, at, strict=True)]  # fmt: skip
    dzi = "/map/mosaic.dzi" if (map_dir / "mosaic.dzi").is_file() else None
    return {"dzi": dzi, "width": layout["mosaic_px"][0], "height": layout["mosaic_px"][1],
            "um_per_px": layout["um_per_px"], "markers": markers}  # fmt: skip
