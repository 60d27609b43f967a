"""qupaint: physics-aware tools for 2D quantum-material discovery (QuPAINT, arXiv:2602.17478).

The pipeline, one subpackage per stage, each usable on its own (imports only flow forward;
see docs/architecture.md):

* :mod:`qupaint.optics`: cited n,k tables and batched transfer-matrix reflectance;
* :mod:`qupaint.color`: spectra to CIE XYZ, sRGB and CIELAB, the fused stack colour and the
  layer colour model;
* :mod:`qupaint.detect`: flake hunting on real chips (the contrast map, the whole-image
  detector, batch runs with reports, few-shot calibration);
* :mod:`qupaint.pia` and :mod:`qupaint.gate`: the physics-informed attention map (Alg. 2)
  and the token gate;
* :mod:`qupaint.synthia`: synthetic microscopy images with COCO labels (Alg. 1);
* :mod:`qupaint.seg`: a thin-flake segmenter trained on Synthia only;
* :mod:`qupaint.instruct`: the QMat-Instruct corpus;
* :mod:`qupaint.model` and :mod:`qupaint.train`: the QuPAINT model and its trainer;
* :mod:`qupaint.bench`: evaluation: QF-Bench metrics, answer parsing, real-image scoring;
* :mod:`qupaint.cli`: the ``qupaint`` command.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("qupaint")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__"]
