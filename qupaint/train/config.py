"""Training configuration (YAML) with the paper's defaults (QuPAINT Sec. 6)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

__all__ = ["TrainConfig", "load_config", "LORA_KEYS"]

#: keys of the ``lora`` block: rank, scale (lora_alpha), dropout, the modules adapted (names
#: or one regex; default the language model's attention projections), merge at the end
LORA_KEYS = ("r", "alpha", "dropout", "target_modules", "merge")


@dataclass
class TrainConfig:
    #: "tiny" (random few-MB model + tokenizer) or a local checkpoint folder: a QuPAINT
    #: checkpoint or an InternVL "-HF" one (the gate is added)
    model: str = "tiny"
    use_pia_gate: bool = True
    train_jsonl: str = ""  # QMat-Instruct JSONL (llava, internvl or qwen format)
    image_root: str = ""  # folder the records' image paths are relative to
    output_dir: str = "runs/qupaint"
    # paper defaults: AdamW, lr 2e-5, weight decay 1e-4, batch 4 per device, 2 epochs
    learning_rate: float = 2e-5
    weight_decay: float = 1e-4
    per_device_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    epochs: float = 2.0
    max_steps: int = -1
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    bf16: str = "auto"  # "auto" = on when a CUDA GPU with bf16 is present
    gradient_checkpointing: str = "auto"  # "auto" = on for GPU runs
    freeze_vision: bool = False
    freeze_llm: bool = False
    save_steps: int = 500  # a crash loses at most this many steps
    save_total_limit: int = 3
    logging_steps: int = 10
    seed: int = 0
    shuffle: bool = True
    resume: str = "auto"  # "auto" (latest checkpoint in output_dir), "no", or a path
    lab_jitter_l: float = 0.0  # CIELAB colour jitter std (L*, and a*/b*), 0 = off
    lab_jitter_ab: float = 0.0
    dynamic_tiles: bool = False
    max_tiles: int = 12
    max_length: int = 4096
    dataloader_workers: int = 0
    deepspeed: str | None = None  # path to a DeepSpeed JSON (configs/deepspeed_zero{2,3}.json)
    fsdp: str = ""  # e.g. "full_shard auto_wrap"
    fsdp_config: dict = field(default_factory=dict)
    ddp_backend: str | None = None  # "gloo" for CPU multi-process, "nccl" on GPUs
    max_samples: int | None = None  # use the first N records (smoke tests)
    #: LoRA through peft, e.g. {r: 16, alpha: 32, target_modules: [q_proj, v_proj]}: only the
    #: adapters and the PIA gate train; the merged model is saved at the end (None: off)
    lora: dict | None = None
    #: Synthia COCO of the training images: per-patch layer classes for the dense head
    #: (``patch_class_grids``); the model needs ``dense_classes`` (compact-init has it)
    dense_coco: str = ""
    dense_weight: float | None = None  # None: the model config's dense_weight

    def validate(self) -> None:
        if not self.train_jsonl:
            raise ValueError("train_jsonl: set the QMat-Instruct JSONL to train on")
        if not Path(self.train_jsonl).is_file():
            raise ValueError(f"train_jsonl: no such file {self.train_jsonl!r}; build a corpus "
                             "with qupaint synthia + qupaint instruct (for configs/tiny.yaml: "
                             "make tiny-data)")  # fmt: skip
        if self.per_device_batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("per_device_batch_size >= 1 and learning_rate > 0 required")
        if self.bf16 not in ("auto", "true", "false", True, False):
            raise ValueError("bf16 must be auto, true or false")
        if self.dense_coco and not Path(self.dense_coco).is_file():
            raise ValueError(f"dense_coco: no such file {self.dense_coco!r}")
        if self.lora is not None:
            unknown = sorted(set(self.lora) - set(LORA_KEYS))
            if unknown:
                raise ValueError(f"lora: unknown keys {unknown}; valid keys are {list(LORA_KEYS)}")
            if int(self.lora.get("r", 16)) < 1:
                raise ValueError("lora: r must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


def load_config(path: str | Path | None = None, **overrides) -> TrainConfig:
    """Read a YAML file (keys = :class:`TrainConfig` fields) and apply ``overrides``."""
    import yaml

    data = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"config: no such file {str(p)!r}")
        data = yaml.safe_load(p.read_text()) or {}
        base = p.parent
        # paths relative to the YAML file
        for key in ("train_jsonl", "image_root", "deepspeed", "dense_coco"):
            if data.get(key) and not Path(data[key]).is_absolute() and (base / data[key]).exists():
                data[key] = str(base / data[key])
    data.update({k: v for k, v in overrides.items() if v is not None})
    names = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"config: unknown keys {unknown}; valid keys are {sorted(names)}")
    return TrainConfig(**data)
