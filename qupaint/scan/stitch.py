"""The stitched map of a scan: frame positions refined on their overlaps, an overview with
every flake marked, and a deep-zoom pyramid for a browser viewer.

1. **Placement.** Each frame starts where the stage said it was. For every pair of frames
   that overlap, the shared strip is cut from both (at the stage's offset), high-passed
   (the lamp's fall-off belongs to the frame, not the chip) and registered by phase
   correlation (:func:`skimage.registration.phase_cross_correlation`, sub-pixel). A pair
   counts when the correlation is clear (its error below ``max_error``: two strips of pure
   noise give 0.999 and more, strips that share texture or a flake 0.5-0.97) and the shift
   is within ``max_shift_px`` of the stage's offset.
2. **One consistent layout.** Positions solve, in least squares, every counted pair's
   offset plus a weak pull towards the stage's positions (which fixes the layout's origin
   and places frames no pair reaches); pairs that disagree with the solution by more than
   3 px are dropped and it is solved again.
3. **Flat field.** Every frame carries the same fall-off of the lamp (vignetting), which
   shows as seams where frames meet. With enough frames (:data:`FLAT_MIN_FRAMES`) it is
   measured from the frames themselves: the per-pixel median over them (a flake or a
   crystal sits at any one place in few frames), smoothed, is each channel's gain across
   the frame (:func:`flat_field`), and the map's frames are divided by it. The detection
   never sees this: it has its own substrate field per frame.
4. **Outputs**: ``overview.png`` (downsampled, every flake circled in its category's colour,
   the thin ones numbered by database id, with a legend and a scale bar), ``layout.json``
   (the fitted centre of every frame, in stage mm and in mosaic pixels) and, with
   ``dzi=True``, ``mosaic.dzi`` with ``mosaic_files/`` (Deep Zoom: 254 px JPEG tiles with
   1 px overlap, as OpenSeadragon reads them). The fitted centres are also written to the
   database (``image.fit_x_mm``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from qupaint._io import atomic_open, atomic_write_bytes, write_json
from qupaint.categories import THICK_MIN_LAYERS

__all__ = ["FLAT_MIN_FRAMES", "apply_flat", "fit_layout", "flat_field", "mosaic_xy",
           "pair_offsets", "stitch", "write_dzi"]

#: frames needed to measure the flat field from a scan (fewer: the map is left as taken)
FLAT_MIN_FRAMES = 8
#: at most this many frames (evenly spread over the scan) enter the flat field's median
FLAT_MAX_FRAMES = 64
#: the flat field is measured on every this-many-th pixel of a frame
FLAT_STEP = 8



def _grey(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32).mean(axis=2)


def _highpass(a: np.ndarray, sigma: float = 8.0) -> np.ndarray:
    from scipy import ndimage

    return a - ndimage.gaussian_filter(a, sigma)


def pair_offsets(frames: list[tuple[np.ndarray, float, float]], max_shift_px: float = 25.0,
                 min_overlap_px: int = 16, max_error: float = 0.99) -> list[tuple]:  # fmt: skip
    """Measured offsets between overlapping frames.

    ``frames``: (grey image [H, W], nominal top-left x, y in mosaic pixels). Returns
    ``(i, j, dx, dy)`` for each registered pair: frame j's top-left minus frame i's."""
    from skimage.registration import phase_cross_correlation

    out = []
    n = len(frames)
    for i in range(n):
        gi, xi, yi = frames[i]
        Hi, Wi = gi.shape
        for j in range(i + 1, n):
            gj, xj, yj = frames[j]
            Hj, Wj = gj.shape
            dx, dy = int(round(xj - xi)), int(round(yj - yi))
            x0, x1 = max(0, dx), min(Wi, dx + Wj)  # the overlap, in frame i's pixels
            y0, y1 = max(0, dy), min(Hi, dy + Hj)
            if x1 - x0 < min_overlap_px or y1 - y0 < min_overlap_px:
                continue
            a = _highpass(gi[y0:y1, x0:x1])
            b = _highpass(gj[y0 - dy : y1 - dy, x0 - dx : x1 - dx])
            shift, error, _ = phase_cross_correlation(a, b, upsample_factor=10,
                                                      normalization=None)  # fmt: skip
            sy, sx = float(shift[0]), float(shift[1])
            # a's content sits (sy, sx) from b's: frame j lies that much beyond the offset
            if math.hypot(sx, sy) > max_shift_px or not error < max_error:
                continue
            out.append((i, j, dx + sx, dy + sy))
    return out


def fit_layout(nominal: np.ndarray, pairs: list[tuple], prior_weight: float = 0.05,
               drop_px: float = 3.0) -> tuple[np.ndarray, int]:  # fmt: skip
    """Top-left positions [n, 2] that best satisfy the pair offsets and a weak pull to the
    ``nominal`` ones; returns (positions, pairs kept)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import lsqr

    nominal = np.asarray(nominal, float)
    n = len(nominal)
    keep = list(pairs)
    pos = nominal.copy()
    for _ in range(2):
        rows, cols, vals, rhs = [], [], [], []
        for r, (i, j, _, _) in enumerate(keep):
            rows += [r, r]
            cols += [j, i]
            vals += [1.0, -1.0]
        m = len(keep)
        for k in range(n):
            rows.append(m + k)
            cols.append(k)
            vals.append(prior_weight)
        A = coo_matrix((vals, (rows, cols)), shape=(m + n, n)).tocsr()
        for axis in range(2):
            rhs = np.array([p[2 + axis] for p in keep] + list(prior_weight * nominal[:, axis]))
            pos[:, axis] = lsqr(A, rhs, atol=1e-10, btol=1e-10)[0]
        resid = [math.hypot(pos[j, 0] - pos[i, 0] - dx, pos[j, 1] - pos[i, 1] - dy)
                 for i, j, dx, dy in keep]  # fmt: skip
        bad = [r > drop_px for r in resid]
        if not any(bad):
            break
        keep = [p for p, b in zip(keep, bad, strict=True) if not b]
    return pos, len(keep)


def mosaic_xy(points_mm, centres_mm, fitted_mm, origin_mm, um_per_px: float) -> np.ndarray:
    """Mosaic pixel positions [m, 2] of stage positions ``points_mm`` [m, 2] (flakes): the
    stage placed each frame at ``centres_mm`` [n, 2], the fit at ``fitted_mm``, so a point
    moves with the correction of the frame whose reported centre is nearest; the mosaic's
    pixel (0, 0) is at ``origin_mm``."""
    from scipy.spatial import cKDTree

    points = np.asarray(points_mm, float).reshape(-1, 2)
    centres = np.asarray(centres_mm, float).reshape(-1, 2)
    if not len(points):
        return points
    near = cKDTree(centres).query(points)[1]
    shift = (np.asarray(fitted_mm, float).reshape(-1, 2) - centres)[near]
    return (points + shift - np.asarray(origin_mm, float)) * (1000.0 / um_per_px)


def flat_field(samples, shape: tuple[int, int], sigma: float = 2.0) -> np.ndarray | None:
    """The lamp's gain across a frame [H, W, 3] float32 (mean 1 per channel), from
    ``samples``: frames subsampled every :data:`FLAT_STEP` pixels ([h, w, 3] each, at least
    :data:`FLAT_MIN_FRAMES`), their per-pixel median smoothed by ``sigma`` sample pixels and
    interpolated back to ``shape`` (H, W). None when there are too few frames or the
    frames are too dark to measure (a channel's median under 8 of 255).

    >>> yy, xx = np.mgrid[0:150, 0:240]
    >>> lamp = 1 - 0.1 * (((yy - 75) / 75) ** 2 + ((xx - 120) / 120) ** 2)
    >>> frames = [np.repeat((180 * lamp)[..., None], 3, -1) for _ in range(8)]
    >>> gain = flat_field(frames, (1200, 1920))
    >>> gain.shape, round(float(gain[600, 960, 0] / gain[0, 0, 0]), 2)  # centre / corner: 1.25
    ((1200, 1920, 3), 1.24)
    """
    from scipy import ndimage

    from qupaint.detect.contrast import upsample_blocks

    if len(samples) < FLAT_MIN_FRAMES:
        return None
    med = np.median(np.stack([np.asarray(a, np.float32) for a in samples]), axis=0)
    if med.reshape(-1, 3).mean(0).min() < 8.0:
        return None
    med = ndimage.gaussian_filter(med, (sigma, sigma, 0), mode="nearest")
    gain = med / med.reshape(-1, 3).mean(0)
    gain = upsample_blocks(gain.astype(np.float32), FLAT_STEP, *shape)  # each sample a block
    return np.clip(gain, 0.25, 4.0).astype(np.float32)


def apply_flat(rgb: np.ndarray, gain: np.ndarray | None) -> np.ndarray:
    """A frame divided by the flat field ``gain`` (uint8; the frame as it is without one,
    or when its size differs from the field's)."""
    if gain is None or gain.shape != rgb.shape:
        return rgb
    return np.clip(rgb / gain + 0.5, 0, 255).astype(np.uint8)


def stitch(db, out: str | Path, scan_id: int | None = None, overview_px: int = 4000,
           dzi: bool = False, progress=None, flat: bool = True) -> dict:  # fmt: skip
    """Stitch the frames of scan ``scan_id`` (default: the newest) of database ``db``; see
    the module doc. ``flat``: correct the map's frames by the flat field measured from them
    (with at least :data:`FLAT_MIN_FRAMES` frames). Returns ``layout.json``'s content."""
    from PIL import Image as PILImage
    from PIL import ImageDraw
    from sqlalchemy import select

    from qupaint._io import read_rgb
    from qupaint.detect.draw import CATEGORY_COLORS, label_font, legend, scale_bar
    from qupaint.scan.db import Chip, Flake, Image, Scan, open_db

    Session = open_db(db)
    with Session() as s:
        sc = (s.get(Scan, scan_id) if scan_id is not None
              else s.scalars(select(Scan).order_by(Scan.id.desc())).first())  # fmt: skip
        if sc is None:
            raise ValueError(f"database {db} has no scan{'' if scan_id is None else f' {scan_id}'}")
        chip = s.get(Chip, sc.chip_id)
        imgs = s.scalars(select(Image).where(Image.scan_id == sc.id, Image.error.is_(None))
                         .order_by(Image.seq)).all()  # unreadable frames have no pixels
        flakes = s.execute(
            select(
                Flake.id, Flake.x_mm, Flake.y_mm, Flake.category, Flake.layers, Flake.max_side_um
            ).where(Flake.scan_id == sc.id)
        ).all()
        directory, um = Path(sc.directory), chip.um_per_px
        sid = sc.id
    if not imgs:
        raise ValueError(f"scan {sid} has no frames yet")
    px = 1000.0 / um  # mosaic pixels per mm
    nominal = np.array([(im.x_mm * px - im.width / 2, im.y_mm * px - im.height / 2)
                        for im in imgs])  # fmt: skip
    frames, samples = [], []
    every = max(1, math.ceil(len(imgs) / FLAT_MAX_FRAMES))  # at most FLAT_MAX_FRAMES
    for k, im in enumerate(imgs):
        rgb = read_rgb(directory / im.file)
        frames.append((_grey(rgb), nominal[k, 0], nominal[k, 1]))
        if flat and k % every == 0 and rgb.shape[:2] == (imgs[0].height, imgs[0].width):
            samples.append(rgb[FLAT_STEP // 2 :: FLAT_STEP, FLAT_STEP // 2 :: FLAT_STEP])
        if progress is not None:
            progress(k + 1, 2 * len(imgs))
    gain = flat_field(samples, (imgs[0].height, imgs[0].width)) if flat else None
    flat_frames = len(samples)
    del samples
    pairs = pair_offsets(frames)
    pos, kept = fit_layout(nominal, pairs)
    del frames
    centres = {im.file: ((pos[k, 0] + im.width / 2) / px, (pos[k, 1] + im.height / 2) / px)
               for k, im in enumerate(imgs)}  # fmt: skip
    with Session.begin() as s:
        for im in imgs:
            row = s.get(Image, im.id)
            row.fit_x_mm, row.fit_y_mm = centres[im.file]
    origin = pos.min(axis=0)
    W = int(math.ceil(max(pos[k, 0] + im.width for k, im in enumerate(imgs)) - origin[0]))
    H = int(math.ceil(max(pos[k, 1] + im.height for k, im in enumerate(imgs)) - origin[1]))
    scale = min(1.0, overview_px / max(W, H))
    ov = PILImage.new("RGB", (max(1, round(W * scale)), max(1, round(H * scale))), (0, 0, 0))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    full = _Mosaic(W, H) if dzi else None
    for k, im in enumerate(imgs):
        rgb = apply_flat(read_rgb(directory / im.file), gain)
        x, y = pos[k] - origin
        small = PILImage.fromarray(rgb).resize(
            (max(1, round(im.width * scale)), max(1, round(im.height * scale))), PILImage.BILINEAR
        )
        ov.paste(small, (round(x * scale), round(y * scale)))
        if full is not None:
            full.paste(rgb, int(round(x)), int(round(y)))
        if progress is not None:
            progress(len(imgs) + k + 1, 2 * len(imgs))
    draw = ImageDraw.Draw(ov)
    # flakes: their database position is where the stage said; the map is fitted, so each
    # flake moves with its frame's correction (the nearest frame centre's)
    at = mosaic_xy([(f[1], f[2]) for f in flakes], [(im.x_mm, im.y_mm) for im in imgs],
                   [centres[im.file] for im in imgs], origin / px, um)  # fmt: skip
    for (fid, _, _, cat, layers, side), xy in zip(flakes, at, strict=True):
        q = xy * scale
        r = max(3.0, 0.5 * side / 1000.0 * px * scale + 3)  # side in um, px per mm
        col = CATEGORY_COLORS.get(int(cat), CATEGORY_COLORS[None])
        draw.ellipse([q[0] - r, q[1] - r, q[0] + r, q[1] + r], outline=col, width=2)
        if layers < THICK_MIN_LAYERS:
            draw.text((q[0] + r + 1, q[1] - r), str(fid), fill=col)
    # what the colours mean, and how long a length is on it
    font = label_font(*ov.size)
    legend(draw, *ov.size, {int(f[3]) for f in flakes}, font)
    scale_bar(draw, *ov.size, um / scale, font)
    with atomic_open(out / "overview.png", "wb") as f:
        ov.save(f, format="PNG")
    layout = {
        "scan_id": sid, "um_per_px": um, "mosaic_px": [W, H], "overview_scale": scale,
        "pairs_measured": len(pairs), "pairs_kept": kept,
        "flat_field": None if gain is None else {
            "frames": flat_frames,
            "gain_min": [round(float(v), 4) for v in gain.reshape(-1, 3).min(0)],
            "gain_max": [round(float(v), 4) for v in gain.reshape(-1, 3).max(0)]},
        "origin_mm": [float(origin[0] / px), float(origin[1] / px)],
        "frames": [{"file": im.file, "x_mm": im.x_mm, "y_mm": im.y_mm,
                    "fit_x_mm": round(centres[im.file][0], 7),
                    "fit_y_mm": round(centres[im.file][1], 7),
                    "mosaic_x": round(float(pos[k, 0] - origin[0]), 2),
                    "mosaic_y": round(float(pos[k, 1] - origin[1]), 2)}
                   for k, im in enumerate(imgs)],
    }  # fmt: skip
    write_json(out / "layout.json", layout)
    if full is not None:
        write_dzi(full.canvas, out / "mosaic")
    Session.kw["bind"].dispose()
    return layout


class _Mosaic:
    """The full-resolution mosaic (frames pasted at their fitted corners)."""

    def __init__(self, W: int, H: int):
        if W * H * 3 > 4 * 2**30:
            raise ValueError(f"the full mosaic ({W}x{H} px) exceeds 4 GiB; write the map "
                             "without --dzi")  # fmt: skip
        self.canvas = np.zeros((H, W, 3), np.uint8)

    def paste(self, rgb: np.ndarray, x: int, y: int) -> None:
        H, W = self.canvas.shape[:2]
        h, w = rgb.shape[:2]
        x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
        if x1 > x0 and y1 > y0:
            self.canvas[y0:y1, x0:x1] = rgb[y0 - y : y1 - y, x0 - x : x1 - x]


def write_dzi(image: np.ndarray, base: str | Path, tile: int = 254, overlap: int = 1,
              quality: int = 85) -> int:  # fmt: skip
    """Write ``image`` [H, W, 3] uint8 as a Deep Zoom pyramid: ``base.dzi`` and
    ``base_files/<level>/<col>_<row>.jpg``. Returns the number of tiles."""
    import io

    from PIL import Image

    base = Path(base)
    H, W = image.shape[:2]
    top = max(0, math.ceil(math.log2(max(W, H))))
    level_img = Image.fromarray(image)
    n = 0
    for level in range(top, -1, -1):
        w, h = level_img.size
        d = base.parent / f"{base.name}_files" / str(level)
        d.mkdir(parents=True, exist_ok=True)
        for col in range(math.ceil(w / tile)):
            for row in range(math.ceil(h / tile)):
                x0, y0 = max(0, col * tile - overlap), max(0, row * tile - overlap)
                x1, y1 = min(w, (col + 1) * tile + overlap), min(h, (row + 1) * tile + overlap)
                buf = io.BytesIO()
                level_img.crop((x0, y0, x1, y1)).save(buf, format="JPEG", quality=quality)
                atomic_write_bytes(d / f"{col}_{row}.jpg", buf.getvalue())
                n += 1
        if level:
            level_img = level_img.resize((max(1, math.ceil(w / 2)), max(1, math.ceil(h / 2))),
                                         Image.BILINEAR)  # fmt: skip
    xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Image TileSize="{tile}" '
           f'Overlap="{overlap}" Format="jpg" xmlns="http://schemas.microsoft.com/deepzoom/2008">'
           f'<Size Width="{W}" Height="{H}"/></Image>\n')  # fmt: skip
    atomic_write_bytes(base.with_suffix(".dzi"), xml.encode())
    return n
