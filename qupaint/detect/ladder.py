"""The layer ladder of one image: the contrast of 1..N layers of the material, adapted to the
image by fitting the oxide and a per-channel response (:func:`fit_ladder`), and how a piece
is read off it (:func:`classify`).

Camera settings change the measured contrast (a white-balanced, gamma-encoded or offset
image compresses it per channel), and the oxide varies from chip to chip. Without labels,
per image, the oxide and a per-channel response exponent ``k`` are fitted so that the
pieces' contrasts fall on the ladder ``1 + C = (1 + C_L(oxide))^k`` of the material (TMM
through the camera), with the calibrated camera (``k = 1``) as the prior. A piece's
probability of being thin is averaged over the fit's hypotheses (:func:`hypotheses`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np

from qupaint import _backend
from qupaint.color import Camera
from qupaint.constants import OXIDE_RANGE_NM
from qupaint.detect.config import DetectorConfig

__all__ = ["Ladder", "classify", "classify_many", "fit_ladder", "hypotheses", "ladder_grid",
           "oxide_prior", "respond", "rung_chi2", "unlike_the_prior"]  # fmt: skip


@dataclass
class Ladder:
    """The layer ladder fitted to one image (:func:`fit_ladder`)."""

    oxide_nm: float
    response: np.ndarray  # [3] per-channel response exponent k (1: the camera as calibrated)
    contrast: np.ndarray  # [max_layers, 3] predicted C of 1..max_layers layers, response applied
    cost: float
    pieces: int  # how many pieces entered the fit
    alternatives: list = dc_field(default_factory=list)  # (oxide, response, cost) runners-up
    grid: dict = dc_field(default_factory=dict, repr=False)  # every hypothesis's cost
    prior: tuple = (None, None, "none")  # (oxide nm, sd nm, source) of the oxide prior


def rung_chi2(C: np.ndarray, mu: np.ndarray, sig: np.ndarray) -> np.ndarray:
    """[n, L]: the chi-square of each contrast ``C`` [n, 3] (uncertainty ``sig`` [n, 3]) to
    each rung ``mu`` [L, 3] of a ladder, summed over the channels in order (as ``.sum(-1)``
    would) without an [n, L, 3] temporary."""
    d2 = ((C[:, 0, None] - mu[None, :, 0]) / sig[:, 0, None]) ** 2
    for c in (1, 2):
        d2 += ((C[:, c, None] - mu[None, :, c]) / sig[:, c, None]) ** 2
    return d2


def hypothesis_votes(M: np.ndarray, a: np.ndarray, mus: np.ndarray, w: np.ndarray,
                     max_chi2: float, thin_layers: int, backend: str | None = None):  # fmt: skip
    """How the hypotheses ``mus`` [K, L, 3] (weights ``w`` [K]) see each contrast ``M`` [p, 3]
    with inverse variances ``a`` [p, 3]: on hypothesis k it sits on its nearest rung l (the
    least chi-square ``sum_c a (M - mus[k, l])^2``), and fits when that is <= ``max_chi2``.

    Returns (okw [p]: the weight of the hypotheses it fits; thinw [p]: of those where its
    rung is thin, l < ``thin_layers``; nok [p]: how many it fits; votes [p, thin_layers]:
    the weight of each thin rung; best [p, thin_layers]: the least chi-square to rung l over
    the hypotheses where it is thin, inf where none). The C++ kernel, or numpy
    (``backend="reference"``)."""
    M, a, mus, w = np.asarray(M), np.asarray(a), np.asarray(mus), np.asarray(w)
    if M.ndim != 2 or M.shape[1:] != (3,) or a.shape != M.shape:
        raise ValueError(f"M and a: [p, 3] each; got {M.shape} and {a.shape}")
    if mus.ndim != 3 or mus.shape[2] != 3 or w.shape != mus.shape[:1]:
        raise ValueError(f"mus [K, L, 3] and w [K]; got {mus.shape} and {w.shape}")
    if thin_layers < 0:
        raise ValueError(f"thin_layers must be >= 0; got {thin_layers}")
    _, fn = _backend.select("detect_hypotheses", "cpu", backend)
    return fn(np.ascontiguousarray(M, np.float64), np.ascontiguousarray(a, np.float64),
              np.ascontiguousarray(mus, np.float64), np.ascontiguousarray(w, np.float64),
              float(max_chi2), int(thin_layers))  # fmt: skip


@_backend.register("detect_hypotheses", "reference")
def _hypotheses_reference(M, a, mus, w, max_chi2, thin_layers):
    p, (K, L) = len(M), mus.shape[:2]
    d2h = np.zeros((p, K, L))
    for c in range(3):  # [p, K, L]: summed over the channels in order
        d2h += a[:, c, None, None] * (M[:, c, None, None] - mus[None, :, :, c]) ** 2
    lh = d2h.argmin(2)  # [p, K]
    ok = np.take_along_axis(d2h, lh[..., None], 2)[..., 0] <= max_chi2
    thin = ok & (lh < thin_layers)
    votes, best = np.zeros((p, thin_layers)), np.full((p, thin_layers), np.inf)
    for i in range(p):
        votes[i] = np.bincount(lh[i][thin[i]], weights=w[thin[i]], minlength=thin_layers)
        if thin[i].any():
            best[i] = d2h[i][thin[i]][:, :thin_layers].min(0)
    return ok @ w, thin @ w, ok.sum(1), votes, best


@_backend.register("detect_hypotheses", "cpu")
def _hypotheses_cpu(M, a, mus, w, max_chi2, thin_layers):
    from qupaint import _C

    p, (K, L) = len(M), mus.shape[:2]
    okw, thinw, nok = np.empty(p), np.empty(p), np.empty(p, np.int64)
    votes, best = np.empty((p, thin_layers)), np.empty((p, thin_layers))
    _C.detect_hypotheses_cpu(M.ctypes.data, a.ctypes.data, p, mus.ctypes.data, K, L,
                             w.ctypes.data, max_chi2, thin_layers, okw.ctypes.data,
                             thinw.ctypes.data, nok.ctypes.data, votes.ctypes.data,
                             best.ctypes.data)  # fmt: skip
    return okw, thinw, nok, votes, best


@_backend.register("detect_ladder_cost", "reference")
def _ladder_cost_reference(F: list, w: np.ndarray, cap: float) -> np.ndarray:
    """[T, G, G, G]: ``min(cap, min_l F0 + F1 + F2) @ w`` for the per-channel squared
    residuals F[c] [T, G, P, L] (one oxide at a time, so the temporary is [G, G, G, P, L])."""
    out = np.empty((F[0].shape[0],) + (F[0].shape[1],) * 3)
    for t in range(F[0].shape[0]):
        tot = F[0][t][:, None, None] + F[1][t][None, :, None] + F[2][t][None, None, :]
        out[t] = np.minimum(tot.min(-1), cap) @ w
    return out


@_backend.register("detect_ladder_cost", "cpu")
def _ladder_cost_cpu(F: list, w: np.ndarray, cap: float) -> np.ndarray:
    from qupaint import _C

    T, G, P, L = F[0].shape
    out = np.empty((T, G, G, G))
    _C.detect_ladder_cost_cpu(F[0].ctypes.data, F[1].ctypes.data, F[2].ctypes.data, w.ctypes.data,
                              T, G, P, L, float(cap), out.ctypes.data)  # fmt: skip
    return out


def _oxide_grid(lo: float, hi: float, step: float) -> np.ndarray:
    """The oxides from ``lo`` to ``hi`` on multiples of ``step`` (so that the fits of
    different images share grid points, and the ladder cache), or their midpoint when no
    multiple lies between them."""
    oxides = np.arange(math.ceil(lo / step) * step, math.floor(hi / step) * step + 0.5 * step,
                       step)  # fmt: skip
    return oxides if len(oxides) else np.array([0.5 * (lo + hi)])


def fit_ladder(contrasts, material: str, camera: Camera | None = None, noise=0.01,
               oxide_nm: float | tuple[float, float] = OXIDE_RANGE_NM, weights=None,
               config: DetectorConfig | None = None, oxide_prior_nm: float | None = None,
               oxide_prior_sd_nm: float | None = None) -> Ladder:  # fmt: skip
    """Fit the oxide and a per-channel response so that the median contrasts of an image's
    pieces ``contrasts`` [P, 3] fall on the material's layer ladder.

    The model is ``1 + C = (1 + C_L(oxide))^k`` per channel (``config.response_model="power"``,
    the default; ``"gain"``: ``C = k C_L``), ``L`` in 1..``max_layers``; each piece
    costs its chi-square to the nearest rung, capped at ``2 max_chi2`` (a piece that is no
    flake of this material costs the same wherever the ladder is), weighted by
    ``weights``; ``log k`` has a Gaussian prior of ``response_prior_sd`` around the camera's
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
    oxides = _oxide_grid(lo, hi, cfg.oxide_step_nm)
    mu = ladder_grid(material, cfg.max_layers, tuple(np.round(oxides, 3)), cam)  # [T, L, 3]
    lo_k, hi_k = cfg.response_range
    ks = np.exp(np.linspace(np.log(lo_k), np.log(hi_k), cfg.response_steps))
    ks = np.unique(np.concatenate([ks, [1.0]]))  # relative to the camera's calibrated response
    kc = np.asarray(cfg.response_center, np.float64)[:, None] * ks[None]  # [3, G] per channel
    # priors count like the data grows: per piece of weight, at least prior_pieces
    scale = cfg.prior_weight * max(1.0, float(w.sum()) / cfg.prior_pieces)
    prior = scale * (np.log(ks) / cfg.response_prior_sd) ** 2  # [G]
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
    F = [((C[None, None, :, None, c] - respond(mu[:, None, None, :, c], kc[c][None, :, None, None],
                                                  cfg.response_model))
          / sig[None, None, :, None, c]) ** 2 for c in range(3)]  # fmt: skip
    best = (np.inf, 0, (0, 0, 0))
    costs = []
    table = np.empty((len(oxides), len(ks), len(ks), len(ks)))
    _, grid = _backend.select("detect_ladder_cost", "cpu")
    fit = grid([np.ascontiguousarray(f) for f in F], np.ascontiguousarray(w, np.float64), cap)
    for t in range(len(oxides)):
        per = fit[t]  # [G, G, G]: each response triple's capped, weighted chi-square
        per = per + prior[:, None, None] + prior[None, :, None] + prior[None, None, :] + ox_prior[t]
        table[t] = per
        g = np.unravel_index(int(np.argmin(per)), per.shape)
        costs.append((float(per[g]), t, g))
        if per[g] < best[0]:
            best = (float(per[g]), t, g)
    cost, t, g = best
    k = kc[[0, 1, 2], list(g)]
    alts = sorted(costs)[1:4]
    return Ladder(float(oxides[t]), k, respond(mu[t], k, cfg.response_model), cost, len(C),
                  [(float(oxides[a[1]]), kc[[0, 1, 2], list(a[2])], a[0]) for a in alts],
                  {"cost": table, "oxides": oxides, "ks": kc, "mu": mu,
                   "n": float(w.sum()), "oxide_prior": ox_prior / scale,
                   "prior_scale": scale})  # fmt: skip


def respond(mu: np.ndarray, k, response: str) -> np.ndarray:
    """The contrast the camera settings show for a model contrast ``mu``: per channel,
    ``(1 + mu)^k - 1`` (a power-law response, e.g. a gamma or contrast setting) or ``k mu``
    (a linear response with an offset)."""
    if response == "power":
        return np.power(np.maximum(1.0 + mu, 1e-6), k) - 1.0
    return k * mu


_LADDER_CACHE: dict = {}


def ladder_grid(material, max_layers, oxides, camera) -> np.ndarray:
    """[T, L, 3] model contrast of 1..``max_layers`` layers at each oxide, through the TMM,
    cached per single oxide value (fits of different images share their grid points)."""
    from qupaint.color.calibrate import layer_contrast_grid

    keys = [(material, max_layers, round(float(o), 3), camera.key) for o in oxides]
    missing = sorted({k[2] for k in keys if k not in _LADDER_CACHE})
    if missing:
        if len(_LADDER_CACHE) > 4096:
            _LADDER_CACHE.clear()
        grid = layer_contrast_grid(material, range(1, max_layers + 1), missing, camera)
        for o, g in zip(missing, grid, strict=True):
            _LADDER_CACHE[(material, max_layers, o, camera.key)] = g
    return np.stack([_LADDER_CACHE[k] for k in keys])


def oxide_prior(img: np.ndarray, cam: Camera, oxide_nm, camera_oxide, oxide_range,
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


def unlike_the_prior(contrasts: np.ndarray, noise: np.ndarray, material: str, cam: Camera,
                     prior_nm: float | None, prior_sd: float, oxide_range,
                     cfg: DetectorConfig) -> np.ndarray:  # fmt: skip
    """[P] bool: the pieces whose colour no thin flake of ``material`` shows on the chips the
    oxide prior holds likely, so that they stay out of the ladder fit.

    A response ``(1 + C)^k - 1`` (k > 0) never changes a contrast's sign, so a channel's sign
    is the camera-independent part of a colour. A piece is unlike the prior when one of its
    channels is beyond ``fit_sign_z`` noise sigmas on the side where no thin rung lies at any
    oxide within ``fit_sign_sd`` prior sigmas of the prior's centre: residue and tape glue,
    darker in red and lighter in blue, on graphene's chips. Fitted with the flakes, enough of
    them pull the ladder to an oxide where graphene looks like them, and the residue is then
    read as thin flakes. The pieces stay pieces: they are classified on the ladder the
    others give. Without a prior (a given oxide, or none known) no piece is unlike it."""
    C = np.asarray(contrasts, np.float64).reshape(-1, 3)
    if prior_nm is None or len(C) == 0:
        return np.zeros(len(C), bool)
    lo = max(oxide_range[0], prior_nm - cfg.fit_sign_sd * prior_sd)
    hi = min(oxide_range[1], prior_nm + cfg.fit_sign_sd * prior_sd)
    oxides = _oxide_grid(lo, hi, cfg.oxide_step_nm)  # the fit's own grid points (cached)
    rungs = ladder_grid(material, cfg.max_layers, tuple(np.round(oxides, 3)), cam)
    rungs = rungs[:, : cfg.thin_layers].reshape(-1, 3)
    z = C / np.asarray(noise, np.float64)
    return (((z > cfg.fit_sign_z) & (rungs <= 0).all(0))
            | ((z < -cfg.fit_sign_z) & (rungs >= 0).all(0))).any(1)  # fmt: skip


def hypotheses(ladder: Ladder, cfg: DetectorConfig, top: int = 4000):
    """(ladders [K, L, 3], weights [K]) of the most probable (oxide, response) hypotheses.

    The fit's costs are chi-squares of pieces that are not independent and whose spread
    the model does not fully know, so, as in any fit whose reduced chi-square exceeds 1,
    the likelihood is tempered by it: ``w = exp(-(cost - min) / (2 max(T, min / n)))``
    with ``n`` the fitted weight of pieces and ``T`` the floor ``min_temper``. The oxide
    prior is not: it is a measured chip-to-chip spread, the probability of the chip's
    oxide, so it weighs each hypothesis by ``exp(-((oxide - centre) / sd)^2 / 2)`` (tempered
    with the data, it let hypotheses 2.5 sigmas off weigh as much as those at its centre,
    and the search window's edge decided WSe2's layers). A piece's probability of being
    thin is then averaged over these hypotheses rather than read off the best one."""
    g = ladder.grid
    if not g:
        return ladder.contrast[None], np.ones(1)
    cost = g["cost"]
    tau = 2.0 * max(cfg.min_temper, float(cost.min()) / max(1.0, g["n"]))
    op = g["oxide_prior"][:, None, None, None]  # ((oxide - centre) / sd)^2, [T, 1, 1, 1]
    cost = (cost - g["prior_scale"] * op + 0.5 * tau * op).reshape(-1)  # its share untempered
    idx = np.argsort(cost)[:top]
    w = np.exp(-(cost[idx] - cost[idx[0]]) / tau)
    keep = w > 1e-3
    idx, w = idx[keep], w[keep]
    T, G = g["cost"].shape[:2]
    t, g1, g2, g3 = np.unravel_index(idx, g["cost"].shape)
    kc = g["ks"]  # [3, G]
    k = np.stack([kc[0][g1], kc[1][g2], kc[2][g3]], -1)  # [K, 3]
    mus = respond(g["mu"][t], k[:, None, :], cfg.response_model)  # [K, L, 3]
    return mus, w / w.sum()


def classify(med: np.ndarray, noise: np.ndarray, mu: np.ndarray, hyp, cfg: DetectorConfig):
    """(layers, chi-square, P(thin), P(fit)) of a piece of median contrast ``med``: the
    layer count and fit on the best ladder ``mu``, unless the hypotheses ``hyp`` make it
    thin with probability >= 0.5 among those it fits (P(thin)) while it fits at least
    ``min_p_fit`` of them (P(fit)), when the layer count is the most probable thin one."""
    return classify_many(np.asarray(med)[None], noise, mu, hyp, cfg)[0]


def classify_many(meds: np.ndarray, noise: np.ndarray, mu: np.ndarray, hyp,
                  cfg: DetectorConfig, chunk: int = 64, backend: str | None = None
                  ) -> list[tuple]:  # fmt: skip
    """:func:`classify` of every row of ``meds`` [P, 3], the pieces taken ``chunk`` at a time
    against all hypotheses at once (:func:`hypothesis_votes`)."""
    meds = np.asarray(meds, dtype=np.float64).reshape(-1, 3)
    mus, w = hyp
    mus, w = np.ascontiguousarray(mus, np.float64), np.ascontiguousarray(w, np.float64)
    wsum = max(float(w.sum()), 1e-12)
    out = []
    for s in range(0, len(meds), chunk):
        M = meds[s : s + chunk]  # [p, 3]
        sig = np.sqrt(noise**2 + (cfg.rel_sigma * M) ** 2)  # [p, 3]
        d2 = rung_chi2(M, mu, sig)  # [p, L]
        okw, thinw, nok, votes, best_thin = hypothesis_votes(
            M, 1.0 / sig**2, mus, w, cfg.max_chi2, cfg.thin_layers, backend
        )
        for i in range(len(M)):
            nl = int(np.argmin(d2[i])) + 1
            p_fit = float(okw[i]) / wsum  # on the ladder at all
            p_thin = float(thinw[i]) / max(float(okw[i]), 1e-12) if nok[i] else 0.0
            if nl > cfg.thin_layers and p_thin >= 0.5 and p_fit >= cfg.min_p_fit:
                nl = int(np.argmax(votes[i])) + 1
                out.append((nl, float(best_thin[i, nl - 1]), p_thin, p_fit))
            else:
                out.append((nl, float(d2[i][nl - 1]), p_thin, p_fit))
    return out
