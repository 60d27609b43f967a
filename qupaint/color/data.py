"""CIE tables on any regular wavelength grid, taken from colour-science (loaded once).

The CIE 1931 2-degree colour-matching functions and the CIE illuminants are the tables
colour-science ships (``colour.MSDS_CMFS``, ``colour.SDS_ILLUMINANTS``); they are put on the
caller's grid with colour-science's own ``reshape_msds``/``reshape_sd`` (Sprague or linear
interpolation, constant extrapolation), so ``spectra_to_xyz`` integrates exactly what
``colour.sd_to_XYZ(..., method="Integration", shape=grid)`` does.

Importing colour-science takes ~3 s, which every new process (a CLI call, each Synthia
worker) would pay for a few hundred numbers. So the tables of named observers and
illuminants, once put on a grid, are also kept on disk: ``$QUPAINT_CACHE_DIR`` (default
``~/.cache/qupaint``; ``off`` disables it), one ``.npy`` per (table, grid), keyed by the
colour-science version, written atomically. Later processes load them without importing
colour-science; the values are bit-identical.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from qupaint._io import atomic_open

__all__ = ["grid_shape", "cmfs_on", "illuminant_on", "xyz_weights", "white_xyz", "ILLUMINANTS"]

CMFS_NAME = "CIE 1931 2 Degree Standard Observer"
#: named illuminants (any name in colour.SDS_ILLUMINANTS also works)
ILLUMINANTS = ("D65", "A", "E", "D50")


def grid_shape(wavelengths_nm: Any) -> tuple[float, float, float]:
    """(start, end, interval) of a regular grid inside 360-830 nm.

    Raises
    ------
    ValueError
        Fewer than 2 samples, irregular or decreasing spacing, or outside 360-830 nm.
    """
    wl = np.asarray(wavelengths_nm, dtype=np.float64).reshape(-1)
    if wl.size < 2:
        raise ValueError("wavelengths_nm needs at least 2 samples")
    if not np.all(np.isfinite(wl)):
        raise ValueError("wavelengths_nm must be finite")
    step = np.diff(wl)
    if np.any(step <= 0) or np.ptp(step) > 1e-6 * step.mean():
        raise ValueError(
            "wavelengths_nm must be a regular increasing grid (e.g. np.arange(400, 701, 1))"
        )
    if wl[0] < 360 - 1e-9 or wl[-1] > 830 + 1e-9:
        raise ValueError(
            f"wavelengths_nm: the CIE 1931 tables cover 360-830 nm; got {wl[0]:g}-{wl[-1]:g} nm"
        )
    return float(wl[0]), float(wl[-1]), float(step.mean())


_CACHE_FORMAT = 1


@functools.cache
def _cache_dir() -> Path | None:
    env = os.environ.get("QUPAINT_CACHE_DIR")
    if env is not None and env.strip().lower() in ("", "off", "0", "none"):
        return None
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qupaint"


@functools.cache
def _colour_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("colour-science")
    except PackageNotFoundError:  # pragma: no cover - a declared dependency
        return "unknown"


def _cache_path(kind: str, key: Any) -> Path | None:
    root = _cache_dir()
    if root is None:
        return None
    h = hashlib.sha1(repr((_CACHE_FORMAT, _colour_version(), kind, key)).encode()).hexdigest()
    return root / "cie" / f"{kind}-{h[:20]}.npy"


def _disk_cached(kind: str, key: Any, compute) -> np.ndarray:
    """``compute()`` once per (kind, key) across processes (see the module docstring)."""
    path = _cache_path(kind, key)
    if path is not None and path.exists():
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):  # a damaged file: recompute and replace it
            pass
    value = np.ascontiguousarray(compute(), dtype=np.float64)
    if path is not None:
        try:
            with atomic_open(path, "wb") as fh:
                np.save(fh, value, allow_pickle=False)
        except OSError:  # read-only home, full disk: the cache is only an optimisation
            pass
    return value


@functools.cache
def _colour():
    import colour

    return colour


def _spectral_shape(shape: tuple[float, float, float]):
    return _colour().SpectralShape(*shape)


@functools.lru_cache(maxsize=64)
def _cmfs(shape: tuple[float, float, float]) -> np.ndarray:
    def compute():
        colour = _colour()
        from colour.colorimetry import reshape_msds

        cmfs = colour.MSDS_CMFS[CMFS_NAME]
        return reshape_msds(cmfs, _spectral_shape(shape), copy=True).values

    return _disk_cached("cmfs", (CMFS_NAME, shape), compute)


def cmfs_on(wavelengths_nm: Any) -> np.ndarray:
    """CIE 1931 2-degree x-bar, y-bar, z-bar on the grid, [W, 3] float64."""
    return _cmfs(grid_shape(wavelengths_nm)).copy()


def blackbody_kelvin(spec: str) -> float:
    """The temperature (K) of a ``"blackbody:<K>"`` lamp (a halogen lamp is close to a
    blackbody of 2800-3200 K; CIE A is one of 2856 K); 1000-25000 K, else a ValueError."""
    try:
        t = float(spec.split(":", 1)[1])
    except (IndexError, ValueError):
        raise ValueError(f"illuminant: {spec!r}: give 'blackbody:<kelvin>', e.g. "
                         "'blackbody:3000'") from None  # fmt: skip
    if not 1000.0 <= t <= 25000.0:
        raise ValueError(f"illuminant: {spec!r}: the temperature must lie in 1000-25000 K")
    return t


def _illuminant_sd(illuminant: Any):
    colour = _colour()
    if isinstance(illuminant, colour.SpectralDistribution):
        return illuminant
    if isinstance(illuminant, (str, Path)) and str(illuminant) in colour.SDS_ILLUMINANTS:
        return colour.SDS_ILLUMINANTS[str(illuminant)]
    if isinstance(illuminant, str) and illuminant.lower().startswith("blackbody:"):
        return colour.sd_blackbody(blackbody_kelvin(illuminant))
    if isinstance(illuminant, (str, Path)):
        path = Path(illuminant)
        if not path.exists():
            raise ValueError(
                f"illuminant: {illuminant!r} is neither a CIE illuminant name "
                f"({', '.join(ILLUMINANTS)}, ...) nor a CSV file (wavelength_nm,value)"
            )
        data = _read_two_columns(path)
        return colour.SpectralDistribution(
            dict(zip(data[:, 0], data[:, 1], strict=True)), name=path.stem
        )
    raise TypeError(
        "illuminant must be a name, a CSV path, a colour.SpectralDistribution or an array"
    )


def _read_two_columns(path: Path) -> np.ndarray:
    """Rows of ``wavelength_nm,value``; ``#`` comments and one text header line are skipped."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            try:
                rows.append([float(v) for v in s.split(",")[:2]])
            except ValueError:
                if rows:
                    raise ValueError(f"illuminant: {path} line {lineno} is not numeric") from None
    data = np.asarray(rows, dtype=np.float64)
    if data.ndim != 2 or data.shape[0] < 2 or data.shape[1] != 2:
        raise ValueError(f"illuminant: {path} needs at least 2 rows of wavelength_nm,value")
    return data


@functools.lru_cache(maxsize=128)
def _illuminant_named(key: str, shape: tuple[float, float, float]) -> np.ndarray:
    def compute():
        from colour.colorimetry import reshape_sd

        sd = _illuminant_sd(key)
        return reshape_sd(sd, _spectral_shape(shape), copy=True).values

    return _disk_cached("illuminant", (key, shape), compute)


def illuminant_on(illuminant: Any, wavelengths_nm: Any) -> np.ndarray:
    """Relative spectral power of ``illuminant`` on the grid, [W] float64.

    ``illuminant``: a CIE name (``"D65"``, ``"A"`` = halogen/tungsten, ``"E"``, ``"D50"``,
    or any key of ``colour.SDS_ILLUMINANTS``), a CSV path (``wavelength_nm,value``), a
    ``colour.SpectralDistribution``, or an array already sampled on the grid.
    """
    shape = grid_shape(wavelengths_nm)
    if isinstance(illuminant, str) and (
        illuminant in ILLUMINANTS or illuminant in _colour().SDS_ILLUMINANTS
    ):
        return _illuminant_named(illuminant, shape).copy()
    if isinstance(illuminant, (str, Path, _colour().SpectralDistribution)):
        from colour.colorimetry import reshape_sd

        sd = reshape_sd(_illuminant_sd(illuminant), _spectral_shape(shape), copy=True)
        return np.asarray(sd.values, dtype=np.float64)
    arr = np.asarray(
        illuminant.detach().cpu() if hasattr(illuminant, "detach") else illuminant, dtype=np.float64
    )
    n = int(round((shape[1] - shape[0]) / shape[2])) + 1
    if arr.shape != (n,):
        raise ValueError(
            f"illuminant array must have one value per wavelength, shape ({n},); got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError("illuminant array must be finite and >= 0")
    return arr


def _key(illuminant: Any) -> Any:
    if isinstance(illuminant, (str, Path)):
        return str(illuminant)
    arr = np.asarray(
        illuminant.detach().cpu() if hasattr(illuminant, "detach") else illuminant, dtype=np.float64
    )
    return ("array", hashlib.sha1(arr.tobytes()).hexdigest(), arr.shape)


_WEIGHTS: dict[Any, np.ndarray] = {}


def xyz_weights(wavelengths_nm: Any, illuminant: Any = "D65") -> np.ndarray:
    """[W, 3] weights w with X = sum_w R(w) w[w, :] and Y = 1 for R = 1 (QuPAINT Eq. 3, 22).

    w = cmf * I / sum(y-bar * I); the interval cancels. Cached per (grid, illuminant).
    """
    shape = grid_shape(wavelengths_nm)
    key = (shape, _key(illuminant)) if not hasattr(illuminant, "values") else None
    if key is not None and key in _WEIGHTS:
        return _WEIGHTS[key]
    cm = _cmfs(shape)
    ill = illuminant_on(illuminant, wavelengths_nm)
    norm = float(np.sum(cm[:, 1] * ill))
    if norm <= 0:
        raise ValueError("illuminant has no power where y-bar is non-zero")
    w = np.ascontiguousarray(cm * ill[:, None] / norm)
    w.setflags(write=False)
    if key is not None:
        if len(_WEIGHTS) > 256:
            _WEIGHTS.clear()
        _WEIGHTS[key] = w
    return w


@functools.lru_cache(maxsize=32)
def _white_named(name: str) -> tuple[float, float, float]:
    def compute():
        ccs = _colour().CCS_ILLUMINANTS[CMFS_NAME]
        if name not in ccs:
            raise ValueError(
                f"white: unknown illuminant {name!r}; use e.g. 'D65', 'D50', 'A', 'E' "
                "or an XYZ triple"
            )
        return np.asarray([float(v) for v in ccs[name]])

    x, y = (float(v) for v in _disk_cached("white", (CMFS_NAME, name), compute))
    return (x / y, 1.0, (1.0 - x - y) / y)


def white_xyz(white: Any = "D65") -> tuple[float, float, float]:
    """XYZ (Y = 1) of a CIE 1931 white point by name (chromaticity from colour-science), or a
    given XYZ triple."""
    if isinstance(white, str):
        return _white_named(white)
    w = tuple(float(v) for v in np.asarray(white, dtype=np.float64).reshape(-1))
    if len(w) != 3 or not all(np.isfinite(w)) or min(w) <= 0:
        raise ValueError(f"white must be a name or a positive XYZ triple; got {white!r}")
    return w  # type: ignore[return-value]
