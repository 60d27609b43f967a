"""Trainer: overfitting, exact resume, and 2-process DDP (gloo, CPU) = 1 process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from qupaint.instruct import build_corpus
from qupaint.train import load_config, train


@pytest.fixture(scope="module")
def short_corpus(synth_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus_short")
    build_corpus(synth_dataset / "annotations.json", out_path=out, tasks=("count", "verify"),
                 split=(1.0, 0.0, 0.0))  # fmt: skip
    return out / "llava" / "train.jsonl", synth_dataset


def _cfg(corpus, out, **kw):
    jsonl, images = corpus
    base = dict(model="tiny", train_jsonl=str(jsonl), image_root=str(images), output_dir=str(out),
                per_device_batch_size=4, learning_rate=2e-3, logging_steps=1, shuffle=False,
                max_samples=8, save_steps=1000, warmup_ratio=0.0,
                lr_scheduler="constant")  # fmt: skip
    base.update(kw)
    return base


def _losses(res):
    return [h["loss"] for h in res["log_history"] if "loss" in h]


def test_loss_falls_when_overfitting_8_samples(short_corpus, tmp_path):
    res = train(load_config(None, **_cfg(short_corpus, tmp_path / "o", max_steps=30)))
    losses = _losses(res)
    assert losses[-1] < 0.5 * losses[0], losses
    assert (tmp_path / "o" / "model.safetensors").is_file()
    assert (tmp_path / "o" / "processor_config.json").is_file()
    assert (tmp_path / "o" / "chat_template.jinja").is_file()
    assert (tmp_path / "o" / "README.md").read_text().startswith("---\nlibrary_name: transformers")


def test_resume_reproduces_the_uninterrupted_run(short_corpus, tmp_path):
    kw = _cfg(short_corpus, tmp_path / "a", max_steps=6, save_steps=3, max_samples=16,
              shuffle=True, lab_jitter_l=2.0, lab_jitter_ab=2.0)  # fmt: skip
    full = train(load_config(None, **kw))
    # "crash" after step 3: a fresh folder holding only the step-3 checkpoint
    shutil.copytree(tmp_path / "a" / "checkpoint-3", tmp_path / "b" / "checkpoint-3")
    resumed = train(load_config(None, **{**kw, "output_dir": str(tmp_path / "b")}))
    assert resumed["resumed_from"].endswith("checkpoint-3")
    assert _losses(resumed)[-3:] == pytest.approx(_losses(full)[-3:], abs=1e-5)
    from safetensors.torch import load_file

    wa = load_file(tmp_path / "a" / "model.safetensors")
    wb = load_file(tmp_path / "b" / "model.safetensors")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-6, rtol=0)


@pytest.mark.slow
def test_ddp_two_processes_match_one(short_corpus, tmp_path):
    # same global batch of 4: 1 process x 4 vs 2 processes x 2 (gradients all-reduced; sums
    # in another order, hence the float32 tolerance)
    kw = _cfg(short_corpus, tmp_path / "one", max_steps=4, per_device_batch_size=4,
              learning_rate=5e-4)  # fmt: skip
    one = train(load_config(None, **kw))
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(yaml.safe_dump({**kw, "output_dir": str(tmp_path / "two"),
                                   "per_device_batch_size": 2, "ddp_backend": "gloo"}))  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for port in (29561, 29563):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_port", str(port), "-m", "qupaint.train", "--config", str(cfg),
               "--summary", str(tmp_path / "two.json")]  # fmt: skip
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        # one retry for a known torch/gloo teardown race in a child ("terminate called
        # without an active exception", about 1 full-suite run in 5 here); nothing else
        if p.returncode == 0 or "terminate called without an active" not in p.stderr:
            break
    assert p.returncode == 0, p.stderr[-3000:]
    two = json.loads((tmp_path / "two.json").read_text())
    assert _losses(two) == pytest.approx(_losses(one), rel=1e-4)
    assert _losses(one)[-1] < _losses(one)[0]  # it did train


def test_bad_configs(short_corpus, tmp_path):
    with pytest.raises(ValueError, match="unknown keys"):
        load_config(None, learning_rat=1.0)
    with pytest.raises(ValueError, match="train_jsonl"):
        train(load_config(None, model="tiny"))
    with pytest.raises(ValueError, match="is not 'compact', 'tiny'"):
        train(load_config(None, **_cfg(short_corpus, tmp_path, model=str(tmp_path / "none"))))
    with pytest.raises(ValueError, match="no such file"):
        load_config(tmp_path / "missing.yaml")


def test_shipped_configs_parse():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    names = sorted(p.name for p in root.glob("*.yaml") if not p.name.startswith("accelerate"))
    assert {"tiny.yaml", "zero2.yaml", "zero3.yaml", "fsdp.yaml"} <= set(names)
    for n in names:
        cfg = load_config(root / n)
        if cfg.deepspeed:
            assert Path(cfg.deepspeed).is_file() and json.loads(Path(cfg.deepspeed).read_text())


def test_cli_predict_and_eval_model(synth_dataset, tmp_path):
    from typer.testing import CliRunner

    from qupaint.cli import app
    from qupaint.model import tiny_model

    model, proc = tiny_model()
    model.save_pretrained(tmp_path / "m")
    proc.save_pretrained(tmp_path / "m")
    runner = CliRunner()
    img = sorted((synth_dataset / "images").iterdir())[0]
    res = runner.invoke(app, ["predict", "--checkpoint", str(tmp_path / "m"), "--image", str(img),
                              "--out", str(tmp_path / "p"), "--max-new-tokens", "8"])  # fmt: skip
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "p" / "predictions.json").read_text())[0]
    assert set(rec) >= {"image", "prompt", "response", "boxes_px"}
    assert (tmp_path / "p" / f"{img.stem}_pred.png").is_file()
    gt = str(synth_dataset / "annotations.json")
    res = runner.invoke(app, ["eval", "model", "--checkpoint", str(tmp_path / "m"), "--gt", gt,
                              "--limit", "2", "--max-new-tokens", "8",
                              "--out", str(tmp_path / "e.json")])  # fmt: skip
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "e.json").read_text())["detection"]
    assert r["images"] == 2 and r["parse_failures"] <= 2


def test_lora_run_saves_adapter_and_merged_model(short_corpus, tmp_path):
    pytest.importorskip("peft")
    from qupaint.model import load_model_and_processor

    out = tmp_path / "lora"
    res = train(load_config(None, **_cfg(short_corpus, out, max_steps=3,
                                         lora={"r": 4, "alpha": 8})))  # fmt: skip
    assert res["global_step"] == 3
    assert (out / "adapter" / "adapter_config.json").is_file()
    model, proc = load_model_and_processor(str(out))  # the merged model loads as a plain one
    assert not any("lora" in n for n, _ in model.named_parameters())
    assert proc.tokens_per_tile > 0
