"""Text and image processing for QuPAINT: chat template, image tokens, label masking, tiling,
CIELAB colour jitter.

Chat template (ChatML, as Qwen and InternVL use)::

    <|im_start|>system\\n{system}<|im_end|>\\n
    <|im_start|>user\\n<img><IMG_CONTEXT> x (tiles * per tile)</img>\\n{question}<|im_end|>\\n
    <|im_start|>assistant\\n{answer}<|im_end|>\\n   ... more turns

Only the answer tokens and their ``<|im_end|>`` carry labels; everything else is -100, so the
loss covers assistant answers only. Text is tokenised piece by piece (prompt pieces, answer
pieces), and generation prompts are built from the very same pieces, so training and
inference see identical token boundaries.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import ProcessorMixin

from qupaint.model.image_processing import ImageConfig, open_image, pixel_values
from qupaint.model.regions import referred_box

IMG_START, IMG_END, IMG_CONTEXT = "<img>", "</img>", "<IMG_CONTEXT>"
IM_START, IM_END, EOS = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
SPECIAL_TOKENS = [EOS, IM_START, IM_END, IMG_START, IMG_END, IMG_CONTEXT]
DEFAULT_SYSTEM = (
    "You are QuPAINT, an assistant for optical microscopy of 2D quantum materials. You "
    "find flakes, estimate their layer number from thin-film interference contrast, and "
    "answer with boxes."
)
IGNORE = -100

__all__ = [
    "build_chat_template",
    "QuPAINTProcessor",
    "build_tiny_tokenizer",
]


def build_tiny_tokenizer(vocab_size: int = 1024, extra_texts: Sequence[str] = ()):
    """A small byte-level BPE tokenizer trained on the QMat-Instruct templates (for the tiny
    model: tests, demo, CI). Deterministic. Real checkpoints bring their own tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from qupaint.categories import CATEGORY_NAMES, CATEGORY_PHRASES
    from qupaint.instruct import templates as T

    texts = [v for k, v in vars(T).items() if k.isupper() and isinstance(v, tuple)]
    corpus = [s for group in texts for s in group if isinstance(s, str)]
    corpus += list(T.REFS.values()) + list(extra_texts)
    words = [*CATEGORY_NAMES.values(), *CATEGORY_PHRASES.values()]
    corpus += [" ".join(words) + " Delta-E CIE76 layers SiO2/Si nm"]
    corpus += [" ".join(str(i) for i in range(0, 1001)), "0.123 0.456 0.789 [0.5, 0.25]"]
    corpus += ["BN hBN graphene MoS2 MoSe2 MoWSe2 WS2 WSe2 WTe2 Yes No <CONCLUSION>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=IM_END, pad_token=EOS,
        additional_special_tokens=[IM_START, IMG_START, IMG_END, IMG_CONTEXT],
    )  # fmt: skip


def build_chat_template(system: str = DEFAULT_SYSTEM) -> str:
    """The ChatML template above as Jinja (``chat_template.jinja``): messages with string
    content or content lists (``{"type": "image"}``, ``{"type": "text", "text": ...}``);
    the system turn defaults to ``system``. An image part renders as ``<image>`` + newline,
    which :meth:`QuPAINTProcessor.__call__` expands into the image tokens."""
    sys_text = system.replace("{", "{{ '{' }}").replace("}", "{{ '}' }}")
    # one line, no trimming: every newline below is one the model sees
    return (
        "{% if messages[0]['role'] != 'system' %}"
        "<|im_start|>system\n" + sys_text + "<|im_end|>\n"
        "{% endif %}"
        "{% for m in messages %}"
        "<|im_start|>{{ m['role'] }}\n"
        "{% if m['content'] is string %}{{ m['content'] }}"
        "{% else %}{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<image>\n"
        "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
        "{% endfor %}{% endif %}"
        "<|im_end|>\n"
        "{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


class QuPAINTProcessor(ProcessorMixin):
    """Chat template + image tokens + label masking + image tiling for QuPAINT models.

    A transformers ``ProcessorMixin``: ``AutoProcessor.from_pretrained(dir)`` loads it,
    ``save_pretrained`` writes the tokenizer, ``processor_config.json`` and
    ``chat_template.jinja``, ``apply_chat_template(messages)`` renders a conversation, and
    ``processor(images=..., text=...)`` expands each ``<image>`` into the image tokens and
    returns ``input_ids``, ``attention_mask`` and ``pixel_values`` (what
    ``pipeline("image-text-to-text")`` calls). Training uses :meth:`encode` and
    :meth:`collate`, which mask everything but the answers.
    """

    tokenizer_class = "AutoTokenizer"

    def __init__(self, tokenizer, tokens_per_tile: int = 256,
                 image: ImageConfig | dict | None = None, system: str = DEFAULT_SYSTEM,
                 max_length: int = 4096, chat_template: str | None = None,
                 refer: bool = False):  # fmt: skip
        super().__init__(tokenizer, chat_template=chat_template or build_chat_template(system))
        #: ``__call__`` adds ``ref_boxes`` (the model reads referred boxes: region_refer)
        self.refer = bool(refer)
        self.tokens_per_tile = int(tokens_per_tile)
        self.image = ImageConfig(**image) if isinstance(image, dict) else (image or ImageConfig())
        self.system = system
        self.max_length = max_length
        for t in SPECIAL_TOKENS:
            if tokenizer.convert_tokens_to_ids(t) in (None, tokenizer.unk_token_id):
                raise ValueError(f"tokenizer lacks the special token {t!r}")
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMG_CONTEXT)
        self.im_end_id = tokenizer.convert_tokens_to_ids(IM_END)
        self.pad_id = tokenizer.convert_tokens_to_ids(EOS)

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["image"] = asdict(self.image)
        for k in ("image_token_id", "im_end_id", "pad_id"):  # derived from the tokenizer
            d.pop(k, None)
        return d

    def __call__(self, images=None, text=None, return_tensors: str | None = "pt",
                 questions: Sequence[str] | None = None, **kwargs):  # fmt: skip
        """Model inputs for generation, left-padded; ``pixel_values`` holds every tile.

        Either ``text`` (a string or a list, e.g. from :meth:`apply_chat_template`) with one
        ``<image>`` per image of ``images`` (one per text, or a list per text), or
        ``questions``: one question per image, each its own conversation with this
        processor's system turn (what :func:`~qupaint.model.inference.generate_answers`
        asks). With ``refer`` (a ``region_refer`` model's processor), ``ref_boxes``
        [tiles, 4] holds the box that each question refers to
        (:func:`~qupaint.model.regions.referred_box`; NaN rows for none, and for images of
        more than one tile)."""
        from transformers import BatchFeature

        if questions is not None:
            if text is not None:
                raise ValueError("give text or questions, not both")
            images = [images] if not isinstance(images, list | tuple) else images
            return BatchFeature(self._questions(images, questions), tensor_type=return_tensors)
        texts = [text] if isinstance(text, str) else list(text or [])
        if images is None:
            per_text = [[] for _ in texts]
        elif not isinstance(images, list | tuple):
            per_text = [[images]]
        else:
            per_text = [im if isinstance(im, list | tuple) else [im] for im in images]
        if not texts:
            texts = [f"{IM_START}user\n<image>\n{IM_END}\n{IM_START}assistant\n"] * len(per_text)
        if len(per_text) != len(texts):
            raise ValueError(f"images: {len(per_text)} image groups for {len(texts)} texts")
        ids, tiles, refs = [], [], []
        for t, ims in zip(texts, per_text, strict=True):
            if t.count("<image>") != len(ims):
                raise ValueError(
                    f"text: {t.count('<image>')} '<image>' placeholders for {len(ims)} images"
                )
            question = t.rpartition(f"{IM_START}user\n")[2].partition(IM_END)[0]
            for im in ims:
                im = self._open(im)
                pv = self.pixel_values(im)
                tiles.append(pv)
                if self.refer:
                    refs.append(self._ref_rows(question.replace("<image>", ""), im, len(pv)))
                t = t.replace("<image>\n", self._image_text(len(pv)), 1).replace(
                    "<image>", self._image_text(len(pv)), 1)  # fmt: skip
            ids.append(self._ids(t))
        data = self._left_pad(ids)
        if tiles:
            data["pixel_values"] = torch.cat(tiles)
        if refs:
            data["ref_boxes"] = torch.cat(refs)
        return BatchFeature(data, tensor_type=return_tensors)

    @classmethod
    def for_model(cls, tokenizer, config, **kw) -> QuPAINTProcessor:
        vc = config.vision_config
        grid = int(vc.image_size[0]) // int(vc.patch_size[0])
        per_tile = int(grid * config.downsample_ratio) ** 2
        if getattr(config, "region_tokens", 0):
            per_tile = int(config.region_tokens)
        img = kw.pop("image", None) or ImageConfig(image_size=int(vc.image_size[0]))
        img.mean, img.std = list(config.image_mean), list(config.image_std)
        kw.setdefault("refer", bool(getattr(config, "region_refer", False)))
        return cls(tokenizer, per_tile, img, **kw)

    # -- images
    @staticmethod
    def _open(image):
        """A PIL image of a PIL image, uint8 array or path."""
        return open_image(image)

    def pixel_values(self, image) -> torch.Tensor:
        """[N_tiles, 3, S, S] float32, normalised, from a PIL image / uint8 array / path
        (:func:`~qupaint.model.image_processing.pixel_values` with this processor's
        :class:`ImageConfig`)."""
        return pixel_values(image, self.image)

    # -- text
    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _image_text(self, n_tiles: int) -> str:
        return IMG_START + IMG_CONTEXT * (self.tokens_per_tile * n_tiles) + IMG_END + "\n"

    def encode(self, turns: Sequence[tuple[str, str | None]], n_tiles: int) -> dict:
        """Token ids and labels of a conversation [(question, answer), ...]; the image
        placeholder ``<image>`` (or, if absent, the start of turn 1) gets the image tokens.
        A final answer of None leaves the prompt open for generation."""
        ids: list[int] = []
        labels: list[int] = []

        def add(text: str, train: bool):
            t = self._ids(text)
            ids.extend(t)
            labels.extend(t if train else [IGNORE] * len(t))

        add(f"{IM_START}system\n{self.system}{IM_END}\n", False)
        for k, (q, a) in enumerate(turns):
            q = q.replace("<image>\n", "<image>")
            if q.count("<image>") > (k == 0):
                raise ValueError("one image per conversation: '<image>' must appear at most "
                                 "once, in the first question")  # fmt: skip
            if k == 0:
                q = q.replace("<image>", self._image_text(n_tiles), 1) if "<image>" in q else (
                    self._image_text(n_tiles) + q)  # fmt: skip
            add(f"{IM_START}user\n{q}{IM_END}\n{IM_START}assistant\n", False)
            if a is None:
                break
            add(a, True)
            add(IM_END, True)
            add("\n", False)
        n_img = ids.count(self.image_token_id)
        if n_img != self.tokens_per_tile * n_tiles:
            want = self.tokens_per_tile * n_tiles
            raise ValueError(
                f"conversation holds {n_img} image tokens; expected {want} (is '<image>' repeated?)"
            )
        if len(ids) > self.max_length:
            raise ValueError(f"conversation is {len(ids)} tokens; max_length is {self.max_length}")
        return {"input_ids": ids, "labels": labels}

    @staticmethod
    def turns_of(record: dict) -> list[tuple[str, str]]:
        """(question, answer) pairs of a QMat-Instruct record in any of the three formats."""
        if "messages" in record:
            m = record["messages"]
            return [(m[i]["content"], m[i + 1]["content"]) for i in range(0, len(m) - 1, 2)]
        c = record["conversations"]
        return [(c[i]["value"], c[i + 1]["value"]) for i in range(0, len(c) - 1, 2)]

    def collate(self, items: Sequence[dict]) -> dict:
        """Right-pad a batch of encoded samples; concatenate their tiles."""
        n = max(len(it["input_ids"]) for it in items)
        ids = torch.full((len(items), n), self.pad_id, dtype=torch.long)
        lab = torch.full((len(items), n), IGNORE, dtype=torch.long)
        att = torch.zeros((len(items), n), dtype=torch.long)
        for k, it in enumerate(items):
            L = len(it["input_ids"])
            ids[k, :L] = torch.tensor(it["input_ids"])
            att[k, :L] = 1
            if "labels" in it:
                lab[k, :L] = torch.tensor(it["labels"])
        out = {"input_ids": ids, "attention_mask": att,
               "pixel_values": torch.cat([it["pixel_values"] for it in items])}  # fmt: skip
        if any("labels" in it for it in items):
            out["labels"] = lab
        if all("dense_labels" in it for it in items):
            out["dense_labels"] = torch.cat([torch.as_tensor(it["dense_labels"]) for it in items])
        if all("region_ids" in it for it in items):
            out["region_ids"] = torch.cat([torch.as_tensor(it["region_ids"]) for it in items])
        return out

    def _questions(self, images: Sequence, questions: Sequence[str]) -> dict:
        """The generation batch of :meth:`__call__` for one question per image."""
        ids, tiles, refs = [], [], []
        for img, q in zip(images, questions, strict=True):
            img = self._open(img)
            pv = self.pixel_values(img)
            ids.append(self.encode([(q, None)], len(pv))["input_ids"])
            tiles.append(pv)
            if self.refer:
                refs.append(self._ref_rows(q, img, len(pv)))
        out = {**self._left_pad(ids), "pixel_values": torch.cat(tiles)}
        if refs:
            out["ref_boxes"] = torch.cat(refs)
        return out

    @staticmethod
    def _ref_rows(question: str, image, n_tiles: int) -> torch.Tensor:
        """``ref_boxes`` rows [n_tiles, 4] of one image: the box ``question`` refers to
        (:func:`referred_box`, any dialect), or NaN (none, or an image of several tiles)."""
        box = referred_box(question.strip(), None, image.size) if n_tiles == 1 else None
        if box is None:
            return torch.full((n_tiles, 4), float("nan"))
        return torch.tensor([box], dtype=torch.float32)

    def _left_pad(self, ids: Sequence[list[int]]) -> dict:
        """``input_ids`` and ``attention_mask`` [B, max length] of token lists, padded on
        the left (generation continues every row from its last column)."""
        n = max(len(i) for i in ids)
        input_ids = torch.full((len(ids), n), self.pad_id, dtype=torch.long)
        att = torch.zeros((len(ids), n), dtype=torch.long)
        for k, i in enumerate(ids):
            input_ids[k, n - len(i) :] = torch.tensor(i)
            att[k, n - len(i) :] = 1
        return {"input_ids": input_ids, "attention_mask": att}

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    # -- persistence: ProcessorMixin's save_pretrained / from_pretrained, plus folders
    # written before the processor became a ProcessorMixin (qupaint_processor.json)
    @classmethod
    def from_pretrained(cls, path, **kwargs) -> QuPAINTProcessor:
        p = Path(path)
        legacy = p / "qupaint_processor.json"
        if legacy.is_file() and not (p / "processor_config.json").is_file():
            from transformers import AutoTokenizer

            cfg = json.loads(legacy.read_text())
            tok = AutoTokenizer.from_pretrained(p)
            return cls(tok, cfg["tokens_per_tile"], ImageConfig(**cfg["image"]), cfg["system"],
                       cfg["max_length"])  # fmt: skip
        return super().from_pretrained(path, **kwargs)


def _register() -> None:
    from transformers import AutoProcessor

    from qupaint.model.configuration import QuPAINTConfig

    AutoProcessor.register(QuPAINTConfig, QuPAINTProcessor, exist_ok=True)
    QuPAINTProcessor.register_for_auto_class("AutoProcessor")


_register()
