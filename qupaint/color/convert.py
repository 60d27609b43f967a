"""Colour conversions: spectra -> CIE XYZ -> linear/encoded sRGB -> CIELAB, and back.

Conventions (QuPAINT Eq. 3, 10-11, 22; Sec. 10.1):

* ``spectra_to_xyz``: x = S^T (I o R) with the CIE 1931 2-degree CMFs S and illuminant I
  on the caller's grid, normalised so a perfect reflector has Y = 1.
* sRGB (IEC 61966-2-1): RGB -> XYZ uses the standard's 4-decimal matrix (the one
  colour-science uses); XYZ -> RGB is its exact inverse, so round trips are lossless (the
  standard's printed inverse matrix differs from it by < 2e-4).
* CIELAB (CIE 15:2004) relative to ``white``; default D65 with the CIE 1931 chromaticity
  x, y = 0.3127, 0.3290 (colour-science's default), XYZ = (0.95046, 1, 1.08906). With
  that white, ``srgb_to_lab`` equals ``colour.XYZ_to_Lab(colour.sRGB_to_XYZ(rgb))`` to
  ~1e-12 in float64. Note sRGB white (1, 1, 1) maps to XYZ (0.9505, 1, 1.089), so its
  Lab is (100, ~0.005, ~-0.01), not exactly (100, 0, 0).

Domain (nothing returns NaN for finite input): ``srgb_decode`` keeps negative values on
the linear segment and values above 1 on the power segment; ``srgb_encode`` likewise;
``lab_to_srgb`` clips to [0, 1] unless ``clip=False``. NaN/inf input raises ``ValueError``
when ``check=True`` (default).

Every function takes numpy or torch (any leading batch shape, channels last) and returns
the same kind on the same device; uint8 sRGB input is scaled by 1/255.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from qupaint import _backend
from qupaint._arrays import (
    as_tensor,
    check_finite,
    common_device,
    elem_strides,
    pointer,
    to_output,
)
from qupaint.color.data import white_xyz, xyz_weights

__all__ = [
    "spectra_to_xyz",
    "xyz_to_linear_srgb",
    "linear_srgb_to_xyz",
    "srgb_encode",
    "srgb_decode",
    "xyz_to_lab",
    "lab_to_xyz",
    "srgb_to_lab",
    "lab_to_srgb",
    "delta_e",
    "linear_srgb_to_lab",
    "lab_to_linear_srgb",
    "srgb_decode_table",
    "kernel_color_space",
    "SRGB_TO_XYZ",
    "XYZ_TO_SRGB",
]

#: IEC 61966-2-1 linear sRGB -> XYZ (D65)
SRGB_TO_XYZ = np.array(
    [[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]
)
#: exact inverse of SRGB_TO_XYZ
XYZ_TO_SRGB = np.linalg.inv(SRGB_TO_XYZ)
_LAB_EPS = 216.0 / 24389.0  # (6/29)^3


# ---------------------------------------------------------------------------------------------
# boundary helpers


def _float_dtype(t: torch.Tensor) -> torch.dtype:
    return t.dtype if t.dtype in (torch.float32, torch.float64) else torch.float32


def _prep(x: Any, name: str, check: bool = True, allow_uint8: bool = False, channels: bool = True):
    """(tensor, torch_out) with a float (or uint8) dtype and (if ``channels``) a last
    dimension of 3."""
    device = common_device(x)
    try:
        t = as_tensor(x, device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must be a numeric array or tensor ({exc})") from exc
    if channels and (t.dim() == 0 or t.shape[-1] != 3):
        raise ValueError(
            f"{name} must have 3 channels in the last dimension [..., 3]; "
            f"got shape {tuple(t.shape)}"
        )
    if t.dtype == torch.uint8 and allow_uint8:
        return t, device is not None
    if (
        t.is_complex()
        or t.dtype == torch.bool
        or not (
            t.is_floating_point() or t.dtype in (torch.uint8, torch.int16, torch.int32, torch.int64)
        )
    ):
        raise TypeError(
            f"{name}: unsupported dtype {t.dtype}; use float32/float64"
            + (" or uint8" if allow_uint8 else "")
        )
    t = t.to(_float_dtype(t))
    if check:
        check_finite(t, name)
    return t, device is not None


def _mat(m: np.ndarray, t: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(m, dtype=t.dtype, device=t.device)


# ---------------------------------------------------------------------------------------------
# reference formulas (torch; the truth for the kernels)


def _decode(v: torch.Tensor) -> torch.Tensor:
    return torch.where(v <= 0.04045, v / 12.92, ((v.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4)


def _encode(v: torch.Tensor) -> torch.Tensor:
    return torch.where(
        v <= 0.0031308, 12.92 * v, 1.055 * v.clamp(min=0.0031308) ** (1 / 2.4) - 0.055
    )


def _f(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t > _LAB_EPS, t.clamp(min=_LAB_EPS) ** (1 / 3), t * (841 / 108) + 4 / 29)


def _finv(f: torch.Tensor) -> torch.Tensor:
    return torch.where(f > 6 / 29, f**3, (108 / 841) * (f - 4 / 29))


def _xyz_to_lab_ref(xyz: torch.Tensor, white) -> torch.Tensor:
    f = _f(xyz / torch.as_tensor(white, dtype=xyz.dtype, device=xyz.device))
    fx, fy, fz = f.unbind(-1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], -1)


def _lab_to_xyz_ref(lab: torch.Tensor, white) -> torch.Tensor:
    L, a, b = lab.unbind(-1)
    fy = (L + 16) / 116
    f = torch.stack([fy + a / 500, fy, fy - b / 200], -1)
    return _finv(f) * torch.as_tensor(white, dtype=lab.dtype, device=lab.device)


@_backend.register("srgb_to_lab", "reference")
def _srgb_to_lab_reference(rgb: torch.Tensor, white, out_dtype) -> torch.Tensor:
    x = rgb.to(torch.float64) / 255.0 if rgb.dtype == torch.uint8 else rgb.to(torch.float64)
    lab = _xyz_to_lab_ref(_decode(x) @ _mat(SRGB_TO_XYZ, x).T, white)
    return lab.to(out_dtype)


@_backend.register("lab_to_srgb", "reference")
def _lab_to_srgb_reference(lab: torch.Tensor, white, clip: bool) -> torch.Tensor:
    x = lab.to(torch.float64)
    rgb = _encode(_lab_to_xyz_ref(x, white) @ _mat(XYZ_TO_SRGB, x).T)
    return (rgb.clamp(0, 1) if clip else rgb).to(lab.dtype)


# ---------------------------------------------------------------------------------------------
# kernels


@functools.lru_cache(maxsize=16)
def _color_space_cached(white: tuple[float, float, float]):
    from qupaint import _C

    cs = _C.ColorSpace()
    cs.white = list(white)
    cs.rgb_to_xyz = SRGB_TO_XYZ.reshape(-1).tolist()
    cs.xyz_to_rgb = XYZ_TO_SRGB.reshape(-1).tolist()
    return cs


def kernel_color_space(white: Any = "D65"):
    """``qupaint._C.ColorSpace`` with the Lab white and the sRGB matrices, as the compiled
    kernels take them (the one place those constants reach C++/CUDA)."""
    return _color_space_cached(white_xyz(white))


def _pixel_args(px: torch.Tensor, out: torch.Tensor):
    from qupaint import _C

    a = _C.PixelArgs()
    a.input, a.in_kind, a.n = pointer(px), 1 if px.dtype == torch.uint8 else 0, px.shape[0]
    a.si, a.sc = elem_strides(px)
    a.out = pointer(out)
    return a


def _pixels(t: torch.Tensor) -> torch.Tensor:
    """[N, 3] view (copy only when the layout cannot be viewed so)."""
    return t.reshape(-1, 3)


def _srgb_to_lab_kernel(rgb: torch.Tensor, white, out_dtype, fn_name: str):
    px = _pixels(rgb)
    out = torch.empty(px.shape, dtype=out_dtype, device=px.device)
    if rgb.dtype != torch.uint8:
        px = px.to(out_dtype)
    args = [_dtype_name(out_dtype), _pixel_args(px, out), kernel_color_space(white)]
    _backend.launch(fn_name, args, px.device)
    return out.reshape(rgb.shape)


@_backend.register("srgb_to_lab", "cpu")
def _srgb_to_lab_cpu(rgb, white, out_dtype):
    return _srgb_to_lab_kernel(rgb, white, out_dtype, "srgb_to_lab_cpu")


@_backend.register("srgb_to_lab", "cuda")
def _srgb_to_lab_cuda(rgb, white, out_dtype):
    return _srgb_to_lab_kernel(rgb, white, out_dtype, "srgb_to_lab_cuda")


def _lab_to_srgb_kernel(lab: torch.Tensor, white, clip: bool, fn_name: str):
    px = _pixels(lab)
    out = torch.empty(px.shape, dtype=lab.dtype, device=lab.device)
    args = [_dtype_name(lab.dtype), _pixel_args(px, out), kernel_color_space(white), bool(clip)]
    _backend.launch(fn_name, args, px.device)
    return out.reshape(lab.shape)


def _dtype_name(dtype: torch.dtype) -> str:
    return "float32" if dtype == torch.float32 else "float64"


@_backend.register("lab_to_srgb", "cpu")
def _lab_to_srgb_cpu(lab, white, clip):
    return _lab_to_srgb_kernel(lab, white, clip, "lab_to_srgb_cpu")


@_backend.register("lab_to_srgb", "cuda")
def _lab_to_srgb_cuda(lab, white, clip):
    return _lab_to_srgb_kernel(lab, white, clip, "lab_to_srgb_cuda")


# ---------------------------------------------------------------------------------------------
# public API


def spectra_to_xyz(spectra: Any, wavelengths_nm: Any, illuminant: Any = "D65") -> Any:
    """CIE 1931 XYZ of reflectance (or transmittance) spectra under ``illuminant``.

    Parameters
    ----------
    spectra : [..., W] array or tensor, unitless (1 = perfect reflector).
    wavelengths_nm : [W], a regular grid inside 360-830 nm.
    illuminant : "D65" | "A" | "E" | "D50" | any colour.SDS_ILLUMINANTS key, a CSV path
        (wavelength_nm,value), a colour.SpectralDistribution, or a [W] array on the grid.

    Returns
    -------
    [..., 3] XYZ with Y = 1 for a perfect reflector (float64 unless the input is float32).

    References
    ----------
    QuPAINT Eq. (3) and (22); CIE 15:2004; equals
    ``colour.sd_to_XYZ(sd, cmfs, illuminant, method="Integration", shape=grid) / 100``.
    """
    device = common_device(spectra, wavelengths_nm)
    t = as_tensor(spectra, device)
    if t.dim() == 0:
        raise ValueError("spectra must have a wavelength dimension [..., W]")
    t = t.to(_float_dtype(t) if t.is_floating_point() else torch.float64)
    wl = (
        wavelengths_nm.detach().cpu().numpy() if torch.is_tensor(wavelengths_nm) else wavelengths_nm
    )
    w = xyz_weights(wl, illuminant)
    if t.shape[-1] != w.shape[0]:
        raise ValueError(
            f"spectra has {t.shape[-1]} wavelengths but wavelengths_nm has {w.shape[0]}"
        )
    if not bool(torch.isfinite(t).all()):
        raise ValueError("spectra contains NaN or inf")
    return to_output(t @ torch.tensor(w, dtype=t.dtype, device=t.device), device is not None)


def _apply_matrix(x: Any, m: np.ndarray, name: str) -> Any:
    t, torch_out = _prep(x, name)
    return to_output(t @ _mat(m, t).T, torch_out)


def xyz_to_linear_srgb(xyz: Any) -> Any:
    """CIE XYZ (Y = 1 white) -> linear sRGB (D65), no clipping. [..., 3] -> [..., 3]."""
    return _apply_matrix(xyz, XYZ_TO_SRGB, "xyz")


def linear_srgb_to_xyz(rgb: Any) -> Any:
    """Linear sRGB -> CIE XYZ with the IEC 61966-2-1 matrix. [..., 3] -> [..., 3]."""
    return _apply_matrix(rgb, SRGB_TO_XYZ, "rgb")


def linear_srgb_to_lab(rgb: Any, white: Any = "D65") -> Any:
    """Linear sRGB -> CIELAB relative to ``white`` (D65 by default), [..., 3] -> [..., 3]:
    ``xyz_to_lab(linear_srgb_to_xyz(rgb), white)`` in one call.

    Examples
    --------
    >>> [round(float(v), 2) for v in linear_srgb_to_lab([0.2, 0.2, 0.2])]
    [51.84, 0.0, 0.0]
    """
    t, torch_out = _prep(rgb, "rgb")
    return to_output(_xyz_to_lab_ref(t @ _mat(SRGB_TO_XYZ, t).T, white_xyz(white)), torch_out)


def lab_to_linear_srgb(lab: Any, white: Any = "D65") -> Any:
    """CIELAB -> linear sRGB, no clipping (inverse of :func:`linear_srgb_to_lab`)."""
    t, torch_out = _prep(lab, "lab")
    return to_output(_lab_to_xyz_ref(t, white_xyz(white)) @ _mat(XYZ_TO_SRGB, t).T, torch_out)


@functools.cache
def srgb_decode_table() -> np.ndarray:
    """[256] float64, read-only: the linear value of every uint8 sRGB code, as
    :func:`srgb_decode` gives it for uint8 input (decoded in float32)."""
    lut = np.asarray(srgb_decode(np.arange(256, dtype=np.uint8)), dtype=np.float64)
    lut.setflags(write=False)
    return lut


def srgb_decode(rgb: Any) -> Any:
    """sRGB-encoded -> linear (IEC 61966-2-1 piecewise EOTF), elementwise on any shape;
    uint8 is scaled by 1/255."""
    t, torch_out = _prep(rgb, "rgb", allow_uint8=True, channels=False)
    if t.dtype == torch.uint8:
        t = t.to(torch.float32) / 255.0
    return to_output(_decode(t), torch_out)


def srgb_encode(rgb: Any) -> Any:
    """Linear -> sRGB-encoded (inverse of :func:`srgb_decode`), elementwise, no clipping."""
    t, torch_out = _prep(rgb, "rgb", channels=False)
    return to_output(_encode(t), torch_out)


def xyz_to_lab(xyz: Any, white: Any = "D65") -> Any:
    """CIE XYZ -> CIELAB relative to ``white`` (name or XYZ triple with Y = 1)."""
    t, torch_out = _prep(xyz, "xyz")
    return to_output(_xyz_to_lab_ref(t, white_xyz(white)), torch_out)


def lab_to_xyz(lab: Any, white: Any = "D65") -> Any:
    """CIELAB -> CIE XYZ relative to ``white`` (inverse of :func:`xyz_to_lab`)."""
    t, torch_out = _prep(lab, "lab")
    return to_output(_lab_to_xyz_ref(t, white_xyz(white)), torch_out)


def srgb_to_lab(
    rgb: Any, white: Any = "D65", backend: str | None = None, check: bool = True
) -> Any:
    """sRGB-encoded colours -> CIELAB (the PIA colour space, QuPAINT Eq. 10).

    Parameters
    ----------
    rgb : [..., 3], float in [0, 1] (values outside are kept, see the module notes) or uint8.
    white : Lab reference white, default D65.
    backend : "reference" | "cpu" | "cuda", default automatic.
    check : raise on NaN/inf (one extra pass over the data).

    Returns
    -------
    [..., 3] L*, a*, b*; float32 for uint8/float32 input, float64 for float64.

    Examples
    --------
    >>> import numpy as np
    >>> from qupaint.color import srgb_to_lab
    >>> [round(float(v), 3) for v in srgb_to_lab(np.array([0.5, 0.5, 0.5]))]
    [53.389, 0.005, 0.002]
    """
    t, torch_out = _prep(rgb, "rgb", check=check, allow_uint8=True)
    out_dtype = torch.float32 if t.dtype == torch.uint8 else t.dtype
    _, fn = _backend.select("srgb_to_lab", t.device.type, backend)
    return to_output(fn(t, white_xyz(white), out_dtype), torch_out)


def lab_to_srgb(
    lab: Any, white: Any = "D65", clip: bool = True, backend: str | None = None, check: bool = True
) -> Any:
    """CIELAB -> sRGB-encoded in [0, 1] (clipped unless ``clip=False``), e.g. for CIELAB
    colour-jitter augmentation (QuPAINT Sec. 6)."""
    t, torch_out = _prep(lab, "lab", check=check)
    _, fn = _backend.select("lab_to_srgb", t.device.type, backend)
    return to_output(fn(t, white_xyz(white), clip), torch_out)


def delta_e(lab1: Any, lab2: Any) -> Any:
    """CIE76 colour difference: Euclidean distance in CIELAB, [..., 3] -> [...]."""
    device = common_device(lab1, lab2, names=("lab1", "lab2"))
    a, _ = _prep(lab1 if device is None else as_tensor(lab1, device), "lab1")
    b, _ = _prep(lab2 if device is None else as_tensor(lab2, device), "lab2")
    dt = torch.promote_types(a.dtype, b.dtype)
    return to_output(torch.linalg.vector_norm(a.to(dt) - b.to(dt), dim=-1), device is not None)
