"""Where each GPU benchmark's time goes: the wall time of one call (synchronised) beside the
time its CUDA kernels ran, with the three longest kernels, from torch.profiler.

A call whose wall time is far above its kernel time is bound by the host (Python, launches,
checks, copies), not by the GPU. Run on a GPU machine: ``python scripts/gpu_profile.py``;
``--host`` adds, for each case, the Python functions that take its host time (cProfile).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import time
from collections import defaultdict

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from qupaint.color import srgb_to_lab, stack_color
from qupaint.gate import pia_gate
from qupaint.optics import build_stack, flake_layers, reflectance
from qupaint.pia import pia_map


def cases() -> dict:
    dev = "cuda"
    t = torch.randn(8, 1024, 1024, device=dev, dtype=torch.bfloat16, requires_grad=True)
    a = torch.rand(8, 1024, device=dev, requires_grad=True)
    w = torch.tensor(1.0, device=dev, requires_grad=True)
    b = torch.tensor(0.0, device=dev, requires_grad=True)
    g = torch.randn_like(t)
    wl = np.arange(400.0, 701.0, 1.0)
    n, _ = build_stack(flake_layers("MoS2", 1), wl)
    rng = np.random.default_rng(0)
    d = np.stack(
        [
            np.full(4096, np.inf),
            rng.uniform(0.6, 60, 4096),
            np.full(4096, 285.0),
            np.full(4096, np.inf),
        ],
        1,
    )
    n64, d64 = torch.as_tensor(n).cuda(), torch.as_tensor(d).cuda()
    wl64 = torch.as_tensor(wl).cuda()
    n32, d32, wl32 = n64.to(torch.complex64), d64.float(), wl64.float()
    imgs = torch.randint(0, 256, (64, 3, 448, 448), dtype=torch.uint8, device=dev)
    px = torch.rand(1_000_000, 3, device=dev)
    thick = torch.rand(1_000_000, device=dev) * 20
    layers = [("MoS2", thick), ("SiO2", 285.0)]
    wl_c = torch.arange(380.0, 781.0, 5.0, device=dev)

    def eager(t, a, w, b):
        return t * torch.sigmoid(w * a + b).to(t.dtype)[..., None]

    return {
        "gate fwd+bwd triton": lambda: pia_gate(t, a, w, b, backend="triton").backward(g),
        "gate fwd+bwd eager": lambda: eager(t, a, w, b).backward(g),
        "gate fwd triton (no grad)": lambda: pia_gate(
            t.detach(), a.detach(), w.detach(), b.detach(), backend="triton"
        ),
        "tmm 4096x301 f64": lambda: reflectance(n64, d64, wl64, 0.0, "u", backend="cuda"),
        "tmm 4096x301 f32": lambda: reflectance(n32, d32, wl32, 0.0, "u", backend="cuda"),
        "pia 64x448 triton": lambda: pia_map(imgs, backend="triton"),
        "srgb_to_lab 1e6": lambda: srgb_to_lab(px, backend="cuda", check=False),
        "stack_color 1e6": lambda: stack_color(layers, wl_c, dtype="float32", backend="cuda"),
    }


def host_profile(name: str, fn, iters: int = 200, top: int = 12) -> None:
    """cProfile of ``iters`` calls: the functions with the most own (host) time."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
    print(f"--- {name}: host time of {iters} calls (tottime, cumtime in s)")
    print("\n".join(lines[-top - 1 :]), flush=True)


def main(iters: int = 20, host: bool = False) -> None:
    print(f"{'case':28s} {'wall ms':>8s} {'kernels ms':>10s}  longest kernels (ms per call)")
    for name, fn in cases().items():
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        torch.cuda.synchronize()
        wall = (time.perf_counter() - t0) / iters * 1e3
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                fn()
            torch.cuda.synchronize()
        per = defaultdict(float)
        for e in prof.events():
            if e.device_type == torch.autograd.DeviceType.CUDA:
                per[e.name] += e.device_time / 5 / 1e3
        top = sorted(per.items(), key=lambda kv: -kv[1])[:3]
        tops = "; ".join(f"{k[:40]} {v:.3f}" for k, v in top)
        print(f"{name:28s} {wall:8.3f} {sum(per.values()):10.3f}  {tops}", flush=True)
    if host:
        for name, fn in cases().items():
            host_profile(name, fn)


if __name__ == "__main__":
    main(host="--host" in sys.argv[1:])
