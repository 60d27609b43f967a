"""QuPAINT model on transformers (QuPAINT Sec. 5.1): InternVL-family VLM + PIA gate."""

from __future__ import annotations

from qupaint._extras import require

require("model", "qupaint.model")  # a missing extra: one line naming it

from qupaint.model.configuration import QuPAINTConfig, tiny_config
from qupaint.model.image_processing import ImageConfig
from qupaint.model.loading import load_model_and_processor, tiny_model
from qupaint.model.modeling import (
    QuPAINTForConditionalGeneration,
    QuPAINTModel,
    QuPAINTPreTrainedModel,
)
from qupaint.model.processing import QuPAINTProcessor, build_tiny_tokenizer

__all__ = [
    "ImageConfig",
    "QuPAINTConfig",
    "QuPAINTForConditionalGeneration",
    "QuPAINTModel",
    "QuPAINTPreTrainedModel",
    "QuPAINTProcessor",
    "build_tiny_tokenizer",
    "load_model_and_processor",
    "tiny_config",
    "tiny_model",
]
