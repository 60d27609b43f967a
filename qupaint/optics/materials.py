"""Measured complex refractive indices of the materials in a 2D-flake stack.

Every table ships under ``qupaint/optics/data/`` as a CSV whose first line cites the
publication and the refractiveindex.info record it was taken from (M. N. Polyanskiy,
"Refractiveindex.info database of optical constants", Sci. Data 11, 94 (2024), CC0).
n and k are interpolated linearly and separately on the measured grid (linear keeps the
excitonic peaks of the TMD data monotone between samples); wavelengths outside a
table's range raise ``ValueError``: nothing is extrapolated.

Defaults and why
----------------
=========  =======================================================================
SiO2       Malitson 1965 fused-silica Sellmeier (k = 0), the usual stand-in for thermal oxide.
Si         Green 2008, crystalline Si at 300 K.
hBN        Rah et al. 2019 Sellmeier (k = 0); valid from 400 nm, the file's 380-399 nm is the
           formula's extrapolation as tabulated by the database.
graphene   Weber et al. 2010, exfoliated graphene, fitted with a 0.34 nm thickness.
MoS2,      Hsu et al. 2019 layer-resolved 1L/2L/3L tables (397-800 nm) for ``layers`` 1-3;
MoSe2,     Munkhbat et al. 2022 bulk in-plane (ordinary) table otherwise (349-801 nm).
WS2, WSe2
WTe2       Munkhbat et al. 2022: mean of the alpha and beta permittivities (no monolayer data
           exist; the in-plane axes are not confirmed). An approximation, labelled as such.
MoWSe2     Mo(x)W(1-x)Se2 has no measured table: permittivity mixed linearly,
           eps = x eps(MoSe2) + (1-x) eps(WSe2) at the same layer count, x = 0.5 by default.
           Real alloys show one shifted exciton (bowing ~0.13 eV), not two half peaks, so
           this is a first approximation.
=========  =======================================================================
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from qupaint._arrays import as_tensor, common_device, is_torch

__all__ = [
    "FLAKE_MATERIALS",
    "Material",
    "refractive_index",
    "monolayer_thickness_nm",
    "register_material",
    "list_materials",
    "get_material",
    "wavelength_range",
    "load_nk_csv",
]


@dataclass(frozen=True)
class NKTable:
    wavelength_nm: np.ndarray
    n: np.ndarray
    k: np.ndarray
    citation: str
    source: str

    @property
    def range_nm(self) -> tuple[float, float]:
        return float(self.wavelength_nm[0]), float(self.wavelength_nm[-1])

    def __call__(self, wl: np.ndarray, what: str) -> np.ndarray:
        lo, hi = self.range_nm
        # a 1e-9 nm slack keeps grid end points that round-trip through float32 inside
        if wl.size and (wl.min() < lo - 1e-6 or wl.max() > hi + 1e-6):
            raise ValueError(
                f"wavelengths_nm: {what} is tabulated on {lo:g}-{hi:g} nm "
                f"({self.source}); got {wl.min():g}-{wl.max():g} nm. Use wavelengths inside "
                "that range (no extrapolation is done)"
            )
        n = np.interp(wl, self.wavelength_nm, self.n)
        k = np.interp(wl, self.wavelength_nm, self.k)
        return n + 1j * k


def load_nk_csv(path: str | Path) -> NKTable:
    """Read an n,k table: ``#`` comment lines (citation), a ``wavelength_nm,n,k`` header, rows.

    Raises
    ------
    ValueError
        Missing columns, fewer than 2 rows, unsorted or duplicate wavelengths, k < 0, NaN.
    """
    path = Path(path)
    comments: list[str] = []
    rows: list[list[float]] = []
    header: list[str] | None = None
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            s = line.strip()
            if not s:
                continue
            if s.startswith("#"):
                comments.append(s.lstrip("# ").strip())
                continue
            parts = [p.strip() for p in s.split(",")]
            if header is None:
                header = [p.lower() for p in parts]
                if header[:3] != ["wavelength_nm", "n", "k"]:
                    raise ValueError(
                        f"{path}: header must be 'wavelength_nm,n,k'; got {s!r} on line {lineno}"
                    )
                continue
            try:
                rows.append([float(p) for p in parts[:3]])
            except ValueError as exc:
                raise ValueError(f"{path}: line {lineno} is not numeric: {s!r}") from exc
    if header is None or len(rows) < 2:
        raise ValueError(f"{path}: need a 'wavelength_nm,n,k' header and at least 2 rows")
    data = np.asarray(rows, dtype=np.float64)
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{path}: contains NaN or inf")
    if np.any(np.diff(data[:, 0]) <= 0):
        raise ValueError(f"{path}: wavelengths must be strictly increasing")
    if np.any(data[:, 2] < 0):
        raise ValueError(f"{path}: k must be >= 0 (n + ik convention, absorbing media)")
    citation = comments[0] if comments else f"user table {path.name}"
    return NKTable(data[:, 0], data[:, 1], data[:, 2], citation, path.name)


@functools.cache
def _packaged(name: str) -> NKTable:
    ref = resources.files("qupaint.optics") / "data" / f"{name}.csv"
    with resources.as_file(ref) as p:
        return load_nk_csv(p)


@dataclass(frozen=True)
class Material:
    """A material: how to get n + ik for a layer count, and its monolayer thickness.

    ``tables`` maps a layer count (``None`` = bulk/default) to the table names combined by
    ``mix``: ``"single"`` (one table), ``"eps_mean"`` (mean permittivity of the tables),
    ``"alloy"`` (x eps(first) + (1 - x) eps(second)).
    """

    name: str
    monolayer_nm: float
    thickness_source: str
    tables: dict[int | None, tuple[str, ...]] = field(default_factory=dict)
    mix: str = "single"
    note: str = ""
    user_table: NKTable | None = None

    def _tables_for(self, layers: int | None) -> list[NKTable]:
        if self.user_table is not None:
            return [self.user_table]
        key = layers if layers in self.tables else None
        return [_packaged(t) for t in self.tables[key]]

    def index(self, wl: np.ndarray, layers: int | None = None, x: float = 0.5) -> np.ndarray:
        if self.name == "air":
            return np.ones_like(wl, dtype=np.complex128)
        what = self.name if layers is None else f"{self.name} ({layers} layers)"
        vals = [t(wl, what) for t in self._tables_for(layers)]
        if self.mix == "single":
            return vals[0]
        if self.mix == "eps_mean":
            return np.sqrt(np.mean([v * v for v in vals], axis=0))
        if self.mix == "alloy":
            return np.sqrt(x * vals[0] ** 2 + (1.0 - x) * vals[1] ** 2)
        raise AssertionError(self.mix)

    def range_nm(self, layers: int | None = None) -> tuple[float, float]:
        if self.name == "air":
            return (0.0, math.inf)
        rs = [t.range_nm for t in self._tables_for(layers)]
        return max(r[0] for r in rs), min(r[1] for r in rs)

    def citations(self, layers: int | None = None) -> list[str]:
        if self.name == "air":
            return ["n = 1 (vacuum approximation of air; |n_air - 1| < 3e-4 in the visible)"]
        return [t.citation for t in self._tables_for(layers)]


def _tmd(name: str, monolayer_nm: float, c_source: str) -> Material:
    return Material(
        name,
        monolayer_nm,
        c_source,
        tables={
            None: (f"{name}__Munkhbat2022-bulk-o",),
            1: (f"{name}__Hsu2019-1L",),
            2: (f"{name}__Hsu2019-2L",),
            3: (f"{name}__Hsu2019-3L",),
        },
        note="layers 1-3: Hsu et al., Adv. Opt. Mater. 7, 1900239 (2019); "
        "otherwise bulk in-plane: Munkhbat et al., ACS Photonics 9, 2398 (2022)",
    )


# Monolayer thickness = interlayer spacing c/2 of the bulk 2H (or Td) crystal, except graphene,
# where the n,k fit (Weber 2010) assumed 0.34 nm and the rendering must use the same value.
_WY = "c/2 of the bulk crystal, Wilson & Yoffe, Adv. Phys. 18, 193 (1969)"
_BUILTIN: dict[str, Material] = {
    "air": Material("air", 0.0, "semi-infinite medium"),
    "SiO2": Material(
        "SiO2",
        0.0,
        "bulk layer",
        tables={None: ("SiO2__Malitson1965",)},
        note="fused silica Sellmeier, stand-in for thermal oxide",
    ),
    "Si": Material("Si", 0.0, "bulk substrate", tables={None: ("Si__Green2008",)}),
    "hBN": Material(
        "hBN",
        0.333,
        "c/2 = 6.66 A / 2, Pease, Acta Cryst. 5, 356 (1952)",
        tables={None: ("hBN__Rah2019-o",)},
        note="Rah et al. 2019 Sellmeier, valid >= 400 nm; 380-399 nm is the formula extrapolated",
    ),
    "graphene": Material(
        "graphene",
        0.34,
        "thickness assumed by the n,k fit, Weber et al., APL 97, 091904 (2010)",
        tables={None: ("graphene__Weber2010",)},
    ),
    "MoS2": _tmd("MoS2", 0.615, f"c = 12.30 A; {_WY}"),
    "MoSe2": _tmd("MoSe2", 0.646, f"c = 12.93 A; {_WY}"),
    "WS2": _tmd("WS2", 0.616, f"c = 12.32 A; {_WY}"),
    "WSe2": _tmd("WSe2", 0.649, f"c = 12.98 A; {_WY}"),
    "WTe2": Material(
        "WTe2",
        0.703,
        "c/2 = 14.07 A / 2 (Td), Brown, Acta Cryst. 20, 268 (1966)",
        tables={None: ("WTe2__Munkhbat2022-alpha", "WTe2__Munkhbat2022-beta")},
        mix="eps_mean",
        note="APPROXIMATION: mean of the alpha and beta in-plane permittivities (Munkhbat 2022)",
    ),
}
_BUILTIN["MoWSe2"] = Material(
    "MoWSe2",
    0.5 * (_BUILTIN["MoSe2"].monolayer_nm + _BUILTIN["WSe2"].monolayer_nm),
    "Vegard mean of MoSe2 and WSe2 (x = 0.5)",
    tables={k: v + _BUILTIN["WSe2"].tables[k] for k, v in _BUILTIN["MoSe2"].tables.items()},
    mix="alloy",
    note="APPROXIMATION: eps = x eps(MoSe2) + (1 - x) eps(WSe2) at the same layer count",
)

#: the layered materials of QF-Bench (QuPAINT Sec. 4.2) under the names its folders use;
#: the default of Synthia, QF-Bench building and the demo (aliases of the canonical names)
FLAKE_MATERIALS = ("BN", "Graphene", "MoS2", "MoSe2", "MoWSe2", "WS2", "WSe2", "WTe2")

_ALIASES = {
    "bn": "hBN",
    "h-bn": "hBN",
    "hbn": "hBN",
    "boron nitride": "hBN",
    "graphene": "graphene",
    "c": "graphene",
    "sio2": "SiO2",
    "oxide": "SiO2",
    "si": "Si",
    "silicon": "Si",
    "air": "air",
    "vacuum": "air",
    "mos2": "MoS2",
    "mose2": "MoSe2",
    "ws2": "WS2",
    "wse2": "WSe2",
    "wte2": "WTe2",
    "mowse2": "MoWSe2",
}
_USER: dict[str, Material] = {}


def get_material(material: str | Material) -> Material:
    """Look a material up by name (case-insensitive, aliases such as ``BN``, ``h-BN``)."""
    if isinstance(material, Material):
        return material
    if not isinstance(material, str):
        raise TypeError(f"material must be a name (str); got {type(material).__name__}")
    key = material.strip().lower()
    if key in _USER:
        return _USER[key]
    canonical = _ALIASES.get(key)
    if canonical is None:
        raise ValueError(
            f"material: unknown {material!r}; known: {', '.join(list_materials())} "
            "(or add one with register_material(name, csv_path))"
        )
    return _BUILTIN[canonical]


def list_materials() -> list[str]:
    return list(_BUILTIN) + [m.name for m in _USER.values()]


def register_material(
    name: str,
    csv_path: str | Path,
    monolayer_nm: float | None = None,
    aliases: tuple[str, ...] = (),
) -> Material:
    """Add a material from a ``wavelength_nm,n,k`` CSV (``#`` lines = citation).

    The name (and aliases) then work everywhere a material name does. Re-registering a
    name replaces it; built-in names cannot be replaced.
    """
    key = name.strip().lower()
    if key in _ALIASES or any(a.lower() in _ALIASES for a in aliases):
        raise ValueError(f"name: {name!r} is a built-in material; choose another name")
    if monolayer_nm is not None and not (monolayer_nm > 0 and math.isfinite(monolayer_nm)):
        raise ValueError(f"monolayer_nm must be a positive number; got {monolayer_nm}")
    mat = Material(
        name, float(monolayer_nm or 0.0), "user supplied", user_table=load_nk_csv(csv_path)
    )
    for k in (key, *(a.strip().lower() for a in aliases)):
        _USER[k] = mat
    return mat


def monolayer_thickness_nm(material: str) -> float:
    """Thickness of one layer in nm (cited in :data:`Material.thickness_source`).

    Raises
    ------
    ValueError
        For bulk media (air, SiO2, Si) or user materials registered without a thickness.
    """
    m = get_material(material)
    if m.monolayer_nm <= 0:
        raise ValueError(
            f"material: {m.name} is not a layered crystal; it has no monolayer thickness"
        )
    return m.monolayer_nm


def wavelength_range(material: str, layers: int | None = None) -> tuple[float, float]:
    """(min, max) wavelength in nm where n, k of ``material`` are tabulated."""
    return get_material(material).range_nm(layers)


def refractive_index(
    material: str, wavelengths_nm: Any, layers: int | None = None, x: float = 0.5
) -> Any:
    """Complex refractive index n + ik of ``material`` at ``wavelengths_nm``.

    Parameters
    ----------
    material : str
        Name or alias (``list_materials()``), case-insensitive.
    wavelengths_nm : array_like or torch.Tensor, [...]
        Vacuum wavelengths in nm.
    layers : int, optional
        Layer count of a thin flake: selects the layer-resolved table where one exists
        (MoS2, MoSe2, WS2, WSe2 and MoWSe2 for 1-3 layers); ``None`` means bulk.
    x : float
        Mo fraction of MoWSe2 (Mo(x)W(1-x)Se2), in [0, 1]; ignored for other materials.

    Returns
    -------
    complex128 array of the same shape (torch on the same device for torch input).

    Raises
    ------
    ValueError
        Unknown material, wavelength outside the table range, bad ``layers`` or ``x``.
    """
    m = get_material(material)
    if layers is not None and (int(layers) != layers or layers < 1):
        raise ValueError(f"layers must be a positive integer or None; got {layers!r}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x: MoWSe2 Mo fraction must be in [0, 1]; got {x}")
    device = common_device(wavelengths_nm)
    wl = (
        wavelengths_nm.detach().cpu().double().numpy()
        if is_torch(wavelengths_nm)
        else np.asarray(wavelengths_nm, dtype=np.float64)
    )
    if not np.all(np.isfinite(wl)):
        raise ValueError("wavelengths_nm must be finite")
    out = m.index(wl.reshape(-1), None if layers is None else int(layers), x).reshape(wl.shape)
    if device is not None:
        return as_tensor(out, device)
    return out
