"""Hugging Face-native QuPAINT, offline on the tiny model: AutoProcessor with its chat
template, auto_map checkpoints, AutoModelForImageTextToText, pipeline, model card, LoRA."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from conftest import ImageOutputSpy
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor, pipeline

from qupaint.model import QuPAINTProcessor, tiny_model

QUESTION = "How many monolayer flakes are there?"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model, proc = tiny_model(seed=1)
    model.config.base_model = "OpenGVLab/InternVL3-1B-hf"
    model.config.qfbench = {"AP": 41.5, "AP50": 60.25}
    out = tmp_path_factory.mktemp("hf")
    model.save_pretrained(out)
    proc.save_pretrained(out)
    img = out / "chip.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(90, 140, (64, 64, 3), dtype=np.uint8)).save(img)
    return out, model.eval(), proc, img


def _messages(img):
    return [{"role": "user", "content": [{"type": "image", "image": str(img)},
                                         {"type": "text", "text": QUESTION}]}]  # fmt: skip


def test_auto_processor_round_trip_and_chat_template(saved):
    out, _, proc, img = saved
    assert (out / "chat_template.jinja").is_file()
    assert json.loads((out / "processor_config.json").read_text())["auto_map"] == {
        "AutoProcessor": "processing.QuPAINTProcessor"
    }
    loaded = AutoProcessor.from_pretrained(out)
    assert isinstance(loaded, QuPAINTProcessor)
    assert loaded.tokens_per_tile == proc.tokens_per_tile and loaded.image == proc.image
    text = loaded.apply_chat_template(_messages(img), add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n") and "<image>\n" + QUESTION in text
    batch = loaded(images=Image.open(img), text=text)
    # token for token what training's encode() builds for the same question
    enc = proc.encode([("<image>\n" + QUESTION, None)], 1)
    assert batch["input_ids"][0].tolist() == enc["input_ids"]
    assert batch["pixel_values"].shape[0] == 1
    with pytest.raises(ValueError, match="placeholders"):
        loaded(images=[Image.open(img)], text=QUESTION)


def test_auto_model_from_auto_map_gives_the_same_logits(saved):
    out, model, proc, img = saved
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["auto_map"]["AutoModelForImageTextToText"].endswith(
        "QuPAINTForConditionalGeneration"
    )
    loaded = AutoModelForImageTextToText.from_pretrained(out).eval()
    batch = proc(images=Image.open(img), text=proc.apply_chat_template(
        _messages(img), add_generation_prompt=True, tokenize=False))  # fmt: skip
    with torch.no_grad():
        a = model(**batch).logits
        b = loaded(**batch).logits
    torch.testing.assert_close(a, b)


def test_pipeline_image_text_to_text_offline(saved):
    out, _, _, img = saved
    pipe = pipeline("image-text-to-text", model=str(out))
    res = pipe(text=_messages(img), max_new_tokens=4)
    assert res[0]["generated_text"][-1]["role"] == "assistant"
    assert isinstance(res[0]["generated_text"][-1]["content"], str)


def test_pipeline_runs_a_region_token_model_and_gives_it_the_referred_box(tmp_path):
    """A compact (region-token, ``region_refer``) checkpoint through ``AutoProcessor`` and
    ``pipeline``: the model finds its tokenizer beside its weights, the processor's
    ``ref_boxes`` carry a describe question's box (NaN rows for other questions), and the
    region text the model reads opens with that box's class."""
    from qupaint.model import load_model_and_processor

    model, proc = load_model_and_processor("compact-init", seed=5)
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    img = tmp_path / "chip.png"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(img)
    auto = AutoProcessor.from_pretrained(tmp_path)
    assert auto.refer

    def messages(q):
        return [{"role": "user", "content": [{"type": "image", "image": str(img)},
                                             {"type": "text", "text": q}]}]  # fmt: skip

    describe = "Describe the flake at [0.100, 0.200, 0.300, 0.500]."
    text = auto.apply_chat_template(messages(describe), add_generation_prompt=True,
                                    tokenize=False)  # fmt: skip
    torch.testing.assert_close(auto(images=str(img), text=text)["ref_boxes"],
                               torch.tensor([[0.1, 0.2, 0.3, 0.5]]))  # fmt: skip
    text = auto.apply_chat_template(messages(QUESTION), add_generation_prompt=True,
                                    tokenize=False)  # fmt: skip
    assert torch.isnan(auto(images=str(img), text=text)["ref_boxes"]).all()
    pipe = pipeline("image-text-to-text", model=str(tmp_path))
    spy = ImageOutputSpy(pipe.model)
    pipe(text=messages(describe), max_new_tokens=2)
    read = spy.read[0]
    assert auto.tokenizer.decode(read[:6]).startswith(" asked ")


def test_model_card_yaml(saved):
    out = saved[0]
    text = (out / "README.md").read_text()
    head = yaml.safe_load(text.split("---")[1])
    assert head["library_name"] == "transformers"
    assert head["pipeline_tag"] == "image-text-to-text"
    assert head["base_model"] == "OpenGVLab/InternVL3-1B-hf"
    assert head["datasets"]
    metrics = head["model-index"][0]["results"][0]["metrics"]
    assert {m["type"]: m["value"] for m in metrics} == {"AP": 41.5, "AP50": 60.25}
    _, proc = tiny_model()
    model, _ = tiny_model()
    bare = out.parent / "bare"
    model.save_pretrained(bare)
    card = (bare / "README.md").read_text()
    assert "model-index" not in card and "not measured" in card


def test_lora_trains_only_adapters_and_gate_and_merges_exactly():
    from qupaint.train.trainer import apply_lora

    model, proc = tiny_model(seed=2)
    peft_model = apply_lora(model, {"r": 4, "alpha": 8})
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "pia_gate" in n for n in trainable)
    assert any("pia_gate" in n for n in trainable)
    assert not any("vision_tower" in n for n in trainable)
    # move the adapters and the gate off their identity start, as training would
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in peft_model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    rng = np.random.default_rng(1)
    img = rng.integers(60, 200, (64, 64, 3), dtype=np.uint8)
    batch = proc(images=img, text=proc.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}],
        add_generation_prompt=True, tokenize=False))  # fmt: skip
    peft_model.eval()
    with torch.no_grad():
        before = peft_model(**batch).logits
        wrapper = peft_model.base_model.model.model.pia_gate
        trained_w = wrapper.modules_to_save["default"].w.clone()
        base_w = wrapper.original_module.w.clone()
        merged = peft_model.merge_and_unload()
        after = merged(**batch).logits
    torch.testing.assert_close(before, after, rtol=1e-5, atol=1e-5)
    # the merged model carries the trained gate, not the frozen original
    assert not torch.equal(trained_w, base_w)
    torch.testing.assert_close(merged.pia_gate.w, trained_w)
    with pytest.raises(ValueError, match="lora"):
        from qupaint.train import TrainConfig

        TrainConfig(train_jsonl=__file__, lora={"rank": 4}).validate()
