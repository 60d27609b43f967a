"""Load the authors' released QuPAINT checkpoints (``uark-cviu/QuPAINT``, model_type
``cviu_chat``) into :class:`QuPAINTForConditionalGeneration`, and speak their formats.

Facts of the release used here (read from its public code, not copied):

* config.json: ``model_type="cviu_chat"``, a ``vision_config`` (InternViT: ``hidden_size``,
  ``num_hidden_layers``, ``num_attention_heads``, ``intermediate_size``, ``qkv_bias``,
  ``qk_normalization``, ``norm_type``, ``layer_norm_eps``, ``initializer_factor``,
  ``image_size``, ``patch_size``), an ``llm_config`` (Qwen3 and relatives, with
  ``architectures``), ``select_layer``, ``force_image_size``, ``downsample_ratio``,
  ``template`` (``"qmllm"``), ``ps_version``, ``dynamic_image_size``, ``use_thumbnail``,
  ``max_dynamic_patch``.
* state dict: ``vision_model.embeddings.{class_embedding, patch_embedding, position_embedding}``,
  ``vision_model.encoder.layers.N.{attn.qkv, attn.q_norm, attn.k_norm, attn.proj, mlp.fc1,
  mlp.fc2, norm1, norm2, ls1, ls2}``, ``mlp1.{0,1,3}`` (LayerNorm, Linear, GELU, Linear),
  ``language_model.model.*``, ``language_model.lm_head.weight`` and ``bbox_head`` (not used
  for inference, carried so the checkpoint loads without unexpected keys).
* preprocessing: resize to a 1792 x 1344 canvas, 448-px tiles (4 x 3 = 12) + thumbnail,
  ImageNet mean/std; template ``qmllm``: ChatML with a domain system prompt; answers give
  boxes as ``<box>x, y, w, h</box>`` in percent of width/height, the committed flakes inside
  ``<CONCLUSION>...</CONCLUSION>``.

The mapping to transformers' InternVL layout is one-to-one except the fused ``qkv``
projection, which is split into ``q_proj``, ``k_proj``, ``v_proj`` (rows in that order).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from qupaint.model.configuration import QuPAINTConfig
from qupaint.model.image_processing import ImageConfig

RELEASE_MODEL_TYPE = "cviu_chat"
RELEASE_CANVAS = (1792, 1344)
RELEASE_SYSTEM = (
    "You are a helpful and harmless AI assistant developed by the CVIU. You are a "
    "domain-specialized vision-language model for 2D materials flake analysis. Your "
    "primary task is to detect, segment, and verify monolayer flakes of various "
    "materials (e.g., graphene, hBN, MoS₂, WS₂, WSe₂, MoSe₂, BP, etc.) "
    "from microscopy images and auxiliary metadata/signals."
)
#: named chat templates: system prompt per template (both are ChatML)
TEMPLATES = {"qmllm": RELEASE_SYSTEM, "internvl2_5": RELEASE_SYSTEM}

__all__ = [
    "RELEASE_CANVAS",
    "RELEASE_SYSTEM",
    "TEMPLATES",
    "config_from_release",
    "is_release_checkpoint",
    "load_release",
    "release_image_config",
    "state_dict_from_release",
]

_VISION_RULES = [
    (r"embeddings\.class_embedding$", "embeddings.cls_token"),
    (r"embeddings\.patch_embedding\.(weight|bias)$", r"embeddings.patch_embeddings.projection.\1"),
    (r"embeddings\.position_embedding$", "embeddings.position_embeddings"),
    (r"encoder\.layers\.(\d+)\.attn\.proj\.", r"encoder.layer.\1.attention.projection_layer."),
    (r"encoder\.layers\.(\d+)\.attn\.(q_norm|k_norm)\.", r"encoder.layer.\1.attention.\2."),
    (r"encoder\.layers\.(\d+)\.mlp\.(fc1|fc2)\.", r"encoder.layer.\1.mlp.\2."),
    (r"encoder\.layers\.(\d+)\.norm1\.", r"encoder.layer.\1.layernorm_before."),
    (r"encoder\.layers\.(\d+)\.norm2\.", r"encoder.layer.\1.layernorm_after."),
    (r"encoder\.layers\.(\d+)\.ls1$", r"encoder.layer.\1.lambda_1"),
    (r"encoder\.layers\.(\d+)\.ls2$", r"encoder.layer.\1.lambda_2"),
]
_PROJECTOR = {"0": "layer_norm", "1": "linear_1", "3": "linear_2"}


def is_release_checkpoint(path) -> bool:
    cfg = Path(path) / "config.json"
    return cfg.is_file() and json.loads(cfg.read_text()).get("model_type") == RELEASE_MODEL_TYPE


def _square(v) -> int:
    if isinstance(v, list | tuple):
        if v[0] != v[1]:
            raise ValueError(f"only square images/patches are supported; got {v}")
        return int(v[0])
    return int(v)


def config_from_release(cfg: dict, image_token_id: int, use_pia_gate: bool = True,
                        **gate) -> QuPAINTConfig:  # fmt: skip
    """QuPAINTConfig equivalent to a release ``config.json`` (dict)."""
    if cfg.get("model_type") != RELEASE_MODEL_TYPE:
        raise ValueError(f"not a release config: model_type {cfg.get('model_type')!r}")
    v = cfg["vision_config"]
    arch = (v.get("architectures") or ["InternVisionModel"])[0]
    if arch != "InternVisionModel":
        raise ValueError(f"vision tower {arch!r} is not supported (InternVisionModel only)")
    size = _square(cfg.get("force_image_size") or v["image_size"])
    vision = dict(
        hidden_size=v["hidden_size"],
        num_hidden_layers=v["num_hidden_layers"],
        num_attention_heads=v["num_attention_heads"],
        intermediate_size=v["intermediate_size"],
        hidden_act=v.get("hidden_act", "gelu"),
        attention_bias=bool(v.get("qkv_bias", True)),
        use_qk_norm=bool(v.get("qk_normalization", False)),
        norm_type=v.get("norm_type", "rms_norm"),
        layer_norm_eps=v.get("layer_norm_eps", 1e-6),
        layer_scale_init_value=v.get("initializer_factor", 0.1),
        image_size=[size, size],
        patch_size=[_square(v["patch_size"])] * 2,
        use_mean_pooling=True,  # InternViT has no norm after its last layer
    )
    llm = dict(cfg["llm_config"])
    llm.setdefault("model_type", "qwen3")
    for k in ("architectures", "auto_map", "_name_or_path", "transformers_version"):
        llm.pop(k, None)
    grid = size // _square(v["patch_size"])
    return QuPAINTConfig(
        vision_config=vision,
        text_config=llm,
        image_token_id=image_token_id,
        image_seq_length=int(grid * cfg.get("downsample_ratio", 0.5)) ** 2,
        downsample_ratio=cfg.get("downsample_ratio", 0.5),
        vision_feature_layer=cfg.get("select_layer", -1),
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        tie_word_embeddings=bool(llm.get("tie_word_embeddings", False)),
        use_pia_gate=use_pia_gate,
        ps_version=cfg.get("ps_version", "v2"),
        bbox_head=True,
        template=cfg.get("template") or "qmllm",
        **gate,
    )


def state_dict_from_release(sd: dict) -> dict:
    """Release key names -> ours (the fused qkv split into q, k, v)."""
    out = {}
    for key, t in sd.items():
        if key.startswith("vision_model."):
            rest = key[len("vision_model.") :]
            m = re.match(r"encoder\.layers\.(\d+)\.attn\.qkv\.(weight|bias)$", rest)
            if m:
                q, k, v = torch.chunk(t, 3, dim=0)
                base = f"model.vision_tower.encoder.layer.{m.group(1)}.attention"
                for name, part in zip(("q_proj", "k_proj", "v_proj"), (q, k, v), strict=True):
                    out[f"{base}.{name}.{m.group(2)}"] = part.clone()
                continue
            for pat, rep in _VISION_RULES:
                new, n = re.subn(pat, rep, rest)
                if n:
                    out["model.vision_tower." + new] = t
                    break
            else:
                raise ValueError(f"unknown vision key in the release checkpoint: {key}")
        elif key.startswith("mlp1."):
            idx, _, param = key[len("mlp1.") :].partition(".")
            if idx not in _PROJECTOR:
                raise ValueError(f"unknown projector key: {key}")
            out[f"model.multi_modal_projector.{_PROJECTOR[idx]}.{param}"] = t
        elif key.startswith("language_model.model."):
            out["model.language_model." + key[len("language_model.model.") :]] = t
        elif key == "language_model.lm_head.weight":
            out["lm_head.weight"] = t
        elif key.startswith("bbox_head."):
            out[key] = t
        else:
            raise ValueError(f"unknown key in the release checkpoint: {key}")
    return out


def _read_state_dict(path: Path) -> dict:
    from safetensors.torch import load_file

    files = sorted(path.glob("*.safetensors"))
    if files:
        sd = {}
        for f in files:
            sd.update(load_file(f))
        return sd
    bins = sorted(path.glob("pytorch_model*.bin"))
    if not bins:
        raise ValueError(f"{path}: no *.safetensors or pytorch_model*.bin weights")
    sd = {}
    for f in bins:
        sd.update(torch.load(f, map_location="cpu", weights_only=True))
    return sd


def release_image_config(cfg: dict) -> ImageConfig:
    """The release's preprocessing: a fixed 4 x 3-tile canvas (1792 x 1344 at 448 px),
    row-major tiles + thumbnail = 13 tiles for any input size."""
    size = _square(cfg.get("force_image_size") or cfg["vision_config"]["image_size"])
    cols, rows = RELEASE_CANVAS[0] // 448, RELEASE_CANVAS[1] // 448
    return ImageConfig(image_size=size, dynamic=True, max_tiles=12, use_thumbnail=True,
                       canvas=[cols * size, rows * size])  # fmt: skip


def load_release(path, use_pia_gate: bool = True, dtype=None, **gate):
    """(model, processor) from a local release checkpoint folder (config.json, weights,
    tokenizer files). The gate starts at w = b = 0 (see :class:`qupaint.gate.PIAGate`: the
    projector's LayerNorm makes that exactly the released behaviour up to its epsilon)."""
    from transformers import AutoTokenizer

    from qupaint.model.modeling import QuPAINTForConditionalGeneration
    from qupaint.model.processing import IMG_CONTEXT, QuPAINTProcessor

    path = Path(path)
    raw = json.loads((path / "config.json").read_text())
    tok = AutoTokenizer.from_pretrained(path)
    img_id = tok.convert_tokens_to_ids(IMG_CONTEXT)
    if img_id is None or img_id == tok.unk_token_id:
        raise ValueError(f"{path}: tokenizer has no {IMG_CONTEXT} token")
    cfg = config_from_release(raw, img_id, use_pia_gate, **gate)
    model = QuPAINTForConditionalGeneration(cfg)
    sd = state_dict_from_release(_read_state_dict(path))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    gate_keys = {"model.pia_gate.w", "model.pia_gate.b"}
    if cfg.tie_word_embeddings:
        gate_keys.add("lm_head.weight")
    if set(missing) - gate_keys or unexpected:
        raise ValueError(f"checkpoint does not match: missing {sorted(set(missing) - gate_keys)},"
                         f" unexpected {sorted(unexpected)}")  # fmt: skip
    if dtype is not None:
        model = model.to(dtype)
    system = TEMPLATES.get(cfg.template, RELEASE_SYSTEM)
    proc = QuPAINTProcessor.for_model(tok, cfg, image=release_image_config(raw), system=system)
    return model.eval(), proc
