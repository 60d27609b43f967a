"""Each named rule of the detector (qupaint.detect.rules) on a planted piece: one case it
rejects and one it keeps, so that a rule that stops working fails here by name."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from qupaint.detect import DetectorConfig
from qupaint.detect.kernels import CAND, STRONG
from qupaint.detect.pieces import Piece, faint_floor
from qupaint.detect.rules import (
    PIECE_RULES,
    REJECT_RULES,
    RULES,
    Flake,
    RuleContext,
    bright,
    faint,
    fibre,
    first_rule,
    halo,
    off_ladder,
    rim,
    shading,
    shadow,
    sliver,
    thick,
    too_small,
)

NOISE = np.full(3, 0.01)


def _ctx(C, *, bright_px=None, min_px=20.0, um_per_px=None, cfg=None) -> RuleContext:
    """The rules' view of a contrast map ``C`` [H, W, 3] with substrate noise 0.01: candidates
    by chi-square, strong pixels by the faint floor, ``bright_px`` the bright pixels."""
    cfg = cfg or DetectorConfig()
    C = np.asarray(C, np.float32)
    H, W = C.shape[:2]
    bright_px = np.zeros((H, W), bool) if bright_px is None else bright_px
    cand = (((C / NOISE) ** 2).sum(-1) > cfg.fg_chi2) & ~bright_px
    strong = np.abs(C).mean(-1) >= faint_floor(cfg, NOISE)
    flags = (cand * CAND | strong * STRONG).astype(np.uint8)
    return RuleContext(cfg, min_px, cand, flags, bright_px, 0.2, NOISE, (H, W), C, um_per_px,
                       cand)  # fmt: skip


def _piece(C, mask) -> Piece:
    """The piece of the image-size ``mask`` with its median contrast of ``C``."""
    ys, xs = np.nonzero(mask)
    sl = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    return Piece.of(sl, mask[sl], np.median(np.asarray(C)[sl][mask[sl]], axis=0))


def _planted(H=80, W=80, box=(30, 50, 30, 50), c=(-0.2, -0.25, -0.1), blur=0.0):
    """A contrast map with one flat piece of contrast ``c`` in ``box`` (y0, y1, x0, x1),
    its edge blurred by ``blur`` px (Gaussian sigma); (C, mask)."""
    mask = np.zeros((H, W), bool)
    y0, y1, x0, x1 = box
    mask[y0:y1, x0:x1] = True
    step = ndimage.gaussian_filter(mask.astype(float), blur) if blur else mask.astype(float)
    C = step[..., None] * np.asarray(c, float)[None, None]
    return C.astype(np.float32), mask


def _flake(C, mask, ctx, layers=2, chi2=1.0) -> Flake:
    return Flake(_piece(C, mask), layers, chi2, 0.9, 0.9, ctx)


def test_the_registry_names_every_rule_once_in_stage_order():
    assert len(set(REJECT_RULES)) == len(REJECT_RULES) == 11
    stages = [r.stage for r in RULES]
    assert stages == sorted(stages, key=("piece", "flake").index)  # pieces first
    assert [r.name for r in RULES if r.reports] == ["thick"]
    assert [r.name for r in RULES if r.casts_penumbra] == ["shadow"]
    assert all(r.name == r.test.__name__ for r in RULES)


def test_too_small():
    C, mask = _planted(box=(30, 35, 30, 35))  # 25 px
    ctx = _ctx(C, min_px=100.0)
    assert too_small(_piece(C, mask), ctx)
    C, mask = _planted(box=(30, 42, 30, 42))  # 144 px
    assert not too_small(_piece(C, mask), ctx)


def test_faint():
    C, mask = _planted(c=(-0.03, -0.02, -0.03))  # under the 0.05 floor
    assert faint(_piece(C, mask), _ctx(C))
    C, mask = _planted()
    assert not faint(_piece(C, mask), _ctx(C))
    # every pixel strong (mean |C| 0.053), but a third dark in each channel: the median
    # colour is the substrate's, which no flake is
    for k, rows in enumerate(((30, 37), (37, 44), (44, 50))):
        C[rows[0] : rows[1], 30:50] = 0.0
        C[rows[0] : rows[1], 30:50, k] = -0.16
    assert faint(_piece(C, mask), _ctx(C))


def test_shading_is_faint_colourless_and_at_the_border():
    grey = (-0.08, -0.08, -0.08)
    C, mask = _planted(box=(0, 20, 30, 50), c=grey)  # at the top border
    assert shading(_piece(C, mask), _ctx(C))
    C, mask = _planted(box=(30, 50, 30, 50), c=grey)  # the same inside the image
    assert not shading(_piece(C, mask), _ctx(C))
    C, mask = _planted(box=(0, 20, 30, 50), c=(-0.2, -0.02, 0.0))  # coloured: a flake
    assert not shading(_piece(C, mask), _ctx(C))


def test_fibre_is_thin_or_long():
    C, mask = _planted(box=(30, 32, 30, 40))  # 2 px wide (and only 5 widths long)
    assert fibre(_piece(C, mask), _ctx(C))
    C, mask = _planted(H=120, W=120, box=(30, 34, 10, 110))  # 4 px wide, 25 widths long
    assert fibre(_piece(C, mask), _ctx(C))
    C, mask = _planted()
    assert not fibre(_piece(C, mask), _ctx(C))


def test_halo_reads_the_share_and_writes_nothing():
    C, mask = _planted(box=(30, 36, 30, 50))
    near = np.zeros(mask.shape, bool)
    near[36:60, 25:55] = True  # a bright crystal right below it: 4 of its 6 rows within 4 px
    p = _piece(C, mask)
    ctx = _ctx(C, bright_px=near)
    assert halo(p, ctx) and p.halo == 0.0  # the rule wrote nothing on the piece
    assert ctx.halo_share(p) == pytest.approx(4 / 6)
    far = np.zeros(mask.shape, bool)
    far[70:, :] = True
    assert not halo(_piece(C, mask), _ctx(C, bright_px=far))


def test_bright():
    C, mask = _planted(c=(0.3, 0.35, 0.3))  # brighter than the thin ladder (0.2 here)
    assert bright(_piece(C, mask), _ctx(C))
    C, mask = _planted()
    assert not bright(_piece(C, mask), _ctx(C))


def test_off_ladder():
    C, mask = _planted()
    ctx = _ctx(C)
    assert off_ladder(_flake(C, mask, ctx, chi2=26.0), ctx)
    assert not off_ladder(_flake(C, mask, ctx, chi2=24.0), ctx)


def test_sliver_is_a_narrow_bent_flake():
    yy, xx = np.mgrid[:80, :80]
    r = np.hypot(yy - 40, xx - 40)
    arc = (r > 30) & (r < 33) & (yy < 45)  # a bent thread 3 px wide
    C = arc[..., None] * np.float32([-0.2, -0.2, -0.1])
    ctx = _ctx(C)
    assert sliver(_flake(C, arc, ctx), ctx)
    C, mask = _planted()
    ctx = _ctx(C)
    assert not sliver(_flake(C, mask, ctx), ctx)
    C, mask = _planted(box=(30, 33, 10, 60))  # narrow but straight: it fills its hull
    ctx = _ctx(C)
    assert not sliver(_flake(C, mask, ctx), ctx)


def test_shadow_is_dark_and_out_of_focus():
    dark = (-0.9, -0.9, -0.85)
    big = {"H": 120, "W": 120, "box": (30, 90, 30, 90)}
    C, mask = _planted(c=dark, blur=6.0, **big)  # 6 px = 2.3 um of edge blur at 0.385 um/px
    ctx = _ctx(C, um_per_px=0.385)
    assert shadow(_flake(C, mask, ctx, layers=9), ctx)
    C, mask = _planted(c=dark, blur=0.7, **big)  # in focus: a dark flake
    ctx = _ctx(C, um_per_px=0.385)
    assert not shadow(_flake(C, mask, ctx, layers=9), ctx)
    C, mask = _planted(blur=6.0, **big)  # blurred but not dark
    ctx = _ctx(C, um_per_px=0.385)
    assert not shadow(_flake(C, mask, ctx), ctx)


def test_rim_is_ringed_by_bulk_crystal():
    C, mask = _planted(box=(30, 40, 30, 40))
    ctx = _ctx(C)
    assert not rim(_flake(C, mask, ctx), ctx)  # ringed by substrate
    crystal = np.zeros(mask.shape, bool)
    crystal[25:45, 40:60] = True  # along its right side ...
    C2 = C.copy()
    C2[25:45, 20:30] = -0.9  # ... and a black body along its left: half its ring is bulk
    ctx = _ctx(C2, bright_px=crystal)
    assert rim(_flake(C2, mask, ctx), ctx)


def test_thick_is_kept_and_reported():
    C, mask = _planted()
    ctx = _ctx(C)
    assert thick(_flake(C, mask, ctx, layers=9), ctx)
    assert not thick(_flake(C, mask, ctx, layers=5), ctx)
    rule = first_rule(_flake(C, mask, ctx, layers=9), ctx, "flake")
    assert rule.name == "thick" and rule.reports


def test_first_rule_takes_the_cheap_rules_first():
    C, mask = _planted(box=(30, 35, 30, 35), c=(-0.03, -0.02, -0.03))  # small and faint
    ctx = _ctx(C, min_px=100.0)
    assert first_rule(_piece(C, mask), ctx, "piece").name == "too_small"
    C, mask = _planted()
    assert first_rule(_piece(C, mask), _ctx(C), "piece") is None
    assert [r.name for r in PIECE_RULES][0] == "too_small"
