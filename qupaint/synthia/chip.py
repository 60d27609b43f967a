"""A virtual microscope: one continuous synthetic chip, scanned in overlapping tiles.

A lab's motorised stage scans a chip in a serpentine of overlapping frames and reports the
stage position of each frame's centre. :func:`render_chip` does the same on a virtual chip
whose every flake is known, so that scan ingest, duplicate merging across tile borders and
stitching can be tested against the truth:

- the chip is one object in *global pixels* (``um_per_px`` per pixel, origin at the chip's
  top-left corner, x to the right and y down, as the camera sees it); stage coordinates
  are ``origin_mm + global_px * um_per_px / 1000``;
- its content is a pure function of the global coordinates: the oxide's colour through one
  camera (TMM, as in :class:`~qupaint.synthia.Synthia`), a slow lamp/oxide variation, a
  fixed fine texture of the chip surface, flakes (realistic sizes, terraces, ragged edges),
  free-standing bulk crystals and dark dust; so two tiles show exactly the same chip where
  they overlap;
- what belongs to a frame differs between frames, as on a real microscope: the lamp's
  fall-off (vignetting) around the frame's centre, sensor noise and JPEG;
- the stage does not land exactly where it is told: each frame's true position is the
  nominal one plus a small random jitter (``jitter_um``).

Written files (all atomically; a rerun renders only missing tiles):

- ``tiles/tile_NNNN.jpg`` in acquisition order (a serpentine by rows);
- ``positions.csv`` ``file,x_mm,y_mm``: the nominal stage position of each tile's centre, as
  the stage reports it;
- ``stage_truth.csv`` ``file,x_mm,y_mm``: where each tile's centre really was;
- ``truth.csv`` ``material,layers,x_mm,y_mm,area_um2,flake_id``: every flake part (a
  terrace is its own row, sharing its flake's id), centroid in stage coordinates;
- ``chip.json``: the settings (camera, oxide, scale, grid).
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from qupaint._io import atomic_open, atomic_write_bytes, image_bytes, write_json
from qupaint.categories import THICK_MIN_LAYERS
from qupaint.color import Camera, flake_color_table, tmm_substrate_color
from qupaint.color.microscope import Microscope
from qupaint.constants import REFERENCE_UM_PER_PX
from qupaint.optics import get_material
from qupaint.synthia.finish import finish_image
from qupaint.synthia.flakes import FlakeShape, random_flake, rasterize, split_terrace
from qupaint.synthia.realism import flake_radius_px

__all__ = ["ChipConfig", "VirtualChip", "render_chip", "replay_scan"]


@dataclass
class ChipConfig:
    """Everything that defines a virtual chip and its scan (saved in ``chip.json``)."""

    seed: int = 0
    #: tiles across and down; the chip is as large as the scan it needs
    tiles: tuple[int, int] = (4, 3)
    tile_px: tuple[int, int] = (1920, 1200)  # width, height of a frame
    um_per_px: float = REFERENCE_UM_PER_PX
    overlap: float = 0.1  # share of a frame shared with its neighbour
    material: str = "Graphene"
    #: a camera preset or ``Camera.to_dict()``; flakes and oxide are rendered through it
    camera: str | dict = "2dmatgmm"
    oxide_nm: float | None = None  # None: the camera file's calibrated oxide, else 90
    illuminant: str = "A"  # used without a camera
    #: the substrate's brightest channel, linear (the lamp and exposure; 0.6 is the purple
    #: 2DMatGMM graphene chips' level)
    substrate_level: float = 0.6
    flakes_per_mm2: float = 60.0
    #: probabilities of Mono / Few (2-5) / Thick (6-max_layers)
    category_weights: tuple[float, float, float] = (0.4, 0.4, 0.2)
    max_layers: int = 12
    size_um: tuple[float, float] = (18.0, 0.48)  # box side: log-normal (median, log-std)
    max_side_um: float = 90.0
    terrace_prob: float = 0.25
    rough_px: tuple[float, float] = (0.0, 1.5)
    crystals_per_mm2: float = 10.0  # free-standing bulk crystals (bright, unlabelled)
    dust_per_mm2: float = 120.0  # dark specks and particles, 1-4 um (unlabelled)
    vignetting: float = 0.12  # fall-off at a frame's corners
    lamp_variation: float = 0.02  # slow relative variation of the lamp/oxide over the chip
    texture: float = 0.01  # fixed fine texture of the chip surface (relative std)
    sensor_noise: float = 0.008
    blur_sigma_px: float = 0.5
    jitter_um: float = 1.0  # std of the stage's landing error per axis
    origin_mm: tuple[float, float] = (5.0, 5.0)  # stage position of the chip's corner
    jpeg_quality: int = 95  # 0: PNG

    def validate(self) -> None:
        nx, ny = self.tiles
        if nx < 1 or ny < 1:
            raise ValueError(f"tiles must be >= 1 across and down; got {self.tiles}")
        w, h = self.tile_px
        if w < 64 or h < 64:
            raise ValueError(f"tile_px must be at least 64x64; got {w}x{h}")
        if not 0.0 <= self.overlap < 0.5:
            raise ValueError(f"overlap must be in [0, 0.5); got {self.overlap}")
        if not self.um_per_px > 0:
            raise ValueError(f"um_per_px must be > 0; got {self.um_per_px}")
        get_material(self.material)
        if self.max_layers < THICK_MIN_LAYERS:
            raise ValueError(f"max_layers must be >= {THICK_MIN_LAYERS}")
        for name in ("flakes_per_mm2", "crystals_per_mm2", "dust_per_mm2", "jitter_um",
                     "vignetting", "lamp_variation", "texture", "sensor_noise",
                     "blur_sigma_px"):  # fmt: skip
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be finite and >= 0; got {v}")
        if not 0 < self.substrate_level <= 1:
            raise ValueError(f"substrate_level must be in (0, 1]; got {self.substrate_level}")
        if not 0 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 0-100 (0: PNG); got {self.jpeg_quality}")
        w8 = np.asarray(self.category_weights, float)
        if w8.shape != (3,) or np.any(w8 < 0) or w8.sum() <= 0:
            raise ValueError("category_weights must be 3 non-negative numbers")

    @classmethod
    def from_size(cls, size_mm: tuple[float, float], **kw) -> ChipConfig:
        """The scan that covers a ``size_mm`` (width, height) chip."""
        cfg = cls(**kw)
        step = cfg.step_px()
        tiles = []
        for side_mm, tile, st in zip(size_mm, cfg.tile_px, step, strict=True):
            if not side_mm > 0:
                raise ValueError(f"size_mm must be > 0; got {size_mm}")
            px = side_mm * 1000.0 / cfg.um_per_px
            tiles.append(max(1, math.ceil(max(px - tile, 0.0) / st) + 1))
        cfg.tiles = (tiles[0], tiles[1])
        return cfg

    def step_px(self) -> tuple[int, int]:
        w, h = self.tile_px
        return max(1, round(w * (1 - self.overlap))), max(1, round(h * (1 - self.overlap)))

    def to_dict(self) -> dict:
        return asdict(self)


def _hash_uniform(xs: np.ndarray, ys: np.ndarray, seed: int) -> np.ndarray:
    """Uniform [0, 1) noise that depends only on the global pixel (x, y) and the seed."""
    h = (xs.astype(np.uint64) * np.uint64(0x9E3779B1) + ys.astype(np.uint64)
         * np.uint64(0x85EBCA77) + np.uint64(seed * 0xC2B2AE3D + 0x27D4EB2F))  # fmt: skip
    h ^= h >> np.uint64(31)
    h *= np.uint64(0x7FB5D329728EA185)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x81DADEF4BC2DD44D)
    h ^= h >> np.uint64(33)
    return (h >> np.uint64(40)).astype(np.float32) / np.float32(1 << 24)


@dataclass
class _Part:
    shape: FlakeShape
    x: float  # global px of the shape's origin
    y: float
    ratio: np.ndarray  # colour relative to the substrate
    softness: float
    box: tuple[float, float, float, float]  # global px extent
    layers: int = 0
    flake_id: int = -1  # -1: unlabelled (crystal, dust)


@dataclass
class VirtualChip:
    """The chip: its flakes in global pixels and the scan's frames; ``tile(k)`` renders one."""

    config: ChipConfig
    parts: list = field(default_factory=list)
    nominal: np.ndarray = None  # [n, 2] global px of each frame's nominal centre
    true: np.ndarray = None  # [n, 2] where each frame's centre really was
    size_px: tuple[int, int] = (0, 0)

    @classmethod
    def build(cls, config: ChipConfig) -> VirtualChip:
        config.validate()
        c = config
        chip = cls(c)
        mic = (Microscope.load(c.camera) if isinstance(c.camera, str)
               else Microscope(camera=Camera.from_dict(c.camera)))  # fmt: skip
        cam = mic.camera
        chip.camera = cam
        chip.gamma = None if cam.kind == "srgb" else cam.gamma
        oxide = c.oxide_nm
        if oxide is None:  # a calibrated preset states the chip it was measured on
            oxide = mic.oxide_prior_nm
        chip.oxide_nm = float(oxide if oxide is not None else 90.0)
        mat = get_material(c.material).name
        chip.material = mat
        c0 = np.asarray(tmm_substrate_color(chip.oxide_nm, camera=cam))  # its lamp
        exposure = c.substrate_level / float(c0.max())
        chip.c0 = c0 * exposure
        table = flake_color_table(mat, 400, chip.oxide_nm, camera=cam)
        chip.table = np.asarray(table) * exposure
        rng = np.random.default_rng([c.seed, 7])
        w, h = c.tile_px
        sx, sy = c.step_px()
        nx, ny = c.tiles
        jit = c.jitter_um / c.um_per_px
        pad = int(math.ceil(4 * jit)) + 2
        W = w + (nx - 1) * sx + 2 * pad
        H = h + (ny - 1) * sy + 2 * pad
        chip.size_px = (W, H)
        nominal, true = [], []
        for j in range(ny):  # a serpentine, as stages scan
            cols = range(nx) if j % 2 == 0 else range(nx - 1, -1, -1)
            for i in cols:
                cx, cy = pad + w / 2 + i * sx, pad + h / 2 + j * sy
                nominal.append((cx, cy))
                dx, dy = np.clip(np.round(rng.normal(0, jit, 2)), -4 * jit, 4 * jit)
                true.append((cx + dx, cy + dy))
        chip.nominal = np.asarray(nominal, float)
        chip.true = np.asarray(true, float)
        area_mm2 = W * H * (c.um_per_px / 1000.0) ** 2
        chip._place(rng, area_mm2)
        return chip

    # -- content ----------------------------------------------------------------------
    def _place(self, rng, area_mm2: float) -> None:
        c = self.config
        W, H = self.size_px
        taken: list[tuple[float, float, float]] = []  # (x, y, r) of placed discs

        def free(x, y, r, margin):
            if not taken:
                return True
            t = np.asarray(taken)
            return bool(np.all(np.hypot(t[:, 0] - x, t[:, 1] - y) > t[:, 2] + r + margin))

        def spot(shape):
            """A free position for a flake or crystal (12 px clear of the others), or None."""
            x0, y0, x1, y1 = shape.extent()
            reach = max(-x0, -y0, x1, y1)
            x, y = rng.uniform(reach, W - reach), rng.uniform(reach, H - reach)
            if not free(x, y, reach, 12.0):
                return None
            taken.append((x, y, reach))
            return x, y

        lim = (4.0, 0.5 * c.max_side_um / c.um_per_px)
        w8 = np.asarray(c.category_weights, float)
        w8 = w8 / w8.sum()
        fid = 0
        for _ in range(int(rng.poisson(c.flakes_per_mm2 * area_mm2))):
            r = flake_radius_px(rng, c.size_um, c.um_per_px, lim)
            cat = int(rng.choice(3, p=w8))
            layers = 1 if cat == 0 else int(
                rng.integers(2, THICK_MIN_LAYERS) if cat == 1
                else rng.integers(THICK_MIN_LAYERS, c.max_layers + 1))  # fmt: skip
            shape = random_flake(rng, r)
            if c.rough_px[1] > 0:
                shape = FlakeShape(
                    shape.normals,
                    shape.offsets,
                    float(rng.uniform(*c.rough_px)),
                    float(rng.uniform(2.0, 5.0)),
                    int(rng.integers(2**31)),
                )
            at = spot(shape)
            if at is None:
                continue
            x, y = at
            parts = [(shape, layers)]
            if rng.random() < c.terrace_prob:
                thin, thick = split_terrace(rng, shape)
                parts = [(thin, layers), (thick, min(layers + int(rng.integers(1, 4)), 399))]
            for s, nl in parts:
                self._add(s, x, y, nl, 1.0, fid)
            fid += 1
        for _ in range(int(rng.poisson(c.crystals_per_mm2 * area_mm2))):
            shape = random_flake(rng, float(rng.uniform(15.0, 80.0)))
            at = spot(shape)
            if at is None:
                continue
            x, y = at
            self._add(shape, x, y, int(rng.integers(60, 300)), float(rng.uniform(1.0, 2.5)), -1)
        for _ in range(int(rng.poisson(c.dust_per_mm2 * area_mm2))):
            r_px = rng.uniform(1.0, 4.0) / c.um_per_px / 2 + 1.0
            shape = random_flake(rng, float(r_px), cleaves=(1, 3), irregularity=0.8)
            x, y = rng.uniform(0, W), rng.uniform(0, H)
            if not free(x, y, r_px, 4.0):
                continue
            shade = rng.uniform(0.3, 0.75) * (0.9 + 0.2 * rng.random(3))
            self._add(shape, x, y, 0, 1.5, -1, ratio=shade)

    def _add(self, shape, x, y, layers, softness, fid, ratio=None) -> None:
        if ratio is None:
            ratio = self.table[layers] / self.c0
        x0, y0, x1, y1 = shape.extent()
        pad = softness + 1.0
        self.parts.append(_Part(shape, x, y, np.asarray(ratio, np.float32), softness,
                                (x + x0 - pad, y + y0 - pad, x + x1 + pad, y + y1 + pad),
                                int(layers), int(fid)))  # fmt: skip

    def truth(self) -> list[dict]:
        """Every labelled flake part: material, layers, centroid (stage mm), area (um^2)."""
        c = self.config
        W, H = self.size_px
        out = []
        for p in self.parts:
            if p.flake_id < 0:
                continue
            alpha, (x0, y0, _, _) = rasterize(p.shape, p.x, p.y, H, W, p.softness)
            ys, xs = np.nonzero(alpha >= 0.5)
            if len(xs) == 0:
                continue
            gx, gy = x0 + xs.mean() + 0.5, y0 + ys.mean() + 0.5
            out.append({
                "material": self.material, "layers": p.layers,
                "x_mm": round(self.stage_mm(gx, 0), 6), "y_mm": round(self.stage_mm(gy, 1), 6),
                "area_um2": round(len(xs) * c.um_per_px**2, 3), "flake_id": p.flake_id,
            })  # fmt: skip
        return out

    def stage_mm(self, px: float, axis: int) -> float:
        """Stage coordinate (mm) of global pixel coordinate ``px`` along ``axis`` (0 x, 1 y)."""
        return self.config.origin_mm[axis] + px * self.config.um_per_px / 1000.0

    # -- frames -----------------------------------------------------------------------
    def tile(self, k: int) -> np.ndarray:
        """Frame ``k`` (acquisition order) as the camera writes it: [H, W, 3] uint8."""
        c = self.config
        w, h = c.tile_px
        X0 = int(round(self.true[k, 0] - w / 2))
        Y0 = int(round(self.true[k, 1] - h / 2))
        img = self._background(X0, Y0, w, h)
        for p in self.parts:
            bx0, by0, bx1, by1 = p.box
            if bx1 < X0 or by1 < Y0 or bx0 > X0 + w or by0 > Y0 + h:
                continue
            alpha, (x0, y0, x1, y1) = rasterize(p.shape, p.x - X0, p.y - Y0, h, w, p.softness)
            if alpha.size:
                reg = img[y0:y1, x0:x1]
                reg *= 1.0 + alpha[..., None] * (p.ratio - np.float32(1.0))
        if c.vignetting > 0:  # the lamp's fall-off belongs to the frame, not the chip
            yy = ((np.arange(h, dtype=np.float32) - h / 2) / (h / 2)) ** 2
            xx = ((np.arange(w, dtype=np.float32) - w / 2) / (w / 2)) ** 2
            img *= (1.0 - c.vignetting * 0.5 * (yy[:, None] + xx[None, :]))[..., None]
        out = finish_image(img, c.blur_sigma_px, c.sensor_noise, c.seed, k, gamma=self.gamma)
        return out

    def _background(self, X0: int, Y0: int, w: int, h: int) -> np.ndarray:
        c = self.config
        # slow variation: a coarse global grid of random values, interpolated
        cell = 400.0
        gx = (np.arange(X0, X0 + w, dtype=np.float64) + 0.5) / cell
        gy = (np.arange(Y0, Y0 + h, dtype=np.float64) + 0.5) / cell
        ix, iy = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
        fx, fy = (gx - ix).astype(np.float32), (gy - iy).astype(np.float32)

        def node(a, b):
            return _hash_uniform(a[None, :], b[:, None], c.seed + 11) - 0.5

        v00, v10 = node(ix, iy), node(ix + 1, iy)
        v01, v11 = node(ix, iy + 1), node(ix + 1, iy + 1)
        fx, fy = fx[None, :], fy[:, None]
        slow = (v00 * (1 - fx) * (1 - fy) + v10 * fx * (1 - fy) + v01 * (1 - fx) * fy
                + v11 * fx * fy)  # fmt: skip
        field_ = 1.0 + 2.0 * c.lamp_variation * slow
        if c.texture > 0:  # fine fixed texture: hashed global pixels, 3x3 box-smoothed
            xs = np.arange(X0 - 1, X0 + w + 1)
            ys = np.arange(Y0 - 1, Y0 + h + 1)
            u = _hash_uniform(xs[None, :], ys[:, None], c.seed + 13) - 0.5
            s = u[:-2] + u[1:-1] + u[2:]
            s = s[:, :-2] + s[:, 1:-1] + s[:, 2:]
            # uniform(-.5, .5) has std 1/sqrt(12); the 9-pixel mean has 1/(3 sqrt(12))
            field_ = field_ + (c.texture * 3.0 * math.sqrt(12.0) / 9.0) * s
        img = np.empty((h, w, 3), np.float32)
        for ch in range(3):
            np.multiply(field_, np.float32(self.c0[ch]), out=img[..., ch])
        return img


def _write_csv(path: Path, header: list[str], rows: list) -> None:
    with atomic_open(path, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(header)
        wr.writerows(rows)


_CHIP: VirtualChip | None = None


def _init(cfg: dict) -> None:
    global _CHIP
    _CHIP = VirtualChip.build(ChipConfig(**_tuples(cfg)))


def _tuples(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def _render_one(task: tuple[int, str]) -> int:
    k, path = task
    q = _CHIP.config.jpeg_quality
    img = _CHIP.tile(k)
    data = (image_bytes(img, "JPEG", quality=q, subsampling=0) if q > 0
            else image_bytes(img, "PNG", compress_level=1))  # fmt: skip
    atomic_write_bytes(path, data)
    return k


def render_chip(out: str | Path, config: ChipConfig | None = None, workers: int = 1,
                progress=None) -> dict:  # fmt: skip
    """Render the chip's scan into ``out`` (see the module doc); returns ``chip.json``'s
    content. Tiles already on disk are kept (a killed run resumes)."""
    from qupaint._pool import run_tasks

    cfg = config or ChipConfig()
    chip = VirtualChip.build(cfg)
    out = Path(out)
    (out / "tiles").mkdir(parents=True, exist_ok=True)
    ext = "jpg" if cfg.jpeg_quality > 0 else "png"
    names = [f"tiles/tile_{k:04d}.{ext}" for k in range(len(chip.nominal))]
    todo = [(k, str(out / n)) for k, n in enumerate(names) if not (out / n).exists()]
    done = len(names) - len(todo)
    for _ in run_tasks(_render_one, todo, workers=workers, initializer=_init,
                       initargs=(cfg.to_dict(),)):  # fmt: skip
        done += 1
        if progress is not None:
            progress(done, len(names))
    mm = cfg.um_per_px / 1000.0
    pos = [(n, round(cfg.origin_mm[0] + x * mm, 6), round(cfg.origin_mm[1] + y * mm, 6))
           for n, (x, y) in zip(names, chip.nominal, strict=True)]  # fmt: skip
    real = [(n, round(cfg.origin_mm[0] + x * mm, 6), round(cfg.origin_mm[1] + y * mm, 6))
            for n, (x, y) in zip(names, chip.true, strict=True)]  # fmt: skip
    _write_csv(out / "stage_truth.csv", ["file", "x_mm", "y_mm"], real)
    truth = chip.truth()
    keys = ["material", "layers", "x_mm", "y_mm", "area_um2", "flake_id"]
    _write_csv(out / "truth.csv", keys, [[t[k] for k in keys] for t in truth])
    meta = {
        "config": cfg.to_dict(), "material": chip.material, "oxide_nm": chip.oxide_nm,
        "um_per_px": cfg.um_per_px, "tiles": len(names), "grid": list(cfg.tiles),
        "chip_px": list(chip.size_px), "flake_parts": len(truth),
    }  # fmt: skip
    # the microscope (camera, oxide, scale) in the layout Microscope.load reads back
    meta.update(Microscope(camera=chip.camera, oxide_nm=chip.oxide_nm,
                           um_per_px=cfg.um_per_px).to_dict())  # fmt: skip
    write_json(out / "chip.json", meta)
    # last: a scanner watching the folder sees the positions once every tile is written
    _write_csv(out / "positions.csv", ["file", "x_mm", "y_mm"], pos)
    return meta


def replay_scan(src: str | Path, dst: str | Path, rate: float = 2.0, on_frame=None,
                done_marker: str = "scan_done") -> list[float]:  # fmt: skip
    """Play a rendered scan into ``dst`` as a microscope would write it: frame after frame,
    ``rate`` per second (each image written atomically, then its row appended to
    ``positions.csv``), then ``done_marker``. Returns the arrival time (``time.time()``)
    of each frame; ``on_frame(k, t)`` is called after each."""
    import time

    if not rate > 0:
        raise ValueError(f"rate must be > 0 frames per second; got {rate}")
    src, dst = Path(src), Path(dst)
    with open(src / "positions.csv", newline="") as f:
        rows = list(csv.reader(f))
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("chip.json",):
        if (src / name).is_file():  # atomically: a reader of the folder never sees it half
            atomic_write_bytes(dst / name, (src / name).read_bytes())
    pos = dst / "positions.csv"
    with open(pos, "w", newline="") as f:
        csv.writer(f).writerow(rows[0])
    times = []
    t0 = time.time()
    for k, row in enumerate(rows[1:]):
        wait = t0 + k / rate - time.time()
        if wait > 0:
            time.sleep(wait)
        target = dst / row[0]
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, (src / row[0]).read_bytes())
        with open(pos, "a", newline="") as f:
            csv.writer(f).writerow(row)
        times.append(time.time())
        if on_frame is not None:
            on_frame(k, times[-1])
    (dst / done_marker).write_text("")
    return times
