"""Synthia renderer (QuPAINT Alg. 1): one synthetic microscopy image with COCO annotations.

``Synthia(config).sample(index)`` is a pure function of ``(config.seed, index)`` (its random
generator is seeded with both), so any number of workers produce identical images.

Pipeline per image, all compositing in linear sRGB:
1. background: a user reference image (linearised; Eq. 14) or a procedural chip: the TMM
   colour of bare SiO2/Si under the illuminant (Eq. 15) times a per-image white-balance gain
   drawn from ``gain_range`` (a lab's calibration), radial illumination fall-off, and dark
   debris / tape-residue blobs;
2. white balance: g = c_ref / c0 from the background's substrate (Alg. 1 lines 1-4);
3. substrate mask from the PIA map (Alg. 1 lines 5-7) and non-overlapping placement (line 11);
4. flakes: lattice-aligned shapes, optional terraces (thicker part, its own annotation),
   thickness = layers x monolayer, colour = g * Phi(T(air/flake/SiO2/Si)) (lines 12-14) from
   the fused stack-colour kernel, soft edges, slight intra-flake noise, optional CIELAB jitter;
5. slight blur and sensor noise, then sRGB encoding to uint8.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from qupaint._io import IMAGE_EXTS
from qupaint.categories import THICK_MIN_LAYERS, category_of
from qupaint.color import (
    Camera,
    delta_e,
    flake_color_table,
    lab_to_linear_srgb,
    linear_srgb_to_lab,
    srgb_decode,
    tmm_substrate_color,
)
from qupaint.optics import FLAKE_MATERIALS, get_material
from qupaint.synthia.finish import finish_image
from qupaint.synthia.flakes import random_flake, rasterize, rasterize_local, split_terrace
from qupaint.synthia.placement import PlacementGrid, substrate_mask
from qupaint.synthia.whitebalance import reference_substrate_color, white_balance_gain

__all__ = ["SynthiaConfig", "Synthia", "Sample"]


@dataclass
class SynthiaConfig:
    """Everything that defines a Synthia data set (saved in ``manifest.json``)."""

    seed: int = 0
    height: int = 512
    width: int = 512
    materials: tuple[str, ...] = FLAKE_MATERIALS
    oxide_nm: float = 285.0
    illuminant: str = "D65"
    #: a calibrated camera (``Camera.to_dict()``, e.g. from ``qupaint calibrate``): flakes and
    #: substrate are rendered in its RGB under its lamp (``illuminant`` is then unused);
    #: None renders linear sRGB under ``illuminant``
    camera: dict | None = None
    flakes_per_image: tuple[int, int] = (4, 8)
    radius_px: tuple[float, float] = (12.0, 60.0)  # log-uniform
    #: probabilities of Mono / Few (2-5) / Thick (6-max_layers); Mono kept high on purpose
    category_weights: tuple[float, float, float] = (0.4, 0.35, 0.25)
    max_layers: int = 30
    terrace_prob: float = 0.3
    gain_range: tuple[float, float] = (0.85, 1.15)  # per-channel white-balance gain
    vignetting: float = 0.15  # relative fall-off at the corners
    debris: tuple[int, int] = (0, 6)
    edge_softness_px: float = 1.2
    flake_noise: float = 0.01  # relative intra-flake noise
    sensor_noise: float = 0.008  # std in linear units
    blur_sigma_px: float = 0.6
    lab_jitter: float = 0.0  # std of a per-flake CIELAB jitter (Delta-E units); 0 = off
    reference_dir: str | None = None
    pia_patch: int = 8
    max_tries: int = 64

    def validate(self) -> None:
        if not self.materials:
            raise ValueError("materials: give at least one material")
        for m in self.materials:
            get_material(m)
        if self.height < 32 or self.width < 32:
            raise ValueError("height and width must be >= 32 px")
        lo, hi = self.radius_px
        if not 1 <= lo <= hi:
            raise ValueError(f"radius_px must satisfy 1 <= min <= max; got {self.radius_px}")
        if 2 * hi >= min(self.height, self.width):
            raise ValueError(
                f"radius_px max {hi} is too large: a flake must fit in the "
                f"{self.width}x{self.height} image (use < {min(self.height, self.width) / 2})"
            )
        a, b = self.flakes_per_image
        if not 0 <= a <= b:
            raise ValueError("flakes_per_image must be (min, max) with 0 <= min <= max")
        if self.max_layers < THICK_MIN_LAYERS:
            raise ValueError(
                f"max_layers must be >= {THICK_MIN_LAYERS} (the Thick category starts there)"
            )
        w = np.asarray(self.category_weights, float)
        if w.shape != (3,) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError("category_weights must be 3 non-negative numbers")
        if self.oxide_nm < 0:
            raise ValueError("oxide_nm must be >= 0")
        if self.camera is not None:
            Camera.from_dict(self.camera)  # a malformed camera fails here, not in a worker
        if self.reference_dir is not None and not _reference_files(self.reference_dir):
            raise ValueError(
                f"reference_dir {self.reference_dir!r} holds no image ({', '.join(IMAGE_EXTS)})"
            )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Sample:
    image: np.ndarray  # [H, W, 3] uint8 sRGB
    annotations: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)


@functools.lru_cache(maxsize=8)
def _reference_files(ref_dir: str) -> tuple[str, ...]:
    p = Path(ref_dir)
    if not p.is_dir():
        return ()
    return tuple(sorted(str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS))


class Synthia:
    """Deterministic synthetic flake images: ``Synthia(config).sample(index)``."""

    def __init__(self, config: SynthiaConfig | None = None):
        self.config = config or SynthiaConfig()
        self.config.validate()
        c = self.config
        self.camera = Camera.from_dict(c.camera) if c.camera is not None else None
        # pixels are written as the camera writes them (sRGB-encoded for the sRGB camera)
        self.gamma = (
            None if self.camera is None or self.camera.kind == "srgb" else self.camera.gamma
        )
        self.decode = (self.camera or Camera.srgb()).decode_table()
        self.c0 = tmm_substrate_color(float(c.oxide_nm), c.illuminant, camera=self.camera)
        # every colour this data set can use, computed once (terraces add up to 3 layers)
        self.colors = {
            get_material(m).name: flake_color_table(
                m, c.max_layers + 3, float(c.oxide_nm), c.illuminant, self.camera
            )
            for m in c.materials
        }

    # -- background -------------------------------------------------------------------
    def _procedural(self, rng) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        g = rng.uniform(*c.gain_range, 3)
        H, W = c.height, c.width
        cy, cx = H * rng.uniform(0.3, 0.7), W * rng.uniform(0.3, 0.7)
        # radial fall-off, separable: r^2 = dy^2 + dx^2 from a column and a row
        norm = 0.5 * (H * H + W * W)
        dy2 = ((np.arange(H, dtype=np.float64) - cy) ** 2 / norm).astype(np.float32)
        dx2 = ((np.arange(W, dtype=np.float64) - cx) ** 2 / norm).astype(np.float32)
        r2max = max(float(dy2.max() + dx2.max()), 1e-6)  # at a corner
        fall = 1.0 - (c.vignetting / r2max) * (dy2[:, None] + dx2[None, :])
        img = np.empty((H, W, 3), np.float32)
        for ch, v in enumerate((self.c0 * g).tolist()):  # 6x faster than a [..., None] broadcast
            np.multiply(fall, np.float32(v), out=img[..., ch])
        for _ in range(int(rng.integers(c.debris[0], c.debris[1] + 1))):
            shape = random_flake(rng, rng.uniform(2.0, 9.0), cleaves=(1, 3), irregularity=0.8)
            alpha, (x0, y0, x1, y1) = rasterize(
                shape, rng.uniform(0, W), rng.uniform(0, H), H, W, softness_px=2.0
            )
            shade = rng.uniform(0.25, 0.7) * (0.85 + 0.3 * rng.random(3))  # dark, slightly tinted
            for ch in range(3):  # region * (1 - alpha) + region * shade * alpha, in place
                reg = img[y0:y1, x0:x1, ch]
                reg *= 1.0 + alpha * np.float32(shade[ch] - 1.0)
        return img, g

    def _reference(self, index: int) -> np.ndarray:
        from PIL import Image

        files = _reference_files(self.config.reference_dir)
        path = files[index % len(files)]
        try:
            with Image.open(path) as im:
                im = im.convert("RGB").resize(
                    (self.config.width, self.config.height), Image.BILINEAR
                )
                arr = np.asarray(im)
        except Exception as exc:  # PIL raises many kinds
            raise ValueError(f"reference image {path} cannot be read: {exc}") from exc
        return np.asarray(srgb_decode(arr), dtype=np.float32)

    # -- one image --------------------------------------------------------------------
    def sample(self, index: int) -> Sample:
        c = self.config
        rng = np.random.default_rng([c.seed, int(index)])
        # augmentation draws from its own stream, so turning it on changes colours only
        jitter_rng = np.random.default_rng([c.seed, int(index), 1])
        H, W = c.height, c.width
        if c.reference_dir:
            img = self._reference(index)
        else:
            img, _ = self._procedural(rng)
        bg_srgb = finish_image(img, 0.0, 0.0, c.seed, index, gamma=self.gamma)
        m_sub, _ = substrate_mask(
            bg_srgb,
            patch_size=c.pia_patch,
            image_size=max(c.pia_patch, (min(H, W) // c.pia_patch) * c.pia_patch),
        )
        # white balance from the background's own substrate (Alg. 1 lines 1-4)
        c_ref = reference_substrate_color(bg_srgb, m_sub, stride=4, lut=self.decode)
        g = white_balance_gain(c_ref, self.c0)
        grid = PlacementGrid(m_sub, margin=2)
        material = c.materials[int(rng.integers(len(c.materials)))]
        mat_name = get_material(material).name
        requested = int(rng.integers(c.flakes_per_image[0], c.flakes_per_image[1] + 1))
        anns: list[dict] = []
        placed = 0
        for _ in range(requested):
            radius = math.exp(rng.uniform(math.log(c.radius_px[0]), math.log(c.radius_px[1])))
            shape = random_flake(rng, radius)
            layers = self._sample_layers(rng)
            parts = [(shape, layers)]
            if rng.random() < c.terrace_prob:
                thin, thick = split_terrace(rng, shape)
                parts = [(thin, layers), (thick, layers + int(rng.integers(1, 4)))]
            alpha, (ox, oy) = rasterize_local(shape, c.edge_softness_px)
            pos = grid.try_place(rng, alpha > 0, tries=c.max_tries)
            if pos is None:
                continue  # no valid spot left: fewer flakes, never overlap (recorded below)
            px, py = pos[0] + ox, pos[1] + oy  # image position of the shape's origin
            for part, nl in parts:
                anns.append(
                    self._composite(rng, jitter_rng, img, part, px, py, mat_name, nl, g, placed)
                )
            placed += 1
        if anns:  # Delta-E of every flake colour vs the substrate, in one call
            cols = np.array([a["color_linear_rgb"] for a in anns])
            de = np.asarray(delta_e(linear_srgb_to_lab(cols), linear_srgb_to_lab(c_ref)[None, :]))
            for a, d in zip(anns, de, strict=True):
                a["delta_e_vs_substrate"] = float(d)
        # blur, sensor noise (keyed by (seed, index)), clip, encode: one fused pass
        out = finish_image(img, c.blur_sigma_px, c.sensor_noise, c.seed, index, gamma=self.gamma)
        info = {
            "index": int(index),
            "material": mat_name,
            "flakes_requested": requested,
            "flakes_placed": placed,
            "gain": g.tolist(),
            "substrate_oxide_nm": c.oxide_nm,
            "illuminant": c.illuminant,
        }
        return Sample(out, anns, info)

    def _sample_layers(self, rng) -> int:
        c = self.config
        w = np.asarray(c.category_weights, float)
        cat = int(rng.choice(3, p=w / w.sum()))
        if cat == 0:
            return 1
        if cat == 1:
            return int(rng.integers(2, THICK_MIN_LAYERS))
        return int(rng.integers(THICK_MIN_LAYERS, c.max_layers + 1))

    def _composite(
        self, rng, jitter_rng, img, shape, px, py, material, layers, g, flake_id
    ) -> dict:
        c = self.config
        H, W = img.shape[:2]
        alpha, (x0, y0, x1, y1) = rasterize(shape, px, py, H, W, c.edge_softness_px)
        lin = self.colors[material][layers] * g  # Alg. 1 line 14
        if c.lab_jitter > 0:
            lab = linear_srgb_to_lab(lin) + jitter_rng.normal(0, c.lab_jitter, 3)
            lin = np.clip(np.asarray(lab_to_linear_srgb(lab)), 0, None)
        tex = 1.0 + c.flake_noise * rng.standard_normal(alpha.shape, dtype=np.float32)
        for ch in range(3):  # region * (1 - alpha) + colour * tex * alpha, per channel in place
            reg = img[y0:y1, x0:x1, ch]
            reg += alpha * (np.float32(lin[ch]) * tex - reg)
        verts = shape.vertices() + np.array([px, py])
        inside = alpha >= 0.5
        ys, xs = np.nonzero(inside)
        bbox = (
            [
                float(x0 + xs.min()),
                float(y0 + ys.min()),
                float(xs.max() - xs.min() + 1),
                float(ys.max() - ys.min() + 1),
            ]
            if len(xs)
            else [float(x0), float(y0), 0.0, 0.0]
        )
        return {
            "bbox": bbox,
            "segmentation": [np.round(verts.reshape(-1), 2).tolist()],
            "area": float(inside.sum()),
            "iscrowd": 0,
            "category_id": category_of(layers),
            "material": material,
            "layers": int(layers),
            "thickness_nm": float(layers * get_material(material).monolayer_nm),
            "substrate_oxide_nm": float(c.oxide_nm),
            "color_linear_rgb": [float(v) for v in lin],
            "delta_e_vs_substrate": None,  # filled per image in one batched call
            "flake_id": int(flake_id),  # terrace parts share their flake's id
        }
