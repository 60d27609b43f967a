"""Realism for Synthia: what a real flake-hunting microscope adds to the physics.

Every effect is a small pure function of its inputs and a numpy generator, switched on by a
field of :class:`~qupaint.synthia.SynthiaConfig` (``SynthiaConfig.realistic()`` turns them
all on). Where each model comes from:

* **Backgrounds** (:func:`background_crop`): flake-free windows of real chips, the pack in
  ``qupaint/data/real/backgrounds`` (MaskTerial demo micrographs, MIT; made by
  ``scripts/make_backgrounds.py``), randomly cropped, flipped and rotated at native scale.
* **Sizes** (:func:`flake_radius_px`): the flake's box side in um is log-normal. The default
  median 18 um and sigma 0.48 were measured on the 972 expert-labelled 2DMatGMM crops in
  ``shared/data/real/layer-crops`` (box side sqrt(w h) at the reference scale,
  :data:`~qupaint.constants.REFERENCE_UM_PER_PX`: log-mean 3.00 and
  2.74, log-std 0.51 and 0.39 for graphene and WSe2). A quarter of those crops have an
  aspect ratio above 2.2 (graphene) and 1.9 (WSe2): the slivers.
* **Residue** (:func:`paint_residue`): tape or glue left on the chip is a thin polymer film
  (silicone n ~ 1.41, acrylic n ~ 1.49 in the visible); it is modelled as extra oxide
  thickness (SiO2 n ~ 1.46 lies between them), so its colour is the TMM colour of the
  substrate with ``oxide + t``, relative to the bare substrate.
* **Bulk crystals**: tens to hundreds of layers, coloured by TMM; the exposure chosen for
  faint flakes saturates them, as in the real images. Their topography scatters light out
  of the objective's aperture, which shows as a dark rim (:func:`edge_halo`), and they stand
  out of the focal plane (blurred edge).
* **Image optics**: focus that drifts across the field (a tilted chip:
  :func:`field_defocus`), lateral chromatic aberration (red and blue magnified differently
  about the optical axis: :func:`chromatic_shift`), the camera's own white balance
  (:func:`camera_white_balance`, grey-world with a random strength), exposure with clipping,
  and JPEG at a chosen quality (:func:`jpeg_roundtrip`).
"""

from __future__ import annotations

import functools
import io
import json
import math
from importlib import resources

import numpy as np

__all__ = [
    "background_pack",
    "background_crop",
    "flake_radius_px",
    "paint_residue",
    "paint_scratches",
    "edge_halo",
    "field_defocus",
    "chromatic_shift",
    "camera_white_balance",
    "jpeg_roundtrip",
    "smooth_noise",
]


# -- backgrounds ------------------------------------------------------------------------
@functools.cache
def background_pack() -> tuple[tuple[np.ndarray, dict], ...]:
    """The shipped real backgrounds: ``((uint8 [h, w, 3], info), ...)``, read once."""
    from PIL import Image

    root = resources.files("qupaint") / "data" / "real" / "backgrounds"
    meta = json.loads((root / "backgrounds.json").read_text())
    out = []
    for entry in meta["backgrounds"]:
        with (root / entry["file"]).open("rb") as f, Image.open(f) as im:
            out.append((np.asarray(im.convert("RGB")), entry))
    return tuple(out)


def background_crop(
    rng: np.random.Generator, height: int, width: int, images=None
) -> tuple[np.ndarray, dict]:
    """A random real background [height, width, 3] uint8: one pack image (or one of
    ``images``), flipped and turned by a random multiple of 90 degrees, cropped at native
    scale (resized up only when the image is smaller than the request)."""
    pack = images if images is not None else background_pack()
    k = int(rng.integers(len(pack)))
    img, info = pack[k]
    img = np.rot90(img, int(rng.integers(4)))
    if rng.random() < 0.5:
        img = img[:, ::-1]
    h, w = img.shape[:2]
    if h < height or w < width:
        from PIL import Image

        s = max(height / h, width / w)
        img = np.asarray(
            Image.fromarray(np.ascontiguousarray(img)).resize(
                (math.ceil(w * s), math.ceil(h * s)), Image.BILINEAR
            )
        )
        h, w = img.shape[:2]
    y = int(rng.integers(0, h - height + 1))
    x = int(rng.integers(0, w - width + 1))
    return np.ascontiguousarray(img[y : y + height, x : x + width]), info


# -- morphology -------------------------------------------------------------------------
def flake_radius_px(
    rng: np.random.Generator,
    size_um: tuple[float, float],
    um_per_px: float,
    limits_px: tuple[float, float],
) -> float:
    """Half the box side of a flake, pixels: the side in um is log-normal with median
    ``size_um[0]`` and log-std ``size_um[1]``, clipped to ``limits_px`` (radius)."""
    median, sigma = size_um
    side_um = median * math.exp(sigma * rng.standard_normal())
    return float(np.clip(0.5 * side_um / um_per_px, *limits_px))


def smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int = 6) -> np.ndarray:
    """A smooth random field [h, w] in about [-1, 1]: uniform values on a coarse grid of
    ``cells`` x ``cells``, interpolated bilinearly (value noise)."""
    g = rng.uniform(-1.0, 1.0, (cells + 1, cells + 1))
    yy = np.linspace(0, cells, h)
    xx = np.linspace(0, cells, w)
    iy = np.minimum(yy.astype(int), cells - 1)
    ix = np.minimum(xx.astype(int), cells - 1)
    fy = (yy - iy)[:, None]
    fx = (xx - ix)[None, :]
    a = g[iy][:, ix]
    b = g[iy][:, ix + 1]
    c = g[iy + 1][:, ix]
    d = g[iy + 1][:, ix + 1]
    # smoothstep weights hide the grid
    fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


# -- clutter ----------------------------------------------------------------------------
def paint_residue(
    img: np.ndarray, rng: np.random.Generator, ratio: np.ndarray, size_px: float
) -> tuple[int, int, int, int]:
    """Multiply a blob-shaped patch of ``img`` (linear, in place) by the residue film's
    colour ratio ``ratio`` [3] (film-covered over bare substrate, from TMM). The blob is a
    thresholded value-noise field about ``size_px`` across with a soft edge. Returns its box."""
    H, W = img.shape[:2]
    h = max(4, min(H, int(size_px * rng.uniform(0.6, 1.4))))
    w = max(4, min(W, int(size_px * rng.uniform(0.6, 1.4))))
    y0, x0 = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
    f = smooth_noise(rng, h, w, cells=int(rng.integers(3, 7)))
    yy = np.linspace(-1, 1, h)[:, None]
    xx = np.linspace(-1, 1, w)[None, :]
    f = f - 1.2 * (yy * yy + xx * xx)  # fade out towards the box edge
    alpha = np.clip((f + 0.2) * 6.0, 0.0, 1.0).astype(np.float32)
    reg = img[y0 : y0 + h, x0 : x0 + w]
    reg *= 1.0 + alpha[..., None] * (np.asarray(ratio, np.float32) - 1.0)
    return x0, y0, x0 + w, y0 + h


def paint_scratches(img: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Thin straight scratches (in place): segments 40-400 px long, 0.6-1.5 px wide,
    darker or brighter than the chip by a few per cent, with anti-aliased edges."""
    H, W = img.shape[:2]
    for _ in range(count):
        length = rng.uniform(40, 400)
        ang = rng.uniform(0, math.pi)
        cx, cy = rng.uniform(0, W), rng.uniform(0, H)
        dx, dy = 0.5 * length * math.cos(ang), 0.5 * length * math.sin(ang)
        half = 0.5 * rng.uniform(0.6, 1.5)
        x0 = max(int(min(cx - dx, cx + dx) - 2), 0)
        x1 = min(int(max(cx - dx, cx + dx) + 3), W)
        y0 = max(int(min(cy - dy, cy + dy) - 2), 0)
        y1 = min(int(max(cy - dy, cy + dy) + 3), H)
        if x1 <= x0 or y1 <= y0:
            continue
        px = np.arange(x0, x1) + 0.5 - cx
        py = (np.arange(y0, y1) + 0.5 - cy)[:, None]
        along = px * math.cos(ang) + py * math.sin(ang)
        across = np.abs(-px * math.sin(ang) + py * math.cos(ang))
        alpha = np.clip(half + 0.5 - across, 0, 1) * (np.abs(along) <= 0.5 * length)
        shade = rng.choice([rng.uniform(0.85, 0.96), rng.uniform(1.03, 1.1)])
        img[y0:y1, x0:x1] *= (1.0 + alpha * np.float32(shade - 1.0))[..., None]


def edge_halo(alpha: np.ndarray, width_px: float = 2.0) -> np.ndarray:
    """A rim just outside a shape's coverage ``alpha`` (its box, padded by the caller):
    1 on the outer edge, decaying over ``width_px``, 0 inside. Multiplied by a darkening
    it draws the scattering halo of a thick crystal's edge."""
    from scipy.ndimage import distance_transform_edt

    outside = alpha < 0.5
    d = distance_transform_edt(outside)
    return (np.exp(-d / max(width_px, 1e-3)) * outside).astype(np.float32)


# -- image optics -----------------------------------------------------------------------
def _interp_axis(img: np.ndarray, coords: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of ``img`` along ``axis`` at fractional ``coords`` (clamped)."""
    n = img.shape[axis]
    x = np.clip(coords, 0.0, n - 1.0)
    i0 = np.minimum(x.astype(np.int64), n - 2) if n > 1 else np.zeros(len(x), np.int64)
    f = (x - i0).astype(np.float32)
    shape = [1] * img.ndim
    shape[axis] = len(x)
    f = f.reshape(shape)
    a = np.take(img, i0, axis=axis)
    b = np.take(img, np.minimum(i0 + 1, n - 1), axis=axis)
    return a + f * (b - a)


def _upsample2(a: np.ndarray, axis: int, n: int) -> np.ndarray:
    """Linear 2x upsampling along ``axis`` to length ``n`` (pixel centres: output 2i and
    2i + 1 are 3/4 of input i and 1/4 of its neighbour; edges repeat), by slicing into a
    C-contiguous output rather than gathers."""

    def at(arr, sl):
        idx = [slice(None)] * arr.ndim
        idx[axis] = sl
        return arr[tuple(idx)]

    m = a.shape[axis]
    shape = list(a.shape)
    shape[axis] = max(n, 2 * m)
    out = np.empty(shape, a.dtype)
    t = a * a.dtype.type(0.75)
    q = a * a.dtype.type(0.25)
    np.add(at(t, slice(1, None)), at(q, slice(None, -1)), out=at(out, slice(2, 2 * m, 2)))
    np.add(at(t, slice(None, -1)), at(q, slice(1, None)), out=at(out, slice(1, 2 * m - 1, 2)))
    at(out, slice(0, 1))[...] = at(a, slice(0, 1))
    at(out, slice(2 * m - 1, None))[...] = at(a, slice(m - 1, m))  # the end (and an odd n)
    return at(out, slice(0, n))


def field_defocus(img: np.ndarray, rng: np.random.Generator, max_sigma_px: float) -> None:
    """Defocus that varies across the field (a tilted chip): the image is blended, per
    pixel, between itself and a Gaussian blur of up to ``max_sigma_px``, with a weight
    that rises linearly across the field in a random direction (0 at the in-focus line).
    The blur is taken at half resolution and interpolated back (it removes what that
    loses anyway). In place."""
    from scipy.ndimage import gaussian_filter1d

    if max_sigma_px <= 0:
        return
    H, W = img.shape[:2]
    ang = rng.uniform(0, 2 * math.pi)
    s = rng.uniform(0.3, 1.0) * max_sigma_px
    h2, w2 = H // 2, W // 2
    y, x = 2 * h2, 2 * w2  # 2 x 2 mean pooling by strided slices
    small = img[0:y:2, 0:x:2] + img[1:y:2, 0:x:2]
    small += img[0:y:2, 1:x:2]
    small += img[1:y:2, 1:x:2]
    small *= np.float32(0.25)
    gaussian_filter1d(small, s / 2, axis=0, mode="nearest", truncate=3.0, output=small)
    gaussian_filter1d(small, s / 2, axis=1, mode="nearest", truncate=3.0, output=small)
    blurred = _upsample2(_upsample2(small, 0, H), 1, W)
    ramp = (np.arange(H, dtype=np.float32)[:, None] / H - 0.5) * np.float32(math.sin(ang)) + (
        np.arange(W, dtype=np.float32)[None, :] / W - 0.5
    ) * np.float32(math.cos(ang))
    lo, hi = float(ramp.min()), float(ramp.max())
    wgt = (ramp - lo) * np.float32(1.0 / max(hi - lo, 1e-6))
    blurred -= img
    blurred *= wgt[..., None]
    img += blurred


def _shift_axis(a: np.ndarray, coords: np.ndarray, axis: int) -> np.ndarray:
    """:func:`_interp_axis` for sample positions within one pixel of their own index
    (|coords - i| <= 1), by slicing: each output mixes its pixel with the neighbour on the
    side it moves to."""
    d = (coords - np.arange(len(coords))).astype(np.float32)
    if np.abs(d).max() > 1.0:
        return _interp_axis(a, coords, axis)
    x = np.moveaxis(a, axis, 0)
    nxt = np.concatenate([x[1:], x[-1:]]) - x
    prv = np.concatenate([x[:1], x[:-1]]) - x
    shape = (-1,) + (1,) * (x.ndim - 1)
    dp = np.maximum(d, 0).reshape(shape)
    dn = np.maximum(-d, 0).reshape(shape)
    return np.moveaxis(x + dp * nxt + dn * prv, 0, axis)


def chromatic_shift(img: np.ndarray, shift_px: float) -> np.ndarray:
    """Lateral chromatic aberration: red magnified and blue shrunk about the image centre,
    displaced by ``shift_px`` along each axis at the image's edges (0 at the centre),
    bilinear. A magnification is separable, so each channel is resampled along rows, then
    columns. Returns a new image (green unchanged)."""
    if shift_px == 0:
        return img
    H, W = img.shape[:2]
    out = img.copy()
    for ch, sign in ((0, 1.0), (2, -1.0)):
        m = 1.0 + sign * shift_px / (0.5 * max(H, W))  # this channel's magnification
        ys = (H - 1) / 2 + (np.arange(H) - (H - 1) / 2) / m  # output row samples input ys
        xs = (W - 1) / 2 + (np.arange(W) - (W - 1) / 2) / m
        out[..., ch] = _shift_axis(_shift_axis(img[..., ch], ys, 0), xs, 1)
    return out


def camera_white_balance(substrate: np.ndarray, strength: float) -> np.ndarray:
    """Per-channel gains [3] of a camera's grey-world white balance applied with
    ``strength`` in [0, 1] (0: none, 1: the substrate comes out grey), normalised to keep
    the substrate's mean level. Gains scale flakes and substrate alike, so contrast is
    kept."""
    c = np.asarray(substrate, np.float64)
    full = c.mean() / np.maximum(c, 1e-9)
    g = full**strength
    return g * (c.mean() / float(np.mean(g * c)))


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """``image`` [H, W, 3] uint8 encoded as a baseline JPEG at ``quality`` (4:2:0 chroma,
    as cameras save) and decoded again."""
    from PIL import Image

    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in 1-100; got {quality}")
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))
