"""Shard-addressable Synthia and QMat-Instruct: any split of the work, any engine, gives
byte-identical output; shards are idempotent; the Slurm template's arithmetic holds."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qupaint.cli import app
from qupaint.instruct import build_corpus, merge_corpus
from qupaint.synthia import SynthiaConfig, generate, merge, parse_shard

ROOT = Path(__file__).resolve().parents[1]
CFG = dict(seed=3, height=96, width=96, radius_px=(5.0, 18.0), flakes_per_image=(2, 4))
N, SHARD = 11, 3  # 4 shards, the last one short


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def one_machine(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole")
    generate(SynthiaConfig(**CFG), out, N, SHARD, workers=1)
    return out


@pytest.mark.parametrize("n", [2, 3, 5])
def test_any_shard_split_is_byte_identical(one_machine, tmp_path, n):
    for i in reversed(range(n)):  # any order
        r = generate(SynthiaConfig(**CFG), tmp_path, N, SHARD, shard=(i, n))
        assert r["shard"] == f"{i}/{n}" and r["shards_total"] == 4
    assert not (tmp_path / "annotations.json").exists()
    merge(tmp_path)
    assert digest(tmp_path) == digest(one_machine)


def test_shards_are_idempotent_and_merge_names_the_missing(one_machine, tmp_path):
    generate(SynthiaConfig(**CFG), tmp_path, N, SHARD, shard="0/2")
    before = digest(tmp_path)
    again = generate(SynthiaConfig(**CFG), tmp_path, N, SHARD, shard="0/2")
    assert again["shards_done"] == 2 and digest(tmp_path) == before  # nothing re-rendered
    with pytest.raises(ValueError, match=r"2 of 4 shards are not done \(1, 3\)"):
        merge(tmp_path)
    (tmp_path / "shards" / "shard_00000.json").unlink()  # a node died mid-way: re-run it
    generate(SynthiaConfig(**CFG), tmp_path, N, SHARD, shard="0/2")
    generate(SynthiaConfig(**CFG), tmp_path, N, SHARD, shard="1/2")
    merge(tmp_path)
    assert digest(tmp_path) == digest(one_machine)
    with pytest.raises(ValueError, match="number of images"):
        generate(SynthiaConfig(**CFG), tmp_path, N + 1, SHARD, shard="0/2")
    with pytest.raises(ValueError, match="configuration"):
        generate(SynthiaConfig(**{**CFG, "seed": 4}), tmp_path, N, SHARD, shard="0/2")


@pytest.mark.parametrize("bad", ["2/2", "-1/3", "a/b", "3"])
def test_parse_shard_errors(bad):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(bad)
    assert parse_shard("1/4") == (1, 4)


def test_dask_local_cluster_equals_local_run(one_machine, tmp_path):
    pytest.importorskip("dask.distributed")
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:  # fmt: skip
        generate(SynthiaConfig(**CFG), tmp_path, N, SHARD, engine="dask",
                 scheduler=cluster.scheduler_address)  # fmt: skip
    assert digest(tmp_path) == digest(one_machine)
    with pytest.raises(ValueError, match="engine"):
        generate(SynthiaConfig(**CFG), tmp_path / "x", N, SHARD, engine="spark")


def _slurm(script: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    full = {**os.environ, "QUPAINT": f"{sys.executable} -m qupaint.cli", **env}
    return subprocess.run(["bash", str(ROOT / "examples" / "slurm" / script)], env=full,
                          cwd=cwd, capture_output=True, text=True)  # fmt: skip


@pytest.mark.parametrize("first", [0, 1])  # arrays numbered 0-2 or 1-3
def test_slurm_array_template(one_machine, tmp_path, first):
    out = tmp_path / "syn"
    common = {"SYNTHIA_OUT": str(out), "SYNTHIA_NUM_IMAGES": str(N),
              "SYNTHIA_SHARD_SIZE": str(SHARD), "SYNTHIA_SEED": str(CFG["seed"]),
              "SLURM_CPUS_PER_TASK": "1", "SLURM_ARRAY_TASK_COUNT": "3",
              "SLURM_ARRAY_TASK_MIN": str(first),
              "SYNTHIA_ARGS": "--style classic --size 128 --oxide-nm 285"}  # fmt: skip
    merged = _slurm("synthia_merge.sbatch", common, tmp_path)
    assert merged.returncode != 0 and "plan.json" in merged.stdout + merged.stderr
    for task in range(first, first + 3):
        r = _slurm("synthia_array.sbatch", {**common, "SLURM_ARRAY_TASK_ID": str(task)}, tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"shard {task - first}/3" in r.stdout
    r = _slurm("synthia_merge.sbatch", common, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    # the same settings on one machine, through the CLI
    whole = tmp_path / "whole"
    args = ["synthia", "--out", str(whole), "--num-images", str(N), "--shard-size", str(SHARD),
            "--seed", str(CFG["seed"]), "--workers", "1"]  # fmt: skip
    args += common["SYNTHIA_ARGS"].split()
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert digest(out) == digest(whole)


def test_cli_shard_slurm_needs_the_array_variables(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    r = CliRunner().invoke(app, ["synthia", "--out", str(tmp_path), "--shard", "slurm",
                                 "--num-images", "2", "--size", "96"])  # fmt: skip
    assert r.exit_code == 2 and "SLURM_ARRAY_TASK_ID" in r.output


def test_instruct_shards_are_byte_identical(one_machine, tmp_path):
    coco = one_machine / "annotations.json"
    whole = build_corpus(coco, out_path=tmp_path / "whole", formats=("llava", "qwen"), chunk=3)
    for i in (1, 0, 2):
        r = build_corpus(coco, out_path=tmp_path / "parts", formats=("llava", "qwen"), chunk=3,
                         shard=(i, 3))  # fmt: skip
        assert r["chunks_total"] == 4
    with pytest.raises(ValueError, match="other settings"):
        build_corpus(coco, out_path=tmp_path / "parts", formats=("llava",), chunk=3, shard=(0, 3))
    merged = merge_corpus(tmp_path / "parts")
    assert merged == whole
    a = digest(tmp_path / "whole")
    b = {k: v for k, v in digest(tmp_path / "parts").items() if not k.startswith("parts/")}
    assert a == b
    (tmp_path / "parts" / "parts" / "chunk_00002.json").unlink()
    with pytest.raises(ValueError, match=r"1 of 4 chunks are not built \(2\)"):
        merge_corpus(tmp_path / "parts")
    r = CliRunner().invoke(app, ["instruct", "--coco", str(coco), "--out",
                                 str(tmp_path / "parts"), "--shard", "2/3", "--formats",
                                 "llava,qwen", "--workers", "1", "--chunk", "3"])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["instruct", "merge", str(tmp_path / "parts")])
    assert r.exit_code == 0, r.output


def test_prepare_and_render_shard_with_any_engine(one_machine, tmp_path):
    """What a Ray remote function (or any batch system) does: prepare, render each task in
    any process, merge."""
    from qupaint.synthia.writer import prepare, render_shard_with

    tasks = prepare(SynthiaConfig(**CFG), tmp_path, N, SHARD)
    assert [t[1] for t in tasks] == [0, 1, 2, 3]
    for t in reversed(tasks):
        render_shard_with(SynthiaConfig(**CFG).to_dict(), t)
    assert prepare(SynthiaConfig(**CFG), tmp_path, N, SHARD) == []  # all done
    merge(tmp_path)
    assert digest(tmp_path) == digest(one_machine)
