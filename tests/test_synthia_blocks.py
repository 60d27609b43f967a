"""Synthia building blocks: flake geometry, terraces, white balance, placement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qupaint.color import srgb_encode
from qupaint.synthia import (
    PlacementGrid,
    random_flake,
    rasterize,
    rasterize_local,
    reference_substrate_color,
    split_terrace,
    substrate_mask,
    tmm_substrate_color,
    white_balance_gain,
)


def test_flakes_have_lattice_angles_and_consistent_geometry(rng):
    n_120 = 0
    for _ in range(40):
        f = random_flake(rng, 30.0)
        v = f.vertices()
        assert len(v) >= 3
        # polygon area (shoelace) matches the rasterised coverage
        alpha, (x0, y0, x1, y1) = rasterize(f, 100.0, 100.0, 200, 200, softness_px=0.5)
        assert abs(alpha.sum() - f.area()) < 0.05 * f.area() + 5
        # every vertex is on the boundary: sdf ~ 0
        sd = f.sdf(v[:, 0][None, :], v[:, 1][None, :])
        assert np.abs(sd).max() < 1e-6
        # interior angles: count 120-degree corners (hexagonal cleavage)
        for i in range(len(v)):
            a, b, c = v[i - 1], v[i], v[(i + 1) % len(v)]
            u, w = a - b, c - b
            ang = math.degrees(
                math.acos(np.clip(u @ w / np.linalg.norm(u) / np.linalg.norm(w), -1, 1))
            )
            n_120 += abs(ang - 120) < 0.5
    assert n_120 > 40  # lattice corners are common, not accidental


def test_terrace_split_partitions_the_flake(rng):
    for _ in range(20):
        f = random_flake(rng, 25.0, cleaves=(0, 0))
        thin, thick = split_terrace(rng, f)
        assert abs(thin.area() + thick.area() - f.area()) < 1e-6 * f.area() + 1e-9
        assert 0.05 * f.area() < thick.area() < 0.7 * f.area()
        ys, xs = np.mgrid[-40:40, -40:40] + 0.5
        both = (thin.sdf(xs, ys) < -1e-9) & (thick.sdf(xs, ys) < -1e-9)
        assert not both.any()  # no pixel strictly inside both


def test_rasterize_clips_to_image():
    f = random_flake(np.random.default_rng(1), 20.0)
    alpha, (x0, y0, x1, y1) = rasterize(f, 2.0, 3.0, 50, 60)
    assert x0 == 0 and y0 == 0 and alpha.shape == (y1 - y0, x1 - x0)
    assert alpha.max() == 1.0 and alpha.min() == 0.0
    with pytest.raises(ValueError):
        random_flake(np.random.default_rng(0), 0.0)


def test_white_balance_recovers_a_known_gain():
    c0 = tmm_substrate_color(285.0, "D65")
    assert np.all(c0 > 0)
    g_true = np.array([1.3, 1.0, 0.7])
    ref = np.tile(srgb_encode(np.clip(c0 * g_true, 0, 1)), (64, 64, 1))
    ref[:8, :8] = [0.9, 0.9, 0.2]  # a flake the mask leaves out
    mask = np.ones(ref.shape[:2], bool)
    mask[:8, :8] = False
    g = white_balance_gain(reference_substrate_color(ref, mask), c0)
    assert np.allclose(g, g_true, atol=1e-9)
    gn = white_balance_gain(reference_substrate_color(ref, mask), c0, normalize=True)
    assert abs(gn.sum() / 3 - 1) < 1e-12 and np.allclose(gn / gn[1], g_true / g_true[1])
    with pytest.raises(ValueError, match="no substrate"):
        reference_substrate_color(ref, np.zeros(ref.shape[:2], bool))
    with pytest.raises(ValueError, match="c0 > 0"):
        white_balance_gain([0.1, 0.1, 0.1], [0.0, 1.0, 1.0])


def test_substrate_mask_excludes_existing_flakes_and_placement_never_overlaps(rng):
    bg = np.zeros((256, 256, 3), np.uint8)
    bg[:] = (120, 90, 160)
    bg[40:90, 150:220] = (40, 200, 60)  # an existing flake in the reference image
    m, a = substrate_mask(bg, patch_size=8, image_size=256)
    assert not m[50:80, 160:210].any() and m.mean() > 0.8
    grid = PlacementGrid(m, margin=2)
    placed = []
    for _ in range(40):
        f = random_flake(rng, rng.uniform(6, 20))
        alpha, _ = rasterize_local(f)  # the whole footprint
        fp = alpha > 0
        pos = grid.try_place(rng, fp)
        if pos is not None:
            placed.append((fp, pos))
    assert len(placed) >= 10
    canvas = np.zeros((256, 256), int)
    for fp, (x0, y0) in placed:
        canvas[y0 : y0 + fp.shape[0], x0 : x0 + fp.shape[1]] += fp
    assert canvas.max() == 1  # never overlap
    assert not (canvas.astype(bool) & ~m).any()  # only on clean substrate
    # a constant background is all substrate
    assert substrate_mask(np.full((64, 64, 3), 100, np.uint8), 8, 64)[0].all()


def test_rasterize_local_is_the_whole_flake():
    f = random_flake(np.random.default_rng(3), 15.0)
    alpha, (ox, oy) = rasterize_local(f, softness_px=0.5)
    full, (x0, y0, _, _) = rasterize(f, 100.0, 100.0, 400, 400, softness_px=0.5)
    assert alpha.shape == full.shape and np.allclose(alpha, full)
    assert (100 - x0, 100 - y0) == (ox, oy)


def test_reference_substrate_color_is_the_median_of_decoded_pixels(rng):
    # the uint8 path counts codes instead of sorting; it must equal numpy's median of the
    # pixels linearised through the same decode table exactly, for odd and even counts,
    # with and without a mask
    from qupaint.color import srgb_decode

    table = np.asarray(srgb_decode(np.arange(256, dtype=np.uint8)), np.float64)
    for n in (1, 2, 3, 10, 11, 257):
        img = rng.integers(0, 256, (n, 3, 3), dtype=np.uint8)
        mask = rng.random((n, 3)) < 0.7
        mask[0, 0] = True
        lin = table[img]
        assert np.array_equal(reference_substrate_color(img), np.median(lin.reshape(-1, 3), 0))
        assert np.array_equal(
            reference_substrate_color(img, mask), np.median(lin[mask].reshape(-1, 3), 0)
        )
