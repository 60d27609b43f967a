"""The physics detector on real micrographs (shared/data/real), and batch mode.

The MaskTerial micrographs carry no labels, so these tests assert what must hold on any
real chip; the labelled layer crops give real flakes with known layer counts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_shared
from PIL import Image

from qupaint.color import Camera
from qupaint.detect import DetectorSettings, detect, linear_pixels, substrate_field
from qupaint.detect.batch import detect_batch

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
MT = REAL / "maskterial"
CROPS = REAL / "layer-crops"
CAM = Camera.preset("2dmatgmm")
needs_real = needs_shared("maskterial")


def _image(folder: str, k: int = 0) -> np.ndarray:
    path = sorted((MT / folder).glob("*.jpg"))[k]
    return np.asarray(Image.open(path).convert("RGB"))


def _field(img):
    return substrate_field(linear_pixels(img, CAM), (img >= 250).any(-1))[0]


@needs_real
@pytest.mark.parametrize("folder, material", [("WS2", "WS2"), ("MoSe2", "MoSe2"),
                                              ("hBN_Thin", "hBN")])  # fmt: skip
def test_detections_lie_on_the_chip_not_on_saturated_crystals(folder, material):
    from pycocotools import mask as mask_utils

    img = _image(folder, 1)
    sat = (img >= 250).any(-1)
    assert sat.any()  # these chips do hold saturated bulk crystals
    for d in detect(img, material, oxide_nm=90.0, camera=CAM, masks=True):
        m = mask_utils.decode(d["segmentation"]).astype(bool)
        x, y, w, h = d["bbox"]
        assert 0 <= x and 0 <= y and x + w <= img.shape[1] and y + h <= img.shape[0]
        assert m.sum() > 0 and sat[m].mean() < 0.05, d


@needs_real
def test_substrate_estimate_is_stable_under_flips_and_crops():
    img = _image("WS2", 0)
    f = _field(img)
    inner = (slice(200, -200), slice(200, -200))
    flipped = _field(img[:, ::-1].copy())[:, ::-1]
    assert np.abs(flipped[inner] / f[inner] - 1).max() < 0.02
    ud = _field(img[::-1].copy())[::-1]
    assert np.abs(ud[inner] / f[inner] - 1).max() < 0.02
    crop = _field(img[300:1000, 400:1500].copy())
    assert np.abs(crop[100:-100, 100:-100] / f[400:900, 500:1400] - 1).max() < 0.03


@needs_real
@needs_shared("layer-crops")
def test_a_real_flake_pasted_on_another_chip_is_found_again_with_its_layers():
    # 1-2 layer graphene flakes (real, labelled) cut from their micrographs and pasted on two
    # substrate spots of a real WS2 chip, scaled to its local substrate (contrast preserved)
    from qupaint.bench.layers import measure_crop, paste_flake
    from qupaint.bench.metrics import box_iou_xywh

    chip = _image("WS2", 0)[:800, :1000]
    found_twice, same, right = 0, 0, 0
    for path in sorted((CROPS / "1").glob("Graphene_*.png"))[:12] + sorted(
        (CROPS / "2").glob("Graphene_*.png"))[:12]:  # fmt: skip
        flake = np.asarray(Image.open(path).convert("RGB"))
        if min(flake.shape[:2]) < 25 or max(flake.shape[:2]) > 250:
            continue
        _, sub = measure_crop(flake)
        layers = int(path.stem.rsplit("_L", 1)[1])
        found = []
        for at in ((150, 150), (100, 600)):  # two clean substrate spots of a real chip
            img, box = paste_flake(chip, flake, sub, at, CAM)
            dets = detect(img, "graphene", oxide_nm=92.6, camera=CAM)
            best = max(dets, key=lambda d: box_iou_xywh(box, d["bbox"]), default=None)
            if best is not None and box_iou_xywh(box, best["bbox"]) >= 0.5:
                found.append(best["layers"])
        if len(found) == 2:
            found_twice += 1
            same += found[0] == found[1]
            right += found[0] == layers
    # measured: 16 found at both spots, all 16 with the same class there, 10 with the label's
    assert found_twice >= 12 and same >= found_twice - 2 and right >= 8, (found_twice, same, right)


@needs_real
def test_batch_mode_writes_everything_resumes_and_skips_bad_files(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for k, folder in enumerate(("WS2", "MoSe2")):
        Image.fromarray(_image(folder, 0)[:600, :800]).save(src / f"chip{k}.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "out"
    settings = DetectorSettings.from_microscope("2dmatgmm", oxide_nm="auto", um_per_px=0.385)
    s = detect_batch([src], out, "WS2", settings, workers=1)
    assert s["images"] == 3 and s["done"] == 2
    assert [Path(f["image"]).name for f in s["failed"]] == ["broken.jpg"]
    for name in ("flakes.csv", "report.html", "summary.json"):
        assert (out / name).is_file()
    recs = [json.loads(p.read_text()) for p in sorted((out / "detections").glob("*.json"))]
    assert len(recs) == 2 and all(r["oxide"]["source"] in ("flakes", "substrate") for r in recs)
    n = sum(len(r["annotations"]) for r in recs)
    assert len((out / "flakes.csv").read_text().splitlines()) == n + 1
    for r in recs:
        for d in r["annotations"]:
            assert {"segmentation", "area_um2", "contrast", "layers", "score"} <= set(d)
            assert d["area_um2"] == pytest.approx(d["area"] * 0.385**2)
    assert all((out / "overlays" / f"chip{k}.png").is_file() for k in range(2))
    stamp = {p.name: p.stat().st_mtime_ns for p in (out / "detections").glob("*.json")}
    s2 = detect_batch([src], out, "WS2", settings)
    assert s2["done"] == 2
    assert stamp == {p.name: p.stat().st_mtime_ns for p in (out / "detections").glob("*.json")}


def test_batch_rejects_bad_input(tmp_path):
    img = np.full((40, 40, 3), 120, np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="no image"):
        detect_batch([tmp_path / "nothing*.png"], tmp_path / "o", "graphene")
    with pytest.raises(ValueError, match="unknown"):
        detect_batch([tmp_path], tmp_path / "o", "unobtainium")
    with pytest.raises(ValueError, match="oxide_nm"):
        detect_batch([tmp_path], tmp_path / "o", "graphene", DetectorSettings(oxide_nm=-5.0))
    with pytest.raises(TypeError, match="settings"):
        detect_batch([tmp_path], tmp_path / "o", "graphene", 90.0)
    s = detect_batch([tmp_path], tmp_path / "o", "graphene", DetectorSettings(oxide_nm=90.0))
    assert s["done"] == 1 and s["flakes"] == 0  # a blank chip: no flakes



@pytest.mark.slow
@needs_shared("layer-crops")
def test_detector_finds_real_labelled_flakes(tmp_path):
    # a subset of the labelled crops (every 4th per layer folder), pasted on canvases; the
    # full set is benchmarks/results/detector-real-crops.json (recall 0.88 / 0.83)
    import shutil

    from qupaint.bench.layers import evaluate_detector_on_crops

    for folder in sorted(p for p in CROPS.iterdir() if p.is_dir()):
        (tmp_path / folder.name).mkdir()
        for f in sorted(folder.glob("*.png"))[::4]:
            shutil.copyfile(f, tmp_path / folder.name / f.name)
    r = evaluate_detector_on_crops(tmp_path, per_class=5)
    # the whole-image detector (issue 23) on this proxy measured recall 0.70 graphene, 0.38
    # WSe2 (before it: 0.88 / 0.83); whole expert-masked images are the evidence now
    # (test_whole_real_images below), this guards against a collapse only
    for mat, floor in (("Graphene", 0.6), ("WSe2", 0.3)):
        assert r[mat]["recall_iou50"] >= floor, r
        assert r[mat]["layer_accuracy_of_found"] >= 0.5, r
    assert 85 <= r["Graphene"]["oxide_nm"] <= 100 and 60 <= r["WSe2"]["oxide_nm"] <= 78


@needs_shared("layer-crops")
@pytest.mark.parametrize("material, lo, hi", [("Graphene", 85, 100), ("WSe2", 55, 75)])
def test_oxide_from_the_flakes_of_real_crops(material, lo, hi):
    # 16 real labelled flakes of one material on a flat canvas of their substrate colour: the
    # oxide that makes most flake pixels fit a layer is the chip's (calibration: 93 / 68 nm)
    from qupaint.bench.layers import find_layer_crops, measure_crop
    from qupaint.detect import estimate_oxide_from_flakes

    crops = [c for c in find_layer_crops(CROPS) if c.material == material][::5][:16]
    imgs = [np.asarray(Image.open(c.path).convert("RGB"), float) for c in crops]
    subs = [measure_crop(a)[1] for a in imgs]
    sub = np.median(subs, axis=0)
    cell = int(max(max(a.shape[:2]) for a in imgs) + 24)
    rng = np.random.default_rng(0)
    canvas = sub + 1.5 * rng.standard_normal((4 * cell, 4 * cell, 3))
    for k, (a, s) in enumerate(zip(imgs, subs, strict=True)):
        h, w = a.shape[:2]
        y, x = (k // 4) * cell + 10, (k % 4) * cell + 10
        canvas[y : y + h, x : x + w] = a * (sub / s)
    img = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    oxide, n = estimate_oxide_from_flakes(img, material, CAM)
    assert oxide is not None and lo <= oxide <= hi, (oxide, n)
    blank = np.full((200, 200, 3), 120, np.uint8)  # no flakes: no estimate
    assert estimate_oxide_from_flakes(blank, material, CAM)[0] is None


def _cli_default_detect(img, material):
    """``qupaint detect``'s defaults: the 2dmatgmm microscope with its oxide prior."""
    from qupaint.detect import DetectorSettings, find_flakes

    return find_flakes(img, material, DetectorSettings.from_microscope("2dmatgmm"))


def test_edge_width_measures_the_blur_of_a_step():
    # a dark disk (C = -0.8) on the substrate, its edge blurred by a known Gaussian
    from scipy import ndimage

    from qupaint.detect.morphology import edge_width_px

    yy, xx = np.mgrid[:120, :120]
    disk = (yy - 60) ** 2 + (xx - 60) ** 2 < 30**2
    for sigma in (1.0, 2.0, 4.0, 6.0):
        C = np.repeat(-0.8 * ndimage.gaussian_filter(disk.astype(float), sigma)[..., None], 3, -1)
        width = edge_width_px(C, disk, 0, 0, np.array([-0.8, -0.8, -0.8]))
        assert abs(width - sigma) < 0.2 * sigma + 0.3, (sigma, width)


@needs_real
def test_shadows_of_out_of_focus_bodies_are_rejected_on_real_chips():
    # maskterial/WS2 2ae87090: a black, blurred body over the chip beside a bulk crystal;
    # 95640b0d: a black, blurred rod. Before the rule, each (or its penumbra) was its image's
    # top candidate.
    for stem, box in [("2ae87090", (376, 320, 309, 140)), ("95640b0d", None)]:
        img = np.asarray(Image.open(next((MT / "WS2").glob(f"{stem}*.jpg"))).convert("RGB"))
        res = _cli_default_detect(img, "WS2")
        shadows = [r for r in res.rejected if r["rejected"] == "shadow"]
        assert shadows, stem
        assert any(max(r["contrast"]) < -0.7 for r in shadows)  # the body; its penumbra lighter
        thin = [d for d in res.detections if d["layers"] <= 5 and d["score"] >= 0.05]
        if box is not None:  # the big shadow and its blurred fringe (penumbra) are gone
            x, y, w, h = box
            for d in thin:
                cx, cy = d["bbox"][0] + d["bbox"][2] / 2, d["bbox"][1] + d["bbox"][3] / 2
                assert not (x - 20 < cx < x + w + 20 and y - 20 < cy < y + h + 20), d


@needs_shared("maskterial-labelled")
def test_dark_labelled_flakes_in_focus_are_not_shadows():
    # the expert-masked WSe2 flakes are as dark as shadows (C down to -0.85) but in focus
    from qupaint.bench.real import find_masked_images, mask_boxes, read_mask
    from qupaint.boxes import box_iou_xywh

    folder = REAL / "maskterial-labelled" / "WSe2"
    kept = 0
    for p in find_masked_images(folder / "images", folder / "masks"):
        img = np.asarray(Image.open(p.image).convert("RGB"))
        gt = mask_boxes(read_mask(p.mask))
        dets = [d for d in _cli_default_detect(img, "WSe2").detections
                if d["layers"] <= 5 and d["score"] >= 0.05]  # fmt: skip
        if len(gt) and dets:
            iou = box_iou_xywh(np.array([d["bbox"] for d in dets])[:, None], gt[None])
            kept += int((iou >= 0.5).any(0).sum())
    assert kept == 7  # every masked flake is still found


def test_solidity_and_slivers():
    from qupaint.detect import DetectorConfig
    from qupaint.detect.morphology import solidity
    from qupaint.detect.rules import mean_width

    cfg = DetectorConfig()

    def is_sliver(m):  # the sliver rule's test (tests/test_rules.py runs the rule itself)
        return mean_width(m) < cfg.sliver_width_px and solidity(m) < cfg.sliver_solidity

    square = np.ones((20, 20), bool)
    assert solidity(square) == 1.0 and not is_sliver(square)
    yy, xx = np.mgrid[:80, :80]
    r = np.hypot(yy - 40, xx - 40)
    arc = (r > 30) & (r < 33) & (yy < 45)  # a bent thread 3 px wide
    assert solidity(arc) < 0.3 and is_sliver(arc)
    line = np.zeros((10, 60), bool)
    line[4:7, 5:55] = True  # straight and narrow: fills its hull (the fibre rule's case)
    assert solidity(line) > 0.9 and not is_sliver(line)


@needs_real
def test_slivers_along_a_blurred_band_are_rejected():
    # maskterial/hBN_Thin ba656fb9: a dark fibre crosses the frame out of focus; pieces of
    # its fringe were the top three candidates before the sliver rule
    img = np.asarray(Image.open(next((MT / "hBN_Thin").glob("ba656fb9*.jpg"))).convert("RGB"))
    res = _cli_default_detect(img, "hBN")
    assert sum(r["rejected"] == "sliver" for r in res.rejected) >= 3


def test_rim_share_of_a_flake_on_the_substrate_and_beside_a_crystal():
    from qupaint.detect import DetectorConfig
    from qupaint.detect.rules import ring_share

    cfg = DetectorConfig()
    C = np.zeros((60, 60, 3))
    bright = np.zeros((60, 60), bool)
    flake = np.zeros((10, 10), bool)
    flake[1:9, 1:9] = True
    C[20:30, 20:30] = -0.3  # a flake ringed by substrate
    assert ring_share(C, bright, flake, 20, 20, cfg) == 0.0
    bright[:, 29:] = True  # a bright crystal along its right side: a quarter of its ring
    assert 0.15 < ring_share(C, bright, flake, 20, 20, cfg) <= cfg.rim_share  # not a rim
    C[:, :21] = -0.9  # and a black body along its left: half of its ring is bulk crystal
    assert ring_share(C, bright, flake, 20, 20, cfg) > cfg.rim_share


@needs_real
def test_the_tip_of_a_bulk_crystal_is_a_rim_on_a_real_chip():
    # maskterial/WS2 2ae87090: the dark tip of a rod, a bulk crystal, beside a white one,
    # was the image's only thin candidate (4 layers); 40 % of its ring is the rod itself
    img = np.asarray(Image.open(next((MT / "WS2").glob("2ae87090*.jpg"))).convert("RGB"))
    res = _cli_default_detect(img, "WS2")
    rims = [r for r in res.rejected if r["rejected"] == "rim"]
    assert any(abs(r["bbox"][0] - 1391) < 15 and abs(r["bbox"][1] - 360) < 15 for r in rims)
    assert not [d for d in res.detections if d["layers"] <= 5 and d["score"] >= 0.05]


@needs_shared("maskterial-labelled")
@pytest.mark.parametrize("folder, material", [("GrapheneH", "graphene"), ("WSe2", "WSe2")])
def test_no_masked_flake_is_taken_for_a_rim(folder, material):
    from qupaint.bench.real import find_masked_images, mask_boxes, read_mask
    from qupaint.boxes import box_iou_xywh

    d = REAL / "maskterial-labelled" / folder
    for p in find_masked_images(d / "images", d / "masks"):
        gt = mask_boxes(read_mask(p.mask))
        img = np.asarray(Image.open(p.image).convert("RGB"))
        rims = [r for r in _cli_default_detect(img, material).rejected if r["rejected"] == "rim"]
        if rims and len(gt):
            iou = box_iou_xywh(np.array([r["bbox"] for r in rims], float)[:, None], gt[None])
            assert not (iou >= 0.3).any(), p.name


def test_band_penumbra_reaches_three_edge_sigmas_of_a_dark_blurred_fibre():
    from scipy import ndimage

    from qupaint.detect import DetectorConfig
    from qupaint.detect.pieces import Piece
    from qupaint.detect.rules import band_penumbra_px

    cfg = DetectorConfig()
    line = np.zeros((120, 200))
    line[45:75, :] = 1.0  # a fibre 30 px wide across the frame
    for sigma, depth, rejected, want in [(8.0, -0.55, "fibre", 24),  # out of focus: a band
                                         (1.0, -0.55, "fibre", 0),  # in focus: a fibre only
                                         (8.0, -0.2, "fibre", 0),  # too light to cast one
                                         (8.0, -0.55, None, 0)]:  # not a fibre  # fmt: skip
        C = np.repeat((depth * ndimage.gaussian_filter(line, sigma))[..., None], 3, -1)
        mask = C[..., 0] < depth / 2  # its core: darker than half its depth
        p = Piece((slice(0, 120), slice(0, 200)), mask, int(mask.sum()),
                  np.median(C[mask], axis=0), (0, 0, 200, 120), rejected=rejected)  # fmt: skip
        got = band_penumbra_px(p, C, cfg, 0.385)
        if want:
            assert abs(got - want) <= 0.35 * want, (sigma, got)
        else:
            assert got == 0, (sigma, depth, rejected, got)


@needs_real
def test_the_penumbra_of_an_out_of_focus_band_is_rejected_on_a_real_chip():
    # maskterial/hBN_Thin ba656fb9: a dark fibre crosses the frame out of focus (edge sigma
    # 12 px); a piece in its lighter fringe (5 layers, 36 um2) was the image's top candidate
    img = np.asarray(Image.open(next((MT / "hBN_Thin").glob("ba656fb9*.jpg"))).convert("RGB"))
    res = _cli_default_detect(img, "hBN")
    fringe = [r for r in res.rejected if r["rejected"] == "shadow" and r["contrast"][0] > -0.3]
    assert fringe  # pieces of the fringe, lighter than a shadow, rejected as its penumbra
    thin = [d for d in res.detections if d["layers"] <= 5 and d["score"] >= 0.05]
    for d in thin:  # none of the fringe's pieces is left among the candidates
        assert not any(d["bbox"] == r["bbox"] for r in fringe)
        assert not (d["layers"] == 5 and d["area_um2"] < 40), d


def test_residue_coloured_pieces_are_unlike_the_prior_at_any_response():
    # graphene's thin rungs are darker than the substrate in every channel on the chips a
    # 93 +- 20 nm prior holds likely; a response (1 + C)^k - 1 keeps every sign
    from qupaint.color.calibrate import _Stacks
    from qupaint.constants import OXIDE_RANGE_NM
    from qupaint.detect import DetectorConfig
    from qupaint.detect.ladder import ladder_grid, respond, unlike_the_prior
    from qupaint.optics import DEFAULT_WAVELENGTHS_NM

    cfg, noise = DetectorConfig(), np.full(3, 0.01)
    flakes = ladder_grid("graphene", cfg.max_layers, (95.0,), CAM)[0, : cfg.thin_layers]
    for k in ([1, 1, 1], [0.5, 1.2, 2.0], [2.0, 0.7, 0.5]):
        seen = respond(flakes, np.array(k, float), "power")
        assert not unlike_the_prior(seen, noise, "graphene", CAM, 93.0, 20.0, OXIDE_RANGE_NM,
                                    cfg).any(), k  # fmt: skip
    # residue: a few nm of a transparent film (SiO2-like) on 93 nm of oxide
    stacks = _Stacks([], DEFAULT_WAVELENGTHS_NM)
    I = stacks.spectra(np.array([93.0, 96.0, 98.0]), CAM.na, CAM.angles)[:, 0]  # noqa: E741
    I = I @ CAM.weights(DEFAULT_WAVELENGTHS_NM)  # noqa: E741
    film = I[1:] / I[:1] - 1.0  # 3 and 5 nm: darker in red, lighter in blue
    assert (film[:, 0] < -0.03).all() and (film[:, 2] > 0.05).all()
    assert unlike_the_prior(film, noise, "graphene", CAM, 93.0, 20.0, OXIDE_RANGE_NM,
                            cfg).all()  # fmt: skip
    # at 130 nm graphene's blue turns lighter: a prior that wide admits the film's sign
    assert not unlike_the_prior(film, noise, "graphene", CAM, 93.0, 40.0, OXIDE_RANGE_NM,
                                cfg).any()  # fmt: skip
    # no prior (a given oxide): nothing is unlike it; within the noise: nothing either
    assert not unlike_the_prior(film, noise, "graphene", CAM, None, 20.0, OXIDE_RANGE_NM,
                                cfg).any()  # fmt: skip
    assert not unlike_the_prior(film, noise * 20, "graphene", CAM, 93.0, 20.0, OXIDE_RANGE_NM,
                                cfg).any()  # fmt: skip


@needs_shared("2dmatgmm-demo")
@pytest.mark.parametrize("stem, box", [("28f74d1c", (1278, 814)), ("d5c9b678", (1844, 984))])
def test_residue_does_not_pull_the_ladder_on_real_chips(stem, box):
    # 2dmatgmm-demo 28f74d1c: 37 residue specks (darker in red, lighter in blue) pulled the
    # ladder to 110 nm; the top candidates were specks and a 600 um2 monolayer was missed.
    # d5c9b678 (a green setting): residue threads took the fit to 130 nm, where graphene's
    # monolayer is all but invisible, and were read as 5 layers. Out of the fit, the ladder
    # stays on the chip (90-95 nm) and the top candidate is the flake at ``box``
    path = next((REAL / "2dmatgmm-demo" / "images").glob(f"{stem}*.jpg"))
    res = _cli_default_detect(np.asarray(Image.open(path).convert("RGB")), "graphene")
    assert 85 <= res.ladder.oxide_nm <= 100
    thin = [d for d in res.detections if d["layers"] <= 5 and d["score"] >= 0.05]
    assert thin and abs(thin[0]["bbox"][0] - box[0]) < 10 and abs(thin[0]["bbox"][1] - box[1]) < 10
    for d in thin:  # no candidate has residue's colour
        assert max(d["contrast"]) < 0, d


@needs_shared("maskterial-labelled")
@pytest.mark.parametrize("folder, material", [("GrapheneH", "graphene"), ("WSe2", "WSe2")])
def test_no_masked_flake_is_unlike_the_prior(folder, material):
    from qupaint.bench.real import find_masked_images, read_mask
    from qupaint.color import Microscope
    from qupaint.constants import OXIDE_RANGE_NM
    from qupaint.detect import DetectorConfig, contrast_map
    from qupaint.detect.calibrate import measure_instances
    from qupaint.detect.ladder import oxide_prior, unlike_the_prior

    mic = Microscope.load("2dmatgmm")
    cfg = DetectorConfig.for_microscope(mic)
    d = REAL / "maskterial-labelled" / folder
    for p in find_masked_images(d / "images", d / "masks"):
        if not read_mask(p.mask).any():
            continue
        img = np.asarray(Image.open(p.image).convert("RGB"))
        prior_nm, prior_sd, _ = oxide_prior(img, mic.camera, None, mic.oxide_prior_nm,
                                            OXIDE_RANGE_NM, cfg)  # fmt: skip
        noise = contrast_map(img, mic.camera).noise
        C = np.array([f["contrast"] for f in measure_instances([p], mic.camera)])
        assert not unlike_the_prior(C, noise, material, mic.camera, prior_nm, prior_sd,
                                    OXIDE_RANGE_NM, cfg).any(), p.name  # fmt: skip


@needs_shared("maskterial-labelled")
@pytest.mark.parametrize("reach", [2.0, 2.5, 3.125, 4.0])
def test_wse2_layers_do_not_hang_on_the_oxide_window_edge(reach):
    # maskterial-labelled WSe2 5e12dd38: the substrate colour says 87 +- 10 nm; searched
    # within 31 nm of it, the fit prefers 60 nm (bulk debris as 6-10 layers). While the
    # tempering flattened the prior over the window, the hypotheses then read three of the
    # four masked flakes as 8-10 layers (found 1 of 4; 4 of 4 within 25 nm). Weighed by the
    # prior untempered, they stay thin at any window
    from qupaint.bench.real import find_masked_images, mask_boxes, read_mask
    from qupaint.boxes import box_iou_xywh
    from qupaint.detect.detector import find_flakes

    d = REAL / "maskterial-labelled" / "WSe2"
    p = next(q for q in find_masked_images(d / "images", d / "masks")
             if q.name.startswith("5e12dd38"))  # fmt: skip
    gt = mask_boxes(read_mask(p.mask))
    settings = DetectorSettings.from_microscope("2dmatgmm", prior_reach=reach)
    res = find_flakes(np.asarray(Image.open(p.image).convert("RGB")), "WSe2", settings)
    thin = np.array([d["bbox"] for d in res.detections
                     if d["score"] >= 0.05 and d["layers"] <= 5], float)  # fmt: skip
    assert len(thin) and (box_iou_xywh(gt[:, None], thin[None]) >= 0.5).any(1).sum() == 4
