"""The demo's Synthia figures: a contact sheet per material, and Synthia beside real
chips."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from qupaint._io import read_mask, read_rgb
from qupaint.categories import CATEGORY_NAMES
from qupaint.constants import REFERENCE_UM_PER_PX
from qupaint.demo.files import save_fig
from qupaint.optics import FLAKE_MATERIALS, get_material

__all__ = ["synthia_contact_sheet", "synthia_vs_real"]


def synthia_contact_sheet(path: Path, per_material: int = 4, size: int = 256) -> None:
    """A grid of Synthia samples: one row per material (QuPAINT Alg. 1 on built-in defaults)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qupaint.synthia import Synthia, SynthiaConfig

    fig, axes = plt.subplots(
        len(FLAKE_MATERIALS),
        per_material,
        figsize=(2.2 * per_material, 2.2 * len(FLAKE_MATERIALS)),
        constrained_layout=True,
    )
    colors = {1: "yellow", 2: "orange", 3: "red"}
    for r, mat in enumerate(FLAKE_MATERIALS):
        syn = Synthia(
            SynthiaConfig(seed=r, height=size, width=size, materials=(mat,), radius_px=(8.0, 40.0))
        )
        for col in range(per_material):
            s = syn.sample(col)
            ax = axes[r, col]
            ax.imshow(s.image)
            for a in s.annotations:
                x, y, w, h = a["bbox"]
                color = colors[a["category_id"]]
                ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, lw=0.6, ec=color))
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(get_material(mat).name)  # canonical: hBN, graphene
    legend = ", ".join(f"{colors[i]} {name}" for i, name in CATEGORY_NAMES.items())
    fig.suptitle(f"Synthia samples on 285 nm SiO2/Si, D65 (boxes: {legend})")
    save_fig(fig, path)


def synthia_vs_real(path: Path, per_row: int = 4, size: int = 256) -> None:
    """Synthia next to real chips, one row each: real micrograph crops (distinct windows of
    the two shipped expert-masked GrapheneH micrographs, each centred on a thin flake of
    the expert's masks, images alternating), Synthia flakes composited onto the shipped
    unlabelled real chips (the segmenter's training data), realistic Synthia (thin-flake
    labels outlined) and classic Synthia."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qupaint.detect.draw import outline_labels
    from qupaint.seg.train import thin_mask
    from qupaint.synthia import Synthia, SynthiaConfig

    real_dir = Path(str(resources.files("qupaint") / "data" / "real"))
    chips = [(read_rgb(real_dir / "whole" / f"GrapheneH_{name}.jpg"),
              read_mask(real_dir / "whole" / f"GrapheneH_{name}_mask.png"))
             for name in ("grey", "purple")]  # fmt: skip
    picks = [_flake_windows(img, mask, size, per_row) for img, mask in chips]
    real = [picks[k % len(chips)][k // len(chips)] for k in range(per_row)]
    # the faint thin flakes, outlined as the renders' labels are: the expert's masks
    real = [outline_labels(crop, mask, (255, 220, 0)) for crop, mask in real]
    syn = Synthia(SynthiaConfig.realistic(seed=11, height=size, width=size))
    realistic = []
    for k in range(per_row):
        smp = syn.sample(k, masks=True)
        realistic.append(outline_labels(smp.image, thin_mask(smp) * smp.masks, (255, 220, 0)))
    classic_syn = Synthia(SynthiaConfig(seed=11, height=size, width=size, radius_px=(8.0, 40.0)))
    classic = [classic_syn.sample(k).image for k in range(per_row)]
    rows = [("real (GrapheneH; expert's thin flakes)", real),
            ("Synthia on real chips (thin outlined)",
             _on_real_chips(real_dir, per_row, size)),
            ("Synthia realistic (thin flakes outlined)", realistic),
            ("Synthia classic", classic)]  # fmt: skip
    fig, axes = plt.subplots(len(rows), per_row, figsize=(2.4 * per_row, 2.5 * len(rows)),
                             constrained_layout=True)  # fmt: skip
    for r, (title, imgs) in enumerate(rows):
        for c, im in enumerate(imgs):
            ax = axes[r, c]
            ax.imshow(im)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(title, fontsize=7)
    fig.suptitle(f"Synthia next to real chips ({size} px at about {REFERENCE_UM_PER_PX} um/px)")
    save_fig(fig, path)



def _on_real_chips(real_dir: Path, n: int, size: int) -> list[np.ndarray]:
    """``n`` composites (:mod:`qupaint.synthia.composite`, the shipped segmenter's step) on
    the two unlabelled chips the package ships, their thin flakes outlined."""
    from qupaint.detect.draw import outline_labels
    from qupaint.seg.train import COMPOSITE_STEPS, SegmenterRecipe
    from qupaint.synthia.composite import ChipComposer, CompositeConfig

    step = COMPOSITE_STEPS[SegmenterRecipe().step]
    comp = ChipComposer([real_dir / "MoSe2_chip.jpg", real_dir / "WS2_chip.jpg"],
                        CompositeConfig(size=size, flakes=(2, 5), **step), seed=5)  # fmt: skip
    out = []
    for k in range(n):
        img, (thin, _, _), _, _ = comp.sample(k)
        out.append(outline_labels(img, thin.astype(np.int32), (255, 220, 0)))
    return out


def _flake_windows(img: np.ndarray, mask: np.ndarray, size: int, n: int) -> list[tuple]:
    """``n`` windows of ``size`` px of a real micrograph, each centred on one of the
    instances of ``mask`` (largest first), no two overlapping; then, if too few, the
    busiest windows (pixel spread) that overlap none. Each as (crop, the mask in it)."""
    from scipy import ndimage

    H, W = img.shape[:2]
    ids = [k for k in np.unique(mask) if k]
    sizes = ndimage.sum(mask > 0, mask, ids) if ids else []
    at = ndimage.center_of_mass(mask > 0, mask, ids) if ids else []  # all in one pass
    centres = [c for _, _, c in sorted(zip(sizes, ids, at, strict=True), reverse=True)]
    spread = sorted(((float(img[y : y + size, x : x + size].std()), y + size / 2, x + size / 2)
                     for y in range(0, H - size + 1, size // 4)
                     for x in range(0, W - size + 1, size // 4)), reverse=True)  # fmt: skip
    centres += [(cy, cx) for _, cy, cx in spread]
    taken: list[tuple[int, int]] = []
    for cy, cx in centres:
        y = int(min(max(round(cy - size / 2), 0), H - size))
        x = int(min(max(round(cx - size / 2), 0), W - size))
        if all(abs(y - ty) >= size or abs(x - tx) >= size for ty, tx in taken):
            taken.append((y, x))
        if len(taken) == n:
            break
    return [(img[y : y + size, x : x + size], mask[y : y + size, x : x + size]) for y, x in taken]
