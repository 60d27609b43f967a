"""Synthia flakes composited onto whole real chips: the ``real-chips`` training mode.

A segmenter trained on fully rendered scenes learns the renderer. Here the scene is a real
micrograph that nobody labelled (a folder of them: the MaskTerial and 2DMatGMM demo chips,
say). It brings what no renderer has: the lab's own crystals with their saturated tops and
coloured rims, broken-crystal debris, tape residue, dust, bands, vignetting, defocus, the
sensor's noise and the camera's JPEG. Onto it go Synthia's flakes, and only their pixels are
labelled:

* **The colour is the physics.** A flake of ``L`` layers of a material on ``oxide`` nm of SiO2
  multiplies the local background by ``1 + C``, with ``C`` its per-channel contrast through
  the camera (:func:`qupaint.color.channel_contrast`, the ``2dmatgmm`` camera by default).
  A per-image tone exponent (``(1 + C)^k``) and a per-flake jitter stand for the camera
  response and the model's error.
* **The shapes are exfoliation's.** Cleaved lattice polygons with ragged edges, slivers,
  terraces (a thin part stepping up to a thicker one), folds (a doubled strip), touching
  flakes of different thickness, and thin flakes that run out from a real crystal of the
  chip (the crystal is painted back over them).
* **What is not labelled is not taught.** Real thin flakes already on the chip are unknown:
  the physics detector's thin candidates on each chip, grown by a margin, are left out of
  the loss (the *ignore* mask), so an unlabelled real flake neither rewards nor punishes.
* **The microscope's distractors.** Besides the chip's own: flakes of 7-60 layers, more of
  them few (6 layers are left out of the loss, see :data:`UNSURE_MAX`), and the dark edge
  of the field stop (:func:`field_stop`), which a contrast map shows as a huge, smooth,
  dark "flake".
* **The camera's finish.** An exposure factor and a gamma (the ``dark`` and ``gamma`` camera
  settings) and a JPEG round trip at quality 100 with 4:2:0 chroma, as the shared real
  micrographs were saved.

Targets per pixel (as :func:`qupaint.seg.train.render_training_set` gives them): visible
thin flake (1-5 layers), the cut between a thin flake and a touching flake or crystal, and
ignore. No real label of any kind is used.

Example
-------
>>> import numpy as np
>>> chip = np.full((200, 240, 3), (150, 110, 160), np.uint8)
>>> comp = ChipComposer([chip], CompositeConfig(size=128))
>>> img, target, material, oxide_nm = comp.sample(0)
>>> img.shape, img.dtype, target.shape, material in CompositeConfig().materials
((128, 128, 3), dtype('uint8'), (3, 128, 128), True)
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from qupaint.categories import THICK_MIN_LAYERS
from qupaint.constants import REFERENCE_UM_PER_PX
from qupaint.synthia.flakes import (
    FlakeShape,
    random_flake,
    random_sliver,
    rasterize,
    split_fold,
    split_terrace,
)
from qupaint.synthia.realism import jpeg_roundtrip

__all__ = ["Composite", "CompositeConfig", "ChipComposer", "ignore_mask", "chip_material",
           "field_stop"]  # fmt: skip

#: the thickest flake the segmenter marks (QF-Bench "Few" ends at 5 layers)
THIN_MAX = THICK_MIN_LAYERS - 1
#: a thin flake whose contrast stays under this in every channel cannot be seen
VISIBLE = 0.02
#: flakes of 6 to this many layers are left out of the loss: at the line between Few and
#: Thick, which the physics detector draws, not the segmenter
UNSURE_MAX = 6


def field_stop(rng: np.random.Generator, side: int) -> np.ndarray:
    """[side, side] float32 illumination factor of a field-stop or vignetting edge: the
    light falls off smoothly (over 15-150 px, to 10-70 % of itself) outside a large circle
    whose edge crosses the crop, as at the corners of a real microscope's field."""
    u = rng.normal(size=2)
    u /= np.linalg.norm(u) + 1e-12
    radius = float(rng.uniform(2.0, 6.0)) * side
    edge = float(rng.uniform(-0.3, 0.5)) * side  # where the edge crosses, from the centre
    centre = side / 2 - (radius - edge) * u
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    out = np.hypot(xx + 0.5 - centre[0], yy + 0.5 - centre[1]) - radius
    t = np.clip(out / float(rng.uniform(15.0, 150.0)), 0.0, 1.0)
    depth = float(rng.uniform(0.3, 0.9))
    return (1.0 - depth * t * t * (3 - 2 * t)).astype(np.float32)


class Composite(NamedTuple):
    """One training image of :class:`ChipComposer`."""

    image: np.ndarray  #: uint8 [S, S, 3]
    target: np.ndarray  #: bool [3, S, S]: visible thin flake, cut, ignore
    material: str  #: the flakes' material
    oxide_nm: float  #: the SiO2 their colours were computed for


@dataclass(frozen=True)
class CompositeConfig:
    """How :class:`ChipComposer` composites. Sizes are pixels at the chip's own scale
    (``um_per_px``); ``size_um`` is the log-normal box side of a flake (median um,
    log-std), as Synthia's realistic mode draws it."""

    size: int = 320
    flakes: tuple[int, int] = (1, 5)
    materials: tuple[str, ...] = ("graphene", "WSe2", "MoS2", "MoSe2", "WS2")
    oxide_nm: tuple[float, float] = (60.0, 110.0)
    thick_oxide_prob: float = 0.15  # a 260-300 nm oxide instead
    thin_prob: float = 0.6  # else a thicker flake (log-uniform): 6 layers ignored, 7-60 negative
    # the labelled crops measure 18 um (box side, log-std 0.48: SynthiaConfig.realistic); a
    # flake fills about 0.6 of its box, so its own side is about 0.8 of that: 14 um
    size_um: tuple[float, float] = (14.0, 0.5)
    um_per_px: float = REFERENCE_UM_PER_PX
    sliver_prob: float = 0.2
    terrace_prob: float = 0.25
    fold_prob: float = 0.1
    touching_prob: float = 0.2
    crystal_prob: float = 0.35  # run out from a real crystal of the crop
    rough_px: tuple[float, float] = (0.0, 1.5)
    softness_px: tuple[float, float] = (0.7, 1.6)
    tone: tuple[float, float] = (0.8, 1.25)
    contrast_jitter: float = 0.1
    exposure: tuple[float, float] = (0.45, 1.1)
    gamma: tuple[float, float] = (0.7, 1.0)
    gamma_prob: float = 0.2
    scale: tuple[float, float] = (0.8, 1.25)
    field_stop_prob: float = 0.25
    # with real flake pieces (ChipComposer's ``pieces``): the share of images that get
    # them, their count then, and the synthetic flakes' count in those images
    paste_prob: float = 0.5
    pasted: tuple[int, int] = (1, 4)
    jpeg_quality: int = 100
    camera: str = "2dmatgmm"

    def __post_init__(self):
        if self.size < 32:
            raise ValueError(f"size must be >= 32 px; got {self.size}")
        if not 0 <= self.flakes[0] <= self.flakes[1]:
            raise ValueError(f"flakes must be (lo, hi) with 0 <= lo <= hi; got {self.flakes}")
        if not 0 < self.oxide_nm[0] <= self.oxide_nm[1]:
            raise ValueError(f"oxide_nm must be (lo, hi) > 0; got {self.oxide_nm}")


def chip_material(path: str | os.PathLike) -> str | None:
    """The material a demo chip's folder names (``maskterial/WS2/x.jpg`` -> ``WS2``,
    ``hBN_Thin`` -> ``hBN``, ``2dmatgmm-demo`` -> graphene), or None."""
    parts = [p.lower() for p in os.fspath(path).replace("\\", "/").split("/")]
    names = (("mose2", "MoSe2"), ("ws2", "WS2"), ("wse2", "WSe2"), ("mos2", "MoS2"),
             ("hbn", "hBN"), ("graphene", "graphene"), ("2dmatgmm", "graphene"))  # fmt: skip
    for key, name in names:
        if any(key in p for p in parts[-3:]):
            return name
    return None


def ignore_mask(image: np.ndarray, material: str | None, margin: int = 12) -> np.ndarray:
    """[H, W] bool: the boxes of the physics detector's thin candidates on an unlabelled
    chip (``qupaint.detect`` with the ``2dmatgmm`` preset), grown by ``margin`` px: where a
    real thin flake may lie that no label marks. Without a material, graphene's ladder."""
    from qupaint.detect import DetectorSettings, detect

    settings = DetectorSettings.from_microscope("2dmatgmm")
    H, W = image.shape[:2]
    out = np.zeros((H, W), bool)
    for d in detect(image, material or "graphene", settings):
        if not 1 <= int(d.get("layers", 99)) <= THIN_MAX:
            continue
        x, y, w, h = (int(round(v)) for v in d["bbox"])
        out[max(0, y - margin) : y + h + margin, max(0, x - margin) : x + w + margin] = True
    return out


@functools.lru_cache(maxsize=256)
def _contrast(material: str, oxide_nm: float, camera: str) -> np.ndarray:
    """[61, 3] pixel contrast of 0..60 layers (row 0 is the bare substrate, 0)."""
    from qupaint.color import Camera, channel_contrast

    c = channel_contrast(material, np.arange(1, 61), oxide_nm, Camera.preset(camera))
    return np.concatenate([np.zeros((1, 3)), np.asarray(c)])


def _resize(img: np.ndarray, f: float) -> np.ndarray:
    from PIL import Image

    h, w = img.shape[:2]
    size = (max(1, int(round(w * f))), max(1, int(round(h * f))))
    return np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR))


class ChipComposer:
    """Training images from real chips and Synthia flakes.

    Parameters
    ----------
    chips : uint8 ``[H, W, 3]`` real micrographs (or paths to them), unlabelled.
    config : :class:`CompositeConfig`.
    ignore : per chip, an ``[H, W]`` bool mask of pixels left out of the loss (see
        :func:`ignore_mask`); default none.
    seed : the stream of draws; ``sample(i)`` is a pure function of (seed, i).
    pieces : real labelled flakes cut out of their crops, ``(ratio [h, w, 3], part [h, w],
        material)`` as :func:`qupaint.detect.crops.cut_out_crop` gives them (part 1: the
        labelled thin flake, 2: neighbours of unknown thickness, left out of the loss).
        A share ``paste_prob`` of the images takes its material from a piece and gets
        ``pasted`` of that material's pieces, multiplied onto the chip.
    """

    def __init__(self, chips: Sequence, config: CompositeConfig | None = None,
                 ignore: Sequence[np.ndarray] | None = None, seed: int = 0,
                 pieces: Sequence | None = None):  # fmt: skip
        from qupaint._io import read_rgb

        self.config = config or CompositeConfig()
        self.chips = [np.asarray(read_rgb(c) if isinstance(c, (str, os.PathLike)) else c)
                      for c in chips]  # fmt: skip
        if not self.chips:
            raise ValueError("chips: give at least one real micrograph")
        for k, c in enumerate(self.chips):
            if c.ndim != 3 or c.shape[2] != 3 or c.dtype != np.uint8:
                raise ValueError(f"chips[{k}]: need uint8 [H, W, 3]; got {c.dtype} {c.shape}")
            if min(c.shape[:2]) < 32:
                raise ValueError(f"chips[{k}]: {c.shape[:2]} is too small (>= 32 px a side)")
        if ignore is not None and len(ignore) != len(self.chips):
            raise ValueError(f"ignore: one mask per chip ({len(self.chips)}); got {len(ignore)}")
        self.ignore = list(ignore) if ignore is not None else None
        self.seed = int(seed)
        self.pieces: dict[str, list] = {}
        for k, p in enumerate(pieces or ()):
            ratio, part, material = p
            if np.shape(ratio) != (*np.shape(part), 3) or np.ndim(part) != 2:
                raise ValueError(f"pieces[{k}]: need ratio [h, w, 3] and part [h, w]; got "
                                 f"{np.shape(ratio)} and {np.shape(part)}")  # fmt: skip
            self.pieces.setdefault(str(material), []).append(
                (np.asarray(ratio, np.float32), np.asarray(part, np.uint8)))

    # -- the crop ------------------------------------------------------------------------
    def _crop(self, rng) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        k = int(rng.integers(len(self.chips)))
        chip = self.chips[k]
        ign = self.ignore[k] if self.ignore is not None else np.zeros(chip.shape[:2], bool)
        f = float(np.exp(rng.uniform(*np.log(c.scale))))
        side = int(math.ceil(c.size / f))
        H, W = chip.shape[:2]
        if side > min(H, W):
            side = min(H, W)
        y0, x0 = int(rng.integers(0, H - side + 1)), int(rng.integers(0, W - side + 1))
        img = chip[y0 : y0 + side, x0 : x0 + side]
        ig = ign[y0 : y0 + side, x0 : x0 + side]
        if side != c.size:
            img = _resize(img, c.size / side)[: c.size, : c.size]
            ig = _resize(ig.astype(np.uint8) * 255, c.size / side)[: c.size, : c.size] > 0
        k = int(rng.integers(4))
        img, ig = np.rot90(img, k), np.rot90(ig, k)
        if rng.random() < 0.5:
            img, ig = img[:, ::-1], ig[:, ::-1]
        return np.ascontiguousarray(img), np.ascontiguousarray(ig)

    # -- one image -----------------------------------------------------------------------
    def sample(self, index: int) -> Composite:
        """Image ``index`` (a :class:`Composite`): the image, its targets (visible thin
        flake, cut, ignore), the flakes' material and the oxide."""
        c = self.config
        rng = np.random.default_rng([self.seed, int(index)])
        bg, ignore = self._crop(rng)
        S = c.size
        img = bg.astype(np.float32)
        sub = np.median(bg[::4, ::4].reshape(-1, 3), axis=0).astype(np.float32)
        crystal = self._crystal(bg, sub)
        crystal_px = np.nonzero(crystal[::2, ::2])  # where a flake may run out from one
        ids = np.zeros((S, S), np.int32)  # 0 bare, k flake part k
        kinds = [(False, False, False)]  # per part: thin, visible, ignored
        material = c.materials[int(rng.integers(len(c.materials)))]
        oxide = (float(rng.uniform(260.0, 300.0)) if rng.random() < c.thick_oxide_prob
                 else float(rng.uniform(*c.oxide_nm)))  # fmt: skip
        table = _contrast(material, 5.0 * round(oxide / 5), c.camera)
        tone = rng.uniform(*c.tone, 3)
        n_flakes = int(rng.integers(c.flakes[0], c.flakes[1] + 1))
        if self.pieces and rng.random() < c.paste_prob:
            names = sorted(self.pieces)
            material = names[int(rng.integers(len(names)))]
            table = _contrast(material, 5.0 * round(oxide / 5), c.camera)
            for _ in range(int(rng.integers(c.pasted[0], c.pasted[1] + 1))):
                self._paste(rng, img, ids, kinds, self.pieces[material])
            n_flakes = int(rng.integers(0, n_flakes + 1))
        for _ in range(n_flakes):
            self._flake(rng, img, ids, kinds, crystal_px, table, tone)
        if crystal.any():  # the real crystal stays on top of what ran out from it
            img[crystal] = bg[crystal]
            ids[crystal] = 0
        if rng.random() < c.field_stop_prob:
            img *= field_stop(rng, S)[..., None]
        img = self._finish(rng, img)
        kind = np.asarray(kinds, bool)
        thin, visible = kind[ids, 0], kind[ids, 1]
        cut = self._cuts(ids, crystal) & thin
        ign = (ignore & ~(ids > 0)) | (thin & ~visible) | kind[ids, 2]
        return Composite(img, np.stack([visible, cut & visible, ign]), material, oxide)

    @staticmethod
    def _crystal(bg: np.ndarray, sub: np.ndarray) -> np.ndarray:
        """Pixels of thick real crystals in the crop: saturated, or over 40 % from the
        substrate in some channel."""
        rel = np.abs(bg.astype(np.float32) / np.maximum(sub, 1.0) - 1.0).max(-1)
        return (rel > 0.4) | (bg >= 250).any(-1)

    def _flake(self, rng, img, ids, kinds, crystal_px, table, tone) -> None:
        c = self.config
        S = img.shape[0]
        side_um = c.size_um[0] * math.exp(c.size_um[1] * rng.standard_normal())
        r = float(np.clip(0.5 * side_um / c.um_per_px, 4.0, 0.4 * S))
        thin = rng.random() < c.thin_prob
        layers = (int(rng.integers(1, THIN_MAX + 1)) if thin
                  else int(np.exp(rng.uniform(np.log(6), np.log(61)))))  # fmt: skip
        if rng.random() < c.sliver_prob:
            aspect = rng.uniform(2.5, 7.0)
            shape = random_sliver(rng, min(2 * r * math.sqrt(aspect), 0.8 * S),
                                  max(2 * r / math.sqrt(aspect), 3.0))  # fmt: skip
        else:
            shape = random_flake(rng, r)
        rough = float(rng.uniform(*c.rough_px))
        if rough > 0:
            shape = FlakeShape(shape.normals, shape.offsets, rough, float(rng.uniform(2, 5)),
                               int(rng.integers(2**31)))  # fmt: skip
        parts = [(shape, layers)]
        u = rng.random()
        if u < c.terrace_prob:
            a, b = split_terrace(rng, shape, (0.3, 0.6))
            parts = [(a, layers), (b, layers + int(rng.integers(1, 30)))]
        elif u < c.terrace_prob + c.fold_prob:
            a, b = split_fold(rng, shape)
            parts = [(a, layers), (b, 2 * layers)]
        # where: running out from a real crystal, touching the last flake, or anywhere
        ys, xs = crystal_px
        if len(ys) and rng.random() < c.crystal_prob:
            j = int(rng.integers(len(ys)))
            cx, cy = 2 * xs[j] + 1.0, 2 * ys[j] + 1.0
        elif len(kinds) > 1 and rng.random() < c.touching_prob:
            yy, xx = np.nonzero(ids > 0)
            j = int(rng.integers(len(yy)))
            ang = rng.uniform(0, 2 * math.pi)
            cx, cy = xx[j] + 0.8 * r * math.cos(ang), yy[j] + 0.8 * r * math.sin(ang)
        else:
            cx, cy = rng.uniform(0, S), rng.uniform(0, S)
        soft = float(rng.uniform(*c.softness_px))
        for part, n in parts:
            ratio = 1.0 + table[min(n, 60)] * (1.0 + c.contrast_jitter * rng.standard_normal(3))
            ratio = np.maximum(ratio, 0.02) ** tone
            alpha, (x0, y0, x1, y1) = rasterize(part, cx, cy, S, S, soft)
            if alpha.size == 0:
                continue
            reg = img[y0:y1, x0:x1]
            reg *= 1.0 + alpha[..., None] * (ratio.astype(np.float32) - 1.0)
            inside = alpha >= 0.5
            if inside.any():
                seen = float(np.abs(ratio - 1).max()) >= VISIBLE
                kinds.append((n <= THIN_MAX, n <= THIN_MAX and seen, THIN_MAX < n <= UNSURE_MAX))
                ids[y0:y1, x0:x1][inside] = len(kinds) - 1

    def _paste(self, rng, img, ids, kinds, pieces) -> None:
        """One real flake piece, turned, flipped and scaled at random, multiplied onto
        ``img`` at a random place (cut where it leaves the image)."""
        from scipy.ndimage import zoom

        ratio, part = pieces[int(rng.integers(len(pieces)))]
        k = int(rng.integers(4))
        ratio, part = np.rot90(ratio, k), np.rot90(part, k)
        if rng.random() < 0.5:
            ratio, part = ratio[:, ::-1], part[:, ::-1]
        f = float(np.exp(rng.uniform(*np.log(self.config.scale))))
        if abs(f - 1.0) > 0.02:
            ratio = zoom(ratio, (f, f, 1), order=1)
            part = zoom(part, f, order=0)
        S = img.shape[0]
        h, w = part.shape
        y0, x0 = int(rng.integers(-h // 2, S - h // 2)), int(rng.integers(-w // 2, S - w // 2))
        ys, xs = slice(max(y0, 0), min(y0 + h, S)), slice(max(x0, 0), min(x0 + w, S))
        sub = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
        ratio, part = ratio[sub], part[sub]
        on = part > 0
        if not on.any():
            return
        from scipy.ndimage import gaussian_filter

        alpha = np.clip(gaussian_filter(on.astype(np.float32), 0.6), 0, 1)[..., None]
        img[ys, xs] *= 1.0 + alpha * (np.where(on[..., None], ratio, 1.0) - 1.0)
        flake = part == 1
        if flake.any():
            seen = float(np.abs(np.median(ratio[flake], axis=0) - 1).max()) >= VISIBLE
            kinds.append((True, seen, False))
            ids[ys, xs][flake] = len(kinds) - 1
        if (part == 2).any():
            kinds.append((False, False, True))
            ids[ys, xs][part == 2] = len(kinds) - 1

    def _finish(self, rng, img: np.ndarray) -> np.ndarray:
        c = self.config
        img *= np.float32(rng.uniform(*c.exposure))
        if rng.random() < c.gamma_prob:
            g = np.float32(rng.uniform(*c.gamma))
            img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** g
        out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
        return jpeg_roundtrip(out, c.jpeg_quality) if c.jpeg_quality else out

    @staticmethod
    def _cuts(ids: np.ndarray, crystal: np.ndarray) -> np.ndarray:
        """Pixels within 2 px of another flake part or a real crystal."""
        from scipy.ndimage import grey_dilation, grey_erosion

        lab = np.where(crystal, -1, ids)
        hi = grey_dilation(lab, size=(5, 5))
        lo = grey_erosion(np.where(lab == 0, 10**6, lab), size=(5, 5))
        return (ids > 0) & ((hi != ids) | (lo != ids))
