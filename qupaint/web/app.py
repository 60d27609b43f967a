"""``qupaint serve``: the flake database in the browser (FastAPI).

Pages (plain HTML and JavaScript shipped in ``qupaint/web/static``; no Node build):
``/`` the chip map (the scan's deep-zoom pyramid in OpenSeadragon, flake markers),
``/flakes`` the filterable, paged table, ``/flake/{id}`` one flake (outlined crop, readings,
measured contrast beside the model's per layer, used / favourite / note saved at once),
``/try`` (detect on an uploaded micrograph) and ``/calibrate`` (click flakes of known
layer number on an uploaded image, get a camera JSON).

JSON API under ``/api`` (OpenAPI docs at ``/docs``): ``GET /api/flakes`` (the filters of
``qupaint flakes``, paged), ``GET``/``PATCH /api/flakes/{id}``, ``GET /api/flakes/{id}/image.png``,
``POST /api/detect``, ``POST /api/calibrate``, ``GET /api/export``, ``GET /api/map``.

Security: a token (``Authorization: Bearer``, a ``qupaint_token`` cookie, or ``?token=``
once, which sets the cookie) when one is configured, 401 without it; uploads are held in
memory only, limited in size (413) and must decode as an image (415); unsafe methods from
another origin are refused (403); paths are served by Starlette's static files, which refuse
anything outside their folder.
"""

from __future__ import annotations

import base64
import functools
import hmac
import io
import json
import secrets
import tempfile
import time
from pathlib import Path

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from qupaint._io import image_bytes
from qupaint.constants import MAX_OXIDE_NM, MIN_SCORE, OXIDE_RANGE_NM

__all__ = ["create_app", "new_token"]

STATIC = Path(__file__).parent / "static"
PAGES = {"/": "map.html", "/flakes": "flakes.html", "/try": "try.html",
         "/calibrate": "calibrate.html"}  # fmt: skip
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def new_token() -> str:
    return secrets.token_urlsafe(18)


class FlakeEdit(BaseModel):
    """What a user may change on a flake."""

    used: bool | None = None
    favourite: bool | None = None
    note: str | None = Field(default=None, max_length=4000)


def _image_from_upload(data: bytes) -> np.ndarray:
    """Decode an upload (any PIL format); anything else is a 415."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > 60_000_000:
                raise HTTPException(413, "image too large (more than 60 megapixels)")
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise HTTPException(
            415, "the upload is not an image PIL can read (PNG, JPEG, TIFF, ...)"
        ) from None


def create_app(db, map_dir: str | Path | None = None, token: str | None = None,
               max_upload_mb: float = 25.0) -> FastAPI:  # fmt: skip
    """The web app on database ``db`` (path or URL). ``map_dir``: a ``qupaint map --dzi``
    folder (default: ``map/`` beside a SQLite database, when there). ``token``: required
    on every request when given."""
    from sqlalchemy import select
    from sqlalchemy.exc import OperationalError

    from qupaint.scan.db import Chip, Flake, Image, Scan, open_db
    from qupaint.scan.export import CSV_FIELDS, flake_page, row_dict

    Session = open_db(db)
    if map_dir is None and "://" not in str(db):
        guess = Path(db).parent / "map"
        map_dir = guess if (guess / "layout.json").is_file() else None
    map_dir = Path(map_dir) if map_dir else None
    limit = int(max_upload_mb * 2**20)
    app = FastAPI(title="qupaint", version="1", description=__doc__.split("\n\n")[0])
    app.state.Session = Session

    @app.middleware("http")
    async def guard(request: Request, call_next):
        t0 = time.perf_counter()
        set_cookie = False
        if token is not None:
            given = request.headers.get("authorization", "")
            given = given[7:] if given.lower().startswith("bearer ") else None
            given = given or request.cookies.get("qupaint_token")
            if given is None and request.query_params.get("token"):
                given, set_cookie = request.query_params["token"], True
            if given is None or not hmac.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"detail": "a token is required (see qupaint serve)"},
                                    status_code=401)  # fmt: skip
        if request.method in UNSAFE:
            origin = request.headers.get("origin")
            own = f"{request.url.scheme}://{request.headers.get('host', '')}"
            if origin is not None and origin != own:
                return JSONResponse({"detail": f"cross-origin {request.method} refused"},
                                    status_code=403)  # fmt: skip
            size = request.headers.get("content-length")
            if size is not None and size.isdigit() and int(size) > limit + 65536:
                return JSONResponse({"detail": f"upload larger than {max_upload_mb:g} MB"},
                                    status_code=413)  # fmt: skip
        response = await call_next(request)
        ms = (time.perf_counter() - t0) * 1000.0
        response.headers["Server-Timing"] = f"app;dur={ms:.1f}"
        response.headers["X-Content-Type-Options"] = "nosniff"
        if set_cookie:
            response.set_cookie("qupaint_token", token, httponly=True, samesite="strict")
        return response

    def page(name: str):
        def serve_page():
            return FileResponse(STATIC / name, media_type="text/html")

        return serve_page

    for route, name in PAGES.items():
        app.add_api_route(route, page(name), include_in_schema=False)

    @app.get("/flake/{flake_id}", include_in_schema=False)
    def flake_page_html(flake_id: int):
        return FileResponse(STATIC / "flake.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if map_dir is not None and map_dir.is_dir():
        app.mount("/map", StaticFiles(directory=map_dir), name="map")

    def _session_retry(fn, tries: int = 5):
        """Run ``fn(session)`` in a transaction; a locked database is retried, never shown."""
        for k in range(tries):
            try:
                with Session.begin() as s:
                    return fn(s)
            except OperationalError as exc:
                if "locked" not in str(exc).lower() or k == tries - 1:
                    raise HTTPException(503, "the database is busy; try again") from None
                time.sleep(0.05 * (k + 1))

    # -- flakes -------------------------------------------------------------------------
    @app.get("/api/flakes")
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
        page: int = Query(1, ge=1),
        page_size: int = Query(50, ge=1, le=1000),
    ):
        try:
            ls = [int(v) for v in layers.split(",") if v.strip()] if layers else None
        except ValueError:
            raise HTTPException(422, "layers: counts separated by commas, e.g. 1,2") from None
        filters = dict(layers=ls, min_area_um2=min_area_um2, max_area_um2=max_area_um2,
                       min_probability=min_probability, max_aspect=max_aspect,
                       thin_only=thin, used=used, favourite=favourite, chip=chip,
                       material=material)  # fmt: skip
        try:
            total, rows = _session_retry(
                lambda s: flake_page(
                    s, sort=sort, offset=(page - 1) * page_size, limit=page_size, **filters
                )
            )
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return {"total": total, "page": page, "page_size": page_size, "rows": rows}

    def _get(s, flake_id: int) -> Flake:
        f = s.get(Flake, flake_id)
        if f is None:
            raise HTTPException(404, f"no flake {flake_id}")
        return f

    @functools.lru_cache(maxsize=16)
    def _ladder(chip_id: int) -> dict:
        from qupaint.color import Camera, channel_contrast

        with Session() as s:
            c = s.get(Chip, chip_id)
            cam = Camera.from_dict(json.loads(c.camera)) if c.camera else None
            material, oxide = c.material, c.oxide_nm
        if oxide is None:
            return {}
        pred = channel_contrast(material, list(range(1, 9)), oxide, cam,
                                illuminant="A" if cam is None else "D65")  # fmt: skip
        return {"oxide_nm": oxide, "layers": list(range(1, 9)),
                "contrast": np.round(pred, 4).tolist()}  # fmt: skip

    def _detail(s, f: Flake) -> dict:
        img = s.get(Image, f.image_id)
        chip = s.get(Chip, f.chip_id)
        row = row_dict(f, chip.name, img.file)
        row.update(
            {
                "oxide_nm": chip.oxide_nm,
                "um_per_px": chip.um_per_px,
                "x0_mm": f.x0_mm,
                "y0_mm": f.y0_mm,
                "x1_mm": f.x1_mm,
                "y1_mm": f.y1_mm,
            }
        )
        return row

    @app.get("/api/flakes/{flake_id}")
    def get_flake(flake_id: int):
        def run(s):
            f = _get(s, flake_id)
            return _detail(s, f), f.chip_id

        row, chip_id = _session_retry(run)
        row["predicted"] = _ladder(chip_id)
        return row

    @app.patch("/api/flakes/{flake_id}")
    def patch_flake(flake_id: int, edit: FlakeEdit):
        def run(s):
            f = _get(s, flake_id)
            if edit.used is not None:
                f.used = edit.used
            if edit.favourite is not None:
                f.favourite = edit.favourite
            if edit.note is not None:
                f.note = edit.note
            s.flush()
            return _detail(s, f)

        return _session_retry(run)

    @app.get("/api/flakes/{flake_id}/image.png")
    def flake_image(flake_id: int, pad: int = Query(60, ge=0, le=2000)):

        from qupaint.detect.draw import CATEGORY_COLORS, outline_labels
        from qupaint.scan.export import frame_mask
        from qupaint.scan.ingest import read_frame

        def run(s):
            f = _get(s, flake_id)
            img = s.get(Image, f.image_id)
            sc = s.get(Scan, f.scan_id)
            um = s.get(Chip, f.chip_id).um_per_px
            return f, img, Path(sc.directory), um

        f, img, directory, um = _session_retry(run)
        try:
            rgb = read_frame(directory / img.file)
        except ValueError:
            raise HTTPException(404, f"the frame {img.file} is no longer readable") from None
        mask, fx, fy = frame_mask(f, img, um)
        x0, y0 = f.mask_x - fx, f.mask_y - fy
        color = CATEGORY_COLORS.get(f.category, (255, 255, 255))
        out = outline_labels(rgb, mask.astype(np.int32), color)
        H, W = rgb.shape[:2]
        crop = out[max(0, y0 - pad): min(H, y0 + f.mask_h + pad),
                   max(0, x0 - pad): min(W, x0 + f.mask_w + pad)]  # fmt: skip
        return Response(image_bytes(crop), media_type="image/png")

    @app.get("/api/flakes/{flake_id}/thumbnail.jpg")
    def flake_thumbnail(flake_id: int):
        data = _session_retry(lambda s: _get(s, flake_id).thumbnail)
        if not data:
            raise HTTPException(404, "no thumbnail")
        return Response(data, media_type="image/jpeg")

    # -- the map ------------------------------------------------------------------------
    @app.get("/api/map")
    def chip_map(min_area_um2: float = Query(0.0, ge=0), thin: bool = True,
                 limit: int = Query(5000, ge=1, le=100000)):  # fmt: skip
        if map_dir is None or not (map_dir / "layout.json").is_file():
            return {
                "dzi": None,
                "markers": [],
                "hint": "run `qupaint map --db DB --out DIR --dzi` and serve with --map DIR",
            }
        from qupaint.scan.stitch import mosaic_xy

        layout = json.loads((map_dir / "layout.json").read_text())
        frames = layout["frames"]

        def run(s):
            _, rows = flake_page(s, sort="area", limit=limit, thin_only=thin,
                                 min_area_um2=min_area_um2)  # fmt: skip
            return rows

        rows = _session_retry(run)
        at = mosaic_xy([(r["x_mm"], r["y_mm"]) for r in rows],
                       [(f["x_mm"], f["y_mm"]) for f in frames],
                       [(f["fit_x_mm"], f["fit_y_mm"]) for f in frames], layout["origin_mm"],
                       layout["um_per_px"])  # fmt: skip
        markers = [{"id": r["id"], "x": float(x), "y": float(y), "layers": r["layers"],
                    "area_um2": r["area_um2"], "r": 0.5 * r["max_side_um"] / layout["um_per_px"]}
                   for r, (x, y) in zip(rows, at, strict=True)]  # fmt: skip
        dzi = "/map/mosaic.dzi" if (map_dir / "mosaic.dzi").is_file() else None
        return {"dzi": dzi, "width": layout["mosaic_px"][0], "height": layout["mosaic_px"][1],
                "markers": markers}  # fmt: skip

    # -- uploads ------------------------------------------------------------------------
    async def _read_upload(file: UploadFile) -> np.ndarray:
        data = await file.read(limit + 1)
        if len(data) > limit:
            raise HTTPException(413, f"upload larger than {max_upload_mb:g} MB")
        return _image_from_upload(data)

    def _microscope(name: str):
        from qupaint.color import Microscope
        from qupaint.color.camera import PRESETS

        if name not in PRESETS:  # presets only: an upload never names a server-side file
            raise HTTPException(422, f"camera: one of {', '.join(sorted(PRESETS))}")
        return Microscope.load(name)

    @app.post("/api/detect")
    async def detect_upload(file: UploadFile = File(...), material: str = Form(...),
                            camera: str = Form("2dmatgmm"),
                            um_per_px: float | None = Form(None, gt=0, le=100)):  # fmt: skip
        from qupaint.detect import detect
        from qupaint.detect.draw import CATEGORY_COLORS, outline_labels
        from qupaint.optics import get_material
        from qupaint.rle import decode as decode_rle

        try:
            material = get_material(material).name
        except (KeyError, ValueError) as exc:
            raise HTTPException(422, f"material: {exc}") from None
        img = await _read_upload(file)
        mic = _microscope(camera)
        dets = detect(img, material, None, camera=mic.camera, um_per_px=mic.scale_or(um_per_px),
                      masks=True)  # fmt: skip
        dets = [d for d in dets if d["score"] >= MIN_SCORE]
        out = img.copy()
        for d in dets:
            lab = decode_rle(d.pop("segmentation")).astype(np.int32)
            out = outline_labels(out, lab, CATEGORY_COLORS.get(d["category_id"], (255,) * 3))
        png = base64.b64encode(image_bytes(out)).decode("ascii")
        return {"width": int(img.shape[1]), "height": int(img.shape[0]), "material": material,
                "detections": dets, "overlay": f"data:image/png;base64,{png}"}  # fmt: skip

    LO, HI = OXIDE_RANGE_NM

    @app.post("/api/calibrate")
    async def calibrate_upload(file: UploadFile = File(...), material: str = Form(...),
                               points: str = Form(..., description='[{"x","y","layers"}]'),
                               camera: str = Form("srgb"), radius_px: int = Form(4, ge=1, le=50),
                               oxide_lo: float = Form(LO, ge=0, le=MAX_OXIDE_NM),
                               oxide_hi: float = Form(HI, ge=0, le=MAX_OXIDE_NM)):  # fmt: skip
        from qupaint.color.calibrate import fit_camera
        from qupaint.detect import contrast_map
        from qupaint.optics import get_material

        try:
            material = get_material(material).name
            pts = json.loads(points)
            pts = [(float(p["x"]), float(p["y"]), int(p["layers"])) for p in pts]
        except (KeyError, ValueError, TypeError) as exc:
            raise HTTPException(422, f"points / material: {exc}") from None
        if not 1 <= len(pts) <= 20 or any(n < 1 or n > 50 for *_, n in pts):
            raise HTTPException(422, "points: 1-20 clicks, each with 1-50 layers")
        if not oxide_lo < oxide_hi:
            raise HTTPException(422, "oxide_lo must be below oxide_hi")
        img = await _read_upload(file)
        cm = contrast_map(img, _microscope(camera).camera)
        H, W = img.shape[:2]
        yy, xx = np.mgrid[0:H, 0:W]
        obs = []
        for x, y, n in pts:
            if not (0 <= x < W and 0 <= y < H):
                raise HTTPException(422, f"point ({x:g}, {y:g}) is outside the image")
            disc = (xx - x) ** 2 + (yy - y) ** 2 <= radius_px**2
            obs.append((material, n, np.median(cm.C[disc], axis=0).tolist()))
        try:
            fit = fit_camera(obs, oxide_nm=(oxide_lo, oxide_hi), illuminant="A")
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return {**fit.to_dict(), "material": material,
                "observations": [{"layers": n, "contrast": c} for _, n, c in obs],
                "predicted": np.round(fit.predicted, 4).tolist()}  # fmt: skip

    # -- export -------------------------------------------------------------------------
    @app.get("/api/export")
    def export_flakes(format: str = Query(..., pattern="^(2dmatgmm|coco|csv)$"),
                      layers: str | None = None, min_area_um2: float = Query(0.0, ge=0),
                      thin: bool = False):  # fmt: skip
        from qupaint.scan.export import export

        try:
            ls = [int(v) for v in layers.split(",") if v.strip()] if layers else None
        except ValueError:
            raise HTTPException(422, "layers: counts separated by commas") from None
        ext = {"2dmatgmm": "zip", "coco": "json", "csv": "csv"}[format]
        tmp = Path(tempfile.mkdtemp(prefix="qupaint-export-"))
        path = tmp / f"flakes.{ext}"
        filters = {"layers": ls, "min_area_um2": min_area_um2, "thin_only": thin}
        if format == "2dmatgmm" and ls is None:
            filters["thin_only"] = True
        export(db, format, path, **filters)
        import shutil

        return FileResponse(path, filename=path.name,
                            background=BackgroundTask(shutil.rmtree, tmp, True))  # fmt: skip

    @app.get("/api/health")
    def health():
        with Session() as s:
            n = s.scalar(select(Flake.id).order_by(Flake.id.desc()).limit(1))
        return {"ok": True, "last_flake_id": n, "csv_fields": CSV_FIELDS}

    return app
