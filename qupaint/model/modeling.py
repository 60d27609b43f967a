"""QuPAINT on transformers: InternVL (InternViT -> pixel shuffle -> MLP projector -> LLM) with
the PIA gate on the ViT patch tokens (QuPAINT Sec. 5.1, Eq. 4-9).

Where the gate sits. InternVL drops the ViT's CLS token, reshapes the ``h x w`` patch tokens
to a grid and pixel-shuffles them (``downsample_ratio`` 0.5 concatenates each 2 x 2 block of
tokens along channels) before the projector. The gate scales each *patch* token by
sigmoid(w * alpha_i + b), with alpha_i the PIA score of that 14-px patch, right before the
pixel shuffle, so each token has its own alpha (the paper's per-token Eq. 6).

Tiles and thumbnail. InternVL feeds every tile (and the thumbnail) as its own image in
``pixel_values`` [N_tiles, 3, S, S]; PIA is computed per tile on the same pixels the ViT sees
(``pixel_values`` de-normalised with ``config.image_mean/std``), background median included.

Gate off (``config.use_pia_gate=False``) is exactly InternVL: same modules, same keys, same
outputs.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.internvl.modeling_internvl import (
    InternVLCausalLMOutputWithPast,
    InternVLForConditionalGeneration,
    InternVLModel,
    InternVLPreTrainedModel,
)

from qupaint.gate import PIAGate
from qupaint.model.configuration import QuPAINTConfig
from qupaint.model.pointer import NGRAMS, RegionPointer, continuations, mix_copy
from qupaint.model.regions import box_class, map_regions, region_ids
from qupaint.pia import pia_scores

__all__ = ["QuPAINTForConditionalGeneration", "QuPAINTImageOutputs", "QuPAINTModel",
           "QuPAINTPreTrainedModel"]

#: the attribute of a generation's cache that holds the region pointer's source
POINTER_SOURCE = "qupaint_pointer_source"


class QuPAINTPreTrainedModel(InternVLPreTrainedModel):
    config_class = QuPAINTConfig
    config: QuPAINTConfig

    @torch.no_grad()
    def _init_weights(self, module):
        if isinstance(module, PIAGate):  # also for gate weights missing from a checkpoint
            module.w.fill_(self.config.pia_gate_init_w)
            module.b.fill_(self.config.pia_gate_init_b)
            return
        super()._init_weights(module)


@dataclass
class QuPAINTImageOutputs(BaseModelOutputWithPooling):
    """What the vision side hands the language model for one batch of tiles
    (:meth:`QuPAINTModel.get_image_features`), returned in the model's output as
    ``image_outputs``.

    Attributes
    ----------
    pooler_output : torch.Tensor
        The features the LM reads in place of its image tokens [N, tokens, hidden]: the
        projected patch tokens, or (``config.region_tokens``) the region tokens' embeddings.
    patch_tokens : torch.Tensor or None
        The gated ViT patch tokens [N, h, w, C] the dense head reads (``config.dense_classes``).
    region_ids : torch.Tensor or None
        The region token ids [N, region_tokens] the LM reads (``config.region_tokens``).
    """

    patch_tokens: torch.Tensor | None = None
    region_ids: torch.Tensor | None = None


class QuPAINTModel(QuPAINTPreTrainedModel, InternVLModel):
    """InternVL's model with the PIA gate on the ViT patch tokens, a dense head and region
    tokens. It holds no per-call state: ``region_ids`` and ``ref_boxes`` go in as arguments
    (of :meth:`forward` and :meth:`get_image_features`), and what the vision side made comes
    back in :class:`QuPAINTImageOutputs`."""

    def __init__(self, config: QuPAINTConfig):
        InternVLModel.__init__(self, config)
        self.pia_gate = PIAGate(
            config.pia_gate_init_w, config.pia_gate_init_b, enabled=config.use_pia_gate
        )
        if config.dense_classes:
            hidden = config.vision_config.hidden_size
            self.dense_head = nn.Linear(hidden, config.dense_classes * config.dense_sub**2)
        #: the tokenizer that writes region tokens (``attach_tokenizer``, or the checkpoint's)
        self.region_tokenizer = None

    def pia_alpha(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """PIA scores [N, k] of the ViT patches of ``pixel_values`` [N, 3, S, S] (no grad)."""
        vc = self.config.vision_config
        size, patch = int(vc.image_size[0]), int(vc.patch_size[0])
        with torch.no_grad():
            return pia_scores(
                pixel_values.detach().float(),
                patch_size=patch,
                image_size=size,
                mean=self.config.image_mean,
                std=self.config.image_std,
            )

    def vision_tokens(self, pixel_values: torch.Tensor, vision_feature_layer=None,
                      vision_feature_select_strategy=None, **kwargs):  # fmt: skip
        """(the vision tower's outputs, the gated patch tokens [N, h, w, C]): InternVL's
        image path up to its pixel shuffle (the CLS token dropped, the tokens on their grid),
        with the PIA gate scaling each patch token by sigmoid(w alpha_i + b)."""
        cfg = self.config
        layer = cfg.vision_feature_layer if vision_feature_layer is None else vision_feature_layer
        strategy = (cfg.vision_feature_select_strategy if vision_feature_select_strategy is None
                    else vision_feature_select_strategy)  # fmt: skip
        alpha = self.pia_alpha(pixel_values) if cfg.use_pia_gate else None
        kwargs.pop("return_dict", None)
        if not kwargs.get("output_hidden_states"):  # only the layer read is captured
            kwargs["output_hidden_states"] = layer
        out = self.vision_tower(pixel_values=pixel_values.to(dtype=self.dtype), return_dict=True,
                                **kwargs)  # fmt: skip
        feats = out.last_hidden_state if layer == -1 else out.hidden_states[layer]
        if strategy == "default":
            feats = feats[:, 1:, :]
        B, n, C = feats.shape
        side = int(n**0.5)
        feats = feats.reshape(B, side, side, C)
        if alpha is not None:
            alpha = alpha.to(feats.device)
            if alpha.shape != (B, side * side):
                raise ValueError(
                    f"PIA grid {tuple(alpha.shape)} does not match the ViT's {B} x {side}x{side} "
                    "patch tokens; check vision_config.image_size / patch_size"
                )
            feats = self.pia_gate(feats.reshape(B, side * side, C), alpha).reshape(B, side, side, C)
        return out, feats

    def get_image_features(self, pixel_values: torch.Tensor, vision_feature_layer=None,
                           vision_feature_select_strategy=None,
                           region_ids: torch.Tensor | None = None,
                           ref_boxes: torch.Tensor | None = None,
                           **kwargs) -> QuPAINTImageOutputs:  # fmt: skip
        """The image features the LM reads (:class:`QuPAINTImageOutputs`): the gated patch
        tokens pixel-shuffled and projected; with ``config.region_tokens``, the embeddings of
        ``region_ids`` [N, region_tokens] instead (default: :meth:`predicted_region_ids` of
        the dense head, the question's referred box ``ref_boxes`` [N, 4] included).
        ``generate`` calls it before the first step with the ``region_ids`` and
        ``ref_boxes`` given to it."""
        out, tokens = self.vision_tokens(pixel_values, vision_feature_layer,
                                         vision_feature_select_strategy, **kwargs)  # fmt: skip
        shuffled = self.pixel_shuffle(tokens, self.config.downsample_ratio)
        feats = self.multi_modal_projector(shuffled.reshape(tokens.shape[0], -1,
                                                            shuffled.shape[-1]))  # fmt: skip
        res = QuPAINTImageOutputs(last_hidden_state=out.last_hidden_state, pooler_output=feats,
                                  hidden_states=out.hidden_states, attentions=out.attentions,
                                  patch_tokens=tokens if self.config.dense_classes else None)
        if self.config.region_tokens:
            ids = region_ids if region_ids is not None else self.predicted_region_ids(
                tokens, ref_boxes)  # fmt: skip
            ids = ids.to(feats.device)
            want = (feats.shape[0], self.config.region_tokens)
            if tuple(ids.shape) != want:
                raise ValueError(f"region_ids: shape {tuple(ids.shape)}; expected {want} "
                                 "(tiles, region_tokens)")  # fmt: skip
            res.pooler_output = self.get_input_embeddings()(ids).to(feats.dtype)
            res.region_ids = ids
        return res

    def forward(self, input_ids=None, pixel_values=None, attention_mask=None, position_ids=None,
                cache=None, inputs_embeds=None, vision_feature_layer=None,
                vision_feature_select_strategy=None, mm_encoder_outputs=None,
                region_ids: torch.Tensor | None = None, ref_boxes: torch.Tensor | None = None,
                **kwargs):  # fmt: skip
        """InternVL's forward, the image encoded by :meth:`get_image_features` with
        ``region_ids`` and ``ref_boxes``; its :class:`QuPAINTImageOutputs` are the output's
        ``image_outputs``."""
        if pixel_values is not None and not (mm_encoder_outputs or {}).get("image"):
            image = self.get_image_features(pixel_values, vision_feature_layer,
                                            vision_feature_select_strategy,
                                            region_ids=region_ids, ref_boxes=ref_boxes)
            mm_encoder_outputs = {**(mm_encoder_outputs or {}), "image": image}
            pixel_values = None
        return super().forward(input_ids=input_ids, pixel_values=pixel_values,
                               attention_mask=attention_mask, position_ids=position_ids,
                               cache=cache, inputs_embeds=inputs_embeds,
                               vision_feature_layer=vision_feature_layer,
                               vision_feature_select_strategy=vision_feature_select_strategy,
                               mm_encoder_outputs=mm_encoder_outputs, **kwargs)  # fmt: skip

    def dense_grid_logits(self, patch_tokens: torch.Tensor) -> torch.Tensor:
        """The dense head's logits [N, h * sub, w * sub, classes] of ``patch_tokens``
        [N, h, w, C] (:class:`QuPAINTImageOutputs`): each patch token predicts its
        ``dense_sub`` x ``dense_sub`` cells."""
        if not self.config.dense_classes or patch_tokens is None:
            raise ValueError("dense_logits: the model has no dense head, or no patch tokens "
                             "were given (image_outputs.patch_tokens of a forward)")  # fmt: skip
        n, h, w, _ = patch_tokens.shape
        s, c = self.config.dense_sub, self.config.dense_classes
        x = self.dense_head(patch_tokens).reshape(n, h, w, s, s, c).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(n, h * s, w * s, c)

    def class_maps(self, patch_tokens: torch.Tensor) -> np.ndarray:
        """The most likely class of every dense-head cell [N, H, W] of ``patch_tokens``."""
        with torch.no_grad():
            return self.dense_grid_logits(patch_tokens).argmax(-1).cpu().numpy()

    def dense_map(self, pixel_values: torch.Tensor) -> np.ndarray:
        """The dense head's class map [N, H, W] of ``pixel_values`` [N, 3, S, S]: the vision
        side alone (no region tokens are written, the LM is not run)."""
        with torch.no_grad():
            return self.class_maps(self.vision_tokens(pixel_values)[1])

    def dense_probs(self, pixel_values: torch.Tensor) -> np.ndarray:
        """The dense head's class probabilities [N, H, W, classes] of ``pixel_values``."""
        with torch.no_grad():
            logits = self.dense_grid_logits(self.vision_tokens(pixel_values)[1])
            return logits.float().softmax(-1).cpu().numpy()

    def regions(self, patch_tokens: torch.Tensor) -> list[tuple[list, list]]:
        """The regions of the dense map of ``patch_tokens``, per tile: (boxes, classes), boxes
        (x1, y1, x2, y2) as fractions of the tile, largest region first
        (:func:`map_regions` with the config's ``region_min_cells`` and
        ``region_absorb_cells``)."""
        cfg = self.config
        return [map_regions(lab, cfg.dense_classes, cfg.region_min_cells,
                            cfg.region_absorb_cells)
                for lab in self.class_maps(patch_tokens)]  # fmt: skip

    def asked_classes(self, patch_tokens: torch.Tensor, ref_boxes=None) -> list[int | None]:
        """Per tile, the layer class of the box its question refers to (``ref_boxes`` [N, 4],
        NaN rows: none; :func:`box_class` of the dense head's probabilities of
        ``patch_tokens``), or None (no box, or ``config.region_refer`` off)."""
        n = patch_tokens.shape[0]
        if not self.config.region_refer or ref_boxes is None:
            return [None] * n
        boxes = torch.as_tensor(ref_boxes, dtype=torch.float32).cpu()
        if tuple(boxes.shape) != (n, 4):
            raise ValueError(f"ref_boxes: shape {tuple(boxes.shape)}; expected ({n}, 4) "
                             "(one box per tile, NaN for none)")  # fmt: skip
        with torch.no_grad():
            probs = self.dense_grid_logits(patch_tokens).float().softmax(-1).cpu().numpy()
        return [None if bool(torch.isnan(b).any()) else box_class(p, b.tolist())
                for p, b in zip(probs, boxes, strict=True)]  # fmt: skip

    def predicted_region_ids(self, patch_tokens: torch.Tensor, ref_boxes=None) -> torch.Tensor:
        """Region token ids [N, region_tokens] of the :meth:`regions` of ``patch_tokens``
        (:func:`~qupaint.model.regions.region_ids`: a tally, then the largest regions that
        fit, written top to bottom; opened by the referred box's class,
        :meth:`asked_classes`)."""
        if self.region_tokenizer is None:
            raise ValueError("region tokens need the tokenizer: call "
                             "model.attach_tokenizer(processor.tokenizer) "
                             "(load_model_and_processor does)")  # fmt: skip
        tok, length = self.region_tokenizer, self.config.region_tokens
        rows = [region_ids(tok, boxes, cats, length, self.config.image_token_id, asked)
                for (boxes, cats), asked in zip(self.regions(patch_tokens),
                                                self.asked_classes(patch_tokens, ref_boxes),
                                                strict=True)]  # fmt: skip
        return torch.tensor(rows, dtype=torch.long)

    def pixel_shuffle(self, vision_features: torch.Tensor, scale_factor: float = 0.5):
        """InternVL's pixel shuffle in the checkpoint's version (``ps_version`` v1 skips its
        final swap back of height and width); the gate is applied before it, in
        :meth:`vision_tokens`."""
        out = InternVLModel.pixel_shuffle(self, vision_features, scale_factor)
        if self.config.ps_version == "v1":
            out = out.permute(0, 2, 1, 3).contiguous()
        return out


class QuPAINTForConditionalGeneration(QuPAINTPreTrainedModel, InternVLForConditionalGeneration):
    """InternVL-family vision-language model with the PIA gate.

    ``from_pretrained`` accepts a QuPAINT checkpoint or a plain InternVL "-HF" checkpoint
    (its gate parameters are then created from ``pia_gate_init_w/b``). The model holds no
    per-call state: ``region_ids``, ``ref_boxes`` and ``dense_labels`` are arguments of
    :meth:`forward` (and ``generate``), and the vision side's outputs are the output's
    ``image_outputs`` (:class:`QuPAINTImageOutputs`).
    """

    def __init__(self, config: QuPAINTConfig):
        QuPAINTPreTrainedModel.__init__(self, config)
        self.model = QuPAINTModel(config)
        self.lm_head = nn.Linear(
            config.text_config.hidden_size, config.text_config.vocab_size, bias=False
        )
        if config.bbox_head:
            self.bbox_head = nn.Linear(config.text_config.hidden_size, 4)
        if config.region_pointer:
            self.region_pointer = RegionPointer(config.text_config.hidden_size)
        self.post_init()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """transformers' ``from_pretrained``; the tokenizer saved beside a local checkpoint
        is attached for the region tokens (``pipeline`` loads the model without it)."""
        model = super().from_pretrained(*args, **kwargs)
        if model.config.region_tokens and model.model.region_tokenizer is None:
            model.model.region_tokenizer = _checkpoint_tokenizer(model.config)
        return model

    @property
    def pia_gate(self) -> PIAGate:
        return self.model.pia_gate

    def dense_logits(self, patch_tokens: torch.Tensor) -> torch.Tensor:
        """Per-cell class logits [N_tiles, cells, dense_classes] of ``patch_tokens`` (a
        forward's ``image_outputs.patch_tokens``), cells row-major over the
        ``(h * dense_sub) x (w * dense_sub)`` grid (needs ``config.dense_classes``)."""
        return self.model.dense_grid_logits(patch_tokens).flatten(1, 2)

    def vision_loss(self, pixel_values: torch.Tensor, dense_labels: torch.Tensor) -> torch.Tensor:
        """The dense head's cross-entropy of ``pixel_values`` [N, 3, S, S] against
        ``dense_labels`` [N, cells] (class per dense-head cell, -100 ignored): the only loss
        that reaches the vision side (ViT, PIA gate, dense head) of a region-token model,
        computed without running the language model."""
        logits = self.dense_logits(self.model.vision_tokens(pixel_values)[1])
        target = dense_labels.reshape(-1).to(logits.device)
        return nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), target, ignore_index=-100
        )

    def attach_tokenizer(self, tokenizer) -> None:
        """Give the model the tokenizer that writes its region tokens (``region_tokens``)."""
        self.model.region_tokenizer = tokenizer

    def forward(self, *args, dense_labels: torch.Tensor | None = None,
                region_ids: torch.Tensor | None = None, ref_boxes: torch.Tensor | None = None,
                **kwargs):  # fmt: skip
        """InternVL's forward; with ``dense_labels`` [N_tiles, cells] (class per dense-head
        cell, -100 ignored) the loss gains ``config.dense_weight`` x the dense head's
        cross-entropy. ``region_ids`` [N_tiles, region_tokens] replace the predicted
        region tokens (training on the true regions). ``ref_boxes`` [N_tiles, 4] (x1, y1,
        x2, y2 as fractions; NaN rows: none) are the boxes the questions refer to
        (``config.region_refer``). The vision side's outputs are ``out.image_outputs``."""
        kwargs.update(region_ids=region_ids, ref_boxes=ref_boxes)
        if self.config.region_pointer:
            if args:
                raise TypeError("region_pointer: pass the forward's inputs by keyword")
            out = self._pointer_forward(**kwargs)
        else:
            out = super().forward(*args, **kwargs)
        image = out.image_outputs
        if dense_labels is not None and image is not None and image.patch_tokens is not None:
            logits = self.dense_logits(image.patch_tokens)
            target = dense_labels.to(logits.device).reshape(-1)
            dense = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(),
                target,
                ignore_index=-100,
                reduction="sum",
            ) / (target != -100).sum().clamp(min=1)  # all ignored: 0, not NaN
            w = self.config.dense_weight
            out["loss"] = dense * w if out.loss is None else out.loss + w * dense
        return out

    def _pointer_forward(self, input_ids=None, pixel_values=None, cache=None, labels=None,
                         logits_to_keep=0, inputs_embeds=None, **kwargs):  # fmt: skip
        """InternVL's forward with the :class:`~qupaint.model.pointer.RegionPointer`
        readout: ``logits`` are the mixture's log-probabilities (none while training with
        labels: the loss is formed at the labelled positions only). The region tokens read
        at the first step of a cached generation, and the last tokens for the continuation
        prior, serve its later steps."""
        from transformers.modeling_utils import slice_logits_to_keep

        if input_ids is None or inputs_embeds is not None:
            raise ValueError("region_pointer: the forward needs input_ids (not inputs_embeds), "
                             "to find the region tokens")  # fmt: skip
        fresh = cache is None or cache.get_seq_length() == 0
        out = self.model(input_ids=input_ids, pixel_values=pixel_values, cache=cache, **kwargs)
        h = out[0]
        ptr = self.region_pointer
        # the pointer's region tokens (keys and values, ids, mask) ride on the generation's
        # cache: the later steps of a cached generation carry no image
        src = None if fresh else getattr(cache, POINTER_SOURCE, None)
        slots = input_ids == self.config.image_token_id
        if bool(slots.any()):  # the image is in this call (generate encodes it beforehand)
            b = input_ids.shape[0]
            per_row = slots.sum(1)
            ids = out.image_outputs.region_ids.to(input_ids.device).reshape(b, -1)
            if not bool((per_row == ids.shape[1]).all()):
                raise ValueError(
                    f"region_pointer: rows hold {per_row.tolist()} image tokens; "
                    f"each needs {ids.shape[1]} (its tiles' region tokens)")  # fmt: skip
            src = {"kv": ptr.source(h[slots].reshape(b, ids.shape[1], -1)), "ids": ids,
                   "mask": ids != self.config.image_token_id,
                   "recent": input_ids.new_full((b, NGRAMS - 1), -2)}  # no tokens before
        loss = logits = None
        if src is not None:
            recent = torch.cat([src["recent"], input_ids], 1)
            follow = continuations(src["ids"], recent)
            src = {**src, "recent": recent[:, -(NGRAMS - 1):]}
            h2, attn, gate = ptr(h, src["kv"], src["mask"], follow)
        # kept for the next steps of a generation on its cache (the first step may have none:
        # the language model's own then comes back); not while training, where it would
        # hold the graph
        kept = cache if cache is not None else out.cache
        if kept is not None and (cache is not None or not torch.is_grad_enabled()):
            setattr(kept, POINTER_SOURCE, src)
        if src is not None and labels is not None and torch.is_grad_enabled():
            # training: the mixture only where a label follows, not over [B, T, vocab]
            target = labels[:, 1:].to(h.device)
            keep = target != -100
            rows = keep.nonzero()[:, 0]
            logp = mix_copy(self.lm_head(h2[:, :-1][keep])[:, None], attn[:, :-1][keep][:, None],
                            gate[:, :-1][keep][:, None], src["ids"][rows])[:, 0]  # fmt: skip
            n = kwargs.get("num_items_in_batch")
            n = keep.sum() if n is None else n
            loss = -logp.gather(1, target[keep][:, None]).sum() / torch.as_tensor(
                n, device=h.device).clamp(min=1)  # fmt: skip
        elif src is None:
            logits = self.lm_head(slice_logits_to_keep(h, logits_to_keep)).float().log_softmax(-1)
        else:
            h2, attn, gate = (slice_logits_to_keep(x, logits_to_keep) for x in (h2, attn, gate))
            logits = mix_copy(self.lm_head(h2), attn, gate, src["ids"])
        if labels is not None and logits is not None:  # cross-entropy of log-probs: their NLL
            vocab = self.config.text_config.vocab_size
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=vocab, **kwargs)
        return InternVLCausalLMOutputWithPast(loss=loss, logits=logits, cache=out.cache,
                                              hidden_states=out.hidden_states,
                                              attentions=out.attentions,
                                              image_outputs=out.image_outputs)  # fmt: skip

    def save_pretrained(self, save_directory, *args, model_card: bool = True, **kwargs):
        """transformers' ``save_pretrained`` (with ``auto_map`` in ``config.json``), plus a
        model card ``README.md`` with YAML metadata (:func:`qupaint.model.card.model_card`)."""
        from pathlib import Path

        from qupaint._io import atomic_write_bytes
        from qupaint.model.card import model_card as card

        out = super().save_pretrained(save_directory, *args, **kwargs)
        is_main = kwargs.get("is_main_process", True)
        if model_card and is_main:
            atomic_write_bytes(Path(save_directory) / "README.md", card(self.config).encode())
        return out

    @classmethod
    def from_internvl(cls, path, use_pia_gate: bool = True, **kwargs):
        """Load a local InternVL "-HF" checkpoint folder and add the gate."""
        base = AutoConfig.from_pretrained(path)
        d = base.to_dict()
        d.pop("model_type", None)
        d.pop("architectures", None)
        cfg = QuPAINTConfig(use_pia_gate=use_pia_gate, **d)
        return cls.from_pretrained(path, config=cfg, **kwargs)


def _checkpoint_tokenizer(config):
    """The tokenizer saved beside a checkpoint loaded from a local folder (``from_pretrained``
    and ``pipeline`` load the model without it), or None."""
    from pathlib import Path

    from transformers import AutoTokenizer

    path = Path(getattr(config, "name_or_path", "") or "")
    if not (path / "tokenizer.json").is_file():
        return None
    return AutoTokenizer.from_pretrained(str(path))


def _forward_signature():
    """InternVL's forward signature plus ``dense_labels`` and ``region_ids``: ``generate``
    checks its keyword arguments against the named parameters of ``forward``."""
    sig = inspect.signature(InternVLForConditionalGeneration.forward)
    params = list(sig.parameters.values())
    extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None)
             for n in ("dense_labels", "region_ids", "ref_boxes")]  # fmt: skip
    k = next(i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD)
    return sig.replace(parameters=[*params[:k], *extra, *params[k:]])


QuPAINTForConditionalGeneration.forward.__signature__ = _forward_signature()

AutoConfig.register("qupaint", QuPAINTConfig, exist_ok=True)
AutoModel.register(QuPAINTConfig, QuPAINTModel, exist_ok=True)
AutoModelForImageTextToText.register(QuPAINTConfig, QuPAINTForConditionalGeneration, exist_ok=True)
# checkpoints carry auto_map, so AutoModel* / AutoProcessor find these classes by name
QuPAINTConfig.register_for_auto_class()
QuPAINTForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")
