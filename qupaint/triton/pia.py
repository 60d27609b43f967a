"""Triton PIA: exact per-patch medians and the fused Lab / Delta-E / normalisation epilogue.

Kernel 1, one program per (image, patch): loads the p*p values of each channel into a
power-of-two block padded with +inf, sorts it (``tl.sort``), takes the numpy median (mean of
the two middle values for an even count), maps it by ``x * scale + shift``, converts to
CIELAB (the caller passes the RGB -> XYZ matrix and the white, from qupaint.color) and
writes Delta-E to the background Lab (computed on the device by the caller from exact
whole-image medians: of uint8 images from their 256-bin histograms, :func:`histogram_u8`,
a third kernel; of float images by ``kthvalue``). Kernel 2, one program per image: min-max
normalisation of the k*k scores. Memory traffic: the image once, k*k floats written and
re-read once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl


@triton.jit
def _decode(v):
    a = tl.maximum(v, 0.04045) + 0.055
    hi = tl.exp(2.4 * tl.log(a / 1.055))
    return tl.where(v <= 0.04045, v / 12.92, hi)


@triton.jit
def _f(t):
    eps = 216.0 / 24389.0
    c = tl.exp(tl.log(tl.maximum(t, eps)) / 3.0)
    return tl.where(t > eps, c, t * (841.0 / 108.0) + 4.0 / 29.0)


@triton.jit
def _median_of(vals, idx, N: tl.constexpr):
    s = tl.sort(vals)
    hi = tl.sum(tl.where(idx == N // 2, s, 0.0))
    lo = tl.sum(tl.where(idx == (N - 1) // 2, s, 0.0))
    return 0.5 * (lo + hi)


@triton.jit
def _pia_patch_kernel(
    x_ptr,
    out_ptr,
    lab_bg_ptr,
    scale_ptr,
    shift_ptr,
    S,
    k,
    P: tl.constexpr,
    BLOCK: tl.constexpr,
    M0,
    M1,
    M2,
    M3,
    M4,
    M5,
    M6,
    M7,
    M8,
    WX,
    WY,
    WZ,
):
    pid = tl.program_id(0)
    kk = k * k
    b = pid // kk
    pi = (pid % kk) // k
    pj = pid % k
    idx = tl.arange(0, BLOCK)
    mask = idx < P * P
    r = idx // P
    c = idx % P
    base = b * 3 * S * S + (pi * P + r) * S + pj * P + c
    # pad after the float conversion: +inf cannot be represented in a uint8 load
    inf = float("inf")
    v0 = tl.where(mask, tl.load(x_ptr + base, mask=mask, other=0).to(tl.float32), inf)
    v1 = tl.where(mask, tl.load(x_ptr + base + S * S, mask=mask, other=0).to(tl.float32), inf)
    v2 = tl.where(mask, tl.load(x_ptr + base + 2 * S * S, mask=mask, other=0).to(tl.float32), inf)
    m0 = _median_of(v0, idx, P * P) * tl.load(scale_ptr) + tl.load(shift_ptr)
    m1 = _median_of(v1, idx, P * P) * tl.load(scale_ptr + 1) + tl.load(shift_ptr + 1)
    m2 = _median_of(v2, idx, P * P) * tl.load(scale_ptr + 2) + tl.load(shift_ptr + 2)
    r_ = _decode(m0)
    g_ = _decode(m1)
    b_ = _decode(m2)
    fx = _f((M0 * r_ + M1 * g_ + M2 * b_) / WX)
    fy = _f((M3 * r_ + M4 * g_ + M5 * b_) / WY)
    fz = _f((M6 * r_ + M7 * g_ + M8 * b_) / WZ)
    L = 116.0 * fy - 16.0
    A = 500.0 * (fx - fy)
    Bb = 200.0 * (fy - fz)
    dl = L - tl.load(lab_bg_ptr + b * 3)
    da = A - tl.load(lab_bg_ptr + b * 3 + 1)
    db = Bb - tl.load(lab_bg_ptr + b * 3 + 2)
    tl.store(out_ptr + pid, tl.sqrt(dl * dl + da * da + db * db))


@triton.jit
def _normalize_kernel(out_ptr, KK, BLOCK: tl.constexpr):
    b = tl.program_id(0)
    idx = tl.arange(0, BLOCK)
    mask = idx < KK
    v = tl.load(out_ptr + b * KK + idx, mask=mask, other=0.0)
    lo = tl.min(tl.where(mask, v, float("inf")))
    hi = tl.max(tl.where(mask, v, -float("inf")))
    rng = hi - lo
    res = tl.where(rng > 0, (v - lo) / tl.where(rng > 0, rng, 1.0), 0.0)
    tl.store(out_ptr + b * KK + idx, res, mask=mask)


@triton.jit
def _hist_u8_kernel(x_ptr, counts_ptr, n, CHUNK, BLOCK: tl.constexpr):
    # one program per (row, chunk of CHUNK values): a 256-bin histogram of its chunk in
    # registers, added to the row's counts with one atomic per bin (few chunks per row, so
    # little contention; integer adds, so the result does not depend on their order)
    row = tl.program_id(0)
    start = tl.program_id(1) * CHUNK
    stop = tl.minimum(start + CHUNK, n)
    acc = tl.zeros([256], dtype=tl.int32)
    bins = tl.arange(0, 256)
    for off in range(start, stop, BLOCK):
        cols = off + tl.arange(0, BLOCK)
        m = cols < stop
        v = tl.load(x_ptr + row.to(tl.int64) * n + cols, mask=m, other=0).to(tl.int32)
        # masked lanes were loaded as 0: take them back out of bin 0
        acc += tl.histogram(v, 256) - tl.where(bins == 0, BLOCK - tl.sum(m.to(tl.int32)), 0)
    tl.atomic_add(counts_ptr + row * 256 + bins, acc)


def histogram_u8(rows: torch.Tensor) -> torch.Tensor:
    """[R, n] uint8 (CUDA) -> [R, 256] int32 counts of each value per row."""
    rows = rows.contiguous()
    R, n = rows.shape
    counts = torch.zeros((R, 256), dtype=torch.int32, device=rows.device)
    if R and n:
        block = 4096
        chunk = block * max(1, triton.cdiv(n, block * 16))  # at most 16 chunks per row
        _hist_u8_kernel[(R, triton.cdiv(n, chunk))](rows, counts, n, chunk, BLOCK=block)
    return counts


def pia_triton(
    x: torch.Tensor,
    patch_size: int,
    scale: torch.Tensor,
    shift: torch.Tensor,
    lab_bg: torch.Tensor,
    normalize: bool,
    rgb_to_xyz: Sequence[float],
    white: Sequence[float],
) -> torch.Tensor:
    """[B, 3, S, S] (uint8/float32, same device) -> [B, k, k] float32; ``rgb_to_xyz`` is the
    row-major linear RGB -> XYZ matrix and ``white`` the XYZ of the Lab white."""
    x = x.contiguous()
    B, _, S, _ = x.shape
    k = S // patch_size
    out = torch.empty((B, k, k), dtype=torch.float32, device=x.device)
    if B == 0:
        return out
    block = triton.next_power_of_2(patch_size * patch_size)
    _pia_patch_kernel[(B * k * k,)](
        x,
        out,
        lab_bg.contiguous(),
        scale,
        shift,
        S,
        k,
        P=patch_size,
        BLOCK=block,
        **{f"M{i}": float(v) for i, v in enumerate(rgb_to_xyz)},
        **dict(zip(("WX", "WY", "WZ"), (float(v) for v in white), strict=True)),
    )
    if normalize:
        _normalize_kernel[(B,)](out, k * k, BLOCK=triton.next_power_of_2(k * k))
    return out
