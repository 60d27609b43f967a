"""Detection measured on whole real micrographs with expert instance masks.

The data layout is that of ``shared/data/real/maskterial-labelled/<set>/``: ``images/<id>.jpg``
and ``masks/<id>.png``, an 8-bit mask with 0 for everything else and k for the k-th thin
flake (layer numbers not given). Thick flakes, bulk crystals, dust and residue are not
marked, so a thin detection there is false.

The protocol (the one the project's issues quote):

- a flake is *found* when a thin detection's box has IoU >= 0.5 with the box of its mask;
- *thin-flake AP50* is COCO bbox AP at IoU 0.5 over all images with one class: every Mono
  and Few detection is a thin detection, every other thin detection is a false positive;
  area ranges off (COCO's "all");
- *unmatched thin detections per image* counts the thin detections that match no flake.

Each image also gets a *setting*, read from its substrate's colour (``grey`` for a
white-balanced image, ``dark`` for a darker exposure, mean below 100 of 255, ``colour``
otherwise), so that the figures can be quoted per camera setting.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qupaint._io import IMAGE_EXTS, read_mask, read_rgb
from qupaint.bench.metrics import box_iou_xywh, evaluate_detection
from qupaint.categories import THICK_MIN_LAYERS

__all__ = ["MaskedImage", "calibrated_detector_from", "camera_setting", "evaluate_real",
           "evaluate_real_loo", "find_masked_images", "mask_boxes", "other_camera_settings",
           "score_real", "timed_runs"]  # fmt: skip


@dataclass(frozen=True)
class MaskedImage:
    """One whole micrograph and its instance mask."""

    image: Path
    mask: Path

    @property
    def name(self) -> str:
        return self.image.stem


def find_masked_images(images_dir: str | os.PathLike, masks_dir: str | os.PathLike | None = None
                       ) -> list[MaskedImage]:  # fmt: skip
    """Pairs (image, mask) of a folder: ``masks_dir/<stem>.png`` for every image of
    ``images_dir`` (default: the ``masks`` folder beside ``images_dir``)."""
    images = Path(images_dir)
    if not images.is_dir():
        raise ValueError(f"images: {str(images)!r} is not a folder")
    masks = Path(masks_dir) if masks_dir is not None else images.parent / "masks"
    if not masks.is_dir():
        raise ValueError(f"masks: {str(masks)!r} is not a folder (give --masks)")
    out = []
    for f in sorted(images.iterdir()):
        if f.suffix.lower() not in IMAGE_EXTS:
            continue
        m = masks / f"{f.stem}.png"
        if not m.is_file():
            raise ValueError(f"masks: no mask {m.name} for image {f.name} in {masks}")
        out.append(MaskedImage(f, m))
    if not out:
        raise ValueError(f"images: no image files in {images}")
    return out


def mask_boxes(mask: np.ndarray) -> np.ndarray:
    """[N, 4] ``x, y, w, h`` boxes of the instances 1..max of an instance mask (in pixel-edge
    coordinates: a one-pixel instance at (x, y) is ``[x, y, 1, 1]``); absent ids are skipped."""
    from scipy import ndimage

    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be [H, W]; got shape {m.shape}")
    boxes = []
    for sl in ndimage.find_objects(m.astype(np.int64)):
        if sl is None:
            continue
        ys, xs = sl
        boxes.append([xs.start, ys.start, xs.stop - xs.start, ys.stop - ys.start])
    return np.asarray(boxes, float).reshape(-1, 4)


def camera_setting(image: np.ndarray) -> str:
    """``dark``, ``grey`` or ``colour``: the camera setting an image was taken with, read from
    the median of its pixels (which is the substrate on a flake-hunting chip)."""
    med = np.median(np.asarray(image)[::8, ::8].reshape(-1, 3).astype(float), axis=0)
    if med.mean() < 100:
        return "dark"
    if (med.max() - med.min()) / med.mean() < 0.08:
        return "grey"
    return "colour"


def other_camera_settings(image: np.ndarray) -> dict[str, np.ndarray]:
    """The same chip under other camera settings, uint8: ``dark`` (a darker exposure, x
    0.45), ``white-balanced`` (a gain per channel that makes the substrate grey) and
    ``gamma`` (an encoded, non-linear response, ``v^(1/1.4)``)."""
    f = np.asarray(image).astype(float) / 255
    sub = np.median(f[::8, ::8].reshape(-1, 3), 0)
    out = {"dark": f * 0.45, "white-balanced": f * (sub.max() / sub), "gamma": f ** (1 / 1.4)}
    return {k: np.clip(v * 255 + 0.5, 0, 255).astype(np.uint8) for k, v in out.items()}


def _is_thin(d: dict) -> bool:
    layers = d.get("layers")
    if layers is not None:
        return 1 <= int(layers) < THICK_MIN_LAYERS
    return int(d["category_id"]) in (1, 2)


def score_real(gt_boxes: Sequence[np.ndarray], detections: Sequence[Sequence[dict]],
               groups: Sequence[str] | None = None) -> dict:  # fmt: skip
    """Recall at box IoU 0.5, thin-flake AP50 and unmatched thin detections per image.

    Parameters
    ----------
    gt_boxes : per image, the [N, 4] boxes of its thin flakes (:func:`mask_boxes`).
    detections : per image, detections with ``bbox`` [x, y, w, h], ``score`` and ``layers``
        (or ``category_id``); only thin ones (1-5 layers: Mono and Few) count.
    groups : per image, a group name (a set, a camera setting): the figures are also given
        per group under ``"groups"``.

    Returns
    -------
    dict with ``images``, ``flakes``, ``found``, ``recall``, ``AP50``, ``thin_detections``,
    ``unmatched_per_image``, ``per_image`` (found / flakes / unmatched each) and ``groups``.
    """
    if len(gt_boxes) != len(detections):
        raise ValueError(f"{len(gt_boxes)} images of ground truth but {len(detections)} of "
                         "detections")  # fmt: skip
    images, anns, preds, per_image = [], [], [], []
    for i, (g, dets) in enumerate(zip(gt_boxes, detections, strict=True)):
        g = np.asarray(g, float).reshape(-1, 4)
        thin = [d for d in dets if _is_thin(d)]
        images.append({"id": i + 1, "width": 1, "height": 1})
        for b in g:
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1,
                         "bbox": [float(v) for v in b], "area": float(b[2] * b[3]),
                         "iscrowd": 0})  # fmt: skip
        for d in thin:
            preds.append({"image_id": i + 1, "category_id": 1, "bbox": list(d["bbox"]),
                          "score": float(d["score"])})  # fmt: skip
        if len(thin) and len(g):
            iou = box_iou_xywh(np.asarray([d["bbox"] for d in thin], float)[:, None], g[None])
            found = int((iou >= 0.5).any(0).sum())
            unmatched = int((~(iou >= 0.5).any(1)).sum())
        else:
            found, unmatched = 0, len(thin)
        per_image.append({"flakes": len(g), "found": found, "unmatched": unmatched,
                          "thin_detections": len(thin)})  # fmt: skip
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": 1, "name": "thin"}]}  # fmt: skip
    n_flakes = sum(p["flakes"] for p in per_image)
    n_found = sum(p["found"] for p in per_image)
    ap50 = evaluate_detection(gt, preds)["AP50"] if anns else None
    out = {
        "images": len(per_image),
        "flakes": n_flakes,
        "found": n_found,
        "recall": n_found / n_flakes if n_flakes else None,
        "AP50": ap50,
        "thin_detections": len(preds),
        "unmatched_per_image": sum(p["unmatched"] for p in per_image) / max(1, len(per_image)),
        "per_image": per_image,
    }
    if groups is not None:
        if len(groups) != len(per_image):
            raise ValueError("groups: one name per image")
        out["groups"] = {}
        for name in sorted(set(groups)):
            idx = [k for k, gname in enumerate(groups) if gname == name]
            out["groups"][name] = {
                k: v for k, v in score_real([gt_boxes[k] for k in idx],
                                            [detections[k] for k in idx]).items()
                if k != "per_image"
            }  # fmt: skip
    return out


def evaluate_real(
    images_dir: str | os.PathLike,
    masks_dir: str | os.PathLike | None,
    detector: Callable[[np.ndarray], list[dict]],
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Run ``detector(image) -> detections`` on every masked image of a folder and
    :func:`score_real` it, grouped by camera setting; per image also its name, setting and
    the detector's time (``seconds_per_image``: their mean)."""
    pairs = find_masked_images(images_dir, masks_dir)
    return _run_and_score(pairs, lambda k: detector, progress)


def evaluate_real_loo(
    images_dir: str | os.PathLike,
    masks_dir: str | os.PathLike | None,
    detector_from: Callable[[Sequence[MaskedImage]], Callable[[np.ndarray], list[dict]]],
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Leave one image out: for each masked image of a folder, ``detector_from(others)``
    builds a detector from the *other* images (a camera calibrated on their masks, say),
    which then runs on the held-out image alone; the detections of all images are scored
    together as :func:`evaluate_real` scores them. Every fitted quantity is thus taken from
    images it is not scored on."""
    pairs = find_masked_images(images_dir, masks_dir)
    if len(pairs) < 2:
        raise ValueError(f"images: leave-one-out needs at least 2 masked images; got {len(pairs)}")
    out = _run_and_score(
        pairs, lambda k: detector_from([q for j, q in enumerate(pairs) if j != k]), progress)
    out["protocol"] = "leave-one-image-out"
    return out


def timed_runs(pairs: Sequence[MaskedImage], run_for: Callable[[int], Callable],
               progress: Callable[[int, int], None] | None = None):  # fmt: skip
    """For each masked image ``k`` of ``pairs``: ``(pair, image, mask, run_for(k)(image),
    seconds that call took)``, ``progress(k + 1, n)`` after each."""
    import time

    for k, p in enumerate(pairs):
        run = run_for(k)
        img = read_rgb(p.image)
        t0 = time.perf_counter()
        out = run(img)
        dt = time.perf_counter() - t0
        yield p, img, read_mask(p.mask), out, dt
        if progress:
            progress(k + 1, len(pairs))


def _run_and_score(pairs, detector_for, progress) -> dict:
    """``detector_for(k)`` run on image ``k`` of ``pairs``, timed; all scored together."""
    boxes, dets, settings, seconds = [], [], [], []
    for _, img, mask, found, dt in timed_runs(pairs, detector_for, progress):
        boxes.append(mask_boxes(mask))
        settings.append(camera_setting(img))
        dets.append(found)
        seconds.append(dt)
    out = score_real(boxes, dets, settings)
    for row, p, s, t in zip(out["per_image"], pairs, settings, seconds, strict=True):
        row.update(image=p.name, setting=s, seconds=round(t, 4))
    out["seconds_per_image"] = float(np.mean(seconds))
    return out


def calibrated_detector_from(material: str, microscope=None, min_score: float = 0.0,
                             um_per_px: float | None = None, max_layers: int = 5,
                             method: str | None = None, adapt_steps: int = 0):  # fmt: skip
    """For :func:`evaluate_real_loo`: a function that calibrates a camera on some masked
    images (:func:`qupaint.detect.calibrate.calibrate_from_masks`, without layer numbers,
    as ``qupaint calibrate --images --masks`` does) and returns the detector using it
    (detections scoring ``min_score`` or more) with ``method``. With ``adapt_steps``, the
    segmenter the ``learned`` and ``fused`` methods use is also fine-tuned on those images
    (:func:`qupaint.seg.adapt.adapt_segmenter`), as the same command does."""
    import itertools
    import tempfile

    from qupaint.color import Microscope
    from qupaint.detect import DetectorSettings, detect
    from qupaint.detect.calibrate import calibrate_from_masks

    start = Microscope.load(microscope if microscope is not None else "2dmatgmm")
    scale = start.scale_or(um_per_px)
    keep = tempfile.TemporaryDirectory(prefix="qupaint-loo-")
    runs = itertools.count()

    def build(pairs):
        fit = calibrate_from_masks(list(pairs), material, start.camera, um_per_px=scale,
                                   max_layers=max_layers)  # fmt: skip
        if adapt_steps:
            from qupaint.seg.adapt import AdaptRecipe, adapt_segmenter

            w = Path(keep.name) / f"adapted-{next(runs)}.safetensors"
            adapt_segmenter(list(pairs), material, recipe=AdaptRecipe(steps=adapt_steps), out=w)
            fit["segmenter"] = str(w)
        mic = Microscope.from_dict(fit, "calibration")  # read as its camera file would be
        settings = DetectorSettings.from_microscope(mic, um_per_px=scale, method=method)

        def run(img):
            return [d for d in detect(img, material, settings) if d["score"] >= min_score]

        run.microscope = mic
        return run

    build.workdir = keep  # the adapted weights live as long as the builder
    return build
