"""Training (QuPAINT Sec. 6): ``qupaint train --config configs/<name>.yaml``, or launch the same
entry point with ``torchrun`` / ``accelerate launch`` (DDP, FSDP, DeepSpeed)."""

from __future__ import annotations

from qupaint.train.config import TrainConfig, load_config
from qupaint.train.trainer import build_trainer, train

__all__ = ["TrainConfig", "build_trainer", "load_config", "train"]
