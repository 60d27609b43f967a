"""Where each frame of a scan was taken: the stage positions of a scan folder.

Three layouts are read:

- ``positions.csv`` with a header ``file,x_mm,y_mm`` (the file relative to the folder; the
  stage position of the frame's centre, in mm), in acquisition order. Rows may be appended
  while the scan runs (``qupaint scan --watch``); a row whose file is not there yet waits.
- the 2DMatGMM-System raw scan folder: ``<mag>x/Pictures/<n>.png`` with
  ``<mag>x/Meta/<n>.json`` holding ``"motor_pos": [x_mm, y_mm]`` (its ``raster_scan_area_map``
  writes them; the motor position is the frame's centre there too), ordered by ``n``;
- OME-TIFF (:mod:`qupaint.scan.ome`): one ``.ome.tif`` file, or a folder of them, a frame
  per series, its position from the OME metadata (µm; the frame's centre).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = ["MAX_STAGE_MM", "Frame", "frame_path", "read_positions", "scan_layout"]

#: the largest stage coordinate accepted (mm): a motorised stage travels tens of mm
MAX_STAGE_MM = 10_000.0


@dataclass(frozen=True)
class Frame:
    seq: int  # acquisition order
    file: str  # relative to the scan folder, with forward slashes
    x_mm: float
    y_mm: float


def _number(text: str, what: str, where: str) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {what} {text!r} is not a number") from None
    if not math.isfinite(v) or abs(v) > MAX_STAGE_MM:
        raise ValueError(f"{where}: {what} must be a finite stage position within "
                         f"+-{MAX_STAGE_MM:g} mm; got {text!r}")  # fmt: skip
    return v


def frame_path(folder: str | Path, file: str) -> Path:
    """The frame ``file`` of the scan in ``folder`` (an OME-TIFF frame keeps its
    ``#series``): a ValueError when its file resolves outside the folder (a symbolic link
    out of it, say), so that a scan reads its own frames only."""
    from qupaint.scan.ome import split_key

    name, series = split_key(file)
    root = Path(folder).resolve()
    p = (root / name).resolve()
    if not p.is_relative_to(root):
        raise ValueError(f"{file}: leads outside the scan folder {root} (a link?)")
    return p if series is None else p.with_name(f"{p.name}#{series}")


def read_positions(folder: str | Path, partial: bool = False) -> list[Frame]:
    """The frames of the scan in ``folder``, in acquisition order.

    ``partial=True`` (a scan still running) skips an unfinished last line of
    ``positions.csv`` instead of failing on it."""
    from qupaint.scan.ome import list_ome

    folder = Path(folder)
    layout = scan_layout(folder)
    if layout is None and not folder.is_dir():
        raise ValueError(f"scan folder {folder} does not exist")
    if layout == "csv":
        return _read_csv(folder / "positions.csv", partial)
    if layout == "2dmatgmm":
        return _read_2dmatgmm(folder)
    if layout == "ome":
        return _ome_frames(list_ome(folder))
    if partial:
        return []
    raise ValueError(
        f"{folder} has no positions.csv (file,x_mm,y_mm), no 2DMatGMM-System "
        "<mag>x/Pictures + <mag>x/Meta folders and no OME-TIFF: the stage positions are "
        "unknown"
    )


def scan_layout(source: str | Path) -> str | None:
    """How the scan at ``source`` is laid out, in the order :func:`read_positions` looks:
    ``"csv"`` (a folder with ``positions.csv``), ``"2dmatgmm"`` (a 2DMatGMM-System scan
    folder), ``"ome"`` (an OME-TIFF file, or a folder of them), or None."""
    from qupaint.scan.ome import is_ome

    p = Path(source)
    if p.is_file():
        return "ome" if is_ome(p.name) else None
    if not p.is_dir():
        return None
    if (p / "positions.csv").is_file():
        return "csv"
    if _mag_folders(p):
        return "2dmatgmm"
    if any(is_ome(f.name) for f in p.iterdir()):
        return "ome"
    return None


def _mag_folders(folder: Path) -> list[Path]:
    """The 2DMatGMM-System ``<mag>x`` folders holding ``Pictures`` and ``Meta``."""
    return sorted(p for p in folder.glob("*x") if (p / "Pictures").is_dir()
                  and (p / "Meta").is_dir())  # fmt: skip


def _ome_frames(listing) -> list[Frame]:
    """The frames of an OME-TIFF listing (positions in µm there, mm here)."""
    out = []
    for key, x_um, y_um in listing.frames:
        out.append(Frame(len(out), key, _number(x_um / 1000.0, "PositionX", key),
                         _number(y_um / 1000.0, "PositionY", key)))  # fmt: skip
    return out


def _read_csv(path: Path, partial: bool) -> list[Frame]:
    text = path.read_text(encoding="utf-8-sig")
    if partial and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # the writer is still on its last line
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        return []
    header = [h.strip().lower() for h in rows[0]]
    need = ("file", "x_mm", "y_mm")
    if any(h not in header for h in need):
        raise ValueError(f"{path}: the header must name file,x_mm,y_mm; got {','.join(rows[0])}")
    ix = [header.index(h) for h in need]
    frames, seen = [], set()
    for n, row in enumerate(rows[1:], start=2):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) < len(header):
            raise ValueError(f"{path} line {n}: expected {len(header)} fields, got {len(row)}")
        f = row[ix[0]].strip().replace("\\", "/")
        if not f or f.startswith("/") or ".." in Path(f).parts:
            raise ValueError(f"{path} line {n}: file {f!r} must be a path inside the folder")
        f = PurePosixPath(f).as_posix()  # one spelling: "./tiles//a.jpg" is "tiles/a.jpg"
        if f in seen:
            raise ValueError(f"{path} line {n}: {f} is listed twice (one frame, one row)")
        seen.add(f)
        where = f"{path} line {n}"
        frames.append(Frame(len(frames), f, _number(row[ix[1]], "x_mm", where),
                            _number(row[ix[2]], "y_mm", where)))  # fmt: skip
    return frames


def _read_2dmatgmm(folder: Path) -> list[Frame] | None:
    mags = _mag_folders(folder)
    if not mags:
        return None
    if len(mags) > 1:
        # a scan's flake search runs at one magnification; the overview is a separate pass
        mags = [m for m in mags if any((m / "Meta").glob("*.json"))][-1:]
    mag = mags[0]
    frames = []
    metas = sorted((mag / "Meta").glob("*.json"), key=lambda p: (len(p.stem), p.stem))
    for meta in metas:
        try:
            pos = json.loads(meta.read_text())["motor_pos"]
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{meta}: no readable motor_pos ({exc})") from None
        pics = [p for p in (mag / "Pictures").glob(meta.stem + ".*")]
        if not pics:
            continue
        rel = pics[0].relative_to(folder).as_posix()
        frames.append(Frame(len(frames), rel, _number(pos[0], "motor_pos x", str(meta)),
                            _number(pos[1], "motor_pos y", str(meta))))  # fmt: skip
    return frames
