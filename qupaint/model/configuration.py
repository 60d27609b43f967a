"""QuPAINT configuration: an InternVL-family config plus the PIA gate's settings."""

from __future__ import annotations

from transformers import InternVLConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

__all__ = ["QuPAINTConfig", "IMAGENET_MEAN", "IMAGENET_STD", "compact_config", "tiny_config"]


class QuPAINTConfig(InternVLConfig):
    """InternVL config (vision tower, pixel shuffle, projector, causal LM) + PIA gate.

    Extra fields
    ------------
    use_pia_gate : bool
        False is the paper's no-PIA ablation: the model is then exactly InternVL.
    pia_gate_init_w, pia_gate_init_b : float
        Initial affine parameters of the gate (QuPAINT Eq. 5); see :class:`qupaint.gate.PIAGate`
        for why 0, 0 leaves a pretrained InternVL unchanged at step 0.
    image_mean, image_std : per-channel normalisation of ``pixel_values``; PIA undoes it to
        measure colour (ImageNet statistics for InternViT).
    ps_version : ``"v2"`` (transformers' InternVL pixel shuffle) or ``"v1"`` (the older
        shuffle that leaves the token grid transposed; some InternVL-derived checkpoints,
        e.g. the authors' QuPAINT release, were tuned with it).
    bbox_head : carry the release's auxiliary ``bbox_head`` (Linear(llm_hidden, 4)); unused
        in generation, kept so such checkpoints round-trip.
    template : name of the chat template (``"chatml"``, or the release's ``"qmllm"``).
    base_model, qfbench : what the model was fine-tuned from, and its QF-Bench results
        (``{"AP": ..., "AP50": ...}`` in %); both go into the model card.
    dense_classes : > 0 adds ``model.dense_head`` (Linear(vit_hidden, dense_classes)), a
        per-patch layer-class classifier on the gated ViT patch tokens. Training with
        ``dense_labels`` adds ``dense_weight`` x its cross-entropy to the language loss, so
        the image tokens carry the layer classes before the LM reads them (the compact
        model, trained from scratch, otherwise learns the answers' language prior and
        ignores the image). 0 (default): no head, exactly InternVL + gate.
    dense_tokens : with a dense head, each LLM image token is (after the projector) the
        mixture of the LM's own word embeddings of its patches' classes ("substrate",
        "monolayer", "few", "thick": ``dense_word_ids``), weighted by the dense head's
        probabilities, plus a linear embedding of those probabilities, a learned embedding
        of its place in the token grid, and the projected ViT features at a learned scale
        (0.02 at start, about a word embedding's size). The image then reads to the LM as
        words it already uses in the answers: trained from scratch with plain image
        tokens, the compact model learned the answers' language prior and gave every
        image the same answers.
    dense_word_ids : the token ids of those class words (one per dense class).
    """

    model_type = "qupaint"

    def __init__(
        self,
        use_pia_gate: bool = True,
        pia_gate_init_w: float = 0.0,
        pia_gate_init_b: float = 0.0,
        image_mean: tuple | list = IMAGENET_MEAN,
        image_std: tuple | list = IMAGENET_STD,
        ps_version: str = "v2",
        bbox_head: bool = False,
        template: str = "chatml",
        base_model: str | None = None,
        qfbench: dict | None = None,
        dense_classes: int = 0,
        dense_weight: float = 1.0,
        dense_tokens: bool = False,
        dense_word_ids: tuple | list | None = None,
        **kwargs,
    ):
        if int(dense_classes) < 0 or float(dense_weight) < 0:
            raise ValueError("dense_classes and dense_weight must be >= 0")
        self.dense_classes = int(dense_classes)
        self.dense_weight = float(dense_weight)
        self.dense_tokens = bool(dense_tokens) and self.dense_classes > 0
        self.dense_word_ids = [int(i) for i in dense_word_ids] if dense_word_ids else None
        if self.dense_tokens and (self.dense_word_ids is None
                                  or len(self.dense_word_ids) != self.dense_classes):  # fmt: skip
            raise ValueError("dense_tokens needs dense_word_ids, one token id per dense class")
        if ps_version not in ("v1", "v2"):
            raise ValueError(f"ps_version must be 'v1' or 'v2'; got {ps_version!r}")
        self.ps_version = ps_version
        self.bbox_head = bool(bbox_head)
        self.template = template
        self.base_model = base_model  # for the model card: what this was fine-tuned from
        self.qfbench = dict(qfbench) if qfbench else None  # QF-Bench results (%), if known
        self.use_pia_gate = bool(use_pia_gate)
        self.pia_gate_init_w = float(pia_gate_init_w)
        self.pia_gate_init_b = float(pia_gate_init_b)
        self.image_mean = [float(v) for v in image_mean]
        self.image_std = [float(v) for v in image_std]
        super().__init__(**kwargs)


def _small_config(
    vocab_size: int,
    image_token_id: int,
    image_px: int,
    vit: tuple[int, int],
    lm: tuple[int, int, int],
    max_positions: int,
    overrides: dict,
) -> QuPAINTConfig:
    """A from-scratch QuPAINT: 14-px patches and a 0.5 pixel shuffle; ``vit`` = (width,
    layers) with 4 heads; ``lm`` = (width, layers, head_dim) of a Qwen3-style LM with 4
    query and 2 key/value heads; MLPs twice as wide."""
    (vw, vl), (tw, tl, hd) = vit, lm
    vision = dict(
        hidden_size=vw,
        num_hidden_layers=vl,
        num_attention_heads=4,
        intermediate_size=2 * vw,
        image_size=[image_px, image_px],
        patch_size=[14, 14],
    )
    text = dict(model_type="qwen3", vocab_size=vocab_size, hidden_size=tw,
                intermediate_size=2 * tw, num_hidden_layers=tl, num_attention_heads=4,
                num_key_value_heads=2, head_dim=hd, max_position_embeddings=max_positions,
                tie_word_embeddings=True, rope_theta=10000.0)  # fmt: skip
    tokens = (image_px // 14 // 2) ** 2
    kw = dict(vision_config=vision, text_config=text, image_token_id=image_token_id,
              image_seq_length=tokens, downsample_ratio=0.5)  # fmt: skip
    kw.update(overrides)
    return QuPAINTConfig(**kw)


def tiny_config(vocab_size: int, image_token_id: int, **overrides) -> QuPAINTConfig:
    """A few-MB random model for tests, the demo and CI: 56-px tiles, 14-px patches (16
    patch tokens -> 4 LLM tokens per tile after pixel shuffle), 2-layer ViT, 2-layer
    Qwen3-style LM."""
    return _small_config(vocab_size, image_token_id, 56, (64, 2), (64, 2, 16), 4096, overrides)


def compact_config(vocab_size: int, image_token_id: int, **overrides) -> QuPAINTConfig:
    """The compact QuPAINT model, trained from scratch on CPU: 224-px images, 14-px patches
    (256 patch tokens -> 64 LLM tokens after pixel shuffle), a 4-layer ViT of width 128 and
    a 4-layer Qwen3-style LM of width 256 (3.48 M parameters, 14 MB in float32), a dense
    head of the 4 layer classes (substrate, Mono, Few, Thick) on the ViT patches, and dense
    tokens (each image token as its patches' class words; see ``QuPAINTConfig``)."""
    overrides = {"dense_classes": 4, "dense_tokens": True, **overrides}
    return _small_config(vocab_size, image_token_id, 224, (128, 4), (256, 4, 64), 2048,
                         overrides)  # fmt: skip
