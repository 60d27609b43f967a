"""Build the real-background pack of Synthia (``qupaint/data/real/backgrounds``).

Reads the MaskTerial demo micrographs in ``../shared/data/real/maskterial`` (MIT) and, per
image, finds the 640 x 640 window with the fewest non-substrate pixels. A pixel is
non-substrate when any channel departs from the local substrate (a 9 x 9-block median of
the 8x-downsampled image, upsampled) by more than 4 %, or is saturated; those pixels,
grown by 3 px, are replaced by the local substrate times the window's own measured pixel
noise. Faint residue streaks below the threshold, vignetting and the sensor's noise stay:
they are what a real chip looks like. Two windows per material folder (the cleanest
images) are written as JPEG (quality 92) with ``backgrounds.json`` (source, window, the
fraction of pixels replaced).

    .venv/bin/python scripts/make_backgrounds.py [SHARED_REAL_DIR]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import binary_dilation, median_filter, zoom

SIDE = 640
PER_MATERIAL = 2
OUT = Path(__file__).resolve().parents[1] / "qupaint" / "data" / "real" / "backgrounds"


def substrate_window(img: np.ndarray, rng: np.random.Generator):
    x = img.astype(np.float64)
    small = x[::8, ::8]
    field_s = np.stack([median_filter(small[..., c], size=9, mode="nearest") for c in range(3)], -1)
    field = zoom(field_s, (x.shape[0] / small.shape[0], x.shape[1] / small.shape[1], 1), order=1)
    field = field[: x.shape[0], : x.shape[1]]
    dev = np.abs(x / np.maximum(field, 1) - 1).max(-1)
    bad = (dev > 0.04) | (img >= 250).any(-1)
    bad = binary_dilation(bad, iterations=3)
    # fraction of bad pixels per window (integral image), stride 32
    ii = np.pad(bad.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    best = None
    for y in range(0, x.shape[0] - SIDE + 1, 32):
        for xx in range(0, x.shape[1] - SIDE + 1, 32):
            n = ii[y + SIDE, xx + SIDE] - ii[y, xx + SIDE] - ii[y + SIDE, xx] + ii[y, xx]
            if best is None or n < best[0]:
                best = (n, y, xx)
    n, y, xx = best
    win = x[y : y + SIDE, xx : xx + SIDE]
    fw = field[y : y + SIDE, xx : xx + SIDE]
    bw = bad[y : y + SIDE, xx : xx + SIDE]
    rel = win[~bw] / fw[~bw] - 1
    noise = 1.4826 * np.median(np.abs(rel), axis=0)
    fill = fw * (1 + noise * rng.standard_normal(fw.shape))
    win = np.where(bw[..., None], fill, win)
    return np.clip(win + 0.5, 0, 255).astype(np.uint8), (int(xx), int(y)), float(n) / SIDE**2


def main(root: str) -> None:
    rng = np.random.default_rng(2026)
    OUT.mkdir(parents=True, exist_ok=True)
    entries = []
    for folder in sorted(p for p in Path(root, "maskterial").iterdir() if p.is_dir()):
        cands = []
        for f in sorted(folder.glob("*.jpg")):
            with Image.open(f) as im:
                img = np.asarray(im.convert("RGB"))
            win, at, frac = substrate_window(img, rng)
            cands.append((frac, f, win, at))
        cands.sort(key=lambda c: c[0])
        for k, (frac, f, win, at) in enumerate(cands[:PER_MATERIAL]):
            name = f"{folder.name}_{k}.jpg"
            Image.fromarray(win).save(OUT / name, quality=92)
            entries.append({
                "file": name, "source": f"maskterial/{folder.name}/{f.name}",
                "window_xywh": [at[0], at[1], SIDE, SIDE], "replaced_fraction": round(frac, 4),
                "substrate_rgb": [round(float(v), 1) for v in np.median(win.reshape(-1, 3), 0)],
            })  # fmt: skip
            print(name, f.name, at, f"replaced {frac:.1%}")
    meta = {
        "about": "Flake-free windows of real SiO2/Si chips for Synthia backgrounds, cut from "
        "the MaskTerial demo micrographs (Uslu et al., Digital Discovery 4, 3744 (2025); MIT, "
        "LICENSE-maskterial one folder up) by scripts/make_backgrounds.py. 0.385 um/px, "
        "DFK 33UX174 camera, linear pixel values.",
        "um_per_px": 0.385,
        "backgrounds": entries,
    }
    (OUT / "backgrounds.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main(
        sys.argv[1]
        if len(sys.argv) > 1
        else str(Path(__file__).resolve().parents[2] / "shared" / "data" / "real")
    )
