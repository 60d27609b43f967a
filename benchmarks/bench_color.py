"""sRGB -> CIELAB on 1e6 pixels: our cpu kernel vs colour-science, scikit-image and torch
eager (same formulas in float32). Issue targets: >= 20x colour-science, >= 3x torch eager.

Fused stack colour for 1e6 flake stacks (air / MoS2 / 285 nm SiO2 / Si) x 301 wavelengths
in float32: flakes/s vs the unfused path (reflectance spectra, then spectra_to_xyz).
Target >= 1e6 flakes/s on the 2-core CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qupaint import _backend
from qupaint.color import SRGB_TO_XYZ, spectra_to_xyz, srgb_to_lab, stack_color, white_xyz
from qupaint.optics import DEFAULT_WAVELENGTHS_NM as WL
from qupaint.optics import stack_reflectance

NPIX = 1_000_000
LAB = "srgb_to_lab-1e6px"


@pytest.fixture(scope="module")
def pixels():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, (1000, 1000, 3)).astype(np.float32)


def test_ours_float32(peer, pixels):
    peer(
        LAB, "qupaint-cpu-float32", lambda: srgb_to_lab(pixels, backend="cpu"), ours=True, work=NPIX
    )


def test_ours_uint8(peer, pixels):
    u8 = (pixels * 255).astype(np.uint8)
    peer(LAB, "qupaint-cpu-uint8", lambda: srgb_to_lab(u8, backend="cpu"), ours=True, work=NPIX)


@pytest.mark.skipif(not _backend.available("cuda", "cuda")[0], reason="no CUDA device")
def test_ours_cuda(peer, pixels):
    t = torch.as_tensor(pixels).cuda()

    def run():
        srgb_to_lab(t, backend="cuda", check=False)
        torch.cuda.synchronize()

    peer(LAB, "qupaint-cuda-float32", run, ours=True, work=NPIX)


def test_colour_science(peer, pixels):
    colour = pytest.importorskip("colour")
    peer(LAB, "colour-science", lambda: colour.XYZ_to_Lab(colour.sRGB_to_XYZ(pixels)), rounds=2)


def test_skimage(peer, pixels):
    skc = pytest.importorskip("skimage.color")
    peer(LAB, "skimage-rgb2lab", lambda: skc.rgb2lab(pixels), rounds=3)


def test_torch_eager(peer, pixels):
    x = torch.as_tensor(pixels)
    m = torch.tensor(SRGB_TO_XYZ, dtype=torch.float32)
    wh = torch.tensor(white_xyz("D65"), dtype=torch.float32)
    eps = 216 / 24389

    def eager():
        lin = torch.where(x <= 0.04045, x / 12.92, ((x.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4)
        t = (lin @ m.T) / wh
        f = torch.where(t > eps, t.clamp(min=eps) ** (1 / 3), t * (841 / 108) + 4 / 29)
        fx, fy, fz = f.unbind(-1)
        return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], -1)

    peer(LAB, "torch-eager-float32", eager, rounds=5)


FLAKES = 1_000_000
SC = "stack_color-1e6x301-f32"


@pytest.fixture(scope="module")
def thickness():
    return np.random.default_rng(1).uniform(0.6, 40.0, FLAKES).astype(np.float32)


def test_stack_color_fused(peer, thickness):
    layers = [("MoS2", thickness), ("SiO2", 285.0)]
    peer(
        SC,
        "qupaint-fused-cpu",
        lambda: stack_color(layers, WL, dtype="float32", backend="cpu"),
        ours=True,
        work=FLAKES,
        rounds=3,
    )


@pytest.mark.skipif(not _backend.available("cuda", "cuda")[0], reason="no CUDA device")
def test_stack_color_cuda(peer, thickness):
    # the same 1e6 flakes on the GPU (top fold: only the flake layer varies)
    t = torch.as_tensor(thickness, device="cuda")
    layers = [("MoS2", t), ("SiO2", 285.0)]
    wl = torch.as_tensor(WL, dtype=torch.float32, device="cuda")

    def run():
        stack_color(layers, wl, dtype="float32", backend="cuda")
        torch.cuda.synchronize()

    peer(SC, "qupaint-fused-cuda", run, ours=True, work=FLAKES, rounds=5)


def test_stack_color_unfused(peer, thickness):
    # the same work without fusion: [B, W] float32 spectra (1.2 GB), then one GEMM
    layers = [("MoS2", thickness), ("SiO2", 285.0)]
    wl32 = torch.as_tensor(WL, dtype=torch.float32)

    def run():
        R = stack_reflectance(
            [(m, torch.as_tensor(t)) if not np.isscalar(t) else (m, t) for m, t in layers],
            wl32,
            backend="cpu",
        )
        return spectra_to_xyz(R, WL)

    peer(SC, "unfused-cpu", run, rounds=2)
