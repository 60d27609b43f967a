"""Synthia's final step (blur + sensor noise + clip + sRGB encode) and its PNG writer.

The numpy reference is checked against independent formulas (a direct 2-D convolution,
numpy's sRGB encoding, scipy's normal distribution), and every backend against the
reference.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import backend_params
from PIL import Image
from scipy import ndimage, stats

from qupaint.color import srgb_encode
from qupaint.synthia.finish import blur, finish_image, noise, noise_keys
from qupaint.synthia.png import encode_png

BACKENDS = backend_params("synthia_finish", device_types=("cpu",))


def test_blur_reference_is_a_gaussian_convolution(rng):
    img = rng.uniform(0, 1, (37, 29, 3)).astype(np.float32)
    for sigma in (0.6, 1.7):
        r = int(np.ceil(3 * sigma))
        k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
        k /= k.sum()
        want = ndimage.convolve1d(img.astype(np.float64), k, axis=0, mode="nearest")
        want = ndimage.convolve1d(want, k, axis=1, mode="nearest")
        assert np.abs(blur(img, sigma) - want).max() < 1e-6
    assert blur(img, 0.0) is img


def test_noise_is_standard_normal_and_keyed():
    z = noise(400_001, noise_keys(3, 11))
    assert z.dtype == np.float32 and z.shape == (400_001,)
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1) < 0.01
    assert stats.kstest(z, "norm").pvalue > 1e-3
    # neighbours (the two halves of a Box-Muller pair, and across pairs) are uncorrelated
    assert abs(np.corrcoef(z[:-1:2], z[1::2])[0, 1]) < 0.01
    assert abs(np.corrcoef(z[:-2], z[2:])[0, 1]) < 0.01
    assert np.array_equal(z[:1000], noise(1000, noise_keys(3, 11)))  # a prefix of the stream
    other = noise(1000, noise_keys(3, 12))
    assert abs(np.corrcoef(z[:1000], other)[0, 1]) < 0.1  # another image, other noise


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(64, 48, 3), (33, 17, 3), (5, 7, 1), (1, 1, 3)])
def test_backend_matches_reference(rng, backend, shape):
    name, _ = backend
    img = rng.uniform(-0.05, 1.05, shape).astype(np.float32)  # some values clip
    for sigma, std in [(0.6, 0.008), (0.0, 0.0), (1.3, 0.0), (0.0, 0.05)]:
        ref = finish_image(img, sigma, std, seed=5, index=9, backend="reference")
        out = finish_image(img, sigma, std, seed=5, index=9, backend=name)
        assert out.dtype == np.uint8 and out.shape == shape
        d = np.abs(out.astype(int) - ref.astype(int))
        # float rounding may move a value across a 16-bit quantisation step: 1 of 255, rarely
        assert d.max() <= 1 and (d > 0).mean() < 1e-3, (sigma, std)


def test_reference_encodes_like_srgb_and_clips(rng):
    img = rng.uniform(-0.5, 1.5, (16, 16, 3)).astype(np.float32)
    out = finish_image(img, 0.0, 0.0, 0, 0, backend="reference").astype(int)
    want = np.round(np.asarray(srgb_encode(np.clip(img.astype(np.float64), 0, 1))) * 255)
    assert np.abs(out - want).max() <= 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_finite_values_and_determinism(backend):
    name, _ = backend
    img = np.full((8, 8, 3), 0.5, np.float32)
    img[0, 0] = [np.nan, np.inf, -np.inf]
    out = finish_image(img, 0.0, 0.01, 1, 2, backend=name)
    assert out[0, 0].tolist() == [0, 255, 0]  # NaN -> black, documented
    assert np.array_equal(out, finish_image(img, 0.0, 0.01, 1, 2, backend=name))
    assert not np.array_equal(out, finish_image(img, 0.0, 0.01, 1, 3, backend=name))


def test_finish_errors():
    img = np.zeros((4, 4, 3), np.float32)
    with pytest.raises(ValueError, match="shape"):
        finish_image(img[0], 0.6, 0.0, 0, 0)
    with pytest.raises(TypeError, match="float"):
        finish_image(img.astype(np.uint8), 0.6, 0.0, 0, 0)
    with pytest.raises(ValueError, match="blur_sigma"):
        finish_image(img, -1.0, 0.0, 0, 0)
    with pytest.raises(ValueError, match="noise_std"):
        finish_image(img, 0.0, float("nan"), 0, 0)


@pytest.mark.parametrize("shape", [(512, 512, 3), (31, 17, 3), (1, 1, 3), (20, 9)])
def test_png_round_trips_through_pillow(rng, shape):
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    img[: shape[0] // 2] = 200  # a flat part (compressible) and a noisy part
    data = encode_png(img)
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        assert im.format == "PNG" and im.mode == ("RGB" if len(shape) == 3 else "L")
        assert np.array_equal(np.asarray(im), img)


def test_png_errors():
    with pytest.raises(TypeError, match="uint8"):
        encode_png(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        encode_png(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="non-empty"):
        encode_png(np.zeros((0, 4, 3), np.uint8))


def test_png_zlib_fallback(monkeypatch, rng):
    import zlib

    import qupaint.synthia.png as png

    monkeypatch.setattr(png, "_deflate_mod", zlib)
    img = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    with Image.open(io.BytesIO(png.encode_png(img, level=6))) as im:
        assert np.array_equal(np.asarray(im), img)
