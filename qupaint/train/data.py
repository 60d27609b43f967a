"""QMat-Instruct JSONL as a torch Dataset of encoded samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from qupaint.model.processing import QuPAINTProcessor, lab_jitter

__all__ = ["InstructDataset", "read_jsonl"]


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


class InstructDataset(Dataset):
    """Records (llava / internvl / qwen) -> {input_ids, labels, pixel_values}.

    CIELAB colour jitter, when on, draws from a generator seeded by (seed, index): the same
    sample gets the same augmentation in every run, so a resumed run is identical.
    """

    def __init__(self, records: list[dict], image_root, processor: QuPAINTProcessor,
                 jitter: tuple[float, float] = (0.0, 0.0), seed: int = 0):  # fmt: skip
        self.records = records
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
        from PIL import Image

        rec = self.records[idx]
        img = np.asarray(Image.open(self.image_path(rec)).convert("RGB"))
        if any(self.jitter):
            img = lab_jitter(img, *self.jitter, np.random.default_rng([self.seed, idx]))
        pv = self.processor.pixel_values(img)
        enc = self.processor.encode(self.processor.turns_of(rec), len(pv))
        enc["pixel_values"] = pv
        return enc
