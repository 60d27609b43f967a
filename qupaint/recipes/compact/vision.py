"""The compact recipe's vision stage: the ViT, the PIA gate and the dense head trained alone
on the dense layer-class labels (the loss is
:meth:`~qupaint.model.modeling.QuPAINTForConditionalGeneration.vision_loss`), about a tenth
of a joint step's cost."""

from __future__ import annotations

import time
from pathlib import Path

from qupaint.model.loading import load_model_and_processor

__all__ = ["VISION_PREFIXES", "train_vision_side", "vision_stage"]

#: the parts of a compact model that the PIA gate can change: it gates the ViT's patch
#: tokens, which only the dense head reads (the LM reads region tokens, discrete text)
VISION_PREFIXES = ("model.vision_tower.", "model.pia_gate.", "model.dense_head.")


def train_vision_side(model, processor, data_dir, out_dir, steps: int, batch: int = 16,
                      lr: float = 2e-3, seed: int = 0, threads: int = 2) -> dict:  # fmt: skip
    """Train only the vision side (:data:`VISION_PREFIXES`) of ``model`` on the dense
    labels of the images of ``data_dir``'s training corpus, with the compact recipe's
    optimiser settings (the transformers Trainer, AdamW, cosine, 5 % warmup, weight decay
    0.01, ``seed`` for the data order) and its steps and batch. In the joint recipe no
    gradient passes between the LM and the vision side (the LM reads the true regions),
    so this is the vision half of it at the same budget, for
    :func:`~qupaint.recipes.compact.ablate_compact`'s ``lm_from``. Returns
    ``{"train_s", "final_loss"}``."""
    import torch
    from torch.utils.data import Dataset
    from transformers import Trainer, TrainingArguments

    from qupaint.train.data import patch_class_grids, read_jsonl

    data = Path(data_dir)
    names = sorted({r["image"] for r in read_jsonl(data / "qmat" / "llava" /
                                                   "train_dialogues.jsonl")})  # fmt: skip
    vc = model.config.vision_config
    side = int(vc.image_size[0]) // int(vc.patch_size[0]) * model.config.dense_sub
    grids = patch_class_grids(data / "synthia" / "annotations.json", side)

    class Images(Dataset):
        def __len__(self):
            return len(names)

        def __getitem__(self, i):
            pv = processor.pixel_values(data / "synthia" / names[i])
            return {"pixel_values": pv, "dense_labels": torch.as_tensor(grids[names[i]])[None]}

    class VisionSide(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, pixel_values, dense_labels):
            return {"loss": self.inner.vision_loss(pixel_values, dense_labels)}

    for name, prm in model.named_parameters():
        prm.requires_grad_(name.startswith(VISION_PREFIXES))
    torch.set_num_threads(threads)
    args = TrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=batch, learning_rate=lr,
        weight_decay=0.01, max_steps=steps, warmup_steps=0.05, lr_scheduler_type="cosine",
        optim="adamw_torch", save_strategy="no", logging_steps=20, seed=seed, data_seed=seed,
        use_cpu=not torch.cuda.is_available(), report_to="none", remove_unused_columns=False,
    )  # fmt: skip
    collate = lambda items: {k: torch.cat([it[k] for it in items]) for k in items[0]}  # noqa: E731
    t0 = time.perf_counter()
    res = Trainer(model=VisionSide(), args=args, train_dataset=Images(),
                  data_collator=collate).train()  # fmt: skip
    for prm in model.parameters():
        prm.requires_grad_(True)
    return {"train_s": round(time.perf_counter() - t0, 1), "final_loss": res.training_loss}


def vision_stage(work: Path, data: Path, steps: int, batch: int, lr: float, seed: int,
                  threads: int):  # fmt: skip
    """The jointly trained model of ``work/run`` with its vision side trained alone for
    ``steps`` more (:func:`train_vision_side`), saved in (and, on a rerun, loaded from)
    ``work/vision``; ``steps=0``: the joint model as it is. Returns (model, processor)."""
    done = work / "vision"
    if steps and (done / "config.json").is_file():
        return load_model_and_processor(str(done))
    model, proc = load_model_and_processor(str(work / "run"))
    if steps:
        train_vision_side(model, proc, data, work / "vision-run", steps, batch, lr, seed, threads)
        model.save_pretrained(done)
        proc.save_pretrained(done)
    return model, proc
