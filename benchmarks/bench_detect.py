"""Physics detector speed on 512x512 Synthia images (images/s, one process)."""

from __future__ import annotations

import numpy as np

from qupaint.bench.detector import detect
from qupaint.synthia import Synthia, SynthiaConfig

N = 8


def test_detect_512px(peer):
    syn = Synthia(SynthiaConfig(seed=11))
    samples = [syn.sample(i) for i in range(N)]
    imgs = [(np.ascontiguousarray(s.image), s.info["material"]) for s in samples]
    detect(*imgs[0])  # TMM layer table, cached

    def run():
        for img, mat in imgs:
            detect(img, mat)

    peer("detect-512px", "qupaint-physics-detector", run, ours=True, work=N, rounds=3)
