"""Image processing for QuPAINT models (as transformers' ``image_processing_*`` modules):
InternVL's dynamic tiling, the normalisation, and the CIELAB colour jitter of training.

:func:`pixel_values` turns an image (a path, a PIL image or a uint8 array) into the
normalised tiles the vision tower reads, by an :class:`ImageConfig`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch

from qupaint._io import read_rgb
from qupaint.model.configuration import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ImageConfig", "dynamic_tiles", "lab_jitter",
           "open_image", "pixel_values", "tile_grid"]  # fmt: skip

def tile_grid(width: int, height: int, image_size: int, min_tiles: int, max_tiles: int):
    """(columns, rows) of InternVL's dynamic tiling: the grid with i * j in
    [min_tiles, max_tiles] whose aspect ratio is closest to the image's; on a tie the larger
    grid wins when the image has more than half of its pixels."""
    ratios = sorted(
        {(i, j) for n in range(min_tiles, max_tiles + 1) for i in range(1, n + 1)
         for j in range(1, n + 1) if min_tiles <= i * j <= max_tiles},
        key=lambda r: r[0] * r[1],
    )  # fmt: skip
    aspect = width / height
    best, best_diff = (1, 1), float("inf")
    for r in ratios:
        diff = abs(aspect - r[0] / r[1])
        if diff < best_diff:
            best, best_diff = r, diff
        elif diff == best_diff and width * height > 0.5 * image_size**2 * r[0] * r[1]:
            best = r
    return best


def dynamic_tiles(image, image_size: int, max_tiles: int = 12, min_tiles: int = 1,
                  use_thumbnail: bool = True, canvas: tuple[int, int] | None = None):  # fmt: skip
    """Split a PIL image into ``image_size`` tiles, row-major, plus a thumbnail when there is
    more than one tile. ``canvas=(W, H)`` first resizes to a fixed canvas (the authors'
    release uses 1792 x 1344 -> 4 x 3 tiles)."""
    if canvas is not None:
        image = image.resize(tuple(canvas), resample=3)  # bicubic
        cols, rows = canvas[0] // image_size, canvas[1] // image_size
    else:
        cols, rows = tile_grid(image.width, image.height, image_size, min_tiles, max_tiles)
    big = image.resize((cols * image_size, rows * image_size), resample=3)
    tiles = [
        big.crop((c * image_size, r * image_size, (c + 1) * image_size, (r + 1) * image_size))
        for r in range(rows)
        for c in range(cols)
    ]
    if use_thumbnail and len(tiles) > 1:
        tiles.append(image.resize((image_size, image_size), resample=3))
    return tiles


def lab_jitter(image: np.ndarray, sigma_l: float, sigma_ab: float, rng) -> np.ndarray:
    """CIELAB colour jitter (QuPAINT Sec. 6): one random (dL*, da*, db*) offset per image,
    applied in CIELAB with qupaint's LAB kernels; uint8 [H, W, 3] in and out."""
    from qupaint.color import lab_to_srgb, srgb_to_lab

    lab = np.asarray(srgb_to_lab(np.asarray(image, dtype=np.uint8)), dtype=np.float32)
    lab += np.array([rng.normal(0, sigma_l), rng.normal(0, sigma_ab), rng.normal(0, sigma_ab)],
                    dtype=np.float32)  # fmt: skip
    rgb = np.asarray(lab_to_srgb(lab))
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


@dataclass
class ImageConfig:
    image_size: int = 448
    dynamic: bool = False  # InternVL dynamic tiling (else one image_size tile)
    max_tiles: int = 12
    use_thumbnail: bool = True
    canvas: list | None = None  # e.g. [1792, 1344]: the authors' fixed canvas
    mean: list = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list = field(default_factory=lambda: list(IMAGENET_STD))


def open_image(image):
    """A PIL image of a PIL image, uint8 array or path (a file is read and closed)."""
    from PIL import Image

    if isinstance(image, str | os.PathLike):
        image = Image.fromarray(read_rgb(image))
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    return image


def pixel_values(image, config: ImageConfig) -> torch.Tensor:
    """[N_tiles, 3, S, S] float32, normalised by ``config.mean`` / ``config.std``, from a PIL
    image, uint8 array [H, W, 3] or path: one ``config.image_size`` tile, or InternVL's
    dynamic tiles (``config.dynamic``, ``config.canvas``)."""
    image = open_image(image).convert("RGB")
    c = config
    if c.dynamic or c.canvas:
        tiles = dynamic_tiles(image, c.image_size, c.max_tiles, 1, c.use_thumbnail,
                              tuple(c.canvas) if c.canvas else None)  # fmt: skip
    else:
        tiles = [image.resize((c.image_size, c.image_size), resample=3)]
    arr = np.stack([np.asarray(t, dtype=np.float32) / 255.0 for t in tiles])
    arr = (arr - np.array(c.mean, np.float32)) / np.array(c.std, np.float32)
    return torch.from_numpy(arr.transpose(0, 3, 1, 2).copy())
