"""PIA token gate (QuPAINT Eq. 5-6): ``tokens * sigmoid(w * alpha + b)[..., None]``.

``pia_gate`` is a ``torch.autograd.Function`` (:class:`PIAGateFunction`) whose forward and
backward are each one fused op, registered with ``torch.library`` (``qupaint::pia_gate_fwd``,
``qupaint::pia_gate_bwd``) so ``torch.compile`` traces through them. GPU: Triton kernels
(:mod:`qupaint.triton.gate`). CPU: torch ops in fp32. The output has the tokens' dtype
(fp32/fp16/bf16); beta and every reduction are computed in fp32.
"""

from __future__ import annotations

import torch

from qupaint import _backend

__all__ = ["pia_gate", "PIAGate", "PIAGateFunction"]


# ---- implementations ------------------------------------------------------------------


def _acc(t: torch.Tensor) -> torch.dtype:
    # fp32 accumulation for fp16/bf16/fp32, fp64 stays fp64 (gradcheck)
    return torch.promote_types(t.dtype, torch.float32)


@_backend.register("pia_gate", "reference")
def _fwd_torch(tokens, alpha, w, b):
    c = _acc(tokens)
    beta = torch.sigmoid(w.to(c) * alpha.to(c) + b.to(c))
    return (tokens.to(c) * beta.unsqueeze(-1)).to(tokens.dtype)


@_backend.register("pia_gate_bwd", "reference")
def _bwd_torch(grad, tokens, alpha, w, b):
    c = _acc(tokens)
    beta = torch.sigmoid(w.to(c) * alpha.to(c) + b.to(c))
    gf = grad.to(c)
    grad_tokens = (gf * beta.unsqueeze(-1)).to(tokens.dtype)
    dz = (gf * tokens.to(c)).sum(-1) * beta * (1 - beta)
    return (
        grad_tokens,
        (dz * w.to(c)).to(alpha.dtype),
        (dz * alpha.to(c)).sum().to(w.dtype),
        dz.sum().to(b.dtype),
    )


@_backend.register("pia_gate", "triton")
def _fwd_triton(tokens, alpha, w, b):
    from qupaint.triton.gate import gate_forward

    return gate_forward(tokens, alpha, w, b)


@_backend.register("pia_gate_bwd", "triton")
def _bwd_triton(grad, tokens, alpha, w, b):
    from qupaint.triton.gate import gate_backward

    return gate_backward(grad, tokens, alpha, w, b)


def _forward(tokens, alpha, w, b, backend: str = "") -> torch.Tensor:
    _, fn = _backend.select("pia_gate", tokens.device.type, backend or None)
    return fn(tokens, alpha, w, b)


def _backward(grad, tokens, alpha, w, b, backend: str = ""):
    # same device and backend argument as the forward, so the same implementation
    _, fn = _backend.select("pia_gate_bwd", tokens.device.type, backend or None)
    return fn(grad, tokens, alpha, w, b)


@torch.library.custom_op("qupaint::pia_gate_fwd", mutates_args=())
def pia_gate_fwd(
    tokens: torch.Tensor, alpha: torch.Tensor, w: torch.Tensor, b: torch.Tensor, backend: str = ""
) -> torch.Tensor:
    return _forward(tokens, alpha, w, b, backend)


@pia_gate_fwd.register_fake
def _(tokens, alpha, w, b, backend=""):
    return torch.empty_like(tokens)


@torch.library.custom_op("qupaint::pia_gate_bwd", mutates_args=())
def pia_gate_bwd(
    grad: torch.Tensor,
    tokens: torch.Tensor,
    alpha: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor,
    backend: str = "",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _backward(grad, tokens, alpha, w, b, backend)


@pia_gate_bwd.register_fake
def _(grad, tokens, alpha, w, b, backend=""):
    return (
        torch.empty_like(tokens),
        torch.empty_like(alpha),
        torch.empty_like(w),
        torch.empty_like(b),
    )


class PIAGateFunction(torch.autograd.Function):
    """One fused forward, one fused backward (gradients for tokens, alpha, w and b).

    Under ``torch.compile`` both go through the registered ops (``qupaint::pia_gate_fwd``,
    ``qupaint::pia_gate_bwd``), which it can trace; in eager mode they call the kernels
    directly, since the op dispatcher costs more host time than the kernels themselves take
    on a GPU (measured on an H200: 0.73 ms a call for 26 us of kernels)."""

    @staticmethod
    def forward(ctx, tokens, alpha, w, b, backend: str = ""):
        ctx.save_for_backward(tokens, alpha, w, b)
        ctx.backend = backend
        if torch.compiler.is_compiling():
            return torch.ops.qupaint.pia_gate_fwd(tokens, alpha, w, b, backend)
        return _forward(tokens, alpha, w, b, backend)

    @staticmethod
    def backward(ctx, grad):
        tokens, alpha, w, b = ctx.saved_tensors
        op = torch.ops.qupaint.pia_gate_bwd if torch.compiler.is_compiling() else _backward
        gt, ga, gw, gb = op(grad, tokens, alpha, w, b, ctx.backend)
        return gt, ga, gw, gb, None


def _check(tokens, alpha, w, b):
    if not isinstance(tokens, torch.Tensor) or not tokens.is_floating_point():
        raise TypeError("tokens must be a floating-point torch.Tensor (fp32, fp16 or bf16)")
    if tokens.dim() not in (2, 3):
        raise ValueError(f"tokens must be [k, d] or [B, k, d]; got shape {tuple(tokens.shape)}")
    alpha = torch.as_tensor(alpha, device=tokens.device)
    if tuple(alpha.shape) != tuple(tokens.shape[:-1]):
        raise ValueError(
            f"alpha must have shape {tuple(tokens.shape[:-1])} (one score per token); "
            f"got {tuple(alpha.shape)}"
        )
    if not alpha.is_floating_point():
        alpha = alpha.float()
    ws = []
    for name, v in (("w", w), ("b", b)):
        t = (
            torch.as_tensor(v, dtype=torch.float32, device=tokens.device)
            if not isinstance(v, torch.Tensor)
            else v
        )
        if t.numel() != 1:
            raise ValueError(f"{name} must be a scalar; got shape {tuple(t.shape)}")
        if t.device != tokens.device:
            raise ValueError(f"{name} is on {t.device} but tokens are on {tokens.device}")
        ws.append(t.reshape(()))
    return alpha, ws[0], ws[1]


def pia_gate(tokens: torch.Tensor, alpha, w, b, backend: str | None = None) -> torch.Tensor:
    """Scale each patch token by sigmoid(w * alpha + b) (QuPAINT Eq. 5-6).

    Parameters
    ----------
    tokens : [B, k, d] or [k, d], fp32/fp16/bf16.
    alpha : [B, k] or [k] PIA scores (``pia_scores``).
    w, b : scalars (0-d tensors to learn them, or floats).
    backend : "reference" (torch ops) | "triton"; default: triton on GPU, torch on CPU.

    Returns
    -------
    Tensor like ``tokens``; differentiable in tokens, alpha, w and b.
    """
    alpha, w, b = _check(tokens, alpha, w, b)
    return PIAGateFunction.apply(tokens, alpha, w, b, backend or "")


class PIAGate(torch.nn.Module):
    """The learnable affine correction of PIA scores: exactly two scalar parameters w and b.

    Initialisation ``w = 0, b = 0`` (default): at step 0 every token is scaled by the same
    sigmoid(0) = 0.5. In the InternVL/QuPAINT layout the gated patch tokens go (after pixel
    shuffle, which only concatenates tokens) into the projector's LayerNorm, and LayerNorm
    removes a common scale exactly (up to its epsilon), so the pretrained model's outputs
    are unchanged at step 0. Meanwhile sigmoid has its steepest slope (1/4) at 0, so w gets
    the largest gradient and starts learning how much the physics prior should matter. For
    a model without a normalisation after the gate, pass ``init_b=4.0`` (scale 0.982).
    ``enabled=False`` is the paper's no-PIA ablation (identity).
    """

    def __init__(
        self,
        init_w: float = 0.0,
        init_b: float = 0.0,
        enabled: bool = True,
        backend: str | None = None,
    ):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(float(init_w)))
        self.b = torch.nn.Parameter(torch.tensor(float(init_b)))
        self.enabled = enabled
        self.backend = backend

    def forward(self, tokens: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return tokens
        return pia_gate(tokens, alpha, self.w, self.b, self.backend)

    def extra_repr(self) -> str:
        return f"enabled={self.enabled}"
