"""Physics detector speed on a whole 1920x1200 micrograph on one core (issue 23's target: at
most 0.2 s, the peer 2DMatGMM takes 0.16 s), and its per-pixel stage (contrast to the
substrate field and the candidate / edge / bright flags): the C++ kernel against the numpy
reference of the same computation, both single-threaded (the gate ``detect_pixels``).

The image is a real micrograph shipped with the package (MaskTerial's WS2 chip, 900x600),
mirrored to 1920x1200, so the benchmark needs no data outside the repository; 512 px Synthia
images give the images/s of batch use."""

from __future__ import annotations

import numpy as np
import pytest

from qupaint.color import Camera
from qupaint.detect import DetectorConfig, contrast_map, detect
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
    cam = Camera.preset("2dmatgmm")
    detect(chip, "WS2", None, camera=cam, um_per_px=0.385, oxide_prior_nm=92.94)
    peer("detect-1920x1200-1core", "qupaint-physics-detector",
         lambda: detect(chip, "WS2", None, camera=cam, um_per_px=0.385, oxide_prior_nm=92.94),
         ours=True, work=1, rounds=5)  # fmt: skip


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
