"""qupaint: physics-aware tools for 2D quantum-material discovery (QuPAINT, arXiv:2602.17478).

Stages, each usable on its own: :mod:`qupaint.optics` (n,k tables, transfer-matrix
reflectance), :mod:`qupaint.color` (spectra to CIE XYZ, sRGB, CIELAB).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("qupaint")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__"]
