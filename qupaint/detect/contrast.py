"""The contrast ``C = I / I_sub - 1`` of every pixel to the substrate around it
(:func:`contrast_map`): the one definition the detector, :mod:`qupaint.seg` and the crop
measurements share.

Pixels are decoded through the camera's response, the substrate's colour is followed across
the field (vignetting, an uneven lamp) by :func:`substrate_field`, and the ratio is taken per
channel (the MaskTerial / 2DMatGMM definition; independent of white-balance gains and
exposure). The per-pixel work is a C++ kernel (``detect_contrast``, backend ``cpu``) with
its numpy reference beside it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np
from scipy import ndimage

from qupaint import _backend
from qupaint.color import Camera

__all__ = ["ContrastMap", "as_uint8", "contrast_map", "linear_pixels", "substrate_field"]


def as_uint8(image) -> np.ndarray:
    """``image`` [H, W, 3] as uint8 sRGB: uint8 as it is, float in [0, 1] scaled (clipped);
    anything else a TypeError / ValueError naming the problem."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3] sRGB; got shape {img.shape}")
    if img.dtype == np.uint8:
        return img
    if not np.issubdtype(img.dtype, np.floating):
        raise TypeError(f"image: uint8 or float in [0, 1]; got {img.dtype}")
    if not np.all(np.isfinite(img)):
        raise ValueError("image contains NaN or inf")
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def linear_pixels(img: np.ndarray, camera: Camera) -> np.ndarray:
    """uint8 pixels -> the camera's linear values, float32 (:meth:`Camera.decode_table`)."""
    return camera.decode_table().astype(np.float32)[img]


def substrate_field(
    lin: np.ndarray, saturated: np.ndarray, block: int = 8, sigma: float = 0.12, degree: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """(field [H, W, 3], substrate blocks [h, w] bool): the substrate's colour at every pixel.

    Block means of the image (``block`` px, saturated blocks excluded) that lie within a
    tolerance of the current field are fitted by a polynomial of ``degree`` in x, y (the
    lamp's fall-off, per channel in log intensity) times their smoothed residual
    (normalised Gaussian convolution, ``sigma`` times the image's smaller side); three
    rounds, starting from the median block colour. Bilinear back to full resolution.
    """
    H, W = lin.shape[:2]
    b = _block_size(H, W, block)
    field, mask = _fit_field(*_block_means(lin, saturated, b), sigma, degree)
    return upsample_blocks(field, b, H, W), mask


def _block_size(H: int, W: int, block: int) -> int:
    return max(1, min(block, H // 16, W // 16))


def _block_means(lin: np.ndarray, saturated: np.ndarray, b: int):
    """(mean linear colour [h, w, 3], any pixel saturated [h, w]) of the b x b blocks (the
    ragged right and bottom edge left out); the reference of ``detect_blocks_cpu``."""
    H, W = lin.shape[:2]
    h, w = H // b, W // b
    small = lin[: h * b, : w * b].reshape(h, b, w, b, 3).mean(axis=(1, 3))
    return small, saturated[: h * b, : w * b].reshape(h, b, w, b).any(axis=(1, 3))


def _fit_field(small: np.ndarray, sat: np.ndarray, sigma: float, degree: int
               ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The substrate field [h, w, 3] float32 on the block grid, and the blocks it used."""
    h, w = small.shape[:2]
    # over the 3 channels by hand: numpy's reductions over a last axis of 3 are slow
    dark = (small[..., 0] + small[..., 1]) + small[..., 2] <= 1e-4
    ok = ~sat & ~dark
    if not ok.any():
        ok = ~dark if (~dark).any() else np.ones((h, w), bool)
    s = max(1.0, sigma * min(h, w))
    field = np.broadcast_to(np.median(small[ok], axis=0), small.shape)
    mask = ok
    # the lamp's fall-off (vignetting) as a smooth polynomial in x, y (log intensity, per
    # channel), times a smoothed residual for what a polynomial does not follow
    basis = _poly_basis(h, w, degree)
    logs = np.log(np.maximum(small, 1e-6)).reshape(-1, 3)
    for tol in (0.15, 0.08, 0.05):
        rel = np.abs(small / np.maximum(field, 1e-6) - 1.0)
        rel = np.maximum(np.maximum(rel[..., 0], rel[..., 1]), rel[..., 2])
        cand = ok & (rel < max(tol, 3.0 * float(np.median(rel[ok]))))
        if cand.sum() >= 4:
            mask = cand
        flat = mask.ravel()
        if degree > 0 and flat.sum() > 4 * basis.shape[1]:
            coef = _least_squares(basis[flat], logs[flat])
            base = np.exp(basis @ coef).reshape(h, w, 3)
        else:
            base = np.broadcast_to(np.median(small[mask], axis=0), small.shape)
        m = mask.astype(np.float32)
        num = smooth_nearest(small / base * m[..., None], s)
        den = smooth_nearest(m[..., None], s)
        field = base * np.where(den > 1e-3, num / np.maximum(den, 1e-6), 1.0)
    return np.ascontiguousarray(field, dtype=np.float32), mask


def _least_squares(A: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """argmin ||A X - Y|| by the normal equations (the polynomial basis on [-1, 1]^2 is well
    conditioned: cond(A) ~ 20 at degree 4, so 1e-14 from an SVD solve at a fifth of its
    time); ``np.linalg.lstsq`` where they are (nearly) singular, as when the blocks lie on
    one line."""
    G = A.T @ A
    if np.linalg.cond(G) < 1e10:
        return np.linalg.solve(G, A.T @ Y)
    return np.linalg.lstsq(A, Y, rcond=None)[0]


def smooth_nearest(a: np.ndarray, sigma: float, backend: str | None = None) -> np.ndarray:
    """``ndimage.gaussian_filter(a, (sigma, sigma, 0), mode="nearest")`` of an [h, w, c]
    float64 or float32 array, bit for bit: the C++ kernel, or scipy (``backend="reference"``).
    """
    if a.ndim != 3 or a.dtype not in (np.float32, np.float64):
        raise ValueError(f"a: [h, w, c] float32 or float64; got {a.shape} {a.dtype}")
    _, fn = _backend.select("detect_smooth", "cpu", backend)
    return fn(a, float(sigma))


@_backend.register("detect_smooth", "reference")
def _smooth_reference(a: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(a, (sigma, sigma, 0), mode="nearest")


@_backend.register("detect_smooth", "cpu")
def _smooth_cpu(a: np.ndarray, sigma: float) -> np.ndarray:
    from qupaint import _C

    out = np.array(a, order="C")  # filtered in place
    full = _gauss_weights(sigma, 4.0)  # gaussian_filter's default truncation
    r = (len(full) - 1) // 2
    wt = np.ascontiguousarray(full[r:])  # the centre, then one side
    _C.detect_smooth_cpu(out.ctypes.data, out.itemsize, out.shape[0], out.shape[1], out.shape[2],
                         wt.ctypes.data, r)  # fmt: skip
    return out


@functools.lru_cache(maxsize=16)
def _poly_basis(h: int, w: int, degree: int) -> np.ndarray:
    """The polynomial basis u^i v^j (i + j <= degree) on the block grid's centres, u and v in
    [-1, 1] [h * w, terms]; the same for every image of one size, so computed once."""
    yy, xx = np.mgrid[0:h, 0:w]
    u, v = (xx.ravel() + 0.5) / w * 2 - 1, (yy.ravel() + 0.5) / h * 2 - 1
    basis = np.stack([u**i * v**j for i in range(degree + 1) for j in range(degree + 1 - i)], 1)
    basis.setflags(write=False)
    return basis


def upsample_blocks(field: np.ndarray, b: int, H: int, W: int) -> np.ndarray:
    """Bilinear from a grid of ``b`` x ``b`` px blocks [h, w, 3] to [H, W, 3] (block centres,
    edges held), separably: along x on the block rows, then along y by blending whole rows
    (thread-count independent). The substrate field here; the map's flat field too."""
    h, w = field.shape[:2]
    xs = np.clip((np.arange(W) + 0.5) / b - 0.5, 0, w - 1)
    x0 = xs.astype(np.int64)
    x1 = np.minimum(x0 + 1, w - 1)
    fx = (xs - x0).astype(np.float32)[None, :, None]
    rows = field[:, x0] * (1 - fx) + field[:, x1] * fx  # [h, W, 3]
    ys = np.clip((np.arange(H) + 0.5) / b - 0.5, 0, h - 1)
    y0 = ys.astype(np.int64)
    y1 = np.minimum(y0 + 1, h - 1)
    fy = (ys - y0).astype(np.float32)[:, None, None]
    out = rows[y0]
    out += (rows[y1] - out) * fy
    return out


@functools.lru_cache(maxsize=16)
def _gauss_weights(sigma: float, truncate: float) -> np.ndarray:
    """The weights [2 r + 1] that ``scipy.ndimage.gaussian_filter`` uses for ``sigma``
    truncated at ``truncate`` sigmas (radius ``int(truncate sigma + 0.5)``), computed as scipy
    computes them: exp(-x^2 / 2 sigma^2) over their numpy sum, float64 (read-only, cached)."""
    r = int(truncate * float(sigma) + 0.5)
    x = np.arange(-r, r + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x**2)
    phi = phi / phi.sum()
    phi.setflags(write=False)
    return phi


@_backend.register("detect_contrast", "reference")
def _contrast_reference(img, lut, b, sigma, degree, blur_sigma_px, saturation):
    H, W = img.shape[:2]
    lin = lut[img, np.arange(3)]  # per-channel decode
    field, _ = _fit_field(*_block_means(lin, (img >= saturation).any(-1), b), sigma, degree)
    if blur_sigma_px > 0:
        # truncated at 2 sigma: the tails add nothing against pixel noise, and cost half
        lin = ndimage.gaussian_filter(lin, (blur_sigma_px, blur_sigma_px, 0), truncate=2.0)
    return lin / np.maximum(upsample_blocks(field, b, H, W), 1e-6) - 1.0, field


@_backend.register("detect_contrast", "cpu")
def _contrast_cpu(img, lut, b, sigma, degree, blur_sigma_px, saturation):
    from qupaint import _C

    H, W = img.shape[:2]
    h, w = H // b, W // b
    img = np.ascontiguousarray(img)
    small = np.empty((h, w, 3), np.float32)
    satb = np.empty((h, w), np.uint8)
    _C.detect_blocks_cpu(img.ctypes.data, H, W, lut.ctypes.data, int(saturation), b, h, w,
                         small.ctypes.data, satb.ctypes.data)  # fmt: skip
    field, _ = _fit_field(small, satb.astype(bool), sigma, degree)
    # truncated at 2 sigma, as the reference's blur (float32, as the kernel computes)
    k = (_gauss_weights(blur_sigma_px, 2.0).astype(np.float32) if blur_sigma_px > 0
         else np.ones(1, np.float32))  # fmt: skip
    C = np.empty((H, W, 3), np.float32)
    _C.detect_contrast_cpu(img.ctypes.data, H, W, lut.ctypes.data, field.ctypes.data, b, h, w,
                           k.ctypes.data, (len(k) - 1) // 2, C.ctypes.data)  # fmt: skip
    return C, field


@dataclass
class ContrastMap:
    """Per-pixel contrast of an image to its substrate (:func:`contrast_map`)."""

    C: np.ndarray  # [H, W, 3] float32, I / I_sub - 1
    noise: np.ndarray  # [3] robust standard deviation of C on the substrate
    field: np.ndarray  # [h, w, 3] the substrate's linear colour on a grid of blocks
    block: int  # the grid's block size in pixels
    image: np.ndarray = dc_field(repr=False, default=None)  # the uint8 image
    saturation: int = 250

    @property
    def substrate(self) -> np.ndarray:
        """The substrate's mean linear colour [3]."""
        return self.field.reshape(-1, 3).mean(0)

    @property
    def saturated(self) -> np.ndarray:
        """[H, W] bool: a channel at the saturation value."""
        return (self.image >= self.saturation).any(-1)


def contrast_map(image, camera: Camera | None = None, blur_sigma_px: float = 1.0,
                 saturation: int = 250, block_px: int = 16, field_sigma: float = 0.12,
                 min_noise: float = 0.01, backend: str | None = None) -> ContrastMap:  # fmt: skip
    """The contrast ``C = I / I_sub - 1`` of every pixel of ``image`` [H, W, 3] (uint8 or
    float in [0, 1]) to the substrate around it, in the camera's linear values.

    The substrate field follows vignetting and an uneven lamp (:func:`substrate_field`).
    ``blur_sigma_px`` denoises against sensor and JPEG noise (0: none). ``noise`` is the
    per-channel scatter of C on the substrate (median absolute deviation, floored at
    ``min_noise``). ``backend``: ``"cpu"`` (the C++ kernel, default when built) or
    ``"reference"`` (numpy).

    >>> import numpy as np
    >>> img = np.full((64, 64, 3), 200, np.uint8); img[20:40, 20:40] = 150
    >>> cm = contrast_map(img, Camera.srgb("D65"), blur_sigma_px=0)
    >>> round(float(cm.C[30, 30, 0]), 3), round(float(cm.C[5, 5, 0]), 3)  # sRGB-decoded ratio
    (-0.472, 0.0)
    """
    img = as_uint8(image)
    cam = camera or Camera.srgb("D65")
    if not (math.isfinite(blur_sigma_px) and blur_sigma_px >= 0):
        raise ValueError(f"blur_sigma_px must be >= 0; got {blur_sigma_px}")
    table = np.asarray(cam.decode_table(), dtype=np.float32)  # [256] or per channel [256, 3]
    lut = np.ascontiguousarray(np.broadcast_to(table.reshape(256, -1), (256, 3)))
    b = _block_size(*img.shape[:2], block_px)
    _, fn = _backend.select("detect_contrast", "cpu", backend)
    C, field = fn(img, lut, b, field_sigma, 4, blur_sigma_px, saturation)
    _, noise_fn = _backend.select("detect_noise", "cpu", backend)
    dev = noise_fn(C, img, 4, saturation)  # the substrate's median absolute deviation
    noise = np.full(3, min_noise) if dev is None else np.maximum(1.4826 * dev, min_noise)
    return ContrastMap(C, noise.astype(np.float64), field, b, img, saturation)


@_backend.register("detect_noise", "reference")
def _noise_reference(C: np.ndarray, img: np.ndarray, step: int, saturation: int):
    """Per channel, the median absolute deviation of C over every ``step``-th pixel of every
    ``step``-th row without a saturated channel (float32), or None when there is none."""
    sat = (img[::step, ::step] >= saturation).any(-1)
    sub_c = np.ascontiguousarray(C[::step, ::step][~sat].T)  # [3, N]: each channel contiguous
    if sub_c.shape[1] == 0:
        return None
    return np.median(np.abs(sub_c - np.median(sub_c, 1, keepdims=True)), 1)


@_backend.register("detect_noise", "cpu")
def _noise_cpu(C: np.ndarray, img: np.ndarray, step: int, saturation: int):
    from qupaint import _C

    C, img = np.ascontiguousarray(C, np.float32), np.ascontiguousarray(img, np.uint8)
    out = np.empty(3, np.float32)
    n = _C.detect_noise_cpu(C.ctypes.data, img.ctypes.data, C.shape[0], C.shape[1], step,
                            saturation, out.ctypes.data)  # fmt: skip
    return out if n else None
