"""Transfer-matrix reflectance: reference vs tmm.coh_tmm, every backend vs the reference,
physics identities, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tmm
import torch
from conftest import TMM_TOL, TOL, backend_params

from qupaint.optics import reflectance, stack_reflectance
from qupaint.optics.tmm import DEFAULT_WAVELENGTHS_NM

BACKENDS = backend_params("tmm_reflectance")


def random_stacks(rng, B, L, W, absorbing=True, n0=1.0):
    """B random stacks of L layers: lossless incident medium, absorbing (or not) others."""
    wl = np.sort(rng.uniform(380.0, 800.0, W))
    n = rng.uniform(1.0, 5.0, (B, L, W)) + 1j * (
        rng.uniform(0.0, 3.0, (B, L, W)) if absorbing else 0
    )
    n[:, 0, :] = n0
    d = np.concatenate(
        [np.full((B, 1), np.inf), rng.uniform(0.0, 400.0, (B, L - 2)), np.full((B, 1), np.inf)], 1
    )
    return n, d, wl


def tmm_R(pol, n, d, th, wl):
    """tmm.coh_tmm (or unpolarised mean) per wavelength for one stack."""

    def one(p, w):
        return tmm.coh_tmm(p, n[:, w], d, th, wl[w])["R"]

    pols = ("s", "p") if pol == "u" else (pol,)
    return np.array([np.mean([one(p, w) for p in pols]) for w in range(len(wl))])


@pytest.mark.parametrize("pol", ["s", "p", "u"])
@pytest.mark.parametrize("absorbing", [True, False], ids=["absorbing", "lossless"])
def test_reference_matches_tmm_random(rng, pol, absorbing):
    worst = 0.0
    for L in range(3, 9):
        n, d, wl = random_stacks(rng, 3, L, 5, absorbing)
        th = rng.uniform(0.0, math.radians(80.0), 3)
        R = reflectance(n, d, wl, th, pol, backend="reference")
        for b in range(3):
            expect = tmm_R(pol, n[b], d[b], th[b], wl)
            worst = max(worst, np.abs(R[b] - expect).max())
    assert worst < TMM_TOL, worst


@pytest.mark.parametrize("pol", ["s", "p"])
def test_reference_matches_tmm_dense_incident_and_tir(pol):
    # glass incident medium, air exit: beyond ~41.8 deg the exit wave is evanescent (TIR);
    # exercises the forward-root choice for complex angles
    wl = np.array([450.0, 550.0, 650.0])
    n = np.array([[1.5] * 3, [2.0 + 0.1j] * 3, [1.2] * 3, [1.0] * 3])
    d = np.array([np.inf, 80.0, 150.0, np.inf])
    for th in np.radians([0.0, 20.0, 41.0, 42.0, 60.0, 85.0]):
        R = reflectance(n, d, wl, th, pol, backend="reference")
        assert np.abs(R - tmm_R(pol, n, d, th, wl)).max() < TMM_TOL


def test_flake_stack_matches_tmm():
    # the QuPAINT stack: air / MoS2 1L / 285 nm SiO2 / Si (Eq. 21)
    from qupaint.optics import build_stack, flake_layers

    wl = np.linspace(400, 700, 31)
    n, d = build_stack(flake_layers("MoS2", 1), wl)
    R = stack_reflectance(flake_layers("MoS2", 1), wl, backend="reference")
    expect = tmm_R("u", n, d, 0.0, wl)
    assert np.abs(R - expect).max() < TMM_TOL


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("pol", ["s", "p", "u"])
def test_backend_matches_reference(rng, backend, dtype, pol):
    name, dev = backend
    n, d, wl = random_stacks(rng, 17, 6, 23)
    th = rng.uniform(0, 1.3, 17)
    ref = reflectance(n, d, wl, th, pol, backend="reference")
    cdt = torch.complex64 if dtype == "float32" else torch.complex128
    nt = torch.as_tensor(n, dtype=cdt, device=dev)
    out = reflectance(
        nt,
        torch.as_tensor(d, device=dev),
        torch.as_tensor(wl, device=dev),
        torch.as_tensor(th, device=dev),
        pol,
        backend=name,
    )
    assert out.dtype == getattr(torch, dtype) and out.device.type == dev
    assert np.abs(out.cpu().double().numpy() - ref).max() < TOL[dtype]


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_broadcast_and_strides(rng, backend):
    # shared n [L, W] with per-stack d [B, L]; non-contiguous n view
    name, dev = backend
    _, d, wl = random_stacks(rng, 9, 4, 11)
    n_big = rng.uniform(1, 4, (4, 22)) + 1j * rng.uniform(0, 1, (4, 22))
    n_big[0] = 1.0
    n = n_big[:, ::2]  # stride 2 along W
    out = (
        reflectance(
            torch.as_tensor(n, device=dev),
            torch.as_tensor(d, device=dev),
            torch.as_tensor(wl, device=dev),
            0.3,
            "u",
            backend=name,
        )
        .cpu()
        .numpy()
    )
    for b in range(9):
        expect = reflectance(np.ascontiguousarray(n), d[b], wl, 0.3, "u", backend="reference")
        assert np.abs(out[b] - expect).max() < TOL["float64"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_thickness_layer_is_no_layer(rng, backend):
    name, dev = backend
    n, d, wl = random_stacks(rng, 1, 5, 9)
    d[0, 2] = 0.0
    with_zero = reflectance(
        torch.as_tensor(n[0], device=dev),
        torch.as_tensor(d[0], device=dev),
        torch.as_tensor(wl, device=dev),
        0.4,
        "u",
        backend=name,
    )
    keep = [0, 1, 3, 4]
    without = reflectance(n[0][keep], d[0][keep], wl, 0.4, "u", backend="reference")
    assert np.abs(with_zero.cpu().numpy() - without).max() < 1e-12


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_interface_is_fresnel(backend):
    name, dev = backend
    n1, n2, th = 1.0, 1.5 + 0.2j, 0.7
    c1 = math.cos(th)
    c2 = np.sqrt(1 - (n1 * math.sin(th) / n2) ** 2)
    rs = (n1 * c1 - n2 * c2) / (n1 * c1 + n2 * c2)
    rp = (n2 * c1 - n1 * c2) / (n2 * c1 + n1 * c2)
    n = torch.tensor([[n1], [n2]], dtype=torch.complex128, device=dev)
    d = torch.tensor([math.inf, math.inf], device=dev)
    wl = torch.tensor([500.0], device=dev)
    assert abs(float(reflectance(n, d, wl, th, "s", backend=name)[0]) - abs(rs) ** 2) < 1e-14
    assert abs(float(reflectance(n, d, wl, th, "p", backend=name)[0]) - abs(rp) ** 2) < 1e-14


@pytest.mark.parametrize("backend", BACKENDS)
def test_physics_identities(rng, backend):
    name, dev = backend

    def R(n, d, wl, th, pol):
        return (
            reflectance(
                torch.as_tensor(n, device=dev),
                torch.as_tensor(d, device=dev),
                torch.as_tensor(wl, device=dev),
                th,
                pol,
                backend=name,
            )
            .cpu()
            .numpy()
        )

    n, d, wl = random_stacks(rng, 1, 6, 13, absorbing=False)
    n, d = n[0], d[0]
    # s = p at normal incidence
    assert np.abs(R(n, d, wl, 0.0, "s") - R(n, d, wl, 0.0, "p")).max() < 1e-13
    # lossless reciprocity: same R from either side (energy conservation, R + T = 1 both ways)
    nr, dr = n[::-1].copy(), d[::-1].copy()
    nr[0] = nr[0].real
    assert np.abs(R(n, d, wl, 0.0, "u") - R(nr, dr, wl, 0.0, "u")).max() < 1e-12
    # half-wave layer (n d = lambda / 2, lossless) is absent at normal incidence
    wl1 = np.array([550.0])
    nh = np.array([[1.0], [2.1], [1.46], [3.9 + 0.02j]])
    dh = np.array([np.inf, 550.0 / (2 * 2.1), 90.0, np.inf])
    keep = [0, 2, 3]
    assert abs(R(nh, dh, wl1, 0.0, "u")[0] - R(nh[keep], dh[keep], wl1, 0.0, "u")[0]) < 1e-12
    # bounds on an absorbing stack
    na, da, wla = random_stacks(rng, 32, 5, 17)
    Ra = R(na, da, wla, 0.5, "u")
    assert Ra.min() >= 0.0 and Ra.max() <= 1.0 + 1e-12


def test_kinds_and_shapes():
    n = np.array([[1.0, 1.0], [1.5, 1.6], [3.9 + 0.02j, 4.0 + 0.03j]])
    d = np.array([np.inf, 100.0, np.inf])
    wl = np.array([500.0, 600.0])
    R = reflectance(n, d, wl)
    assert isinstance(R, np.ndarray) and R.shape == (2,) and R.dtype == np.float64
    Rt = reflectance(torch.as_tensor(n), d, wl)
    assert isinstance(Rt, torch.Tensor) and Rt.shape == (2,)
    R32 = reflectance(n.astype(np.complex64), d, wl)
    assert R32.dtype == np.float32
    Rb = reflectance(n, np.stack([d, d, d]), wl, np.array([0.0, 0.1, 0.2]))
    assert Rb.shape == (3, 2)
    assert np.allclose(Rb[0], R)
    Rn = reflectance(n.real, d, wl)  # real indices are k = 0
    assert Rn.shape == (2,)


def test_dispersive_incident_medium_oblique():
    wl = np.array([450.0, 650.0])
    n = np.array([[1.52, 1.50], [2.0, 2.1], [1.0, 1.0]])
    d = np.array([np.inf, 120.0, np.inf])
    for pol in "sp":
        R = reflectance(n, d, wl, 0.5, pol)
        assert np.abs(R - tmm_R(pol, n, d, 0.5, wl)).max() < TMM_TOL


BAD = [
    (dict(pol="x"), ValueError, "pol"),
    (dict(d=[np.inf, 10.0]), ValueError, "layers"),
    (dict(d=[5.0, 10.0, np.inf]), ValueError, "outer layers must be inf"),
    (dict(d=[np.inf, -1.0, np.inf]), ValueError, ">= 0"),
    (dict(d=[np.inf, np.nan, np.inf]), ValueError, "NaN"),
    (dict(d=[np.inf, np.inf, np.inf]), ValueError, "finite thickness"),
    (dict(theta0=2.0), ValueError, "theta0"),
    (dict(theta0=np.nan), ValueError, "theta0"),
    (dict(wavelengths_nm=[-1.0, 500.0]), ValueError, "wavelengths_nm"),
    (dict(wavelengths_nm=[500.0]), ValueError, "wavelengths"),
    (dict(n=[[1.0, 1.0], [1.5 - 0.1j, 1.5], [4.0, 4.0]]), ValueError, "k"),
    (dict(n=[[1.0, np.nan], [1.5, 1.5], [4.0, 4.0]]), ValueError, "NaN"),
    (dict(n=[[1.0 + 0.1j, 1.0], [1.5, 1.5], [4.0, 4.0]], theta0=0.3), ValueError, "lossless"),
    (dict(n=[[1.0, 1.0]]), ValueError, "at least 2"),
    (dict(n=np.ones((2, 2, 2, 2))), ValueError, "shape"),
    (dict(n=[["a", "b"], ["c", "d"], ["e", "f"]]), TypeError, "numeric"),
    (dict(theta0=[0.1, 0.2], d=np.array([[np.inf, 1, np.inf]] * 3)), ValueError, "batch"),
]


@pytest.mark.parametrize("kw,exc,match", BAD, ids=[b[2] + str(i) for i, b in enumerate(BAD)])
def test_bad_input(kw, exc, match):
    args = dict(
        n=[[1.0, 1.0], [1.5, 1.5], [4.0, 4.0]],
        d=[np.inf, 10.0, np.inf],
        wavelengths_nm=[500.0, 600.0],
        theta0=0.0,
        pol="s",
    )
    args.update(kw)
    with pytest.raises(exc, match=match):
        reflectance(**args)


def test_unknown_backend_and_unavailable(monkeypatch):
    from qupaint._backend import BackendUnavailableError

    n, d, wl = [[1.0], [1.5]], [np.inf, np.inf], [500.0]
    with pytest.raises(ValueError, match="backend must be one of"):
        reflectance(n, d, wl, backend="fortran")
    with pytest.raises(BackendUnavailableError, match="triton"):
        reflectance(n, d, wl, backend="triton")
    with pytest.raises(BackendUnavailableError, match="cuda"):
        reflectance(n, d, wl, backend="cuda")  # CPU inputs
    monkeypatch.setenv("QUPAINT_BACKEND", "reference")
    assert reflectance(n, d, wl).shape == (1,)


def test_compiled_kernels_reject_unknown_dtypes():
    # a buffer read as the wrong type gives garbage, so the C++ boundary refuses any dtype
    # name other than float32 / float64 instead of defaulting to one
    from qupaint import _backend

    C = _backend._compiled()
    if C is None:
        pytest.skip("qupaint._C is not built")
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'; got 'float16'"):
        C.tmm_reflectance_cpu("float16", C.TmmArgs())
    with pytest.raises(ValueError, match="got 'complex128'"):
        C.srgb_to_lab_cpu("complex128", C.PixelArgs(), C.ColorSpace())


def test_stack_reflectance_batched_thickness():
    from qupaint.optics import flake_layers

    t = np.array([0.34, 0.68, 1.02])
    R = stack_reflectance([("graphene", t), ("SiO2", 285.0)])
    assert R.shape == (3, len(DEFAULT_WAVELENGTHS_NM))
    for i, nl in enumerate([1, 2, 3]):
        one = stack_reflectance(flake_layers("graphene", nl))
        assert np.abs(R[i] - one).max() < 1e-12
    Rt = stack_reflectance([("graphene", torch.tensor(t)), ("SiO2", 285.0)])
    assert isinstance(Rt, torch.Tensor) and np.abs(Rt.numpy() - R).max() < 1e-12
    with pytest.raises(ValueError, match="one length"):
        stack_reflectance([("graphene", t), ("SiO2", np.array([1.0, 2.0]))])
    with pytest.raises(ValueError, match="unknown"):
        stack_reflectance([("vibranium", 1.0)])
    with pytest.raises(ValueError, match="tabulated"):
        stack_reflectance(flake_layers("MoS2", 1), wavelengths_nm=np.array([380.0, 500.0]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_shared_bottom_layers_and_large_phases(rng, backend, dtype):
    # Shared n and angle (one plan for the batch); layers 2 and 4 have one thickness for
    # all stacks, layers 1 and 3 vary: only the bottom run of shared layers is pre-folded.
    # Thick layers (up to 20 um) push the phase to ~1e3 rad (range reduction of sincos);
    # weakly absorbing layers at oblique incidence exercise the complex sqrt.
    B, L, W = 12, 6, 41
    wl = np.linspace(380, 800, W)
    n = rng.uniform(1.2, 4.5, (L, W)) + 1j * rng.uniform(0, 0.05, (L, W))
    n[0] = 1.0
    d = np.empty((B, L))
    d[:, 0] = d[:, -1] = np.inf
    d[:, 1] = rng.uniform(0, 20000, B)
    d[:, 2] = 285.0
    d[:, 3] = rng.uniform(0, 500, B)
    d[:, 4] = 90.0
    # second case: d[:, 3] also shared, so layers 2..4 are all pre-folded
    for th, pol, d3 in [(0.2, "u", d[:, 3].copy()), (0.0, "s", np.full(B, 40.0))]:
        d[:, 3] = d3
        ref = reflectance(n, d, wl, th, pol, backend="reference")
        out = on_backend(backend, dtype, n, d, wl, th, pol)
        plain = plain_torch_f32_error(n, d, wl, th, pol, ref)
        tol = TOL[dtype] if dtype == "float64" else 2 * plain
        assert np.abs(out.cpu().double().numpy() - ref).max() < tol


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("L", [3, 4, 5])
def test_top_layer_only_varies(rng, backend, dtype, L):
    # The rendering case: only layer 1 varies, everything below is shared. The CPU kernel
    # then evaluates R as a real rational function of the layer-1 round trip (TmmPlan's
    # top coefficients); L = 3 has no layer between the flake and the substrate. Strongly
    # absorbing and transparent flakes, zero, thin and 20 um thick, every polarisation,
    # normal and oblique incidence.
    B, W = 40, 37
    wl = np.linspace(380, 800, W)
    n = rng.uniform(1.3, 4.5, (L, W)) + 1j * rng.uniform(0, 0.05, (L, W))
    n[0] = 1.0
    n[1] = rng.uniform(1.5, 5.0, W) + 1j * rng.uniform(0, 2.0, W)
    d = np.empty((B, L))
    d[:, 0] = d[:, -1] = np.inf
    d[:, 1] = np.concatenate([[0.0, 0.3], rng.uniform(0, 60, B - 12), rng.uniform(0, 20000, 10)])
    d[:, 2:-1] = rng.uniform(50, 400, L - 3)
    for th in (0.0, 0.6):
        for pol in ("s", "p", "u"):
            for k1 in (True, False):  # absorbing / transparent flake
                nn = n.copy()
                if not k1:
                    nn[1] = nn[1].real
                ref = reflectance(nn, d, wl, th, pol, backend="reference")
                out = on_backend(backend, dtype, nn, d, wl, th, pol)
                if dtype == "float64":
                    err = np.abs(out.cpu().double().numpy() - ref).max()
                    assert err < TOL[dtype], (th, pol, k1)
                else:
                    # Rounding n to complex64 alone moves R of the 20 um layers by ~1e-4,
                    # for us and for plain torch alike; compare the arithmetic error only,
                    # at the rounded inputs, against plain torch's (STYLE.md's 2x rule).
                    n32, d32, wl32 = (
                        nn.astype(np.complex64).astype(complex),
                        d.astype(np.float32).astype(float),
                        wl.astype(np.float32).astype(float),
                    )
                    th32 = math.asin(float(np.float32(math.sin(th))))
                    ref32 = reflectance(n32, d32, wl32, th32, pol, backend="reference")
                    err = np.abs(out.cpu().double().numpy() - ref32).max()
                    plain = plain_torch_f32_error(nn, d, wl, th, pol, ref32)
                    assert err < 2 * plain, (th, pol, k1, err, plain)


def on_backend(backend, dtype, n, d, wl, th, pol):
    """reflectance() of numpy inputs on (backend name, device) in dtype's precision."""
    name, dev = backend
    cdt = torch.complex64 if dtype == "float32" else torch.complex128
    return reflectance(
        torch.as_tensor(n, dtype=cdt, device=dev),
        torch.as_tensor(d, device=dev),
        torch.as_tensor(wl, device=dev),
        th,
        pol,
        backend=name,
    )


def plain_torch_f32_error(n, d, wl, th, pol, ref):
    """Error of the plain torch implementation run in complex64 (STYLE.md's 2x rule)."""
    from qupaint.optics.tmm import reflectance_reference

    out = reflectance_reference(
        torch.tensor(n, dtype=torch.complex64)[None],
        torch.tensor(d, dtype=torch.float32),
        torch.tensor(wl, dtype=torch.float32),
        torch.tensor([math.sin(th)], dtype=torch.float32),
        pol,
    )
    return max(float(np.abs(out.double().numpy() - ref).max()), 1e-6)
