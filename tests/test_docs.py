"""Every Python snippet of the README and the docs site runs as it is written: complete
(no undefined names), on the CPU when there is no GPU. Each block runs alone, in a fresh
interpreter, in an empty folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def snippets() -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        text = page.read_text()
        for m in FENCE.finditer(text):
            line = text[: m.start()].count("\n") + 1
            out.append((f"{page.relative_to(ROOT)}:{line}", m.group(1)))
    return out


SNIPPETS = snippets()


def test_the_docs_have_snippets():
    assert len(SNIPPETS) >= 8, [name for name, _ in SNIPPETS]


def test_the_fence_finder_is_not_vacuous():
    text = "a\n```python\nx = 1\n```\n```bash\nls\n```\n"
    assert [m.group(1) for m in FENCE.finditer(text)] == ["x = 1\n"]


@pytest.mark.slow
@pytest.mark.parametrize("name, code", SNIPPETS, ids=[n for n, _ in SNIPPETS])
def test_snippet_runs(name, code, tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=900)  # fmt: skip
    assert r.returncode == 0, f"{name}:\n{r.stderr[-3000:]}"
