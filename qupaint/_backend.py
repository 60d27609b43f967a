"""Backend registry: one place that decides which implementation of an op runs.

Backends
--------
``reference``
    numpy/torch code that defines the truth; runs on any device.
``cpu``
    C++ kernels in :mod:`qupaint._C` (OpenMP), for CPU inputs.
``cuda``
    CUDA kernels in :mod:`qupaint._C`, for CUDA inputs; present when the build found ``nvcc``.
``triton``
    Triton kernels under :mod:`qupaint.triton`, for CUDA inputs (or CPU inputs with
    ``TRITON_INTERPRET=1``, which the tests use).

Selection: an explicit ``backend=`` argument wins, then the ``QUPAINT_BACKEND`` environment
variable, then the fastest available backend for the input's device
(cuda > triton > reference on a GPU, cpu > reference on the CPU).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "register",
    "select",
    "available",
    "backends_for",
    "describe",
    "launch",
]

BACKENDS = ("reference", "cpu", "cuda", "triton")
_PREFERENCE = {"cpu": ("cpu", "reference"), "cuda": ("cuda", "triton", "reference")}
_REGISTRY: dict[str, dict[str, Callable[..., Any]]] = {}


class BackendUnavailableError(RuntimeError):
    """A backend was requested that this build or machine cannot run."""


def register(op: str, backend: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``fn`` as the ``backend`` implementation of ``op``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTRY.setdefault(op, {})[backend] = fn
        return fn

    return deco


@functools.cache
def _compiled() -> Any:
    try:
        from qupaint import _C
    except ImportError:  # pragma: no cover - exercised only on broken installs
        return None
    return _C


@functools.cache
def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def available(backend: str, device_type: str = "cpu") -> tuple[bool, str]:
    """Whether ``backend`` can run on ``device_type`` here, and if not, why."""
    C = _compiled()
    if backend == "reference":
        return True, ""
    if backend == "cpu":
        if device_type != "cpu":
            return (
                False,
                "the cpu backend takes CPU inputs; move the data with .cpu() or use 'cuda'",
            )
        if C is None:
            return False, "qupaint._C is not built; reinstall with `pip install -e .`"
        return True, ""
    if backend == "cuda":
        if C is None or not C.has_cuda():
            return False, (
                "this build has no CUDA kernels; rebuild on a machine with nvcc "
                "(QUPAINT_CUDA=ON pip install -e .)"
            )
        if device_type != "cuda":
            return False, "the cuda backend takes CUDA tensors; move the data with .cuda()"
        if C.cuda_device_count() == 0:
            return False, "no CUDA device is visible"
        return True, ""
    if backend == "triton":
        if not _triton_importable():
            return False, "triton is not installed (pip install triton)"
        if os.environ.get("TRITON_INTERPRET") == "1":
            return True, ""
        if device_type == "cuda":
            import torch

            if not torch.cuda.is_available():
                return False, "no CUDA device is visible (TRITON_INTERPRET=1 runs it on CPU)"
            return True, ""
        return False, "triton runs on CUDA tensors (or on CPU with TRITON_INTERPRET=1)"
    raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")


def backends_for(op: str) -> tuple[str, ...]:
    """Backends that implement ``op`` (built or not)."""
    return tuple(_REGISTRY.get(op, {}))


def select(op: str, device_type: str, backend: str | None = None) -> tuple[str, Callable[..., Any]]:
    """Pick the implementation of ``op`` for inputs on ``device_type``.

    Raises
    ------
    ValueError
        Unknown backend name.
    BackendUnavailableError
        The requested backend does not implement ``op`` or cannot run here.
    """
    impls = _REGISTRY.get(op)
    if not impls:
        raise KeyError(f"no implementation registered for op {op!r}")
    requested = backend if backend is not None else os.environ.get("QUPAINT_BACKEND") or None
    if requested is not None:
        requested = requested.lower()
        if requested not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}; got {requested!r}")
        if requested not in impls:
            raise BackendUnavailableError(
                f"{op}: backend {requested!r} is not implemented; choose from {tuple(impls)}"
            )
        ok, why = available(requested, device_type)
        if not ok:
            raise BackendUnavailableError(f"{op}: backend {requested!r} unavailable: {why}")
        return requested, impls[requested]
    for name in _PREFERENCE.get(device_type, ("reference",)):
        if name in impls and available(name, device_type)[0]:
            return name, impls[name]
    return "reference", impls["reference"]


def launch(kernel: str, args: list, device: Any) -> None:
    """Call ``qupaint._C.<kernel>(*args)``; CUDA kernels also get the current torch stream."""
    if device.type == "cuda":
        import torch

        args = [*args, torch.cuda.current_stream(device).cuda_stream]
    getattr(_compiled(), kernel)(*args)


def describe() -> dict[str, dict[str, Any]]:
    """Availability of every backend on this machine (for ``qupaint backends``)."""
    C = _compiled()
    info: dict[str, dict[str, Any]] = {}
    for b in BACKENDS:
        dev = "cuda" if b in ("cuda", "triton") else "cpu"
        ok, why = available(b, dev)
        info[b] = {
            "available": ok,
            "why": why,
            "ops": sorted(op for op, im in _REGISTRY.items() if b in im),
        }
    if C is not None:
        info["cpu"]["openmp_threads"] = C.max_threads()
        info["cuda"]["compiled"] = C.has_cuda()
    return info
