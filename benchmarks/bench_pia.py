"""PIA map of 64 uint8 448x448 images (patch 14): our kernels vs a plain torch
implementation (unfold + median + LAB in float32, on the same device).
Issue targets: >= 5x the torch implementation on the 2-core CPU; on an H100 >= 20,000
images/s and the ratio vs torch on the same GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qupaint import _backend
from qupaint.color import SRGB_TO_XYZ, white_xyz
from qupaint.pia import pia_map

B, S, P = 64, 448, 14
GROUP = "pia-64x448-uint8"


@pytest.fixture(scope="module")
def images():
    return torch.from_numpy(
        np.random.default_rng(0).integers(0, 256, (B, 3, S, S)).astype(np.uint8)
    )


def plain_torch_pia(x: torch.Tensor) -> torch.Tensor:
    """What a user would write: unfold, torch.median (lower median), LAB, Delta-E, min-max."""
    xf = x.float() / 255.0
    bg = xf.flatten(2).median(-1).values  # [B, 3]
    patches = torch.nn.functional.unfold(xf, P, stride=P)  # [B, 3*P*P, k*k]
    med = patches.reshape(x.shape[0], 3, P * P, -1).median(2).values.transpose(1, 2)  # [B, kk, 3]
    m = torch.tensor(SRGB_TO_XYZ, dtype=torch.float32, device=x.device)
    w = torch.tensor(white_xyz("D65"), dtype=torch.float32, device=x.device)

    def lab(c):
        lin = torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        t = (lin @ m.T) / w
        f = torch.where(t > 216 / 24389, t.clamp(min=1e-12) ** (1 / 3), t * 841 / 108 + 4 / 29)
        return torch.stack(
            [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1
        )

    de = (lab(med) - lab(bg)[:, None, :]).norm(dim=-1)
    lo, hi = de.min(1, keepdim=True).values, de.max(1, keepdim=True).values
    return ((de - lo) / (hi - lo).clamp(min=1e-12)).reshape(x.shape[0], S // P, S // P)


def test_ours_cpu(peer, images):
    peer(GROUP, "qupaint-cpu", lambda: pia_map(images, backend="cpu"), ours=True, work=B)


def test_torch_cpu(peer, images):
    peer(GROUP, "torch-unfold-median-cpu", lambda: plain_torch_pia(images), rounds=3)


GPU = pytest.mark.skipif(
    not _backend.available("triton", "cuda")[0] or not torch.cuda.is_available(),
    reason="no CUDA device",
)


@GPU
def test_ours_triton_gpu(peer, images):
    x = images.cuda()

    def run():
        pia_map(x, backend="triton")
        torch.cuda.synchronize()

    peer("pia-64x448-uint8-gpu", "qupaint-triton", run, ours=True, work=B)


@GPU
def test_torch_gpu(peer, images):
    x = images.cuda()

    def run():
        plain_torch_pia(x)
        torch.cuda.synchronize()

    peer("pia-64x448-uint8-gpu", "torch-unfold-median-gpu", run)
