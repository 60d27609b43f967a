"""Cut the expert-masked real chips the demo shows (``qupaint/data/real/whole``).

Two windows of whole MaskTerial GrapheneH micrographs (MIT; ``../shared/data/real/
maskterial-labelled``), each with the expert's instance mask of every thin flake cut the
same way: a white-balanced (grey) image with 18 thin flakes beside bulk crystals, and a
purple one with a monolayer among dust specks. JPEG quality 95 (the masks as PNG).

    .venv/bin/python scripts/make_demo_chips.py [SHARED_LABELLED_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parents[1] / "qupaint" / "data" / "real" / "whole"
#: (name, source image stem, window x0, y0, x1, y1)
WINDOWS = [
    ("GrapheneH_grey", "45ce9af7-5523-4aa2-9209-9639c3073766", (250, 80, 1250, 1000)),
    ("GrapheneH_purple", "17294f8a-1df7-427f-b8ed-ab54e1571960", (700, 300, 1700, 1100)),
]


def main(src: Path) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, stem, box in WINDOWS:
        img = Image.open(src / "GrapheneH" / "images" / f"{stem}.jpg").convert("RGB").crop(box)
        mask = np.asarray(Image.open(src / "GrapheneH" / "masks" / f"{stem}.png").crop(box))
        # renumber the instances the window holds 1..n
        ids = [int(v) for v in np.unique(mask) if v]
        out = np.zeros_like(mask)
        for k, v in enumerate(ids, start=1):
            out[mask == v] = k
        img.save(OUT / f"{name}.jpg", quality=95)
        Image.fromarray(out).save(OUT / f"{name}_mask.png")
        print(f"{name}: {len(ids)} flakes, window {box} of {stem}")


if __name__ == "__main__":
    default = Path(__file__).resolve().parents[2] / "shared/data/real/maskterial-labelled"
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default)
