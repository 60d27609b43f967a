"""Layer counting on real flakes: measure per-channel contrast on labelled crops, calibrate
the camera on a few of them, classify the rest, and compare with what the labels allow.

The data this is built for are tight bounding-box crops of expert-labelled flakes, one per
file, named ``<Material>_<image>_ann<k>_L<layers>.png`` in folders named by the layer count
(the 2DMatGMM layer crops; see ``shared/data/real/README.md``). Any folder laid out that way
works.

Measuring a crop (:func:`measure_crop`): the pixels (3x3 median-filtered) are split into
``k`` colour clusters (k-means). The substrate is the cluster that holds most of the crop's
border ring; a brighter cluster with at least a quarter of the ring wins over it, because
thin flakes here are darker than the substrate. The flake is the remaining cluster whose
largest connected region spans most of the crop (the crop is the flake's box, so the
labelled flake touches its edges), with its pixel count as the tie-break. Contrast is
``C = I_flake / I_substrate - 1`` per channel on the pixel values. Crops cut from the same
micrograph share one substrate, the median of their estimates (:func:`measure_crops`).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from qupaint._io import read_rgb
from qupaint.color import Camera, channel_contrast
from qupaint.color.calibrate import fit_camera, median_with_error
from qupaint.constants import MIN_SCORE
from qupaint.detect.crops import LayerCrop, cut_out_crop, find_layer_crops, measure_crop

__all__ = [
    "LayerCrop",
    "find_layer_crops",
    "measure_crop",
    "cut_out_crop",
    "measure_crops",
    "classify_layers",
    "evaluate_layer_crops",
    "evaluate_detector_on_crops",
    "evaluate_segmenter_on_crops",
    "crop_canvases",
    "paste_flake",
]

def measure_crops(crops: Sequence[LayerCrop], k: int = 4) -> np.ndarray:
    """[N, 3] contrast of each crop, the substrate shared by crops of one micrograph."""

    flakes, subs = [], []
    for c in crops:
        f, s = measure_crop(read_rgb(c.path), k)
        flakes.append(f)
        subs.append(s)
    flakes, subs = np.asarray(flakes), np.asarray(subs)
    by_source = defaultdict(list)
    for i, c in enumerate(crops):
        by_source[c.source].append(i)
    for idx in by_source.values():
        subs[idx] = np.median(subs[idx], axis=0)
    return flakes / np.maximum(subs, 1e-6) - 1.0


def predicted_contrast(material: str, layers, oxide_nm: float, camera: Camera | None = None,
                       response=None) -> np.ndarray:  # fmt: skip
    """[len(layers), 3] model contrast of ``layers`` through ``camera`` and, when given, its
    tone curve ``response`` (per-channel ``k``: ``1 + C -> (1 + C)^k``)."""
    pred = channel_contrast(material, layers, oxide_nm, camera)
    return pred if response is None else (1.0 + pred) ** np.asarray(response) - 1.0


def classify_layers(
    contrast, material: str, oxide_nm: float, camera: Camera | None = None,
    max_layers: int = 10, sigma: float = 0.02, response=None,
) -> np.ndarray:  # fmt: skip
    """Layer count [N] of measured contrasts [N, 3]: the nearest predicted contrast of
    1..max_layers layers (channels weighted equally, ``sigma`` their common scale; through
    the tone curve ``response`` when given)."""
    C = np.asarray(contrast, dtype=np.float64).reshape(-1, 3)
    K = np.arange(1, max_layers + 1)
    pred = predicted_contrast(material, K, oxide_nm, camera, response)
    return K[((((C[:, None] - pred[None]) / sigma) ** 2).sum(-1)).argmin(1)]


def _knn_cv(X: np.ndarray, y: np.ndarray, k: int = 9, folds: int = 5) -> float:
    """Accuracy of a k-nearest-neighbour classifier fitted to the labels (k-fold CV)."""
    idx = np.random.default_rng(0).permutation(len(y))
    ok = 0
    for f in range(folds):
        te = idx[f::folds]
        tr = np.setdiff1d(idx, te)
        d = ((X[te][:, None] - X[tr][None]) ** 2).sum(-1)
        nn = np.argsort(d, axis=1)[:, : min(k, len(tr))]
        votes = [np.bincount(y[tr][r]).argmax() for r in nn]
        ok += int(np.sum(np.asarray(votes) == y[te]))
    return ok / len(y)


def evaluate_layer_crops(
    root: str | os.PathLike,
    per_class: int = 5,
    calib_layers: Sequence[int] = (1, 2),
    oxide_nm: tuple[float, float] = (50.0, 110.0),
    seeds: int = 10,
    illuminant: str = "A",
    progress=None,
    response: bool = False,
) -> dict:
    """Calibrate on ``per_class`` random flakes of each of ``calib_layers``, classify every
    other crop, per material, repeated over ``seeds`` random draws. ``response``: the
    calibration also fits the camera's tone curve (``fit_camera(response=True)``).

    Returns ``{material: {...}}`` with the calibrated accuracy (mean, std, min over draws),
    the fitted oxides, the accuracy of the uncalibrated sRGB model (D65, at each draw's
    fitted oxide), the ceiling (a 9-nearest-neighbour classifier fitted to the labels
    themselves, 5-fold cross-validated, on the same measured contrasts), the measured median
    contrast per layer and the calibrated model's error on it.
    """
    crops = find_layer_crops(root)
    C = measure_crops(crops)
    out = {}
    materials = sorted({c.material for c in crops})
    for m_i, mat in enumerate(materials):
        sel = np.array([i for i, c in enumerate(crops) if c.material == mat])
        X, y = C[sel], np.array([crops[i].layers for i in sel])
        classes = [int(v) for v in np.unique(y)]
        usable = [L for L in calib_layers if np.sum(y == L) > per_class]
        if not usable:
            continue
        accs, accs0, oxides, errors = [], [], [], []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            calib = {L: rng.choice(np.nonzero(y == L)[0], per_class, replace=False) for L in usable}
            # each layer count's median with its standard error: a channel in which the
            # few drawn flakes disagree weighs less (a draw whose monolayers' blue scattered
            # fitted 58 nm and classified 0.68, against 0.76 for the others)
            med = {L: median_with_error(X[idx]) for L, idx in calib.items()}
            obs = [(mat, L, m) for L, (m, _) in med.items()]
            fit = fit_camera(obs, oxide_nm=oxide_nm, illuminant=illuminant,
                             sigma=np.array([e for _, e in med.values()]),
                             response=response)  # fmt: skip
            test = np.setdiff1d(np.arange(len(y)), np.concatenate(list(calib.values())))
            top = max(classes) + 2
            got = classify_layers(X[test], mat, fit.oxide_nm, fit.camera, top,
                                  response=fit.response)  # fmt: skip
            got0 = classify_layers(X[test], mat, fit.oxide_nm, None, top)
            accs.append(float(np.mean(got == y[test])))
            accs0.append(float(np.mean(got0 == y[test])))
            oxides.append(fit.oxide_nm)
            measured = np.array([np.median(X[test][y[test] == L], axis=0) for L in classes])
            errors.append(np.abs(predicted_contrast(mat, classes, fit.oxide_nm, fit.camera,
                                                    fit.response) - measured))  # fmt: skip
            if progress:
                progress(m_i * seeds + seed + 1, len(materials) * seeds)
        out[mat] = {
            "crops": int(len(y)),
            "per_class": {L: int(np.sum(y == L)) for L in classes},
            "calibrated_accuracy": float(np.mean(accs)),
            "calibrated_accuracy_std": float(np.std(accs)),
            "calibrated_accuracy_min": float(np.min(accs)),
            "uncalibrated_accuracy": float(np.mean(accs0)),
            "ceiling_accuracy": _knn_cv(X, y),
            "oxide_nm": [round(o, 1) for o in oxides],
            "measured_contrast": {
                L: np.median(X[y == L], axis=0).round(4).tolist() for L in classes
            },
            "model_error_median": {
                L: np.median(np.array(errors)[:, i], axis=0).round(4).tolist()
                for i, L in enumerate(classes)
            },  # fmt: skip
            "calibration": {
                "per_class": per_class,
                "layers": list(usable),
                "seeds": seeds,
                "oxide_range_nm": list(oxide_nm),
            },  # fmt: skip
        }
    return out


def paste_flake(
    chip: np.ndarray, flake: np.ndarray, flake_substrate, at: tuple[int, int], camera: Camera,
    field: np.ndarray | None = None,
) -> tuple[np.ndarray, list]:  # fmt: skip
    """(image, box [x, y, w, h]): a real flake crop pasted into ``chip`` (uint8 [H, W, 3]) with
    its top-left corner at ``at`` = (y, x). In the camera's linear values the crop is scaled
    so that its substrate (``flake_substrate``, pixel values as :func:`measure_crop` gives
    them) matches the chip's substrate ``field`` there, so its contrast is kept. ``field``
    defaults to the chip's :func:`~qupaint.detect.contrast.substrate_field`."""
    from qupaint.detect.contrast import linear_pixels, substrate_field

    if field is None:
        field = substrate_field(linear_pixels(chip, camera), (chip >= 250).any(-1))[0]
    y, x = at
    h, w = flake.shape[:2]
    lut = camera.decode_table()
    patch = lut[flake] / lut[np.round(flake_substrate).astype(int)] * field[y : y + h, x : x + w]
    out = chip.copy()
    out[y : y + h, x : x + w] = np.clip(np.round(camera.response(patch) * 255), 0, 255)
    return out, [x, y, w, h]


def _fixed_camera_prior(camera: Camera) -> dict:
    """A prior that holds ``camera`` (fit_camera then fits the oxide only)."""
    return {
        "centers_nm": tuple((c, 0.5) for c in camera.centers_nm),
        "widths_nm": tuple((w, 0.5) for w in camera.widths_nm),
        "na": (camera.na, 0.005),
    }


def crop_canvases(crops: Sequence[LayerCrop], rng: np.random.Generator, grid: int = 4):
    """Yield ``(image uint8, [(box xywh, layers), ...], crops done)``: the real crops of
    one material pasted, ``grid`` x ``grid`` per canvas in random order, each scaled so its
    substrate (:func:`measure_crop`) matches the median substrate, on a flat canvas of that
    colour with the crops' own pixel noise (the median absolute difference of neighbouring
    border pixels, over sqrt(2))."""

    images, subs, noises = [], [], []
    for c in crops:
        a = np.asarray(read_rgb(c.path), dtype=np.float64)
        _, s = measure_crop(a)
        images.append(a)
        subs.append(s)
        # the pixel noise, from neighbour differences along the border rows and columns
        # (robust: a tight crop's border also runs over the flake and across its edges)
        d = np.concatenate([np.diff(a[0], axis=0), np.diff(a[-1], axis=0),
                            np.diff(a[:, 0], axis=0), np.diff(a[:, -1], axis=0)])  # fmt: skip
        noises.append(1.4826 / np.sqrt(2) * np.median(np.abs(d), axis=0))
    sub = np.median(subs, axis=0)
    noise = np.median(noises, axis=0)
    cell = int(max(max(a.shape[:2]) for a in images) + 24)
    order = rng.permutation(len(crops))
    for start in range(0, len(order), grid * grid):
        part = order[start : start + grid * grid]
        canvas = sub + noise * rng.standard_normal((grid * cell, grid * cell, 3))
        gts = []
        for slot, j in enumerate(part):
            a = images[j] * (sub / np.maximum(subs[j], 1e-6))
            h, w = a.shape[:2]
            y0 = (slot // grid) * cell + int(rng.integers(0, cell - h + 1))
            x0 = (slot % grid) * cell + int(rng.integers(0, cell - w + 1))
            canvas[y0 : y0 + h, x0 : x0 + w] = a
            gts.append(([x0, y0, w, h], int(crops[j].layers)))
        yield np.clip(canvas + 0.5, 0, 255).astype(np.uint8), gts, start + len(part)


def evaluate_segmenter_on_crops(
    root: str | os.PathLike, model=None, grid: int = 4, seed: int = 0, progress=None
) -> dict:
    """The Synthia-trained thin-flake segmenter (:func:`qupaint.seg.segment`) on the real
    labelled flakes, pasted as for :func:`evaluate_detector_on_crops`. A labelled flake is
    found when a predicted instance's box overlaps its crop with IoU >= 0.5 (recall, per
    layer count too). Precision counts an instance as right when it matches a crop that
    way; instances inside a crop that match no label (real unlabelled neighbours, or a
    flake split in two) are reported apart from those on the open canvas."""
    from qupaint.bench.metrics import box_iou_xywh
    from qupaint.seg import instance_boxes, load_segmenter, segment

    net = load_segmenter(model) if not hasattr(model, "forward") else model
    crops = find_layer_crops(root)
    out = {}
    rng = np.random.default_rng(seed)
    for m_i, mat in enumerate(sorted({c.material for c in crops})):
        mine = [c for c in crops if c.material == mat]
        found: dict[int, list[bool]] = {}
        n_pred = matched = inside = 0
        for img, gts, done in crop_canvases(mine, rng, grid):
            lab = segment(img, net, material=mat)
            boxes = list(instance_boxes(lab).values())
            n_pred += len(boxes)
            used = set()
            for box, layers in gts:
                ious = [box_iou_xywh(box, b) for b in boxes]
                k = int(np.argmax(ious)) if ious else -1
                ok = k >= 0 and ious[k] >= 0.5
                found.setdefault(layers, []).append(ok)
                if ok:
                    used.add(k)
            matched += len(used)
            for k, b in enumerate(boxes):
                if k not in used and any(box_iou_xywh(g, b) > 0 for g, _ in gts):
                    inside += 1
            if progress:
                progress(m_i, done, len(mine))
        allf = [v for f in found.values() for v in f]
        out[mat] = {
            "flakes": len(mine),
            "recall_iou50": float(np.mean(allf)),
            "recall_by_layers": {str(k): float(np.mean(v)) for k, v in sorted(found.items())},
            "instances": n_pred,
            "precision_iou50": matched / max(n_pred, 1),
            "unmatched_inside_crops": inside,
            "unmatched_on_canvas": n_pred - matched - inside,
        }
    return out


def evaluate_detector_on_crops(
    root: str | os.PathLike,
    camera: Camera | str = "2dmatgmm",
    per_class: int = 5,
    grid: int = 4,
    seed: int = 0,
    oxide_range: tuple[float, float] = (50.0, 110.0),
    min_score: float = MIN_SCORE,
    progress=None,
) -> dict:
    """The physics detector on real labelled flakes: every crop is pasted, scaled so its
    substrate matches, on a flat canvas of the material's substrate colour with the crops'
    own pixel noise (``grid`` x ``grid`` crops per canvas), and the detector runs on the
    canvas with ``camera`` and the oxide fitted (camera held) to ``per_class`` flakes of
    1 and 2 layers. Detections scoring at least ``min_score`` count (the CLI's default). A
    labelled flake counts as found when a detection's box overlaps its crop with IoU >= 0.5;
    found flakes are scored for their layer count. Class-agnostic AP50 treats every other
    detection as false, although many are real unlabelled neighbours inside the crops.

    The flakes, their neighbours in the crop and their edges are real; the substrate
    between crops is synthetic (real chips' debris and vignetting are not in it).
    """
    from qupaint.bench.metrics import box_iou_xywh, evaluate_detection
    from qupaint.detect import detect

    cam = Camera.resolve(camera)
    crops = find_layer_crops(root)
    C = measure_crops(crops)
    out = {}
    materials = sorted({c.material for c in crops})
    rng = np.random.default_rng(seed)
    for m_i, mat in enumerate(materials):
        idx = [i for i, c in enumerate(crops) if c.material == mat]
        y = np.array([crops[i].layers for i in idx])
        calib = {L: rng.choice(np.nonzero(y == L)[0], per_class, replace=False)
                 for L in (1, 2) if np.sum(y == L) > per_class}  # fmt: skip
        obs = [(mat, L, np.median(C[np.array(idx)[sel]], axis=0)) for L, sel in calib.items()]
        fit = fit_camera(obs, oxide_nm=oxide_range, illuminant=cam.illuminant,
                         prior=_fixed_camera_prior(cam))  # fmt: skip
        found, correct, boxes_fp, n_canvas = [], [], 0, 0
        coco_imgs, coco_gt, coco_dt = [], [], []
        for img, gts, done in crop_canvases([crops[i] for i in idx], rng, grid):
            raw = detect(img, mat, oxide_nm=fit.oxide_nm, camera=cam)
            dets = [d for d in raw if d["score"] >= min_score]
            n_canvas += 1
            coco_imgs.append({"id": n_canvas, "height": img.shape[0], "width": img.shape[1]})
            coco_gt += [{"id": len(coco_gt) + k + 1, "image_id": n_canvas, "category_id": 1,
                         "bbox": b, "area": float(b[2] * b[3]), "iscrowd": 0}
                        for k, (b, _) in enumerate(gts)]  # fmt: skip
            coco_dt += [{"image_id": n_canvas, "category_id": 1, "bbox": d["bbox"],
                         "score": d["score"]} for d in dets]  # fmt: skip
            matched = set()
            for box, layers in gts:
                ious = [box_iou_xywh(box, d["bbox"]) for d in dets]
                k = int(np.argmax(ious)) if ious else -1
                ok = k >= 0 and ious[k] >= 0.5
                found.append(ok)
                if ok:
                    matched.add(k)
                    correct.append(dets[k]["layers"] == layers)
            boxes_fp += sum(1 for k in range(len(dets)) if k not in matched)
            if progress:
                progress(m_i, done, len(idx))
        gt = {"images": coco_imgs, "annotations": coco_gt,
              "categories": [{"id": 1, "name": "flake"}]}  # fmt: skip
        ap = evaluate_detection(gt, coco_dt) if coco_dt else {"AP50": 0.0}
        out[mat] = {
            "flakes": len(idx),
            "oxide_nm": round(fit.oxide_nm, 1),
            "recall_iou50": float(np.mean(found)),
            "ap50_class_agnostic": float(ap["AP50"]),
            "layer_accuracy_of_found": float(np.mean(correct)) if correct else None,
            "unmatched_detections_per_crop": boxes_fp / max(1, len(idx)),
            "canvases": n_canvas,
        }
    return out
