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
    dense_classes : > 0 adds ``model.dense_head``, a layer-class classifier on the gated
        ViT patch tokens (``dense_sub`` x ``dense_sub`` cells per patch). Training with
        ``dense_labels`` adds ``dense_weight`` x its cross-entropy to the language loss.
        0 (default): no head, exactly InternVL + gate.
    dense_sub : the dense head's cells per patch side (each 14-px patch predicts the
        classes of a ``dense_sub`` x ``dense_sub`` grid of cells: finer region boxes).
    region_tokens : > 0 (needs a dense head) makes the LLM read the image as *region
        tokens*: the dense head's map is cut into connected regions per layer class
        (at least ``region_min_cells`` cells), written as text (a tally, then the boxes:
        "flakes 2, Mono 1, Few 0, Thick 1; Mono: [x1, y1, x2, y2]; Thick: [...]", the
        corpus' own box dialect) and embedded with the LM's word
        embeddings in ``region_tokens`` image-token slots (unused slots hold the image
        token). Training passes the true regions (``region_ids``) instead. The compact
        model, trained from scratch on CPU with continuous image tokens (plain, with the
        dense head, or as class-word mixtures), learned the answers' language prior and
        gave every image the same answers; through region tokens it has to read them.
        A region-token image uses ``region_tokens`` as its ``image_seq_length``.
    region_pointer : with region tokens, a pointer-generator readout over them
        (:class:`~qupaint.model.pointer.RegionPointer`): the answer can copy a region
        token and reads a context vector of them; ``logits`` are then log-probabilities.
    region_min_cells, region_absorb_cells : how the dense map is cut into regions
        (:func:`~qupaint.model.regions.map_regions`); used at inference only.
    region_refer : with region tokens, a question about one flake (``describe``: "Describe
        the flake at [x1, y1, x2, y2].") is answered from that box: the region text opens
        with " asked <layer class>;", the class whose dense-head probability, summed over
        the box's cells weighted towards its centre, is largest
        (:func:`~qupaint.model.regions.box_class`), as GPT4RoI and Ferret pool a
        referred box's features. The box comes in as ``ref_boxes`` (the processor reads it
        off the question); training writes the true class of the box.
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
        dense_sub: int = 1,
        region_tokens: int = 0,
        region_min_cells: int = 3,
        region_absorb_cells: int = 0,
        region_pointer: bool = False,
        region_refer: bool = False,
        **kwargs,
    ):
        if int(dense_classes) < 0 or float(dense_weight) < 0:
            raise ValueError("dense_classes and dense_weight must be >= 0")
        self.dense_classes = int(dense_classes)
        self.dense_weight = float(dense_weight)
        if int(dense_sub) < 1 or int(region_tokens) < 0 or int(region_min_cells) < 1:
            raise ValueError("dense_sub >= 1, region_tokens >= 0 and region_min_cells >= 1 "
                             "required")  # fmt: skip
        if int(region_tokens) and not self.dense_classes:
            raise ValueError("region_tokens needs a dense head (dense_classes > 0)")
        if region_pointer and not int(region_tokens):
            raise ValueError("region_pointer needs region tokens (region_tokens > 0)")
        if region_refer and not int(region_tokens):
            raise ValueError("region_refer needs region tokens (region_tokens > 0)")
        self.region_pointer = bool(region_pointer)
        self.region_refer = bool(region_refer)
        self.dense_sub = int(dense_sub)
        self.region_tokens = int(region_tokens)
        self.region_min_cells = int(region_min_cells)
        self.region_absorb_cells = int(region_absorb_cells)
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
    """The compact QuPAINT model, trained from scratch on CPU: 224-px images, 14-px patches,
    a 4-layer ViT of width 128 and a 4-layer Qwen3-style LM of width 256, a dense head of
    the 4 layer classes (substrate, Mono, Few, Thick) on 4 x 4 cells of each patch (3.5-px
    cells), and the image read by the LM as 192 region tokens, with a referred box's class
    for questions about one flake (see ``QuPAINTConfig``)."""
    overrides = {"dense_classes": 4, "dense_sub": 4, "region_tokens": 192,
                 "region_pointer": True, "region_refer": True, "image_seq_length": 192,
                 **overrides}  # fmt: skip
    return _small_config(vocab_size, image_token_id, 224, (128, 4), (256, 4, 64), 2048,
                         overrides)  # fmt: skip
