"""The flakes: the paged, filterable list, one flake's readings and edits, its crop and
thumbnail (``/api/flakes...``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, Field

from qupaint._io import image_bytes
from qupaint.web.state import AppState, app_state, store

__all__ = ["FlakeEdit", "parse_layers", "router"]

router = APIRouter(prefix="/api/flakes")
#: a flake id as the database holds it (a 64-bit integer): a larger one is a 422, not a 500
FlakeId = Annotated[int, PathParam(ge=1, le=2**63 - 1)]


class FlakeEdit(BaseModel):
    """What a user may change on a flake."""

    used: bool | None = None
    favourite: bool | None = None
    note: str | None = Field(default=None, max_length=4000)


def parse_layers(layers: str | None, example: str = ", e.g. 1,2") -> list[int] | None:
    """``"1,2"`` -> ``[1, 2]`` (None for none); anything else, ``",,,"`` included, is a 422."""
    try:
        got = [int(v) for v in layers.split(",") if v.strip()] if layers else None
    except ValueError:
        got = []
    if got is not None and (not got or not all(0 <= n <= 10_000 for n in got)):
        raise HTTPException(422, f"layers: counts separated by commas{example}")
    return got


def _get(s, flake_id: int):
    from qupaint.scan.db import Flake

    f = s.get(Flake, flake_id)
    if f is None:
        raise HTTPException(404, f"no flake {flake_id}")
    return f


def _ladder(state: AppState, chip_id: int) -> dict:
    """The model's contrast of 1-8 layers on a chip's oxide, through its camera (cached per
    chip and app)."""
    from qupaint.color import Camera, channel_contrast
    from qupaint.scan.db import Chip

    cache = state.ladders
    if chip_id in cache:
        return cache[chip_id]
    with state.Session() as s:
        c = s.get(Chip, chip_id)
        cam = Camera.from_dict(json.loads(c.camera)) if c.camera else None
        material, oxide = c.material, c.oxide_nm
    if oxide is None:
        out: dict = {}
    else:
        pred = channel_contrast(material, list(range(1, 9)), oxide, cam,
                                illuminant="A" if cam is None else None)  # fmt: skip
        out = {"oxide_nm": oxide, "layers": list(range(1, 9)),
               "contrast": np.round(pred, 4).tolist()}  # fmt: skip
    if len(cache) >= 16:
        cache.pop(next(iter(cache)))
    cache[chip_id] = out
    return out


def _detail(s, f) -> dict:
    from qupaint.scan.db import Chip, Image
    from qupaint.scan.export import row_dict

    img = s.get(Image, f.image_id)
    chip = s.get(Chip, f.chip_id)
    row = row_dict(f, chip.name, img.file)
    row.update({"oxide_nm": chip.oxide_nm, "um_per_px": chip.um_per_px, "x0_mm": f.x0_mm,
                "y0_mm": f.y0_mm, "x1_mm": f.x1_mm, "y1_mm": f.y1_mm})  # fmt: skip
    return row


@router.get("")
def list_flakes(
    material: str | None = None,
    layers: str | None = Query(None, description="counts, e.g. 1 or 1,2"),
    min_area_um2: float = Query(0.0, ge=0),
    max_area_um2: float | None = Query(None, ge=0),
    min_probability: float = Query(0.0, ge=0, le=1),
    max_aspect: float | None = Query(None, gt=0),
    thin: bool = False,
    used: bool | None = None,
    favourite: bool | None = None,
    chip: str | None = None,
    sort: str = "area",
    page: int = Query(1, ge=1, le=10**9),
    page_size: int = Query(50, ge=1, le=1000),
    run: Callable = Depends(store),
):
    from qupaint.scan.export import flake_page

    filters = dict(layers=parse_layers(layers), min_area_um2=min_area_um2,
                   max_area_um2=max_area_um2, min_probability=min_probability,
                   max_aspect=max_aspect, thin_only=thin, used=used, favourite=favourite,
                   chip=chip, material=material)  # fmt: skip
    try:
        total, rows = run(lambda s: flake_page(s, sort=sort, offset=(page - 1) * page_size,
                                               limit=page_size, **filters))  # fmt: skip
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return {"total": total, "page": page, "page_size": page_size, "rows": rows}


@router.get("/{flake_id}")
def get_flake(flake_id: FlakeId, state: AppState = Depends(app_state)):
    def one(s):
        from sqlalchemy import func, select

        from qupaint.scan.db import Flake

        f = _get(s, flake_id)
        row = _detail(s, f)
        row["previous"] = s.scalar(select(func.max(Flake.id)).where(Flake.id < f.id))
        row["next"] = s.scalar(select(func.min(Flake.id)).where(Flake.id > f.id))
        return row, f.chip_id

    row, chip_id = state.run(one)
    row["predicted"] = _ladder(state, chip_id)
    return row


@router.patch("/{flake_id}")
def patch_flake(flake_id: FlakeId, edit: FlakeEdit, run: Callable = Depends(store)):
    def one(s):
        f = _get(s, flake_id)
        if edit.used is not None:
            f.used = edit.used
        if edit.favourite is not None:
            f.favourite = edit.favourite
        if edit.note is not None:
            f.note = edit.note
        s.flush()
        return _detail(s, f)

    return run(one)


@router.get("/{flake_id}/image.png")
def flake_image(flake_id: FlakeId, pad: int | None = Query(None, ge=0, le=2000),
                run: Callable = Depends(store)):  # fmt: skip
    """The flake on its frame, outlined, with ``pad`` px around it (default: enough for a
    crop of at least 320 px), and a scale bar in um."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    from qupaint._io import read_rgb
    from qupaint.detect.draw import CATEGORY_COLORS, outline_labels, scale_bar
    from qupaint.scan.db import Chip, Image, Scan
    from qupaint.scan.export import frame_mask

    def one(s):
        f = _get(s, flake_id)
        img = s.get(Image, f.image_id)
        sc = s.get(Scan, f.scan_id)
        um = s.get(Chip, f.chip_id).um_per_px
        return f, img, Path(sc.directory), um

    f, img, directory, um = run(one)
    try:
        rgb = read_rgb(directory / img.file)
    except ValueError:
        raise HTTPException(404, f"the frame {img.file} is no longer readable") from None
    mask, fx, fy = frame_mask(f, img, um)
    x0, y0 = f.mask_x - fx, f.mask_y - fy
    color = CATEGORY_COLORS.get(f.category, (255, 255, 255))
    out = outline_labels(rgb, mask.astype(np.int32), color)
    H, W = rgb.shape[:2]
    if pad is None:
        pad = max(60, (320 - max(f.mask_w, f.mask_h)) // 2)
    crop = out[max(0, y0 - pad): min(H, y0 + f.mask_h + pad),
               max(0, x0 - pad): min(W, x0 + f.mask_w + pad)]  # fmt: skip
    im = PILImage.fromarray(np.ascontiguousarray(crop))
    scale_bar(ImageDraw.Draw(im), im.width, im.height, um)
    return Response(image_bytes(np.asarray(im)), media_type="image/png")


@router.get("/{flake_id}/thumbnail.jpg")
def flake_thumbnail(flake_id: FlakeId, run: Callable = Depends(store)):
    data = run(lambda s: _get(s, flake_id).thumbnail)
    if not data:
        raise HTTPException(404, "no thumbnail")
    return Response(data, media_type="image/jpeg")
