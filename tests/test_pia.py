"""PIA vs an independent numpy reference (numpy medians, colour-science CIELAB), every
backend vs that truth, drop-in behaviour for training loops, and bad input."""

from __future__ import annotations

import colour
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import backend_params

from qupaint.pia import PIA, pia_map, pia_scores

BACKENDS = backend_params("pia")
FAST = [p for p in BACKENDS if p.id != "triton"]  # the Triton interpreter is slow: tiny cases
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def numpy_pia(img01: np.ndarray, p: int, normalize: bool = True) -> np.ndarray:
    """img01: [3, S, S] float64 sRGB in [0, 1], already at the target size."""
    S = img01.shape[-1]
    k = S // p
    hwc = img01.transpose(1, 2, 0)
    bg = np.median(hwc.reshape(-1, 3), axis=0)
    med = np.median(
        hwc.reshape(k, p, k, p, 3).transpose(0, 2, 1, 3, 4).reshape(k, k, -1, 3), axis=2
    )
    lab = colour.XYZ_to_Lab(colour.sRGB_to_XYZ(med))
    lab_bg = colour.XYZ_to_Lab(colour.sRGB_to_XYZ(bg))
    de = np.linalg.norm(lab - lab_bg, axis=-1)
    if normalize:
        rng = de.max() - de.min()
        de = (de - de.min()) / rng if rng > 0 else np.zeros_like(de)
    return de


def flake_image(rng, S: int) -> np.ndarray:
    """Substrate colour + a few flakes of other colours + sensor noise, uint8 [3, S, S]."""
    img = np.empty((S, S, 3))
    img[:] = [0.55, 0.45, 0.70]
    for _ in range(4):
        y, x = rng.integers(0, S - S // 4, 2)
        h, w = rng.integers(S // 16, S // 4, 2)
        img[y : y + h, x : x + w] = rng.uniform(0.2, 0.9, 3)
    img += rng.normal(0, 0.01, img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8).transpose(2, 0, 1)


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("kind", ["uint8", "float32"])
@pytest.mark.parametrize("grid", [(14, 448), (16, 224)], ids=["p14-448", "p16-224"])
def test_matches_numpy_reference(rng, backend, kind, grid):
    name, _ = backend
    p, S = grid
    imgs = np.stack([flake_image(rng, S), rng.integers(0, 256, (3, S, S)).astype(np.uint8)])
    x = imgs if kind == "uint8" else (imgs / 255.0).astype(np.float32)
    out = pia_map(torch.as_tensor(x), patch_size=p, image_size=S, backend=name)
    assert out.shape == (2, S // p, S // p) and out.dtype == torch.float32
    for i in range(2):
        expect = numpy_pia(imgs[i] / 255.0 if kind == "uint8" else x[i].astype(np.float64), p)
        assert np.abs(out[i].numpy() - expect).max() < 1e-4
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize("backend", FAST)
def test_resize_path_odd_sizes(rng, backend):
    name, _ = backend
    img = rng.uniform(0, 1, (1, 3, 301, 517)).astype(np.float32)
    out = pia_map(torch.as_tensor(img), backend=name)
    resized = (
        F.interpolate(
            torch.as_tensor(img),
            size=(448, 448),
            mode="bilinear",
            align_corners=False,
            antialias=False,
        )[0]
        .double()
        .numpy()
    )
    assert np.abs(out[0].numpy() - numpy_pia(resized, 14)).max() < 1e-4
    # uint8 input on the resize path
    u8 = (img * 255).astype(np.uint8)
    out8 = pia_map(u8[0], backend=name)  # single image -> [k, k], numpy in -> numpy out
    r8 = (
        F.interpolate(
            torch.as_tensor(u8).float(), size=(448, 448), mode="bilinear", align_corners=False
        )[0]
        .double()
        .numpy()
        / 255.0
    )
    assert isinstance(out8, np.ndarray) and out8.shape == (32, 32)
    assert np.abs(out8 - numpy_pia(r8, 14)).max() < 1e-4


@pytest.mark.parametrize("backend", FAST)
def test_normalised_pixel_values(rng, backend):
    # what a Hugging Face image processor hands a training loop
    name, _ = backend
    img = flake_image(rng, 448) / 255.0
    mean, std = np.array(IMAGENET_MEAN)[:, None, None], np.array(IMAGENET_STD)[:, None, None]
    pixel_values = torch.as_tensor(((img - mean) / std)[None], dtype=torch.float32)
    out = pia_map(pixel_values, mean=IMAGENET_MEAN, std=IMAGENET_STD, backend=name)
    assert np.abs(out[0].numpy() - numpy_pia(img, 14)).max() < 1e-4
    raw = pia_map(pia_map_input := torch.as_tensor(img[None], dtype=torch.float32), backend=name)
    assert pia_map_input.shape == (1, 3, 448, 448)
    assert np.abs(out.numpy() - raw.numpy()).max() < 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_constant_image_and_unnormalised(backend):
    name, dev = backend
    S, p = (28, 14) if (name, dev) == ("triton", "cpu") else (448, 14)  # the interpreter is slow
    const = torch.full((1, 3, S, S), 0.3, device=dev)
    out = pia_map(const, image_size=S, patch_size=p, backend=name)
    assert out.device.type == dev
    assert torch.equal(out, torch.zeros_like(out))  # zeros, never NaN
    x = torch.zeros(1, 3, S, S, dtype=torch.uint8, device=dev)
    x[:, :, :p, :p] = 255  # one white patch on black
    raw = pia_map(x, image_size=S, patch_size=p, normalize=False, backend=name)
    assert abs(float(raw[0, 0, 0]) - 100.0) < 1e-3  # Delta-E black -> white is L* = 100
    assert abs(float(raw[0, 1, 1])) < 1e-6  # black on black: 0 up to float32 rounding (GPU)


@pytest.mark.parametrize("backend", [p for p in BACKENDS if p.id == "triton"])
def test_uint8_median_by_histogram_equals_kthvalue(backend):
    # the Triton path's background median of uint8 images (odd, even, one and two values),
    # from the Triton histogram: rows of several chunks of several blocks each on a GPU
    from qupaint.pia import _median, _median_uint8
    from qupaint.triton.pia import histogram_u8

    _, dev = backend
    big = 448 * 448 if dev == "cuda" else 70_000  # the interpreter is slow
    g = torch.Generator().manual_seed(3)
    for rows, n in [(6, big), (3, 1), (4, 2), (5, 7), (2, 196), (1, 4097)]:
        x = torch.randint(0, 256, (rows, n), generator=g, dtype=torch.uint8)
        counts = histogram_u8(x.to(dev))
        ref = torch.stack([torch.bincount(r.long(), minlength=256) for r in x]).to(torch.int32)
        assert torch.equal(counts.cpu(), ref), (rows, n)
        assert torch.equal(_median_uint8(counts, n).cpu(), _median(x.float())), (rows, n)
    x = torch.zeros(3, 10, dtype=torch.uint8)
    x[0], x[1, 5:], x[2, 4:] = 7, 255, 255  # constant; a tie between two values; an upper run
    assert _median_uint8(histogram_u8(x.to(dev)), 10).tolist() == [7.0, 127.5, 255.0]


@pytest.mark.parametrize("backend", [p for p in BACKENDS if p.id == "triton"])
@pytest.mark.parametrize("kind", ["uint8", "float32"])
def test_triton_kernel_small(rng, backend, kind):
    # 28x28, patch 14: 4 programs (the interpreter takes seconds per program)
    _, dev = backend
    imgs = rng.integers(0, 256, (1, 3, 28, 28)).astype(np.uint8)
    x = torch.as_tensor(imgs if kind == "uint8" else imgs / np.float32(255.0)).to(dev)
    out = pia_map(x, patch_size=14, image_size=28, backend="triton")
    assert np.abs(out[0].cpu().numpy() - numpy_pia(imgs[0] / 255.0, 14)).max() < 1e-4


def test_scores_module_and_kinds(rng):
    x = torch.as_tensor(rng.integers(0, 256, (2, 3, 224, 224)).astype(np.uint8))
    s = pia_scores(x, patch_size=16, image_size=224)
    assert s.shape == (2, 196)
    m = pia_map(x, patch_size=16, image_size=224)
    assert torch.equal(s, m.reshape(2, -1))  # row-major flattening
    mod = PIA(patch_size=16, image_size=224)
    assert torch.equal(mod(x), s) and len(list(mod.parameters())) == 0
    assert "patch_size=16" in repr(mod)


def test_custom_op_and_compile(rng):
    from torch.library import opcheck

    x = torch.rand(2, 3, 56, 56)
    scale, shift = torch.ones(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    opcheck(torch.ops.qupaint.pia_map.default, (x, 14, scale, shift, True, ""))
    from qupaint.gate import PIAGate

    gate = PIAGate(init_w=1.0)

    def f(pixels, tokens):
        return gate(tokens, pia_scores(pixels, patch_size=14, image_size=56))

    tokens = torch.randn(2, 16, 8)
    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)  # fullgraph: no breaks
    assert torch.allclose(compiled(x, tokens), f(x, tokens))


BAD = [
    (lambda: pia_map(torch.rand(2, 4, 448, 448)), ValueError, r"\[B, 3, H, W\]"),
    (lambda: pia_map(torch.rand(448, 448, 3)), ValueError, "channels last"),
    (lambda: pia_map(torch.rand(1, 3, 448, 448), image_size=450), ValueError, "divisible"),
    (lambda: pia_map(torch.full((1, 3, 448, 448), float("nan"))), ValueError, "NaN"),
    (lambda: pia_map(torch.ones(1, 3, 448, 448, dtype=torch.int32)), TypeError, "dtype"),
    (lambda: pia_map(torch.rand(1, 3, 448, 448), mean=IMAGENET_MEAN), ValueError, "both"),
    (
        lambda: pia_map(torch.rand(1, 3, 448, 448), mean=(0.5,) * 3, std=(0.0,) * 3),
        ValueError,
        "std",
    ),
    (lambda: pia_map(torch.rand(1, 3, 448, 448), patch_size=0), ValueError, "patch_size"),
]


@pytest.mark.parametrize("call,exc,match", BAD, ids=[b[2] for b in BAD])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
