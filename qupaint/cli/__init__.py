"""``qupaint`` command line (typer): one module per command group.

============================  =====================================================
module                        commands
============================  =====================================================
:mod:`qupaint.cli.optics`     ``optics``, ``materials``, ``backends``, ``calibrate``
                              (from measured contrasts or from annotated images)
:mod:`qupaint.cli.data`       ``synthia``, ``instruct``
:mod:`qupaint.cli.detect`     ``detect`` (flake hunting on whole micrographs)
:mod:`qupaint.cli.evaluate`   ``eval detection|grounding|detector|model|real|crops|
                              seg-crops``, ``bench build``
:mod:`qupaint.cli.scan`       ``scan``, ``flakes``, ``map``, ``export``
:mod:`qupaint.cli.web`        ``serve``
:mod:`qupaint.cli.model`      ``train``, ``predict``, ``demo``
:mod:`qupaint.cli.seg`        ``seg train``, ``seg predict``
============================  =====================================================

Shared pieces (the app, usage and command errors as one line with exit code 2, the range
of every numeric option, progress bars) are in :mod:`qupaint.cli._common`. Commands import
the library lazily, so ``qupaint --help`` starts without torch.
"""

from __future__ import annotations

import importlib

from qupaint.cli._common import app

# importing a command module registers its commands; --help lists them in pipeline order
for _module in ("optics", "data", "detect", "evaluate", "scan", "web", "model", "seg"):
    importlib.import_module(f"qupaint.cli.{_module}")

__all__ = ["app"]
