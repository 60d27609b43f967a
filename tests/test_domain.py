"""The domain-gap measure (qupaint.recipes.domain): its AUC against scipy's, and the
classifier on sets it must tell apart and on sets it must not."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from qupaint.recipes.domain import DomainGapRecipe, domain_gap, roc_auc
from qupaint.synthia import Synthia, SynthiaConfig

SMALL = dict(window=32, windows_per_image=16, synthetic_images=24, steps=60, batch=32,
             test_share=0.34, threads=1)  # fmt: skip
CFG = SynthiaConfig(height=96, width=96, radius_px=(6.0, 30.0), seed=3)


def test_roc_auc_is_the_mann_whitney_statistic(rng):
    from scipy.stats import mannwhitneyu

    pos, neg = rng.normal(0.5, 1, 40), rng.normal(0, 1, 30)
    u = mannwhitneyu(pos, neg).statistic
    assert roc_auc(pos, neg) == pytest.approx(u / (40 * 30))
    with pytest.raises(ValueError, match="at least one"):
        roc_auc([], [1.0])


def _write(folder, images):
    folder.mkdir()
    for k, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{k}.png")
    return folder


def test_the_same_renders_cannot_be_told_apart(tmp_path):
    # "real" here is more Synthia of the same kind (other seeds): the classifier must fail
    other = Synthia(SynthiaConfig(height=96, width=96, radius_px=(6.0, 30.0), seed=11))
    real = _write(tmp_path / "real", [other.sample(k).image for k in range(24)])
    r = domain_gap(CFG, [real], **SMALL)  # seeds 0-4 measured 0.45-0.56
    assert 0.35 <= r["auc"] <= 0.65, r
    assert r["windows"]["test_real"] == 16 * len(r["real_images_held_out"])


def test_grainy_images_are_told_apart(tmp_path, rng):
    # the same renders with coarse sensor grain: the classifier must see it
    base = Synthia(SynthiaConfig(height=96, width=96, radius_px=(6.0, 30.0), seed=11))
    grainy = []
    for k in range(24):
        img = base.sample(k).image.astype(float)
        img += rng.normal(0, 12, img.shape[:2])[..., None]
        grainy.append(np.clip(img, 0, 255).astype(np.uint8))
    r = domain_gap(CFG, [_write(tmp_path / "real", grainy)], **SMALL)
    assert r["auc"] >= 0.9, r


def test_bad_recipes_and_inputs_are_named(tmp_path):
    with pytest.raises(ValueError, match="test_share"):
        DomainGapRecipe(test_share=1.0)
    with pytest.raises(ValueError, match="window"):
        DomainGapRecipe(window=8)
    with pytest.raises(ValueError, match="at least 2 real images"):
        domain_gap(CFG, [tmp_path], **SMALL)


def test_substrate_only_windows_hold_no_flake(rng, tmp_path):
    from qupaint.recipes.domain import SUBSTRATE_C, _windows

    img = np.full((128, 128, 3), (120, 100, 150), np.uint8)
    img[40:90, 40:90] = (100, 80, 140)  # a flake: -0.07 to -0.2 in contrast
    w = _windows(img, 20, 32, rng, substrate_only=True)
    assert 0 < len(w) <= 20 and (np.abs(w) <= SUBSTRATE_C).all()
    assert (np.abs(_windows(img, 200, 32, rng)) > SUBSTRATE_C).any()  # without: some hold it
    grainy = [np.clip(img + rng.normal(0, 40, img.shape), 0, 255).astype(np.uint8)] * 4
    with pytest.raises(ValueError, match="bare substrate"):
        domain_gap(CFG, [_write(tmp_path / "g", grainy)], substrate_only=True, **SMALL)
