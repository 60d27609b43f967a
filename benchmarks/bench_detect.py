"""Physics detector speed on a whole 1920x1200 micrograph on one core, against the peer
2DMatGMM in the same run (issue 40's target: at most half its time), and its per-pixel stage
(contrast to the substrate field and the candidate / edge / bright flags): the C++ kernel
against the numpy reference of the same computation, both single-threaded (the gate
``detect_pixels``).

The images are real micrographs shipped with the package, mirrored to 1920x1200, so the
benchmark needs no data outside the repository: MaskTerial's WS2 chip (900x600, dense with
bulk crystals) and the expert-masked graphene window (GrapheneH_grey, 1000x920, 18 thin
flakes). 2DMatGMM is not on PyPI: ``benchmarks/peers/gmm2dmat.py`` re-implements its
detector step by step with the libraries it uses (OpenCV, numba, scikit-image) and its
published graphene parameters; both run on the graphene image, one thread each. 512 px
Synthia images give the images/s of batch use."""

from __future__ import annotations

import numpy as np
import pytest

from qupaint.color import Camera
from qupaint.detect import DetectorConfig, DetectorSettings, contrast_map, detect
from qupaint.detect.pieces import pixel_flags as _pixel_flags
from qupaint.synthia import Synthia, SynthiaConfig

N = 8


@pytest.fixture(scope="module")
def one_core():
    import torch

    from qupaint import _C

    threads = torch.get_num_threads(), _C.max_threads()
    torch.set_num_threads(1)
    _C.set_num_threads(1)
    yield
    torch.set_num_threads(threads[0])
    _C.set_num_threads(threads[1])


@pytest.fixture(scope="module")
def chip():
    from importlib import resources

    from PIL import Image

    with resources.as_file(resources.files("qupaint") / "data/real/WS2_chip.jpg") as p:
        a = np.asarray(Image.open(p).convert("RGB"))
    big = np.concatenate([a, a[:, ::-1], a], 1)  # 600 x 2700
    big = np.concatenate([big, big[::-1]], 0)  # 1200 x 2700
    return np.ascontiguousarray(big[:1200, :1920])


def _mirrored(name: str) -> np.ndarray:
    """A shipped real micrograph mirrored and cut to 1920x1200 (RGB)."""
    from importlib import resources

    from PIL import Image

    with resources.as_file(resources.files("qupaint") / f"data/real/{name}") as p:
        a = np.asarray(Image.open(p).convert("RGB"))
    big = np.concatenate([a, a[:, ::-1], a], 1)
    big = np.concatenate([big, big[::-1]], 0)
    return np.ascontiguousarray(big[:1200, :1920])


@pytest.fixture(scope="module")
def graphene_chip():
    return _mirrored("whole/GrapheneH_grey.jpg")


def test_detect_graphene_1920x1200_one_core(peer, graphene_chip, one_core):
    settings = DetectorSettings.from_microscope("2dmatgmm")  # `qupaint detect`'s defaults
    run = lambda: detect(graphene_chip, "graphene", settings)  # noqa: E731
    found = len(run())
    peer("detect-graphene-1920x1200-1core", "qupaint-physics-detector", run, ours=True, work=1,
         rounds=7, extra={"detections": found})  # fmt: skip


@pytest.mark.parametrize("method", ["fused", "learned"])
def test_detect_graphene_1920x1200_methods(peer, graphene_chip, one_core, method):
    """The learned methods on the same image and core: ``fused`` runs the segmenter on the
    thin candidates' windows, ``learned`` on the whole image."""
    settings = DetectorSettings.from_microscope("2dmatgmm", method=method)
    run = lambda: detect(graphene_chip, "graphene", settings)  # noqa: E731
    found = len(run())  # loads the weights once
    peer("detect-graphene-1920x1200-1core", f"qupaint-{method}-detector", run, ours=True, work=1,
         rounds=5, extra={"detections": found})  # fmt: skip


def test_detect_graphene_1920x1200_2dmatgmm(peer, graphene_chip, one_core):
    pytest.importorskip("cv2")
    numba = pytest.importorskip("numba")
    from benchmarks.peers.gmm2dmat import GMMDetector2DMat

    numba.set_num_threads(1)
    det = GMMDetector2DMat()
    bgr = np.ascontiguousarray(graphene_chip[:, :, ::-1])
    found = len(det(bgr))  # numba compiles here
    peer("detect-graphene-1920x1200-1core", "2dmatgmm-reimplemented", lambda: det(bgr), work=1,
         rounds=7, extra={"flakes": found})  # fmt: skip


def test_detect_512px(peer):
    syn = Synthia(SynthiaConfig(seed=11))
    samples = [syn.sample(i) for i in range(N)]
    imgs = [(np.ascontiguousarray(s.image), s.info["material"]) for s in samples]
    detect(*imgs[0])  # TMM layer table, cached

    def run():
        for img, mat in imgs:
            detect(img, mat)

    peer("detect-512px", "qupaint-physics-detector", run, ours=True, work=N, rounds=3)


def test_detect_1920x1200_one_core(peer, chip, one_core):
    settings = DetectorSettings.from_microscope("2dmatgmm")  # `qupaint detect`'s defaults
    detect(chip, "WS2", settings)
    peer("detect-1920x1200-1core", "qupaint-physics-detector",
         lambda: detect(chip, "WS2", settings), ours=True, work=1, rounds=5)  # fmt: skip


def _pixels(img, backend):
    cam = Camera.preset("2dmatgmm")
    cm = contrast_map(img, cam, backend=backend)
    return _pixel_flags(cm, img, DetectorConfig(), 0.12, backend)


def test_pixels_cpu(peer, chip, one_core):
    _pixels(chip, "cpu")
    peer("detect-pixels-1920x1200", "qupaint-cpu-1core", lambda: _pixels(chip, "cpu"),
         ours=True, work=1, rounds=5)  # fmt: skip


def test_pixels_reference(peer, chip, one_core):
    peer("detect-pixels-1920x1200", "numpy-reference", lambda: _pixels(chip, "reference"),
         work=1, rounds=3)  # fmt: skip
