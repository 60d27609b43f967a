"""The detector's settings: :class:`DetectorConfig` (its tuning, every field with its unit)
and :class:`DetectorSettings` (everything besides the image and its material that decides
what detection finds: the tuning, the camera, the oxide, its prior and the image scale).

:meth:`DetectorSettings.from_microscope` is the one door from a microscope (a preset, a
camera file) to detection: ``qupaint detect``, ``qupaint scan``, the web app, ``qupaint eval
real``, the model's physics evidence and the demo all build their settings with it, so one
image through any of them gives the same flakes.

>>> from qupaint.constants import REFERENCE_UM_PER_PX
>>> s = DetectorSettings.from_microscope("2dmatgmm", min_area_um2=20.0)
>>> s.um_per_px == REFERENCE_UM_PER_PX, s.oxide_nm, s.oxide_prior_nm, s.config.min_area_um2
(True, None, 92.94, 20.0)
>>> DetectorSettings.from_microscope("2dmatgmm", oxide_nm=90).oxide_nm
90.0
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from qupaint.categories import THICK_MIN_LAYERS
from qupaint.constants import MIN_AREA_PX, OXIDE_RANGE_NM, parse_oxide

__all__ = ["DetectorConfig", "DetectorSettings", "METHODS", "DEFAULT_METHOD"]

#: how flakes are found: ``physics`` (the contrast pieces, rules and layer ladder of
#: :mod:`qupaint.detect.detector`), ``learned`` (the segmenter of :mod:`qupaint.seg` alone,
#: the ladder only counting layers) or ``fused`` (the physics, each thin flake verified by
#: the segmenter's probability)
METHODS = ("physics", "learned", "fused")
#: what every door uses when no method is named
DEFAULT_METHOD = "physics"


@dataclass
class DetectorConfig:
    """Settings of :func:`~qupaint.detect.detect`; the defaults are those measured on whole
    real images. Units are in each field's comment: px (pixels), um^2, nm, C (contrast
    ``I / I_sub - 1``, dimensionless), sigma (standard deviations of the substrate noise)."""

    blur_sigma_px: float = 1.0  # denoising before the per-pixel contrast
    min_noise: float = 0.01  # floor of the per-channel contrast noise
    fg_chi2: float = 25.0  # chi-square vs the substrate above which a pixel is a candidate
    min_contrast: float = 0.05  # mean |C| over the channels below this: residue, vignetting
    edge_sigma: float = 3.0  # a colour gradient above this (noise units) splits pieces
    min_area_um2: float = 15.0  # physical minimum size (dust specks are smaller)
    min_area_px: int = MIN_AREA_PX  # the minimum size when the image scale is not known
    min_width_px: float = 3.0  # mean width 2 area / perimeter below this: fibre, scratch
    max_aspect: float = 20.0  # ... or length / width above this (flake slivers reach ~7)
    sliver_width_px: float = 4.0  # ... or mean width below this while its convex hull ...
    sliver_solidity: float = 0.4  # ... is less than this full: cracks, bands, residue threads
    shading_contrast: float = 0.12  # a faint (mean |C| below this) ...
    shading_colour: float = 0.3  # ... colourless (channel spread below this share of it) piece
    # at the image border is the lamp's fall-off the substrate field did not follow
    halo_px: int = 4  # a piece within this distance of a bright crystal ...
    max_halo: float = 0.35  # ... for more than this share of its area is its halo
    bright: float = 0.12  # brighter than the thin ladder's brightest channel by this: crystal
    shadow_dark: float = -0.7  # a piece darker than this in every channel (C) ...
    shadow_edge_um: float = 1.3  # ... whose edge is blurred wider than this (Gaussian sigma,
    # measured on the contrast map) is a shadow or an out-of-focus body, not a flake on the
    # substrate; the edge is measured at the reference scale (REFERENCE_UM_PER_PX) when the
    # image scale is not given
    band_dark: float = -0.35  # a fibre darker than this in every channel (C), its edge
    # blurred wider than shadow_edge_um, is a band (an out-of-focus fibre over the chip);
    # its penumbra reaches this many of its edge sigmas around it:
    penumbra_sigmas: float = 3.0
    rim_px: int = 3  # a flake whose ring this wide around it ...
    rim_share: float = 0.35  # ... is more than this share bulk crystal (bright, or darker
    # than shadow_dark in every channel) is the rim or tip of that crystal, not a flake
    saturation: int = 250  # 8-bit value at which a channel counts as saturated
    block_px: int = 16  # block size of the substrate field
    field_sigma: float = 0.12  # smoothing of the field, as a fraction of the image size
    max_layers: int = 12  # the ladder the pieces are fitted to
    thin_layers: int = THICK_MIN_LAYERS - 1  # a thin flake has at most this many layers
    rel_sigma: float = 0.1  # model/calibration uncertainty, relative to |C|
    max_chi2: float = 25.0  # a piece farther than this from every layer is off the ladder
    response_range: tuple[float, float] = (0.5, 2.0)  # per-channel response exponent k: fit range
    response_steps: int = 9  # exponents tried per channel (log-spaced over response_range)
    response_prior_sd: float = 0.35  # standard deviation of log(k) around the camera (k = 1)
    response_model: str = "power"  # per channel: "power" 1+C -> (1+C)^k, or "gain" C -> kC
    response_center: tuple[float, float, float] = (1.0, 1.0, 1.0)  # a calibration's k (prior)
    oxide_window_nm: float = 15.0  # a given oxide is refined within +- this
    oxide_prior_sd_nm: float = 20.0  # prior around a calibrated camera's oxide (auto mode)
    substrate_prior_sd_nm: float = 10.0  # ... or around the substrate colour's oxide
    neutral_substrate: float = 0.08  # (max - min) / mean below this: white-balanced image
    prior_reach: float = 2.5  # the oxide is searched within this many prior sd
    prior_pieces: float = 5.0  # the priors grow with the data beyond this many pieces' weight
    prior_weight: float = 1.0  # and weigh this much (chi-square units per unit of prior)
    noise_contrast: float = 4.0  # the mean |C| floor is also this many times the noise
    oxide_step_nm: float = 5.0
    fit_pieces: int = 80  # the largest pieces that enter the ladder fit
    fit_dark_only: bool = True  # only pieces darker than the substrate in a channel enter it
    fit_sign_sd: float = 1.0  # ... and only pieces whose every channel's sign some thin rung
    fit_sign_z: float = 3.0  # has within this many prior sd (beyond this many noise sigmas)
    min_p_fit: float = 0.1  # the thin reading needs the piece on the ladder this often
    min_temper: float = 100.0  # the fit's likelihood is tempered by at least this (hypotheses)
    fit_scale: float = 2.0  # score x exp(-fit / fit_scale), fit in standard deviations
    size_um2: float = 40.0  # score x (1 - exp(-area / size_um2))
    box_pad_px: int = 3  # a piece's box and mask: grown by up to this much into candidates
    tail_px: int = 25  # ... after flooding this far through candidates of its own colour
    # the "fused" method: a thin flake whose mean thin probability under the segmenter is
    # below this is rejected; the score of the rest is multiplied by that probability to
    # this power
    learned_min_p: float = 0.25
    learned_weight: float = 1.0
    learned_margin_px: int = 16  # the segmenter sees each thin flake's box grown by this (16-96
    # give the same figures on the shared images; 0 loses graphene AP50 0.76 -> 0.70)

    @classmethod
    def for_microscope(cls, microscope, **changes) -> DetectorConfig:
        """The settings for a :class:`~qupaint.color.Microscope`: its calibrated response
        (when it has one) as the prior's centre, its oxide prior's measured width (when it
        has one; at least one oxide step) as the prior's; ``changes`` set other fields."""
        if microscope is not None and microscope.response is not None:
            changes["response_center"] = tuple(microscope.response)
        if microscope is not None and microscope.oxide_sd_nm is not None:
            step = changes.get("oxide_step_nm", cls.oxide_step_nm)
            changes.setdefault("oxide_prior_sd_nm", max(float(microscope.oxide_sd_nm), step))
        return cls(**changes)

    def validate(self) -> None:
        if self.min_area_px < 1 or self.max_layers < 1 or self.block_px < 1:
            raise ValueError("min_area_px, max_layers and block_px must be >= 1")
        if not 1 <= self.thin_layers <= self.max_layers:
            raise ValueError("thin_layers must be in [1, max_layers]")
        if not 0 <= self.learned_min_p < 1 or self.learned_weight < 0 or self.learned_margin_px < 0:
            raise ValueError("learned_min_p must be in [0, 1), learned_weight and "
                             "learned_margin_px >= 0")
        if self.fg_chi2 <= 0 or self.max_chi2 <= 0 or self.min_noise <= 0:
            raise ValueError("fg_chi2, max_chi2 and min_noise must be > 0")
        if not -1 < self.shadow_dark < 0 or self.shadow_edge_um <= 0:
            raise ValueError("shadow_dark must be in (-1, 0) and shadow_edge_um > 0")
        if not -1 < self.band_dark < 0 or self.penumbra_sigmas < 0:
            raise ValueError("band_dark must be in (-1, 0) and penumbra_sigmas >= 0")
        if self.fit_sign_sd < 0 or self.fit_sign_z <= 0:
            raise ValueError("fit_sign_sd must be >= 0 and fit_sign_z > 0")
        if self.rim_px < 1 or not 0 < self.rim_share <= 1:
            raise ValueError("rim_px must be >= 1 and rim_share in (0, 1]")
        if self.min_area_um2 < 0 or self.min_contrast < 0:
            raise ValueError("min_area_um2 and min_contrast must be >= 0")
        lo, hi = self.response_range
        if not 0 < lo <= 1 <= hi:
            raise ValueError("response_range: (low, high) with 0 < low <= 1 <= high")
        if self.response_model not in ("power", "gain"):
            raise ValueError("response_model must be 'power' or 'gain'; "
                             f"got {self.response_model!r}")  # fmt: skip
        if len(self.response_center) != 3 or not all(k > 0 for k in self.response_center):
            raise ValueError("response_center: three exponents > 0 (R, G, B)")


@dataclass(frozen=True)
class DetectorSettings:
    """Everything besides the image and its material that decides what
    :func:`~qupaint.detect.find_flakes` finds. Build it from a microscope with
    :meth:`from_microscope`; :meth:`replace` changes fields.

    Parameters
    ----------
    config : DetectorConfig
        The detector's tuning.
    camera : Camera or None
        What the image was taken through; None: sRGB under D65.
    oxide_nm : float or None
        A known SiO2 thickness (nm), refined within ``config.oxide_window_nm``; None: fitted
        per image within ``oxide_range`` (around ``oxide_prior_nm`` when given).
    oxide_prior_nm : float or None
        A calibrated camera's chip (nm): the prior of the fitted oxide.
    um_per_px : float or None
        Image scale (µm per pixel): the physical minimum size and areas in µm²; without it
        the minimum is ``config.min_area_px``.
    oxide_range : (float, float)
        The oxides searched when the oxide is fitted, nm.
    method : str
        One of :data:`METHODS`.
    segmenter : str or None
        The segmenter's weights for ``learned`` and ``fused`` (a calibration's adapted
        weights, :func:`qupaint.seg.adapt.adapt_segmenter`); None: the shipped ones.
    """

    config: DetectorConfig = field(default_factory=DetectorConfig)
    camera: object = None
    oxide_nm: float | None = None
    oxide_prior_nm: float | None = None
    um_per_px: float | None = None
    oxide_range: tuple[float, float] = OXIDE_RANGE_NM
    method: str = DEFAULT_METHOD
    segmenter: str | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method: one of {', '.join(METHODS)}; got {self.method!r}")
        if self.segmenter is not None:
            object.__setattr__(self, "segmenter", str(self.segmenter))
        if not isinstance(self.config, DetectorConfig):
            raise TypeError(f"config: a DetectorConfig; got {type(self.config).__name__}")
        oxide = parse_oxide(self.oxide_nm)
        object.__setattr__(self, "oxide_nm", None if oxide == "auto" else oxide)
        if self.um_per_px is not None:
            if not (isinstance(self.um_per_px, (int, float)) and math.isfinite(self.um_per_px)
                    and self.um_per_px > 0):  # fmt: skip
                raise ValueError(f"um_per_px must be > 0 (µm per pixel); got {self.um_per_px}")
            object.__setattr__(self, "um_per_px", float(self.um_per_px))
        lo, hi = (float(v) for v in self.oxide_range)
        if not 0 <= lo <= hi:
            raise ValueError(f"oxide_range: (low, high) nm with 0 <= low <= high; got "
                             f"{self.oxide_range}")  # fmt: skip
        object.__setattr__(self, "oxide_range", (lo, hi))

    @classmethod
    def from_microscope(cls, microscope=None, *, oxide_nm: float | str | None = None,
                        um_per_px: float | None = None,
                        oxide_range: tuple[float, float] = OXIDE_RANGE_NM,
                        method: str | None = None, **overrides) -> DetectorSettings:  # fmt: skip
        """The settings for a microscope: a :class:`~qupaint.color.Microscope`, a preset name
        or a camera file (:meth:`Microscope.load <qupaint.color.Microscope.load>`); None:
        sRGB under D65 with nothing calibrated.

        ``oxide_nm``: a thickness, ``"auto"`` (fit it per image) or None (the microscope's
        calibrated oxide when it states one, else auto). ``um_per_px``: the image scale,
        default the microscope's. The microscope's oxide prior and its width, its
        calibrated response and its adapted segmenter go in as they are; ``method``: one of
        :data:`METHODS` (None: :data:`DEFAULT_METHOD`); ``overrides`` set
        :class:`DetectorConfig` fields (``min_area_um2=20.0``, say)."""
        from qupaint.color import Microscope

        mic = Microscope.load(microscope)
        oxide = parse_oxide(oxide_nm)
        if oxide is None:
            oxide = mic.oxide_nm
        return cls(DetectorConfig.for_microscope(mic, **overrides), mic.camera,
                   None if oxide == "auto" else oxide, mic.oxide_prior_nm,
                   mic.scale_or(um_per_px), tuple(oxide_range),
                   method or DEFAULT_METHOD, mic.segmenter)  # fmt: skip

    @classmethod
    def of(cls, settings: DetectorSettings | None = None, **fields) -> DetectorSettings:
        """``settings`` (default: the defaults) with ``fields`` changed; an unknown field
        raises TypeError naming it."""
        base = settings if settings is not None else cls()
        if not isinstance(base, DetectorSettings):
            raise TypeError("settings: a DetectorSettings (DetectorSettings.from_microscope"
                            f"(...)); got {type(base).__name__}")  # fmt: skip
        return base.replace(**fields) if fields else base

    def replace(self, **fields) -> DetectorSettings:
        """A copy with ``fields`` changed (an unknown one raises TypeError naming it)."""
        names = {f.name for f in dataclasses.fields(self)}
        bad = sorted(set(fields) - names)
        if bad:
            raise TypeError(f"{', '.join(bad)}: not a detector setting; the settings are "
                            f"{', '.join(sorted(names))}")  # fmt: skip
        if fields.get("config", self.config) is None:
            fields["config"] = DetectorConfig()
        return dataclasses.replace(self, **fields)

    @property
    def oxide_given(self) -> bool:
        """Whether the oxide is known (refined per image) rather than fitted per image."""
        return self.oxide_nm is not None

    def describe(self) -> dict:
        """A JSON form of the settings (the camera by its key): what a resumable batch or
        scan records to know whether stored results were made with the same settings."""
        cam = self.camera
        return {"camera": None if cam is None else cam.key, "oxide_nm": self.oxide_nm,
                "oxide_prior_nm": self.oxide_prior_nm, "um_per_px": self.um_per_px,
                "oxide_range": list(self.oxide_range),
                "config": dataclasses.asdict(self.config), "method": self.method,
                "segmenter": self.segmenter}  # fmt: skip
