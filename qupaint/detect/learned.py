"""The learned methods of detection: the segmenter alone (``learned``), and the physics
verified by it (``fused``). :func:`~qupaint.detect.detector.find_flakes` calls these when
:attr:`DetectorSettings.method <qupaint.detect.config.DetectorSettings.method>` says so.

- **learned**: the thin-flake instances of :mod:`qupaint.seg` (the settings' ``segmenter``
  weights: a calibration's adapted ones, else the shipped Synthia-only ones) are the
  detections, scored by their mean thin probability. No physics piece or rule decides what
  is a flake. The segmenter marks 1-5 layers without counting them; the count is the
  image's layer ladder's (:func:`~qupaint.detect.detector.fit_image_ladder`, as the
  physics fits it) reading of the instance's median contrast, limited to 1-5.
- **fused**: the physics detector's flakes, each thin one with ``p_learned``, the mean thin
  probability of the segmenter over its mask, the segmenter run on the flake's box grown by
  ``config.learned_margin_px`` only (a few windows cost a fraction of the whole image). A
  thin flake under ``config.learned_min_p`` is rejected (rule ``learned``): debris,
  shadows and rims the rules let through. The score of the rest is multiplied by
  ``p_learned ** learned_weight``, so the segmenter's confidence orders them. Layer counts
  stay the physics ladder's.
"""

from __future__ import annotations

import numpy as np

from qupaint.categories import THICK_MIN_LAYERS, category_of

__all__ = ["learned_probability", "learned_detections"]


def learned_probability(image: np.ndarray, material: str, settings) -> np.ndarray:
    """[2, H, W] thin and cut probabilities of the settings' segmenter on ``image``."""
    from qupaint.seg import probability

    return probability(image, settings.segmenter, material)


def learned_detections(image: np.ndarray, material: str, settings, cm, ladder, ctx, masks,
                       image_id: int | None) -> list[dict]:  # fmt: skip
    """The ``learned`` method's detections (see the module docstring), in :func:`detect`'s
    form: ``cm`` is the image's contrast map, ``ladder`` its fitted layer ladder and ``ctx``
    the detector's :class:`~qupaint.detect.rules.RuleContext` (noise, minimum size)."""
    from scipy.ndimage import find_objects

    from qupaint.detect.ladder import classify_many, hypotheses
    from qupaint.rle import encode_window
    from qupaint.seg import instances

    prob = learned_probability(image, material, settings)
    um = settings.um_per_px
    lab = instances(prob, 0.5, max(1, int(round(ctx.min_px))))
    H, W = lab.shape
    found = [(k, sl) for k, sl in enumerate(find_objects(lab), start=1) if sl is not None]
    meds = [np.median(cm.C[sl][lab[sl] == k], axis=0) for k, sl in found]
    classes = classify_many(np.reshape(meds, (-1, 3)), ctx.noise, ladder.contrast,
                            hypotheses(ladder, ctx.cfg), ctx.cfg) if found else []  # fmt: skip
    out = []
    for (k, sl), c, (nl, d2, p_thin, p_fit) in zip(found, meds, classes, strict=True):
        m = lab[sl] == k
        layers = int(min(max(nl, 1), THICK_MIN_LAYERS - 1))
        area = int(m.sum())
        d = {
            "bbox": [float(sl[1].start), float(sl[0].start), float(sl[1].stop - sl[1].start),
                     float(sl[0].stop - sl[0].start)],
            "score": round(float(prob[0][sl][m].mean()), 4),
            "category_id": category_of(layers),
            "layers": layers,
            "contrast": [round(float(v), 5) for v in c],
            "fit_sigma": float(np.sqrt(d2 / 3.0)),
            "p_thin": round(float(p_thin), 4),
            "p_fit": round(float(p_fit), 4),
            "area": area,
        }  # fmt: skip
        if um:
            d["area_um2"] = float(area * um**2)
        if masks == "window":
            d["mask"] = np.ascontiguousarray(m)
        elif masks:
            d["segmentation"] = encode_window(m, sl[0].start, sl[1].start, H, W)
        if image_id is not None:
            d["image_id"] = image_id
        out.append(d)
    if out:  # the colour difference to the substrate, as the physics reports it
        from qupaint.color import linear_srgb_to_lab

        sub_lab = linear_srgb_to_lab(cm.substrate)
        rows = np.array([cm.substrate * (1.0 + np.array(d["contrast"])) for d in out])
        lab_c = np.asarray(linear_srgb_to_lab(rows))
        for d, row in zip(out, lab_c, strict=True):
            d["delta_e"] = float(np.linalg.norm(row - sub_lab))
    out.sort(key=lambda d: -d["score"])
    return out
