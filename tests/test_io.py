"""qupaint._io: atomic writes never leave a partial file under its final name."""

from __future__ import annotations

import pytest

from qupaint._io import atomic_open, atomic_write_bytes, json_dumps, json_loads, write_json


def test_atomic_write_replaces_whole_files(tmp_path):
    path = tmp_path / "sub" / "a.bin"
    atomic_write_bytes(path, b"first")
    atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second"
    assert [p.name for p in path.parent.iterdir()] == ["a.bin"]


def test_an_error_inside_the_block_keeps_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_open(path, "w") as fh:
            fh.write("half of the new")
            raise RuntimeError("boom")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_read_modes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="write mode"):
        with atomic_open(tmp_path / "x", "r"):
            pass


def test_json_helpers(tmp_path):
    obj = {"a": [1, 2.5, None], "b": "flocon é"}
    assert json_loads(json_dumps(obj)) == obj
    assert "\n" not in json_dumps(obj)
    write_json(tmp_path / "o.json", obj)
    text = (tmp_path / "o.json").read_text()
    assert text.endswith("}\n") and json_loads(text) == obj


def test_pin_json_records_then_reports_a_mismatch(tmp_path):
    from qupaint._io import pin_json

    p = tmp_path / "plan.json"
    assert pin_json(p, {"a": 1, "b": [1, 2]}) is None and p.is_file()
    before = p.read_bytes()
    assert pin_json(p, {"b": [1, 2], "a": 1}) is None  # the same settings: resume
    assert p.read_bytes() == before
    assert pin_json(p, {"a": 2, "b": [1, 2]}) == {"a": 1, "b": [1, 2]}
    assert p.read_bytes() == before  # a mismatch never overwrites the record
