"""Flake shapes for Synthia (QuPAINT Alg. 1 line 9, RandomFlakeMask).

Exfoliated 2D crystals cleave along lattice directions: hexagonal lattices (graphene, hBN,
TMDs) give straight edges meeting at 60 and 120 degrees, plus a few random tears. Each flake
region here is a convex intersection of half-planes {p : n_i . p <= d_i}: edges on the 60-degree
lattice (random support distances, so irregular hexagons, triangles and trapezoids appear)
and 0-2 random straight cleaves. That representation gives, exactly and cheaply:

* a signed distance max_i(n_i . p - d_i) for soft, partly transparent edges;
* polygon vertices (half-plane clipping) for COCO ``segmentation``;
* terraces: a thicker region = the flake cut by one more half-plane, its own annotation.

Units: pixels; the shape's origin is its centre.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "FlakeShape",
    "random_flake",
    "random_sliver",
    "split_terrace",
    "split_fold",
    "rasterize",
    "rasterize_local",
]

_ROUGH_TABLE = 32  # side of the periodic table of edge offsets of a rough flake


@dataclass(frozen=True)
class FlakeShape:
    """Convex region {p : normals @ p <= offsets} around the origin (pixels).

    ``rough_px`` > 0 makes the edge ragged and stepped on the crystal lattice: the distance
    field is shifted by a piecewise-constant offset, uniform in ``[-rough_px, rough_px]``,
    constant on rhombi of side ``rough_step_px`` spanned by two lattice directions (the
    first normal's and 60 degrees from it), so the edge breaks into short steps along the
    lattice, as cleaved edges do under the microscope. ``rough_key`` seeds the offsets.
    Polygon vertices stay those of the smooth region (exact labels come from the raster).
    """

    normals: np.ndarray  # [m, 2] unit vectors (x, y)
    offsets: np.ndarray  # [m]
    rough_px: float = 0.0
    rough_step_px: float = 3.0
    rough_key: int = 0

    def sdf(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Signed distance-like field (exact inside, a lower bound outside), pixels."""
        # one half-plane at a time into a running maximum: no [m, h, w] temporary (the
        # same arithmetic, (nx x + ny y) - d, so the same numbers)
        nx, ny, off = self.normals[:, 0], self.normals[:, 1], self.offsets
        d = nx[0] * x + ny[0] * y
        d -= off[0]
        for i in range(1, len(off)):
            t = nx[i] * x + ny[i] * y
            t -= off[i]
            np.maximum(d, t, out=d)
        if self.rough_px > 0:
            d = d + self.rough_px * self._rough(x, y)
        return d

    def _rough(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        n = _ROUGH_TABLE
        table = np.random.default_rng(self.rough_key).uniform(-1.0, 1.0, (n, n))
        a = math.atan2(self.normals[0, 1], self.normals[0, 0])
        s = self.rough_step_px
        u = (x * math.cos(a) + y * math.sin(a)) / s
        v = (x * math.cos(a + math.pi / 3) + y * math.sin(a + math.pi / 3)) / s
        iu = np.floor(u).astype(np.int64) % n
        iv = np.floor(v).astype(np.int64) % n
        return table[iu, iv]

    def with_planes(self, normals: np.ndarray, offsets: np.ndarray) -> FlakeShape:
        """The same roughness on other half-planes (terrace and fold parts)."""
        return FlakeShape(normals, offsets, self.rough_px, self.rough_step_px, self.rough_key)

    @functools.cached_property
    def _vertices(self) -> np.ndarray:
        return self._clip_all()

    def vertices(self) -> np.ndarray:
        """Polygon vertices [k, 2] (counter-clockwise), by clipping a large square (cached)."""
        return self._vertices

    def _clip_all(self) -> np.ndarray:
        r = 4.0 * float(np.max(np.abs(self.offsets))) + 1.0
        poly = [(-r, -r), (r, -r), (r, r), (-r, r)]
        for (nx, ny), d in zip(self.normals.tolist(), self.offsets.tolist(), strict=True):
            poly = _clip(poly, nx, ny, d)
            if not poly:
                break
        return np.array(poly, dtype=np.float64).reshape(-1, 2)

    def area(self) -> float:
        v = self.vertices()
        if len(v) < 3:
            return 0.0
        x, y = v[:, 0], v[:, 1]
        return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))

    def extent(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the region, pixels relative to the origin."""
        v = self.vertices()
        return (
            float(v[:, 0].min()),
            float(v[:, 1].min()),
            float(v[:, 0].max()),
            float(v[:, 1].max()),
        )


def _clip(
    poly: list[tuple[float, float]], nx: float, ny: float, d: float
) -> list[tuple[float, float]]:
    """Sutherland-Hodgman: keep the part of ``poly`` with n . p <= d. Plain floats: the
    polygons have < 16 vertices, where numpy's per-call overhead cost 10x the arithmetic."""
    out = []
    k = len(poly)
    f = [nx * x + ny * y - d for x, y in poly]
    for i in range(k):
        j = (i + 1) % k
        fp, fq = f[i], f[j]
        if fp <= 0:
            out.append(poly[i])
        if (fp < 0 < fq) or (fq < 0 < fp):
            t = fp / (fp - fq)
            (px, py), (qx, qy) = poly[i], poly[j]
            out.append((px + t * (qx - px), py + t * (qy - py)))
    return out


def random_flake(
    rng: np.random.Generator,
    radius_px: float,
    cleaves: tuple[int, int] = (0, 2),
    irregularity: float = 0.45,
) -> FlakeShape:
    """A random flake about ``radius_px`` in size.

    Six lattice edges at 60-degree steps from a random crystal orientation, each at a random
    distance in ``radius * [1 - irregularity, 1]`` (irregular hexagons; when some edges lie far
    out the others dominate, giving triangles and trapezoids with 60/120-degree corners), and
    ``cleaves`` extra straight edges at random angles (tears), never removing more than about
    half the flake.
    """
    if radius_px <= 0:
        raise ValueError(f"radius_px must be > 0; got {radius_px}")
    theta0 = rng.uniform(0, math.pi / 3)
    angles = theta0 + np.arange(6) * math.pi / 3
    normals = [np.stack([np.cos(angles), np.sin(angles)], 1)]
    offsets = [radius_px * rng.uniform(1 - irregularity, 1.0, 6)]
    # a triangle-like flake: every other lattice edge pushed far out
    if rng.random() < 0.25:
        offsets[0][::2] *= 1.8
    n_cut = int(rng.integers(cleaves[0], cleaves[1] + 1))
    if n_cut:
        a = rng.uniform(0, 2 * math.pi, n_cut)
        normals.append(np.stack([np.cos(a), np.sin(a)], 1))
        offsets.append(radius_px * rng.uniform(0.35, 0.9, n_cut))
    return FlakeShape(np.concatenate(normals), np.concatenate(offsets))


def split_terrace(
    rng: np.random.Generator, shape: FlakeShape, fraction: tuple[float, float] = (0.2, 0.5)
) -> tuple[FlakeShape, FlakeShape]:
    """Split a flake along a straight step edge into (thin part, thick terrace).

    The step runs along a lattice direction (steps in layered crystals follow the lattice);
    the thick part is the side {n . p >= c}, chosen so it covers about ``fraction`` of the
    flake. Both parts are convex, share the step edge, and do not overlap.
    """
    k = int(rng.integers(0, 6))
    base = math.atan2(shape.normals[0, 1], shape.normals[0, 0])
    ang = base + k * math.pi / 3
    n = np.array([math.cos(ang), math.sin(ang)])
    proj = shape.vertices() @ n
    lo, hi = float(proj.min()), float(proj.max())
    c = hi - rng.uniform(*fraction) * (hi - lo)
    return _split(shape, n, c)


def _split(shape: FlakeShape, n: np.ndarray, c: float) -> tuple[FlakeShape, FlakeShape]:
    """(shape with n . p <= c, shape with n . p >= c)."""
    a = shape.with_planes(np.vstack([shape.normals, n]), np.append(shape.offsets, c))
    b = shape.with_planes(np.vstack([shape.normals, -n]), np.append(shape.offsets, -c))
    return a, b


def split_fold(
    rng: np.random.Generator, shape: FlakeShape, fraction: tuple[float, float] = (0.1, 0.3)
) -> tuple[FlakeShape, FlakeShape]:
    """(flat part, folded part): a fold line at a random angle (folds do not follow the
    lattice) cuts off about ``fraction`` of the flake, which lies doubled over: the folded
    part holds twice the layers. The flap's mirror image lands on the flake itself, so the
    outline keeps its shape and only the doubled strip changes colour."""
    ang = rng.uniform(0, 2 * math.pi)
    n = np.array([math.cos(ang), math.sin(ang)])
    proj = shape.vertices() @ n
    lo, hi = float(proj.min()), float(proj.max())
    c = hi - rng.uniform(*fraction) * (hi - lo)
    return _split(shape, n, c)


def random_sliver(rng: np.random.Generator, length_px: float, width_px: float) -> FlakeShape:
    """An elongated sliver: a strip between two parallel lattice edges ``width_px`` apart,
    ``length_px`` long, its ends cut along the other two lattice directions (so the corners
    are 60 or 120 degrees, as in cleaved strips)."""
    if not (length_px > 0 and width_px > 0):
        raise ValueError(f"length_px and width_px must be > 0; got {length_px}, {width_px}")
    theta0 = rng.uniform(0, math.pi / 3)
    # strip: normals at theta0 and theta0 + pi; ends: the lattice normals 60 deg either side
    angles = theta0 + np.array([0.0, math.pi, math.pi / 3, math.pi / 3 + math.pi,
                                -math.pi / 3, -math.pi / 3 + math.pi])  # fmt: skip
    normals = np.stack([np.cos(angles), np.sin(angles)], 1)
    # an end plane at 60 deg to the strip's normal meets the axis at offset / sin(60 deg)
    end = 0.5 * length_px * math.sin(math.pi / 3) * rng.uniform(0.8, 1.0, 4)
    offsets = np.concatenate([[0.5 * width_px] * 2, end])
    return FlakeShape(normals, offsets)


def rasterize(
    shape: FlakeShape, cx: float, cy: float, height: int, width: int, softness_px: float = 0.8
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Coverage alpha of ``shape`` centred at (cx, cy), cropped to its box.

    Returns ``(alpha [h, w] float32 in [0, 1], (x0, y0, x1, y1))`` with the box in image
    pixels (exclusive end) clipped to the image. Edges fall off linearly over
    ``softness_px`` (anti-aliasing plus the optical blur of a real flake edge).
    """
    xmin, ymin, xmax, ymax = shape.extent()
    pad = softness_px + 1.0
    x0 = max(int(math.floor(cx + xmin - pad)), 0)
    y0 = max(int(math.floor(cy + ymin - pad)), 0)
    x1 = min(int(math.ceil(cx + xmax + pad)) + 1, width)
    y1 = min(int(math.ceil(cy + ymax + pad)) + 1, height)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0), np.float32), (x0, y0, x0, y0)
    # pixel centres at +0.5; a column and a row broadcast against each other
    xs = (np.arange(x0, x1, dtype=np.float64) + (0.5 - cx))[None, :]
    ys = (np.arange(y0, y1, dtype=np.float64) + (0.5 - cy))[:, None]
    sd = shape.sdf(xs, ys)
    alpha = np.clip(0.5 - sd / max(softness_px, 1e-6), 0.0, 1.0).astype(np.float32)
    return alpha, (x0, y0, x1, y1)


def rasterize_local(
    shape: FlakeShape, softness_px: float = 0.8
) -> tuple[np.ndarray, tuple[int, int]]:
    """The whole footprint of ``shape`` (unclipped) and the integer (x, y) position of the
    shape's origin inside it: drawn at top-left ``(X, Y)`` the origin is ``(X + x, Y + y)``."""
    xmin, ymin, _, _ = shape.extent()
    ox = int(math.ceil(-xmin + softness_px)) + 2
    oy = int(math.ceil(-ymin + softness_px)) + 2
    alpha, (x0, y0, _, _) = rasterize(shape, ox, oy, 1 << 30, 1 << 30, softness_px)
    return alpha, (ox - x0, oy - y0)
