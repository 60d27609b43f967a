"""Scans saved as OME-TIFF (Micro-Manager, or vendor software that exports OME): one
multi-position file, or a folder of ``.ome.tif`` files, one frame per series.

Each series is a frame; its stage position comes from the OME metadata, the first Plane's
``PositionX``/``PositionY`` (with their units, µm when unstated) or else the Image's
``StageLabel``. The position is the frame's centre, as ``positions.csv`` gives it (in mm
there). The pixel size comes from ``Pixels`` ``PhysicalSizeX``/``Y`` when given. A frame's
key in the scan is ``<file>#<series>``; its pixels are read one series at a time
(:func:`read_frame`), never the whole file.

A series without a position, or a file whose metadata cannot be read (a truncated file:
the OME-XML is written last), gives a one-line problem naming it (:func:`list_ome`); the
other series and files are still scanned.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

__all__ = ["OME_SUFFIXES", "OmeListing", "is_ome", "list_ome", "read_frame", "split_key"]

#: the file names of OME-TIFF
OME_SUFFIXES = (".ome.tif", ".ome.tiff")
#: a length unit's size in µm (OME's UnitsLength symbols)
_UM = {"m": 1e6, "cm": 1e4, "mm": 1e3, "µm": 1.0, "um": 1.0, "\u03bcm": 1.0, "nm": 1e-3,
       "pm": 1e-6, "Å": 1e-4}  # fmt: skip


def is_ome(path: str | Path) -> bool:
    """Whether ``path`` names an OME-TIFF file (by its suffix)."""
    return str(path).lower().endswith(OME_SUFFIXES)


def split_key(key: str) -> tuple[str, int | None]:
    """A frame key ``file#series`` -> (file, series); a plain file -> (file, None).

    >>> split_key("acq.ome.tif#3"), split_key("tiles/a.jpg")
    (('acq.ome.tif', 3), ('tiles/a.jpg', None))
    """
    file, sep, series = key.rpartition("#")
    if sep and is_ome(file) and series.isdigit():
        return file, int(series)
    return key, None


@dataclass
class OmeListing:
    """What :func:`list_ome` found: ``frames`` [(key, x_um, y_um)] in acquisition order,
    the pixel size ``um_per_px`` (None when no series states it), and one line per
    ``problem`` (a series without a position, a file that cannot be read)."""

    frames: list[tuple[str, float, float]] = field(default_factory=list)
    um_per_px: float | None = None
    problems: list[str] = field(default_factory=list)


def _um(value: str | None, unit: str | None, what: str) -> float | None:
    if value is None:
        return None
    v = float(value)
    unit = (unit or "µm").strip()
    if unit not in _UM:
        raise ValueError(f"{what}: unit {unit!r} is not a length OME knows (µm, mm, nm, ...)")
    v *= _UM[unit]
    if not math.isfinite(v):
        raise ValueError(f"{what}: {value} is not a finite length")
    return v


def _position(image: ET.Element, ns: str) -> tuple[float, float] | None:
    """(x, y) in µm of an OME Image: its first Plane's PositionX/Y, else its StageLabel."""
    plane = image.find(f"{ns}Pixels/{ns}Plane")
    if plane is not None and plane.get("PositionX") is not None:
        x = _um(plane.get("PositionX"), plane.get("PositionXUnit"), "PositionX")
        y = _um(plane.get("PositionY"), plane.get("PositionYUnit"), "PositionY")
        if y is not None:
            return x, y
    label = image.find(f"{ns}StageLabel")
    if label is not None and label.get("X") is not None and label.get("Y") is not None:
        return (_um(label.get("X"), label.get("XUnit"), "StageLabel X"),
                _um(label.get("Y"), label.get("YUnit"), "StageLabel Y"))  # fmt: skip
    return None


def _list_file(path: Path, key: str, out: OmeListing) -> None:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            xml = tif.ome_metadata if tif.is_ome else None
            n_series = len(tif.series)
    except Exception as exc:  # noqa: BLE001 - any failure to open is the file's problem
        out.problems.append(f"{key}: cannot be read as TIFF ({type(exc).__name__}: {exc})")
        return
    if not xml:
        out.problems.append(f"{key}: no OME metadata (truncated, or not an OME-TIFF): "
                            "its stage positions are unknown")  # fmt: skip
        return
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        out.problems.append(f"{key}: its OME metadata is damaged ({exc})")
        return
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    for k, image in enumerate(root.findall(f"{ns}Image")):
        name = image.get("Name") or image.get("ID") or str(k)
        where = f"{key} series {k} ({name})"
        if k >= n_series:
            out.problems.append(f"{where}: listed in the metadata but not in the file "
                                "(truncated?)")  # fmt: skip
            continue
        try:
            pos = _position(image, ns)
            pixels = image.find(f"{ns}Pixels")
            size = None
            if pixels is not None:
                size = _um(pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeXUnit"),
                           "PhysicalSizeX")  # fmt: skip
        except ValueError as exc:
            out.problems.append(f"{where}: {exc}")
            continue
        if pos is None:
            out.problems.append(f"{where}: no stage position (Plane PositionX/Y or "
                                "StageLabel); not scanned")  # fmt: skip
            continue
        if size is not None and size > 0 and out.um_per_px is None:
            out.um_per_px = size
        out.frames.append((f"{key}#{k}", pos[0], pos[1]))


def list_ome(source: str | Path) -> OmeListing:
    """The frames of an OME-TIFF scan: ``source`` is one ``.ome.tif`` file or a folder of
    them (sorted by name; keys relative to the folder, or the file's name)."""
    src = Path(source)
    if src.is_file():
        files, root = [src], src.parent
    elif src.is_dir():
        files, root = sorted(p for p in src.iterdir() if is_ome(p.name)), src
    else:
        raise ValueError(f"{src} is no OME-TIFF file or folder")
    if not files:
        raise ValueError(f"{src} holds no OME-TIFF file (*.ome.tif)")
    out = OmeListing()
    for f in files:
        _list_file(f, PurePosixPath(f.relative_to(root)).as_posix(), out)
    return out


def read_frame(path: str | Path) -> np.ndarray:
    """The RGB pixels [H, W, 3] uint8 of a frame: ``<file>#<series>`` reads that series of
    an OME-TIFF (its first plane; grey is repeated, 16-bit scaled to 8), any other path an
    image file (:func:`qupaint._io.read_rgb`). A series that cannot be read raises
    ValueError naming it."""
    from qupaint._io import read_rgb

    file, series = split_key(str(path))
    if series is None:
        return read_rgb(path)
    import tifffile

    try:
        with tifffile.TiffFile(file) as tif:
            s = tif.series[series]
            arr = s.asarray(key=0) if len(s.pages) > 1 else s.asarray()
            axes = s.axes
    except Exception as exc:  # noqa: BLE001 - truncated data, a missing series
        raise ValueError(f"{Path(file).name} series {series}: cannot be read "
                         f"({type(exc).__name__}: {exc})") from None  # fmt: skip
    return _rgb8(np.asarray(arr), axes if len(arr.shape) == len(axes) else "")


def _rgb8(a: np.ndarray, axes: str) -> np.ndarray:
    """[H, W, 3] uint8 of one plane, whatever its layout (YXS, CYX, YX)."""
    if a.ndim == 3 and a.shape[-1] in (3, 4) and (not axes or axes.endswith("S")):
        a = a[..., :3]
    elif a.ndim == 3 and a.shape[0] in (3, 4):
        a = np.moveaxis(a[:3], 0, -1)
    elif a.ndim == 2:
        a = np.repeat(a[..., None], 3, -1)
    else:
        while a.ndim > 3:
            a = a[0]
        return _rgb8(a, "")
    if a.dtype != np.uint8:
        hi = float(np.iinfo(a.dtype).max) if np.issubdtype(a.dtype, np.integer) else 1.0
        a = np.clip(a.astype(np.float64) / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)
