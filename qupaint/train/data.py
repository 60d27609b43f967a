"""QMat-Instruct JSONL as a torch Dataset of encoded samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from qupaint._io import read_rgb
from qupaint.model.image_processing import lab_jitter
from qupaint.model.processing import QuPAINTProcessor

__all__ = ["InstructDataset", "patch_class_grids", "read_jsonl"]


def read_jsonl(path, limit: int | None = None) -> list[dict]:
    out = []
    with open(path) as fh:
        for k, line in enumerate(fh):
            if limit is not None and len(out) >= limit:
                break
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{k + 1}: not JSON ({exc.msg})") from exc
    return out


def patch_class_grids(coco_json, grid: int, min_cover: float = 0.3) -> dict[str, np.ndarray]:
    """Per image of a Synthia COCO file, the layer class of each of its ``grid x grid``
    patches (row-major, int64): the category (1 Mono, 2 Few, 3 Thick) that covers the most
    of the patch when it covers at least ``min_cover`` of it, else 0 (substrate). Flakes are
    painted in annotation order, a later one over an earlier one. Keys are ``file_name``.
    The targets of the compact model's dense head (``QuPAINTConfig.dense_classes = 4``)."""
    from qupaint import rle

    if grid < 1 or not 0 < min_cover <= 1:
        raise ValueError("grid must be >= 1 and min_cover in (0, 1]")
    gt = json.loads(Path(coco_json).read_text())
    by_img: dict = {}
    for a in gt["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a)
    out = {}
    for im in gt["images"]:
        h, w = int(im["height"]), int(im["width"])
        label = np.zeros((h, w), np.int64)
        for a in by_img.get(im["id"], []):
            label[rle.decode(a["segmentation"], h, w)] = int(a["category_id"])
        # fraction of each class in each patch (patch edges by rounding: any image size)
        ys = np.minimum((np.arange(h) * grid) // h, grid - 1)
        xs = np.minimum((np.arange(w) * grid) // w, grid - 1)
        cell = (ys[:, None] * grid + xs[None, :]).ravel()
        counts = np.zeros((grid * grid, 4))
        np.add.at(counts, (cell, np.clip(label.ravel(), 0, 3)), 1.0)
        frac = counts / counts.sum(1, keepdims=True)
        best = 1 + np.argmax(frac[:, 1:], axis=1)
        out[im["file_name"]] = np.where(frac[:, 1:].max(1) >= min_cover, best, 0)
    return out


def coco_regions(coco_json) -> dict[str, tuple[list, list]]:
    """Per image of a COCO file (keyed by ``file_name``), its flakes as regions in
    annotation order: (boxes (x1, y1, x2, y2) as fractions of the image, categories). The
    true region tokens of a compact model in training (``QuPAINTConfig.region_tokens``)."""
    gt = json.loads(Path(coco_json).read_text())
    size = {im["id"]: (float(im["width"]), float(im["height"])) for im in gt["images"]}
    out: dict = {im["file_name"]: ([], []) for im in gt["images"]}
    names = {im["id"]: im["file_name"] for im in gt["images"]}
    for a in gt["annotations"]:
        w, h = size[a["image_id"]]
        x, y, bw, bh = a["bbox"]
        boxes, cats = out[names[a["image_id"]]]
        boxes.append((x / w, y / h, (x + bw) / w, (y + bh) / h))
        cats.append(int(a["category_id"]))
    return out


#: the spread (fraction of the image) of the noise added to true region boxes in training.
#: 0: with the pointer (``QuPAINTConfig.region_pointer``) an answer's boxes are copies of
#: the region text, and moved regions made every copied digit wrong (at 0.01, step 200 of
#: a run: its locate loss was the same with another image's regions)
REGION_JITTER = 0.0
#: the share of training samples whose region text leaves out the referred box's class
#: (``QuPAINTConfig.region_refer``): at inference only questions about one flake get it,
#: so the language model must also see region text without it on images with flakes
REFER_DROP = 0.25


class InstructDataset(Dataset):
    """Records (llava / internvl / qwen) -> {input_ids, labels, pixel_values}.

    CIELAB colour jitter, when on, draws from a generator seeded by (seed, index): the same
    sample gets the same augmentation in every run, so a resumed run is identical.

    ``dense``: ``{file_name: patch classes}`` (:func:`patch_class_grids`); each sample then
    carries ``dense_labels`` for the dense head (single-tile images only).
    ``regions``: ``{file_name: (boxes, categories)}`` (:func:`coco_regions`); each sample
    then carries ``region_ids``, its true regions as region tokens (boxes moved by
    :data:`REGION_JITTER`, seeded by (seed, index)) with ``region_length`` slots.
    ``refer``: the model reads the class of the box a question refers to
    (``QuPAINTConfig.region_refer``); the region text then opens with the true class of
    the flake a ``describe`` turn asks about (left out of :data:`REFER_DROP` of samples).
    """

    def __init__(self, records: list[dict], image_root, processor: QuPAINTProcessor,
                 jitter: tuple[float, float] = (0.0, 0.0), seed: int = 0,
                 dense: dict[str, np.ndarray] | None = None, regions: dict | None = None,
                 region_length: int = 0, refer: bool = False):  # fmt: skip
        self.records = records
        self.refer = refer
        self.dense = dense
        self.regions = regions
        self.region_length = region_length
        self.root = Path(image_root) if image_root else Path(".")
        self.processor = processor
        self.jitter = jitter
        self.seed = seed

    def __len__(self) -> int:
        return len(self.records)

    def image_path(self, rec: dict) -> Path:
        name = rec.get("image") or (rec.get("images") or [None])[0]
        if not name:
            raise ValueError(f"record {rec.get('id')} names no image")
        return self.root / name

    def __getitem__(self, idx: int) -> dict:

        rec = self.records[idx]
        img = read_rgb(self.image_path(rec))
        if any(self.jitter):
            img = lab_jitter(img, *self.jitter, np.random.default_rng([self.seed, idx]))
        pv = self.processor.pixel_values(img)
        enc = self.processor.encode(self.processor.turns_of(rec), len(pv))
        enc["pixel_values"] = pv
        if self.dense is not None:
            name = rec.get("image") or rec["images"][0]
            if name not in self.dense:
                raise ValueError(f"dense_coco: no annotations for image {name!r}")
            if len(pv) != 1:
                raise ValueError("dense_coco: dense labels need single-tile images "
                                 "(dynamic_tiles: false)")  # fmt: skip
            enc["dense_labels"] = self.dense[name][None]
        if self.regions is not None:
            enc["region_ids"] = [self._region_ids(rec, idx, (img.shape[1], img.shape[0]))]
        return enc

    def _asked(self, rec: dict, idx: int, size, boxes, cats) -> int | None:
        """The true layer class of the flake that ``rec``'s describe turn asks about (the
        region whose box is nearest the question's: the question writes a true box), or
        None (no such turn, or left out for :data:`REFER_DROP` of samples)."""
        from qupaint.model.regions import referred_box

        if not self.refer or not boxes:
            return None
        if np.random.default_rng([self.seed, idx, 2]).random() < REFER_DROP:
            return None
        for q, _ in self.processor.turns_of(rec):
            box = referred_box(q, None, size)
            if box is not None:
                gap = np.abs(np.asarray(boxes, float) - np.asarray(box, float)).max(1)
                return int(cats[int(np.argmin(gap))])
        return None

    def _region_ids(self, rec: dict, idx: int, size=(1, 1)) -> list[int]:
        from qupaint.model.regions import region_ids

        name = rec.get("image") or rec["images"][0]
        if name not in self.regions:
            raise ValueError(f"dense_coco: no annotations for image {name!r}")
        boxes, cats = self.regions[name]
        rng = np.random.default_rng([self.seed, idx, 1])
        moved = np.clip(np.asarray(boxes, float).reshape(-1, 4)
                        + rng.normal(0.0, REGION_JITTER, (len(boxes), 4)), 0.0, 1.0)  # fmt: skip
        moved = [tuple(b) for b in moved]
        return region_ids(self.processor.tokenizer, moved, cats, self.region_length,
                          self.processor.image_token_id,
                          self._asked(rec, idx, size, boxes, cats))  # fmt: skip
