"""Numpy/torch interop used at every public boundary.

Public functions accept numpy arrays, torch tensors and plain Python numbers or lists;
torch inputs keep their device and come back as torch tensors on that device. This module
holds the few helpers that make that rule cheap to follow: detect the array kind, move
everything to one kind, hand raw pointers and element strides to the compiled kernels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = [
    "is_torch",
    "common_device",
    "as_tensor",
    "to_output",
    "pointer",
    "elem_strides",
    "check_finite",
]


def is_torch(x: Any) -> bool:
    return isinstance(x, torch.Tensor)


def common_device(*xs: Any, names: tuple[str, ...] | None = None) -> torch.device | None:
    """The device shared by the torch inputs, or None when no input is a tensor.

    Raises
    ------
    ValueError
        When tensors live on different devices.
    """
    found: list[tuple[str, torch.device]] = []
    for i, x in enumerate(xs):
        if is_torch(x):
            found.append((names[i] if names else f"argument {i}", x.device))
    if not found:
        return None
    first_name, first = found[0]
    for name, dev in found[1:]:
        if dev != first:
            raise ValueError(
                f"{name} is on {dev} but {first_name} is on {first}; move all inputs to one device"
            )
    return first


def as_tensor(
    x: Any, device: torch.device | None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Tensor view of ``x`` on ``device`` (zero-copy for CPU numpy arrays when possible)."""
    if is_torch(x):
        t = x
    else:
        arr = np.asarray(x)
        if arr.dtype.byteorder not in ("=", "|"):
            arr = arr.astype(arr.dtype.newbyteorder("="))
        if not arr.flags.writeable:
            arr = arr.copy()
        t = torch.from_numpy(arr) if arr.dtype != object else torch.as_tensor(arr.tolist())
    return t.to(device=device if device is not None else t.device, dtype=dtype or t.dtype)


def to_output(t: torch.Tensor, torch_out: bool) -> Any:
    """Return ``t`` as torch (same device) when the caller gave torch, else as numpy."""
    if torch_out:
        return t
    return t.detach().cpu().numpy()


def pointer(t: torch.Tensor) -> int:
    return int(t.data_ptr())


def elem_strides(t: torch.Tensor) -> tuple[int, ...]:
    """Strides in elements (complex elements for complex tensors; kernels step 2 reals)."""
    return tuple(int(s) for s in t.stride())


def check_finite(t: torch.Tensor, name: str) -> None:
    """Raise ValueError naming ``name`` on NaN/inf. One sum decides for finite data (NaN and
    inf propagate into it); only a non-finite sum (bad data, or an overflowing sum of huge
    finite values) pays for the elementwise test."""
    if not t.is_floating_point() or bool(torch.isfinite(t.sum())):
        return
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf; give finite values (e.g. torch.nan_to_num)")
