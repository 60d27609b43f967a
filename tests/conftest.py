"""Shared test configuration: backends, dtypes and tolerances in one place."""

from __future__ import annotations

import os

# Without a GPU, Triton kernels run in Triton's interpreter on CPU tensors. This must be set
# before triton is first imported, which is why it lives at the top of conftest.
if os.environ.get("TRITON_INTERPRET") is None:
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"

# The on-disk CIE table cache (qupaint.color.data) goes to a fresh folder per test session,
# so tests never read tables a previous run left behind; subprocesses inherit it.
if not os.environ.get("QUPAINT_CACHE_DIR"):
    import tempfile

    os.environ["QUPAINT_CACHE_DIR"] = tempfile.mkdtemp(prefix="qupaint-test-cache-")

from pathlib import Path

import numpy as np
import pytest

from qupaint import _backend

# Tolerances (absolute, on quantities of order 1).
#   float64 kernels vs the float64 reference: rounding of O(L) complex ops.
#   float32 kernels vs the float64 reference: ~1e-6 relative per op, a few hundred ops.
TOL = {"float64": 1e-10, "float32": 1e-4}
#: agreement of the reference with tmm.coh_tmm (the issue's 1e-10 target)
TMM_TOL = 1e-10


def backend_params(op: str, device_types=("cpu", "cuda")):
    """pytest params for every backend of ``op``; unavailable ones skip with the reason."""
    out = []
    for b in _backend.backends_for(op):
        dev = "cuda" if b == "cuda" else "cpu"
        if b == "triton" and os.environ.get("TRITON_INTERPRET") != "1":
            dev = "cuda"
        if dev not in device_types:
            continue
        ok, why = _backend.available(b, dev)
        marks = [] if ok else [pytest.mark.skip(reason=f"{b}: {why}")]
        if dev == "cuda":  # `pytest -m cuda` selects the GPU cases
            marks.append(pytest.mark.cuda)
        out.append(pytest.param((b, dev), id=b, marks=marks))
    return out


#: the project's shared data (real micrographs, labelled flakes), checked out beside the
#: repository: ../shared/data/real from the repository root
SHARED_REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def needs_shared(sub: str):
    """Skip, saying where the data goes, when ``../shared/data/real/<sub>`` is absent."""
    return pytest.mark.skipif(
        not (SHARED_REAL / sub).is_dir(),
        reason=f"needs ../shared/data/real/{sub}: the project's shared data folder, checked "
        "out beside the repository (e.g. /work/shared next to /work/main)",
    )


@pytest.fixture
def rng():
    return np.random.default_rng(20260219)


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory):
    """A small Synthia data set (12 images, 160 px, all materials) shared by the
    instruct / bench / model tests."""
    from qupaint.synthia import SynthiaConfig, generate

    out = tmp_path_factory.mktemp("synth")
    cfg = SynthiaConfig(seed=7, height=160, width=160, radius_px=(8.0, 36.0))
    generate(cfg, out, 12, shard_size=6)
    return out


def render_small_chip(out, tiles=(4, 3), tile_px=(480, 300), seed: int = 3,
                      flakes_per_mm2: float = 400.0):  # fmt: skip
    """A small virtual chip scan (qupaint.synthia.chip) for the scan and web tests: small
    frames keep them quick. Returns ``out``."""
    from qupaint.synthia.chip import ChipConfig, render_chip

    render_chip(out, ChipConfig(tiles=tiles, tile_px=tile_px, flakes_per_mm2=flakes_per_mm2,
                                seed=seed, size_um=(14.0, 0.4), max_side_um=40.0),
                workers=1)  # fmt: skip
    return out


class ImageOutputSpy:
    """Records what a QuPAINT model's vision side hands its language model (each
    ``get_image_features`` result, ``QuPAINTImageOutputs``), as ``generate`` and ``forward``
    call it: the model keeps no such state of its own. ``read`` is the last call's region
    token ids."""

    def __init__(self, model):
        import functools

        self.outputs: list = []
        inner = model.model.get_image_features

        @functools.wraps(inner)  # generate reads the signature to pass region_ids, ref_boxes
        def recorded(*args, **kwargs):
            out = inner(*args, **kwargs)
            self.outputs.append(out)
            return out

        model.model.get_image_features = recorded
        self._model = model

    @property
    def read(self):
        return self.outputs[-1].region_ids

    def remove(self) -> None:
        del self._model.model.get_image_features
