"""Fused stack colour: thin-film reflectance integrated to a colour inside one kernel.

The heart of high-throughput rendering (QuPAINT Alg. 1 lines 12-13, Eq. 21-22): for B
stacks, R(lambda) is computed and immediately integrated against CMF x illuminant, so the
[B, W] spectra are never materialised. Equal to
``spectra_to_xyz(stack_reflectance(...))`` (then converted to ``space``) within float
rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from qupaint import _backend
from qupaint._arrays import as_tensor, common_device, is_torch, pointer, to_output
from qupaint.color.convert import kernel_color_space, xyz_to_lab, xyz_to_linear_srgb
from qupaint.color.data import white_xyz, xyz_weights
from qupaint.optics.tmm import (
    DEFAULT_WAVELENGTHS_NM,
    POLS,
    Stacks,
    build_stack,
    kernel_dtype,
    prepare_stacks,
    top_kernel_args,
)

__all__ = ["stack_color", "SPACES"]

SPACES = {"xyz": 0, "linear_srgb": 1, "lab": 2}


def _from_xyz(xyz: torch.Tensor, space: str, white) -> torch.Tensor:
    if space == "xyz":
        return xyz
    if space == "linear_srgb":
        return xyz_to_linear_srgb(xyz)
    return xyz_to_lab(xyz, white)


@_backend.register("stack_color", "reference")
def _stack_color_reference(st: Stacks, pol, weights, space, white):
    R = st.reference(pol)
    xyz = R @ torch.tensor(weights, dtype=torch.float64, device=R.device)
    return _from_xyz(xyz, space, white).to(st.rdtype)


def _stack_color_kernel(st: Stacks, pol, weights, space, white, kernel: str, top=None):
    from qupaint import _C

    out = torch.empty((st.batch, 3), dtype=st.rdtype, device=st.device)
    wt = torch.tensor(weights, dtype=st.rdtype, device=st.device)
    c = _C.ColorArgs()
    c.weights, c.space, c.out = pointer(wt), SPACES[space], pointer(out)
    stacks = top[0] if top is not None else st.kernel_args(pol)
    _backend.launch(kernel, [kernel_dtype(out), stacks, c, kernel_color_space(white)], out.device)
    return out


@_backend.register("stack_color", "cpu")
def _stack_color_cpu(st, pol, weights, space, white):
    return _stack_color_kernel(st, pol, weights, space, white, "stack_color_cpu")


@_backend.register("stack_color", "cuda")
def _stack_color_cuda(st, pol, weights, space, white):
    # the top fold when only layer 1 varies (the rendering case), else the general fold
    top = top_kernel_args(st, pol)
    kernel = "stack_color_cuda" if top is None else "stack_color_top_cuda"
    return _stack_color_kernel(st, pol, weights, space, white, kernel, top)


def stack_color(
    layers: Sequence[tuple],
    wavelengths_nm: Any = DEFAULT_WAVELENGTHS_NM,
    illuminant: Any = "D65",
    substrate: str = "Si",
    incident: str = "air",
    pol: str = "u",
    space: str = "linear_srgb",
    theta0: Any = 0.0,
    white: Any = "D65",
    dtype: torch.dtype | str | None = None,
    backend: str | None = None,
    camera: Any = None,
) -> Any:
    """Colour of thin-film stacks seen under ``illuminant`` (or through ``camera``), fused in
    one kernel.

    Parameters
    ----------
    layers : list of (material, thickness_nm[, n_layers]), top to bottom; thicknesses may be
        ``[B]`` arrays/tensors (one stack per entry), as in ``stack_reflectance``.
    wavelengths_nm : [W] regular grid inside 360-830 nm (default 400-700 nm, 1 nm).
    illuminant : see :func:`qupaint.color.spectra_to_xyz` (``"A"`` for a halogen lamp).
    substrate, incident, pol, theta0 : as in ``stack_reflectance``.
    space : "linear_srgb" (default) | "xyz" | "lab" (relative to ``white``).
    dtype : "float32" for the fast single-precision kernel (default float64).
    backend : "reference" | "cpu" | "cuda".
    camera : a :class:`qupaint.color.Camera`. The result is then the camera's linear RGB
        (its spectral weights replace the CIE observer and ``illuminant``; ``space`` must be
        left at its default). A camera with an illumination NA averages the colour over its
        angle quadrature, unpolarised (``theta0`` must be 0): each angle is one more stack
        of the same fused kernel call.

    Returns
    -------
    [3] or [B, 3] (torch on the input's device when a thickness is a tensor).

    Examples
    --------
    >>> from qupaint.color import stack_color
    >>> from qupaint.optics import flake_layers
    >>> [round(float(v), 1) for v in stack_color(flake_layers("graphene", 1), space="lab")]
    [42.2, 27.1, -41.8]
    """
    if space not in SPACES:
        raise ValueError(f"space must be one of {tuple(SPACES)}; got {space!r}")
    if pol not in POLS:
        raise ValueError(f"pol must be one of 's', 'p', 'u'; got {pol!r}")
    wl_np = wavelengths_nm.detach().cpu().numpy() if is_torch(wavelengths_nm) else wavelengths_nm
    angles, angle_w = (), ()
    if camera is not None:
        if space != "linear_srgb":
            raise ValueError(
                f"space: with a camera the result is the camera's RGB; leave space at its "
                f"default (got {space!r})"
            )
        weights, space = camera.weights(wl_np), "xyz"  # raw channel sums
        angles, angle_w = camera.quadrature()
        th = theta0.detach().cpu() if is_torch(theta0) else theta0
        if len(angles) > 1 and (np.any(np.asarray(th) != 0) or pol != "u"):
            raise ValueError(
                "theta0/pol: a camera with an illumination NA averages over its own cone "
                "of angles, unpolarised; leave theta0=0 and pol='u'"
            )
    else:
        weights = xyz_weights(wl_np, illuminant)
    n, d = build_stack(layers, wavelengths_nm, substrate, incident)
    single = d.ndim == 1
    device = common_device(d, wavelengths_nm)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None) if dtype in ("float32", "float64") else "bad"
    if dtype not in (None, torch.float32, torch.float64):
        raise ValueError("dtype must be 'float32', 'float64' or None")
    cdt = torch.complex64 if dtype == torch.float32 else torch.complex128
    nt = as_tensor(n, device).to(cdt)
    if len(angles) <= 1:
        angles, angle_w = [theta0], [1.0]
    # one call per angle of the camera's cone: every stack of a call shares the angle, so
    # the kernel keeps its shared plan and top-layer fold (per-stack angles would not)
    out = 0
    for theta, w in zip(angles, angle_w, strict=True):
        st = prepare_stacks(nt, d, wavelengths_nm, theta, pol)
        _, fn = _backend.select("stack_color", st.device.type, backend)
        part = fn(st, pol, weights, space, white_xyz(white))
        out = part if len(angle_w) == 1 else out + float(w) * part
    return to_output(out[0] if single else out, device is not None)
