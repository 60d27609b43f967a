"""The domain gap a network sees: how well a small classifier tells Synthia windows from
real ones (:func:`domain_gap`).

Colour histograms (:mod:`qupaint.bench.realism`) miss what makes a network trained on
Synthia blind on real chips: shapes, the company flakes keep, the camera's texture. This
measures it the way a network would. Windows of ``window`` px are cut at random from whole
images (at their own scale, both sets at the reference microscope's), read as the
segmenter reads them (:func:`qupaint.seg.net.contrast_input`: ``C = I / I_sub - 1`` with the
image's median as the substrate), and a small CNN learns which set a window comes from. Its
ROC AUC on windows of *held-out images* (real images split by image; the ones Synthia's
real backgrounds were cut from always train) is the gap: 0.5 means a network cannot tell
them apart, 1.0 that it always can. The sets are balanced.

No label of any kind is read: the real images are unlabelled chips (``maskterial/``,
``2dmatgmm-demo/`` of the shared data), and the expert masks stay out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qupaint._io import image_files, read_rgb
from qupaint.seg.net import contrast_input

__all__ = ["SUBSTRATE_C", "SYNTHIA_MODES", "DomainGapRecipe", "domain_gap", "roc_auc",
           "synthia_mode", "window_classifier"]

#: a window is bare substrate when no pixel's contrast exceeds this in any channel
SUBSTRATE_C = 0.04


@dataclass(frozen=True)
class DomainGapRecipe:
    """How :func:`domain_gap` measures: ``windows_per_image`` random windows of ``window``
    px from every image (``synthetic_images`` Synthia renders, all real images), a CNN
    trained ``steps`` steps of ``batch`` windows at learning rate ``lr`` on the images not
    held out (``test_share`` of each set's images, at least one, are), ``seed`` for every
    draw, ``threads`` torch threads (None: torch's default). ``substrate_only``: only
    windows of bare substrate (no pixel beyond |C| = :data:`SUBSTRATE_C` in any channel), so
    that the classifier can tell the sets apart by the substrate's texture alone (noise,
    the camera's demosaicing and compression, the field), not by what lies on it."""

    window: int = 96
    windows_per_image: int = 24
    synthetic_images: int = 96
    steps: int = 400
    batch: int = 64
    lr: float = 2e-3
    test_share: float = 0.3
    seed: int = 0
    threads: int | None = None
    substrate_only: bool = False

    def __post_init__(self):
        if self.window < 16 or self.windows_per_image < 1 or self.synthetic_images < 2:
            raise ValueError("window >= 16, windows_per_image >= 1 and synthetic_images >= 2")
        if self.steps < 1 or self.batch < 2 or self.lr <= 0:
            raise ValueError("steps >= 1, batch >= 2 and lr > 0 are needed")
        if not 0 < self.test_share < 1:
            raise ValueError(f"test_share must be in (0, 1); got {self.test_share}")


def roc_auc(scores_pos: Sequence[float], scores_neg: Sequence[float]) -> float:
    """The ROC AUC of scores that should rank ``scores_pos`` above ``scores_neg``: the
    probability that a random positive outscores a random negative, ties counting half
    (the Mann-Whitney U statistic over n_pos n_neg).

    >>> roc_auc([0.9, 0.8], [0.1, 0.2]), roc_auc([0.1], [0.9]), roc_auc([0.5, 0.5], [0.5])
    (1.0, 0.0, 0.5)
    """
    from scipy.stats import rankdata

    pos, neg = np.asarray(scores_pos, float), np.asarray(scores_neg, float)
    if not len(pos) or not len(neg):
        raise ValueError("roc_auc: both sets need at least one score")
    ranks = rankdata(np.concatenate([pos, neg]))
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def window_classifier(width: int = 16) -> nn.Module:
    """The small CNN that tells the sets apart: four stride-2 convolutions (3 -> ``width``
    -> 2 ``width`` -> 4 ``width`` -> 4 ``width``), global average pooling, one logit."""
    chans = [3, width, 2 * width, 4 * width, 4 * width]
    layers: list[nn.Module] = []
    for cin, cout in zip(chans, chans[1:], strict=False):
        layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
                   nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]  # fmt: skip
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(chans[-1], 1))


def _windows(image: np.ndarray, n: int, size: int, rng: np.random.Generator,
             substrate_only: bool = False) -> np.ndarray:  # fmt: skip
    """``n`` random windows [n, 3, size, size] of the image's contrast map (with
    ``substrate_only``, up to ``n`` of bare substrate among 8 ``n`` drawn)."""
    c = contrast_input(image).numpy()
    _, H, W = c.shape
    if H < size or W < size:
        raise ValueError(f"image {W}x{H} is smaller than the {size}-px window")
    draws = 8 * n if substrate_only else n
    ys = rng.integers(0, H - size + 1, draws)
    xs = rng.integers(0, W - size + 1, draws)
    w = np.stack([c[:, y : y + size, x : x + size] for y, x in zip(ys, xs, strict=True)])
    if substrate_only:
        w = w[(np.abs(w) <= SUBSTRATE_C).all(axis=(1, 2, 3))][:n]
    return w


#: the Synthia modes the gap is measured for, as 512-px renders
SYNTHIA_MODES = ("classic", "realistic")


def synthia_mode(mode: str):
    """The Synthia of a ``mode`` name (:data:`SYNTHIA_MODES`, 512-px renders), or a folder
    of images named by path, as :func:`domain_gap` takes it."""
    from qupaint.synthia import SynthiaConfig

    if mode == "realistic":
        return SynthiaConfig.realistic(height=512, width=512)
    if mode == "classic":
        return SynthiaConfig(height=512, width=512)
    if Path(mode).is_dir():
        return Path(mode)
    raise ValueError(f"mode: {', '.join(SYNTHIA_MODES)} or a folder of images; got {mode!r}")


def _background_sources() -> set[str]:
    """The file names of the real images Synthia's real backgrounds were cut from."""
    meta = Path(__file__).resolve().parent.parent / "data" / "real" / "backgrounds"
    try:
        d = json.loads((meta / "backgrounds.json").read_text())
    except (OSError, ValueError):
        return set()
    return {Path(b["source"]).name for b in d.get("backgrounds", [])}


def _split(n: int, share: float, rng: np.random.Generator, keep_train=()) -> np.ndarray:
    """A bool [n]: held out (True) for ``share`` of the items (at least one; never one of
    ``keep_train``; at least one left to train), the rest to train."""
    keep = set(keep_train)
    free = [k for k in range(n) if k not in keep]
    k = min(max(1, round(share * n)), len(free), n - 1)
    if k < 1:
        raise ValueError(f"too few images to hold any out ({n}, {len(keep)} kept to train)")
    held = np.zeros(n, bool)
    held[rng.permutation(free)[:k]] = True
    return held


def domain_gap(synthia, real: Sequence[str | Path], recipe: DomainGapRecipe | None = None,
               progress: Callable[[str, int, int], None] | None = None,
               **fields) -> dict:  # fmt: skip
    """The gap between the Synthia renders of ``synthia`` (a
    :class:`~qupaint.synthia.SynthiaConfig`, or a folder of images) and the ``real``
    images (folders or files): the held-out ROC AUC of a CNN told to tell their windows
    apart (see the module doc). ``recipe`` (:class:`DomainGapRecipe`, or its fields as
    keywords). Returns ``auc``, the window counts, the images held out and the seconds."""
    from dataclasses import replace

    r = replace(recipe or DomainGapRecipe(), **fields)
    t0 = time.perf_counter()
    rng = np.random.default_rng(r.seed)
    real_files = image_files(real, "real", 2)
    if isinstance(synthia, (str, Path)):
        syn_images = [read_rgb(f) for f in image_files([synthia], "synthia", 2)][
            : r.synthetic_images]
    else:
        from qupaint.synthia import Synthia

        gen = Synthia(synthia)
        syn_images = []
        for k in range(r.synthetic_images):
            syn_images.append(gen.sample(k).image)
            if progress:
                progress("render", k + 1, r.synthetic_images)
    sources = _background_sources()
    keep = [k for k, f in enumerate(real_files) if f.name in sources]
    real_held = _split(len(real_files), r.test_share, rng, keep)
    syn_held = _split(len(syn_images), r.test_share, rng)
    # balanced: as many synthetic windows as real ones, in each split
    n_real_train, n_real_test = int((~real_held).sum()), int(real_held.sum())
    per_syn_train = max(1, round(r.windows_per_image * n_real_train / max(1, (~syn_held).sum())))
    per_syn_test = max(1, round(r.windows_per_image * n_real_test / max(1, syn_held.sum())))
    sets = {("real", False): [], ("real", True): [], ("synthetic", False): [],
            ("synthetic", True): []}  # fmt: skip
    for k, f in enumerate(real_files):
        sets["real", bool(real_held[k])].append(_windows(read_rgb(f), r.windows_per_image,
                                                         r.window, rng, r.substrate_only))
    for k, img in enumerate(syn_images):
        n = per_syn_test if syn_held[k] else per_syn_train
        sets["synthetic", bool(syn_held[k])].append(_windows(img, n, r.window, rng,
                                                             r.substrate_only))  # fmt: skip
    data = {key: np.concatenate(v) for key, v in sets.items()}
    for (name, held), x in data.items():
        if not len(x):
            raise ValueError(f"no {'held-out' if held else 'training'} {name} window"
                             + (" of bare substrate" if r.substrate_only else ""))
    x_train = np.concatenate([data["real", False], data["synthetic", False]])
    y_train = np.r_[np.zeros(len(data["real", False])), np.ones(len(data["synthetic", False]))]
    if r.threads:
        torch.set_num_threads(r.threads)
    torch.manual_seed(r.seed)
    net = window_classifier()
    opt = torch.optim.AdamW(net.parameters(), lr=r.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r.lr, total_steps=r.steps,
                                                pct_start=0.1)  # fmt: skip
    xt, yt = torch.from_numpy(x_train).float(), torch.from_numpy(y_train).float()
    net.train()
    for step in range(r.steps):
        idx = torch.from_numpy(rng.integers(0, len(xt), r.batch))
        xb = xt[idx]
        k = int(rng.integers(0, 4))  # flips and quarter turns: no orientation to learn
        xb = torch.rot90(xb, k, (2, 3))
        if rng.random() < 0.5:
            xb = torch.flip(xb, (3,))
        loss = nn.functional.binary_cross_entropy_with_logits(net(xb)[:, 0], yt[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress:
            progress("train", step + 1, r.steps)
    net.eval()
    with torch.no_grad():
        def scores(x):
            return torch.cat([net(torch.from_numpy(x[i : i + 256]).float())[:, 0]
                              for i in range(0, len(x), 256)]).numpy()  # fmt: skip

        s_syn, s_real = scores(data["synthetic", True]), scores(data["real", True])
    return {
        "auc": round(roc_auc(s_syn, s_real), 4),
        "windows": {"train_real": len(data["real", False]),
                    "train_synthetic": len(data["synthetic", False]),
                    "test_real": len(s_real), "test_synthetic": len(s_syn)},  # fmt: skip
        "real_images": len(real_files),
        "real_images_held_out": [real_files[k].name for k in np.flatnonzero(real_held)],
        "synthetic_images": len(syn_images),
        "recipe": asdict(r),
        "seconds": round(time.perf_counter() - t0, 1),
    }
