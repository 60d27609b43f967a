"""``qupaint scan`` under faults: frames that cannot be read (loopback, a small virtual chip)."""

from __future__ import annotations

import shutil

import pytest
import sqlalchemy as sa
from conftest import render_small_chip

from qupaint.scan import read_positions, scan_folder
from qupaint.scan.db import Image, Scan, open_db


@pytest.fixture(scope="module")
def chip(tmp_path_factory):
    return render_small_chip(tmp_path_factory.mktemp("chip"), (3, 2), (320, 200), seed=7)


def test_an_unreadable_frame_is_skipped_recorded_and_tried_again(chip, tmp_path):
    """One truncated frame once stopped every run of the scan at that frame (15 of 20
    frames never processed, the scan left "running"). It is now skipped with its reason,
    the rest are stored, and a later run tries it again once it is whole."""
    folder = tmp_path / "chip"
    shutil.copytree(chip, folder)
    frames = read_positions(folder)
    bad = folder / frames[1].file
    whole = bad.read_bytes()
    bad.write_bytes(whole[: len(whole) // 3])  # truncated mid-file
    db = tmp_path / "flakes.sqlite"
    stats = scan_folder(folder, db, "graphene", workers=1)
    assert stats["frames"] == len(frames)
    assert [u["file"] for u in stats["unreadable"]] == [frames[1].file]
    assert frames[1].file in stats["unreadable"][0]["error"]
    S = open_db(db)
    with S() as s:
        assert s.scalars(sa.select(Scan.status)).one() == "done"
        rows = dict(s.execute(sa.select(Image.file, Image.error)).all())
    assert len(rows) == len(frames) and rows[frames[1].file]
    assert all(err is None for f, err in rows.items() if f != frames[1].file)
    # the frame is mended: the next run reads it and only it
    bad.write_bytes(whole)
    again = scan_folder(folder, db, "graphene", workers=1)
    assert again["frames"] == 1 and again["unreadable"] == []
    with S() as s:
        rows = dict(s.execute(sa.select(Image.file, Image.error)).all())
    assert len(rows) == len(frames) and all(err is None for err in rows.values())


def test_a_live_scan_waits_for_a_frame_written_in_two_parts(chip, tmp_path):
    """``--watch`` took a frame written in two parts 1.5 s apart, and the half frame killed
    the live scan. A frame that fails to decode is now read again (up to 3 times, 2 s
    apart) before it counts as unreadable."""
    import threading
    import time

    from qupaint.scan.schedule import DONE_MARKER

    folder = tmp_path / "live"
    shutil.copytree(chip, folder)
    frames = read_positions(folder)
    late = folder / frames[2].file
    whole = late.read_bytes()
    late.write_bytes(whole[: len(whole) // 2])

    def finish():
        time.sleep(1.5)
        late.write_bytes(whole)
        (folder / DONE_MARKER).write_text("")

    t = threading.Thread(target=finish)
    t.start()
    try:
        stats = scan_folder(folder, tmp_path / "live.sqlite", "graphene", workers=1,
                            watch=True, idle_s=20, poll_s=0.05)  # fmt: skip
    finally:
        t.join()
    assert stats["frames"] == len(frames) and stats["unreadable"] == []
    with open_db(tmp_path / "live.sqlite")() as s:
        errors = s.scalars(sa.select(Image.error)).all()
    assert len(errors) == len(frames) and not any(errors)


def test_positions_with_bad_rows_get_one_line_each_and_no_traceback(tmp_path):
    """A frame listed as tiles/a.jpg and ./tiles/a.jpg was ingested twice (the merge then
    deleted three distinct flakes); x_mm=1e300 gave an OverflowError traceback."""
    from qupaint.scan import read_positions

    folder = tmp_path / "scan"
    folder.mkdir()

    def rows(*lines):
        (folder / "positions.csv").write_text("file,x_mm,y_mm\n" + "\n".join(lines) + "\n")

    rows("tiles/a.jpg,0,0", "./tiles/a.jpg,1,0")
    with pytest.raises(ValueError, match="listed twice"):
        read_positions(folder)
    rows("tiles//b.jpg,0,0")
    assert read_positions(folder)[0].file == "tiles/b.jpg"
    for bad in ("a.jpg,1e300,0", "a.jpg,nan,0", "a.jpg,x,0", "../a.jpg,0,0"):
        rows(bad)
        with pytest.raises(ValueError, match="line 2"):
            read_positions(folder)


def test_a_link_out_of_the_scan_folder_is_not_followed(chip, tmp_path):
    """Symbolic links in a scan folder were followed outside it."""
    import os

    folder = tmp_path / "chip"
    shutil.copytree(chip, folder)
    frames = read_positions(folder)
    outside = tmp_path / "secret.jpg"
    shutil.copy(folder / frames[0].file, outside)
    (folder / frames[0].file).unlink()
    os.symlink(outside, folder / frames[0].file)
    stats = scan_folder(folder, tmp_path / "f.sqlite", "graphene", workers=1)
    assert [u["file"] for u in stats["unreadable"]] == [frames[0].file]
    assert "outside the scan folder" in stats["unreadable"][0]["error"]


def test_a_second_scan_on_one_database_is_refused_in_one_line(chip, tmp_path):
    """Two scans on one SQLite database: the second died with a 279-line IntegrityError.
    It is refused at once while the first holds the database; the lock goes with the
    process (a killed scan leaves none behind)."""
    from qupaint.scan.ingest import _writer_lock

    db = tmp_path / "one.sqlite"
    first = _writer_lock(db)  # as a running scan holds it
    try:
        with pytest.raises(ValueError, match="another qupaint scan is writing"):
            scan_folder(chip, db, "graphene", workers=1)
    finally:
        first.close()
    assert scan_folder(chip, db, "graphene", workers=1)["frames"] > 0  # free again


@pytest.mark.parametrize("bad", ["text", "folder", "nosuch://x"])
def test_bad_database_values_are_one_line_errors(tmp_path, bad):
    """A text file, a folder or an unknown URL as --db gave tracebacks of 87-508 lines."""
    from typer.testing import CliRunner

    from qupaint.cli import app

    db = {"text": tmp_path / "notes.sqlite", "folder": tmp_path, "nosuch://x": "nosuch://x"}[bad]
    if bad == "text":
        db.write_text("not a database\n")
    res = CliRunner().invoke(app, ["flakes", "--db", str(db)])
    assert res.exit_code != 0 and "db:" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) <= 3, res.output


def test_a_scan_that_fails_says_so_and_the_next_run_resumes(chip, tmp_path, monkeypatch):
    """A failed scan was left marked "running"."""
    from qupaint.scan import writer

    real = writer.FrameWriter.write
    calls = []

    def failing(self, frame, res):
        calls.append(frame.file)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(self, frame, res)

    db = tmp_path / "f.sqlite"
    monkeypatch.setattr(writer.FrameWriter, "write", failing)
    with pytest.raises(OSError, match="disk full"):
        scan_folder(chip, db, "graphene", workers=1)
    with open_db(db)() as s:
        assert s.scalars(sa.select(Scan.status)).one() == "failed"
    monkeypatch.setattr(writer.FrameWriter, "write", real)
    again = scan_folder(chip, db, "graphene", workers=1)
    assert again["skipped"] == 1 and again["frames"] == len(read_positions(chip)) - 1
    with open_db(db)() as s:
        assert s.scalars(sa.select(Scan.status)).one() == "done"
