"""The package's layering holds by itself: no module imports a later pipeline stage or
another module's private names (docs/architecture.md draws the layers)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import qupaint

ROOT = Path(qupaint.__file__).parent

# Pipeline order: a module may import its own layer and the layers before it, never after.
# Longest prefix wins. Private base modules (qupaint._io, ...) are shared infrastructure.
LAYERS = [
    ("base", ("qupaint", "qupaint._arrays", "qupaint._backend", "qupaint._C", "qupaint._io",
              "qupaint._pool", "qupaint.categories", "qupaint.constants",
              "qupaint.rle", "qupaint._extras", "qupaint.boxes")),
    ("optics", ("qupaint.optics",)),  # materials.py (n,k tables), then tmm.py
    ("color", ("qupaint.color",)),
    # the thin-flake segmenter's network and inference: the detector's learned methods use it
    ("seg", ("qupaint.seg",)),
    ("detect", ("qupaint.detect",)),  # the product: flake hunting on real chips
    ("scan", ("qupaint.scan",)),  # chip scans into a flake database, maps, exports
    ("pia/gate", ("qupaint.pia", "qupaint.gate", "qupaint.triton")),
    ("synthia", ("qupaint.synthia",)),
    # training the segmenter on Synthia, adapting it to masked real images
    ("seg-train", ("qupaint.seg.train", "qupaint.seg.adapt")),
    ("instruct", ("qupaint.instruct",)),
    ("model", ("qupaint.model",)),
    ("train", ("qupaint.train",)),
    ("bench", ("qupaint.bench",)),  # scoring only: no training loop, no optimiser
    ("recipes", ("qupaint.recipes",)),  # whole runs: train (train/) then score (bench/)
    ("app", ("qupaint.cli", "qupaint.demo", "qupaint.web")),
]  # fmt: skip
RANK = {prefix: rank for rank, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes}


def layer_of(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in RANK:
            return RANK[prefix]
    raise KeyError(f"{module} is in no layer; add it to LAYERS and docs/architecture.md")


def package_modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = package_modules()


def _is_module(name: str) -> bool:
    return name in MODULES or name == "qupaint._C"


def imports_of(module: str, path: Path) -> list[tuple[int, str, str | None]]:
    """(line, imported module, imported name or None) for every qupaint import, lazy ones
    inside functions included."""
    tree = ast.parse(path.read_text(), str(path))
    pkg = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [
                (node.lineno, a.name, None) for a in node.names if a.name.startswith("qupaint")
            ]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            if not base.startswith("qupaint"):
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.append((node.lineno, sub, None) if _is_module(sub) else
                             (node.lineno, base, a.name))  # fmt: skip
    return found


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_module_imports_a_later_layer_or_a_private_name():
    bad = []
    for module, path in MODULES.items():
        own = layer_of(module)
        for line, target, name in imports_of(module, path):
            where = f"{path.relative_to(ROOT.parent)}:{line}"
            if layer_of(target) > own:
                bad.append(f"{where}: {module} ({LAYERS[own][0]}) imports {target} "
                           f"({LAYERS[layer_of(target)][0]})")  # fmt: skip
            private = name and name.startswith("_") and not name.endswith("__")  # not dunders
            if private and target != module:
                bad.append(f"{where}: {module} imports the private name {target}.{name}")
    assert not bad, "import-direction violations:\n" + "\n".join(bad)


def module_graph() -> dict[str, set[str]]:
    """Every qupaint module's qupaint imports (lazy ones included), as a graph of modules."""
    return {m: {t for _, t, _ in imports_of(m, p) if t in MODULES and t != m}
            for m, p in MODULES.items()}  # fmt: skip


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of ``graph`` with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycle():
    assert import_cycles(module_graph()) == []
    # the finder is not vacuous: a planted two-module cycle is found
    assert import_cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_bench_scores_and_never_trains():
    # a training loop (the HF Trainer, an optimiser, qupaint.train) belongs to a recipe
    banned = ("torch.optim", "Trainer", "TrainingArguments", "qupaint.train", "qupaint.recipes")
    bad = []
    for module, path in MODULES.items():
        if module.startswith("qupaint.bench"):
            text = path.read_text()
            bad += [f"{module}: {b}" for b in banned if b in text]
    assert not bad, bad
    assert "qupaint.bench.parse" not in MODULES  # the parser has one home: qupaint.instruct.parse


def test_materials_precede_the_transfer_matrix():
    # inside the optics layer, the n,k tables know nothing of the TMM built on them
    targets = {
        t for _, t, _ in imports_of("qupaint.optics.materials", MODULES["qupaint.optics.materials"])
    }
    assert not any(t.startswith("qupaint.optics") for t in targets), targets


def test_the_checker_catches_violations(tmp_path):
    # the rule above cannot pass vacuously: a planted upward and a private import are found
    path = tmp_path / "m.py"
    path.write_text("from qupaint.synthia import Synthia\nfrom qupaint.color.convert import _f\n")
    found = imports_of("qupaint.optics.fake", path)
    assert (1, "qupaint.synthia", "Synthia") in found and (
        2,
        "qupaint.color.convert",
        "_f",
    ) in found
    assert layer_of("qupaint.synthia") > layer_of("qupaint.optics.fake")


@pytest.mark.slow
def test_each_layer_imports_with_later_layers_blocked():
    # One process: for each layer, forget qupaint, block every later layer's modules and
    # import all modules of the layers so far (their import-time dependencies must resolve
    # without anything later in the pipeline).
    layers = [[m for m in MODULES if layer_of(m) == r and not m.endswith("__main__")]
              for r in range(len(LAYERS))]  # fmt: skip
    code = textwrap.dedent(
        f"""
        import importlib, importlib.abc, sys
        layers = {layers!r}
        prefixes = {[list(p) for _, p in LAYERS]!r}

        def rank(name):
            parts = name.split(".")
            for n in range(len(parts), 0, -1):
                for r, ps in enumerate(prefixes):
                    if ".".join(parts[:n]) in ps:
                        return r
            return -1

        class Block(importlib.abc.MetaPathFinder):
            limit = 0
            def find_spec(self, name, path=None, target=None):
                if name.startswith("qupaint") and rank(name) > self.limit:
                    raise ImportError(f"{{name}} is a later layer than {{self.limit}}")
                return None

        block = Block()
        sys.meta_path.insert(0, block)
        for r, mods in enumerate(layers):
            for k in [k for k in sys.modules if k == "qupaint" or k.startswith("qupaint.")]:
                del sys.modules[k]
            block.limit = r
            for m in [m for layer in layers[: r + 1] for m in layer]:
                importlib.import_module(m)
        print("ok")
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]


def test_modules_stay_readable_and_facts_have_one_home():
    """No package module over 550 lines, ``find_flakes`` a list of named stages (at most
    80 lines), and the reference microscope's 0.385 um/px written in one module only
    (``qupaint.constants.REFERENCE_UM_PER_PX``)."""
    long = {str(p.relative_to(ROOT)): n for p in ROOT.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 550}  # fmt: skip
    assert not long, long
    tree = ast.parse((ROOT / "detect" / "detector.py").read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "find_flakes")
    assert fn.end_lineno - fn.lineno + 1 <= 80
    homes = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py") if "0.385" in p.read_text())
    assert homes == ["constants.py"], homes
