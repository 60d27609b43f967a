"""The segmentation network: a compact U-Net on contrast-normalised pixels.

The input is what the physics says matters: per-channel optical contrast
``C = I / I_substrate - 1`` (the MaskTerial / 2DMatGMM definition), with the substrate taken
as the image's per-channel median (the substrate covers most of a flake-hunting image). That
removes exposure, white balance and the oxide's base colour, which vary from lab to lab,
and leaves the flakes' contrast, which the network must learn to read.

Which contrast is a thin flake depends on the material: on 90 nm SiO2, ten layers of
graphene (C about -0.8 in red and green) are darker than two of WSe2 (about -0.6), yet one
is thick and the other thin. So the network is also told the material, the way the
physics knows it: three constant planes holding the contrast of one layer of it on the
nominal :data:`NOMINAL_OXIDE_NM` of SiO2 through the ``2dmatgmm`` camera
(:func:`material_planes`). A material it never saw in training is still described, by its
optics.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

__all__ = ["UNet", "contrast_input", "image_substrate", "material_planes", "segmenter_input",
           "with_planes", "NOMINAL_OXIDE_NM"]  # fmt: skip

#: the oxide the material planes are computed for (the 2DMatGMM graphene chips')
NOMINAL_OXIDE_NM = 90.0


@functools.lru_cache(maxsize=64)
def _one_layer(material: str) -> tuple[float, float, float]:
    from qupaint.color import Camera, channel_contrast
    from qupaint.optics import get_material

    name = get_material(material).name  # raises naming the known materials
    c = channel_contrast(name, [1], NOMINAL_OXIDE_NM, Camera.preset("2dmatgmm"))[0]
    return tuple(float(v) for v in c)


def material_planes(material: str) -> np.ndarray:
    """[3] float32: the per-channel contrast of one layer of ``material`` on
    :data:`NOMINAL_OXIDE_NM` nm SiO2/Si through the ``2dmatgmm`` camera, the network's
    description of the material (e.g. graphene about (-0.13, -0.14, -0.09))."""
    if not isinstance(material, str):
        raise TypeError(f"material must be a name such as 'graphene'; got {material!r}")
    return np.asarray(_one_layer(material), np.float32)


def with_planes(x: torch.Tensor, planes: np.ndarray) -> torch.Tensor:
    """``[3, H, W]`` contrast and ``[3]`` material planes -> ``[6, H, W]``: the planes as
    constant channels after the contrast."""
    return torch.cat([x, torch.from_numpy(planes)[:, None, None].expand(3, *x.shape[1:])])


def segmenter_input(image: np.ndarray, material: str) -> torch.Tensor:
    """``[6, H, W]`` float32: :func:`contrast_input` and the three constant planes of
    :func:`material_planes`."""
    return with_planes(contrast_input(image), material_planes(material))


def image_substrate(image: np.ndarray) -> np.ndarray:
    """[3] float32: the substrate :func:`contrast_input` divides by, the per-channel median
    of every fourth pixel of every fourth row (of the 8-bit pixels)."""
    x = _pixels8(image)
    return np.median(x[::4, ::4].reshape(-1, 3), axis=0).astype(np.float32)


def _pixels8(image: np.ndarray) -> np.ndarray:
    x = np.asarray(image)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3]; got shape {x.shape}")
    if np.issubdtype(x.dtype, np.floating):
        if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
            raise ValueError("image: float pixels must be finite and in [0, 1]")
        x = (x * 255.0 + 0.5).astype(np.uint8)  # as the weights were trained on 8-bit pixels
    elif x.dtype != np.uint8:
        raise TypeError(f"image must be uint8 pixels or float in [0, 1]; got {x.dtype}")
    return x


def contrast_input(image: np.ndarray, substrate: np.ndarray | None = None) -> torch.Tensor:
    """``[H, W, 3]`` uint8 (or float in [0, 1], the package's image convention) ->
    ``[3, H, W]`` float32 contrast ``I / substrate - 1``, clipped to [-1, 3] (saturated
    crystals); the substrate is :func:`image_substrate` unless given (a window of an
    image takes its whole image's)."""
    x = _pixels8(image)
    sub = image_substrate(x) if substrate is None else np.asarray(substrate, np.float32)
    c = x.astype(np.float32) / np.maximum(sub, 1.0) - 1.0
    return torch.from_numpy(np.clip(c, -1.0, 3.0).transpose(2, 0, 1).copy())


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015) with ``depth`` poolings and ``width`` channels at the
    top, doubling per level; ``out_channels`` logits per pixel (the segmenter's two: thin
    flake, and boundary between two flakes or flake parts). Inputs of any size work: they
    are padded to a multiple of ``stem * 2**depth`` and cropped back.

    ``stem=2`` folds each 2x2 block of pixels into channels first (pixel unshuffle) and
    unfolds the logits at the end (pixel shuffle): the network runs at half resolution, 4x
    cheaper, while every input pixel still reaches it and the output keeps full resolution.
    """

    def __init__(self, width: int = 16, depth: int = 3, in_channels: int = 3,
                 out_channels: int = 2, stem: int = 1):  # fmt: skip
        super().__init__()
        if stem not in (1, 2, 4):
            raise ValueError(f"stem must be 1, 2 or 4; got {stem}")
        self.width, self.depth, self.stem = int(width), int(depth), int(stem)
        self.in_channels = int(in_channels)  # 3: contrast; 6: contrast + material planes
        ch = [width * 2**i for i in range(depth + 1)]
        in_channels, out_channels = in_channels * stem**2, out_channels * stem**2
        self.down = nn.ModuleList([_block(in_channels, ch[0])] +
                                  [_block(ch[i], ch[i + 1]) for i in range(depth)])  # fmt: skip
        self.up = nn.ModuleList(
            [nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2) for i in range(depth)]
        )
        self.merge = nn.ModuleList([_block(2 * ch[i], ch[i]) for i in range(depth)])
        self.head = nn.Conv2d(ch[0], out_channels, 1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        m = self.stem * 2**self.depth
        ph, pw = (-H) % m, (-W) % m
        if ph or pw:
            x = nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
        if self.stem > 1:
            x = nn.functional.pixel_unshuffle(x, self.stem)
        skips = []
        for i, blk in enumerate(self.down):
            x = blk(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for i in reversed(range(self.depth)):
            x = self.merge[i](torch.cat([self.up[i](x), skips[i]], 1))
        x = self.head(x)
        if self.stem > 1:
            x = nn.functional.pixel_shuffle(x, self.stem)
        return x[..., :H, :W]
