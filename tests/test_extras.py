"""The core install: ``qupaint detect`` runs on a real micrograph with the model, scan and
web stacks missing, and a command that needs a missing extra names it in one line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qupaint._extras import EXTRAS, extra_for, hint

REAL = Path(__file__).resolve().parents[1] / "qupaint" / "data" / "real" / "whole"

# a process in which every module of every extra fails to import, as on a core-only install
BLOCKED = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCK = {blocked!r}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCK:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

    sys.meta_path.insert(0, Block())
    sys.argv = ["qupaint", *{args!r}]
    {body}
    """
)


def run_blocked(args: list[str], body: str, cwd: Path) -> subprocess.CompletedProcess:
    blocked = sorted({m for mods in EXTRAS.values() for m in mods})
    code = BLOCKED.format(blocked=blocked, args=args, body=body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=cwd, timeout=600)  # fmt: skip


def test_extra_names():
    assert extra_for("transformers.models") == "model" and extra_for("numpy") is None
    assert "pip install 'qupaint[scan]'" in hint(ModuleNotFoundError("x", name="sqlalchemy"))
    assert hint(ModuleNotFoundError("x", name="numpy")) is None


@pytest.mark.slow
def test_detect_runs_on_a_real_image_without_the_extras(tmp_path):
    image = REAL / "GrapheneH_grey.jpg"
    if not image.is_file():
        pytest.skip("the shipped real micrograph is missing")
    body = textwrap.dedent(
        """
        import qupaint.detect, qupaint.synthia, qupaint.pia, qupaint.gate, qupaint.optics
        from qupaint.cli import app
        try:
            app()
        finally:
            loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCK)
            print("LOADED", loaded)
        """
    )
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / image.name).write_bytes(image.read_bytes())
    r = run_blocked(["detect", str(tmp_path / "in" / image.name), "--material", "graphene",
                     "--out", str(tmp_path / "out")], body, tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "LOADED []" in r.stdout
    assert len(list((tmp_path / "out" / "detections").glob("*.json"))) == 1


@pytest.mark.parametrize(
    "args, extra",
    [(["serve", "--db", "x.sqlite"], "web"), (["scan", ".", "--material", "graphene"], "scan"),
     (["predict", "--image", "x.png", "--question", "How many flakes?"], "model")],
)  # fmt: skip
def test_a_command_that_needs_a_missing_extra_names_it(tmp_path, args, extra):
    r = run_blocked(args, "from qupaint.cli import app\napp()", tmp_path)
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert r.returncode == 2, r.stdout + r.stderr[-2000:]
    assert len(lines) == 1, lines  # one line, no traceback
    assert lines[0].startswith(f"error: this needs the {extra!r} extra (")
    assert lines[0].endswith(f"pip install 'qupaint[{extra}]'")
