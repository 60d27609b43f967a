"""The authors' release (uark-cviu/QuPAINT, model_type "cviu_chat"): a tiny random checkpoint
written in the release's on-disk layout loads, matches an independent re-implementation of
the release forward pass, generates, round-trips; their tiling and answer format."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from transformers import Qwen3Config, Qwen3ForCausalLM

from qupaint.bench import parse_answer
from qupaint.model.loading import load_model_and_processor
from qupaint.model.processing import IMG_CONTEXT, build_tiny_tokenizer
from qupaint.model.release import RELEASE_SYSTEM, is_release_checkpoint, load_release

V = dict(hidden_size=32, layers=2, heads=4, inter=64, size=56, patch=14)


def _release_checkpoint(path, ps_version="v2", qk_norm=False, seed=0):
    """config.json + model.safetensors + tokenizer exactly in the release's layout."""
    g = torch.Generator().manual_seed(seed)
    tok = build_tiny_tokenizer()
    tok.save_pretrained(path)
    llm_cfg = dict(architectures=["Qwen3ForCausalLM"], model_type="qwen3", vocab_size=len(tok),
                   hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=12,
                   tie_word_embeddings=False, rope_theta=10000.0,
                   max_position_embeddings=2048)  # fmt: skip
    cfg = {
        "model_type": "cviu_chat", "architectures": ["CVIUVLChatModel"],
        "vision_config": {"architectures": ["InternVisionModel"], "hidden_size": V["hidden_size"],
                          "num_hidden_layers": V["layers"], "num_attention_heads": V["heads"],
                          "intermediate_size": V["inter"], "qkv_bias": True,
                          "qk_normalization": qk_norm, "norm_type": "layer_norm",
                          "layer_norm_eps": 1e-6, "initializer_factor": 0.1,
                          "image_size": V["size"], "patch_size": V["patch"], "hidden_act": "gelu",
                          "drop_path_rate": 0.0, "use_flash_attn": False},
        "llm_config": llm_cfg, "select_layer": -1, "force_image_size": V["size"],
        "downsample_ratio": 0.5, "template": "qmllm", "ps_version": ps_version,
        "dynamic_image_size": True, "use_thumbnail": True, "max_dynamic_patch": 12,
    }  # fmt: skip
    (path / "config.json").write_text(json.dumps(cfg))
    C, n_pos = V["hidden_size"], (V["size"] // V["patch"]) ** 2 + 1

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.2

    sd = {
        "vision_model.embeddings.class_embedding": r(1, 1, C),
        "vision_model.embeddings.patch_embedding.weight": r(C, 3, V["patch"], V["patch"]),
        "vision_model.embeddings.patch_embedding.bias": r(C),
        "vision_model.embeddings.position_embedding": r(1, n_pos, C),
    }
    for i in range(V["layers"]):
        p = f"vision_model.encoder.layers.{i}."
        sd.update({p + "attn.qkv.weight": r(3 * C, C), p + "attn.qkv.bias": r(3 * C),
                   p + "attn.proj.weight": r(C, C), p + "attn.proj.bias": r(C),
                   p + "mlp.fc1.weight": r(V["inter"], C), p + "mlp.fc1.bias": r(V["inter"]),
                   p + "mlp.fc2.weight": r(C, V["inter"]), p + "mlp.fc2.bias": r(C),
                   p + "norm1.weight": 1 + r(C), p + "norm1.bias": r(C),
                   p + "norm2.weight": 1 + r(C), p + "norm2.bias": r(C),
                   p + "ls1": r(C), p + "ls2": r(C)})  # fmt: skip
        if qk_norm:
            sd.update({p + "attn.q_norm.weight": 1 + r(C), p + "attn.k_norm.weight": 1 + r(C)})
    D = 4 * C
    sd.update({"mlp1.0.weight": 1 + r(D), "mlp1.0.bias": r(D), "mlp1.1.weight": r(48, D),
               "mlp1.1.bias": r(48), "mlp1.3.weight": r(48, 48), "mlp1.3.bias": r(48),
               "bbox_head.weight": r(4, 48), "bbox_head.bias": r(4)})  # fmt: skip
    torch.manual_seed(seed)
    llm = Qwen3ForCausalLM(
        Qwen3Config(**{k: v for k, v in llm_cfg.items() if k != "architectures"})
    )
    sd.update({"language_model." + k: v.clone() for k, v in llm.state_dict().items()})
    save_file({k: v.contiguous() for k, v in sd.items()}, path / "model.safetensors")
    return sd, llm, tok


def _reference_forward(sd, llm, ids, pv, img_id, ps_version, qk_norm):
    """The release forward pass written from its description (InternViT -> CLS drop ->
    pixel shuffle -> mlp1 -> scatter into <IMG_CONTEXT> -> LLM), independent of transformers'
    InternVL classes."""
    C, H = V["hidden_size"], V["heads"]
    w = {k[len("vision_model.") :]: v for k, v in sd.items() if k.startswith("vision_model.")}
    x = F.conv2d(pv, w["embeddings.patch_embedding.weight"], w["embeddings.patch_embedding.bias"],
                 stride=V["patch"]).flatten(2).transpose(1, 2)  # fmt: skip
    x = torch.cat([w["embeddings.class_embedding"].expand(len(pv), 1, C), x], 1)
    x = x + w["embeddings.position_embedding"]

    def rms(t, weight):
        return weight * t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + 1e-6)

    for i in range(V["layers"]):
        p = f"encoder.layers.{i}."
        h = F.layer_norm(x, (C,), w[p + "norm1.weight"], w[p + "norm1.bias"], 1e-6)
        B, N, _ = h.shape
        qkv = F.linear(h, w[p + "attn.qkv.weight"], w[p + "attn.qkv.bias"])
        q, k, v = qkv.reshape(B, N, 3, C).unbind(2)
        if qk_norm:
            q, k = rms(q, w[p + "attn.q_norm.weight"]), rms(k, w[p + "attn.k_norm.weight"])
        q, k, v = (t.reshape(B, N, H, C // H).transpose(1, 2) for t in (q, k, v))
        a = torch.softmax(q @ k.transpose(-2, -1) * (C // H) ** -0.5, -1) @ v
        a = F.linear(a.transpose(1, 2).reshape(B, N, C), w[p + "attn.proj.weight"],
                     w[p + "attn.proj.bias"])  # fmt: skip
        x = x + a * w[p + "ls1"]
        h = F.layer_norm(x, (C,), w[p + "norm2.weight"], w[p + "norm2.bias"], 1e-6)
        h = F.linear(F.gelu(F.linear(h, w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"])),
                     w[p + "mlp.fc2.weight"], w[p + "mlp.fc2.bias"])  # fmt: skip
        x = x + h * w[p + "ls2"]
    x = x[:, 1:]
    n, s = len(x), int(x.shape[1] ** 0.5)
    x = x.reshape(n, s, s, C).reshape(n, s, s // 2, 2 * C).permute(0, 2, 1, 3)
    x = x.reshape(n, s // 2, s // 2, 4 * C)
    if ps_version == "v2":
        x = x.permute(0, 2, 1, 3)
    x = x.reshape(n, -1, 4 * C)
    x = F.layer_norm(x, (4 * C,), sd["mlp1.0.weight"], sd["mlp1.0.bias"], 1e-5)
    x = F.linear(F.gelu(F.linear(x, sd["mlp1.1.weight"], sd["mlp1.1.bias"])),
                 sd["mlp1.3.weight"], sd["mlp1.3.bias"])  # fmt: skip
    emb = llm.get_input_embeddings()(ids).clone()
    emb[ids == img_id] = x.reshape(-1, x.shape[-1])
    return llm(inputs_embeds=emb).logits


@pytest.mark.parametrize("ps_version, qk_norm", [("v2", False), ("v1", True)])
def test_release_checkpoint_matches_the_release_forward(tmp_path, ps_version, qk_norm):
    sd, llm, tok = _release_checkpoint(tmp_path, ps_version, qk_norm)
    assert is_release_checkpoint(tmp_path)
    model, proc = load_release(tmp_path, use_pia_gate=False)
    assert model.config.ps_version == ps_version and hasattr(model, "bbox_head")
    img = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    batch = proc([img], questions=["How many monolayer flakes are in the image?"])
    with torch.no_grad():
        ours = model(**batch).logits
        img_id = tok.convert_tokens_to_ids(IMG_CONTEXT)
        ref = _reference_forward(sd, llm, batch["input_ids"], batch["pixel_values"], img_id,
                                 ps_version, qk_norm)  # fmt: skip
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
        gated, _ = load_release(tmp_path, use_pia_gate=True)
        # gate at w = b = 0 scales every patch token by 0.5; mlp1's LayerNorm removes it
        torch.testing.assert_close(gated(**batch).logits, ref, atol=1e-3, rtol=0)


def test_release_generates_round_trips_and_uses_their_template(tmp_path):
    _release_checkpoint(tmp_path / "rel")
    model, proc = load_model_and_processor(str(tmp_path / "rel"))
    assert proc.system == RELEASE_SYSTEM
    img = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    batch = proc([img], questions=["Locate the monolayer flakes."])
    text = proc.tokenizer.decode(batch["input_ids"][0])
    assert text.startswith(
        "<|im_start|>system\n" + RELEASE_SYSTEM + "<|im_end|>\n<|im_start|>user\n<img>"
    )
    assert text.endswith("</img>\nLocate the monolayer flakes.<|im_end|>\n<|im_start|>assistant\n")
    assert batch["pixel_values"].shape[0] == 13  # 4 x 3 tiles + thumbnail
    out = model.generate(**batch, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > batch["input_ids"].shape[1]
    model.save_pretrained(tmp_path / "ours")
    proc.save_pretrained(tmp_path / "ours")
    again, proc2 = load_model_and_processor(str(tmp_path / "ours"))
    with torch.no_grad():
        torch.testing.assert_close(again(**batch).logits, model(**batch).logits)
    assert torch.equal(again.bbox_head.weight, model.bbox_head.weight)
    assert proc2.image.canvas == proc.image.canvas


@pytest.mark.parametrize("size", [(120, 90), (1792, 1344), (300, 1200), (2048, 2048)])
def test_release_tiling_count_and_order(tmp_path, size):
    _release_checkpoint(tmp_path)
    _, proc = load_release(tmp_path)
    rng = np.random.default_rng(2)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    pv = proc.pixel_values(img)
    assert pv.shape == (13, 3, 56, 56)
    canvas = img.resize((224, 168), resample=3)  # the 4 x 3-tile canvas at 56-px tiles
    mean = np.array(proc.image.mean, np.float32)
    std = np.array(proc.image.std, np.float32)
    for k in (0, 5, 11):  # row-major: tile 5 is row 1, column 1
        r, c = divmod(k, 4)
        want = np.asarray(canvas, np.float32)[56 * r : 56 * (r + 1), 56 * c : 56 * (c + 1)]
        got = pv[k].numpy().transpose(1, 2, 0) * std + mean
        np.testing.assert_allclose(got, want / 255, atol=1e-5)
    thumb = np.asarray(canvas.resize((56, 56), resample=3), np.float32) / 255
    np.testing.assert_allclose(pv[12].numpy().transpose(1, 2, 0) * std + mean, thumb, atol=1e-5)


@pytest.mark.parametrize(
    "text, boxes, ok",
    [
        ("<CONCLUSION><box>10, 20, 5, 10</box></CONCLUSION>", [[20, 20, 30, 30]], True),
        ("think <box>1,1,1,1</box> <CONCLUSION>none here</CONCLUSION>", [], True),  # none
        ("<CONCLUSION><box>10, 20, 5, 10</box><CONCLUSION>", [[20, 20, 30, 30]], True),
        ("no conclusion but <box>50, 50, 10, 10</box>", [[100, 50, 120, 60]], True),
        ("<CONCLUSION><box>10, 20, 5</box></CONCLUSION>", [], False),
        ("<CONCLUSION><box>90, 20, 50, 10</box></CONCLUSION>", [], False),  # past 100 %
        ("<CONCLUSION><box>a, b, c, d</box></CONCLUSION>", [], False),
    ],
)
def test_parse_release_answer_format(text, boxes, ok):
    a = parse_answer(text, "qupaint", image_size=(200, 100), expect="boxes")
    np.testing.assert_allclose(a.boxes.reshape(-1, 4), np.reshape(boxes, (-1, 4)))
    assert a.ok == ok


def test_predict_cli_on_a_release_checkpoint(tmp_path):
    from typer.testing import CliRunner

    from qupaint.cli import app

    _release_checkpoint(tmp_path / "rel")
    Image.fromarray(np.full((60, 80, 3), 128, np.uint8)).save(tmp_path / "chip.png")
    args = ["predict", "--checkpoint", str(tmp_path / "rel"), "--image",
            str(tmp_path / "chip.png"), "--format", "qupaint", "--out", str(tmp_path / "p"),
            "--max-new-tokens", "6"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "p" / "predictions.json").read_text())[0]
    assert set(rec) >= {"image", "prompt", "response", "boxes_px"}


def test_released_qfbench_layout_loads_into_eval(tmp_path):
    """QF-Bench as released: COCO JSON with bare file names, images in materials/<name>/."""
    from qupaint.bench.model_eval import evaluate_model_detection
    from qupaint.model import tiny_model

    (tmp_path / "materials" / "MoS2").mkdir(parents=True)
    Image.fromarray(np.full((60, 80, 3), 120, np.uint8)).save(tmp_path / "materials/MoS2/a.jpg")
    gt = {"images": [{"id": 1, "file_name": "a.jpg", "width": 80, "height": 60,
                      "material": "MoS2"}],
          "annotations": [{"id": 1, "image_id": 1, "bbox": [10, 10, 20, 20], "area": 400,
                           "category_id": 1, "iscrowd": 0}],
          "categories": [{"id": 1, "name": "Mono", "supercategory": "flake"},
                         {"id": 2, "name": "Few", "supercategory": "flake"},
                         {"id": 3, "name": "Thick", "supercategory": "flake"}]}  # fmt: skip
    (tmp_path / "qfbench.json").write_text(json.dumps(gt))
    model, proc = tiny_model()
    r = evaluate_model_detection(model, proc, tmp_path / "qfbench.json", max_new_tokens=4,
                                 temperature=0.0)  # fmt: skip
    assert r["images"] == 1 and "AP" in r
