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

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText
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

__all__ = ["QuPAINTModel", "QuPAINTForConditionalGeneration", "QuPAINTPreTrainedModel"]


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


class QuPAINTModel(QuPAINTPreTrainedModel, InternVLModel):
    def __init__(self, config: QuPAINTConfig):
        InternVLModel.__init__(self, config)
        self.pia_gate = PIAGate(
            config.pia_gate_init_w, config.pia_gate_init_b, enabled=config.use_pia_gate
        )
        self._alpha: torch.Tensor | None = None
        if config.dense_classes:
            hidden = config.vision_config.hidden_size
            self.dense_head = nn.Linear(hidden, config.dense_classes * config.dense_sub**2)
        #: the gated patch tokens [N, h, w, C] of the last forward (dense head only)
        self.patch_tokens: torch.Tensor | None = None
        #: the tokenizer that writes region tokens (``attach_tokenizer``)
        self.region_tokenizer = None
        self._region_ids: torch.Tensor | None = None
        #: the boxes [N, 4] questions refer to in this forward (``region_refer``; NaN: none)
        self._ref_boxes: torch.Tensor | None = None
        #: ``region_ids`` and ``ref_boxes`` given to ``generate``, which encodes the image
        #: before its first forward (transformers' ``mm_encoder_outputs``)
        self._generate_inputs: tuple = (None, None)
        #: the region token ids [N, region_tokens] the LM read in the last forward
        self.read_region_ids: torch.Tensor | None = None

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

    def _gated_image_features(self, pixel_values: torch.Tensor, *args, **kwargs):
        """InternVL's image features with the PIA gate on the ViT patches (and, with a
        dense head, ``patch_tokens`` kept for it)."""
        if self.config.use_pia_gate:
            self._alpha = self.pia_alpha(pixel_values)
        try:
            return super().get_image_features(pixel_values, *args, **kwargs)
        finally:
            self._alpha = None

    def get_image_features(self, pixel_values: torch.Tensor, *args, **kwargs):
        out = self._gated_image_features(pixel_values, *args, **kwargs)
        if self.config.region_tokens:
            ids = self._region_ids
            if ids is None:
                ids = self._generate_inputs[0]
            if ids is None:
                ids = self.predicted_region_ids()
            ids = ids.to(out.pooler_output.device)
            want = (out.pooler_output.shape[0], self.config.region_tokens)
            if tuple(ids.shape) != want:
                raise ValueError(f"region_ids: shape {tuple(ids.shape)}; expected {want} "
                                 "(tiles, region_tokens)")  # fmt: skip
            out.pooler_output = self.get_input_embeddings()(ids).to(out.pooler_output.dtype)
            self.read_region_ids = ids
        return out

    def dense_grid_logits(self) -> torch.Tensor:
        """The dense head's logits [N, h * sub, w * sub, classes] of the last image: each
        patch token predicts its ``dense_sub`` x ``dense_sub`` cells."""
        feats = self.patch_tokens
        if not self.config.dense_classes or feats is None:
            raise ValueError("dense_logits: the model has no dense head or saw no image yet")
        n, h, w, _ = feats.shape
        s, c = self.config.dense_sub, self.config.dense_classes
        x = self.dense_head(feats).reshape(n, h, w, s, s, c).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(n, h * s, w * s, c)

    def _class_maps(self) -> np.ndarray:
        """The most likely class of every dense-head cell of the last image [N, H, W]."""
        with torch.no_grad():
            return self.dense_grid_logits().argmax(-1).cpu().numpy()

    def dense_map(self, pixel_values: torch.Tensor) -> np.ndarray:
        """The dense head's class map [N, H, W] of ``pixel_values`` [N, 3, S, S]: the vision
        side alone (no region tokens are written, the LM is not run)."""
        with torch.no_grad():
            self._gated_image_features(pixel_values)
        return self._class_maps()

    def regions(self) -> list[tuple[list, list]]:
        """The regions of the last image's dense map, per tile: (boxes, classes), boxes
        (x1, y1, x2, y2) as fractions of the tile, largest region first
        (:func:`map_regions` with the config's ``region_min_cells`` and
        ``region_absorb_cells``)."""
        cfg = self.config
        return [map_regions(lab, cfg.dense_classes, cfg.region_min_cells,
                            cfg.region_absorb_cells) for lab in self._class_maps()]  # fmt: skip

    def asked_classes(self) -> list[int | None]:
        """Per tile of the last image, the layer class of the box its question refers to
        (``ref_boxes`` of the forward, :func:`box_class` of the dense head's
        probabilities), or None (no box, or ``config.region_refer`` off)."""
        boxes = self._ref_boxes if self._ref_boxes is not None else self._generate_inputs[1]
        n = self.patch_tokens.shape[0] if self.patch_tokens is not None else 0
        if not self.config.region_refer or boxes is None:
            return [None] * n
        boxes = torch.as_tensor(boxes, dtype=torch.float32).cpu()
        if tuple(boxes.shape) != (n, 4):
            raise ValueError(f"ref_boxes: shape {tuple(boxes.shape)}; expected ({n}, 4) "
                             "(one box per tile, NaN for none)")  # fmt: skip
        with torch.no_grad():
            probs = self.dense_grid_logits().float().softmax(-1).cpu().numpy()
        return [None if bool(torch.isnan(b).any()) else box_class(p, b.tolist())
                for p, b in zip(probs, boxes, strict=True)]  # fmt: skip

    def predicted_region_ids(self) -> torch.Tensor:
        """Region token ids [N, region_tokens] of the last image's :meth:`regions`
        (:func:`~qupaint.model.regions.region_ids`: a tally, then the largest regions
        that fit, written top to bottom; opened by the referred box's class,
        :meth:`asked_classes`)."""
        if self.region_tokenizer is None:
            self.region_tokenizer = _checkpoint_tokenizer(self.config)
        if self.region_tokenizer is None:
            raise ValueError("region tokens need the tokenizer: call "
                             "model.attach_tokenizer(processor.tokenizer) "
                             "(load_model_and_processor does)")  # fmt: skip
        tok, length = self.region_tokenizer, self.config.region_tokens
        rows = [region_ids(tok, boxes, cats, length, self.config.image_token_id, asked)
                for (boxes, cats), asked in zip(self.regions(), self.asked_classes(),
                                                strict=True)]  # fmt: skip
        return torch.tensor(rows, dtype=torch.long)

    def _shuffle(self, x: torch.Tensor, scale_factor: float) -> torch.Tensor:
        out = InternVLModel.pixel_shuffle(self, x, scale_factor)
        if self.config.ps_version == "v1":  # v1 skips the final swap back of height/width
            out = out.permute(0, 2, 1, 3).contiguous()
        return out

    def pixel_shuffle(self, vision_features: torch.Tensor, scale_factor: float = 0.5):
        # called by InternVL between the CLS drop and the projector: the gate point
        if self._alpha is not None:
            B, h, w, C = vision_features.shape
            alpha = self._alpha.to(vision_features.device)
            if alpha.shape != (B, h * w):
                raise ValueError(
                    f"PIA grid {tuple(alpha.shape)} does not match the ViT's {B} x {h}x{w} "
                    "patch tokens; check vision_config.image_size / patch_size"
                )
            vision_features = self.pia_gate(vision_features.reshape(B, h * w, C), alpha)
            vision_features = vision_features.reshape(B, h, w, C)
        if self.config.dense_classes:
            self.patch_tokens = vision_features
        return self._shuffle(vision_features, scale_factor)


class QuPAINTForConditionalGeneration(QuPAINTPreTrainedModel, InternVLForConditionalGeneration):
    """InternVL-family vision-language model with the PIA gate.

    ``from_pretrained`` accepts a QuPAINT checkpoint or a plain InternVL "-HF" checkpoint
    (its gate parameters are then created from ``pia_gate_init_w/b``).
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
        #: the pointer's region tokens (keys and values, ids, mask) kept over a cached
        #: generation: later steps carry no image
        self._pointer_src = None
        self.post_init()

    @property
    def pia_gate(self) -> PIAGate:
        return self.model.pia_gate

    def dense_logits(self) -> torch.Tensor:
        """Per-cell class logits [N_tiles, cells, dense_classes] of the last forward's image,
        cells row-major over the ``(h * dense_sub) x (w * dense_sub)`` grid (needs
        ``config.dense_classes``)."""
        return self.model.dense_grid_logits().flatten(1, 2)

    def vision_loss(self, pixel_values: torch.Tensor, dense_labels: torch.Tensor) -> torch.Tensor:
        """The dense head's cross-entropy of ``pixel_values`` [N, 3, S, S] against
        ``dense_labels`` [N, cells] (class per dense-head cell, -100 ignored): the only loss
        that reaches the vision side (ViT, PIA gate, dense head) of a region-token model,
        computed without running the language model."""
        self.model._gated_image_features(pixel_values)
        logits = self.dense_logits()
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
        (``config.region_refer``)."""
        self.model.patch_tokens = None
        self.model._region_ids = region_ids
        self.model._ref_boxes = ref_boxes
        try:
            if self.config.region_pointer:
                if args:
                    raise TypeError("region_pointer: pass the forward's inputs by keyword")
                out = self._pointer_forward(**kwargs)
            else:
                out = super().forward(*args, **kwargs)
        finally:
            self.model._region_ids = None
            self.model._ref_boxes = None
        if dense_labels is not None and self.model.patch_tokens is not None:
            logits = self.dense_logits()
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

    def generate(self, *args, region_ids: torch.Tensor | None = None,
                 ref_boxes: torch.Tensor | None = None, **kwargs):  # fmt: skip
        """transformers' ``generate``; ``region_ids`` and ``ref_boxes`` as in :meth:`forward`
        (generate encodes the image before the first forward, so they are handed to the
        vision side here)."""
        self.model._generate_inputs = (region_ids, ref_boxes)
        try:
            return super().generate(*args, **kwargs)
        finally:
            self.model._generate_inputs = (None, None)

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
        src = None if fresh else self._pointer_src
        slots = input_ids == self.config.image_token_id
        if bool(slots.any()):  # the image is in this call (generate encodes it beforehand)
            b = input_ids.shape[0]
            per_row = slots.sum(1)
            ids = self.model.read_region_ids.to(input_ids.device).reshape(b, -1)
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
        # kept for the next steps of a generation (which may start without a cache object);
        # not while training, where it would hold the graph
        self._pointer_src = src if (cache is not None or not torch.is_grad_enabled()) else None
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
