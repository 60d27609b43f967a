"""Batched coherent transfer-matrix reflectance of thin-film stacks.

``reflectance`` is the array-level contract of docs/architecture.md: complex indices
``[B, L, W]`` and thicknesses ``[B, L]`` in, reflectance ``[B, W]`` out, identical to
``tmm.coh_tmm(pol, n_list, d_list, th_0, lam_vac)["R"]``. ``stack_reflectance`` builds
that input from material names (QuPAINT Sec. 4.1, Eq. 1-2 and Eq. 21: air / flake /
SiO2 / Si).

The reference below is the characteristic-matrix product written the way tmm writes it
(S. J. Byrnes, "Multilayer optical calculations", arXiv:1603.02720), in torch so it runs
on any device; the C++/CUDA kernels (``csrc/include/qupaint/tmm.h``) use the
algebraically equal Airy recursion, so each checks the other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from qupaint import _backend
from qupaint._arrays import (
    Checks,
    as_tensor,
    common_device,
    elem_strides,
    is_torch,
    pointer,
    to_output,
)
from qupaint.optics.materials import get_material, monolayer_thickness_nm, refractive_index

__all__ = [
    "reflectance",
    "stack_reflectance",
    "reflectance_reference",
    "flake_layers",
    "build_stack",
    "prepare_stacks",
    "Stacks",
    "top_fold",
    "top_kernel_args",
    "kernel_dtype",
    "POLS",
    "DEFAULT_WAVELENGTHS_NM",
]

POLS = {"s": 0, "p": 1, "u": 2}
#: 400-700 nm every 1 nm: the paper's range (QuPAINT Sec. 4.1), 301 samples.
DEFAULT_WAVELENGTHS_NM = np.arange(400.0, 701.0, 1.0)
_EPS64 = float(np.finfo(np.float64).eps)
_OPAQUE = 35.0  # tmm's clamp on Im(delta) for opaque layers


def _forward_q(n: torch.Tensor, kx2: torch.Tensor) -> torch.Tensor:
    """n cos(theta) for the forward wave (tmm.is_forward_angle), shape of ``n``."""
    q = torch.sqrt(n * n - kx2)
    fwd = torch.where(q.imag.abs() > 100 * _EPS64, q.imag > 0, q.real > 0)
    return torch.where(fwd, q, -q)


def reflectance_reference(
    n: torch.Tensor, d: torch.Tensor, wavelengths_nm: torch.Tensor, sin0: torch.Tensor, pol: str
) -> torch.Tensor:
    """Vectorised characteristic-matrix reflectance (readable; the truth).

    Computes in the dtype of ``n`` (complex128 for the truth, complex64 when benchmarked as
    the torch-eager peer).

    Parameters
    ----------
    n : complex [B|1, L, W]
    d : real [B|1, L], nm; d[:, 0] and d[:, -1] are ignored (semi-infinite)
    wavelengths_nm : real [W]
    sin0 : real [B|1], sin(theta0); kx = Re(n0) sin(theta0) per wavelength
    pol : "s" | "p" | "u"
    """
    if pol == "u":
        return 0.5 * (
            reflectance_reference(n, d, wavelengths_nm, sin0, "s")
            + reflectance_reference(n, d, wavelengths_nm, sin0, "p")
        )
    L = n.shape[1]
    kx = n[:, 0, :].real * sin0[:, None].to(n.real.dtype)  # [B, W]
    kx2 = (kx * kx).to(n.dtype)
    q = [_forward_q(n[:, i, :], kx2) for i in range(L)]

    def interface_r(i: int) -> torch.Tensor:  # tmm.interface_r between layers i and i + 1
        if pol == "s":
            return (q[i] - q[i + 1]) / (q[i] + q[i + 1])
        ni, nf = n[:, i, :], n[:, i + 1, :]
        return (nf * nf * q[i] - ni * ni * q[i + 1]) / (nf * nf * q[i] + ni * ni * q[i + 1])

    # M = [[1, r01], [r01, 1]] * prod_i P_i [[1, r_i,i+1], [r_i,i+1, 1]]; the 1/t factors of
    # tmm's matrices are scalars and cancel in r = M10 / M00.
    r = interface_r(0)
    m00, m01, m10, m11 = torch.ones_like(r), r, r, torch.ones_like(r)
    k0 = 2 * math.pi / wavelengths_nm.to(n.real.dtype)
    for i in range(1, L - 1):
        delta = k0 * q[i] * d[:, i : i + 1].to(n.real.dtype)
        delta = torch.complex(delta.real, delta.imag.clamp(max=_OPAQUE))
        em, ep = torch.exp(-1j * delta), torch.exp(1j * delta)
        ri = interface_r(i)
        # [[a, b], [c, e]] @ [[em, em*ri], [ep*ri, ep]]
        m00, m01, m10, m11 = (
            m00 * em + m01 * ep * ri,
            m00 * em * ri + m01 * ep,
            m10 * em + m11 * ep * ri,
            m10 * em * ri + m11 * ep,
        )
    rr = m10 / m00
    return (rr * rr.conj()).real


def kernel_dtype(t: torch.Tensor) -> str:
    """The dtype name a compiled kernel takes for real data of ``t``'s precision."""
    return "float32" if t.dtype in (torch.float32, torch.complex64) else "float64"


@dataclass
class Stacks:
    """Validated stack batch on one device: n [B|1, L, W], d [B|1, L], wl [W] (contiguous),
    sin0 [B|1]; what :func:`prepare_stacks` returns and every backend takes."""

    n: torch.Tensor
    d: torch.Tensor
    wl: torch.Tensor
    sin0: torch.Tensor
    rdtype: torch.dtype
    device: torch.device
    torch_out: bool
    single: bool

    @property
    def batch(self) -> int:
        """B, the number of stacks after broadcasting."""
        return max(self.n.shape[0], self.d.shape[0], self.sin0.shape[0])

    def reference(self, pol: str) -> torch.Tensor:
        """[B|1, W] float64 reflectance from :func:`reflectance_reference` (the truth)."""
        return reflectance_reference(
            self.n.to(torch.complex128), self.d.double(), self.wl.double(), self.sin0.double(), pol
        )

    def kernel_args(self, pol: str, out: torch.Tensor | None = None):
        """``qupaint._C.TmmArgs`` for the compiled kernels: n, d and sin0 broadcast to B
        as stride-0 views (a shared material table is read, never copied, per stack)."""
        from qupaint import _C

        B = self.batch
        n, d, sin0 = self.n.expand(B, -1, -1), self.d.expand(B, -1), self.sin0.expand(B)
        a = _C.TmmArgs()
        a.n, (a.n_sb, a.n_sl, a.n_sw) = pointer(n), elem_strides(n)
        a.d, (a.d_sb, a.d_sl) = pointer(d), elem_strides(d)
        a.sin0, (a.sin0_sb,) = pointer(sin0), elem_strides(sin0)
        a.wl, a.B, a.L, a.W, a.pol = pointer(self.wl), B, n.shape[1], self.wl.shape[0], POLS[pol]
        a.out = 0 if out is None else pointer(out)
        return a


def top_fold(st: Stacks, pol: str):
    """The top-layer fold of a batch in which only layer 1 varies, or None.

    When every stack shares its indices, its angle and the thicknesses below layer 1 (a
    flake on one substrate stack: the rendering case), R per polarisation is a real rational
    function of the round trip ``m e^{i theta} = e^{i d_1 kq}`` through layer 1 (see
    ``TmmPlan::top`` in ``csrc/cpu/tmm_plan.h``, the same algebra):
    ``R = (|r|^2 + m^2 |g|^2 + m Re(P e^{i theta})) / (1 + m^2 |r g|^2 + m Re(Q e^{i theta}))``
    with r the top interface, g the folded stack below layer 1, P = 2 conj(r) g, Q = 2 r g.

    Returns ``(coeffs [P, 7, W], kq [2, W])`` in the batch's real dtype on its device, P the
    polarisations to average (one when s = p, at normal incidence), the 7 rows
    ``|r|^2, |g|^2, |r g|^2, P.re, P.im, Q.re, Q.im`` and kq = 4 pi q_1 / lambda (re, im);
    computed in float64 and rounded once.
    """
    n, d, L = st.n, st.d, st.n.shape[1]
    if n.shape[0] != 1 or st.sin0.shape[0] != 1 or L < 3:
        return None
    W = st.wl.shape[0]
    # The fold is some fifty small vector operations over W: on the host they cost
    # microseconds each, on a GPU a launch each. One read brings the shared stack over.
    shared = [torch.view_as_real(n[0].to(torch.complex128)).reshape(-1), st.wl.double()]
    shared += [st.sin0[:1].double(), d[0].double()]
    per_stack = d.shape[0] > 1 and L > 3  # the layers below layer 1 must then all agree
    if per_stack:
        shared.append((d[:, 2:-1] == d[:1, 2:-1]).all().double().reshape(1))
    host = torch.cat(shared).cpu()
    if per_stack and not bool(host[-1]):
        return None
    n64 = torch.view_as_complex(host[: 2 * L * W].reshape(L, W, 2))  # [L, W]
    wl, sin0 = host[2 * L * W : 2 * L * W + W], float(host[2 * L * W + W])
    d0 = host[2 * L * W + W + 1 : 2 * L * W + W + 1 + L].tolist()
    kx = n64[0].real * sin0
    kx2 = (kx * kx).to(torch.complex128)
    q = [_forward_q(n64[i], kx2) for i in range(L)]
    two_k0 = 4 * math.pi / wl
    normal = sin0 == 0.0
    pols = ["s"] if (pol == "u" and normal) or pol == "s" else (["p"] if pol == "p" else ["s", "p"])

    def interface(i: int, p: str) -> torch.Tensor:
        if p == "s":
            return (q[i] - q[i + 1]) / (q[i] + q[i + 1])
        a, b = n64[i + 1] ** 2 * q[i], n64[i] ** 2 * q[i + 1]
        return (a - b) / (a + b)

    rows = []
    for p in pols:
        g = interface(L - 2, p)
        for j in range(L - 2, 1, -1):  # fold the shared layers L-2 .. 2 (Airy)
            ph = torch.exp(1j * d0[j] * two_k0 * q[j])
            r = interface(j - 1, p)
            g = (r + g * ph) / (1 + r * g * ph)
        r = interface(0, p)
        P, Q = 2 * r.conj() * g, 2 * r * g
        rows.append(torch.stack([r.abs() ** 2, g.abs() ** 2, (r * g).abs() ** 2,
                                 P.real, P.imag, Q.real, Q.imag]))  # fmt: skip
    kq = two_k0 * q[1]
    coeffs = torch.stack(rows)
    both = torch.cat([coeffs.reshape(-1), kq.real, kq.imag]).to(st.device, st.rdtype)
    return both[: coeffs.numel()].view(coeffs.shape), both[coeffs.numel() :].view(2, W)


@_backend.register("tmm_reflectance", "reference")
def _tmm_reference(st: Stacks, pol: str) -> torch.Tensor:
    return st.reference(pol).to(st.rdtype)


def _tmm_kernel(st: Stacks, pol: str, kernel: str) -> torch.Tensor:
    out = torch.empty((st.batch, st.wl.shape[0]), dtype=st.rdtype, device=st.device)
    _backend.launch(kernel, [kernel_dtype(out), st.kernel_args(pol, out)], out.device)
    return out


@_backend.register("tmm_reflectance", "cpu")
def _tmm_cpu(st: Stacks, pol: str) -> torch.Tensor:
    return _tmm_kernel(st, pol, "tmm_reflectance_cpu")


def top_kernel_args(st: Stacks, pol: str, out: torch.Tensor | None = None):
    """``(qupaint._C.TopArgs, tensors to keep alive)`` of :func:`top_fold`, or None when the
    batch does not fold (the CUDA kernels then run the general Airy fold)."""
    from qupaint import _C

    tf = top_fold(st, pol)
    if tf is None:
        return None
    coeffs, kq = tf
    d = st.d.expand(st.batch, -1)
    a = _C.TopArgs()
    a.coeffs, a.kq, a.P = pointer(coeffs), pointer(kq), coeffs.shape[0]
    a.d, (a.d_sb, a.d_sl) = pointer(d), elem_strides(d)
    a.B, a.W = st.batch, st.wl.shape[0]
    a.out = 0 if out is None else pointer(out)
    return a, (coeffs, kq, d)


@_backend.register("tmm_reflectance", "cuda")
def _tmm_cuda(st: Stacks, pol: str) -> torch.Tensor:
    out = torch.empty((st.batch, st.wl.shape[0]), dtype=st.rdtype, device=st.device)
    top = top_kernel_args(st, pol, out)
    if top is None:
        return _tmm_kernel(st, pol, "tmm_reflectance_cuda")
    _backend.launch("tmm_top_cuda", [kernel_dtype(out), top[0]], out.device)
    return out


def prepare_stacks(n: Any, d: Any, wavelengths_nm: Any, theta0: Any, pol: str) -> Stacks:
    """Validate and convert the inputs of :func:`reflectance` (see its Raises section)."""
    if pol not in POLS:
        raise ValueError(f"pol must be one of 's', 'p', 'u'; got {pol!r}")
    device = common_device(
        n, d, wavelengths_nm, theta0, names=("n", "d", "wavelengths_nm", "theta0")
    )
    torch_out = device is not None
    device = device or torch.device("cpu")
    try:
        nt = as_tensor(n, device)
        dt = as_tensor(d, device)
        wl = as_tensor(wavelengths_nm, device)
        th = as_tensor(theta0, device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"reflectance: inputs must be numeric arrays or tensors ({exc})") from exc
    single = nt.dim() == 2 and dt.dim() == 1 and th.dim() == 0
    if nt.dtype in (torch.complex64, torch.float32, torch.float16, torch.bfloat16):
        cdtype, rdtype = torch.complex64, torch.float32
    elif nt.is_complex() or nt.is_floating_point() or nt.dtype in (torch.int32, torch.int64):
        cdtype, rdtype = torch.complex128, torch.float64
    else:
        raise TypeError(f"n must be a real or complex numeric array; got dtype {nt.dtype}")
    nt = nt.to(cdtype)
    dt, wl, th = dt.to(rdtype), wl.to(rdtype).contiguous(), th.to(rdtype)

    if nt.dim() == 2:
        nt = nt.unsqueeze(0)
    if nt.dim() != 3:
        raise ValueError(f"n must have shape [L, W] or [B, L, W]; got {tuple(nt.shape)}")
    if dt.dim() == 1:
        dt = dt.unsqueeze(0)
    if dt.dim() != 2:
        raise ValueError(f"d must have shape [L] or [B, L]; got {tuple(dt.shape)}")
    if wl.dim() != 1:
        raise ValueError(f"wavelengths_nm must be 1-D [W]; got shape {tuple(wl.shape)}")
    th = th.reshape(-1) if th.dim() <= 1 else th
    if th.dim() != 1:
        raise ValueError(f"theta0 must be a scalar or [B]; got shape {tuple(th.shape)}")
    L, W = nt.shape[1], nt.shape[2]
    if L < 2:
        raise ValueError(f"n: a stack needs at least 2 layers (incident and exit media); got L={L}")
    if dt.shape[1] != L:
        raise ValueError(f"d has {dt.shape[1]} layers but n has {L}; give one thickness per layer")
    if W != wl.shape[0]:
        raise ValueError(f"n has {W} wavelengths but wavelengths_nm has {wl.shape[0]}")
    sizes = {nt.shape[0], dt.shape[0], th.shape[0]} - {1}
    if len(sizes) > 1:
        raise ValueError(
            f"batch sizes differ: n {nt.shape[0]}, d {dt.shape[0]}, theta0 {th.shape[0]}; "
            "each must be 1 or the common B"
        )
    # value checks, read back from the device at once (shape checks above need no sync)
    chk = Checks()
    chk.finite(torch.view_as_real(nt), "n")
    chk.require(
        ~(nt.imag < 0).any(), "n: k (imaginary part) must be >= 0; gain media are not supported"
    )
    chk.finite(wl, "wavelengths_nm")
    chk.require(~(wl <= 0).any(), "wavelengths_nm must be > 0 (nm)")
    chk.require(~torch.isnan(dt).any(), "d contains NaN; give finite thicknesses in nm")

    def outer_not_inf() -> None:
        raise ValueError(
            f"d: outer layers must be inf (semi-infinite); got d[..., 0]={float(dt[0, 0])}, "
            f"d[..., -1]={float(dt[0, -1])}"
        )

    chk.require(torch.isinf(dt[:, 0]).all() & torch.isinf(dt[:, -1]).all(), outer_not_inf)
    inner = dt[:, 1:-1]
    if inner.numel():
        chk.require(
            torch.isfinite(inner).all(),
            "d: inner layers must have finite thickness (only the outer ones are inf)",
        )

        def negative() -> None:
            raise ValueError(f"d: thickness must be >= 0 nm; got min {float(inner.min())}")

        chk.require(~(inner < 0).any(), negative)
    chk.finite(th, "theta0")
    chk.require(~((th < 0) | (th >= math.pi / 2)).any(), "theta0 must be in [0, pi/2) radians")
    lossy = (nt[:, 0, :].imag != 0).any(dim=1)
    chk.require(
        ~(lossy & (th > 0)).any(),
        "n[..., 0, :]: the incident medium must be lossless (k = 0) at oblique incidence",
    )
    chk.run()
    return Stacks(nt, dt, wl, torch.sin(th), rdtype, device, torch_out, single)


def reflectance(
    n: Any,
    d: Any,
    wavelengths_nm: Any,
    theta0: Any = 0.0,
    pol: str = "s",
    backend: str | None = None,
) -> Any:
    """Reflectance of coherent thin-film stacks (transfer-matrix method).

    Parameters
    ----------
    n : complex array_like, [L, W] or [B, L, W]
        Refractive index n + ik (k >= 0) of each layer at each wavelength, from the
        incident medium (layer 0) to the exit medium (layer L-1), both semi-infinite.
        Real arrays mean k = 0.
    d : array_like, [L] or [B, L]
        Thicknesses in nm; ``d[..., 0]`` and ``d[..., -1]`` must be ``inf``.
    wavelengths_nm : array_like, [W]
        Vacuum wavelengths in nm.
    theta0 : float or array_like [B]
        Angle of incidence in radians, in [0, pi/2).
    pol : {"s", "p", "u"}
        Polarisation; ``"u"`` (unpolarised) is the mean of s and p reflectance.
    backend : {"reference", "cpu", "cuda"}, optional
        Override the automatic choice (see :mod:`qupaint._backend`).

    Returns
    -------
    R : [W] when no input is batched, else [B, W]; float64, or float32 when ``n`` is
        complex64/float32. numpy for numpy input; torch on the input's device otherwise.

    Raises
    ------
    ValueError
        Mismatched shapes or layer counts, finite outer thicknesses, negative or NaN
        thickness, non-finite or gain (k < 0) indices, unknown ``pol``, angle outside
        [0, pi/2), lossy incident medium at oblique incidence.
    TypeError
        Non-numeric input.

    References
    ----------
    QuPAINT Eq. (1)-(2); tmm.coh_tmm (Byrnes, arXiv:1603.02720).

    Examples
    --------
    >>> import numpy as np
    >>> from qupaint.optics import reflectance
    >>> n = np.array([[1.0], [1.5]])          # air | glass, one wavelength
    >>> round(float(reflectance(n, [np.inf, np.inf], [550.0])[0]), 12)  # ((1.5-1)/(1.5+1))**2
    0.04
    """
    st = prepare_stacks(n, d, wavelengths_nm, theta0, pol)
    _, fn = _backend.select("tmm_reflectance", st.device.type, backend)
    out = fn(st, pol)
    return to_output(out[0] if st.single else out, st.torch_out)


LayerSpec = tuple  # (material, thickness_nm) or (material, thickness_nm, n_layers)


def flake_layers(material: str, n_layers: int, oxide_nm: float | None = 285.0) -> list[LayerSpec]:
    """Layer list for an ``n_layers`` flake of ``material`` on ``oxide_nm`` of SiO2.

    Thickness = ``n_layers * monolayer_thickness_nm(material)``; the layer count is carried
    along so layer-resolved n,k tables are used (QuPAINT Eq. 21, air / flake / SiO2 / Si).
    ``oxide_nm=None`` (or 0) leaves the oxide out.

    >>> flake_layers("MoS2", 1)
    [('MoS2', 0.615, 1), ('SiO2', 285.0)]
    """
    if int(n_layers) != n_layers or n_layers < 1:
        raise ValueError(f"n_layers must be a positive integer; got {n_layers!r}")
    layers: list[LayerSpec] = [
        (get_material(material).name, n_layers * monolayer_thickness_nm(material), int(n_layers))
    ]
    if oxide_nm:
        layers.append(("SiO2", float(oxide_nm)))
    return layers


def build_stack(
    layers: Sequence[LayerSpec],
    wavelengths_nm: Any,
    substrate: str = "Si",
    incident: str = "air",
) -> tuple[np.ndarray, Any]:
    """Turn a material layer list into ``(n [L, W] complex128, d [L] or [B, L])``.

    Thicknesses may be scalars or ``[B]`` arrays (one stack per entry); numpy or torch.
    """
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
        raise TypeError("layers must be a list of (material, thickness_nm[, n_layers]) tuples")
    wl = np.asarray(
        wavelengths_nm.detach().cpu() if is_torch(wavelengths_nm) else wavelengths_nm,
        dtype=np.float64,
    )
    ns = [refractive_index(incident, wl)]
    ds: list[Any] = []
    for i, spec in enumerate(layers):
        if not isinstance(spec, (tuple, list)) or len(spec) not in (2, 3):
            raise ValueError(
                f"layers[{i}] must be (material, thickness_nm) or (material, thickness_nm, "
                f"n_layers); got {spec!r}"
            )
        mat, thick = spec[0], spec[1]
        nl = spec[2] if len(spec) == 3 else None
        ns.append(refractive_index(mat, wl, layers=nl))
        ds.append(thick)
    ns.append(refractive_index(substrate, wl))
    batch = [np.shape(t) if not is_torch(t) else tuple(t.shape) for t in ds]
    sizes = {s[0] for s in batch if len(s) == 1}
    if any(len(s) > 1 for s in batch) or len(sizes) > 1:
        raise ValueError(
            f"layer thicknesses must be scalars or [B] arrays of one length B; got shapes {batch}"
        )
    if not sizes:
        d = np.array([np.inf, *[float(t) for t in ds], np.inf])
    else:
        (B,) = sizes
        dev = common_device(*ds)
        cols = [as_tensor(t, dev, torch.float64).reshape(-1).expand(B) for t in ds]
        inf = torch.full((B,), math.inf, dtype=torch.float64, device=dev)
        d = torch.stack([inf, *cols, inf], dim=1)
        if dev is None:
            d = d.numpy()
    return np.stack(ns), d


def stack_reflectance(
    layers: Sequence[LayerSpec],
    wavelengths_nm: Any = DEFAULT_WAVELENGTHS_NM,
    substrate: str = "Si",
    incident: str = "air",
    theta0: Any = 0.0,
    pol: str = "u",
    backend: str | None = None,
) -> Any:
    """Reflectance spectrum of ``incident / layers... / substrate`` built from material names.

    Parameters
    ----------
    layers : list of (material, thickness_nm) or (material, thickness_nm, n_layers)
        Top to bottom. ``thickness_nm`` is a float or a ``[B]`` array/tensor (B stacks that
        share materials); ``n_layers`` selects layer-resolved n,k (see
        :func:`flake_layers`).
    wavelengths_nm : [W], default 400-700 nm every 1 nm.
    substrate, incident : material names (semi-infinite).
    theta0, pol, backend : as in :func:`reflectance`.

    Returns
    -------
    R : [W] or [B, W] (torch when a thickness or the wavelengths are torch).

    Examples
    --------
    >>> from qupaint.optics import stack_reflectance, flake_layers
    >>> R = stack_reflectance(flake_layers("graphene", 1, oxide_nm=285.0))
    >>> R.shape
    (301,)
    """
    n, d = build_stack(layers, wavelengths_nm, substrate, incident)
    dev = common_device(d, wavelengths_nm)
    if dev is not None:
        n = as_tensor(n, dev)
    wl = (
        wavelengths_nm
        if is_torch(wavelengths_nm) or dev is None
        else as_tensor(wavelengths_nm, dev)
    )
    return reflectance(n, d, wl, theta0=theta0, pol=pol, backend=backend)
