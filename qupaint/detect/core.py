"""Find and classify thin flakes on whole real micrographs (the product detector).

Pipeline, for one micrograph of a known material, seen through a camera
(:class:`~qupaint.color.Camera`; default sRGB under D65):

1. **Contrast** (:func:`contrast_map`, the one definition the detector, :mod:`qupaint.seg`
   and the crop measurements share): pixels are decoded through the camera's response, the
   substrate's colour is followed across the field (vignetting, an uneven lamp) by
   :func:`substrate_field`, and ``C = I / I_sub - 1`` per channel (the MaskTerial / 2DMatGMM
   definition; independent of white-balance gains and exposure).
2. **Pieces**: pixels that differ from the substrate (chi-square against the substrate's
   own noise, and at least ``min_contrast`` in some channel) are split along colour edges
   (the gradient of C, in noise units), so that the terraces of one flake become separate
   pieces. Each piece is measured: area, median contrast, mean width, closeness to bright
   crystals.
3. **Rejection rules, each named** (``rejected`` in :func:`detect`'s ``explain`` output):
   ``too_small`` (below ``min_area_um2``; dust specks), ``faint`` (mean |C| below
   ``min_contrast`` or ``noise_contrast`` times the noise: residue films), ``shading`` (a
   faint, colourless piece at the image border: vignetting the substrate field did not
   follow), ``fibre`` (mean width under ``min_width_px`` or length over ``max_aspect``
   widths: fibres and scratches), ``halo`` (mostly within ``halo_px`` of a saturated or
   bright crystal: its rim and shadow), ``bright`` (brighter than any thin flake can be:
   bulk and saturated crystals), ``off_ladder`` (its colour fits no layer of the
   material), ``thick`` (it fits, but with more than ``thin_layers`` layers). Lines and
   specks narrower than 3 px never become pieces (the colour-edge split and an opening
   remove them).
4. **The ladder, adapted per image** (:func:`fit_ladder`): camera settings change the
   measured contrast (a white-balanced, gamma-encoded or offset image compresses it per
   channel), and the oxide varies from chip to chip. Without labels, per image, the oxide
   and a per-channel gain ``k`` are fitted so that the pieces' contrasts fall on the layer
   ladder ``C = k * C_L(oxide)`` of the material (TMM through the camera), with the
   calibrated camera (``k = 1``) as the prior. Each piece takes its best layer count.
5. **Score**: the probability-like ``exp(-fit / fit_scale)`` (fit in standard deviations)
   times a size term ``1 - exp(-area / size_um2)`` times the share not in a halo; the report
   ranks by it. Category from the layer count (:mod:`qupaint.categories`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np
from scipy import ndimage

from qupaint import _backend
from qupaint.categories import THICK_MIN_LAYERS, category_of
from qupaint.color import Camera, linear_srgb_to_lab
from qupaint.constants import OXIDE_RANGE_NM, parse_oxide

__all__ = [
    "ContrastMap",
    "DetectorConfig",
    "Ladder",
    "contrast_map",
    "detect",
    "estimate_oxide_from_flakes",
    "fit_ladder",
    "linear_pixels",
    "substrate_field",
]

#: the rules by which a piece is not reported as a thin flake, in the order they are tried
REJECT_RULES = ("too_small", "faint", "shading", "fibre", "halo", "bright", "off_ladder", "thick")


@dataclass
class DetectorConfig:
    """Settings of :func:`detect`; the defaults are those measured on whole real images."""

    blur_sigma_px: float = 1.0  # denoising before the per-pixel contrast
    min_noise: float = 0.01  # floor of the per-channel contrast noise
    fg_chi2: float = 25.0  # chi-square vs the substrate above which a pixel is a candidate
    min_contrast: float = 0.05  # mean |C| over the channels below this: residue, vignetting
    edge_sigma: float = 3.0  # a colour gradient above this (noise units) splits pieces
    min_area_um2: float = 15.0  # physical minimum size (dust specks are smaller)
    min_area_px: int = 100  # the minimum size when the image scale is not known
    min_width_px: float = 3.0  # mean width 2 area / perimeter below this: fibre, scratch
    max_aspect: float = 20.0  # ... or length / width above this (flake slivers reach ~7)
    shading_contrast: float = 0.12  # a faint (mean |C| below this) ...
    shading_colour: float = 0.3  # ... colourless (channel spread below this share of it) piece
    # at the image border is the lamp's fall-off the substrate field did not follow
    halo_px: int = 4  # a piece within this distance of a bright crystal ...
    max_halo: float = 0.35  # ... for more than this share of its area is its halo
    bright: float = 0.12  # brighter than the thin ladder's brightest channel by this: crystal
    saturation: int = 250  # 8-bit value at which a channel counts as saturated
    block_px: int = 16  # block size of the substrate field
    field_sigma: float = 0.12  # smoothing of the field, as a fraction of the image size
    max_layers: int = 12  # the ladder the pieces are fitted to
    thin_layers: int = THICK_MIN_LAYERS - 1  # a thin flake has at most this many layers
    rel_sigma: float = 0.1  # model/calibration uncertainty, relative to |C|
    max_chi2: float = 25.0  # a piece farther than this from every layer is off the ladder
    gains: tuple[float, float] = (0.5, 2.0)  # per-channel response exponent range of the fit
    gain_steps: int = 9
    gain_prior: float = 0.35  # standard deviation of log(gain) around the camera (k = 1)
    response: str = "power"  # per-channel response: "power" 1+C -> (1+C)^k, or "gain" C -> kC
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
    min_p_fit: float = 0.1  # the thin reading needs the piece on the ladder this often
    min_temper: float = 100.0  # the fit's likelihood is tempered by at least this (see _hypotheses)
    fit_scale: float = 2.0  # score x exp(-fit / fit_scale), fit in standard deviations
    size_um2: float = 40.0  # score x (1 - exp(-area / size_um2))
    box_pad_px: int = 3  # a piece's box and mask: grown by up to this much into candidates
    tail_px: int = 25  # ... after flooding this far through candidates of its own colour

    def validate(self) -> None:
        if self.min_area_px < 1 or self.max_layers < 1 or self.block_px < 1:
            raise ValueError("min_area_px, max_layers and block_px must be >= 1")
        if not 1 <= self.thin_layers <= self.max_layers:
            raise ValueError("thin_layers must be in [1, max_layers]")
        if self.fg_chi2 <= 0 or self.max_chi2 <= 0 or self.min_noise <= 0:
            raise ValueError("fg_chi2, max_chi2 and min_noise must be > 0")
        if self.min_area_um2 < 0 or self.min_contrast < 0:
            raise ValueError("min_area_um2 and min_contrast must be >= 0")
        lo, hi = self.gains
        if not 0 < lo <= 1 <= hi:
            raise ValueError("gains: (low, high) with 0 < low <= 1 <= high")
        if self.response not in ("power", "gain"):
            raise ValueError(f"response must be 'power' or 'gain'; got {self.response!r}")
        if len(self.response_center) != 3 or not all(k > 0 for k in self.response_center):
            raise ValueError("response_center: three exponents > 0 (R, G, B)")


def _as_uint8(image) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3] sRGB; got shape {img.shape}")
    if img.dtype == np.uint8:
        return img
    if not np.issubdtype(img.dtype, np.floating):
        raise TypeError(f"image: uint8 or float in [0, 1]; got {img.dtype}")
    if not np.all(np.isfinite(img)):
        raise ValueError("image contains NaN or inf")
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def linear_pixels(img: np.ndarray, camera: Camera) -> np.ndarray:
    """uint8 pixels -> the camera's linear values, float32 (:meth:`Camera.decode_table`)."""
    return camera.decode_table().astype(np.float32)[img]


def substrate_field(
    lin: np.ndarray, saturated: np.ndarray, block: int = 8, sigma: float = 0.12, degree: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """(field [H, W, 3], substrate blocks [h, w] bool): the substrate's colour at every pixel.

    Block means of the image (``block`` px, saturated blocks excluded) that lie within a
    tolerance of the current field are fitted by a polynomial of ``degree`` in x, y (the
    lamp's fall-off, per channel in log intensity) times their smoothed residual
    (normalised Gaussian convolution, ``sigma`` times the image's smaller side); three
    rounds, starting from the median block colour. Bilinear back to full resolution.
    """
    H, W = lin.shape[:2]
    b = _block_size(H, W, block)
    field, mask = _fit_field(*_block_means(lin, saturated, b), sigma, degree)
    return _upsample(field, b, H, W), mask


def _block_size(H: int, W: int, block: int) -> int:
    return max(1, min(block, H // 16, W // 16))


def _block_means(lin: np.ndarray, saturated: np.ndarray, b: int):
    """(mean linear colour [h, w, 3], any pixel saturated [h, w]) of the b x b blocks (the
    ragged right and bottom edge left out); the reference of ``detect_blocks_cpu``."""
    H, W = lin.shape[:2]
    h, w = H // b, W // b
    small = lin[: h * b, : w * b].reshape(h, b, w, b, 3).mean(axis=(1, 3))
    return small, saturated[: h * b, : w * b].reshape(h, b, w, b).any(axis=(1, 3))


def _fit_field(small: np.ndarray, sat: np.ndarray, sigma: float, degree: int
               ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The substrate field [h, w, 3] float32 on the block grid, and the blocks it used."""
    h, w = small.shape[:2]
    dark = small.sum(-1) <= 1e-4
    ok = ~sat & ~dark
    if not ok.any():
        ok = ~dark if (~dark).any() else np.ones((h, w), bool)
    s = max(1.0, sigma * min(h, w))
    field = np.broadcast_to(np.median(small[ok], axis=0), small.shape)
    mask = ok
    # the lamp's fall-off (vignetting) as a smooth polynomial in x, y (log intensity, per
    # channel), times a smoothed residual for what a polynomial does not follow
    yy, xx = np.mgrid[0:h, 0:w]
    u, v = (xx.ravel() + 0.5) / w * 2 - 1, (yy.ravel() + 0.5) / h * 2 - 1
    basis = np.stack([u**i * v**j for i in range(degree + 1) for j in range(degree + 1 - i)], 1)
    logs = np.log(np.maximum(small, 1e-6)).reshape(-1, 3)
    for tol in (0.15, 0.08, 0.05):
        rel = np.abs(small / np.maximum(field, 1e-6) - 1.0).max(-1)
        cand = ok & (rel < max(tol, 3.0 * float(np.median(rel[ok]))))
        if cand.sum() >= 4:
            mask = cand
        flat = mask.ravel()
        if degree > 0 and flat.sum() > 4 * basis.shape[1]:
            coef = np.linalg.lstsq(basis[flat], logs[flat], rcond=None)[0]
            base = np.exp(basis @ coef).reshape(h, w, 3)
        else:
            base = np.broadcast_to(np.median(small[mask], axis=0), small.shape)
        m = mask.astype(np.float32)
        num = ndimage.gaussian_filter(small / base * m[..., None], (s, s, 0), mode="nearest")
        den = ndimage.gaussian_filter(m, s, mode="nearest")[..., None]
        field = base * np.where(den > 1e-3, num / np.maximum(den, 1e-6), 1.0)
    return np.ascontiguousarray(field, dtype=np.float32), mask


def _upsample(field: np.ndarray, b: int, H: int, W: int) -> np.ndarray:
    """Bilinear from the block grid to [H, W, 3] (block centres, edges held), separably: along
    x on the block rows, then along y by blending whole rows (thread-count independent)."""
    h, w = field.shape[:2]
    xs = np.clip((np.arange(W) + 0.5) / b - 0.5, 0, w - 1)
    x0 = xs.astype(np.int64)
    x1 = np.minimum(x0 + 1, w - 1)
    fx = (xs - x0).astype(np.float32)[None, :, None]
    rows = field[:, x0] * (1 - fx) + field[:, x1] * fx  # [h, W, 3]
    ys = np.clip((np.arange(H) + 0.5) / b - 0.5, 0, h - 1)
    y0 = ys.astype(np.int64)
    y1 = np.minimum(y0 + 1, h - 1)
    fy = (ys - y0).astype(np.float32)[:, None, None]
    out = rows[y0]
    out += (rows[y1] - out) * fy
    return out


def _gauss_kernel(sigma: float) -> np.ndarray:
    """scipy.ndimage's Gaussian weights, truncated at 2 sigma (float32, normalised)."""
    r = int(2.0 * sigma + 0.5)
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


@_backend.register("detect_contrast", "reference")
def _contrast_reference(img, lut, b, sigma, degree, blur_sigma_px, saturation):
    H, W = img.shape[:2]
    lin = lut[img, np.arange(3)]  # per-channel decode
    field, _ = _fit_field(*_block_means(lin, (img >= saturation).any(-1), b), sigma, degree)
    if blur_sigma_px > 0:
        # truncated at 2 sigma: the tails add nothing against pixel noise, and cost half
        lin = ndimage.gaussian_filter(lin, (blur_sigma_px, blur_sigma_px, 0), truncate=2.0)
    return lin / np.maximum(_upsample(field, b, H, W), 1e-6) - 1.0, field


@_backend.register("detect_contrast", "cpu")
def _contrast_cpu(img, lut, b, sigma, degree, blur_sigma_px, saturation):
    from qupaint import _C

    H, W = img.shape[:2]
    h, w = H // b, W // b
    img = np.ascontiguousarray(img)
    small = np.empty((h, w, 3), np.float32)
    satb = np.empty((h, w), np.uint8)
    _C.detect_blocks_cpu(img.ctypes.data, H, W, lut.ctypes.data, int(saturation), b, h, w,
                         small.ctypes.data, satb.ctypes.data)  # fmt: skip
    field, _ = _fit_field(small, satb.astype(bool), sigma, degree)
    k = _gauss_kernel(blur_sigma_px) if blur_sigma_px > 0 else np.ones(1, np.float32)
    C = np.empty((H, W, 3), np.float32)
    _C.detect_contrast_cpu(img.ctypes.data, H, W, lut.ctypes.data, field.ctypes.data, b, h, w,
                           k.ctypes.data, (len(k) - 1) // 2, C.ctypes.data)  # fmt: skip
    return C, field


@dataclass
class ContrastMap:
    """Per-pixel contrast of an image to its substrate (:func:`contrast_map`)."""

    C: np.ndarray  # [H, W, 3] float32, I / I_sub - 1
    noise: np.ndarray  # [3] robust standard deviation of C on the substrate
    field: np.ndarray  # [h, w, 3] the substrate's linear colour on a grid of blocks
    block: int  # the grid's block size in pixels
    image: np.ndarray = dc_field(repr=False, default=None)  # the uint8 image
    saturation: int = 250

    @property
    def substrate(self) -> np.ndarray:
        """The substrate's mean linear colour [3]."""
        return self.field.reshape(-1, 3).mean(0)

    @property
    def saturated(self) -> np.ndarray:
        """[H, W] bool: a channel at the saturation value."""
        return (self.image >= self.saturation).any(-1)


def contrast_map(image, camera: Camera | None = None, blur_sigma_px: float = 1.0,
                 saturation: int = 250, block_px: int = 16, field_sigma: float = 0.12,
                 min_noise: float = 0.01, backend: str | None = None) -> ContrastMap:  # fmt: skip
    """The contrast ``C = I / I_sub - 1`` of every pixel of ``image`` [H, W, 3] (uint8 or
    float in [0, 1]) to the substrate around it, in the camera's linear values.

    The substrate field follows vignetting and an uneven lamp (:func:`substrate_field`).
    ``blur_sigma_px`` denoises against sensor and JPEG noise (0: none). ``noise`` is the
    per-channel scatter of C on the substrate (median absolute deviation, floored at
    ``min_noise``). ``backend``: ``"cpu"`` (the C++ kernel, default when built) or
    ``"reference"`` (numpy).

    >>> import numpy as np
    >>> img = np.full((64, 64, 3), 200, np.uint8); img[20:40, 20:40] = 150
    >>> cm = contrast_map(img, Camera.srgb("D65"), blur_sigma_px=0)
    >>> round(float(cm.C[30, 30, 0]), 3), round(float(cm.C[5, 5, 0]), 3)  # sRGB-decoded ratio
    (-0.472, 0.0)
    """
    img = _as_uint8(image)
    cam = camera or Camera.srgb("D65")
    if not (math.isfinite(blur_sigma_px) and blur_sigma_px >= 0):
        raise ValueError(f"blur_sigma_px must be >= 0; got {blur_sigma_px}")
    table = np.asarray(cam.decode_table(), dtype=np.float32)  # [256] or per channel [256, 3]
    lut = np.ascontiguousarray(np.broadcast_to(table.reshape(256, -1), (256, 3)))
    b = _block_size(*img.shape[:2], block_px)
    _, fn = _backend.select("detect_contrast", "cpu", backend)
    C, field = fn(img, lut, b, field_sigma, 4, blur_sigma_px, saturation)
    sat = (img[::4, ::4] >= saturation).any(-1)
    sub_c = C[::4, ::4][~sat].reshape(-1, 3)
    if len(sub_c) == 0:
        noise = np.full(3, min_noise)
    else:
        mad = 1.4826 * np.median(np.abs(sub_c - np.median(sub_c, 0)), 0)
        noise = np.maximum(mad, min_noise)
    return ContrastMap(C, noise.astype(np.float64), field, b, img, saturation)


@dataclass
class Ladder:
    """The layer ladder fitted to one image (:func:`fit_ladder`)."""

    oxide_nm: float
    gain: np.ndarray  # [3] per-channel contrast gain (1: the camera as calibrated)
    contrast: np.ndarray  # [max_layers, 3] predicted C of 1..max_layers layers, gain applied
    cost: float
    pieces: int  # how many pieces entered the fit
    alternatives: list = dc_field(default_factory=list)  # (oxide, gain, cost) runners-up
    grid: dict = dc_field(default_factory=dict, repr=False)  # every hypothesis's cost
    prior: tuple = (None, None, "none")  # (oxide nm, sd nm, source) of the oxide prior


def fit_ladder(contrasts, material: str, camera: Camera | None = None, noise=0.01,
               oxide_nm: float | tuple[float, float] = OXIDE_RANGE_NM, weights=None,
               config: DetectorConfig | None = None, oxide_prior_nm: float | None = None,
               oxide_prior_sd_nm: float | None = None) -> Ladder:  # fmt: skip
    """Fit the oxide and a per-channel response so that the median contrasts of an image's
    pieces ``contrasts`` [P, 3] fall on the material's layer ladder.

    The model is ``1 + C = (1 + C_L(oxide))^k`` per channel (``config.response="power"``,
    the default; ``"gain"``: ``C = k C_L``), ``L`` in 1..``max_layers``; each piece
    costs its chi-square to the nearest rung, capped at ``2 max_chi2`` (a piece that is no
    flake of this material costs the same wherever the ladder is), weighted by
    ``weights``; ``log k`` has a Gaussian prior of ``gain_prior`` around the camera's
    calibration. ``oxide_nm`` is a thickness (refined within ``oxide_window_nm``) or a
    (low, high) range searched in ``oxide_step_nm`` steps, with a Gaussian prior of
    ``oxide_prior_sd_nm`` around ``oxide_prior_nm`` when given (a calibrated camera's
    chip). The priors weigh as much as ``prior_pieces`` pieces' worth of data or more.
    """

    cfg = config or DetectorConfig()
    cam = camera or Camera.srgb("D65")
    C = np.asarray(contrasts, np.float64).reshape(-1, 3)
    w = np.ones(len(C)) if weights is None else np.asarray(weights, np.float64)
    if isinstance(oxide_nm, tuple):
        lo, hi = oxide_nm
    else:
        lo, hi = max(0.0, oxide_nm - cfg.oxide_window_nm), oxide_nm + cfg.oxide_window_nm
    step = cfg.oxide_step_nm  # on multiples of the step, so that images share grid points
    oxides = np.arange(math.ceil(lo / step) * step, math.floor(hi / step) * step + 0.5 * step,
                       step)  # fmt: skip
    if len(oxides) == 0:
        oxides = np.array([0.5 * (lo + hi)])
    mu = _ladder_grid(material, cfg.max_layers, tuple(np.round(oxides, 3)), cam)  # [T, L, 3]
    ks = np.exp(np.linspace(np.log(cfg.gains[0]), np.log(cfg.gains[1]), cfg.gain_steps))
    ks = np.unique(np.concatenate([ks, [1.0]]))  # relative to the camera's calibrated response
    kc = np.asarray(cfg.response_center, np.float64)[:, None] * ks[None]  # [3, G] per channel
    # priors count like the data grows: per piece of weight, at least prior_pieces
    scale = cfg.prior_weight * max(1.0, float(w.sum()) / cfg.prior_pieces)
    prior = scale * (np.log(ks) / cfg.gain_prior) ** 2  # [G]
    ox_prior = (np.zeros(len(oxides)) if oxide_prior_nm is None
                else scale * ((oxides - oxide_prior_nm)
                              / (oxide_prior_sd_nm or cfg.oxide_prior_sd_nm)) ** 2)  # fmt: skip
    noise = np.broadcast_to(np.asarray(noise, np.float64), (3,))
    sig = np.sqrt(noise**2 + (cfg.rel_sigma * C) ** 2)  # [P, 3], measurement-based
    cap = 2.0 * cfg.max_chi2
    if len(C) == 0:
        t = int(np.argmin(np.abs(oxides - 0.5 * (lo + hi))))
        return Ladder(float(oxides[t]), np.ones(3), mu[t], 0.0, 0)
    # separable in the channels: F[c][t, g, p, l] = ((C_pc - k_g mu_tlc) / sig_pc)^2
    F = [((C[None, None, :, None, c] - _respond(mu[:, None, None, :, c], kc[c][None, :, None, None],
                                                  cfg.response))
          / sig[None, None, :, None, c]) ** 2 for c in range(3)]  # fmt: skip
    best = (np.inf, 0, (0, 0, 0))
    costs = []
    table = np.empty((len(oxides), len(ks), len(ks), len(ks)))
    for t in range(len(oxides)):
        tot = (F[0][t][:, None, None] + F[1][t][None, :, None]
               + F[2][t][None, None, :])  # [G, G, G, P, L]  # fmt: skip
        per = np.minimum(tot.min(-1), cap) @ w  # [G, G, G]
        per = per + prior[:, None, None] + prior[None, :, None] + prior[None, None, :] + ox_prior[t]
        table[t] = per
        g = np.unravel_index(int(np.argmin(per)), per.shape)
        costs.append((float(per[g]), t, g))
        if per[g] < best[0]:
            best = (float(per[g]), t, g)
    cost, t, g = best
    k = kc[[0, 1, 2], list(g)]
    alts = sorted(costs)[1:4]
    return Ladder(float(oxides[t]), k, _respond(mu[t], k, cfg.response), cost, len(C),
                  [(float(oxides[a[1]]), kc[[0, 1, 2], list(a[2])], a[0]) for a in alts],
                  {"cost": table, "oxides": oxides, "ks": kc, "mu": mu,
                   "n": float(w.sum())})  # fmt: skip


def _respond(mu: np.ndarray, k, response: str) -> np.ndarray:
    """The contrast the camera settings show for a model contrast ``mu``: per channel,
    ``(1 + mu)^k - 1`` (a power-law response, e.g. a gamma or contrast setting) or ``k mu``
    (a linear response with an offset)."""
    if response == "power":
        return np.power(np.maximum(1.0 + mu, 1e-6), k) - 1.0
    return k * mu


_LADDERS: dict = {}


def _ladder_grid(material, max_layers, oxides, camera) -> np.ndarray:
    """[T, L, 3] model contrast of 1..``max_layers`` layers at each oxide, through the TMM,
    cached per single oxide value (fits of different images share their grid points)."""
    from qupaint.color.calibrate import layer_contrast_grid

    keys = [(material, max_layers, round(float(o), 3), camera.key) for o in oxides]
    missing = sorted({k[2] for k in keys if k not in _LADDERS})
    if missing:
        if len(_LADDERS) > 4096:
            _LADDERS.clear()
        grid = layer_contrast_grid(material, range(1, max_layers + 1), missing, camera)
        for o, g in zip(missing, grid, strict=True):
            _LADDERS[(material, max_layers, o, camera.key)] = g
    return np.stack([_LADDERS[k] for k in keys])


#: bits of the per-pixel flags (:func:`_pixel_flags`)
CAND, CORE, STRONG, BRIGHT = 1, 2, 4, 8


@_backend.register("detect_flags", "reference")
def _flags_reference(C, img, noise, saturation, fg_chi2, floor, bright_level, edge2):
    chi_sub = ((C / noise) ** 2).sum(-1)
    strong = np.abs(C).mean(-1) >= floor
    bright = (img >= saturation).any(-1) | (C.max(-1) > bright_level)
    cand = (chi_sub > fg_chi2) & ~bright
    g2 = np.zeros(C.shape[:2], np.float32)
    for c in range(3):
        gx = ndimage.sobel(C[..., c], 1)
        gy = ndimage.sobel(C[..., c], 0)
        g2 += (gx * gx + gy * gy) / np.float32((8.0 * noise[c]) ** 2)
    core = cand & (g2 < edge2)
    return (cand * CAND | core * CORE | strong * STRONG | bright * BRIGHT).astype(np.uint8)


@_backend.register("detect_flags", "cpu")
def _flags_cpu(C, img, noise, saturation, fg_chi2, floor, bright_level, edge2):
    from qupaint import _C

    H, W = C.shape[:2]
    C = np.ascontiguousarray(C, dtype=np.float32)
    img = np.ascontiguousarray(img)
    out = np.empty((H, W), np.uint8)
    _C.detect_flags_cpu(C.ctypes.data, img.ctypes.data, H, W, [float(v) for v in noise],
                        int(saturation), float(fg_chi2), float(floor), float(bright_level),
                        float(edge2), out.ctypes.data)  # fmt: skip
    return out


def _pixel_flags(cm: ContrastMap, img: np.ndarray, cfg: DetectorConfig, bright_level: float,
                 backend: str | None = None) -> np.ndarray:  # fmt: skip
    """Per-pixel bits: CAND (differs from the substrate, not bright), CORE (a candidate off
    any colour edge), STRONG (mean |C| above the floor), BRIGHT (saturated or brighter than
    a thin flake can be)."""
    _, fn = _backend.select("detect_flags", "cpu", backend)
    return fn(cm.C, img, cm.noise, cfg.saturation, cfg.fg_chi2, _faint_floor(cfg, cm.noise),
              bright_level, cfg.edge_sigma**2)  # fmt: skip


def _faint_floor(cfg: DetectorConfig, noise: np.ndarray) -> float:
    """The mean |C| below which a pixel or a piece is faint (residue, not a flake)."""
    return max(cfg.min_contrast, cfg.noise_contrast * float(noise.mean()))


@_backend.register("detect_open", "reference")
def _open_reference(flags: np.ndarray, bit: int) -> np.ndarray:
    return ndimage.binary_opening((flags & bit) > 0, structure=np.ones((3, 3), bool))


@_backend.register("detect_open", "cpu")
def _open_cpu(flags: np.ndarray, bit: int) -> np.ndarray:
    from qupaint import _C

    flags = np.ascontiguousarray(flags, dtype=np.uint8)
    out = np.empty(flags.shape, np.uint8)
    _C.detect_open3_cpu(
        flags.ctypes.data, flags.shape[0], flags.shape[1], int(bit), out.ctypes.data
    )
    return out.view(bool)


def _pieces(flags: np.ndarray, backend: str | None = None) -> tuple[np.ndarray, int]:
    """Connected pieces of the core pixels (opened with the 3x3 square, so one-pixel bridges
    do not join them)."""
    _, fn = _backend.select("detect_open", "cpu", backend)
    return ndimage.label(fn(flags, CORE), structure=np.ones((3, 3), bool))


def detect(
    image,
    material: str,
    oxide_nm: float | str | None = None,
    config: DetectorConfig | None = None,
    image_id: int | None = None,
    camera: Camera | None = None,
    um_per_px: float | None = None,
    masks: bool = False,
    explain: list | None = None,
    oxide_range: tuple[float, float] = OXIDE_RANGE_NM,
    oxide_prior_nm: float | None = None,
    backend: str | None = None,
) -> list[dict]:
    """Detect thin flakes in a whole micrograph ``image`` [H, W, 3] (uint8 or float in [0, 1]).

    ``oxide_nm`` is the SiO2 thickness, refined within ``config.oxide_window_nm``, or None /
    ``"auto"`` to fit it per image within ``oxide_range``. ``camera`` is what the image was
    taken through (a preset or ``qupaint calibrate``'s file; default sRGB under D65).
    ``um_per_px`` gives the physical minimum size (``config.min_area_um2``) and areas in
    um^2; without it the minimum is ``config.min_area_px``.

    Returns COCO detections sorted by score: ``bbox`` [x, y, w, h], ``score``,
    ``category_id`` (1 Mono, 2 Few, 3 Thick), ``layers``, ``contrast`` (median C per
    channel), ``fit_sigma`` (distance to the fitted ladder, in standard deviations),
    ``delta_e``, ``area`` (pixels), ``area_um2`` when the scale is known, ``image_id`` when
    given and ``segmentation`` (COCO RLE) when ``masks``. Thick pieces that fit the ladder
    are returned as Thick. If ``explain`` is a list, it receives one dict per piece that
    was not reported (``bbox``, ``area``, ``contrast``, ``rejected``: a rule of
    :data:`REJECT_RULES`) and, last, ``{"ladder": Ladder}``.
    """
    cfg = config or DetectorConfig()
    cfg.validate()
    if um_per_px is not None and not (np.isfinite(um_per_px) and um_per_px > 0):
        raise ValueError(f"um_per_px must be > 0; got {um_per_px}")
    img = _as_uint8(image)
    cam = camera or Camera.srgb("D65")
    H, W = img.shape[:2]
    oxide_nm = parse_oxide(oxide_nm)
    if oxide_nm == "auto":
        oxide_nm = None
    oxide_spec = tuple(oxide_range) if oxide_nm is None else float(oxide_nm)
    prior_nm, prior_sd, prior_source = _oxide_prior(img, cam, oxide_nm, oxide_prior_nm,
                                                    oxide_range, cfg)  # fmt: skip
    if prior_nm is not None:  # search where the prior allows
        reach = cfg.prior_reach * prior_sd
        oxide_spec = (max(oxide_range[0], prior_nm - reach),
                      min(oxide_range[1], prior_nm + reach))  # fmt: skip
        if oxide_spec[0] > oxide_spec[1]:
            oxide_spec = tuple(oxide_range)
    cm = contrast_map(img, cam, cfg.blur_sigma_px, cfg.saturation, cfg.block_px,
                      cfg.field_sigma, cfg.min_noise, backend)  # fmt: skip
    # the brightest a thin flake of this material can be, over the oxides considered
    if isinstance(oxide_spec, tuple):
        lo, hi = oxide_spec
    else:
        lo, hi = oxide_spec - cfg.oxide_window_nm, oxide_spec + cfg.oxide_window_nm
    if prior_nm is not None:  # the prior's likely range
        lo = max(lo, prior_nm - prior_sd)
        hi = min(hi, prior_nm + prior_sd)
    probe = tuple(np.round(np.linspace(max(0.0, lo), max(lo, hi), 9), 3))
    thin_mu = _ladder_grid(material, cfg.max_layers, probe, cam)[:, : cfg.thin_layers]
    bright_level = max(0.0, float(thin_mu.max())) + cfg.bright
    flags = _pixel_flags(cm, img, cfg, bright_level, backend)
    labels, n = _pieces(flags, backend)
    min_px = (cfg.min_area_um2 / um_per_px**2) if um_per_px else cfg.min_area_px
    min_px = max(4.0, min_px)
    bright = (flags & BRIGHT) > 0
    cand = (flags & CAND) > 0
    rows = []  # measured pieces that may be flakes
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        piece = labels[sl] == k
        area = int(piece.sum())
        if area < 0.5 * min_px:
            continue  # specks: not even worth explaining
        med = np.median(cm.C[sl][piece], axis=0)
        ys, xs = np.nonzero(piece)
        row = {"sl": sl, "piece": piece, "area": area, "med": med,
               "box": (sl[1].start + xs.min(), sl[0].start + ys.min(),
                       xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)}  # fmt: skip
        row["halo"] = 0.0
        row["rejected"] = _first_rule(piece, sl, area, med, min_px, cand, flags, bright,
                                      bright_level, cm.noise, (H, W), cfg, row)  # fmt: skip
        if row["rejected"] is None:
            del row["rejected"]
        rows.append(row)
    # the ladder is fitted to pieces darker than the substrate in some channel: bulk crystals
    # are bright in every channel, and at some other oxide a bright rung would fit them
    fit_rows = sorted((r for r in rows if "rejected" not in r
                       and (float(r["med"].min()) < 0 or not cfg.fit_dark_only)),
                      key=lambda r: -r["area"])  # fmt: skip
    fit_rows = fit_rows[: cfg.fit_pieces]
    ladder = fit_ladder(np.array([r["med"] for r in fit_rows]).reshape(-1, 3), material, cam,
                        cm.noise, oxide_spec,
                        np.log1p([r["area"] / min_px for r in fit_rows]), cfg,
                        prior_nm, prior_sd)  # fmt: skip
    ladder.prior = (prior_nm, prior_sd, prior_source)
    mu = ladder.contrast
    sub_lin = cm.substrate  # for delta_e: the mean substrate colour
    sub_lab = linear_srgb_to_lab(sub_lin)
    rows = _split_terraces(rows, cm, mu, cfg, min_px)
    free = cand & (labels == 0)  # candidates that no piece's core holds (edges, tails)
    hyp = _hypotheses(ladder, cfg)
    dets: list[dict] = []
    for r in rows:
        if "rejected" in r:
            continue
        med = r["med"]
        nl, d2min, p_thin, p_fit = _classify(med, cm.noise, mu, hyp, cfg)
        if d2min > cfg.max_chi2:
            r["rejected"] = "off_ladder"
            continue
        fit = math.sqrt(d2min / 3.0)
        grown, gy, gx = _grow(
            r["piece"],
            r["sl"],
            cfg.box_pad_px,
            free,
            cm.C,
            med,
            cm.noise,
            cfg.tail_px if nl <= cfg.thin_layers else 0,
        )  # the whole flake
        area = int(grown.sum())
        area_um2 = area * um_per_px**2 if um_per_px else area / min_px * cfg.min_area_um2
        p_class = p_thin if nl <= cfg.thin_layers else 1.0 - p_thin
        score = (math.exp(-fit / cfg.fit_scale) * (1.0 - math.exp(-area_um2 / cfg.size_um2))
                 * (1.0 - r["halo"]) * p_class)  # fmt: skip
        ys, xs = np.nonzero(grown)
        x0, y0 = gx + int(xs.min()), gy + int(ys.min())
        x1, y1 = gx + int(xs.max()) + 1, gy + int(ys.max()) + 1
        lab = linear_srgb_to_lab(sub_lin * (1.0 + med))
        d = {
            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
            "score": float(score),
            "category_id": category_of(nl),
            "layers": nl,
            "contrast": [round(float(c), 5) for c in med],
            "fit_sigma": fit,
            "p_thin": round(float(p_thin), 4),
            "p_fit": round(float(p_fit), 4),
            "delta_e": float(np.linalg.norm(lab - sub_lab)),
            "area": area,
        }
        if nl > cfg.thin_layers:
            r["rejected"] = "thick"
        if um_per_px:
            d["area_um2"] = float(area * um_per_px**2)
        if masks:
            d["segmentation"] = _rle(grown, gy, gx, H, W)
        if image_id is not None:
            d["image_id"] = image_id
        dets.append(d)
    dets.sort(key=lambda d: -d["score"])
    if explain is not None:
        explain += [{"bbox": [float(v) for v in r["box"]], "area": r["area"],
                     "contrast": [round(float(c), 4) for c in r["med"]],
                     "rejected": r["rejected"]} for r in rows if "rejected" in r]  # fmt: skip
        explain.append({"ladder": ladder})
    return dets


def _oxide_prior(img: np.ndarray, cam: Camera, oxide_nm, camera_oxide, oxide_range,
                 cfg: DetectorConfig) -> tuple[float | None, float, str]:  # fmt: skip
    """(centre, sd, source) of the oxide prior in auto mode: the substrate's own colour
    through the calibrated camera when the image is not white-balanced (a neutral substrate
    carries no oxide information), else the chip the camera was calibrated on, else none."""
    if oxide_nm is not None:
        return None, cfg.oxide_prior_sd_nm, "given"
    from qupaint.color.calibrate import estimate_oxide

    sub = np.median(img[::8, ::8].reshape(-1, 3).astype(np.float64), axis=0)
    neutral = (sub.max() - sub.min()) / max(sub.mean(), 1e-6) < cfg.neutral_substrate
    if camera_oxide is not None and not neutral and sub.min() > 0:
        lo, hi = oxide_range
        est = estimate_oxide(sub, cam, candidates=(lo, hi))
        dist = est.candidates[0][1]
        if lo < est.oxide_nm < hi and dist <= 3 * est.tolerance and not est.ambiguous:
            return est.oxide_nm, cfg.substrate_prior_sd_nm, "substrate"
    if camera_oxide is not None:
        return float(camera_oxide), cfg.oxide_prior_sd_nm, "camera"
    return None, cfg.oxide_prior_sd_nm, "none"


def _hypotheses(ladder: Ladder, cfg: DetectorConfig, top: int = 4000):
    """(ladders [K, L, 3], weights [K]) of the most probable (oxide, response) hypotheses.

    The fit's costs are chi-squares of pieces that are not independent and whose spread
    the model does not fully know, so, as in any fit whose reduced chi-square exceeds 1,
    the likelihood is tempered by it: ``w = exp(-(cost - min) / (2 max(T, min / n)))``
    with ``n`` the fitted weight of pieces and ``T`` the floor ``min_temper``. A piece's
    probability of being thin is then averaged over these hypotheses rather than read off
    the best one."""
    g = ladder.grid
    if not g:
        return ladder.contrast[None], np.ones(1)
    cost = g["cost"].reshape(-1)
    tau = 2.0 * max(cfg.min_temper, float(cost.min()) / max(1.0, g["n"]))
    idx = np.argsort(cost)[:top]
    w = np.exp(-(cost[idx] - cost[idx[0]]) / tau)
    keep = w > 1e-3
    idx, w = idx[keep], w[keep]
    T, G = g["cost"].shape[:2]
    t, g1, g2, g3 = np.unravel_index(idx, g["cost"].shape)
    kc = g["ks"]  # [3, G]
    k = np.stack([kc[0][g1], kc[1][g2], kc[2][g3]], -1)  # [K, 3]
    mus = _respond(g["mu"][t], k[:, None, :], cfg.response)  # [K, L, 3]
    return mus, w / w.sum()


def _classify(med: np.ndarray, noise: np.ndarray, mu: np.ndarray, hyp, cfg: DetectorConfig):
    """(layers, chi-square, P(thin), P(fit)) of a piece of median contrast ``med``: the
    layer count and fit on the best ladder ``mu``, unless the hypotheses ``hyp`` make it
    thin with probability >= 0.5 among those it fits (P(thin)) while it fits at least
    ``min_p_fit`` of them (P(fit)), when the layer count is the most probable thin one."""
    sig = np.sqrt(noise**2 + (cfg.rel_sigma * med) ** 2)
    d2 = (((med[None] - mu) / sig) ** 2).sum(-1)
    nl = int(np.argmin(d2)) + 1
    mus, w = hyp
    d2h = (((med[None, None] - mus) / sig) ** 2).sum(-1)  # [K, L]
    lh = d2h.argmin(1)
    ok = d2h[np.arange(len(lh)), lh] <= cfg.max_chi2
    thin = ok & (lh < cfg.thin_layers)
    p_fit = float(w[ok].sum() / max(w.sum(), 1e-12))  # on the ladder at all
    p_thin = float(w[thin].sum() / max(w[ok].sum(), 1e-12)) if ok.any() else 0.0
    if nl > cfg.thin_layers and p_thin >= 0.5 and p_fit >= cfg.min_p_fit:
        votes = np.bincount(lh[thin], weights=w[thin], minlength=cfg.thin_layers)
        nl = int(np.argmax(votes)) + 1
        return nl, float(d2h[thin][:, nl - 1].min()), p_thin, p_fit
    return nl, float(d2[nl - 1]), p_thin, p_fit


def _first_rule(piece, sl, area, med, min_px, cand, flags, bright, bright_level, noise, shape,
                cfg: DetectorConfig, row: dict) -> str | None:  # fmt: skip
    """The first rule of :data:`REJECT_RULES` (before the ladder's) that rejects a piece, or
    None; the cheap tests first. Sets ``row["halo"]``."""
    g_area = None
    if area < min_px:
        g_area = int(_grow(piece, sl, cfg.box_pad_px, cand)[0].sum())
        if g_area < min_px:
            return "too_small"  # (with its edge pixels, as its mask is reported)
    strength = float(np.abs(med).mean())
    if (strength < _faint_floor(cfg, noise)
            or not ((flags[sl][piece] & STRONG) > 0).mean() > 0.5):  # fmt: skip
        return "faint"
    if (_touches_border(sl, *shape) and strength < cfg.shading_contrast
            and float(np.ptp(med)) < cfg.shading_colour * strength):  # fmt: skip
        return "shading"
    grown = _grow(piece, sl, cfg.box_pad_px, cand)[0]  # the whole piece, for its shape
    g_area = int(grown.sum())
    width = 2.0 * g_area / max(1, int((grown & ~ndimage.binary_erosion(grown)).sum()))
    if width < cfg.min_width_px or g_area / max(width, 1.0) ** 2 > cfg.max_aspect:
        return "fibre"  # too narrow, or longer than max_aspect widths
    row["halo"] = _halo_share(bright, sl, piece, cfg.halo_px)
    if row["halo"] > cfg.max_halo:
        return "halo"
    if float(med.max()) > bright_level:
        return "bright"
    return None


def _grow(piece: np.ndarray, sl: tuple, pad: int, cand: np.ndarray, C=None, med=None, sig=None,
          reach: int = 0):  # fmt: skip
    """A piece grown by up to ``pad`` px into the candidate pixels ``cand`` [H, W] around it
    (its edge pixels, which the colour-edge split took off), as (mask, y0, x0): the mask
    in a window whose top-left pixel is (y0, x0) of the image. With ``C``, ``med``, ``sig``
    and ``reach``, it first floods through connected candidate pixels of its own colour
    (within 3 ``sig`` of ``med`` in every channel) up to ``reach`` px beyond its box: the
    narrow tails and tips the colour-edge split cut off. Its box, mask and area are the
    flake's."""
    if pad <= 0 and reach <= 0:
        return piece, sl[0].start, sl[1].start
    H, W = cand.shape
    m = pad + reach
    y0, x0 = max(0, sl[0].start - m), max(0, sl[1].start - m)
    y1, x1 = min(H, sl[0].stop + m), min(W, sl[1].stop + m)
    own = np.zeros((y1 - y0, x1 - x0), bool)
    py, px = sl[0].start - y0, sl[1].start - x0
    own[py : py + piece.shape[0], px : px + piece.shape[1]] = piece
    cw = cand[y0:y1, x0:x1]
    if reach > 0 and C is not None:
        same = cw & (np.abs(C[y0:y1, x0:x1] - med) <= 3.0 * sig).all(-1)
        own = ndimage.binary_propagation(own, mask=same | own)  # the window bounds the reach
    grown = ndimage.binary_dilation(own, iterations=pad) & (cw | own) if pad > 0 else own
    return grown, y0, x0


def _halo_share(bright: np.ndarray, sl: tuple, piece: np.ndarray, halo_px: int) -> float:
    """The share of a piece within ``halo_px`` of a bright pixel (its own window only)."""
    H, W = bright.shape
    y0, x0 = max(0, sl[0].start - halo_px), max(0, sl[1].start - halo_px)
    y1, x1 = min(H, sl[0].stop + halo_px), min(W, sl[1].stop + halo_px)
    win = bright[y0:y1, x0:x1]
    if not win.any():
        return 0.0
    near = ndimage.binary_dilation(win, iterations=halo_px)
    py, px = sl[0].start - y0, sl[1].start - x0
    return float(near[py : py + piece.shape[0], px : px + piece.shape[1]][piece].mean())


def _touches_border(sl: tuple, H: int, W: int) -> bool:
    return sl[0].start == 0 or sl[1].start == 0 or sl[0].stop == H or sl[1].stop == W


def _split_terraces(rows: list, cm: ContrastMap, mu: np.ndarray, cfg: DetectorConfig,
                    min_px: float) -> list:  # fmt: skip
    """Split each piece into its terraces: every pixel takes the nearest rung of the fitted
    ladder ``mu``; a rung that covers at least ``min_px`` connected pixels of the piece
    becomes a piece of its own (the rest stays with the largest)."""
    out = []
    for r in rows:
        if "rejected" in r or r["area"] < 2 * min_px:
            out.append(r)
            continue
        sl, piece = r["sl"], r["piece"]
        px = cm.C[sl][piece]
        # only the rungs within the piece's colour range (5-95 %, widened by the noise) can
        # be one of its terraces; one such rung: nothing to split
        lo, hi = np.percentile(px, [5, 95], axis=0)
        pad = 3.0 * np.sqrt(cm.noise**2 + (cfg.rel_sigma * r["med"]) ** 2)
        rungs = np.nonzero(np.all((mu >= lo - pad) & (mu <= hi + pad), axis=1))[0]
        if len(rungs) <= 1:
            out.append(r)
            continue
        sig = np.sqrt(cm.noise**2 + (cfg.rel_sigma * px) ** 2)
        d2 = (((px[:, None, :] - mu[None, rungs]) / sig[:, None, :]) ** 2).sum(-1)
        cls = np.zeros(piece.shape, np.int32)
        cls[piece] = rungs[d2.argmin(1)] + 1
        cls = ndimage.median_filter(cls, size=5) * piece  # blends at the steps go to a side
        parts = []
        for v in np.unique(cls[cls > 0]):
            lab, n = ndimage.label(cls == v, structure=np.ones((3, 3), bool))
            for j, sj in enumerate(ndimage.find_objects(lab), start=1):
                sub = lab[sj] == j
                if sub.sum() >= min_px:
                    parts.append((sj, sub))
        if len(parts) <= 1:
            out.append(r)
            continue
        for sj, sub in parts:
            full = np.zeros(piece.shape, bool)
            full[sj] = sub
            ys, xs = np.nonzero(full)
            nr = dict(r)
            nr.update(piece=full, area=int(full.sum()), med=np.median(cm.C[sl][full], axis=0),
                      box=(sl[1].start + xs.min(), sl[0].start + ys.min(),
                           xs.max() - xs.min() + 1, ys.max() - ys.min() + 1))  # fmt: skip
            out.append(nr)
    return out


def estimate_oxide_from_flakes(
    image, material: str, camera: Camera | None = None,
    candidates: tuple[float, float] = OXIDE_RANGE_NM, config: DetectorConfig | None = None,
) -> tuple[float | None, int]:  # fmt: skip
    """(oxide_nm, pieces fitted) from the image's own flakes: the oxide of the ladder that
    :func:`detect` fits (specks, residue, fibres, halos and crystals excluded first, so dust
    does not pull it). The camera is taken as calibrated (gain held at 1) unless ``config``
    says otherwise. (None, 0) when no piece is left to fit."""
    info: list = []
    cfg = config or DetectorConfig(gains=(1.0, 1.0))
    detect(image, material, None, cfg, camera=camera, explain=info, oxide_range=candidates)
    ladder = info[-1]["ladder"]
    return (ladder.oxide_nm if ladder.pieces else None), ladder.pieces


def _rle(mask: np.ndarray, y0: int, x0: int, H: int, W: int) -> dict:
    """COCO RLE of a window's mask whose top-left pixel is (y0, x0) of an [H, W] image."""
    from pycocotools import mask as mask_utils

    full = np.zeros((H, W), np.uint8, order="F")
    full[y0 : y0 + mask.shape[0], x0 : x0 + mask.shape[1]][mask] = 1
    rle = mask_utils.encode(full)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle
