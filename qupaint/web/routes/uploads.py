"""Uploads: detect flakes on a micrograph (``/api/detect``) and fit a camera from clicked
flakes of known layer number (``/api/calibrate``). Uploads are limited in size (413), in
shape (413, from the image header, :func:`qupaint._io.check_image_shape`) and must decode
as an image (415)."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile

from qupaint._io import check_image_shape, rgb8
from qupaint.constants import MAX_OXIDE_NM, MIN_SCORE, OXIDE_RANGE_NM
from qupaint.detect.config import DEFAULT_METHOD, METHODS
from qupaint.web.state import AppState, app_state

__all__ = ["image_from_upload", "router"]

router = APIRouter()
LO, HI = OXIDE_RANGE_NM


#: the answer to an upload that is no image
NOT_AN_IMAGE = "the upload is not an image PIL can read (PNG, JPEG, TIFF, ...)"


def image_from_upload(data: bytes) -> np.ndarray:
    """Decode an upload (any PIL format) as [H, W, 3] uint8: its shape checked from the
    header first (:func:`_shape_of`: 413), anything that does not decode a 415."""
    from PIL import Image, UnidentifiedImageError

    _shape_of(data)
    try:
        with Image.open(io.BytesIO(data)) as im:
            return rgb8(im)
    except (UnidentifiedImageError, OSError, ValueError):
        raise HTTPException(415, NOT_AN_IMAGE) from None


async def _read_upload_bytes(file: UploadFile, state: AppState) -> bytes:
    data = await file.read(state.upload_limit + 1)
    if len(data) > state.upload_limit:
        raise HTTPException(413, f"upload larger than {state.max_upload_mb:g} MB")
    _shape_of(data)  # a bomb is refused here, before any worker decodes it
    return data


def _shape_of(data: bytes) -> tuple[int, int]:
    """An upload's (width, height) from its header (413 outside the shapes read, 415 for
    what is no image)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            size = im.size
    except Image.DecompressionBombError as exc:
        raise HTTPException(413, f"upload: {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise HTTPException(415, NOT_AN_IMAGE) from None
    try:
        check_image_shape(*size, "upload")
    except ValueError as exc:
        raise HTTPException(413, str(exc)) from None
    return size


def _microscope(name: str):
    from qupaint.color import Microscope
    from qupaint.color.camera import PRESETS

    if name not in PRESETS:  # presets only: an upload never names a server-side file
        raise HTTPException(422, f"camera: one of {', '.join(sorted(PRESETS))}")
    return Microscope.load(name)


def _material(name: str) -> str:
    from qupaint.optics import get_material

    try:
        return get_material(name).name
    except (KeyError, ValueError) as exc:
        raise HTTPException(422, f"material: {exc}") from None


@router.post("/api/detect")
async def detect_upload(file: UploadFile = File(...), material: str = Form(...),
                        camera: str = Form("2dmatgmm"),
                        um_per_px: float | None = Form(None, gt=0, le=100),
                        method: str = Form(DEFAULT_METHOD),
                        state: AppState = Depends(app_state)):  # fmt: skip

    material = _material(material)
    if method not in METHODS:
        raise HTTPException(422, f"method: one of {', '.join(METHODS)}; got {method!r}")
    data = await _read_upload_bytes(file, state)
    mic = _microscope(camera)
    # decoding and detection run in a worker process, within the time limit
    return await state.compute(_detect_job, data, material, camera, mic.scale_or(um_per_px),
                               method)  # fmt: skip


def _detect_job(data: bytes, material: str, camera: str, um_per_px: float | None,
                method: str = DEFAULT_METHOD) -> dict:  # fmt: skip
    """``/api/detect``'s work, in a worker: the upload decoded, its flakes found and drawn."""
    from qupaint.categories import CATEGORY_NAMES, THICK_MIN_LAYERS
    from qupaint.detect import DetectorSettings, detect
    from qupaint.detect.batch import count_flakes, flake_counts_line
    from qupaint.detect.draw import draw_detections

    img = image_from_upload(data)
    # the one door from a microscope to detection, as `qupaint detect` and `qupaint scan`
    # take it: the preset's oxide prior, scale and response included
    settings = DetectorSettings.from_microscope(camera, um_per_px=um_per_px, method=method)
    dets = [d for d in detect(img, material, settings, masks=True) if d["score"] >= MIN_SCORE]
    # the thin-flake candidates first, best first, then the thick ones: rows numbered as
    # the outlines are
    dets.sort(key=lambda d: (d["layers"] >= THICK_MIN_LAYERS, -d["score"]))
    buf = io.BytesIO()
    # a JPEG: a PNG of 1920x1200 took 1 s of the 1.3 s an upload took
    draw_detections(img, dets, buf, um_per_px=um_per_px, numbers=True, fmt="JPEG")
    for k, d in enumerate(dets, start=1):
        del d["segmentation"]
        d["number"], d["class"] = k, CATEGORY_NAMES[d["category_id"]]
    jpeg = base64.b64encode(buf.getvalue()).decode("ascii")
    counts = count_flakes(dets)
    return {"width": int(img.shape[1]), "height": int(img.shape[0]), "material": material,
            "counts": counts, "summary": flake_counts_line(counts), "detections": dets,
            "overlay": f"data:image/jpeg;base64,{jpeg}"}  # fmt: skip


@router.post("/api/calibrate")
async def calibrate_upload(file: UploadFile = File(...), material: str = Form(...),
                           points: str = Form(..., description='[{"x","y","layers"}]'),
                           camera: str = Form("2dmatgmm"), radius_px: int = Form(4, ge=1, le=50),
                           oxide_lo: float = Form(LO, ge=0, le=MAX_OXIDE_NM),
                           oxide_hi: float = Form(HI, ge=0, le=MAX_OXIDE_NM),
                           state: AppState = Depends(app_state)):  # fmt: skip
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
    _microscope(camera)  # a preset name: an upload never names a server-side file
    data = await _read_upload_bytes(file, state)
    return await state.compute(_calibrate_job, data, material, pts, camera, radius_px,
                               oxide_lo, oxide_hi)  # fmt: skip


def _calibrate_job(data: bytes, material: str, pts, camera: str, radius_px: int,
                   oxide_lo: float, oxide_hi: float) -> dict:  # fmt: skip
    """``/api/calibrate``'s work, in a worker: the clicked flakes' contrasts, and the
    camera fitted to them."""
    from qupaint.color.calibrate import fit_camera
    from qupaint.detect import DetectorSettings
    from qupaint.detect.detector import settings_contrast

    img = image_from_upload(data)
    if min(img.shape[:2]) < 16 or int(img.max()) == int(img.min()):
        raise HTTPException(422, "file: the image is too small (under 16 px a side) or of one "
                                 "colour; a camera cannot be fitted to it")  # fmt: skip
    cm = settings_contrast(img, DetectorSettings.from_microscope(camera))
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
    from qupaint.color.calibrate import layer_contrast_grid

    layers = list(range(1, max(n for _, n, _ in obs) + 3))
    ladder = layer_contrast_grid(material, layers, [fit.oxide_nm], fit.camera)[0]
    return {**fit.to_dict(), "material": material,
            "observations": [{"layers": n, "contrast": c} for _, n, c in obs],
            "predicted": np.round(fit.predicted, 4).tolist(),
            "ladder": {"layers": layers, "contrast": np.round(ladder, 4).tolist()},
            "ladder_plot": _ladder_plot(layers, ladder, obs, fit.oxide_nm)}  # fmt: skip


def _ladder_plot(layers, ladder: np.ndarray, obs, oxide_nm: float) -> str:
    """The fitted ladder (model contrast per layer number, one line per channel) with the
    clicked flakes on it, as a PNG data URI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 3.2), dpi=100)
    for k, (name, colour) in enumerate(zip("RGB", ("#d62728", "#2ca02c", "#1f77b4"),
                                           strict=True)):  # fmt: skip
        ax.plot(layers, ladder[:, k], "-", color=colour, label=f"{name} fitted")
        ax.plot([n for _, n, _ in obs], [c[k] for *_, c in obs], "o", color=colour,
                markerfacecolor="none", markersize=8)  # fmt: skip
    ax.plot([], [], "ko", markerfacecolor="none", label="your clicks")
    ax.set_xlabel("layers")
    ax.set_ylabel("contrast C = I / I_sub - 1")
    ax.set_title(f"fitted ladder, SiO2 {oxide_nm:.1f} nm", fontsize=10)
    ax.set_xticks(layers)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
