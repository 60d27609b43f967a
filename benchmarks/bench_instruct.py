"""QMat-Instruct build speed from a COCO file. Issue target: >= 2,000 images/s on the 2-core
CPU (one format, all six tasks). The COCO file replicates 16 rendered Synthia images to
4,000 image entries (8 materials, ~6 flakes each), so the work per image is realistic."""

from __future__ import annotations

import json

import pytest

from qupaint.instruct import build_corpus
from qupaint.synthia import SynthiaConfig, generate

N = 4000


@pytest.fixture(scope="module")
def big_coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    generate(SynthiaConfig(seed=5), root, 16, shard_size=16)
    coco = json.loads((root / "annotations.json").read_text())
    images, anns = [], []
    for k in range(N):
        src = coco["images"][k % 16]
        images.append({**src, "id": k})
        own = [a for a in coco["annotations"] if a["image_id"] == src["id"]]
        anns += [{**a, "id": k * 1000 + j + 1, "image_id": k} for j, a in enumerate(own)]
    big = root / "big.json"
    big.write_text(json.dumps({**coco, "images": images, "annotations": anns}))
    build_corpus(big, out_path=root / "warm")  # TMM tables of all 8 materials, cached
    return big


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("formats", [("llava",), ("llava", "internvl", "qwen")],
                         ids=["llava", "3formats"])  # fmt: skip
def test_build_corpus(peer, big_coco, tmp_path, formats, workers):
    name = "+".join(formats)
    peer(f"instruct-{N}img-{len(formats)}fmt", f"qupaint-{name}-{workers}proc",
         lambda: build_corpus(big_coco, out_path=tmp_path / "c", formats=formats,
                              workers=workers),
         ours=workers == 1, work=N, rounds=3)  # fmt: skip
