"""Cameras: the spectral response through which the pipeline sees a stack.

A :class:`Camera` turns a reflectance spectrum R(lambda) into three channel values

    I_c = sum_lambda R(lambda) w_c(lambda),   w_c = S_c(lambda) E(lambda) / sum(S_c E),

with S_c the channel's spectral sensitivity and E the lamp's spectrum: a camera
white-balanced on a perfect reflector reads (1, 1, 1) for R = 1. The one exception is
:meth:`Camera.srgb`, today's default colour model: its weights are the CIE 1931
observer times the illuminant, mapped to linear sRGB, exactly what
``stack_color(..., space="linear_srgb")`` computes (and so no white balance: under
illuminant A a perfect reflector looks warm).

Illumination through the objective: a camera with ``na > 0`` averages R over the cone of
incidence angles that the objective's illumination aperture fills. Köhler illumination
fills the pupil uniformly, so rays are uniform over the pupil *area*: u = sin^2(theta) is
uniform on [0, NA^2] (density proportional to sin(theta) cos(theta) dtheta), and s and p
are averaged (unpolarised lamp). The integral over u is an ``angles``-point Gauss-Legendre
rule: R(theta) is smooth over the cone, so the default 4 points agree with an adaptive
integral of ``tmm.coh_tmm`` to 5e-11 at NA 0.5 (MoS2 on 285 nm SiO2; 2 points: 7e-6,
3 points: 2e-9; tested).

The camera's ``gamma`` is its response curve: the camera writes I^(1/gamma), so contrasts
measured on its pixel values are ``(I_f / I_s)^(1/gamma) - 1``; 1 (linear) is what machine
vision cameras deliver by default.

Constructors: :meth:`Camera.srgb`, :meth:`Camera.gaussian`, :meth:`Camera.from_csv`
(measured curves), :meth:`Camera.from_colour` (camera sensitivities that colour-science
ships, by name) and :meth:`Camera.load` (a JSON file written by :meth:`Camera.save` or by
``qupaint calibrate``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qupaint._io import write_json
from qupaint.color.convert import XYZ_TO_SRGB
from qupaint.color.data import illuminant_on, xyz_weights

__all__ = ["Camera", "CAMERA_KINDS", "PRESETS", "preset_file"]

#: named cameras: ``Camera.preset(name)`` (and ``--camera NAME`` on the command line)
PRESETS = {
    "srgb": "the CIE 1931 observer in linear sRGB under D65 (qupaint's default colour model)",
    "2dmatgmm": "the 2DMatGMM / MaskTerial microscope (Nikon LV, halogen, DFK 33UX174), "
    "calibrated on the labelled real graphene flakes of its data set",
}

CAMERA_KINDS = ("srgb", "gaussian", "table")
#: FWHM = 2 sqrt(2 ln 2) sigma
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def preset_file(name: str) -> Path:
    """The shipped JSON of a calibrated preset (``qupaint/color/cameras/<name>.json``): the
    camera and what was measured beside it (``oxide_nm``, ``um_per_px``, ...)."""
    if name not in PRESETS or name == "srgb":
        raise ValueError(f"camera: unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return Path(__file__).with_name("cameras") / f"{name}.json"


@dataclass(frozen=True, eq=False, repr=False)
class Camera:
    """What the pipeline sees through: R, G, B sensitivities, the lamp, the NA, the response.

    Build one with a constructor (:meth:`srgb`, :meth:`gaussian`, :meth:`from_csv`,
    :meth:`from_colour`, :meth:`load`) rather than directly.

    Attributes
    ----------
    kind : "srgb" | "gaussian" | "table"
    illuminant : the lamp: a CIE name (``"A"`` for halogen), a blackbody of a temperature
        (``"blackbody:3200"``, Planck's law) or a CSV path (``wavelength_nm,value``), as
        :func:`qupaint.color.spectra_to_xyz` accepts.
    na : illumination numerical aperture in [0, 0.95]; 0 is normal incidence only.
    gamma : response exponent (the camera writes I^(1/gamma)); 1 is linear.
    centers_nm, widths_nm : Gaussian channel centres and FWHM, (R, G, B) ("gaussian").
    table_nm, table : measured sensitivities [W] and [W, 3] ("table").
    angles : Gauss-Legendre points of the NA average.
    name : a label (shown in reports).

    Examples
    --------
    >>> from qupaint.color import Camera, stack_color
    >>> from qupaint.optics import flake_layers
    >>> cam = Camera.gaussian((610, 540, 465), (60, 60, 60), illuminant="A")
    >>> rgb = stack_color([("SiO2", 90.0)], camera=cam)   # the camera's R, G, B of the substrate
    >>> [round(float(v), 3) for v in rgb]
    [0.107, 0.103, 0.144]
    """

    kind: str
    illuminant: str = "D65"
    na: float = 0.0
    gamma: float = 1.0
    centers_nm: tuple[float, float, float] | None = None
    widths_nm: tuple[float, float, float] | None = None
    table_nm: tuple[float, ...] | None = None
    table: tuple[tuple[float, float, float], ...] | None = None
    angles: int = 4
    name: str = ""
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in CAMERA_KINDS:
            raise ValueError(f"kind must be one of {CAMERA_KINDS}; got {self.kind!r}")
        if not isinstance(self.illuminant, str):
            raise TypeError(
                "illuminant: give a CIE name (e.g. 'A', 'D65') or a CSV path "
                "(wavelength_nm,value), so the camera can be saved"
            )
        if not (0.0 <= float(self.na) <= 0.95) or not math.isfinite(self.na):
            raise ValueError(f"na must be in [0, 0.95]; got {self.na}")
        if not (float(self.gamma) > 0 and math.isfinite(self.gamma)):
            raise ValueError(f"gamma must be a positive number; got {self.gamma}")
        if int(self.angles) < 1:
            raise ValueError(f"angles must be >= 1; got {self.angles}")
        if self.kind == "gaussian":
            c = np.asarray(self.centers_nm, float)
            w = np.asarray(self.widths_nm, float)
            if c.shape != (3,) or w.shape != (3,) or not np.all(np.isfinite(c)):
                raise ValueError("centers_nm and widths_nm must be 3 numbers each (R, G, B)")
            if np.any(w <= 0) or not np.all(np.isfinite(w)):
                raise ValueError(f"widths_nm must be > 0 (FWHM in nm); got {self.widths_nm}")
        if self.kind == "table":
            wl, t = np.asarray(self.table_nm, float), np.asarray(self.table, float)
            if wl.ndim != 1 or t.shape != (wl.size, 3) or wl.size < 2:
                raise ValueError("table_nm [W] and table [W, 3] (R, G, B) must match, W >= 2")
            if not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(np.diff(wl) <= 0):
                raise ValueError(
                    "table: sensitivities must be finite and >= 0 on increasing wavelengths"
                )

    # -- constructors -----------------------------------------------------------------------
    @classmethod
    def srgb(cls, illuminant: str = "D65", na: float = 0.0) -> Camera:
        """The CIE 1931 observer mapped to linear sRGB: today's colour model exactly."""
        return cls("srgb", illuminant=illuminant, na=na, name=f"sRGB ({illuminant})")

    @classmethod
    def gaussian(
        cls,
        centers_nm=(610.0, 540.0, 465.0),
        widths_nm=(80.0, 80.0, 80.0),
        illuminant: str = "A",
        na: float = 0.0,
        gamma: float = 1.0,
        name: str = "",
    ) -> Camera:
        """Gaussian R, G, B bands of the given centres and FWHM (nm) under ``illuminant``."""
        c = tuple(float(v) for v in np.asarray(centers_nm, float).reshape(-1))
        w = tuple(float(v) for v in np.asarray(widths_nm, float).reshape(-1))
        return cls("gaussian", illuminant, float(na), float(gamma), c, w, name=name or "gaussian")

    @classmethod
    def from_table(
        cls, wavelengths_nm, sensitivities, illuminant: str = "A", na: float = 0.0,
        gamma: float = 1.0, name: str = "table",
    ) -> Camera:  # fmt: skip
        """Measured sensitivities: ``wavelengths_nm`` [W] and ``sensitivities`` [W, 3]."""
        wl = tuple(float(v) for v in np.asarray(wavelengths_nm, float).reshape(-1))
        t = tuple(tuple(float(x) for x in row) for row in np.asarray(sensitivities, float))
        return cls("table", illuminant, float(na), float(gamma), table_nm=wl, table=t, name=name)

    @classmethod
    def from_csv(cls, path: str | os.PathLike, illuminant: str = "A", na: float = 0.0,
                 gamma: float = 1.0) -> Camera:  # fmt: skip
        """Sensitivities from a CSV of ``wavelength_nm,r,g,b`` rows (``#`` comments and one
        header line are skipped)."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"path: no such file {str(path)!r}")
        rows = []
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            try:
                vals = [float(v) for v in s.split(",")]
            except ValueError:
                if rows:
                    raise ValueError(f"{path} line {lineno} is not numeric") from None
                continue
            if len(vals) != 4:
                raise ValueError(f"{path} line {lineno}: expected wavelength_nm,r,g,b")
            rows.append(vals)
        if len(rows) < 2:
            raise ValueError(f"{path}: needs at least 2 rows of wavelength_nm,r,g,b")
        a = np.asarray(rows)
        return cls.from_table(a[:, 0], a[:, 1:], illuminant, na, gamma, name=path.stem)

    @classmethod
    def from_colour(cls, name: str, illuminant: str = "A", na: float = 0.0) -> Camera:
        """A camera whose sensitivities colour-science ships
        (``colour.MSDS_CAMERA_SENSITIVITIES``, e.g. ``"Nikon 5100 (NPL)"``)."""
        import colour

        known = colour.MSDS_CAMERA_SENSITIVITIES
        if name not in known:
            raise ValueError(f"name: unknown camera {name!r}; colour-science has {sorted(known)}")
        msds = known[name]
        return cls.from_table(msds.wavelengths, msds.values, illuminant, na, name=name)

    @classmethod
    def preset(cls, name: str) -> Camera:
        """A named camera (:data:`PRESETS`); the calibrated ones ship in
        ``qupaint/color/cameras/<name>.json`` with their provenance."""
        if name == "srgb":
            return cls.srgb("D65")
        return cls.load(preset_file(name))

    @classmethod
    def resolve(cls, spec: Any) -> Camera:
        """A camera from a :class:`Camera`, its dict, a preset name or a JSON path."""
        if isinstance(spec, Camera):
            return spec
        if isinstance(spec, dict):
            return cls.from_dict(spec)
        if isinstance(spec, str) and spec in PRESETS:
            return cls.preset(spec)
        if isinstance(spec, (str, os.PathLike)):
            return cls.load(spec)
        raise TypeError(
            f"camera: give a Camera, a dict, a preset name or a JSON path; got {spec!r}"
        )

    @classmethod
    def from_dict(cls, d: dict) -> Camera:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(d, dict) or "kind" not in d:
            raise ValueError("camera: expected a dict with a 'kind' (a saved Camera)")
        allowed = {f for f in cls.__dataclass_fields__ if not f.startswith("_")}
        unknown = set(d) - allowed
        if unknown:
            raise ValueError(f"camera: unknown keys {sorted(unknown)}")
        kw = dict(d)
        for key in ("centers_nm", "widths_nm", "table_nm"):
            if kw.get(key) is not None:
                kw[key] = tuple(float(v) for v in kw[key])
        if kw.get("table") is not None:
            kw["table"] = tuple(tuple(float(x) for x in row) for row in kw["table"])
        return cls(**kw)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Camera:
        """A camera saved by :meth:`save` or by ``qupaint calibrate`` (its ``camera`` key)."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"camera: no such file {str(path)!r}")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"camera: {path} is not JSON ({exc})") from exc
        return cls.from_dict(d.get("camera", d) if isinstance(d, dict) else d)

    # -- persistence and identity -----------------------------------------------------------
    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        for key in ("centers_nm", "widths_nm", "table_nm"):
            if d[key] is not None:
                d[key] = list(d[key])
        if d["table"] is not None:
            d["table"] = [list(r) for r in d["table"]]
        return d

    def save(self, path: str | os.PathLike) -> None:
        """Write the camera as JSON (atomically)."""
        write_json(path, {"camera": self.to_dict()})

    @functools.cached_property
    def key(self) -> str:
        """A digest of everything that defines the camera (equal cameras, equal keys)."""
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Camera) and other.key == self.key

    def replace(self, **changes) -> Camera:
        """A copy with some fields changed (e.g. ``cam.replace(na=0.3)``)."""
        return Camera.from_dict({**self.to_dict(), **changes})

    # -- the model --------------------------------------------------------------------------
    def sensitivities(self, wavelengths_nm: Any) -> np.ndarray:
        """[W, 3] relative sensitivities S_c(lambda) on the grid (not for "srgb")."""
        wl = np.asarray(wavelengths_nm, dtype=np.float64).reshape(-1)
        if self.kind == "gaussian":
            c, w = np.asarray(self.centers_nm), np.asarray(self.widths_nm) * _FWHM_TO_SIGMA
            return np.exp(-0.5 * ((wl[:, None] - c[None, :]) / w[None, :]) ** 2)
        if self.kind == "table":
            t, twl = np.asarray(self.table), np.asarray(self.table_nm)
            return np.stack([np.interp(wl, twl, t[:, i], left=0.0, right=0.0) for i in range(3)], 1)
        raise ValueError("the srgb camera is the CIE observer; use weights()")

    def weights(self, wavelengths_nm: Any) -> np.ndarray:
        """[W, 3] channel weights w_c(lambda) on a regular grid (see the module docstring);
        cached per grid."""
        wl = np.asarray(wavelengths_nm, dtype=np.float64).reshape(-1)
        key = (wl.size, float(wl[0]), float(wl[-1]))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if self.kind == "srgb":
            w = xyz_weights(wl, self.illuminant) @ XYZ_TO_SRGB.T
        else:
            w = self.sensitivities(wl) * illuminant_on(self.illuminant, wl)[:, None]
            total = w.sum(axis=0)
            if np.any(total <= 0):
                raise ValueError(
                    "camera: a channel has no sensitivity where the lamp shines on this "
                    f"wavelength grid ({wl[0]:g}-{wl[-1]:g} nm)"
                )
            w = w / total
        w = np.ascontiguousarray(w)
        w.setflags(write=False)
        if len(self._cache) > 16:
            self._cache.clear()
        self._cache[key] = w
        return w

    def quadrature(self) -> tuple[np.ndarray, np.ndarray]:
        """(theta [Q] radians, weights [Q] summing to 1) of the NA average; ([0], [1]) at
        NA 0. Gauss-Legendre in u = sin^2(theta) on [0, NA^2]."""
        if self.na == 0:
            return np.zeros(1), np.ones(1)
        x, w = np.polynomial.legendre.leggauss(int(self.angles))
        u = 0.5 * (x + 1.0) * self.na**2
        return np.arcsin(np.sqrt(u)), 0.5 * w

    def linearize(self, pixels: Any) -> np.ndarray:
        """Pixel values the camera wrote (float, 0-1) -> linear channel values, float64: the
        sRGB curve for the sRGB camera, ``v^gamma`` otherwise (inverse of :meth:`response`)."""
        x = np.asarray(pixels, dtype=np.float64)
        if self.kind == "srgb":
            from qupaint.color.convert import srgb_decode

            return np.asarray(srgb_decode(x), dtype=np.float64)
        return np.clip(x, 0, None) ** self.gamma

    def decode_table(self) -> np.ndarray:
        """[256] float64: the linear value of each 8-bit pixel code this camera writes (for the
        sRGB camera the table of :func:`qupaint.color.srgb_decode_table`)."""
        if self.kind == "srgb":
            from qupaint.color.convert import srgb_decode_table

            return srgb_decode_table()
        return self.linearize(np.arange(256) / 255.0)

    def response(self, linear: Any) -> np.ndarray:
        """Pixel values the camera writes for linear channel values: I^(1/gamma)."""
        x = np.asarray(linear, dtype=np.float64)
        return x if self.gamma == 1 else np.power(np.clip(x, 0, None), 1.0 / self.gamma)

    def __repr__(self) -> str:
        """One line (a measured table would fill a screen): ``Camera(<describe()>)``."""
        return f"Camera({self.describe()}, key {self.key[:8]})"

    def describe(self) -> str:
        """One line for tables and reports."""
        parts = [self.name or self.kind, f"lamp {self.illuminant}", f"NA {self.na:.2f}"]
        if self.kind == "gaussian":
            c = "/".join(f"{v:.0f}" for v in self.centers_nm)
            w = "/".join(f"{v:.0f}" for v in self.widths_nm)
            parts.insert(1, f"R/G/B {c} nm (FWHM {w})")
        if self.gamma != 1:
            parts.append(f"gamma {self.gamma:g}")
        return ", ".join(parts)
