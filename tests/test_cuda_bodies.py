"""The CUDA kernels' per-thread bodies, run on the CPU over their whole launch grid.

Each CUDA kernel is index arithmetic plus one host+device body (qupaint/kernel_bodies.h);
``_C._cuda_body_*`` runs that body for every thread of the launch (its block size and grid),
so a bug in indexing, bounds or strides fails here, on a machine without a GPU. Compared
with the reference on odd shapes, broadcast strides, float32 and float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TOL

from qupaint import _backend
from qupaint._arrays import elem_strides, pointer
from qupaint.color import kernel_color_space, lab_to_srgb, srgb_to_lab, stack_color, xyz_weights
from qupaint.optics import build_stack, refractive_index
from qupaint.optics.tmm import kernel_dtype, prepare_stacks

C = _backend._compiled()
pytestmark = pytest.mark.skipif(C is None, reason="qupaint._C is not built")
DTYPES = {"float64": (torch.complex128, torch.float64), "float32": (torch.complex64, torch.float32)}
SHAPES = [pytest.param(1, 3, 7, id="B1-L3-W7"), pytest.param(257, 5, 31, id="B257-L5-W31"),
          pytest.param(3, 4, 301, id="B3-L4-W301")]  # fmt: skip


def _stacks(B, L, W, dtype, rng, shared_n=True):
    wl = np.linspace(400, 700, W)
    mats = ["air", "MoS2", "hBN", "SiO2", "Si", "graphene"]
    n = np.stack([refractive_index(m, wl) for m in (["air"] + mats[1 : L - 1] + ["Si"])])
    n = n[None] if shared_n else n[None] * (1 + 0.05 * rng.random((B, L, 1)))
    d = np.concatenate([[np.inf], rng.uniform(0, 300, L - 2), [np.inf]])
    d = np.broadcast_to(d, (B, L)).copy()
    d[:, 1:-1] *= rng.uniform(0.5, 1.5, (B, L - 2))
    th = rng.uniform(0, 1.2, B)
    cdt, rdt = DTYPES[dtype]
    return prepare_stacks(torch.as_tensor(n, dtype=cdt), torch.as_tensor(d), torch.as_tensor(wl),
                          torch.as_tensor(th), "u")  # fmt: skip


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("shared_n", [True, False], ids=["broadcast-n", "per-stack-n"])
@pytest.mark.parametrize("B, L, W", SHAPES)
def test_tmm_reflectance_body(B, L, W, dtype, shared_n, rng):
    st = _stacks(B, L, W, dtype, rng, shared_n)
    out = torch.full((st.batch, W), float("nan"), dtype=st.rdtype)
    C._cuda_body_tmm_reflectance(kernel_dtype(out), st.kernel_args("u", out))
    ref = st.reference("u")
    assert not torch.isnan(out).any()  # every (stack, wavelength) thread wrote its value
    assert (out.double() - ref).abs().max() < TOL[dtype]


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("space", [0, 1, 2], ids=["xyz", "linear_srgb", "lab"])
@pytest.mark.parametrize("B", [1, 130, 257])
def test_stack_color_body(B, space, dtype, rng):
    t = rng.uniform(0.6, 40, B)
    layers = [("MoS2", t), ("SiO2", 285.0)]
    wl = np.linspace(400, 700, 61)
    n, d = build_stack(layers, wl)
    cdt, rdt = DTYPES[dtype]
    st = prepare_stacks(
        torch.as_tensor(n, dtype=cdt), torch.as_tensor(d), torch.as_tensor(wl), 0.0, "u"
    )
    w = torch.tensor(np.asarray(xyz_weights(wl, "D65")), dtype=rdt)
    out = torch.full((B, 3), float("nan"), dtype=rdt)
    c = C.ColorArgs()
    c.weights, c.space, c.out = pointer(w), space, pointer(out)
    C._cuda_body_stack_color(kernel_dtype(out), st.kernel_args("u"), c, kernel_color_space("D65"))
    name = ["xyz", "linear_srgb", "lab"][space]
    ref = np.asarray(stack_color(layers, wl, space=name, backend="reference"))
    scale = 100 if name == "lab" else 1
    assert np.abs(out.double().numpy() - ref).max() < (1e-9 if dtype == "float64" else 2e-5) * scale


def _pixels(n, dtype, kind, rng, strided):
    base = rng.random((n, 6 if strided else 3))
    if kind == "uint8":
        x = torch.as_tensor((base * 255).astype(np.uint8))
    else:
        x = torch.as_tensor(base, dtype=DTYPES[dtype][1])
    return x[:, ::2] if strided else x  # a channel stride of 2 elements


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("kind", ["float", "uint8"])
@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "strided"])
@pytest.mark.parametrize("n", [1, 255, 257, 1000])
def test_srgb_to_lab_body(n, strided, kind, dtype, rng):
    x = _pixels(n, dtype, kind, rng, strided)
    rdt = DTYPES[dtype][1]
    out = torch.full((n, 3), float("nan"), dtype=rdt)
    p = C.PixelArgs()
    p.input, p.in_kind, p.n = pointer(x), 1 if kind == "uint8" else 0, n
    p.si, p.sc = elem_strides(x)
    p.out = pointer(out)
    C._cuda_body_srgb_to_lab(kernel_dtype(out), p, kernel_color_space("D65"))
    ref = np.asarray(
        srgb_to_lab(x.double() / 255 if kind == "uint8" else x.double(), backend="reference")
    )
    assert np.abs(out.double().numpy() - ref).max() < (1e-9 if dtype == "float64" else 2e-3)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("n", [1, 257])
def test_lab_to_srgb_body(n, clip, dtype, rng):
    rdt = DTYPES[dtype][1]
    lab = torch.as_tensor(np.c_[rng.uniform(0, 100, n), rng.uniform(-60, 60, (n, 2))], dtype=rdt)
    out = torch.full((n, 3), float("nan"), dtype=rdt)
    p = C.PixelArgs()
    p.input, p.in_kind, p.n = pointer(lab), 0, n
    p.si, p.sc = elem_strides(lab)
    p.out = pointer(out)
    C._cuda_body_lab_to_srgb(kernel_dtype(out), p, kernel_color_space("D65"), clip)
    ref = np.asarray(lab_to_srgb(lab.double(), clip=clip, backend="reference"))
    assert np.abs(out.double().numpy() - ref).max() < (1e-9 if dtype == "float64" else 1e-4)


def test_gpu_check_says_when_there_is_no_gpu():
    # `make gpu-check` on a machine without a GPU: a clear message and exit code 0
    import os
    import subprocess
    import sys
    from pathlib import Path

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: gpu-check would run for real")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(root / "scripts" / "gpu_check.sh")], capture_output=True,
                       text=True, env=env)  # fmt: skip
    assert r.returncode == 0 and "no GPU is visible" in r.stdout, r.stdout + r.stderr


TOP_CASES = [
    pytest.param(lambda t: [("MoS2", t), ("SiO2", 285.0)], 0.0, "u", id="MoS2-285-normal-u"),
    pytest.param(
        lambda t: [("graphene", t), ("hBN", 20.0), ("SiO2", 90.0)],
        0.4,
        "u",
        id="graphene-hBN-oblique-u",
    ),  # fmt: skip
    pytest.param(lambda t: [("WSe2", t)], 0.3, "p", id="WSe2-on-Si-L3-p"),
    pytest.param(lambda t: [("MoS2", t), ("SiO2", 285.0)], 0.5, "s", id="MoS2-oblique-s"),
]


def _top_stacks(layers, theta, pol, B, dtype, rng, W=37):
    from qupaint.optics.tmm import top_kernel_args

    wl = np.linspace(400, 700, W)
    n, d = build_stack(layers(rng.uniform(0.5, 60, B)), wl)
    cdt, _ = DTYPES[dtype]
    st = prepare_stacks(torch.as_tensor(n, dtype=cdt), torch.as_tensor(d), torch.as_tensor(wl),
                        theta, pol)  # fmt: skip
    return st, top_kernel_args


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("B", [1, 255, 300])
@pytest.mark.parametrize("layers, theta, pol", TOP_CASES)
def test_tmm_top_fold_body(layers, theta, pol, B, dtype, rng):
    # the CUDA top-fold kernel's body (only layer 1 varies) against the reference
    st, top_kernel_args = _top_stacks(layers, theta, pol, B, dtype, rng)
    out = torch.full((st.batch, st.wl.shape[0]), float("nan"), dtype=st.rdtype)
    args, keep = top_kernel_args(st, pol, out)
    C._cuda_body_tmm_top(kernel_dtype(out), args)
    assert not torch.isnan(out).any()
    assert (out.double() - st.reference(pol)).abs().max() < TOL[dtype]


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("layers, theta, pol", TOP_CASES[:2])
def test_stack_color_top_fold_body(layers, theta, pol, dtype, rng):
    st, top_kernel_args = _top_stacks(layers, theta, pol, 129, dtype, rng, W=61)
    wl = st.wl.double().numpy()
    w = torch.tensor(np.asarray(xyz_weights(wl, "D65")), dtype=st.rdtype)
    out = torch.full((st.batch, 3), float("nan"), dtype=st.rdtype)
    c = C.ColorArgs()
    c.weights, c.space, c.out = pointer(w), 0, pointer(out)
    args, keep = top_kernel_args(st, pol)
    C._cuda_body_stack_color_top(kernel_dtype(out), args, c, kernel_color_space("D65"))
    ref = st.reference(pol) @ torch.tensor(np.asarray(xyz_weights(wl, "D65")))
    assert (out.double() - ref).abs().max() < (1e-9 if dtype == "float64" else 2e-5)


def test_top_fold_applies_only_when_just_layer_1_varies(rng):
    from qupaint.optics.tmm import top_fold

    wl = np.linspace(400, 700, 11)
    n, d = build_stack([("MoS2", rng.uniform(1, 5, 4)), ("SiO2", rng.uniform(80, 300, 4))], wl)
    st = prepare_stacks(torch.as_tensor(n), torch.as_tensor(d), torch.as_tensor(wl), 0.0, "u")
    assert top_fold(st, "u") is None  # the oxide differs between stacks
    n2, d2 = build_stack([("MoS2", rng.uniform(1, 5, 4)), ("SiO2", 285.0)], wl)
    st2 = prepare_stacks(torch.as_tensor(n2), torch.as_tensor(d2), torch.as_tensor(wl), 0.0, "u")
    angles = torch.as_tensor(rng.uniform(0, 1, 4))
    per_angle = prepare_stacks(torch.as_tensor(n2), torch.as_tensor(d2), torch.as_tensor(wl),
                               angles, "u")  # fmt: skip
    assert top_fold(per_angle, "u") is None  # per-stack angles
    coeffs, kq = top_fold(st2, "u")
    assert coeffs.shape == (1, 7, 11) and kq.shape == (2, 11)  # s = p at normal incidence
