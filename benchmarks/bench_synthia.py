"""Synthia throughput: 512x512 images with 4-8 flakes (mean ~6), PNG writing included,
2 worker processes. Issue target: >= 50 images/s on the 2-core CPU. The stage shares
(background, placement incl. PIA, colour + compositing, blur/noise/encode, PNG) are
measured on one process and printed.

Each timed round is a whole ``generate`` call of N images (pool start, rendering, PNG and
COCO writing, merge). The warm-up round also starts the forkserver, which imports torch
once per Python process (~2 s on this VM); later calls in the process fork from it.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from qupaint.synthia import Synthia, SynthiaConfig, generate
from qupaint.synthia.png import encode_png

N = 512


def test_generate_2_workers(peer, tmp_path_factory, capsys):
    cfg = SynthiaConfig(seed=123)
    Synthia(cfg)  # warm the colour tables before timing
    extra: dict = {}

    def run():
        out = tmp_path_factory.mktemp("syn")
        m = generate(cfg, out, num_images=N, shard_size=32, workers=2)
        extra.update(images=N, flakes_placed=m["flakes_placed"], annotations=m["annotations"])

    peer("synthia-512px-2workers", "qupaint-synthia", run, ours=True, work=N, rounds=2, extra=extra)
    with capsys.disabled():
        print(f"\nsynthia: {extra['flakes_placed']} flakes on {N} images per round")


@pytest.mark.parametrize("style", ["realistic", "classic"])
def test_generate_realism_2_workers(style, peer, tmp_path_factory, capsys):
    """Realism's cost: SynthiaConfig.realistic() against the classic renderer in the same
    run (ratio = classic time / realistic time). Issue target: >= 25 images/s realistic at
    512 px on 2 cores, PNG and COCO writing included."""
    n = 256
    cfg = SynthiaConfig.realistic(seed=123) if style == "realistic" else SynthiaConfig(seed=123)
    Synthia(cfg)

    def run():
        generate(cfg, tmp_path_factory.mktemp("syn"), num_images=n, shard_size=32, workers=2)

    peer("synthia-512px-2workers-realism", f"qupaint-synthia-{style}", run,
         ours=style == "realistic", work=n, rounds=2)  # fmt: skip


def test_stage_shares(benchmark, capsys):
    import qupaint.synthia.render as R

    syn = Synthia(SynthiaConfig(seed=7))
    syn.sample(0)
    timers: dict[str, float] = {}

    def timed(name, fn):
        def wrap(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                timers[name] = timers.get(name, 0.0) + time.perf_counter() - t0

        return wrap

    orig = (syn._procedural, R.substrate_mask, syn._composite, R.finish_image)
    syn._procedural = timed("background", syn._procedural)
    R.substrate_mask = timed("placement (PIA mask)", R.substrate_mask)
    syn._composite = timed("colour + compositing", syn._composite)
    R.finish_image = timed("blur + noise + encode", R.finish_image)
    res = {}

    def run():  # one timed round: 16 images rendered and PNG-encoded in this process
        timers.clear()
        t0 = time.perf_counter()
        imgs = [syn.sample(i).image for i in range(1, 17)]
        res["total"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        for im in imgs:
            encode_png(im)
        timers["PNG"] = time.perf_counter() - t1

    benchmark.group = "synthia-512px-1process-16images"
    try:
        benchmark.pedantic(run, rounds=1, iterations=1)
        total = res["total"]
    finally:
        syn._procedural, R.substrate_mask, syn._composite, R.finish_image = orig
    whole = total + timers["PNG"]
    with capsys.disabled():
        print(f"\nsynthia per image (1 process): {1e3 * whole / 16:.1f} ms")
        for k, v in sorted(timers.items(), key=lambda kv: -kv[1]):
            print(f"  {k:24s} {100 * v / whole:5.1f}%")
    assert np.isfinite(whole)
