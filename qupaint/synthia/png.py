"""Fast PNG encoding for Synthia's noisy frames.

Pillow's PNG writer spends ~42 ms on a 512x512 RGB frame with sensor noise (zlib level 1
plus adaptive filtering): more than the whole render. This writer emits the same kind of
file (8-bit RGB or greyscale, one IDAT) with the "Up" filter on every row, computed in one
numpy subtraction, and deflates it with ISA-L (`isal`, igzip level 1, ~7x zlib's speed on
this data, smaller files than Pillow's level 1), falling back to the standard library's zlib
when `isal` is not installed. Any PNG reader decodes the result; tests check Pillow.
Measured on the 2-core CI VM for 512x512 Synthia frames: Pillow 42.3 ms / 467 KB, this writer
5.9 ms / 432 KB.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

try:  # ISA-L's igzip: a zlib-compatible deflate, several times faster at level 1
    from isal import isal_zlib as _deflate_mod
except ImportError:  # pragma: no cover - isal is a declared dependency
    _deflate_mod = zlib

__all__ = ["encode_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_UP = 2  # PNG filter type: each byte minus the byte above


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(image: np.ndarray, level: int = 1) -> bytes:
    """PNG bytes of a uint8 image ``(H, W)`` (greyscale) or ``(H, W, 3)`` (RGB).

    ``level`` is the deflate level (0-3 with ISA-L, 0-9 with zlib; 1 is fast and still
    shrinks noisy frames by ~45%).
    """
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise TypeError(f"image must be uint8; got {a.dtype}")
    if a.ndim == 2:
        color_type, ch = 0, 1
    elif a.ndim == 3 and a.shape[2] == 3:
        color_type, ch = 2, 3
    else:
        raise ValueError(f"image must have shape (H, W) or (H, W, 3); got {a.shape}")
    H, W = a.shape[:2]
    if H < 1 or W < 1:
        raise ValueError(f"image must be non-empty; got {a.shape}")
    rows = a.reshape(H, W * ch)
    raw = np.empty((H, W * ch + 1), dtype=np.uint8)
    raw[:, 0] = _UP
    raw[0, 1:] = rows[0]  # the row above the first is zeros
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])  # uint8 arithmetic wraps mod 256
    level = min(level, 3) if _deflate_mod is not zlib else level
    ihdr = struct.pack(">IIBBBBB", W, H, 8, color_type, 0, 0, 0)
    return b"".join(
        [
            _SIGNATURE,
            _chunk(b"IHDR", ihdr),
            _chunk(b"IDAT", _deflate_mod.compress(memoryview(raw.reshape(-1)), level)),
            _chunk(b"IEND", b""),
        ]
    )
