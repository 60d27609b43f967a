"""Contact sheet of the top thin-flake candidates on the unlabelled real chips.

One row per image of ``../shared/data/real/maskterial/{WS2,MoSe2,hBN_Thin}`` and
``2dmatgmm-demo``: the whole image, then its three best-scoring thin candidates (Mono and
Few, ``qupaint detect`` defaults with the 2dmatgmm camera) cut out with a margin, the outline
drawn, and their layers, score and area above. These chips carry no masks: the sheet is how
one checks that no top candidate is a shadow, rim, band or speck (issue 40).

Usage: ``python scripts/unlabelled_contact_sheet.py OUT.jpg [--json OUT.json]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from qupaint._io import read_rgb
from qupaint.detect import DetectorSettings, detect

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
SETS = [("WS2", "maskterial/WS2"), ("MoSe2", "maskterial/MoSe2"),
        ("hBN", "maskterial/hBN_Thin"), ("graphene", "2dmatgmm-demo/images")]  # fmt: skip
THUMB, CROP = (330, 206), 256


def top_candidates(img: np.ndarray, material: str, n: int = 3) -> list[dict]:
    """``qupaint detect``'s defaults: the 2dmatgmm microscope with its oxide prior."""
    dets = detect(img, material, DetectorSettings.from_microscope("2dmatgmm"), masks="window")
    return [d for d in dets if d["score"] >= 0.05 and d["category_id"] in (1, 2)][:n]


def crop(img: np.ndarray, d: dict) -> Image.Image:
    x, y, w, h = (int(v) for v in d["bbox"])
    side = max(w, h) + 60
    cx, cy = x + w // 2, y + h // 2
    x0 = min(max(0, cx - side // 2), max(0, img.shape[1] - side))
    y0 = min(max(0, cy - side // 2), max(0, img.shape[0] - side))
    tile = Image.fromarray(img[y0 : y0 + side, x0 : x0 + side]).convert("RGB")
    edge = d["mask"] & ~ndimage.binary_erosion(d["mask"])
    ys, xs = np.nonzero(edge)
    px = tile.load()
    for yy, xx in zip(ys + y - y0, xs + x - x0, strict=True):
        if 0 <= yy < tile.height and 0 <= xx < tile.width:
            px[int(xx), int(yy)] = (255, 255, 0)
    return tile.resize((CROP, CROP))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--json")
    args = ap.parse_args()
    rows, record = [], {}
    for material, sub in SETS:
        for f in sorted((REAL / sub).glob("*.jpg")) + sorted((REAL / sub).glob("*.png")):
            img = read_rgb(f)
            tops = top_candidates(img, material)
            record[f"{material}/{f.stem}"] = [
                {k: d[k] for k in ("bbox", "score", "layers", "contrast", "area_um2")} for d in tops
            ]
            row = Image.new(
                "RGB", (THUMB[0] + 3 * (CROP + 6), max(THUMB[1], CROP) + 4), (40, 40, 40)
            )
            row.paste(Image.fromarray(img).resize(THUMB), (0, 0))
            draw = ImageDraw.Draw(row)
            draw.text((4, 4), f"{material} {f.stem[:8]} n={len(tops)}", fill=(255, 255, 0))
            for k, d in enumerate(tops):
                x = THUMB[0] + 6 + k * (CROP + 6)
                row.paste(crop(img, d), (x, 0))
                label = f"{d['layers']}L {d['score']:.2f} {d.get('area_um2', 0):.0f}um2"
                draw.text((x + 4, 4), label, fill=(255, 255, 255))
            rows.append(row)
            print(f"{material} {f.stem[:8]}: " + ", ".join(
                f"{d['layers']}L {d['score']:.2f} C={d['contrast']}" for d in tops))  # fmt: skip
    sheet = Image.new("RGB", (rows[0].width, sum(r.height for r in rows)))
    for i, r in enumerate(rows):
        sheet.paste(r, (0, i * r.height))
    sheet.save(args.out, quality=85)
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
