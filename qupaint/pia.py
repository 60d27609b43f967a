"""Physics-Informed Attention (PIA): patch-median CIELAB contrast (QuPAINT Sec. 5.2, Alg. 2).

For each image: resize to ``image_size`` (bilinear, ``align_corners=False``, no antialias)
when needed; background = per-channel median of the whole image; every ``patch_size`` patch
= per-channel median; both sRGB -> CIELAB (D65); score = Delta-E (L2) to the background
(QuPAINT Eq. 10-11); min-max normalised per image (a constant image gives zeros, never NaN).
"Median" is numpy's (mean of the two middle values for an even count).

Drop-in for training loops: takes ``(3, H, W)`` or ``(B, 3, H, W)``, uint8 or float in [0, 1],
or a Hugging Face processor's normalised ``pixel_values`` with ``mean``/``std`` (the
normalisation is undone on the medians, which commute with it); CPU or GPU, never copies a
GPU batch to the host; :class:`PIA` wraps it as an ``nn.Module``, and the op is registered
with ``torch.library`` (``qupaint::pia_map``) so ``torch.compile`` does not break graphs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from qupaint import _backend
from qupaint._arrays import as_tensor, check_finite, common_device, pointer, to_output
from qupaint.color import SRGB_TO_XYZ, kernel_color_space, srgb_to_lab, white_xyz

__all__ = ["pia_map", "pia_scores", "PIA", "pia_reference"]


def _median(x: torch.Tensor) -> torch.Tensor:
    """numpy median over the last dimension (exact; kthvalue is O(n))."""
    n = x.shape[-1]
    hi = torch.kthvalue(x, n // 2 + 1, dim=-1).values
    if n % 2:
        return hi
    return 0.5 * (torch.kthvalue(x, n // 2, dim=-1).values + hi)


#: PIA's colour space (QuPAINT Eq. 10): sRGB-encoded pixels, CIELAB relative to D65
WHITE = "D65"


def _lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded [..., 3] -> CIELAB (D65), float64, by the colour reference."""
    return srgb_to_lab(rgb.to(torch.float64), white=WHITE, backend="reference", check=False)


def pia_reference(
    x: torch.Tensor, patch_size: int, scale: torch.Tensor, shift: torch.Tensor, normalize: bool
) -> torch.Tensor:
    """Plain torch PIA on an already resized [B, 3, S, S] batch (the truth for the kernels).

    Medians are taken on the raw values and mapped by ``x * scale + shift`` per channel.
    """
    B, _, S, _ = x.shape
    k = S // patch_size
    xf = x.to(torch.float64)
    bg = _median(xf.reshape(B, 3, -1))  # [B, 3]
    patches = xf.reshape(B, 3, k, patch_size, k, patch_size).permute(0, 2, 4, 1, 3, 5)
    med = _median(patches.reshape(B, k, k, 3, -1))  # [B, k, k, 3]
    sc = scale.to(torch.float64).to(x.device)
    sh = shift.to(torch.float64).to(x.device)
    lab = _lab(med * sc + sh)
    lab_bg = _lab(bg * sc + sh)[:, None, None, :]
    de = torch.linalg.vector_norm(lab - lab_bg, dim=-1)
    if normalize:
        flat = de.reshape(B, -1)
        lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
        rng = hi - lo
        flat = torch.where(rng > 0, (flat - lo) / torch.where(rng > 0, rng, 1.0), 0.0)
        de = flat.reshape(B, k, k)
    return de.to(torch.float32)


_backend.register("pia", "reference")(pia_reference)


@_backend.register("pia", "cpu")
def _pia_cpu(x, patch_size, scale, shift, normalize):
    from qupaint import _C

    if x.dtype not in (torch.uint8, torch.float32):
        x = x.to(torch.float32)
    x = x.contiguous()
    B, _, S, _ = x.shape
    k = S // patch_size
    out = torch.empty((B, k, k), dtype=torch.float32)
    _C.pia_cpu(
        pointer(x),
        x.dtype == torch.uint8,
        B,
        S,
        patch_size,
        scale.tolist(),
        shift.tolist(),
        bool(normalize),
        kernel_color_space(WHITE),
        pointer(out),
    )
    return out


def _median_uint8(counts: torch.Tensor, n: int) -> torch.Tensor:
    """:func:`_median` of uint8 rows of ``n`` values, as float32, from their 256-bin histograms
    ``counts`` [R, 256] (:func:`qupaint.triton.pia.histogram_u8`).

    Exact (the same order statistics), and on a GPU far faster than sorting: 64 images of
    448 x 448 took 3.8 ms by ``kthvalue`` on an H200, most of the whole PIA.
    """
    cum = counts.cumsum(1)
    R = cum.shape[0]
    ranks = torch.tensor([n // 2 + 1, max(n // 2, 1)], device=cum.device, dtype=cum.dtype)
    # the k-th smallest value is the first bin whose cumulative count reaches k
    hi, lo = torch.searchsorted(cum, ranks.expand(R, 2).contiguous()).to(torch.float32).unbind(1)
    return hi if n % 2 else 0.5 * (lo + hi)


@_backend.register("pia", "triton")
def _pia_triton(x, patch_size, scale, shift, normalize):
    from qupaint.triton.pia import histogram_u8, pia_triton

    rows = x.reshape(x.shape[0] * 3, -1)
    if x.dtype == torch.uint8:
        bg = _median_uint8(histogram_u8(rows), rows.shape[1])
    else:
        bg = _median(rows.to(torch.float32))
    bg = bg.reshape(x.shape[0], 3)  # device-side, exact
    lab_bg = _lab(
        bg.to(torch.float64) * scale.to(x.device, torch.float64) + shift.to(x.device, torch.float64)
    ).to(torch.float32)
    return pia_triton(
        x,
        patch_size,
        scale.to(x.device, torch.float32),
        shift.to(x.device, torch.float32),
        lab_bg,
        normalize,
        rgb_to_xyz=SRGB_TO_XYZ.reshape(-1).tolist(),
        white=white_xyz(WHITE),
    )


def _prepare(images: Any, patch_size: int, image_size: int, mean, std):
    """Validate, resize; return (tensor [B, 3, S, S], scale [3], shift [3], batched, torch_out)."""
    if not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size must be a positive int; got {patch_size!r}")
    if not isinstance(image_size, int) or image_size < patch_size:
        raise ValueError(f"image_size must be an int >= patch_size; got {image_size!r}")
    if image_size % patch_size:
        raise ValueError(
            f"image_size ({image_size}) must be divisible by patch_size ({patch_size}); "
            f"e.g. image_size={image_size // patch_size * patch_size}"
        )
    device = common_device(images)
    x = as_tensor(images, device)
    batched = x.dim() == 4
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] != 3:
        hint = (
            " (channels last? use images.permute(0, 3, 1, 2) or .transpose(2, 0, 1))"
            if x.dim() in (3, 4) and x.shape[-1] == 3
            else ""
        )
        raise ValueError(
            f"images must be [3, H, W] or [B, 3, H, W]; got shape "
            f"{tuple(images.shape) if hasattr(images, 'shape') else '?'}{hint}"
        )
    if x.dtype == torch.uint8:
        scale, shift = (
            torch.full((3,), 1 / 255.0, dtype=torch.float64),
            torch.zeros(3, dtype=torch.float64),
        )
    elif x.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        scale, shift = torch.ones(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
        if x.dtype != torch.float32:
            x = x.to(torch.float32)
        # (data-dependent, so skipped inside torch.compile, where it would break the graph)
        if not torch.compiler.is_compiling():
            check_finite(x, "images")
    else:
        raise TypeError(
            f"images: unsupported dtype {x.dtype}; use uint8 or float32/float64/float16/bfloat16"
        )
    if (mean is None) != (std is None):
        raise ValueError(
            "give both mean and std (the processor's image_mean and image_std), or neither"
        )
    if mean is not None:
        if x.dtype == torch.uint8:
            raise ValueError(
                "mean/std undo a processor's normalisation of float pixel_values; "
                "uint8 images are not normalised"
            )
        m = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
        s = torch.as_tensor(std, dtype=torch.float64).reshape(-1)
        if m.numel() != 3 or s.numel() != 3 or not bool((s > 0).all()):
            raise ValueError("mean and std must have 3 values each, std > 0")
        scale, shift = s, m
    if x.shape[-2:] != (image_size, image_size):
        # bilinear, align_corners=False, no antialias (QuPAINT Alg. 2 line 2); uint8 is
        # resized on its 0-255 scale and the 1/255 stays in ``scale``
        x = F.interpolate(
            x.to(torch.float32),
            size=(image_size, image_size),
            mode="bilinear",
            align_corners=False,
            antialias=False,
        )
    return x, scale, shift, batched, device is not None


def _run(x: torch.Tensor, patch_size: int, scale, shift, normalize: bool, backend: str | None):
    _, fn = _backend.select("pia", x.device.type, backend)
    return fn(x, patch_size, scale, shift, normalize)


def pia_map(
    images: Any,
    patch_size: int = 14,
    image_size: int = 448,
    normalize: bool = True,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    backend: str | None = None,
) -> Any:
    """PIA attention map, ``[B, S/p, S/p]`` (or ``[S/p, S/p]`` for one image) float32 in [0, 1].

    Parameters
    ----------
    images : [3, H, W] or [B, 3, H, W], uint8 or float sRGB in [0, 1] (numpy or torch).
    patch_size, image_size : patch grid; images are resized to ``image_size`` when needed.
    normalize : min-max normalise each map (Alg. 2 line 13).
    mean, std : per-channel normalisation to undo (``pixel_values * std + mean``), e.g. a
        Hugging Face processor's ``image_mean`` / ``image_std``.
    backend : "reference" | "cpu" | "triton" (GPU); default automatic.

    References
    ----------
    QuPAINT Alg. 2, Eq. (10)-(11).

    Examples
    --------
    >>> import torch
    >>> from qupaint.pia import pia_map
    >>> pia_map(torch.rand(2, 3, 448, 448)).shape
    torch.Size([2, 32, 32])
    """
    x, scale, shift, batched, torch_out = _prepare(images, patch_size, image_size, mean, std)
    if torch.compiler.is_compiling():  # the registered op keeps torch.compile graphs whole
        out = torch.ops.qupaint.pia_map(x, patch_size, scale, shift, normalize, backend or "")
    else:  # eager: call the kernel directly (dispatching the op imports torch._dynamo, ~3 s)
        with torch.no_grad():
            out = _run(x, patch_size, scale, shift, normalize, backend or None)
    out = out if batched else out[0]
    return to_output(out, torch_out)


def pia_scores(
    images: Any,
    patch_size: int = 14,
    image_size: int = 448,
    normalize: bool = True,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    backend: str | None = None,
) -> Any:
    """PIA scores flattened row-major: ``[B, k]`` with ``k = (image_size // patch_size) ** 2``
    (the alpha_i of the gate, one per ViT patch token)."""
    m = pia_map(images, patch_size, image_size, normalize, mean, std, backend)
    return m.reshape(*m.shape[:-2], -1)


@torch.library.custom_op("qupaint::pia_map", mutates_args=())
def _pia_map_op(
    x: torch.Tensor,
    patch_size: int,
    scale: torch.Tensor,
    shift: torch.Tensor,
    normalize: bool,
    backend: str,
) -> torch.Tensor:
    return _run(x, patch_size, scale, shift, normalize, backend or None)


@_pia_map_op.register_fake
def _(x, patch_size, scale, shift, normalize, backend):
    k = x.shape[-1] // patch_size
    return x.new_empty((x.shape[0], k, k), dtype=torch.float32)


class PIA(torch.nn.Module):
    """``nn.Module`` wrapper: ``PIA(patch_size=14, mean=..., std=...)(pixel_values)`` returns
    ``[B, k]`` scores (``flatten=True``) or ``[B, k, k]`` maps. No parameters."""

    def __init__(
        self,
        patch_size: int = 14,
        image_size: int = 448,
        normalize: bool = True,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        flatten: bool = True,
        backend: str | None = None,
    ):
        super().__init__()
        self.patch_size, self.image_size, self.normalize = patch_size, image_size, normalize
        self.mean, self.std, self.flatten, self.backend = mean, std, flatten, backend

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        fn = pia_scores if self.flatten else pia_map
        with torch.no_grad():
            return fn(
                images,
                self.patch_size,
                self.image_size,
                self.normalize,
                self.mean,
                self.std,
                self.backend,
            )

    def extra_repr(self) -> str:
        return (
            f"patch_size={self.patch_size}, image_size={self.image_size}, "
            f"normalize={self.normalize}"
        )
