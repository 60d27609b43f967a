"""Training the thin-flake segmenter on Synthia only (no real label is ever used).

``train_segmenter`` renders ``images`` realistic Synthia images
(:meth:`~qupaint.synthia.SynthiaConfig.realistic`) with their exact pixel masks, in worker
processes, and trains :class:`~qupaint.seg.net.UNet` on random crops (flips and quarter
turns) to mark thin flakes: 1-5 layers, the flakes labs hunt for. Thicker flakes, folds
doubled past 5 layers, bulk crystals, residue, dust and scratches are background. The loss
is binary cross-entropy plus soft Dice (the thin pixels are rare). Weights go to a
``.safetensors`` file with a ``.json`` beside it (architecture, settings, validation IoU on
held-out Synthia images, the command that reproduces it).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from qupaint._io import atomic_write_bytes, write_json
from qupaint._pool import run_tasks
from qupaint.seg.net import UNet, contrast_input, material_planes, with_planes

__all__ = ["SegmenterRecipe", "architecture", "fit", "render_training_set", "save_segmenter",
           "thin_mask", "train_segmenter"]

#: the thickest flake the segmenter marks (QF-Bench "Few" ends at 5 layers)
THIN_MAX_LAYERS = 5
#: a thin flake whose contrast stays under this in every channel cannot be seen (hBN
#: monolayers, say): training neither rewards nor punishes the network on it
VISIBLE_CONTRAST = 0.02

_SYN = None


def thin_mask(sample, visible_only: bool = False) -> np.ndarray:
    """[H, W] bool: pixels of 1-5 layer flakes of a ``Synthia.sample(..., masks=True)``;
    with ``visible_only``, only those whose contrast reaches :data:`VISIBLE_CONTRAST`."""
    if sample.masks is None:
        raise ValueError("sample: render it with masks=True")
    keep = np.zeros(len(sample.annotations) + 1, bool)
    for k, a in enumerate(sample.annotations):
        keep[k + 1] = a["layers"] <= THIN_MAX_LAYERS and not a.get("bulk", False)
        if visible_only and "contrast" in a:
            keep[k + 1] &= max(abs(v) for v in a["contrast"]) >= VISIBLE_CONTRAST
    return keep[sample.masks]


def boundary_mask(sample, width: int = 1) -> np.ndarray:
    """[H, W] bool: thin-flake pixels within ``width`` px of another flake or flake part
    (terraces, folds, a thin flake grown from a crystal): where the segmenter must cut one
    instance from its neighbour. A flake's edge on bare chip is not a cut."""
    from scipy.ndimage import binary_dilation

    ids, thin = sample.masks, thin_mask(sample)
    cut = np.zeros(ids.shape, bool)
    for axis in (0, 1):
        lo = (slice(0, -1), slice(None)) if axis == 0 else (slice(None), slice(0, -1))
        hi = (slice(1, None), slice(None)) if axis == 0 else (slice(None), slice(1, None))
        pair = (ids[lo] != ids[hi]) & (ids[lo] > 0) & (ids[hi] > 0)
        cut[lo] |= pair & thin[lo]
        cut[hi] |= pair & thin[hi]
    if width > 1:
        cut = binary_dilation(cut, iterations=width - 1) & thin
    return cut


def _init(cfg: dict) -> None:
    global _SYN
    from qupaint.synthia import Synthia, SynthiaConfig

    torch.set_num_threads(1)
    _SYN = Synthia(SynthiaConfig.realistic(**cfg))


def _render(index: int) -> tuple[np.ndarray, np.ndarray, str]:
    s = _SYN.sample(index, masks=True)
    thin, seen = thin_mask(s), thin_mask(s, visible_only=True)
    three = np.stack([seen, boundary_mask(s, 2) & seen, thin & ~seen])
    return s.image, np.packbits(three, axis=-1), s.info["material"]


# per step, the settings that turn off what it adds; a step of COMPOSITE_STEPS keeps its
# own additions and those of the steps before it, and turns off the later ones
_STEP_GROUPS: dict[str, dict] = {
    "backgrounds": {},
    "shapes": dict(sliver_prob=0.0, rough_px=(0.0, 0.0)),
    "terraces": dict(terrace_prob=0.0, fold_prob=0.0, touching_prob=0.0, crystal_prob=0.0),
    "camera": dict(exposure=(1.0, 1.0), gamma_prob=0.0, jpeg_quality=0, field_stop_prob=0.0),
    "pasted": dict(paste_prob=0.0),
}
#: the steps of the ``real-chips`` data (issue 51's ablation), each adding to the last:
#: Synthia's convex one-tone flakes on real chips; + slivers and ragged edges; + terraces,
#: folds, touching flakes and flakes running out from the chip's crystals; + the
#: microscope and camera: the field stop's dark edge, exposure, gamma and JPEG; + real
#: labelled flakes cut out of their crops and pasted (the full
#: :class:`~qupaint.synthia.composite.CompositeConfig`, with ``crops``). Each is the
#: :class:`~qupaint.synthia.composite.CompositeConfig` overrides that turn the later ones off.
COMPOSITE_STEPS: dict[str, dict] = {
    step: {k: v for later in list(_STEP_GROUPS)[n + 1 :] for k, v in _STEP_GROUPS[later].items()}
    for n, step in enumerate(_STEP_GROUPS)
}


def composite_overrides(step: str) -> dict:
    """The :class:`~qupaint.synthia.composite.CompositeConfig` overrides of ``step``: a name
    of :data:`COMPOSITE_STEPS`, or groups joined by ``+`` (``backgrounds+pasted``: real
    backgrounds and pasted real flakes, no other step's additions)."""
    if step in COMPOSITE_STEPS:
        return dict(COMPOSITE_STEPS[step])
    groups = step.split("+")
    bad = [g for g in groups if g not in _STEP_GROUPS]
    if bad:
        raise ValueError(f"step: one of {', '.join(COMPOSITE_STEPS)}, or groups joined by '+' "
                         f"(e.g. backgrounds+pasted); got {step!r}")  # fmt: skip
    return {k: v for g in _STEP_GROUPS if g not in groups for k, v in _STEP_GROUPS[g].items()}


#: a cut-out crop is pasted only when its flake covers this share of its box or more
PIECE_MIN_SHARE = 0.15


def crop_pieces(folder) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """The labelled real flakes under ``folder`` (``<layers>/<Material>_<image>_ann<k>_
    L<layers>.png``, :func:`~qupaint.detect.crops.find_layer_crops`) of at most
    :data:`THIN_MAX_LAYERS` layers, cut out (:func:`~qupaint.detect.crops.cut_out_crop`) for
    :class:`~qupaint.synthia.composite.ChipComposer`: ``(ratio float16, part, material)``.
    Crops whose flake covers under :data:`PIECE_MIN_SHARE` of the box, or is not darker
    than the substrate in green (a cut that took something else for the flake), are left
    out. The layer label is used only to keep thin flakes."""
    from qupaint._io import read_rgb
    from qupaint.detect.crops import cut_out_crop, find_layer_crops

    out = []
    for c in find_layer_crops(folder):
        if c.layers > THIN_MAX_LAYERS:
            continue
        ratio, part = cut_out_crop(read_rgb(c.path))
        flake = part == 1
        if flake.mean() < PIECE_MIN_SHARE or np.median(ratio[flake][:, 1]) >= 1.0:
            continue
        material = "graphene" if c.material.lower() == "graphene" else c.material
        out.append((ratio.astype(np.float16), part, material))
    return out


def chip_files(folders, split: str = "all", hold_out_every: int = 4) -> list[Path]:
    """The real micrographs (JPEG/PNG/TIFF) under ``folders``, recursively, sorted; with
    ``split`` ``"train"`` all but every ``hold_out_every``-th (counting from the last of
    each group of ``hold_out_every``), with ``"held-out"`` only those: the unlabelled chips
    that score false instances were never composited onto."""
    from qupaint._io import image_files

    out = image_files(folders, "chips")
    if split == "all" or hold_out_every < 2:
        return out
    held = [k % hold_out_every == hold_out_every - 1 for k in range(len(out))]
    if split not in ("train", "held-out"):
        raise ValueError(f"split: all, train or held-out; got {split!r}")
    return [f for f, h in zip(out, held, strict=True) if h == (split == "held-out")]


_COMP = None


def _init_chips(files: list[str], packed: list[np.ndarray], seed: int, cfg: dict,
                pieces=None) -> None:  # fmt: skip
    global _COMP
    from qupaint.synthia.composite import ChipComposer, CompositeConfig

    torch.set_num_threads(1)
    from qupaint._io import read_rgb

    chips = [read_rgb(f) for f in files]
    ignore = [np.unpackbits(m, axis=-1, count=c.shape[1]).astype(bool)
              for m, c in zip(packed, chips, strict=True)]  # fmt: skip
    _COMP = ChipComposer(chips, CompositeConfig(**cfg), ignore, seed, pieces)


def _render_chip(index: int) -> tuple[np.ndarray, np.ndarray, str]:
    c = _COMP.sample(index)
    return c.image, np.packbits(c.target, axis=-1), c.material


def chip_ignore_masks(files, progress=None) -> list[np.ndarray]:
    """Per chip, :func:`~qupaint.synthia.composite.ignore_mask` packed along x (the physics
    detector's thin candidates, left out of the loss)."""
    from qupaint._io import read_rgb
    from qupaint.synthia.composite import chip_material, ignore_mask

    out = []
    for k, f in enumerate(files):
        out.append(np.packbits(ignore_mask(read_rgb(f), chip_material(f)), axis=-1))
        if progress:
            progress(k + 1, len(files))
    return out


def render_training_set(
    n: int, seed: int = 0, size: int = 384, workers: int = 2, start: int = 0, progress=None,
    chips=None, step: str = "backgrounds", hold_out_every: int = 4, crops=None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``n`` training images [n, size, size, 3] uint8, their targets [n, 3, size, size]
    bool (visible thin flake, cut, ignore) and their flakes' materials, indices
    ``start .. start + n - 1`` of seed
    ``seed``: realistic Synthia renders, or with ``chips`` (folders of unlabelled real
    micrographs) Synthia flakes composited onto them as :data:`COMPOSITE_STEPS` ``step``
    says (:mod:`qupaint.synthia.composite`), every ``hold_out_every``-th chip kept out
    (:func:`chip_files`), and with ``crops`` (a folder of labelled layer crops) real thin
    flakes pasted too (:func:`crop_pieces`)."""
    if chips:
        over = composite_overrides(step)
        files = chip_files(chips, "train", hold_out_every)
        packed = chip_ignore_masks(files)
        pieces = crop_pieces(crops) if crops and over.get("paste_prob", 1.0) > 0 else None
        fn, init = _render_chip, _init_chips
        args = ([str(f) for f in files], packed, seed, dict(size=size, **over), pieces)
    else:
        fn, init, args = _render, _init, ({"seed": seed, "height": size, "width": size},)
    imgs = np.empty((n, size, size, 3), np.uint8)
    masks = np.empty((n, 3, size, size), bool)
    materials = []
    for k, (im, m, mat) in enumerate(
        run_tasks(fn, range(start, start + n), workers, init, args, chunksize=8)
    ):
        materials.append(mat)
        imgs[k] = im
        masks[k] = np.unpackbits(m, axis=-1, count=size).astype(bool)
        if progress:
            progress(k + 1, n)
    return imgs, masks, materials


def _batch(rng, masks, inputs, batch: int, crop: int, planes=None):
    """``batch`` random crops (quarter turns, flips) of the inputs and their targets; with
    ``planes`` ([n, 3]: each image's material planes) those appended as constant planes."""
    n, _, H, W = masks.shape
    xs, ys = [], []
    for _ in range(batch):
        i = int(rng.integers(n))
        y0, x0 = int(rng.integers(0, H - crop + 1)), int(rng.integers(0, W - crop + 1))
        x = inputs[i][:, y0 : y0 + crop, x0 : x0 + crop]
        m = torch.from_numpy(masks[i, :, y0 : y0 + crop, x0 : x0 + crop])
        k = int(rng.integers(4))
        x, m = torch.rot90(x, k, (1, 2)), torch.rot90(m, k, (1, 2))
        if rng.random() < 0.5:
            x, m = x.flip(2), m.flip(2)
        if planes is not None:
            x = with_planes(x, planes[i])
        xs.append(x)
        ys.append(m)
    return torch.stack(xs), torch.stack(ys).float()


def _loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice on the thin channel, BCE on the cut channel; pixels of invisible
    thin flakes (target channel 2) count for neither."""
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    thin, cut = logits[:, :1], logits[:, 1:2]
    t_thin, t_cut, weight = target[:, :1], target[:, 1:2], 1.0 - target[:, 2:3]
    p = torch.sigmoid(thin) * weight
    inter = (p * t_thin).sum()
    dice = 1 - (2 * inter + 1) / (p.sum() + t_thin.sum() + 1)
    w = torch.tensor(3.0)
    return (bce(thin, t_thin, weight=weight, pos_weight=w) + dice
            + 0.5 * bce(cut, t_cut, weight=weight, pos_weight=w))  # fmt: skip


def fit(net: UNet, next_batch, steps: int, lr: float, progress=None) -> list[float]:
    """``steps`` AdamW steps (weight decay 1e-4, one-cycle to ``lr``, 10 % warm-up) of
    :func:`_loss` on ``next_batch()`` -> (inputs, targets); the losses. Pretraining and
    few-shot adaptation (:mod:`qupaint.seg.adapt`) both train this way."""
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    losses = []
    for step in range(steps):
        x, y = next_batch()
        loss = _loss(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if progress:
            progress(step + 1, steps)
    return losses


def architecture(net: UNet) -> dict:
    """What :func:`~qupaint.seg.load_segmenter` needs to rebuild ``net``."""
    return {"name": "UNet", "width": net.width, "depth": net.depth, "stem": net.stem,
            "in": "contrast" if net.in_channels == 3 else "contrast+material"}  # fmt: skip


def save_segmenter(out: Path, net: UNet, meta: dict) -> None:
    """Write ``net`` to ``out`` (``.safetensors``: floating tensors in float16, its
    :func:`architecture` as metadata), atomically, then ``meta`` beside it as ``.json``:
    a run killed in between never leaves a half-written file."""
    from safetensors.torch import save

    state = {k: v.detach().to(torch.float16).contiguous() if v.is_floating_point() else v
             for k, v in net.state_dict().items()}  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, save(state, metadata={"qupaint": json.dumps(architecture(net))}))
    write_json(out.with_suffix(".json"), meta)


@torch.no_grad()
def _val_iou(net, inputs, masks, planes=None) -> float:
    net.eval()
    inter = union = 0
    for k, (x, m) in enumerate(zip(inputs, masks, strict=True)):
        if planes is not None:
            x = with_planes(x, planes[k])
        p = (net(x[None])[0, 0].numpy() > 0) & ~m[2]
        inter += np.sum(p & m[0])
        union += np.sum(p | m[0])
    net.train()
    return float(inter / max(union, 1))


@dataclass(frozen=True)
class SegmenterRecipe:
    """How :func:`train_segmenter` trains: ``images`` realistic Synthia images of ``size``
    px (rendered with ``workers`` processes, seed ``seed``), ``steps`` AdamW steps of
    ``batch`` crops of ``crop`` px at one-cycle peak ``lr``, a U-Net ``width`` channels wide
    and ``depth`` levels deep (``stem`` 2: at half resolution, see
    :class:`~qupaint.seg.net.UNet`), on ``threads`` torch threads (None: torch's default).
    With ``chips`` (folders of unlabelled real micrographs) the images are Synthia flakes
    composited onto those chips, as :data:`COMPOSITE_STEPS` ``step`` says (or
    :func:`composite_overrides`), with ``crops`` (a folder of labelled layer crops) real
    thin flakes pasted where the step has ``pasted``. With
    ``material`` the network also reads the flakes' material
    (:func:`~qupaint.seg.net.material_planes`)."""

    images: int = 800
    steps: int = 1500
    batch: int = 8
    crop: int = 256
    width: int = 12
    depth: int = 4
    lr: float = 3e-3
    seed: int = 0
    size: int = 320
    workers: int = 2
    threads: int | None = None
    stem: int = 2
    chips: tuple[str, ...] = ()
    step: str = "backgrounds"
    hold_out_every: int = 4
    material: bool = True
    crops: str = ""

    def __post_init__(self):
        if self.images < 2 or self.steps < 1 or self.batch < 1:
            raise ValueError("images >= 2, steps >= 1 and batch >= 1 are needed")
        if not 16 <= self.crop <= self.size:
            raise ValueError(f"crop must lie in 16..size ({self.size}); got {self.crop}")


def train_segmenter(out: str | Path, recipe: SegmenterRecipe | None = None,
                    command: str | None = None, progress=None, **fields) -> dict:  # fmt: skip
    """Train the thin-flake segmenter on Synthia as ``recipe`` says (or its fields as
    keywords) and write ``out`` (``.safetensors``) and its ``.json``. Returns the JSON's
    content. ``progress(stage, done, total)`` reports."""
    from dataclasses import replace

    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"out must end in .safetensors; got {out}")
    r = replace(recipe or SegmenterRecipe(), **fields)
    images, steps, batch, crop, width, depth, lr, seed, size, workers, threads = (
        r.images, r.steps, r.batch, r.crop, r.width, r.depth, r.lr, r.seed, r.size, r.workers,
        r.threads)  # fmt: skip
    chips = [str(c) for c in r.chips]
    t0 = time.time()
    n_val = max(1, min(32, images // 10))
    imgs, masks, materials = render_training_set(
        images + n_val, seed, size, workers,
        progress=(lambda d, t: progress("render", d, t)) if progress else None,
        chips=chips, step=r.step, hold_out_every=r.hold_out_every, crops=r.crops or None,
    )  # fmt: skip
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    inputs = [contrast_input(im) for im in imgs]
    planes = np.stack([material_planes(m) for m in materials]) if r.material else None
    tr_in, tr_m = inputs[:images], masks[:images]
    va_in, va_m = inputs[images:], masks[images:]
    tr_p, va_p = (planes[:images], planes[images:]) if r.material else (None, None)
    net = UNet(width, depth, in_channels=6 if r.material else 3, stem=r.stem)
    rng = np.random.default_rng(seed)
    t_render = time.time() - t0
    losses = fit(net, lambda: _batch(rng, tr_m, tr_in, batch, crop, tr_p), steps, lr,
                 (lambda d, t: progress("train", d, t)) if progress else None)  # fmt: skip
    iou = _val_iou(net, va_in, va_m, va_p)
    meta = {
        "architecture": architecture(net),
        "task": f"thin flakes, 1-{THIN_MAX_LAYERS} layers, per pixel",
        "training": {
            "data": (f"Synthia flakes composited onto "
                     f"{len(chip_files(chips, 'train', r.hold_out_every))} unlabelled real "
                     f"chips ({', '.join(chips)}; every {r.hold_out_every}th held out), "
                     f"step {r.step!r}"
                     + (f", thin flakes cut from {r.crops} pasted (layer labels only to "
                        "keep 1-5 layers; no masks)" if r.crops and "pasted" in r.step
                        else ", no real labels")
                     if chips else "Synthia, SynthiaConfig.realistic(), no real labels"),
            "images": images,
            "size": size,
            "steps": steps,
            "batch": batch,
            "crop": crop,
            "lr": lr,
            "seed": seed,
            "final_loss_mean_last_100": float(np.mean(losses[-100:])),
            "render_s": round(t_render, 1),
            "total_s": round(time.time() - t0, 1),
            "threads": torch.get_num_threads(),
        },  # fmt: skip
        "validation": {"synthia_images": n_val, "pixel_iou": round(iou, 4)},
        "command": command,
    }
    save_segmenter(out, net, meta)
    return meta
