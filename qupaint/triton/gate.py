"""Triton PIA gate: out = tokens * sigmoid(w * alpha + b) per token, fused forward and backward.

Tokens are viewed as [N, D] rows (N = B * k). One program per row: beta is computed once
from alpha, then the row is streamed in BLOCK_D chunks. Forward reads the row and writes
it (2 N D elements). Backward reads grad and tokens and writes grad_tokens (3 N D) while
accumulating sum_d grad * tokens in fp32, then writes per-row grad_alpha and the per-row
partials of grad_w and grad_b (summed by the caller: deterministic, no atomics).

The host side is kept to few torch calls (one buffer for both partials, one sum, no casts
that do nothing): at the sizes of a vision tower's tokens the kernels take tens of
microseconds, so every dispatched op shows in the wall time of a step.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _gate_fwd_kernel(x_ptr, a_ptr, w_ptr, b_ptr, o_ptr, D, BLOCK_D: tl.constexpr):
    row = tl.program_id(0)
    z = tl.load(w_ptr).to(tl.float32) * tl.load(a_ptr + row).to(tl.float32) + tl.load(b_ptr).to(
        tl.float32
    )
    beta = 1.0 / (1.0 + tl.exp(-z))
    for start in range(0, D, BLOCK_D):
        cols = start + tl.arange(0, BLOCK_D)
        m = cols < D
        x = tl.load(x_ptr + row * D + cols, mask=m, other=0.0).to(tl.float32)
        tl.store(o_ptr + row * D + cols, (x * beta).to(o_ptr.dtype.element_ty), mask=m)


@triton.jit
def _gate_bwd_kernel(
    g_ptr, x_ptr, a_ptr, w_ptr, b_ptr, gx_ptr, ga_ptr, p_ptr, N, D, BLOCK_D: tl.constexpr
):
    row = tl.program_id(0)
    w = tl.load(w_ptr).to(tl.float32)
    alpha = tl.load(a_ptr + row).to(tl.float32)
    z = w * alpha + tl.load(b_ptr).to(tl.float32)
    beta = 1.0 / (1.0 + tl.exp(-z))
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for start in range(0, D, BLOCK_D):
        cols = start + tl.arange(0, BLOCK_D)
        m = cols < D
        g = tl.load(g_ptr + row * D + cols, mask=m, other=0.0).to(tl.float32)
        x = tl.load(x_ptr + row * D + cols, mask=m, other=0.0).to(tl.float32)
        tl.store(gx_ptr + row * D + cols, (g * beta).to(gx_ptr.dtype.element_ty), mask=m)
        acc += g * x
    dz = tl.sum(acc) * beta * (1.0 - beta)
    tl.store(ga_ptr + row, (dz * w).to(ga_ptr.dtype.element_ty))
    tl.store(p_ptr + row, dz * alpha)  # row's part of grad_w
    tl.store(p_ptr + N + row, dz)  # and of grad_b


def _block(D: int) -> int:
    return min(1024, triton.next_power_of_2(D))  # one or a few chunks per row


def gate_forward(tokens: torch.Tensor, alpha: torch.Tensor, w: torch.Tensor, b: torch.Tensor):
    x = tokens.contiguous()
    D = x.shape[-1]
    N = x.numel() // max(D, 1)
    out = torch.empty_like(x)
    if N:
        _gate_fwd_kernel[(N,)](x, alpha.contiguous(), w, b, out, D, BLOCK_D=_block(D))
    return out


def gate_backward(grad, tokens, alpha, w, b):
    g, x = grad.contiguous(), tokens.contiguous()
    D = x.shape[-1]
    N = x.numel() // max(D, 1)
    gx = torch.empty_like(x)
    ga = torch.empty(alpha.shape, dtype=alpha.dtype, device=x.device)
    parts = torch.empty((2, N), dtype=torch.float32, device=x.device)
    if N:
        _gate_bwd_kernel[(N,)](
            g, x, alpha.contiguous(), w, b, gx, ga, parts, N, D, BLOCK_D=_block(D)
        )
        gw, gb = parts.sum(1).unbind()
    else:
        gw = gb = parts.new_zeros(())
    if w.dtype != torch.float32 or b.dtype != torch.float32:
        gw, gb = gw.to(w.dtype), gb.to(b.dtype)
    return gx, ga, gw, gb
