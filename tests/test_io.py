"""qupaint._io: atomic writes never leave a partial file under its final name."""

from __future__ import annotations

import os
import stat

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


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_finished_files_honour_the_umask(tmp_path, mask, mode):
    # before issue 24 every atomically written file was 0600 whatever the umask
    old = os.umask(mask)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        write_json(tmp_path / "b.json", {"k": 1})
        with atomic_open(tmp_path / "sub" / "c.txt", "w") as fh:
            fh.write("y")
    finally:
        os.umask(old)
    for name in ("a.bin", "b.json", "sub/c.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_detect_outputs_are_shareable_under_umask_022(tmp_path):
    # the files a lab serves or shares (batch detection's report, CSV, JSON, overlays)
    import numpy as np
    from PIL import Image

    from qupaint.detect import DetectorSettings
    from qupaint.detect.batch import detect_batch

    img = np.full((64, 64, 3), (130, 115, 155), np.uint8)
    img[20:40, 20:44] = (112, 98, 140)
    Image.fromarray(img).save(tmp_path / "chip.png")
    old = os.umask(0o022)
    try:
        detect_batch([tmp_path / "chip.png"], tmp_path / "out", "graphene",
                     DetectorSettings(oxide_nm=90.0))
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in files), files


def test_image_readers_return_pixels_and_close_the_file(tmp_path):
    import gc

    import numpy as np
    from PIL import Image

    from qupaint._io import image_size, read_mask, read_rgb

    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb[..., 0]).convert("L").save(tmp_path / "grey.png")
    mask = np.zeros((5, 7), np.uint8)
    mask[1:3, 2:5] = 2
    Image.fromarray(mask).save(tmp_path / "m.png")
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to count open files")

    def open_files():
        return {os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                if os.path.exists(f"/proc/self/fd/{fd}")}  # fmt: skip

    gc.disable()  # a leaked file must stay open until it is counted, not be collected
    try:
        got = read_rgb(tmp_path / "a.png")
        grey = read_rgb(tmp_path / "grey.png")  # any mode comes back as RGB
        m = read_mask(tmp_path / "m.png")
        size = image_size(tmp_path / "a.png")
        still_open = {f for f in open_files() if f.startswith(str(tmp_path))}
        leaked = Image.open(tmp_path / "a.png")  # the bare call the readers replace
        assert any(f.startswith(str(tmp_path)) for f in open_files())  # the check can fail
        leaked.close()
    finally:
        gc.enable()
    assert not still_open, still_open
    assert got.dtype == np.uint8 and np.array_equal(got, rgb)
    assert grey.shape == (5, 7, 3) and np.array_equal(grey[..., 1], rgb[..., 0])
    assert np.array_equal(m, mask) and size == (7, 5)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.png"):
        read_rgb(tmp_path / "bad.png")
    with pytest.raises(ValueError, match="missing.png"):
        read_mask(tmp_path / "missing.png")
