"""Build or load a QuPAINT model and its processor from a spec ("tiny" or a local folder)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch

from qupaint.model.configuration import compact_config, tiny_config
from qupaint.model.image_processing import ImageConfig
from qupaint.model.modeling import QuPAINTForConditionalGeneration
from qupaint.model.processing import IMG_CONTEXT, QuPAINTProcessor, build_tiny_tokenizer

__all__ = ["COMPACT_DIR", "compact_model", "load_model_and_processor", "tiny_model"]

#: where ``"compact"`` is looked up (config, safetensors, processor, metrics.json), as
#: ``qupaint train-compact --out`` writes it (:mod:`qupaint.recipes.compact`)
COMPACT_DIR = Path(__file__).resolve().parent / "weights" / "compact"


@functools.lru_cache(maxsize=2)
def _tiny_tokenizer():
    return build_tiny_tokenizer()


def tiny_model(use_pia_gate: bool = True, seed: int = 0):
    """A random few-MB QuPAINT model and its processor (tests, demo, CI)."""
    tok = _tiny_tokenizer()
    cfg = tiny_config(len(tok), tok.convert_tokens_to_ids(IMG_CONTEXT), use_pia_gate=use_pia_gate)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = QuPAINTForConditionalGeneration(cfg)
    return model, QuPAINTProcessor.for_model(tok, cfg)


#: the compact model's system turn: the default one is 74 of its tokenizer's tokens, more
#: than a fifth of a training sample, and a model trained from scratch needs no persona
COMPACT_SYSTEM = "You are QuPAINT."


def compact_model(use_pia_gate: bool = True, seed: int = 0):
    """A random compact QuPAINT model (:func:`compact_config`) and its processor: the start
    of training from scratch (``model: compact-init`` in a training config)."""
    tok = _tiny_tokenizer()
    cfg = compact_config(len(tok), tok.convert_tokens_to_ids(IMG_CONTEXT),
                         use_pia_gate=use_pia_gate)  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = QuPAINTForConditionalGeneration(cfg)
    model.attach_tokenizer(tok)
    return model, QuPAINTProcessor.for_model(tok, cfg, system=COMPACT_SYSTEM)


def load_model_and_processor(spec: str, use_pia_gate: bool | None = None, seed: int = 0,
                             image: ImageConfig | None = None, **model_kw):  # fmt: skip
    """``spec``: ``"compact"`` (the compact model in :data:`COMPACT_DIR`, see
    :mod:`qupaint.recipes.compact`),
    ``"tiny"`` (random), ``"compact-init"`` (random compact), a QuPAINT checkpoint folder
    (``save_pretrained`` output), or a local InternVL "-HF" checkpoint folder (the gate is
    added, see ``from_internvl``)."""
    if spec == "compact":
        if not (COMPACT_DIR / "config.json").is_file():
            raise ValueError(
                f"model: no compact weights in {COMPACT_DIR}; train them with `qupaint "
                f"train-compact --out {COMPACT_DIR}` (or pass the folder it wrote)"
            )
        spec = str(COMPACT_DIR)
    if spec == "tiny":
        return tiny_model(True if use_pia_gate is None else use_pia_gate, seed)
    if spec == "compact-init":
        return compact_model(True if use_pia_gate is None else use_pia_gate, seed)
    path = Path(spec)
    if not (path / "config.json").is_file():
        raise ValueError(
            f"model: {spec!r} is not 'compact', 'tiny', 'compact-init' or a folder with "
            "config.json; models are "
            "not downloaded here, point to a local checkpoint"
        )
    model_type = json.loads((path / "config.json").read_text()).get("model_type")
    if model_type == "cviu_chat":  # the authors' release (uark-cviu/QuPAINT)
        from qupaint.model.release import load_release

        return load_release(path, True if use_pia_gate is None else use_pia_gate)
    if model_type == "qupaint":
        kw = {} if use_pia_gate is None else {"use_pia_gate": use_pia_gate}
        model = QuPAINTForConditionalGeneration.from_pretrained(path, **kw, **model_kw)
    elif model_type == "internvl":
        gate = True if use_pia_gate is None else use_pia_gate
        model = QuPAINTForConditionalGeneration.from_internvl(path, use_pia_gate=gate, **model_kw)
    else:
        raise ValueError(f"model: unsupported model_type {model_type!r} in {path}/config.json")
    if (path / "processor_config.json").is_file() or (path / "qupaint_processor.json").is_file():
        proc = QuPAINTProcessor.from_pretrained(path)
    else:
        from transformers import AutoTokenizer

        proc = QuPAINTProcessor.for_model(AutoTokenizer.from_pretrained(path), model.config,
                                          image=image)  # fmt: skip
    model.attach_tokenizer(proc.tokenizer)
    return model, proc
