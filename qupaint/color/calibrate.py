"""Calibration to a real microscope: fit the camera and the oxide from a few flakes, and
estimate the oxide from the bare substrate.

The forward model is the one every stage uses: TMM reflectance of air / flake / SiO2 / Si
averaged over the camera's illumination cone, weighted by its channel sensitivities times
the lamp (:class:`~qupaint.color.Camera`), contrast ``C = I_flake / I_substrate - 1`` per
channel. :func:`fit_camera` inverts it for the oxide thickness and a Gaussian camera
(band centres, widths, NA) from measured per-channel contrasts; :func:`estimate_oxide` uses
the substrate's colour alone.

How the fit works: a grid over the oxide range (every ``grid_step_nm``) with the prior
camera finds the promising thicknesses (interference makes the cost periodic, so there are
several); from the best few, a bounded least-squares fit (scipy's trust-region reflective)
adjusts the oxide and the camera with a Gaussian prior on the camera parameters. The
reflectance of every observed stack is computed at every oxide of the grid and every angle
of the quadrature in one batched kernel call.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qupaint.color.camera import Camera
from qupaint.constants import OXIDE_RANGE_NM
from qupaint.optics import (
    DEFAULT_WAVELENGTHS_NM,
    get_material,
    monolayer_thickness_nm,
    reflectance,
    refractive_index,
)

__all__ = [
    "CameraFit",
    "OxideEstimate",
    "fit_camera",
    "median_with_error",
    "estimate_oxide",
    "layer_contrast_grid",
    "CAMERA_PRIOR",
]

#: prior of the Gaussian camera: (mean, std) of each parameter. Centres and widths are those
#: of typical Bayer CMOS colour filters (e.g. the Sony IMX series: R ~600-620 nm, G ~530-550,
#: B ~460-470, FWHM ~80-100 nm); the NA is a half-open condenser/field aperture.
CAMERA_PRIOR = {
    "centers_nm": ((610.0, 20.0), (540.0, 15.0), (465.0, 15.0)),
    "widths_nm": ((90.0, 30.0), (90.0, 30.0), (90.0, 30.0)),
    "na": (0.2, 0.2),
}
_BOUNDS = {
    "centers_nm": ((560.0, 680.0), (490.0, 590.0), (410.0, 510.0)),
    "widths_nm": ((20.0, 220.0),) * 3,
    "na": (0.0, 0.9),
}
_FIT_ANGLES = 3  # quadrature points while fitting (the saved camera uses its default)


@dataclass
class CameraFit:
    """Result of :func:`fit_camera`.

    Attributes
    ----------
    camera : the fitted :class:`~qupaint.color.Camera` (Gaussian).
    oxide_nm : fitted SiO2 thickness.
    rms : root-mean-square contrast residual over all observed channels.
    residuals : [n_obs, 3] model minus measured contrast.
    predicted : [n_obs, 3] model contrast.
    alternatives : other (oxide_nm, rms) local solutions, best first.
    oxide_sd_nm : the oxide's standard uncertainty (1 sigma) within its solution: from the
        fit's Jacobian (``(J^T J)^-1``, residuals in units of the contrasts' uncertainty,
        the camera's prior included), NaN where the fit sits on the range's edge. The
        other solutions (``alternatives``) are not in it.
    response : the camera's per-channel tone curve ``1 + C -> (1 + C)^k`` (R, G, B), when
        fitted (``fit_camera(response=True)``); the detector's ``response_model="power"``
        and a camera file's ``response``.
    """

    camera: Camera
    oxide_nm: float
    rms: float
    residuals: np.ndarray
    predicted: np.ndarray
    alternatives: list[tuple[float, float]] = field(default_factory=list)
    oxide_sd_nm: float = float("nan")
    response: tuple[float, float, float] | None = None

    def to_dict(self) -> dict:
        d = {
            "camera": self.camera.to_dict(),
            "oxide_nm": self.oxide_nm,
            "oxide_sd_nm": None if math.isnan(self.oxide_sd_nm) else round(self.oxide_sd_nm, 3),
            "rms": self.rms,
            "residuals": np.round(self.residuals, 6).tolist(),
            "alternatives": [[round(o, 2), round(r, 6)] for o, r in self.alternatives],
        }
        if self.response is not None:  # the camera file's response: the detector's prior
            d["response"] = [round(k, 4) for k in self.response]
        return d


@dataclass
class OxideEstimate:
    """Result of :func:`estimate_oxide`: candidates ``[(oxide_nm, distance)]`` best first;
    ``ambiguous`` when more than one is within the tolerance."""

    oxide_nm: float
    candidates: list[tuple[float, float]]
    ambiguous: bool
    tolerance: float


class _Stacks:
    """Reflectance of air / flake / SiO2 / Si for a fixed set of flakes (row 0: the bare
    substrate, as a zero-thickness flake) at any oxides and illumination angles."""

    def __init__(self, flakes: Sequence[tuple[str, int]], wavelengths_nm: np.ndarray):
        self.wl = np.asarray(wavelengths_nm, dtype=np.float64)
        air = refractive_index("air", self.wl)
        sio2, si = refractive_index("SiO2", self.wl), refractive_index("Si", self.wl)
        ns, ds = [np.stack([air, air, sio2, si])], [0.0]  # the substrate: an empty flake layer
        for mat, nl in flakes:
            ns.append(np.stack([air, refractive_index(mat, self.wl, layers=nl), sio2, si]))
            ds.append(nl * monolayer_thickness_nm(mat))
        self.n = np.stack(ns)  # [S, 4, W]
        self.t = np.asarray(ds)  # [S]

    def spectra(self, oxides_nm: np.ndarray, na: float, angles: int) -> np.ndarray:
        """[T, S, W] reflectance averaged over the cone (Gauss-Legendre in sin^2 theta)."""
        theta, w = Camera("srgb", na=float(na), angles=angles).quadrature()
        T, S, Q = len(oxides_nm), len(self.t), len(theta)
        d = np.empty((T, S, Q, 4))
        d[..., 0] = d[..., 3] = np.inf
        d[..., 1] = self.t[None, :, None]
        d[..., 2] = np.asarray(oxides_nm, float)[:, None, None]
        n = np.broadcast_to(self.n[None, :, None], (T, S, Q, 4, self.wl.size))
        th = np.broadcast_to(theta[None, None, :], (T, S, Q))
        R = reflectance(n.reshape(-1, 4, self.wl.size), d.reshape(-1, 4), self.wl,
                        theta0=th.reshape(-1), pol="u")  # fmt: skip
        return np.einsum("tsqw,q->tsw", np.asarray(R).reshape(T, S, Q, -1), w)


def _contrast(R: np.ndarray, camera: Camera, wl: np.ndarray) -> np.ndarray:
    """[T, S, W] spectra (row 0 substrate) -> [T, S - 1, 3] contrast through ``camera``."""
    I = camera.response(R @ camera.weights(wl))  # noqa: E741
    return I[:, 1:] / I[:, :1] - 1.0


def _camera_from(p: np.ndarray, illuminant: str, gamma: float) -> Camera:
    return Camera.gaussian(p[1:4], p[4:7], illuminant=illuminant, na=float(p[7]), gamma=gamma,
                           name="calibrated")  # fmt: skip


def _check_observations(observations) -> tuple[list[tuple[str, int]], np.ndarray]:
    if observations is None or len(observations) == 0:
        raise ValueError(
            "observations: give at least one (material, layers, (C_R, C_G, C_B)), e.g. "
            "[('graphene', 1, (-0.138, -0.139, -0.068))]"
        )
    flakes, C = [], []
    for i, obs in enumerate(observations):
        if not isinstance(obs, (tuple, list)) or len(obs) != 3:
            raise ValueError(f"observations[{i}] must be (material, layers, (C_R, C_G, C_B))")
        mat, nl, c = obs
        name = get_material(mat).name  # unknown material: ValueError naming the known ones
        monolayer_thickness_nm(name)  # bulk media (SiO2, Si, air) are not flakes
        if int(nl) != nl or nl < 1:
            raise ValueError(f"observations[{i}]: layers must be a positive integer; got {nl!r}")
        c = np.asarray(c, dtype=np.float64).reshape(-1)
        if c.shape != (3,) or not np.all(np.isfinite(c)) or np.any(c <= -1):
            raise ValueError(
                f"observations[{i}]: contrast must be 3 finite numbers > -1 (C = I/I_sub - 1, "
                f"R, G, B); got {obs[2]!r}"
            )
        flakes.append((name, int(nl)))
        C.append(c)
    materials = {m for m, _ in flakes}
    if len(materials) > 1:
        raise ValueError(
            f"observations: one material per calibration (got {sorted(materials)}); "
            "the oxide is shared, so fit each material's flakes in its own call"
        )
    return flakes, np.asarray(C)


def _check_range(oxide_nm) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in oxide_nm)
    except (TypeError, ValueError):
        raise ValueError(f"oxide_nm must be a (lo, hi) range in nm; got {oxide_nm!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi):
        raise ValueError(f"oxide_nm must satisfy 0 <= lo <= hi; got {oxide_nm!r}")
    return lo, hi


def median_with_error(contrasts, floor: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """(median, its uncertainty) per channel of a few flakes' contrasts [n, 3]: the median,
    and ``sqrt(floor^2 + se^2)`` with ``se`` the median's standard error
    (1.253 x 1.4826 x MAD / sqrt(n)), the ``sigma`` :func:`fit_camera` takes per observation.

    >>> m, s = median_with_error([[-0.13, -0.14, -0.09], [-0.14, -0.13, -0.30],
    ...                           [-0.13, -0.14, -0.08]])
    >>> m.round(2).tolist(), bool(s[2] > s[0])
    ([-0.13, -0.14, -0.09], True)
    """
    c = np.asarray(contrasts, dtype=np.float64).reshape(-1, 3)
    if len(c) == 0 or not np.all(np.isfinite(c)):
        raise ValueError("contrasts: give at least one flake's finite (C_R, C_G, C_B)")
    med = np.median(c, axis=0)
    mad = np.median(np.abs(c - med), axis=0)
    se = 1.253 * 1.4826 * mad / np.sqrt(len(c))
    return med, np.sqrt(floor**2 + se**2)


def fit_camera(
    observations: Sequence[tuple[str, int, Sequence[float]]],
    oxide_nm: tuple[float, float] = OXIDE_RANGE_NM,
    illuminant: str = "A",
    sigma: float | Any = 0.02,
    sigma_rel: float = 0.1,
    gamma: float = 1.0,
    prior: dict | None = None,
    grid_step_nm: float = 1.0,
    starts: int = 3,
    wavelengths_nm: Any = None,
    response: bool = False,
    response_prior_sd: float = 0.35,
) -> CameraFit:
    """Fit the oxide thickness and a Gaussian camera to measured flake contrasts.

    Parameters
    ----------
    observations : ``[(material, layers, (C_R, C_G, C_B)), ...]``: contrasts
        ``C = I_flake / I_substrate - 1`` measured on the user's microscope (e.g. the median
        pixel of one or two identified flakes over the median of the substrate around them),
        one material (the oxide is shared).
    oxide_nm : (lo, hi) range of the SiO2 thickness (a nominal "285 nm" wafer is 270-300).
    illuminant : the lamp (``"A"`` for halogen).
    sigma, sigma_rel : uncertainty of a measured contrast C, ``sigma + sigma_rel * |C|``
        (residuals are divided by it): strong contrasts (TMDs, thick flakes) scatter more
        between flakes than faint ones. ``sigma`` may be given per observation and channel
        ([n_obs, 3]): an observation that is the median of a few flakes which disagree in
        a channel (:func:`median_with_error`) then weighs less there.
    gamma : the camera's response exponent (1 for linear pixel values); not fitted.
    prior : overrides of :data:`CAMERA_PRIOR` (same keys).
    grid_step_nm, starts : oxide grid of the global search and local fits started from it.
    response : also fit the camera's tone curve, a per-channel exponent ``k`` with
        ``1 + C -> (1 + C)^k`` (the pixel values' response, which gain, gamma and white
        balance settings bend), with a Gaussian prior of ``response_prior_sd`` on
        ``log k`` around 1. The spectral model alone, fitted to 1-2 layers, is too dark in
        red and too light in green at 3-4 layers on the 2DMatGMM camera; see
        ``docs/microscope.md`` for what it buys.

    Returns
    -------
    :class:`CameraFit` with ``.camera``, ``.oxide_nm``, ``.rms`` and the alternatives.

    Identifiability: each observed channel constrains the interference phase of the
    oxide near that channel's wavelength, so the oxide and the band centres are
    determined by a few flakes; the widths and the NA only soften the contrast (a broad band
    or cone averages the fringe) and, with 2-3 flakes, stay close to the prior. Their prior
    keeps the fit well-posed with as little as one flake (3 numbers for 8 parameters). The
    oxide is periodic in the data (a thickness about lambda / (2 n) ~ 190 nm thicker gives
    similar colours), so keep its range to what the wafer's datasheet allows; the other
    local solutions are listed in ``alternatives``.

    Raises
    ------
    ValueError
        Empty or malformed observations, NaN, an unknown or non-layered material, more
        than one material, or a bad range.

    Examples
    --------
    >>> fit = fit_camera([("graphene", 1, (-0.134, -0.137, -0.086)),
    ...                   ("graphene", 2, (-0.256, -0.258, -0.159))], oxide_nm=(80, 100))
    >>> f"{fit.oxide_nm:.0f} nm, rms {fit.rms:.3f}"
    '91 nm, rms 0.004'
    >>> fit.camera.kind, len(fit.predicted)
    ('gaussian', 2)
    """
    from scipy.optimize import least_squares

    flakes, C = _check_observations(observations)
    lo, hi = _check_range(oxide_nm)
    sigma = np.asarray(sigma, dtype=np.float64)
    try:
        sigma = np.broadcast_to(sigma, C.shape)
    except ValueError:
        raise ValueError(f"sigma: a number or one per observation and channel {C.shape}; "
                         f"got shape {sigma.shape}") from None  # fmt: skip
    if not (np.all(sigma > 0) and np.all(np.isfinite(sigma))) or not (sigma_rel >= 0):
        raise ValueError("sigma must be > 0 (finite) and sigma_rel >= 0; got "
                         f"{sigma.min() if sigma.size else sigma}, {sigma_rel}")  # fmt: skip
    sig = sigma + sigma_rel * np.abs(C)
    pr = {**CAMERA_PRIOR, **(prior or {})}
    if response and not response_prior_sd > 0:
        raise ValueError(f"response_prior_sd must be > 0; got {response_prior_sd}")
    n_resp = 3 if response else 0  # log k per channel, after the camera's 8 parameters
    mean = np.array([0.0, *[m for m, _ in pr["centers_nm"]], *[m for m, _ in pr["widths_nm"]],
                     pr["na"][0], *[0.0] * n_resp])  # fmt: skip
    std = np.array([np.inf, *[s for _, s in pr["centers_nm"]], *[s for _, s in pr["widths_nm"]],
                    pr["na"][1], *[response_prior_sd] * n_resp])  # fmt: skip
    bounds = [(lo, hi), *_BOUNDS["centers_nm"], *_BOUNDS["widths_nm"], _BOUNDS["na"],
              *[(math.log(0.5), math.log(2.0))] * n_resp]  # fmt: skip
    lower, upper = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])
    mean[1:] = np.clip(mean[1:], lower[1:], upper[1:])
    wl = DEFAULT_WAVELENGTHS_NM if wavelengths_nm is None else np.asarray(wavelengths_nm, float)
    stacks = _Stacks(flakes, wl)

    # global search over the oxide with the prior camera
    grid = np.arange(lo, hi + 0.5 * grid_step_nm, grid_step_nm) if hi > lo else np.array([lo])
    prior_cam = _camera_from(mean, illuminant, gamma)
    cost = (((_contrast(stacks.spectra(grid, mean[7], _FIT_ANGLES), prior_cam, wl) - C) / sig)
            ** 2).sum(axis=(1, 2))  # fmt: skip
    is_min = np.r_[True, cost[1:] <= cost[:-1]] & np.r_[cost[:-1] <= cost[1:], True]
    seeds = grid[is_min][np.argsort(cost[is_min])][: max(1, starts)]

    cache: dict = {}

    def spectra(oxide: float, na: float) -> np.ndarray:
        # the camera's bands do not change R: of the 9 evaluations of a finite-difference
        # Jacobian only those that move the oxide or the NA compute spectra
        key = (oxide, na)
        if key not in cache:
            if len(cache) > 64:
                cache.clear()
            cache[key] = stacks.spectra(np.array([oxide]), na, _FIT_ANGLES)
        return cache[key]

    def toned(c: np.ndarray, p: np.ndarray) -> np.ndarray:
        """The model contrast through the fitted tone curve (when fitted)."""
        return (1.0 + c) ** np.exp(p[8:11]) - 1.0 if n_resp else c

    def residuals(p):
        cam = _camera_from(p, illuminant, gamma)
        model = toned(_contrast(spectra(p[0], p[7]), cam, wl)[0], p)
        return np.concatenate([((model - C) / sig).ravel(), ((p - mean) / std)[1:]])

    fits = []
    for t0 in seeds:
        p0 = mean.copy()
        p0[0] = t0
        r = least_squares(residuals, p0, bounds=(lower, upper), x_scale="jac", max_nfev=200)
        fits.append((r.cost, r.x, r.jac))
    fits.sort(key=lambda f: f[0])
    best, jac = fits[0][1], fits[0][2]
    cam = _camera_from(best, illuminant, gamma)
    predicted = toned(_contrast(stacks.spectra(np.array([best[0]]), best[7], cam.angles), cam,
                                wl)[0], best)  # fmt: skip
    resid = predicted - C

    def rms_of(p):
        m = toned(_contrast(spectra(p[0], p[7]), _camera_from(p, illuminant, gamma), wl)[0], p)
        return float(np.sqrt(np.mean((m - C) ** 2)))

    alternatives = [(float(p[0]), rms_of(p)) for _, p, _ in fits[1:]
                    if abs(p[0] - best[0]) > 2 * grid_step_nm]  # fmt: skip
    resp = tuple(float(k) for k in np.exp(best[8:11])) if n_resp else None
    return CameraFit(cam, float(best[0]), float(np.sqrt(np.mean(resid**2))), resid, predicted,
                     alternatives, _oxide_sd(jac, best[0], lo, hi, grid_step_nm),
                     resp)  # fmt: skip


def _oxide_sd(jac: np.ndarray, oxide: float, lo: float, hi: float, step: float) -> float:
    """The oxide's 1-sigma uncertainty from a least-squares Jacobian (first parameter);
    NaN on the range's edge, where the curvature does not bound it."""
    if hi - lo < step or min(oxide - lo, hi - oxide) < 0.5 * step:
        return float("nan")
    J = np.asarray(jac, dtype=np.float64)
    cov = np.linalg.pinv(J.T @ J)
    return float(np.sqrt(cov[0, 0])) if cov[0, 0] > 0 else float("nan")


def layer_contrast_grid(
    material: str, layers: Sequence[int], oxides_nm: Sequence[float], camera: Camera | None = None
) -> np.ndarray:
    """[T, K, 3] linear contrast ``I_flake / I_substrate - 1`` (before the camera's response)
    of ``layers`` layers of ``material`` at each of ``oxides_nm``, in one batched call."""
    cam = camera or Camera.srgb("D65")
    name = get_material(material).name
    stacks = _Stacks([(name, int(n)) for n in layers], DEFAULT_WAVELENGTHS_NM)
    R = stacks.spectra(np.asarray(oxides_nm, float), cam.na, cam.angles)
    I = R @ cam.weights(DEFAULT_WAVELENGTHS_NM)  # noqa: E741
    return I[:, 1:] / I[:, :1] - 1.0


def _substrate_linear(substrate: Any, camera: Camera) -> np.ndarray:
    """The substrate's linear camera RGB from an RGB triple or an image of the chip."""
    x = np.asarray(substrate)
    if x.ndim not in (1, 3) or x.shape[-1] != 3:
        raise ValueError(
            f"substrate: give an RGB triple or an [H, W, 3] image; got shape {x.shape}"
        )
    if x.dtype == np.uint8:
        x = x.astype(np.float64) / 255.0
    elif not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"substrate: numeric values expected; got dtype {x.dtype}")
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("substrate contains NaN or inf")
    if x.ndim == 1 and x.max() > 1.0:
        x = x / 255.0  # an 8-bit triple
    lin = camera.linearize(x)  # the pixels the camera wrote -> linear
    return np.median(lin.reshape(-1, 3), axis=0) if lin.ndim == 3 else lin


@functools.lru_cache(maxsize=32)
def _substrate_chroma(camera: Camera, lo: float, hi: float, step_nm: float):
    """(oxides [T], chromaticity [T, 3]) of the bare substrate through ``camera`` (cached:
    a batch of images of one chip asks for the same table)."""
    grid = np.arange(lo, hi + 0.5 * step_nm, step_nm) if hi > lo else np.array([lo])
    stacks = _Stacks([], DEFAULT_WAVELENGTHS_NM)
    R = stacks.spectra(grid, camera.na, camera.angles)[:, 0]  # the substrate row
    pred = R @ camera.weights(DEFAULT_WAVELENGTHS_NM)
    return grid, pred / pred.sum(axis=1, keepdims=True)


def estimate_oxide(
    substrate: Any,
    camera: Camera | None = None,
    candidates: tuple[float, float] = OXIDE_RANGE_NM,
    tolerance: float = 0.01,
    step_nm: float = 0.5,
) -> OxideEstimate:
    """Estimate the SiO2 thickness from the colour of the bare substrate.

    Parameters
    ----------
    substrate : the substrate's colour as the camera wrote it: an RGB triple (0-1 or 0-255)
        or an ``[H, W, 3]`` image of the chip (its median colour, which the substrate
        dominates, is used).
    camera : the camera (default ``Camera.srgb("D65")``: sRGB-encoded pixels).
    candidates : (lo, hi) oxide range searched.
    tolerance : largest chromaticity distance (r, g, b summing to 1) of a candidate.

    Notes
    -----
    Only the chromaticity is compared, so exposure does not matter, but the camera's white
    balance does: an image balanced to make the substrate grey carries no oxide information.
    Interference colours repeat, so several thicknesses can match; all local minima within
    ``tolerance`` are returned, best first, and ``ambiguous`` says when there is more than one.
    """
    camera = camera or Camera.srgb("D65")
    lo, hi = _check_range(candidates)
    c = _substrate_linear(substrate, camera)
    if np.any(c < 0) or c.sum() <= 0:
        raise ValueError("substrate: the colour must be non-negative and not black")
    grid, chroma = _substrate_chroma(camera, float(lo), float(hi), float(step_nm))
    dist = np.linalg.norm(chroma - c / c.sum(), axis=1)
    is_min = np.r_[True, dist[1:] <= dist[:-1]] & np.r_[dist[:-1] <= dist[1:], True]
    idx = np.nonzero(is_min)[0]
    idx = idx[np.argsort(dist[idx])]
    found = [(float(grid[i]), float(dist[i])) for i in idx if dist[i] <= tolerance]
    if not found:
        found = [(float(grid[idx[0]]), float(dist[idx[0]]))]
    return OxideEstimate(found[0][0], found, len(found) > 1, tolerance)
