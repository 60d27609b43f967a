"""Reflectance of 4-layer flake stacks (air / MoS2 / 285 nm SiO2 / Si), B = 4096 x 301
wavelengths: our kernels vs tmm (per-call loop on a subset, scaled up), tmm-fast and a
vectorised torch-eager implementation (our reference, in the same precision).

Issue targets on the 2-core CPU: >= 1000x tmm, >= 5x tmm-fast, >= 3x torch eager.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qupaint import _backend
from qupaint.optics import build_stack, flake_layers, reflectance
from qupaint.optics.tmm import reflectance_reference

B, WL = 4096, np.arange(400.0, 701.0, 1.0)
GROUP = "tmm-4096x301-u"
WORK = B * WL.size


@pytest.fixture(scope="module")
def stacks():
    n, _ = build_stack(flake_layers("MoS2", 1), WL)
    rng = np.random.default_rng(0)
    d = np.stack(
        [np.full(B, np.inf), rng.uniform(0.6, 60.0, B), np.full(B, 285.0), np.full(B, np.inf)], 1
    )
    return n, d


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_ours_cpu(peer, stacks, dtype):
    n, d = stacks
    cdt = np.complex64 if dtype == "float32" else np.complex128
    n, d, wl = n.astype(cdt), d.astype(dtype), WL.astype(dtype)
    peer(
        GROUP,
        f"qupaint-cpu-{dtype}",
        lambda: reflectance(n, d, wl, 0.0, "u", backend="cpu"),
        ours=True,
        work=WORK,
    )


@pytest.mark.skipif(not _backend.available("cuda", "cuda")[0], reason="no CUDA device")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_ours_cuda(peer, stacks, dtype):
    n, d = stacks
    cdt = torch.complex64 if dtype == "float32" else torch.complex128
    nt, dt = (
        torch.as_tensor(n, dtype=cdt).cuda(),
        torch.as_tensor(d).to(getattr(torch, dtype)).cuda(),
    )
    wl = torch.as_tensor(WL).to(getattr(torch, dtype)).cuda()

    def run():
        reflectance(nt, dt, wl, 0.0, "u", backend="cuda")
        torch.cuda.synchronize()

    peer(GROUP, f"qupaint-cuda-{dtype}", run, ours=True, work=WORK)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_eager(peer, stacks, dtype):
    n, d = stacks
    cdt = torch.complex64 if dtype == "float32" else torch.complex128
    nt = torch.as_tensor(n, dtype=cdt)[None]
    dt = torch.as_tensor(d).to(getattr(torch, dtype))
    wl = torch.as_tensor(WL).to(getattr(torch, dtype))
    s0 = torch.zeros(1, dtype=getattr(torch, dtype))
    peer(
        GROUP, f"torch-eager-{dtype}", lambda: reflectance_reference(nt, dt, wl, s0, "u"), rounds=3
    )


def test_tmm_fast(peer, stacks):
    tmm_fast = pytest.importorskip("tmm_fast")
    n, d = stacks
    N = np.ascontiguousarray(np.broadcast_to(n, (B, *n.shape)))
    theta = np.array([0.0])

    def run():  # unpolarised = mean of s and p, as ours computes
        s = tmm_fast.coh_tmm("s", N, d * 1e-9, theta, WL * 1e-9)["R"]
        p = tmm_fast.coh_tmm("p", N, d * 1e-9, theta, WL * 1e-9)["R"]
        return 0.5 * (s + p)

    peer(GROUP, "tmm-fast-float64", run, rounds=2)


def test_tmm_loop_subset(peer, stacks):
    tmm = pytest.importorskip("tmm")
    n, d = stacks
    sub = 4  # stacks timed; scaled by B / sub

    def run():
        for b in range(sub):
            for w in range(WL.size):
                tmm.unpolarized_RT(n[:, w], d[b], 0.0, WL[w])

    peer(GROUP, "tmm-loop-float64", run, scale=B / sub, rounds=2)
