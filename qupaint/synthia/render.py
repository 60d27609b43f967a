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
from dataclasses import dataclass, field

import numpy as np

from qupaint import rle
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
from qupaint.optics import get_material
from qupaint.synthia.config import SynthiaConfig, reference_files
from qupaint.synthia.finish import finish_image
from qupaint.synthia.flakes import (
    FlakeShape,
    random_flake,
    rasterize,
    rasterize_local,
    split_terrace,
)
from qupaint.synthia.placement import PlacementGrid, substrate_mask
from qupaint.synthia.whitebalance import reference_substrate_color, white_balance_gain

__all__ = ["SynthiaConfig", "Synthia", "Sample"]


@dataclass
class Sample:
    image: np.ndarray  # [H, W, 3] uint8 sRGB
    annotations: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    #: [H, W] int32, k + 1 where annotations[k] covers the pixel (``sample(masks=True)``)
    masks: np.ndarray | None = None


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
        # the camera's lamp is the illuminant; ``illuminant`` lights the sRGB observer only
        self.lamp = c.illuminant if self.camera is None else None
        self.c0 = tmm_substrate_color(float(c.oxide_nm), self.lamp, camera=self.camera)
        # every colour this data set can use at its nominal oxide (terraces add up to 3
        # layers); other oxides (``oxide_choices_nm``) are computed on first use
        self.colors = {m: self._table(m, float(c.oxide_nm)) for m in self._names()}

    def _names(self) -> list[str]:
        return [get_material(m).name for m in self.config.materials]

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one renderer per worker, few keys
    def _table(self, material: str, oxide_nm: float) -> np.ndarray:
        c = self.config
        top = c.max_layers + 3
        if c.fold_prob > 0 or c.wrinkle_prob > 0:  # a fold doubles a terrace's layers
            top = 2 * top
        if c.attached_prob > 0 or c.bulk_crystals[1] > 0 or c.specks[1] > 0:
            top = max(top, c.bulk_layers[1])
        return flake_color_table(material, top, oxide_nm, self.lamp, self.camera)

    @functools.lru_cache(maxsize=256)  # noqa: B019
    def _substrate(self, oxide_nm: float) -> np.ndarray:
        return tmm_substrate_color(oxide_nm, self.lamp, camera=self.camera)

    @functools.lru_cache(maxsize=1024)  # noqa: B019
    def _bubble(self, material: str, layers: int, gap_nm: float, oxide_nm: float) -> np.ndarray:
        """Linear colour of a flake over an air bubble ``gap_nm`` thick (TMM)."""
        from qupaint.color import stack_color

        t = layers * get_material(material).monolayer_nm
        kw = {"camera": self.camera} if self.camera else {"illuminant": self.config.illuminant}
        st = [(material, t), ("air", gap_nm)] + ([("SiO2", oxide_nm)] if oxide_nm > 0 else [])
        return np.asarray(stack_color(st, **kw))

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
        self._debris(img, rng)
        return img, g

    def _debris(self, img: np.ndarray, rng) -> None:
        """Dark dust and particles: small irregular blobs, slightly tinted (in place)."""
        c = self.config
        H, W = img.shape[:2]
        for _ in range(int(rng.integers(c.debris[0], c.debris[1] + 1))):
            shape = random_flake(rng, rng.uniform(2.0, 9.0), cleaves=(1, 3), irregularity=0.8)
            alpha, (x0, y0, x1, y1) = rasterize(
                shape, rng.uniform(0, W), rng.uniform(0, H), H, W, softness_px=2.0
            )
            shade = rng.uniform(0.25, 0.7) * (0.85 + 0.3 * rng.random(3))  # dark, slightly tinted
            for ch in range(3):  # region * (1 - alpha) + region * shade * alpha, in place
                reg = img[y0:y1, x0:x1, ch]
                reg *= 1.0 + alpha * np.float32(shade[ch] - 1.0)

    def _reference(self, index: int) -> np.ndarray:
        from PIL import Image

        files = reference_files(self.config.reference_dir)
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
    def sample(self, index: int, masks: bool = False) -> Sample:
        """Image ``index`` with its annotations; ``masks=True`` adds ``Sample.masks``, the
        [H, W] int32 map of annotation numbers (k + 1 for ``annotations[k]``, 0 elsewhere),
        exactly the pixels each annotation covers (alpha >= 0.5)."""
        c = self.config
        rng = np.random.default_rng([c.seed, int(index)])
        # augmentation draws from its own stream, so turning it on changes colours only
        jitter_rng = np.random.default_rng([c.seed, int(index), 1])
        # so does realism: the classic draws above are the same whatever it adds
        xrng = np.random.default_rng([c.seed, int(index), 3])
        H, W = c.height, c.width
        oxide = float(c.oxide_nm)
        if c.oxide_choices_nm:
            oxide = float(c.oxide_choices_nm[int(xrng.integers(len(c.oxide_choices_nm)))])
            oxide = max(0.0, 5.0 * round((oxide + xrng.uniform(-1, 1) * c.oxide_jitter_nm) / 5))
        c0 = self.c0 if oxide == c.oxide_nm else self._substrate(oxide)
        fr = _Frame(oxide, c0, np.zeros((H, W), np.int32) if masks else None, [])
        bg_info: dict = {}
        if c.reference_dir:
            img = self._reference(index)
        elif c.backgrounds == "real":
            from qupaint.synthia.realism import background_crop

            crop, bg_info = background_crop(xrng, H, W)
            img = self.decode[crop].astype(np.float32)
            self._debris(img, xrng)
        else:
            img, _ = self._procedural(rng)
        self._clutter(xrng, img, fr)
        bg_srgb = finish_image(img, 0.0, 0.0, c.seed, index, gamma=self.gamma)
        m_sub, _ = substrate_mask(
            bg_srgb,
            patch_size=c.pia_patch,
            image_size=max(c.pia_patch, (min(H, W) // c.pia_patch) * c.pia_patch),
        )
        # white balance from the background's own substrate (Alg. 1 lines 1-4)
        c_ref = reference_substrate_color(bg_srgb, m_sub, stride=4, lut=self.decode)
        g = white_balance_gain(c_ref, c0)
        fr.gain = g
        for a in fr.anns:  # the crystals painted before the gain was known
            a["color_linear_rgb"] = (np.asarray(a["color_linear_rgb"]) * g).tolist()
        grid = PlacementGrid(m_sub, margin=2)
        material = c.materials[int(rng.integers(len(c.materials)))]
        mat_name = get_material(material).name
        requested = int(rng.integers(c.flakes_per_image[0], c.flakes_per_image[1] + 1))
        placed = 0
        for _ in range(requested):
            radius = math.exp(rng.uniform(math.log(c.radius_px[0]), math.log(c.radius_px[1])))
            shape = random_flake(rng, radius)
            layers = self._sample_layers(rng)
            parts = [(shape, layers)]
            if rng.random() < c.terrace_prob:
                thin, thick = split_terrace(rng, shape)
                parts = [(thin, layers), (thick, layers + int(rng.integers(1, 4)))]
            shape, parts = self._morphology(xrng, shape, parts, layers)
            alpha, (ox, oy) = rasterize_local(shape, c.edge_softness_px)
            pos = grid.try_place(rng, alpha > 0, tries=c.max_tries)
            if pos is None:
                continue  # no valid spot left: fewer flakes, never overlap (recorded below)
            px, py = pos[0] + ox, pos[1] + oy  # image position of the shape's origin
            first = len(fr.anns)
            for part, nl in parts:
                fr.anns.append(
                    self._composite(rng, jitter_rng, img, part, px, py, mat_name, nl, fr, placed)
                )
            self._inclusions(xrng, img, shape, px, py, mat_name, fr.anns[first], fr)
            placed += 1
        anns = fr.anns
        if anns:  # Delta-E of every flake colour vs the substrate, in one call
            cols = np.array([a["color_linear_rgb"] for a in anns])
            de = np.asarray(delta_e(linear_srgb_to_lab(cols), linear_srgb_to_lab(c_ref)[None, :]))
            for a, d in zip(anns, de, strict=True):
                a["delta_e_vs_substrate"] = float(d)
        img, optics = self._optics(xrng, img, c_ref)
        # blur, sensor noise (keyed by (seed, index)), clip, encode: one fused pass
        noise = c.sensor_noise
        if c.noise_range[1] > 0:
            noise = float(xrng.uniform(*c.noise_range))
            optics["sensor_noise"] = noise
        out = finish_image(img, c.blur_sigma_px, noise, c.seed, index, gamma=self.gamma)
        if c.jpeg_quality[1] > 0:
            from qupaint.synthia.realism import jpeg_roundtrip

            q = int(xrng.integers(c.jpeg_quality[0], c.jpeg_quality[1] + 1))
            out = jpeg_roundtrip(out, q)
            optics["jpeg_quality"] = q
        info = {
            "index": int(index),
            "material": mat_name,
            "flakes_requested": requested,
            "flakes_placed": placed,
            "gain": g.tolist(),
            "substrate_oxide_nm": oxide,
            "illuminant": c.illuminant,
        }
        if bg_info:
            info["background"] = bg_info["file"]
        info.update(optics)
        return Sample(out, anns, info, fr.ids)

    def _sample_layers(self, rng) -> int:
        c = self.config
        w = np.asarray(c.category_weights, float)
        cat = int(rng.choice(3, p=w / w.sum()))
        if cat == 0:
            return 1
        if cat == 1:
            return int(rng.integers(2, THICK_MIN_LAYERS))
        return int(rng.integers(THICK_MIN_LAYERS, c.max_layers + 1))

    # -- realism ----------------------------------------------------------------------
    def _morphology(self, xrng, shape, parts, layers):
        """Realistic size, slivers, ragged edges, thin flakes on thick crystals, folds."""
        c = self.config
        if not (c.size_um or c.sliver_prob or c.rough_px[1] or c.attached_prob or c.fold_prob):
            return shape, parts
        from qupaint.synthia.flakes import random_sliver, split_fold
        from qupaint.synthia.realism import flake_radius_px

        lim = (c.radius_px[0], min(c.radius_px[1], 0.45 * min(c.height, c.width)))
        if c.size_um is not None or xrng.random() < c.sliver_prob:
            r = (flake_radius_px(xrng, c.size_um, c.um_per_px, lim) if c.size_um
                 else math.sqrt(max(shape.area(), 1.0) / math.pi))  # fmt: skip
            if xrng.random() < c.sliver_prob:
                aspect = xrng.uniform(2.5, 7.0)
                length = min(2 * r * math.sqrt(aspect), 2 * lim[1])
                shape = random_sliver(xrng, length, max(2 * r / math.sqrt(aspect), 3.0))
            else:
                shape = random_flake(xrng, r)
            parts = [(shape, layers)]
        if c.rough_px[1] > 0:
            rough = float(xrng.uniform(*c.rough_px))
            step = float(xrng.uniform(2.0, 5.0))
            shape = FlakeShape(shape.normals, shape.offsets, rough, step, int(xrng.integers(2**31)))
            parts = [(shape, layers)]
        if layers < THICK_MIN_LAYERS and xrng.random() < c.attached_prob:
            thin, thick = split_terrace(xrng, shape, fraction=(0.3, 0.6))
            parts = [(thin, layers), (thick, int(xrng.integers(*c.bulk_layers)))]
        elif xrng.random() < c.fold_prob:
            flat, fold = split_fold(xrng, shape)
            parts = [(flat, layers), (fold, 2 * layers)]
        return shape, parts

    def _inclusions(self, xrng, img, shape, px, py, material, ann, fr) -> None:
        """Wrinkles (double-layer lines) and bubbles (air under the flake) inside a flake;
        painted only, they stay part of the flake's annotation."""
        c = self.config
        layers = ann["layers"]
        if c.wrinkle_prob and xrng.random() < c.wrinkle_prob:
            x0, y0, x1, y1 = shape.extent()
            ang = xrng.uniform(0, math.pi)
            n = np.array([math.cos(ang), math.sin(ang)])
            proj = shape.vertices() @ n
            mid = xrng.uniform(proj.min(), proj.max())
            w = xrng.uniform(0.8, 2.0)
            planes = np.append(shape.offsets, [mid + w / 2, -(mid - w / 2)])
            strip = shape.with_planes(np.vstack([shape.normals, n, -n]), planes)
            self._paint(img, strip, px, py, self._ratio(material, 2 * layers, fr), 0.7)
        if c.bubble_prob and xrng.random() < c.bubble_prob:
            for _ in range(int(xrng.integers(1, 4))):
                r = xrng.uniform(1.5, 5.0)
                a = np.linspace(0, 2 * math.pi, 12, endpoint=False)
                disc = FlakeShape(np.stack([np.cos(a), np.sin(a)], 1), np.full(12, r))
                v = shape.vertices()
                cx, cy = v[int(xrng.integers(len(v)))] * xrng.uniform(0.0, 0.6)
                gap = 5.0 * round(xrng.uniform(10.0, 60.0) / 5)
                ratio = self._bubble(material, layers, gap, fr.oxide) / fr.c0
                self._paint(img, disc, px + cx, py + cy, ratio, 1.0)

    def _ratio(self, material: str, layers: int, fr) -> np.ndarray:
        return self._table(material, fr.oxide)[layers] / fr.c0

    def _paint(self, img, shape, px, py, ratio, softness) -> tuple[np.ndarray, tuple]:
        """Multiply the local background by ``ratio`` under ``shape`` (in place); returns
        the coverage and its box, as :func:`rasterize` does."""
        H, W = img.shape[:2]
        alpha, (x0, y0, x1, y1) = rasterize(shape, px, py, H, W, softness)
        reg = img[y0:y1, x0:x1]
        reg *= 1.0 + alpha[..., None] * (np.asarray(ratio, np.float32) - 1.0)
        return alpha, (x0, y0, x1, y1)

    def _clutter(self, xrng, img, fr) -> None:
        """Residue films, scratches and free-standing thick crystals on the background."""
        c = self.config
        H, W = img.shape[:2]
        if c.residue[1] > 0:
            from qupaint.synthia.realism import paint_residue

            for _ in range(int(xrng.integers(c.residue[0], c.residue[1] + 1))):
                t = 5.0 * round(xrng.uniform(*c.residue_nm) / 5)
                ratio = self._substrate(fr.oxide + t) / fr.c0
                side = min(H, W)
                paint_residue(img, xrng, ratio, xrng.uniform(min(40.0, 0.3 * side), 0.6 * side))
        if c.scratches[1] > 0:
            from qupaint.synthia.realism import paint_scratches

            paint_scratches(img, xrng, int(xrng.integers(c.scratches[0], c.scratches[1] + 1)))
        if c.specks[1] > 0:  # tiny thick fragments: bright, coloured, often clipped
            material = get_material(c.materials[int(xrng.integers(len(c.materials)))]).name
            for _ in range(int(xrng.integers(c.specks[0], c.specks[1] + 1))):
                shape = random_flake(xrng, float(xrng.uniform(1.5, 5.0)), irregularity=0.6)
                layers = int(xrng.integers(*c.bulk_layers))
                px, py = xrng.uniform(0, W), xrng.uniform(0, H)
                self._paint(img, shape, px, py, self._ratio(material, layers, fr), 1.0)
        if c.bulk_crystals[1] > 0:
            from qupaint.synthia.realism import edge_halo

            material = get_material(c.materials[int(xrng.integers(len(c.materials)))]).name
            free = PlacementGrid(np.ones((H, W), bool), margin=8)  # crystals never overlap
            for k in range(int(xrng.integers(c.bulk_crystals[0], c.bulk_crystals[1] + 1))):
                side = min(H, W)
                r = float(xrng.uniform(min(10.0, 0.15 * side), min(80.0, 0.3 * side)))
                shape = random_flake(xrng, r)
                layers = int(xrng.integers(*c.bulk_layers))
                soft = float(xrng.uniform(1.0, 3.0))  # out of the focal plane
                foot, (ox, oy) = rasterize_local(shape, soft)
                pos = free.try_place(xrng, foot > 0, tries=16)
                if pos is None:
                    continue
                px, py = pos[0] + ox, pos[1] + oy
                ratio = self._ratio(material, layers, fr)
                a0, box = self._paint(img, shape, px, py, ratio, soft)
                # scattering halo: a dark rim outside the edge (the shape grown by 6 px)
                grown = FlakeShape(shape.normals, shape.offsets + 6.0)
                sub, (x0, y0, x1, y1) = rasterize(grown, px, py, H, W, soft)
                big = np.zeros(sub.shape, np.float32)
                big[box[1] - y0 : box[3] - y0, box[0] - x0 : box[2] - x0] = a0
                halo = edge_halo(big, float(xrng.uniform(1.0, 2.5)))
                img[y0:y1, x0:x1] *= (1.0 - xrng.uniform(0.1, 0.3) * halo)[..., None]
                a = self._annotation(shape, px, py, a0, box, material, layers, fr, -1 - k)
                a["bulk"] = True
                a["color_linear_rgb"] = (ratio * fr.c0).tolist()
                fr.anns.append(a)

    def _optics(self, xrng, img, c_ref) -> tuple[np.ndarray, dict]:
        """Field-varying defocus, chromatic fringes, the camera's white balance, exposure."""
        c = self.config
        info: dict = {}
        if c.defocus_px > 0:
            from qupaint.synthia.realism import field_defocus

            field_defocus(img, xrng, c.defocus_px)
        if c.chromatic_px > 0:
            from qupaint.synthia.realism import chromatic_shift

            img = chromatic_shift(img, float(xrng.uniform(0.3, 1.0)) * c.chromatic_px)
        gains = np.ones(3)
        if c.white_balance_strength[1] > 0:
            from qupaint.synthia.realism import camera_white_balance

            strength = float(xrng.uniform(*c.white_balance_strength))
            gains = camera_white_balance(c_ref, strength)
            info["white_balance_strength"] = strength
        if c.exposure != (1.0, 1.0):
            e = float(xrng.uniform(*c.exposure))
            gains = gains * e
            info["exposure"] = e
        if np.any(gains != 1.0):
            img *= gains.astype(np.float32)
            info["camera_gains"] = gains.tolist()
        return img, info

    # -- compositing ------------------------------------------------------------------
    def _composite(
        self, rng, jitter_rng, img, shape, px, py, material, layers, fr, flake_id
    ) -> dict:
        c = self.config
        H, W = img.shape[:2]
        alpha, box = rasterize(shape, px, py, H, W, c.edge_softness_px)
        x0, y0, x1, y1 = box
        lin = self._table(material, fr.oxide)[layers] * fr.gain  # Alg. 1 line 14
        if c.lab_jitter > 0:
            lab = linear_srgb_to_lab(lin) + jitter_rng.normal(0, c.lab_jitter, 3)
            lin = np.clip(np.asarray(lab_to_linear_srgb(lab)), 0, None)
        tex = 1.0 + c.flake_noise * rng.standard_normal(alpha.shape, dtype=np.float32)
        if c.relative_color:  # the local background times the flake's contrast
            ratio = lin / (fr.c0 * fr.gain)
            for ch in range(3):
                reg = img[y0:y1, x0:x1, ch]
                reg *= 1.0 + alpha * (np.float32(ratio[ch]) * tex - 1.0)
        else:
            for ch in range(3):  # region * (1 - alpha) + colour * tex * alpha, in place
                reg = img[y0:y1, x0:x1, ch]
                reg += alpha * (np.float32(lin[ch]) * tex - reg)
        ann = self._annotation(shape, px, py, alpha, box, material, layers, fr, flake_id)
        ann["color_linear_rgb"] = [float(v) for v in lin]
        if c.relative_color:  # per-channel optical contrast C = I / I_sub - 1 it was drawn with
            ann["contrast"] = [round(float(v) - 1.0, 6) for v in ratio]
        return ann

    def _annotation(self, shape, px, py, alpha, box, material, layers, fr, flake_id) -> dict:
        x0, y0, _, _ = box
        H, W = self.config.height, self.config.width
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
        if shape.rough_px > 0:  # the outline is the raster's, not the smooth polygon's
            segmentation = rle.encode_window(inside, y0, x0, H, W)
        else:
            verts = shape.vertices() + np.array([px, py])
            segmentation = [np.round(verts.reshape(-1), 2).tolist()]
        if fr.ids is not None:
            fr.ids[y0 : y0 + inside.shape[0], x0 : x0 + inside.shape[1]][inside] = len(fr.anns) + 1
        return {
            "bbox": bbox,
            "segmentation": segmentation,
            "area": float(inside.sum()),
            "iscrowd": 0,
            "category_id": category_of(layers),
            "material": material,
            "layers": int(layers),
            "thickness_nm": float(layers * get_material(material).monolayer_nm),
            "substrate_oxide_nm": float(fr.oxide),
            "color_linear_rgb": None,
            "delta_e_vs_substrate": None,  # filled per image in one batched call
            "flake_id": int(flake_id),  # terrace parts share their flake's id
        }


@dataclass
class _Frame:
    """Per-image state of one render."""

    oxide: float
    c0: np.ndarray
    ids: np.ndarray | None
    anns: list
    gain: np.ndarray | None = None
