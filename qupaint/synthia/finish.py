"""Synthia's last rendering step: blur, sensor noise, clip and sRGB encoding to uint8.

One op, ``synthia_finish``, with a numpy reference (the ground truth) and a fused C++
kernel (``csrc/cpu/synthia.cpp``, one pass per row, vectorised). Both draw the same noise
from a counter-based generator keyed by ``(seed, index)``, so the image of a given sample
does not depend on the backend beyond float rounding (at most 1 of 255 on a few pixels):

* pair ``j`` of the flat ``[H, W, C]`` image (elements ``2j`` and ``2j + 1``) hashes
  ``2j`` and ``2j + 1`` twice with the 32-bit "lowbias32" integer hash (C. Wellons,
  hash-prospector), once per 32-bit key, into two 24-bit uniforms;
* Box-Muller turns them into two standard normals.

Example
-------
>>> import numpy as np
>>> from qupaint.synthia.finish import finish_image
>>> img = np.full((4, 6, 3), 0.2, dtype=np.float32)
>>> out = finish_image(img, blur_sigma=0.6, noise_std=0.0, seed=0, index=0)
>>> out.dtype, out.shape, int(out[0, 0, 0])  # sRGB encoding of 0.2 linear
(dtype('uint8'), (4, 6, 3), 124)
"""

from __future__ import annotations

import functools
import math

import numpy as np

from qupaint import _backend
from qupaint.color import srgb_encode

__all__ = ["finish_image", "finish_reference", "encode_uint8", "blur", "noise_keys", "noise"]

_ENC_LEVELS = 65535


@functools.cache
def encode_lut(gamma: float | None = None) -> np.ndarray:
    """Linear [0, 1] quantised to 16 bits -> uint8 pixel: sRGB-encoded (``gamma=None``,
    worst error 0.05 LSB, slope 12.92 at 0), or a camera's ``v^(1/gamma)``."""
    x = np.linspace(0.0, 1.0, _ENC_LEVELS + 1)
    v = np.asarray(srgb_encode(x)) if gamma is None else x ** (1.0 / gamma)
    return np.ascontiguousarray((np.clip(v, 0, 1) * 255 + 0.5).astype(np.uint8))


def encode_uint8(linear: np.ndarray, gamma: float | None = None) -> np.ndarray:
    """Linear float -> uint8 pixels (clipped to [0, 1], NaN -> 0; see :func:`encode_lut`)."""
    x = np.nan_to_num(np.asarray(linear, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    q = (np.clip(x, 0.0, 1.0) * _ENC_LEVELS + 0.5).astype(np.uint16)
    return encode_lut(gamma)[q]


def _gauss_kernel(sigma: float) -> np.ndarray:
    r = max(1, int(math.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return np.ascontiguousarray((k / k.sum()).astype(np.float32))


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of ``[H, W, C]``, edges replicated (radius ceil(3 sigma)); numpy."""
    if sigma <= 0:
        return img
    k = _gauss_kernel(sigma)
    r = (len(k) - 1) // 2
    H, W = img.shape[:2]
    p = np.pad(img, ((r, r), (0, 0), (0, 0)), mode="edge")
    out = k[0] * p[0:H]
    for i in range(1, 2 * r + 1):
        out += k[i] * p[i : i + H]
    p = np.pad(out, ((0, 0), (r, r), (0, 0)), mode="edge")
    out = k[0] * p[:, 0:W]
    for i in range(1, 2 * r + 1):
        out += k[i] * p[:, i : i + W]
    return out


def noise_keys(seed: int, index: int) -> tuple[int, int]:
    """The two 32-bit noise keys of sample ``index``, drawn from numpy's
    ``SeedSequence([seed, index, 2])`` (the renderer's own stream is ``[seed, index]``)."""
    k = np.random.SeedSequence([int(seed), int(index), 2]).generate_state(2, dtype=np.uint32)
    return int(k[0]), int(k[1])


def _lowbias32(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def noise(n: int, keys: tuple[int, int]) -> np.ndarray:
    """``n`` standard normals (float32) of the counter-based generator; numpy reference."""
    k1, k2 = (np.uint32(k) for k in keys)
    e = np.arange(0, n + 1, 2, dtype=np.uint32)
    a = _lowbias32(_lowbias32(e ^ k1) ^ k2)
    b = _lowbias32(_lowbias32((e + np.uint32(1)) ^ k1) ^ k2)
    scale = np.float32(1.0 / 16777216.0)
    u1 = ((a >> np.uint32(8)).astype(np.float32) + np.float32(0.5)) * scale
    u2 = (b >> np.uint32(8)).astype(np.float32) * scale
    r = np.sqrt(np.float32(-2.0) * np.log(u1))
    th = np.float32(2 * math.pi) * u2
    return np.stack([r * np.cos(th), r * np.sin(th)], -1).reshape(-1)[:n]


def finish_reference(
    img: np.ndarray, blur_sigma: float, noise_std: float, keys: tuple[int, int],
    gamma: float | None = None,
) -> np.ndarray:  # fmt: skip
    """Blur, add ``noise_std`` x noise, clip, encode; numpy (the ground truth)."""
    out = blur(img, blur_sigma)
    if noise_std != 0:
        out = out + np.float32(noise_std) * noise(out.size, keys).reshape(out.shape)
    return encode_uint8(out, gamma)


_backend.register("synthia_finish", "reference")(finish_reference)


@_backend.register("synthia_finish", "cpu")
def _finish_cpu(img, blur_sigma, noise_std, keys, gamma=None):
    from qupaint import _C

    H, W, C = img.shape
    if blur_sigma > 0:
        k = _gauss_kernel(blur_sigma)
        r = (len(k) - 1) // 2
    else:
        k, r = np.ones(1, np.float32), 0
    out = np.empty(img.shape, dtype=np.uint8)
    lut = encode_lut(gamma)
    _C.synthia_finish_cpu(
        img.ctypes.data, H, W, C, k.ctypes.data, r, float(noise_std), keys[0], keys[1],
        lut.ctypes.data, out.ctypes.data,
    )  # fmt: skip
    return out


def finish_image(
    img: np.ndarray,
    blur_sigma: float,
    noise_std: float,
    seed: int,
    index: int,
    backend: str | None = None,
    gamma: float | None = None,
) -> np.ndarray:
    """Linear ``[H, W, C]`` float -> blurred, noisy, clipped uint8 pixels, sRGB-encoded (or
    ``v^(1/gamma)``, a camera's response, when ``gamma`` is given).

    Values are clipped to [0, 1] after blur and noise; NaN pixels come out black (0).

    Parameters
    ----------
    img : ndarray, float32 (other floats are converted), shape ``(H, W, C)``
        Linear sRGB; not modified.
    blur_sigma : float
        Gaussian blur standard deviation in pixels (0: no blur).
    noise_std : float
        Standard deviation of the additive Gaussian sensor noise, linear units (0: none).
    seed, index : int
        Key the noise: the same pair gives the same noise on every backend and run.
    backend : {"reference", "cpu"} or None
        None picks the C++ kernel when built, else numpy.
    """
    img = np.asarray(img)
    if img.ndim != 3:
        raise ValueError(f"img must have shape (H, W, C); got {img.shape}")
    if not np.issubdtype(img.dtype, np.floating):
        raise TypeError(f"img must be a float array (linear sRGB); got {img.dtype}")
    if img.size >= 2**31:
        raise ValueError(f"img has {img.size} values; at most 2**31 - 1 are supported")
    if not (math.isfinite(blur_sigma) and blur_sigma >= 0):
        raise ValueError(f"blur_sigma must be finite and >= 0; got {blur_sigma}")
    if not (math.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"noise_std must be finite and >= 0; got {noise_std}")
    img = np.ascontiguousarray(img, dtype=np.float32)
    _, fn = _backend.select("synthia_finish", "cpu", backend)
    keys = noise_keys(seed, index) if noise_std > 0 else (0, 0)  # no noise: keys unused
    return fn(img, float(blur_sigma), float(noise_std), keys, gamma)
