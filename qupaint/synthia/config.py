"""Synthia's settings: :class:`SynthiaConfig`, every field of the renderer (QuPAINT Alg. 1)
and of its realism effects, with their validation. The renderer is
:mod:`qupaint.synthia.render`."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from qupaint._io import IMAGE_EXTS
from qupaint.categories import THICK_MIN_LAYERS
from qupaint.color import Camera
from qupaint.constants import REFERENCE_UM_PER_PX
from qupaint.optics import FLAKE_MATERIALS, get_material

__all__ = ["SynthiaConfig", "reference_files"]


@functools.lru_cache(maxsize=8)
def reference_files(ref_dir: str) -> tuple[str, ...]:
    """The image files of a reference folder, sorted (cached; empty when it is no folder)."""
    p = Path(ref_dir)
    if not p.is_dir():
        return ()
    return tuple(sorted(str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS))


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
    # -- realism (qupaint.synthia.realism; all off here, SynthiaConfig.realistic() turns
    # them on). Realistic draws use their own random stream, so the fields above render
    # the same images whatever these are.
    #: "procedural" chip, or "real": flake-free windows of real chips (the shipped pack)
    backgrounds: str = "procedural"
    #: per-image oxide: one of these (nm) plus a uniform +-``oxide_jitter_nm`` (5 nm steps);
    #: empty: always ``oxide_nm``
    oxide_choices_nm: tuple[float, ...] = ()
    oxide_jitter_nm: float = 0.0
    #: flakes change the local background by their TMM contrast (c_L / c_0) instead of
    #: being painted in the absolute colour g * c_L: vignetting and real texture stay
    relative_color: bool = False
    um_per_px: float = REFERENCE_UM_PER_PX
    #: (median um, log-std) of a flake's box side (log-normal); None: ``radius_px``
    size_um: tuple[float, float] | None = None
    rough_px: tuple[float, float] = (0.0, 0.0)  # edge roughness amplitude range
    sliver_prob: float = 0.0
    attached_prob: float = 0.0  # a thin flake grown from a thick crystal
    bulk_layers: tuple[int, int] = (40, 300)
    fold_prob: float = 0.0
    wrinkle_prob: float = 0.0
    bubble_prob: float = 0.0
    residue: tuple[int, int] = (0, 0)  # residue films per image
    residue_nm: tuple[float, float] = (1.0, 8.0)
    scratches: tuple[int, int] = (0, 0)
    bulk_crystals: tuple[int, int] = (0, 0)  # free-standing thick crystals per image
    specks: tuple[int, int] = (0, 0)  # tiny thick fragments (1.5-5 px, bright), unlabelled
    defocus_px: float = 0.0  # blur at the far side of a tilted field
    chromatic_px: float = 0.0  # red/blue lateral shift at the corners
    white_balance_strength: tuple[float, float] = (0.0, 0.0)  # the camera's grey-world AWB
    exposure: tuple[float, float] = (1.0, 1.0)  # multiplier range (bright crystals clip)
    jpeg_quality: tuple[int, int] = (0, 0)  # (lo, hi); 0: no JPEG
    #: per-image sensor noise std drawn from this range (linear); (0, 0): ``sensor_noise``
    noise_range: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def realistic(cls, **overrides) -> SynthiaConfig:
        """Every realism effect on, tuned to the shared real micrographs: real chip
        backgrounds, the calibrated ``2dmatgmm`` camera, oxides of 70 and 90 nm
        (+-15 nm), flake sizes measured on real labelled flakes at the reference scale, ragged
        edges, slivers, flakes attached to crystals, folds, wrinkles, bubbles, residue,
        scratches, dust, saturated crystals, field-varying defocus, chromatic fringes,
        the camera's white balance, exposure and JPEG."""
        from qupaint.color import Camera

        kw = dict(
            camera=Camera.preset("2dmatgmm").to_dict(),
            illuminant="A",
            backgrounds="real",
            oxide_choices_nm=(70.0, 90.0),
            oxide_jitter_nm=15.0,
            relative_color=True,
            size_um=(18.0, 0.48),
            radius_px=(6.0, 120.0),
            rough_px=(0.0, 1.5),
            sliver_prob=0.2,
            attached_prob=0.2,
            fold_prob=0.1,
            wrinkle_prob=0.15,
            bubble_prob=0.15,
            residue=(0, 3),
            scratches=(0, 2),
            bulk_crystals=(0, 3),
            debris=(5, 30),
            edge_softness_px=1.0,
            noise_range=(0.004, 0.016),
            blur_sigma_px=0.4,
            defocus_px=1.5,
            chromatic_px=0.8,
            white_balance_strength=(0.0, 0.6),
            exposure=(0.85, 1.25),
            jpeg_quality=(80, 95),
            category_weights=(0.4, 0.4, 0.2),
        )
        kw.update(overrides)
        if "radius_px" not in overrides:  # flakes must fit in a smaller image
            side = min(kw.get("height", cls.height), kw.get("width", cls.width))
            kw["radius_px"] = (min(6.0, side / 8), min(120.0, 0.45 * side))
        return cls(**kw)

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
        if self.backgrounds not in ("procedural", "real"):
            raise ValueError(
                f"backgrounds must be 'procedural' or 'real'; got {self.backgrounds!r}"
            )
        if any(o - self.oxide_jitter_nm < 0 for o in self.oxide_choices_nm):
            raise ValueError("oxide_choices_nm minus oxide_jitter_nm must stay >= 0")
        if not self.um_per_px > 0:
            raise ValueError(f"um_per_px must be > 0; got {self.um_per_px}")
        if self.size_um is not None and not (self.size_um[0] > 0 and self.size_um[1] >= 0):
            raise ValueError(f"size_um must be (median > 0, log-std >= 0); got {self.size_um}")
        for name in ("sliver_prob", "attached_prob", "fold_prob", "wrinkle_prob",
                     "bubble_prob"):  # fmt: skip
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1]; got {v}")
        for name in ("residue", "scratches", "bulk_crystals", "specks", "bulk_layers",
                     "jpeg_quality",
                     "exposure", "white_balance_strength", "rough_px", "residue_nm",
                     "noise_range"):  # fmt: skip
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be (lo, hi) with 0 <= lo <= hi; got {(lo, hi)}")
        if self.jpeg_quality[1] > 100 or 0 < self.jpeg_quality[0] < 1:
            raise ValueError(f"jpeg_quality must lie in 1-100 (0 = off); got {self.jpeg_quality}")
        if self.white_balance_strength[1] > 1:
            raise ValueError("white_balance_strength must lie in [0, 1]")
        if self.defocus_px < 0 or self.chromatic_px < 0:
            raise ValueError("defocus_px and chromatic_px must be >= 0")
        if self.camera is not None:
            Camera.from_dict(self.camera)  # a malformed camera fails here, not in a worker
        if self.reference_dir is not None and not reference_files(self.reference_dir):
            raise ValueError(
                f"reference_dir {self.reference_dir!r} holds no image ({', '.join(IMAGE_EXTS)})"
            )

    def to_dict(self) -> dict:
        return asdict(self)
