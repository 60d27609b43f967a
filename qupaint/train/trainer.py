"""``qupaint train``: Hugging Face Trainer on QMat-Instruct, single process, torchrun DDP,
FSDP or DeepSpeed (the launcher decides; the same entry point serves all).

Checkpoints every ``save_steps`` hold model, optimizer, scheduler, RNG states and the data
position (Trainer's own format); ``resume: auto`` restarts from the newest one, so a crash
loses at most ``save_steps`` steps and the resumed run continues the same loss curve.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from qupaint.model.image_processing import ImageConfig
from qupaint.model.loading import load_model_and_processor
from qupaint.train.config import TrainConfig
from qupaint.train.data import InstructDataset, coco_regions, patch_class_grids, read_jsonl

__all__ = ["train", "build_trainer", "apply_lora"]


class _Throughput(TrainerCallback):
    """Adds tokens/s (non-padding input tokens) and peak GPU memory to every log line."""

    def __init__(self):
        self.t, self.tokens = time.perf_counter(), 0

    def on_log(self, args, state, control, logs=None, **kw):
        if logs is None:
            return
        now, seen = time.perf_counter(), int(getattr(state, "num_input_tokens_seen", 0) or 0)
        if seen > self.tokens and now > self.t:
            logs["tokens_per_s"] = round((seen - self.tokens) / (now - self.t), 1)
        self.t, self.tokens = now, seen
        if torch.cuda.is_available():
            logs["gpu_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)


class _SaveProcessor(TrainerCallback):
    """Each checkpoint folder gets the processor too, so it is usable on its own."""

    def __init__(self, processor):
        self.processor = processor

    def on_save(self, args, state, control, **kw):
        if state.is_world_process_zero:
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if ckpt.is_dir():
                self.processor.save_pretrained(ckpt)


def _flag(value, default: bool) -> bool:
    if value in ("auto", None):
        return default
    return value in (True, "true", "True", 1)


#: LoRA's default targets: the language model's attention projections
LORA_DEFAULT_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)"


def apply_lora(model, lora: dict):
    """Wrap ``model`` with peft LoRA adapters (``lora``: r, alpha, dropout, target_modules).
    Everything else is frozen except the PIA gate, which trains in full (``modules_to_save``)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ValueError("lora: needs peft; pip install 'qupaint[lora]'") from None
    r = int(lora.get("r", 16))
    cfg = LoraConfig(
        r=r,
        lora_alpha=float(lora.get("alpha", 2 * r)),
        lora_dropout=float(lora.get("dropout", 0.0)),
        target_modules=lora.get("target_modules") or LORA_DEFAULT_TARGETS,
        modules_to_save=["pia_gate"] if getattr(model.config, "use_pia_gate", False) else None,
    )
    return get_peft_model(model, cfg)


def build_trainer(cfg: TrainConfig) -> tuple[Trainer, object]:
    cfg.validate()
    set_seed(cfg.seed)
    image = ImageConfig(dynamic=cfg.dynamic_tiles, max_tiles=cfg.max_tiles)
    model, proc = load_model_and_processor(cfg.model, cfg.use_pia_gate, cfg.seed, image)
    proc.max_length = cfg.max_length
    if cfg.freeze_vision:
        for p in model.model.vision_tower.parameters():
            p.requires_grad_(False)
    if cfg.freeze_llm:
        for p in list(model.model.language_model.parameters()) + list(model.lm_head.parameters()):
            p.requires_grad_(False)
    if cfg.lora is not None:
        model = apply_lora(model, cfg.lora)
    records = read_jsonl(cfg.train_jsonl, cfg.max_samples)
    if not records:
        raise ValueError(f"train_jsonl: {cfg.train_jsonl} holds no records")
    dense = regions = None
    if cfg.dense_coco:
        if not getattr(model.config, "dense_classes", 0):
            raise ValueError("dense_coco: the model has no dense head (dense_classes = 0)")
        if cfg.dense_weight is not None:
            model.config.dense_weight = float(cfg.dense_weight)
        vc = model.config.vision_config
        grid = int(vc.image_size[0]) // int(vc.patch_size[0]) * model.config.dense_sub
        dense = patch_class_grids(cfg.dense_coco, grid)
        if model.config.region_tokens:
            regions = coco_regions(cfg.dense_coco)
    ds = InstructDataset(records, cfg.image_root or Path(cfg.train_jsonl).parent, proc,
                         (cfg.lab_jitter_l, cfg.lab_jitter_ab), cfg.seed, dense, regions,
                         getattr(model.config, "region_tokens", 0),
                         bool(getattr(model.config, "region_refer", False)))  # fmt: skip
    cuda = torch.cuda.is_available()
    bf16 = _flag(cfg.bf16, cuda and torch.cuda.is_bf16_supported())
    args = TrainingArguments(
        output_dir=cfg.output_dir,
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        warmup_steps=cfg.warmup_ratio,  # < 1: a fraction of the run (transformers 5)
        lr_scheduler_type=cfg.lr_scheduler,
        optim="adamw_torch",
        bf16=bf16,
        activation_checkpointing=_flag(cfg.gradient_checkpointing, cuda),
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        seed=cfg.seed,
        data_seed=cfg.seed,
        use_cpu=not cuda,
        report_to="none",
        remove_unused_columns=False,
        train_sampling_strategy="random" if cfg.shuffle else "sequential",
        include_num_input_tokens_seen="non_padding",
        deepspeed=cfg.deepspeed,
        fsdp=cfg.fsdp,
        fsdp_config=cfg.fsdp_config or None,
        ddp_backend=cfg.ddp_backend,
        dataloader_num_workers=cfg.dataloader_workers,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=ds,
        data_collator=proc.collate,
        processing_class=proc.tokenizer,
        callbacks=[_Throughput(), _SaveProcessor(proc)],
    )
    return trainer, proc


def train(cfg: TrainConfig) -> dict:
    """Train; returns ``{"global_step", "train_loss", "log_history", "output_dir"}``."""
    trainer, proc = build_trainer(cfg)
    resume = None
    if cfg.resume == "auto":
        out = Path(cfg.output_dir)
        resume = get_last_checkpoint(str(out)) if out.is_dir() else None
    elif cfg.resume not in ("no", "", None):
        resume = cfg.resume
    result = trainer.train(resume_from_checkpoint=resume)
    if cfg.lora is not None and cfg.lora.get("merge", True):
        # the adapters on their own, then the merged model as the run's output
        trainer.save_model(str(Path(cfg.output_dir) / "adapter"))
        if trainer.is_world_process_zero():
            trainer.model.merge_and_unload().save_pretrained(cfg.output_dir)
    else:
        trainer.save_model(cfg.output_dir)
    if trainer.is_world_process_zero():
        proc.save_pretrained(cfg.output_dir)
    return {
        "global_step": trainer.state.global_step,
        "train_loss": result.training_loss,
        "log_history": trainer.state.log_history,
        "output_dir": cfg.output_dir,
        "resumed_from": resume,
    }
