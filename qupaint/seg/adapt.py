"""Few-shot adaptation of the thin-flake segmenter to a lab's own microscope.

MaskTerial's answer to the sim-to-real gap (Uslu et al., Digital Discovery 4, 3744 (2025)):
a network pretrained on synthetic data, then fine-tuned on 5-10 masked images of the lab's
own chips. Here the pretrained network is the Synthia-only segmenter (:mod:`qupaint.seg`)
and the masks are the ``qupaint eval real`` / ``qupaint calibrate --images`` layout
(``images/<id>.jpg``, ``masks/<id>.png``: 0 for everything else, k for the k-th thin flake).

:func:`adapt_segmenter` fine-tunes every weight for a few hundred steps at a tenth of the
pretraining rate on random crops of the masked images (half of them centred on a flake,
the thin pixels being rare), with the loop and loss of pretraining
(:func:`qupaint.seg.train.fit`) on two targets: thin flake, and the cut between touching
flakes (mask pixels within 2 px of another instance). The masks mark every thin flake, so
every other pixel is background, bulk crystals, debris and residue included: what Synthia
cannot teach.

Example
-------
>>> import numpy as np
>>> m = np.zeros((6, 6), np.uint8); m[1:3, 1:3] = 1; m[3:5, 1:3] = 2
>>> t = mask_targets(m)
>>> t.shape, int(t[0].sum()), int(t[1].sum())
((3, 6, 6), 8, 8)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from qupaint._io import read_mask, read_rgb
from qupaint.seg.net import UNet, contrast_input, material_planes, with_planes

__all__ = ["AdaptRecipe", "adapt_segmenter", "mask_targets", "read_masked"]


def mask_targets(mask: np.ndarray, cut_px: int = 2) -> np.ndarray:
    """bool [3, H, W] training targets of an instance mask: thin flake, cut (flake pixels
    within ``cut_px`` of another instance) and ignore (none: the masks mark every flake)."""
    from scipy.ndimage import grey_dilation, grey_erosion

    m = np.asarray(mask).astype(np.int32)
    size = 2 * cut_px + 1
    hi = grey_dilation(m, size=(size, size))
    lo = grey_erosion(np.where(m == 0, np.iinfo(np.int32).max, m), size=(size, size))
    cut = (m > 0) & (((hi != m) & (hi > 0)) | ((lo != m) & (lo < np.iinfo(np.int32).max)))
    return np.stack([m > 0, cut, np.zeros_like(cut)])


def read_masked(pairs) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image uint8 [H, W, 3], mask [H, W]) of each (image, mask) path pair (or objects
    with ``.image`` / ``.mask``), checked: a mask must match its image in size."""
    out = []
    for p in pairs:
        img_path, mask_path = (p.image, p.mask) if hasattr(p, "image") else p
        img, mask = read_rgb(img_path), read_mask(mask_path)
        if mask.ndim != 2:
            raise ValueError(f"masks: {mask_path} is not a one-channel instance mask "
                             f"(shape {mask.shape})")  # fmt: skip
        if mask.shape != img.shape[:2]:
            raise ValueError(f"masks: {mask_path} is {mask.shape[1]}x{mask.shape[0]} px but "
                             f"its image {img_path} is {img.shape[1]}x{img.shape[0]}")  # fmt: skip
        out.append((img, mask))
    return out


class AdaptRecipe:
    """How :func:`adapt_segmenter` fine-tunes: ``steps`` AdamW steps of ``batch`` crops of
    ``crop`` px at one-cycle peak ``lr``, a share ``focus`` of crops centred on a flake."""

    def __init__(self, steps: int = 300, batch: int = 8, crop: int = 256, lr: float = 3e-4,
                 focus: float = 0.5, seed: int = 0):  # fmt: skip
        if steps < 1 or batch < 1 or crop < 16:
            raise ValueError(f"steps >= 1, batch >= 1 and crop >= 16 are needed; got {steps}, "
                             f"{batch}, {crop}")  # fmt: skip
        if not 0.0 <= focus <= 1.0 or lr <= 0:
            raise ValueError(f"focus must lie in [0, 1] and lr > 0; got {focus}, {lr}")
        self.steps, self.batch, self.crop, self.lr, self.focus, self.seed = (
            int(steps), int(batch), int(crop), float(lr), float(focus), int(seed))

    def as_dict(self) -> dict:
        return dict(vars(self))


def _crops(rng, inputs, targets, flake_px, planes, batch, crop, focus):
    xs, ys = [], []
    for _ in range(batch):
        i = int(rng.integers(len(inputs)))
        _, H, W = targets[i].shape
        c = min(crop, H, W)
        if len(flake_px[i]) and rng.random() < focus:
            cy, cx = flake_px[i][int(rng.integers(len(flake_px[i])))]
            y0 = int(np.clip(cy - c // 2 + rng.integers(-c // 4, c // 4 + 1), 0, H - c))
            x0 = int(np.clip(cx - c // 2 + rng.integers(-c // 4, c // 4 + 1), 0, W - c))
        else:
            y0, x0 = int(rng.integers(0, H - c + 1)), int(rng.integers(0, W - c + 1))
        x = inputs[i][:, y0 : y0 + c, x0 : x0 + c]
        m = torch.from_numpy(targets[i][:, y0 : y0 + c, x0 : x0 + c])
        k = int(rng.integers(4))
        x, m = torch.rot90(x, k, (1, 2)), torch.rot90(m, k, (1, 2))
        if rng.random() < 0.5:
            x, m = x.flip(2), m.flip(2)
        xs.append(with_planes(x, planes[i]) if planes is not None else x)
        ys.append(m)
    return torch.stack(xs), torch.stack(ys).float()


def adapt_segmenter(
    pairs: Sequence,
    materials: str | Sequence[str],
    base: str | os.PathLike | UNet | None = None,
    recipe: AdaptRecipe | None = None,
    out: str | os.PathLike | None = None,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> UNet:
    """Fine-tune the segmenter ``base`` (default: the shipped Synthia-only weights) on masked
    real images and return it (eval mode); with ``out`` (``.safetensors``) also write it,
    atomically, with a ``.json`` of what it was adapted on.

    Parameters
    ----------
    pairs : (image, mask) path pairs (or :class:`~qupaint.bench.real.MaskedImage`), at
        least 2: the masks mark every thin flake of their image.
    materials : the flakes' material, one for all or one per image.
    recipe : :class:`AdaptRecipe` (300 steps of 8 crops of 256 px: about a minute a
        hundred steps on 2 cores).
    """

    from qupaint.seg import load_segmenter
    from qupaint.seg.train import architecture, fit, save_segmenter

    pairs = list(pairs)
    if len(pairs) < 2:
        raise ValueError(f"images: adapting needs at least 2 masked images; got {len(pairs)}")
    mats = [materials] * len(pairs) if isinstance(materials, str) else list(materials)
    if len(mats) != len(pairs):
        raise ValueError(f"materials: one for all or one per image ({len(pairs)}); got "
                         f"{len(mats)}")  # fmt: skip
    r = recipe or AdaptRecipe()
    if out is not None and Path(out).suffix != ".safetensors":
        raise ValueError(f"out must end in .safetensors; got {out}")
    data = read_masked(pairs)
    if not any(m.any() for _, m in data):
        raise ValueError("masks: every mask is empty (0 everywhere); adapting needs flakes")
    src = base if isinstance(base, UNet) else load_segmenter(base)
    net = UNet(src.width, src.depth, in_channels=src.in_channels, stem=src.stem)
    net.load_state_dict(src.state_dict())
    with_material = net.in_channels == 6
    inputs = [contrast_input(img) for img, _ in data]
    planes = [material_planes(m) for m in mats] if with_material else None
    targets = [mask_targets(m) for _, m in data]
    rng = np.random.default_rng(r.seed)
    flake_px = []
    for t in targets:
        ys, xs = np.nonzero(t[0])
        pick = rng.permutation(len(ys))[:4096]
        flake_px.append(np.stack([ys[pick], xs[pick]], 1))
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(r.seed)
    t0 = time.time()
    net.train()
    try:
        losses = fit(net, lambda: _crops(rng, inputs, targets, flake_px, planes, r.batch,
                                         r.crop, r.focus), r.steps, r.lr, progress)  # fmt: skip
    finally:
        torch.set_num_threads(old_threads)
    net.eval()
    if out is not None:
        save_segmenter(Path(out), net, {
            "architecture": architecture(net),
            "adapted": {
                "from": str(base) if base is not None and not isinstance(base, UNet)
                else "shipped Synthia-only weights",
                "images": [str(p.image if hasattr(p, "image") else p[0]) for p in pairs],
                "materials": mats,
                "flakes": int(sum(len(np.unique(m)) - 1 for _, m in data)),
                "recipe": r.as_dict(),
                "final_loss_mean_last_50": float(np.mean(losses[-50:])),
                "seconds": round(time.time() - t0, 1),
            },
        })  # fmt: skip
    return net.to(memory_format=torch.channels_last)
