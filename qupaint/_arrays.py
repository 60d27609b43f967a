"""Numpy/torch interop used at every public boundary.

Public functions accept numpy arrays, torch tensors and plain Python numbers or lists;
torch inputs keep their device and come back as torch tensors on that device. This module
holds the few helpers that make that rule cheap to follow: detect the array kind, move
everything to one kind, hand raw pointers and element strides to the compiled kernels.
"""

from __future__ import annotations

from collections.abc import Callable
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
    "Checks",
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


class Checks:
    """Value checks of tensors on one device, decided together with one device sync.

    Every ``bool(tensor)`` waits for the device; on a GPU each such wait costs far more than
    the test itself (tens of microseconds against a few). Validation adds its checks as 0-d
    boolean tensors and :meth:`run` reads them all at once, raising the first failure's error
    in the order the checks were added.
    """

    def __init__(self) -> None:
        self._ok: list[torch.Tensor] = []
        self._fail: list[Callable[[], None]] = []

    def require(self, ok: torch.Tensor, error: str | Callable[[], None]) -> None:
        """Check that ``ok`` (a boolean tensor of one element) holds; else raise ``error``
        (a ValueError message, or a function that raises, called only on failure)."""
        if isinstance(error, str):
            message = error

            def error() -> None:
                raise ValueError(message)

        self._ok.append(ok.reshape(()))
        self._fail.append(error)

    def finite(self, t: torch.Tensor, name: str) -> None:
        """:func:`check_finite`, deferred: one sum decides for finite data."""
        if t.is_floating_point() and t.numel():
            self.require(torch.isfinite(t.sum()), lambda: check_finite(t, name))

    def run(self) -> None:
        if not self._ok:
            return
        for ok, fail in zip(torch.stack(self._ok).tolist(), self._fail, strict=True):
            if not ok:
                fail()
