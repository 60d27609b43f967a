"""Realism statistics: how a set of Synthia images differs from real micrographs.

``compare_sets(synthetic_dir, real_dir)`` measures, on centred squares of each image, the
statistics a person checks by eye, pooled per set:

* **substrate**: the per-channel median pixel (the substrate dominates a flake-hunting
  image), as the camera wrote it, after its white balance;
* **contrast**: per-channel ``C = I / I_substrate - 1`` of non-substrate pixels (any
  channel off by more than 4 %): what flakes, crystals and dirt look like against the chip;
* **edges**: the gradient magnitude of the luminance contrast where it exceeds 0.02 per px
  (how sharp and how strong edges are);
* **objects**: area and aspect ratio (from second moments) of the connected non-substrate
  regions of at least 9 px;
* **spectrum**: the radially averaged power spectrum of the luminance contrast
  (sharpness at high frequency, noise floor);
* **noise**: the substrate's pixel noise (median absolute Laplacian of substrate pixels).

Each statistic is a histogram on fixed bins for both sets; the distance is their total
variation (0: the same, 1: disjoint); the spectrum's is the mean absolute difference of
log10 power. ``plot_comparison`` draws the histograms side by side.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from qupaint._io import read_rgb

__all__ = ["image_statistics", "compare_sets", "plot_comparison"]

_BINS = {
    "substrate": np.linspace(0, 256, 33),
    "contrast": np.linspace(-1.0, 1.5, 51),
    "edges": np.linspace(-1.7, 0.3, 41),  # log10 gradient per px
    "area": np.linspace(1.0, 5.0, 33),  # log10 px
    "aspect": np.linspace(1.0, 8.0, 29),
    "noise": np.linspace(-3.5, -0.5, 31),  # log10 relative
}
_SPECTRUM_BINS = 24
_THRESHOLD = 0.04


def _square(img: np.ndarray, size: int) -> np.ndarray:
    H, W = img.shape[:2]
    s = min(size, H, W)
    y, x = (H - s) // 2, (W - s) // 2
    return img[y : y + s, x : x + s]


def image_statistics(image: np.ndarray, size: int = 512) -> dict:
    """The raw statistics of one ``[H, W, 3]`` uint8 image (its centred square of side
    ``size``): arrays of samples, and the power spectrum on fixed frequency bins."""
    from scipy.ndimage import find_objects, label, laplace

    img = _square(np.asarray(image), size).astype(np.float64)
    sub = np.median(img[::2, ::2].reshape(-1, 3), axis=0)
    C = img / np.maximum(sub, 1.0) - 1.0
    off = np.abs(C).max(-1) > _THRESHOLD
    lum = C.mean(-1)
    gy, gx = np.gradient(lum)
    g = np.hypot(gx, gy)
    lab, n = label(off)
    areas, aspects = [], []
    for k, sl in enumerate(find_objects(lab)):
        if sl is None:
            continue
        ys, xs = np.nonzero(lab[sl] == k + 1)
        if len(ys) < 9:
            continue
        areas.append(len(ys))
        cov = np.cov(np.stack([ys, xs]).astype(float)) + 1e-3 * np.eye(2)
        ev = np.linalg.eigvalsh(cov)
        aspects.append(float(np.sqrt(ev[1] / ev[0])))
    # radially averaged power spectrum of the luminance contrast
    s = lum.shape[0]
    F = np.abs(np.fft.rfft2(lum - lum.mean())) ** 2 / lum.size
    fy = np.fft.fftfreq(lum.shape[0])[:, None]
    fx = np.fft.rfftfreq(lum.shape[1])[None, :]
    r = np.hypot(fy, fx)
    edges = np.linspace(0, 0.5, _SPECTRUM_BINS + 1)
    idx = np.clip(np.digitize(r, edges) - 1, 0, _SPECTRUM_BINS)
    ok = idx < _SPECTRUM_BINS
    spec = np.bincount(idx[ok], F[ok], _SPECTRUM_BINS) / np.maximum(
        np.bincount(idx[ok], minlength=_SPECTRUM_BINS), 1
    )
    lap = laplace(lum)[~off]
    return {
        "substrate": np.repeat(sub[None], 1, 0),
        "contrast": C[off],
        "edges": np.log10(g[g > 0.02]),
        "area": np.log10(np.asarray(areas, float)) if areas else np.zeros(0),
        "aspect": np.asarray(aspects, float),
        "noise": np.log10([1.4826 * np.median(np.abs(lap)) / np.sqrt(20) + 1e-6]),
        "spectrum": spec,
        "side": s,
        "off_fraction": float(off.mean()),
    }


def _images(folder: str | os.PathLike, max_images: int) -> list[Path]:
    from qupaint._io import IMAGE_EXTS

    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{folder}: not a folder of images")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS)
    files = [p for p in files if ".overlay" not in p.name and ".labels" not in p.name]
    if not files:
        raise ValueError(f"{folder}: no image ({', '.join(IMAGE_EXTS)}) found")
    if len(files) > max_images:  # evenly spread, so every sub-folder is represented
        files = [files[i] for i in np.linspace(0, len(files) - 1, max_images).astype(int)]
    return files


def _pool(stats: list[dict]) -> dict:
    out = {}
    for key, bins in _BINS.items():
        vals = [s[key] for s in stats]
        if key == "contrast":
            out[key] = [np.histogram(np.concatenate([v[:, c] for v in vals]), bins)[0]
                        for c in range(3)]  # fmt: skip
        elif key == "substrate":
            allv = np.concatenate(vals)
            out[key] = [np.histogram(allv[:, c], bins)[0] for c in range(3)]
        else:
            out[key] = [np.histogram(np.concatenate(vals), bins)[0]]
    out["spectrum"] = np.exp(np.mean([np.log(s["spectrum"] + 1e-12) for s in stats], axis=0))
    out["substrate_median"] = np.median(np.concatenate([s["substrate"] for s in stats]), axis=0)
    out["off_fraction"] = float(np.mean([s["off_fraction"] for s in stats]))
    return out


def _tv(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Mean total-variation distance of matching histograms (0 same, 1 disjoint)."""
    d = []
    for x, y in zip(a, b, strict=True):
        px, py = x / max(x.sum(), 1), y / max(y.sum(), 1)
        d.append(0.5 * float(np.abs(px - py).sum()))
    return float(np.mean(d))


def _median_of(hist: list[np.ndarray], bins: np.ndarray) -> float:
    h = np.sum(hist, axis=0) if len(hist) > 1 else hist[0]
    if h.sum() == 0:
        return float("nan")
    c = np.cumsum(h) / h.sum()
    k = int(np.searchsorted(c, 0.5))
    return float(0.5 * (bins[k] + bins[k + 1]))


def compare_sets(
    synthetic: str | os.PathLike,
    real: str | os.PathLike,
    max_images: int = 40,
    size: int = 512,
) -> dict:
    """Statistics of both image sets and their distances (see the module docstring).

    Returns ``{"summary": {statistic: {"synthetic": str, "real": str, "distance": float}},
    "histograms": {...}, "bins": {...}, "images": {"synthetic": n, "real": n}}``.
    """

    if size < 64:
        raise ValueError(f"size must be >= 64 px; got {size}")
    sets = {}
    for name, folder in (("synthetic", synthetic), ("real", real)):
        stats = []
        for f in _images(folder, max_images):
            stats.append(image_statistics(read_rgb(f), size))
        sets[name] = (_pool(stats), len(stats))
    a, b = sets["synthetic"][0], sets["real"][0]
    summary = {}

    def rgb(v):
        return "(" + ", ".join(f"{x:.0f}" for x in v) + ")"

    summary["substrate RGB (median)"] = {
        "synthetic": rgb(a["substrate_median"]), "real": rgb(b["substrate_median"]),
        "distance": _tv(a["substrate"], b["substrate"]),
    }  # fmt: skip
    for key, label, fmt in (
        ("contrast", "contrast of non-substrate px (median)", "{:+.3f}"),
        ("edges", "edge gradient log10 (median)", "{:.2f}"),
        ("area", "object area log10 px (median)", "{:.2f}"),
        ("aspect", "object aspect ratio (median)", "{:.2f}"),
        ("noise", "substrate noise log10 (median)", "{:.2f}"),
    ):
        summary[label] = {
            "synthetic": fmt.format(_median_of(a[key], _BINS[key])),
            "real": fmt.format(_median_of(b[key], _BINS[key])),
            "distance": _tv(a[key], b[key]),
        }
    summary["non-substrate fraction"] = {
        "synthetic": f"{a['off_fraction']:.3f}", "real": f"{b['off_fraction']:.3f}",
        "distance": abs(a["off_fraction"] - b["off_fraction"]),
    }  # fmt: skip
    la, lb = np.log10(a["spectrum"] + 1e-12), np.log10(b["spectrum"] + 1e-12)
    summary["power spectrum (log10, mean |diff|)"] = {
        "synthetic": f"{la[-4:].mean():.2f} hi-f", "real": f"{lb[-4:].mean():.2f} hi-f",
        "distance": float(np.mean(np.abs(la - lb))),
    }  # fmt: skip
    return {
        "summary": summary,
        "histograms": {
            name: {
                k: ([h.tolist() for h in v] if isinstance(v, list) else np.asarray(v).tolist())
                for k, v in s.items()
            }
            for name, (s, _) in sets.items()
        },  # fmt: skip
        "bins": {k: v.tolist() for k, v in _BINS.items()},
        "images": {name: n for name, (_, n) in sets.items()},
        "size": size,
    }


def plot_comparison(result: dict, path: str | os.PathLike) -> Path:
    """Draw the histograms of :func:`compare_sets` for both sets, one panel per statistic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qupaint._io import atomic_open

    h, bins = result["histograms"], result["bins"]
    panels = [("substrate", "substrate pixel value"), ("contrast", "contrast C (R, G, B)"),
              ("edges", "log10 edge gradient / px"), ("area", "log10 object area (px)"),
              ("aspect", "object aspect ratio"), ("noise", "log10 substrate noise")]  # fmt: skip
    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    ax_list = axes.ravel()
    styles = {"synthetic": "-", "real": "--"}
    chans = ("tab:red", "tab:green", "tab:blue")
    for ax, (key, title) in zip(ax_list, panels, strict=False):
        x = np.asarray(bins[key])
        mid = 0.5 * (x[1:] + x[:-1])
        for name in ("synthetic", "real"):
            hs = h[name][key]
            for c, hist in enumerate(hs):
                hist = np.asarray(hist, float)
                color = chans[c] if len(hs) == 3 else ("tab:purple" if name == "synthetic"
                                                       else "black")  # fmt: skip
                ax.plot(mid, hist / max(hist.sum(), 1), styles[name], color=color,
                        label=name if c == 0 else None)  # fmt: skip
        ax.set_title(title)
        ax.legend(fontsize=8)
    ax = ax_list[len(panels)]
    f = np.linspace(0, 0.5, _SPECTRUM_BINS + 1)
    fm = 0.5 * (f[1:] + f[:-1])
    for name in ("synthetic", "real"):
        ax.semilogy(fm, h[name]["spectrum"], styles[name], color="k", label=name)
    ax.set_title("power spectrum of luminance contrast")
    ax.set_xlabel("cycles / px")
    ax.legend(fontsize=8)
    ax = ax_list[len(panels) + 1]
    ax.axis("off")
    lines = [f"{k}: {v['distance']:.2f}" for k, v in result["summary"].items()]
    ax.text(0, 1, "distance (0 = same)\n" + "\n".join(lines), va="top", fontsize=8,
            family="monospace")  # fmt: skip
    fig.suptitle(f"Synthia ({result['images']['synthetic']} images) vs real "
                 f"({result['images']['real']} images), {result['size']} px squares")  # fmt: skip
    fig.tight_layout()
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=80)
    plt.close(fig)
    return path
