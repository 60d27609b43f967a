"""qupaint.detect: the C++ per-pixel kernel against its numpy reference, the contrast's
invariance to exposure and white balance, the named rejection rules on real pixels, the
whole-image scores on the expert-masked real micrographs, and the eval-real metric."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import backend_params, needs_shared
from PIL import Image

from qupaint.bench.metrics import box_iou_xywh
from qupaint.bench.real import (
    camera_setting,
    find_masked_images,
    mask_boxes,
    other_camera_settings,
    score_real,
)
from qupaint.color import Camera, Microscope
from qupaint.detect import DetectorConfig, contrast_map, detect, fit_ladder
from qupaint.detect.pieces import pixel_flags as _pixel_flags

LABELLED = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "maskterial-labelled"
needs_labelled = needs_shared("maskterial-labelled")
CAM = Camera.preset("2dmatgmm")
SETS = {"GrapheneH": "graphene", "WSe2": "WSe2"}


def _chip(rng, H=97, W=131, sub=(120, 105, 150), speck=3):
    """A synthetic chip: substrate with noise and vignetting, a dark flake, a bright crystal
    with saturated pixels, a speck ``speck`` px square."""
    yy, xx = np.mgrid[0:H, 0:W]
    vign = 1.0 - 0.15 * (((xx - W / 2) / W) ** 2 + ((yy - H / 2) / H) ** 2)
    img = np.asarray(sub, float)[None, None] * vign[..., None]
    img[20:50, 30:70] *= np.array([0.85, 0.84, 0.9])  # a thin flake
    img[60:90, 90:125] = 255.0  # a saturated crystal
    img[10 : 10 + speck, 100 : 100 + speck] *= 0.3  # a speck
    img += rng.normal(0, 1.5, img.shape)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("blur", [0.0, 1.0, 1.5])
@pytest.mark.parametrize("shape", [(97, 131), (64, 64), (33, 257), (3, 2), (1, 5)])
@pytest.mark.parametrize("backend", backend_params("detect_contrast", ("cpu",)))
def test_contrast_kernel_equals_reference(backend, shape, blur, rng):
    img = _chip(rng, *shape)
    for cam in (CAM, Camera.srgb("D65"), CAM.replace(gamma=2.2)):  # linear, sRGB, power
        ref = contrast_map(img, cam, blur, backend="reference")
        got = contrast_map(img, cam, blur, backend=backend[0])
        assert got.C.dtype == np.float32 and got.C.shape == (*shape, 3)
        np.testing.assert_allclose(got.C, ref.C, atol=2e-5, rtol=0)
        np.testing.assert_allclose(got.field, ref.field, rtol=1e-5)
        np.testing.assert_allclose(got.noise, ref.noise, rtol=1e-4)


@pytest.mark.parametrize("backend", backend_params("detect_flags", ("cpu",)))
def test_flag_kernel_equals_reference(backend, rng):
    cfg = DetectorConfig()
    for k in range(3):
        img = _chip(rng, 80 + 7 * k, 120 - 9 * k)
        cm = contrast_map(img, CAM, backend="reference")
        for bright in (0.05, 0.12, 10.0):
            ref = _pixel_flags(cm, img, cfg, bright, "reference")
            got = _pixel_flags(cm, img, cfg, bright, backend[0])
            assert got.dtype == np.uint8 and got.shape == img.shape[:2]
            # float32 sums in another order: a pixel exactly at a threshold may flip
            assert (got != ref).mean() < 1e-3
            assert ((ref & 8) > 0).any() and ((ref & 1) > 0).any()  # bright and candidates


def test_contrast_is_independent_of_exposure_and_white_balance(rng):
    img = _chip(rng, 120, 160)
    base = contrast_map(img, CAM)
    f = img.astype(float)
    for gains in ((0.45, 0.45, 0.45), (1.0, 1.15, 0.8)):  # a darker exposure; white balance
        other = np.clip(f * np.array(gains) + 0.5, 0, 255).astype(np.uint8)
        cm = contrast_map(other, CAM)
        ok = (img < 240).all(-1) & (other < 240).all(-1) & (img > 40).all(-1)
        # 8-bit quantisation of the darker image is the only difference
        assert np.abs(cm.C[ok] - base.C[ok]).mean() < 0.01


def test_fit_ladder_recovers_oxide_and_response():
    # contrasts of 1-4 layers at 95 nm seen through a power response k: the fit finds both
    from qupaint.color.calibrate import layer_contrast_grid

    mu = layer_contrast_grid("graphene", [1, 2, 3, 4], [95.0], CAM)[0]
    k = np.array([1.19, 1.0, 0.84])
    seen = (1 + mu) ** k - 1
    lad = fit_ladder(seen, "graphene", CAM, 0.005, (70.0, 130.0), config=DetectorConfig())
    assert abs(lad.oxide_nm - 95.0) <= 5.0, lad
    np.testing.assert_allclose(lad.response, k, rtol=0.1)
    assert np.abs(lad.contrast[:4] - seen).max() < 0.02


def test_detect_validates_its_input(rng):
    img = _chip(rng)
    with pytest.raises(ValueError, match="0-2000"):
        detect(img, "graphene", oxide_nm=2500.0, camera=CAM)
    with pytest.raises(ValueError, match="auto"):
        detect(img, "graphene", oxide_nm="thick", camera=CAM)
    with pytest.raises(ValueError, match="um_per_px"):
        detect(img, "graphene", oxide_nm=90.0, camera=CAM, um_per_px=-1.0)
    with pytest.raises(ValueError, match="response"):
        detect(img, "graphene", oxide_nm=90.0, config=DetectorConfig(response_model="log"),
               camera=CAM)
    with pytest.raises(ValueError, match="response_range"):
        detect(img, "graphene", oxide_nm=90.0,
               config=DetectorConfig(response_range=(1.2, 2.0)), camera=CAM)


def test_synthetic_chip_rules_name_what_they_reject(rng):
    # a dark speck 30 px square under a minimum area of 163 um^2 (1100 px at 0.385 um/px):
    # its core (24 px square, the blurred edges off) is more than half of that, so it is a
    # piece, and grown over its edges it is still less, so too_small names it; the
    # saturated crystal is no candidate at all, and only the thin flake is reported
    info: list = []
    dets = detect(_chip(rng, 120, 160, speck=30), "graphene", oxide_nm=90.0, camera=CAM,
                  um_per_px=0.385, config=DetectorConfig(min_area_um2=163.0),
                  explain=info)  # fmt: skip
    ladder = info.pop()["ladder"]
    assert ladder.pieces >= 1
    assert [(r["rejected"], r["bbox"]) for r in info] == [("too_small", [103.0, 13.0, 24.0, 24.0])]
    assert len(dets) == 1 and dets[0]["layers"] <= 5, dets
    assert box_iou_xywh(dets[0]["bbox"], [30, 20, 40, 30]) > 0.7, dets
    assert box_iou_xywh(dets[0]["bbox"], [90, 60, 35, 30]) == 0  # nothing on the crystal
    assert 0 < dets[0]["score"] <= 1 and 0 <= dets[0]["p_thin"] <= 1


# --- the metric -------------------------------------------------------------------------


def test_score_real_counts_recall_ap_and_unmatched():
    gt = [np.array([[0, 0, 10, 10], [50, 50, 20, 20]], float), np.zeros((0, 4))]
    dets = [
        [{"bbox": [0, 0, 10, 10], "score": 0.9, "layers": 1},  # found
         {"bbox": [51, 50, 20, 20], "score": 0.8, "layers": 3},  # found (IoU 0.9)
         {"bbox": [100, 100, 5, 5], "score": 0.7, "layers": 2},  # unmatched thin
         {"bbox": [50, 50, 20, 20], "score": 0.95, "layers": 9}],  # thick: not counted
        [{"bbox": [0, 0, 4, 4], "score": 0.1, "category_id": 2}],  # thin, image without flakes
    ]  # fmt: skip
    r = score_real(gt, dets, groups=["a", "b"])
    assert r["flakes"] == 2 and r["found"] == 2 and r["recall"] == 1.0
    assert r["thin_detections"] == 4 and r["unmatched_per_image"] == 1.0
    assert r["per_image"][0] == {"flakes": 2, "found": 2, "unmatched": 1, "thin_detections": 3}
    # both flakes rank above both false positives: AP50 1
    assert r["AP50"] == pytest.approx(1.0)
    assert r["groups"]["a"]["recall"] == 1.0 and r["groups"]["b"]["recall"] is None
    # a false positive ranked first lowers the AP
    dets[1][0]["score"] = 0.99
    assert score_real(gt, dets)["AP50"] < 1.0
    assert score_real(gt, [[], []])["recall"] == 0.0
    with pytest.raises(ValueError, match="images"):
        score_real(gt, [[]])


def test_mask_boxes_and_settings():
    m = np.zeros((20, 30), np.uint8)
    m[2:5, 3:9] = 1
    m[10, 20] = 3  # id 2 absent
    np.testing.assert_array_equal(mask_boxes(m), [[3, 2, 6, 3], [20, 10, 1, 1]])
    assert camera_setting(np.full((16, 16, 3), (196, 197, 200), np.uint8)) == "grey"
    assert camera_setting(np.full((16, 16, 3), (48, 44, 78), np.uint8)) == "dark"
    assert camera_setting(np.full((16, 16, 3), (129, 113, 155), np.uint8)) == "colour"


# --- real, expert-masked whole micrographs ----------------------------------------------


@pytest.fixture(scope="module")
def labelled():
    """{set: [(name, image, gt boxes, mask)]} of the shared whole images."""
    out = {}
    for s in SETS:
        rows = []
        for p in find_masked_images(LABELLED / s / "images"):
            img = np.asarray(Image.open(p.image).convert("RGB"))
            mask = np.asarray(Image.open(p.mask))
            rows.append((p.name, img, mask_boxes(mask), mask))
        out[s] = rows
    return out


def _run(img, material, config=None, explain=None):
    dets = detect(img, material, oxide_nm=None, config=config, camera=CAM, um_per_px=0.385,
                  explain=explain, oxide_prior_nm=92.94)  # fmt: skip
    return [d for d in dets if d["score"] >= 0.05]


@needs_labelled
@pytest.mark.slow
def test_whole_real_images_are_found_without_dust(labelled):
    # measured (this commit): graphene 22/25 found, AP50 0.72, 2.8 unmatched per image;
    # WSe2 7/7, AP50 0.92, 1.5 per image (0.16 s per image on one core). Before issue 23:
    # 0 of 32 found, 31-35 thin detections per image.
    for s, material in SETS.items():
        rows = labelled[s]
        dets = [_run(img, material) for _, img, _, _ in rows]
        r = score_real([g for _, _, g, _ in rows], dets)
        floor = {"GrapheneH": (0.8, 0.62), "WSe2": (0.85, 0.8)}[s]
        assert r["recall"] >= floor[0] and r["AP50"] >= floor[1], (s, r)
        assert max(p["unmatched"] for p in r["per_image"]) <= 8, (s, r["per_image"])
        # no dust among the candidates: every thin detection is at least the physical minimum
        assert all(d["area_um2"] >= 15.0 for ds in dets for d in ds if d["layers"] <= 5)


@needs_labelled
@pytest.mark.slow
def test_rules_fire_on_real_pixels_and_spare_the_flakes(labelled):
    fired: dict = {}
    for s, material in SETS.items():
        for name, img, _, mask in labelled[s]:
            info: list = []
            _run(img, material, explain=info)
            info.pop()
            for r in info:
                fired[r["rejected"]] = fired.get(r["rejected"], 0) + 1
                x, y, w, h = (int(v) for v in r["bbox"])
                inside = mask[y : y + h, x : x + w] > 0
                if r["rejected"] in (
                    "too_small",
                    "faint",
                    "shading",
                    "fibre",
                    "bright",
                    "sliver",
                    "shadow",
                ):
                    # what these rules throw away lies off the expert's flakes
                    assert inside.mean() < 0.5 or r["area"] < 60, (name, r)
                if r["rejected"] == "too_small":
                    assert r["area"] * 0.385**2 < 15.0
    # dust specks, residue, vignetting and crystals occur on every real set
    for rule in ("too_small", "faint", "shading"):
        assert fired.get(rule, 0) > 0, fired


@needs_labelled
def test_dust_specks_of_a_real_chip_are_rejected_by_size(labelled):
    # the purple graphene image: its dark specks (a few um^2) are named too_small, and the
    # one monolayer is the top candidate
    name, img, gt, _ = next(r for r in labelled["GrapheneH"] if camera_setting(r[1]) == "colour")
    info: list = []
    dets = _run(img, "graphene", explain=info)
    info.pop()
    specks = [r for r in info if r["rejected"] == "too_small"]
    assert len(specks) >= 5 and all(r["area"] * 0.385**2 < 15.0 for r in specks)
    thin = [d for d in dets if d["layers"] <= 5]
    assert thin and box_iou_xywh(thin[0]["bbox"], gt[0]) >= 0.5, thin[:3]


def _found(dets, gt) -> int:
    thin = [d["bbox"] for d in dets if d["layers"] <= 5]
    if not thin or not len(gt):
        return 0
    return int((box_iou_xywh(np.array(thin)[:, None], gt[None]) >= 0.5).any(0).sum())


@needs_labelled
@pytest.mark.slow
@pytest.mark.parametrize("setting", ["dark", "white-balanced", "gamma"])
@pytest.mark.parametrize("s", list(SETS))
def test_same_chip_under_other_camera_settings_gives_the_same_flakes(labelled, s, setting):
    # measured (found of 25 graphene / 7 WSe2 flakes): as taken 22 / 7; dark 21 / 7;
    # white-balanced 23 / 7; gamma 16 / 7. A gamma is not a gain: it compresses the contrast,
    # so faint flakes merge with the residue films around them (graphene loses up to 6).
    # White balance leaves the camera's oxide as the only prior: WSe2 found 3 of 7 while
    # the fit's tempering flattened that prior over its whole search window
    base = other = 0
    for _, img, gt, _ in labelled[s]:
        base += _found(_run(img, SETS[s]), gt)
        other += _found(_run(other_camera_settings(img)[setting], SETS[s]), gt)
    total = sum(len(g) for _, _, g, _ in labelled[s])
    allowed = max(1, total // 6) if setting != "gamma" else max(1, total // 4)
    assert other >= base - allowed, (s, setting, base, other, total)


@needs_labelled
def test_eval_real_cli_prints_and_writes_the_figures(tmp_path):
    from typer.testing import CliRunner

    from qupaint.cli import app

    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["eval", "real", "--images", str(LABELLED / "WSe2" / "images"),
                                   "--material", "WSe2", "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "recall" in res.output and "AP50" in res.output
    r = json.loads(out.read_text())
    assert r["flakes"] == 7 and {"colour"} <= set(r["groups"])
    assert all("setting" in p and "seconds" in p for p in r["per_image"])


@needs_labelled
def test_eval_real_loo_takes_every_fitted_quantity_from_the_other_images(tmp_path):
    """``eval real --loo``: each image is scored by a detector built from the others only
    (here a camera calibrated on their masks)."""
    from typer.testing import CliRunner

    from qupaint.bench.real import evaluate_real_loo
    from qupaint.cli import app

    images = LABELLED / "WSe2" / "images"
    names = [p.name for p in find_masked_images(images)]
    given = []

    def detector_from(pairs):
        given.append(sorted(p.name for p in pairs))
        return lambda img: []

    r = evaluate_real_loo(images, None, detector_from)
    assert len(given) == len(names) and r["protocol"] == "leave-one-image-out"
    for held, seen in zip(names, given, strict=True):
        assert held not in seen and len(seen) == len(names) - 1
    assert r["found"] == 0 and r["flakes"] == 7
    out = tmp_path / "loo.json"
    res = CliRunner().invoke(app, ["eval", "real", "--images", str(images), "--material", "WSe2",
                                   "--loo", "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert r["protocol"] == "leave-one-image-out" and r["flakes"] == 7 and r["found"] >= 5


# --- few-shot calibration from annotated images -----------------------------------------


def test_calibrate_from_masks_infers_layers_and_writes_a_camera_file(tmp_path, rng):
    from qupaint.bench.real import find_masked_images
    from qupaint.color.calibrate import layer_contrast_grid
    from qupaint.detect.calibrate import calibrate_from_masks

    # two images of 1, 2 and 3 layer graphene at 95 nm, rendered with the camera's model
    mu = layer_contrast_grid("graphene", [1, 2, 3], [95.0], CAM)[0]
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for k in range(2):
        img = np.full((240, 320, 3), 140.0)
        mask = np.zeros((240, 320), np.uint8)
        for j, (y, x) in enumerate([(30, 30), (30, 180), (150, 100)]):
            img[y : y + 40, x : x + 50] *= 1 + mu[j]
            mask[y : y + 40, x : x + 50] = j + 1
        img = np.clip(img + rng.normal(0, 1.0, img.shape) + 0.5, 0, 255).astype(np.uint8)
        Image.fromarray(img).save(tmp_path / "images" / f"chip{k}.png")
        Image.fromarray(mask).save(tmp_path / "masks" / f"chip{k}.png")
    pairs = find_masked_images(tmp_path / "images")
    r = calibrate_from_masks(pairs, "graphene", CAM, oxide_range=(70.0, 130.0), um_per_px=0.385)
    assert abs(r["oxide_prior_nm"] - 95.0) <= 10.0 and len(r["response"]) == 3  # one setting
    assert sorted({f["layers"] for f in r["observations"]}) == [1, 2, 3]
    # with the layer numbers given, the camera itself is refitted
    known = {(f"chip{k}", j + 1): j + 1 for k in range(2) for j in range(3)}
    r2 = calibrate_from_masks(pairs, "graphene", CAM, known, (70.0, 130.0))
    assert "rms" in r2 and r2["rms"] < 0.03 and abs(r2["oxide_nm"] - 95.0) <= 15.0
    with pytest.raises(ValueError, match="nobelium|[Uu]nknown"):
        calibrate_from_masks(pairs, "nobelium", CAM)


@needs_labelled
@pytest.mark.slow
@pytest.mark.parametrize("n", [2, 3, 4, 5, 9])
def test_next_chip_oxide_width_is_the_student_t_prediction(n, rng):
    # the next chip's oxide from n chips' own: Student's t, n - 1 degrees of freedom, scale
    # s sqrt(1 + 1/n); its variance where it has one, else its central 68 % interval
    from scipy import stats

    from qupaint.detect.calibrate import _next_chip_var

    own = 90.0 + 6.0 * rng.standard_normal(n)
    s = np.std(own, ddof=1) * np.sqrt(1.0 + 1.0 / n)
    pred = stats.t(n - 1, scale=s)
    got = _next_chip_var(own, 20.0)
    if n > 3:
        assert got == pytest.approx(pred.var(), rel=1e-12)
    else:
        assert not np.isfinite(pred.var())  # undefined (1 dof) or infinite (2)
        lo, hi = pred.ppf([stats.norm.cdf(-1.0), stats.norm.cdf(1.0)])
        assert got == pytest.approx((0.5 * (hi - lo)) ** 2, rel=1e-9)
    assert got > np.var(own, ddof=1)  # wider than the images' own spread
    assert _next_chip_var(own[:1], 20.0) == 400.0  # one image: no spread measured


def test_two_labelled_images_calibrate_a_white_balanced_microscope(tmp_path):
    # a lab whose camera white-balances labels two WSe2 images; with that camera file the
    # detector finds the flakes of all four images white-balanced (measured 7 of 7; with the
    # defaults 3 of 7), and as taken (measured 7 of 7)
    import shutil

    from typer.testing import CliRunner

    from qupaint.cli import app

    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    for p in find_masked_images(LABELLED / "WSe2" / "images")[1::2]:  # 2 of the 4
        shutil.copy(p.image, tmp_path / "images")
        shutil.copy(p.mask, tmp_path / "masks")
    cam_file = tmp_path / "cam.json"
    res = CliRunner().invoke(app, ["calibrate", "--material", "WSe2", "--images",
                                   str(tmp_path / "images"), "--max-layers", "3",
                                   "--out", str(cam_file)])  # fmt: skip
    assert res.exit_code == 0, res.output
    spec = json.loads(cam_file.read_text())
    assert 40 <= spec["oxide_prior_nm"] <= 140 and spec["um_per_px"] == 0.385
    assert spec["oxide_sd_nm"] > 0 and "oxide_nm" not in spec  # known roughly: a prior
    mic = Microscope.load(cam_file)  # as `qupaint detect --camera cam.json` reads it
    assert mic.oxide_nm is None and mic.oxide_prior_nm == spec["oxide_prior_nm"]
    cfg = DetectorConfig.for_microscope(mic)
    gts, wb = [], []
    for _, img, gt, _ in [r for r in _labelled_rows("WSe2")]:
        v = other_camera_settings(img)["white-balanced"]
        wb.append([d for d in detect(v, "WSe2", oxide_nm=None, config=cfg, camera=mic.camera,
                                     um_per_px=mic.um_per_px, oxide_prior_nm=mic.oxide_prior_nm)
                   if d["score"] >= 0.05])  # fmt: skip
        gts.append(gt)
    assert score_real(gts, wb)["found"] >= 5


def _labelled_rows(s):
    for p in find_masked_images(LABELLED / s / "images"):
        img = np.asarray(Image.open(p.image).convert("RGB"))
        mask = np.asarray(Image.open(p.mask))
        yield p.name, img, mask_boxes(mask), mask


def test_demo_real_section_finds_the_shipped_expert_flakes_and_no_dust(tmp_path):
    # the shipped windows of expert-masked micrographs (qupaint/data/real/whole): the purple
    # one's monolayer is its first candidate among the dust specks; no candidate is a speck
    import csv

    from qupaint.demo import real_micrographs

    paths = real_micrographs(tmp_path)
    assert all(p.exists() for p in paths)
    rows = list(csv.DictReader(open(tmp_path / "real_flakes.csv")))
    purple = [r for r in rows if r["image"] == "GrapheneH_purple"]
    assert purple and purple[0]["expert_flake"] == "yes"
    assert all(float(r["area_um2"]) >= 15.0 for r in rows)
    grey = [r for r in rows if r["image"] == "GrapheneH_grey"]
    # measured: 13 of its 18 flakes found, 7 unmatched thin detections
    assert sum(r["expert_flake"] == "yes" for r in grey) >= 10


def _background():
    """A flake-free window of a real chip shipped with the package (MaskTerial, MIT)."""
    from importlib import resources

    files = sorted(p for p in (resources.files("qupaint") / "data/real/backgrounds").iterdir()
                   if p.name.endswith(".jpg"))  # fmt: skip
    with resources.as_file(files[0]) as p:
        return np.asarray(Image.open(p).convert("RGB"))[:400, :400].copy()


def test_fibres_and_specks_on_real_pixels_are_named_and_dropped():
    # a dark fibre (3 um x 100 um) and 3x3 px specks drawn on a real chip's substrate pixels
    img = _background().astype(float)
    img[100:108, 40:300] *= 0.55  # the fibre
    for y, x in ((250, 60), (300, 200), (320, 330)):
        img[y : y + 3, x : x + 3] *= 0.3  # dust specks, 1.3 um^2
    img = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    info: list = []
    dets = detect(img, "graphene", oxide_nm=90.0, camera=CAM, um_per_px=0.385, explain=info)
    info.pop()
    assert not [d for d in dets if d["layers"] <= 5]
    assert [r for r in info if r["rejected"] == "fibre" and r["bbox"][2] > 200], info


def test_detect_cli_refuses_bad_input_and_leaves_nothing_behind(tmp_path):
    from typer.testing import CliRunner

    from qupaint.cli import app

    run = CliRunner().invoke
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    res = run(app, ["detect", str(bad), "--material", "graphene"])
    assert res.exit_code != 0 and "error" in res.output and "broken.jpg" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.jpg"]  # nothing left behind
    Image.fromarray(_background()).save(tmp_path / "chip.png")
    for args, what in ((["--oxide-nm", "2500"], "0-2000"), (["--min-score", "1.5"], "min-score"),
                       (["--min-area-um2", "-1"], "min-area"), (["--um-per-px", "0"], "um-per-px"),
                       (["--material", "nobelium"], "nobelium")):  # fmt: skip
        argv = ["detect", str(tmp_path / "chip.png"), "--material", "graphene", *args]
        res = run(app, argv)
        assert res.exit_code != 0 and what in res.output, (args, res.output)
    # a batch in which no image could be read exits non-zero
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(b"x")
    (tmp_path / "in" / "b.jpg").write_bytes(b"y")
    res = run(app, ["detect", str(tmp_path / "in"), "--material", "graphene", "--out",
                    str(tmp_path / "out")])  # fmt: skip
    assert res.exit_code != 0 and "error" in res.output
    # and a good image works, writing the report with the rejection counts
    res = run(app, ["detect", str(tmp_path / "chip.png"), "--material", "graphene", "--out",
                    str(tmp_path / "good")])  # fmt: skip
    assert res.exit_code == 0, res.output
    rec = json.loads(next((tmp_path / "good" / "detections").glob("*.json")).read_text())
    assert "rejected" in rec and rec["oxide"]["source"] == "flakes"
    assert (tmp_path / "good" / "report.html").is_file()


MT = LABELLED.parent / "maskterial"


@needs_shared("maskterial")
@pytest.mark.slow
@pytest.mark.parametrize("folder, material", [("WS2", "WS2"), ("hBN_Thin", "hBN"),
                                              ("MoSe2", "MoSe2")])  # fmt: skip
def test_unlabelled_real_chips_give_a_few_candidates_not_hundreds(folder, material):
    # before issue 23: 43 detections on one WS2 image, 855 "flakes" in 10 hBN images. Bulk
    # crystals must not pull the ladder fit (measured now: at most 5 / 13 / 1 thin detections
    # per image on WS2 / hBN / MoSe2)
    counts = []
    for path in sorted(MT.joinpath(folder).glob("*.jpg")):
        img = np.asarray(Image.open(path).convert("RGB"))
        counts.append(sum(d["layers"] <= 5 for d in _run(img, material)))
    assert max(counts) <= 20 and sum(counts) <= 10 * len(counts), counts


@pytest.mark.parametrize("backend", backend_params("detect_open", ("cpu",)))
@pytest.mark.parametrize("shape", [(1, 1), (2, 5), (3, 3), (37, 53), (120, 97)])
def test_opening_kernel_equals_scipy(backend, shape, rng):
    from qupaint import _backend
    from qupaint.detect.kernels import CORE, _open_reference

    _, fn = _backend.select("detect_open", "cpu", backend[0])
    for density in (0.3, 0.7, 0.95):
        flags = (rng.random(shape) < density).astype(np.uint8) * CORE
        flags |= (rng.random(shape) < 0.5).astype(np.uint8) * 4  # other bits must not matter
        np.testing.assert_array_equal(fn(flags, CORE), _open_reference(flags, CORE))


def test_one_image_writes_nothing_beside_it_and_batches_skip_what_qupaint_wrote(tmp_path):
    """A single-image ``detect`` once wrote <stem>_detections.png beside the image, which a
    later batch over the folder read as a micrograph ("5 of 5 images" for 4). Its results
    now go to <stem>_qupaint/, and batch readers skip every picture qupaint wrote. The
    command line and the summary count flakes in one vocabulary, the report's."""
    from typer.testing import CliRunner

    from qupaint.cli import app
    from qupaint.detect.batch import find_images

    chips = tmp_path / "chips"
    chips.mkdir()
    Image.fromarray(_background()).save(chips / "chip.png")
    res = CliRunner().invoke(app, ["detect", str(chips / "chip.png"), "--material", "graphene"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in chips.iterdir()) == ["chip.png", "chip_qupaint"]
    results = chips / "chip_qupaint"
    assert (results / "report.html").is_file() and (results / "summary.json").is_file()
    summary = json.loads((results / "summary.json").read_text())
    assert {"flakes", "thin", "monolayer_candidates", "thick"} <= set(summary)
    assert summary["flakes"] == summary["thin"] + summary["thick"]
    assert f"{summary['thin']} thin-flake candidates" in " ".join(res.output.split())
    # pictures qupaint wrote, anywhere, are not micrographs to a batch
    Image.fromarray(_background()).save(chips / "old_detections.png")
    Image.fromarray(_background()).save(chips / "x_pred.png")
    assert find_images([chips]) == [chips / "chip.png"]
    assert find_images([str(chips / "**" / "*.png")]) == [chips / "chip.png"]
    assert [p.name for p in find_images([str(tmp_path / "**" / "*.png")])] == ["chip.png"]
    # named one by one, a file is taken as given
    assert find_images([chips / "old_detections.png"]) == [chips / "old_detections.png"]


def test_overlays_carry_a_scale_bar_a_legend_and_numbers(tmp_path):
    """Overlays had tiny labels, no legend and no scale bar."""
    from qupaint.detect.draw import draw_detections

    img = np.full((600, 960, 3), 128, np.uint8)
    dets = [{"bbox": [100, 100, 80, 60], "category_id": 1, "layers": 1, "score": 0.9}]
    plain = np.asarray(Image.open(draw_detections(img, dets, tmp_path / "a.png")))
    scaled = np.asarray(Image.open(draw_detections(img, dets, tmp_path / "b.png",
                                                   um_per_px=0.385, numbers=True)))  # fmt: skip
    # a 50 um bar (130 px at 0.385 um/px; 100 um would exceed a fifth of 960 px) bottom-left
    white_rows = (scaled[-20:, 9:137] == 255).all(-1).mean(1)
    assert white_rows.max() > 0.95 and (plain[-20:, 9:137] == 128).all()
    assert (scaled[-20:, 150:300] == 128).all()  # and no longer
    # the legend: a swatch of Mono's colour bottom-right
    assert ((scaled[-40:, -200:] == (255, 40, 40)).all(-1)).sum() > 50


def test_labels_of_clustered_flakes_do_not_cover_each_other(rng):
    """Overlay labels were written above each box, and overprinted where flakes cluster."""
    from qupaint.detect.draw import place_labels

    W, H = 960, 600
    # 12 flakes in a 200 x 150 px cluster; labels 110 x 14 px each
    boxes = [[300 + 40 * (k % 4) + rng.uniform(0, 5), 200 + 45 * (k // 4), 30, 25]
             for k in range(12)]  # fmt: skip
    sizes = [(110, 14)] * len(boxes)
    spots = place_labels(boxes, sizes, W, H)
    rects = [(x, y, x + tw, y + th) for (x, y), (tw, th) in zip(spots, sizes, strict=True)]
    for i, a in enumerate(rects):
        assert 0 <= a[0] and a[2] <= W and 0 <= a[1] and a[3] <= H  # in the image
        for b in rects[:i]:
            assert min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1])
    # each label touches its own box, grown by the label's size at most
    for (x, y, w, h), (sx, sy), (tw, th) in zip(boxes, spots, sizes, strict=True):
        assert x - tw - 4 <= sx <= x + w + 4 and y - th - 4 <= sy <= y + h + 4  # 1 px: rounding
    # one box alone: its label sits just above it, as before; at the top edge, below it
    assert place_labels([[100, 100, 80, 60]], [(110, 14)], W, H) == [(100, 83)]
    assert place_labels([[100, 0, 80, 60]], [(110, 14)], W, H) == [(100, 63)]
    # a label wider than the image is kept at its left edge
    assert place_labels([[10, 100, 5, 5]], [(2000, 14)], W, H)[0][0] == 0


def test_classify_many_equals_the_direct_chi_square(rng):
    """classify_many expands sum_c ((m - mu) / s)^2 into two matrix products over every
    hypothesis's rungs; the layer counts and chi-squares equal the direct [P, K, L, 3] sum."""
    from qupaint.detect.ladder import classify, classify_many

    cfg = DetectorConfig()
    L = cfg.max_layers
    base = -0.08 * np.arange(1, L + 1)[:, None] * np.array([1.0, 1.05, 0.6])  # [L, 3]
    mus = base[None] * rng.uniform(0.8, 1.2, (50, 1, 3))  # 50 hypotheses
    w = rng.uniform(0.1, 1.0, 50)
    noise = np.array([0.01, 0.012, 0.015])
    meds = base[rng.integers(0, L, 40)] * rng.uniform(0.9, 1.1, (40, 3))
    got = classify_many(meds, noise, base, (mus, w), cfg, chunk=7)
    for m, g in zip(meds, got, strict=True):
        sig = np.sqrt(noise**2 + (cfg.rel_sigma * m) ** 2)
        d2 = (((m - base) / sig) ** 2).sum(-1)
        d2h = (((m - mus) / sig) ** 2).sum(-1)
        lh = d2h.argmin(1)
        ok = d2h[np.arange(50), lh] <= cfg.max_chi2
        p_fit = w[ok].sum() / w.sum()
        assert g[3] == pytest.approx(p_fit, abs=1e-12)
        if g[0] == int(d2.argmin()) + 1:
            assert g[1] == pytest.approx(d2.min(), rel=1e-9)
        else:  # the hypotheses made it thin
            assert g[0] <= cfg.thin_layers and g[2] >= 0.5
    assert classify(meds[0], noise, base, (mus, w), cfg) == got[0]


@pytest.mark.parametrize("backend", backend_params("detect_median5", ("cpu",)))
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (2, 3), (3, 3), (7, 5), (64, 97)])
def test_median5_equals_scipys_median_filter(shape, backend, rng):
    from scipy import ndimage

    from qupaint.detect.kernels import median5

    for _ in range(5):
        a = rng.integers(0, 4, shape).astype(np.int32) * (rng.random(shape) < 0.8)
        a[: shape[0] // 2] = 2  # a uniform part, where only the fast path runs
        want = ndimage.median_filter(a, size=5)
        np.testing.assert_array_equal(median5(a, backend=backend[0]), want)
        mask = rng.random(shape) < 0.6  # only a piece's pixels, the rest 0
        np.testing.assert_array_equal(median5(a, mask, backend=backend[0]), want * mask)
        # a wide range of values (the C++ kernel's general path), negatives among them
        b = rng.integers(-(10**6), 10**6, shape).astype(np.int32)
        np.testing.assert_array_equal(median5(b, backend=backend[0]),
                                      ndimage.median_filter(b, size=5))  # fmt: skip


@pytest.mark.parametrize("backend", backend_params("detect_ladder_cost", ("cpu",)))
def test_ladder_cost_grid_equals_the_numpy_expression(backend, rng):
    # the ladder fit's [T, G, G, G] cost table: per response triple, the capped chi-square
    # of every piece to its nearest rung, weighted (detect_ladder_cost_cpu vs numpy)
    from qupaint import _backend

    T, G, P, L = 3, 4, 7, 5
    F = [rng.random((T, G, P, L)) * 30 for _ in range(3)]
    w = rng.random(P)
    _, fn = _backend.select("detect_ladder_cost", "cpu", backend[0])
    got = fn(F, w, 50.0)
    tot = F[0][:, :, None, None] + F[1][:, None, :, None] + F[2][:, None, None, :]
    want = np.minimum(tot.min(-1), 50.0) @ w  # [T, G, G, G] at once, by broadcasting
    np.testing.assert_allclose(got, want, rtol=1e-13)


@pytest.mark.parametrize("backend", backend_params("detect_noise", ("cpu",)))
@pytest.mark.parametrize("shape", [(1, 1), (4, 8), (9, 13), (120, 97), (400, 403)])
@pytest.mark.parametrize("ties", [False, True])
def test_substrate_noise_equals_numpys_median_absolute_deviation(shape, ties, backend, rng):
    from qupaint import _backend

    C = (rng.normal(0, 0.02, shape + (3,)) * rng.random(3)).astype(np.float32)
    if ties:  # few distinct values, zeros of both signs: ranks fall inside runs of equals
        C = (np.round(C * 300) / 300).astype(np.float32)
        C[C == 0] = np.where(rng.random((C == 0).sum()) < 0.5, -0.0, 0.0)
    img = rng.integers(0, 256, shape + (3,)).astype(np.uint8)
    _, fn = _backend.select("detect_noise", "cpu", backend[0])
    sub = C[::4, ::4][(img[::4, ::4] < 250).all(-1)]  # no saturated channel: [N, 3]
    got = fn(C, img, 4, 250)
    if len(sub) == 0:
        assert got is None
    else:
        want = np.median(np.abs(sub - np.median(sub, 0)), 0)
        np.testing.assert_array_equal(got, want)  # float32, bit for bit
    img[::4, ::4] = 255  # every sampled pixel saturated: no substrate to measure
    assert fn(C, img, 4, 250) is None


@pytest.mark.parametrize("backend", backend_params("detect_masked_median", ("cpu",)))
def test_masked_median_is_numpys_median_of_the_window(backend, rng):
    from qupaint.detect.kernels import masked_median

    C = rng.normal(0, 0.1, (300, 310, 3)).astype(np.float32)
    C[::7] = np.round(C[::7], 2)  # runs of equal values
    for sl, p in [((slice(3, 4), slice(5, 6)), 1.0), ((slice(10, 30), slice(40, 47)), 0.5),
                  ((slice(0, 300), slice(0, 310)), 0.3), ((slice(100, 300), slice(2, 300)), 0.9),
                  ((slice(5, 9), slice(5, 9)), 0.0)]:  # fmt: skip
        mask = rng.random((sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)) < p
        got = masked_median(C, sl, mask, backend[0])
        assert got.dtype == np.float32
        if mask.any():  # odd and even counts, under and over the bucket pass's 8192 values
            np.testing.assert_array_equal(got, np.median(C[sl][mask], axis=0))
        else:
            assert np.isnan(got).all()
    with pytest.raises(ValueError, match="mask"):
        masked_median(C, (slice(0, 4), slice(0, 4)), np.ones((3, 4), bool), backend[0])


@pytest.mark.parametrize("backend", backend_params("detect_grow", ("cpu",)))
def test_grow_floods_its_colour_then_dilates_into_candidates(backend, rng):
    from scipy import ndimage

    from qupaint.detect.kernels import grow

    H, W = 90, 120
    C = rng.normal(0, 0.05, (H, W, 3)).astype(np.float32)
    C[20:60, 30:80] = np.float32([-0.1, -0.2, -0.15])  # a flake, its tail running off right
    C[38:42, 80:118] = np.float32([-0.1, -0.2, -0.15])
    cand = rng.random((H, W)) < 0.6
    cand[20:60, 30:118] = True
    med, sig = np.float32([-0.1, -0.2, -0.15]), np.array([0.02, 0.03, 0.025])
    for sl, reach, pad in [((slice(25, 55), slice(35, 75)), 40, 3),  # flood along the tail
                           ((slice(25, 55), slice(35, 75)), 10, 0),  # the window bounds it
                           ((slice(0, 10), slice(0, 12)), 5, 2),  # at the image's corner
                           ((slice(80, 90), slice(100, 120)), 0, 4),  # dilation only
                           ((slice(30, 50), slice(40, 70)), 0, 0)]:  # fmt: skip
        piece = rng.random((sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)) < 0.7
        got, gy, gx = grow(piece, sl, pad, cand, C, med, sig, reach, backend=backend[0])
        m = pad + reach
        assert (gy, gx) == (max(0, sl[0].start - m), max(0, sl[1].start - m))
        if reach == 0 and pad == 0:
            assert got is piece
            continue
        # by hand: 4-connected components of same | own holding the piece, then the diamond
        # of radius pad around them (outside the window 0), kept on candidates or the piece
        win = (slice(gy, gy + got.shape[0]), slice(gx, gx + got.shape[1]))
        own = np.zeros(got.shape, bool)
        own[sl[0].start - gy :][: piece.shape[0], sl[1].start - gx :][:, : piece.shape[1]] = piece
        if reach:
            same = cand[win] & (np.abs(C[win] - med) <= 3.0 * sig).all(-1)
            lab, _ = ndimage.label(same | own)
            own = np.isin(lab, np.unique(lab[own]))
        if pad and own.any():
            near = ndimage.distance_transform_cdt(~own, metric="taxicab") <= pad
            own = near & (cand[win] | own)
        np.testing.assert_array_equal(got, own)
        if reach == 40:
            assert got[:, -3:].any()  # the tail was followed to the window's edge


@pytest.mark.parametrize("backend", backend_params("detect_label", ("cpu",)))
@pytest.mark.parametrize("conn8", [True, False])
def test_label_regions_numbers_as_scipy(backend, conn8, rng):
    from scipy import ndimage

    from qupaint.detect.kernels import label_regions

    structure = np.ones((3, 3), bool) if conn8 else None
    for shape, p in [((1, 1), 0.5), ((1, 17), 0.5), ((13, 1), 0.5), ((64, 80), 0.45),
                     ((200, 150), 0.6), ((5, 5), 0.0)]:  # fmt: skip
        binary = rng.random(shape) < p
        want, n = ndimage.label(binary, structure=structure)
        for a in (binary, binary.astype(np.uint8), binary.astype(np.int32)):
            got, k = label_regions(a, conn8, backend[0])
            assert k == n and got.dtype == np.int32
            np.testing.assert_array_equal(got, want)
    # a class map: regions of equal values, each value's regions are scipy's of its mask
    cls = rng.integers(0, 4, (120, 90)).astype(np.int32)
    cls = ndimage.median_filter(cls, 3)
    got, k = label_regions(cls, conn8, backend[0])
    assert k == sum(ndimage.label(cls == v, structure=structure)[1] for v in (1, 2, 3))
    for v in (1, 2, 3):
        lab, _ = ndimage.label(cls == v, structure=structure)
        assert np.array_equal((got > 0) & (cls == v), lab > 0)
        # one region of ours per region of scipy's, and back
        pairs = np.unique(np.stack([lab[lab > 0], got[lab > 0]]), axis=1)
        assert len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]
    firsts = [np.flatnonzero(got.ravel() == j)[0] for j in range(1, k + 1)]
    assert firsts == sorted(firsts)  # numbered by the raster order of their first pixel
    with pytest.raises(ValueError, match="2-D"):
        label_regions(np.zeros((2, 2, 2), bool), conn8, backend[0])


@pytest.mark.parametrize("backend", backend_params("detect_hypotheses", ("cpu",)))
def test_hypothesis_votes_against_a_by_hand_loop(backend, rng):
    from qupaint.detect.ladder import hypothesis_votes

    K, L, T, p = 40, 6, 3, 9
    mus = -np.cumsum(rng.uniform(0.02, 0.1, (K, L, 3)), axis=1)  # ladders going darker
    M = mus[rng.integers(0, K, p), rng.integers(0, L, p)] + rng.normal(0, 0.004, (p, 3))
    M[0] = 5.0  # far from every rung: fits nothing
    a = 1.0 / rng.uniform(0.005, 0.02, (p, 3)) ** 2
    w = rng.random(K)
    okw, thinw, nok, votes, best = hypothesis_votes(M, a, mus, w, 9.0, T, backend[0])
    for i in range(p):
        d = (a[i] * (M[i] - mus) ** 2).sum(-1)  # [K, L]
        lh, dmin = d.argmin(1), d.min(1)
        ok, thin = dmin <= 9.0, (dmin <= 9.0) & (d.argmin(1) < T)
        assert nok[i] == ok.sum()
        np.testing.assert_allclose([okw[i], thinw[i]], [w[ok].sum(), w[thin].sum()], rtol=1e-12)
        for t in range(T):
            np.testing.assert_allclose(votes[i, t], w[thin & (lh == t)].sum(), rtol=1e-12)
            want = d[thin, t].min() if thin.any() else np.inf
            np.testing.assert_allclose(best[i, t], want, rtol=1e-12)
    assert nok[0] == 0 and okw[0] == 0.0 and np.isinf(best[0]).all()
    assert (nok > 0).sum() >= p // 2 and (thinw > 0).any() and (thinw < okw).any()  # all cases
    with pytest.raises(ValueError, match="mus"):
        hypothesis_votes(M, a, mus[:, :, :2], w, 9.0, T, backend[0])
    with pytest.raises(ValueError, match="M and a"):
        hypothesis_votes(M[:, :2], a, mus, w, 9.0, T, backend[0])


@pytest.mark.parametrize("backend", backend_params("detect_masked_percentiles", ("cpu",)))
def test_masked_percentiles_are_numpys(backend, rng):
    from qupaint.detect.kernels import masked_percentiles

    C = rng.normal(0, 0.1, (120, 130, 3)).astype(np.float32)
    C[::5] = np.round(C[::5], 2)  # ties
    for sl, p in [((slice(3, 4), slice(5, 6)), 1.0), ((slice(10, 12), slice(40, 41)), 1.0),
                  ((slice(10, 60), slice(20, 97)), 0.4), ((slice(0, 120), slice(0, 130)), 0.8),
                  ((slice(5, 9), slice(5, 9)), 0.0)]:  # fmt: skip
        mask = rng.random((sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)) < p
        for q in [(5.0, 95.0), (0.0, 50.0, 100.0), (33.3,)]:
            got = masked_percentiles(C, sl, mask, q, backend[0])
            assert got.shape == (len(q), 3) and got.dtype == np.float64
            if mask.any():
                np.testing.assert_array_equal(got, np.percentile(C[sl][mask], q, axis=0))
            else:
                assert np.isnan(got).all()


@pytest.mark.parametrize("backend", backend_params("detect_terrace_classes", ("cpu",)))
def test_nearest_rungs_are_rung_chi2s_argmin_bit_for_bit(backend, rng):
    from qupaint.detect.kernels import nearest_rungs
    from qupaint.detect.ladder import rung_chi2

    mu = -np.cumsum(rng.uniform(0.03, 0.08, (6, 3)), axis=0)
    C = (mu[rng.integers(0, 6, (80, 90))] + rng.normal(0, 0.03, (80, 90, 3))).astype(np.float32)
    C[:4, :4] = ((mu[1] + mu[2]) / 2).astype(np.float32)  # half-way: near a tie
    noise = np.array([0.01, 0.012, 0.015])
    sl, mask = (slice(0, 60), slice(0, 70)), rng.random((60, 70)) < 0.7
    rungs = np.array([0, 1, 2, 4])
    got = nearest_rungs(C, sl, mask, mu[rungs], rungs + 1, noise, 0.05, backend[0])
    px = C[sl][mask]
    want = np.zeros(mask.shape, np.int32)
    want[mask] = rungs[rung_chi2(px, mu[rungs], np.sqrt(noise**2 + (0.05 * px) ** 2)).argmin(1)] + 1
    np.testing.assert_array_equal(got, want)
    assert set(np.unique(got)) == {0, 1, 2, 3, 5}


@pytest.mark.parametrize("backend", backend_params("detect_smooth", ("cpu",)))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_smooth_nearest_is_scipys_gaussian_filter_bit_for_bit(backend, dtype, rng):
    from scipy import ndimage

    from qupaint.detect.contrast import smooth_nearest

    for shape, s in [((75, 120, 3), 9.0), ((75, 120, 1), 9.0), ((3, 4, 3), 1.0),
                     ((16, 16, 2), 2.5), ((40, 7, 3), 12.3), ((1, 1, 1), 3.0)]:  # fmt: skip
        a = rng.random(shape).astype(dtype)
        a[0, 0] = 50.0  # a spike reaching past the edges
        got = smooth_nearest(a, s, backend[0])
        assert got.dtype == dtype and got is not a
        np.testing.assert_array_equal(got, ndimage.gaussian_filter(a, (s, s, 0), mode="nearest"))
    with pytest.raises(ValueError, match="float32 or float64"):
        smooth_nearest(np.zeros((4, 4), dtype), 1.0, backend[0])


@pytest.mark.parametrize("backend", backend_params("detect_label_medians", ("cpu",)))
def test_label_medians_are_numpys_per_label(backend, rng):
    from scipy import ndimage

    from qupaint.detect.kernels import label_medians

    C = rng.normal(0, 0.05, (150, 160, 3)).astype(np.float32)
    C[40:140, 10:150] += np.float32(-0.1)  # one large piece: its medians by the bucket pass
    labels, n = ndimage.label(rng.random((150, 160)) < 0.55)
    labels[40:140, 10:150] = n + 1
    labels = labels.astype(np.int32)
    ids = np.array([n + 1, 1, 2, 3, n + 5, 7])  # n + 5: no such label
    got = label_medians(labels, C, ids, backend[0])
    assert got.dtype == np.float32 and got.shape == (6, 3)
    for i, k in enumerate(ids):
        if k == n + 5:
            assert np.isnan(got[i]).all()
        else:
            np.testing.assert_array_equal(got[i], np.median(C[labels == k], axis=0))
    with pytest.raises(ValueError, match="must match"):
        label_medians(labels[:, :-1], C, ids, backend[0])


@pytest.mark.parametrize("backend", backend_params("detect_boxes", ("cpu",)))
def test_label_boxes_are_find_objects_and_the_areas(backend, rng):
    from scipy import ndimage

    from qupaint.detect.kernels import label_boxes

    for shape in [(1, 1), (5, 9), (64, 80)]:
        labels, n = ndimage.label(rng.random(shape) < 0.4)
        boxes, areas = label_boxes(labels, backend[0])
        assert boxes.shape == (n, 4) and areas.shape == (n,)
        for k, sl in enumerate(ndimage.find_objects(labels)):
            assert tuple(boxes[k]) == (sl[0].start, sl[0].stop, sl[1].start, sl[1].stop)
            assert areas[k] == int((labels == k + 1).sum())


def test_cross_erosion_and_dilation_equal_scipys(rng):
    from scipy import ndimage

    from qupaint.detect.morphology import dilate_cross, erode_cross

    for shape in [(1, 1), (1, 6), (2, 2), (9, 7), (40, 31)]:
        for _ in range(10):
            m = rng.random(shape) < rng.random()
            np.testing.assert_array_equal(erode_cross(m), ndimage.binary_erosion(m))
            for k in (1, 3, 4):
                np.testing.assert_array_equal(dilate_cross(m, k),
                                              ndimage.binary_dilation(m, iterations=k))  # fmt: skip


def test_window_masks_are_the_rle_masks_cut_to_their_boxes(rng):
    """``masks="window"`` (what a chip scan asks for) gives each detection's mask as its box,
    the same pixels as the image-size RLE of ``masks=True``."""
    from qupaint import rle

    img = _chip(rng, 120, 160)
    full = detect(img, "graphene", oxide_nm=90.0, camera=CAM, masks=True)
    cut = detect(img, "graphene", oxide_nm=90.0, camera=CAM, masks="window")
    assert full and len(full) == len(cut)
    for a, b in zip(full, cut, strict=True):
        x, y, w, h = (int(v) for v in a["bbox"])
        assert b["mask"].shape == (h, w) and "segmentation" not in b
        whole = rle.decode(a["segmentation"])
        np.testing.assert_array_equal(b["mask"], whole[y : y + h, x : x + w])
    with pytest.raises(ValueError, match="masks"):
        detect(img, "graphene", oxide_nm=90.0, camera=CAM, masks="rle")


def test_field_least_squares_agrees_with_lstsq_and_survives_one_line_of_blocks(rng):
    from qupaint.detect.contrast import _least_squares, _poly_basis

    B, Y = _poly_basis(20, 30, 4), rng.normal(size=(600, 3))
    want = np.linalg.lstsq(B, Y, rcond=None)[0]
    np.testing.assert_allclose(_least_squares(B, Y), want, rtol=0, atol=1e-11)
    line = B[:30]  # one row of blocks: v is constant, the normal equations are singular
    want = np.linalg.lstsq(line, Y[:30], rcond=None)[0]
    np.testing.assert_allclose(_least_squares(line, Y[:30]), want, atol=1e-12)
