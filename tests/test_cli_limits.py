"""Every numeric option of every ``qupaint`` command is range-checked (physical limits named)
and every usage error is one line, ``error: <what> (see <command> --help)``, exit code 2."""

from __future__ import annotations

import typing

import pytest
import typer
from typer.testing import CliRunner

from qupaint.cli import app
from qupaint.cli._common import LIMITS


def _commands(cmd, path=()):
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def _numeric(p) -> bool:
    ann = getattr(getattr(p, "type_descriptor", None), "annotation", None)
    kinds = (ann,) + typing.get_args(ann)
    return int in kinds or float in kinds


def _cases():
    root = typer.main.get_command(app)
    for path, cmd in _commands(root):
        for p in getattr(cmd, "params", ()):
            if _numeric(p) and getattr(p, "opts", None) and p.opts[0].startswith("--"):
                yield pytest.param(path, cmd, p, id=" ".join(path) + " " + p.opts[0])


CASES = list(_cases())


def test_every_numeric_option_has_a_limit():
    missing = [c.id for c in CASES if c.values[2].name not in LIMITS]
    assert not missing, f"give these options a range in qupaint.cli._common.LIMITS: {missing}"
    assert len(CASES) >= 50


def _required_args(cmd, skip) -> list[str]:
    """Placeholder values for the command's required arguments and options, so that the
    parser reaches the option under test (the body never runs: parsing fails first)."""
    out: list[str] = []
    for p in cmd.params:
        if p is skip or not p.required:
            continue
        value = "1" if _numeric(p) else "x"
        out += [value] if not getattr(p, "opts", [""])[0].startswith("--") else [p.opts[0], value]
    return out


@pytest.mark.parametrize("path, cmd, param", CASES)
def test_out_of_range_values_give_one_line_errors(path, cmd, param):
    lo, hi, _ = LIMITS[param.name]
    low = lo[0] if isinstance(lo, tuple) else lo - 1
    high = hi[0] if isinstance(hi, tuple) else hi * 10 + 1
    is_int = int in (param.type_descriptor.annotation,) + typing.get_args(
        param.type_descriptor.annotation
    )
    for bad in (low, high):
        value = str(int(bad)) if is_int else f"{bad:g}"
        # a pair option (--size-mm W H) takes its values together
        args = [*path, *_required_args(cmd, param), param.opts[0], *[value] * param.nargs]
        res = CliRunner().invoke(app, args)
        text = res.output.strip()
        assert res.exit_code == 2, (args, text)
        assert "Traceback" not in text and text.count("\n") == 0, (args, text)
        assert text.startswith("error:") and "out of range" in text and "--help" in text, text


def test_other_usage_errors_are_one_line_too():
    for args in (["optics", "--flake", "graphene", "--layers", "abc"], ["optics", "--bogus"],
                 ["detect"], ["eval", "nonsense"]):  # fmt: skip
        res = CliRunner().invoke(app, args)
        text = res.output.strip()
        assert res.exit_code == 2 and text.startswith("error:") and "\n" not in text, (args, text)


def test_seg_predict_skips_an_unreadable_image_and_fails_when_none_could_be_read(tmp_path):
    # issue 24: one unreadable image aborted the whole batch and left an empty output folder
    import numpy as np
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(src / "good.png")
    (src / "bad.png").write_bytes(b"not a png")
    res = CliRunner().invoke(app, ["seg", "predict", str(src), "--out", str(tmp_path / "out"),
                                   "--material", "graphene"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "skipped" in res.output and "bad.png" in res.output
    assert (tmp_path / "out" / "good.labels.png").is_file()
    (src / "good.png").unlink()
    res = CliRunner().invoke(app, ["seg", "predict", str(src), "--out", str(tmp_path / "out2"),
                                   "--material", "graphene"])  # fmt: skip
    assert res.exit_code != 0 and "no image could be read" in res.output
