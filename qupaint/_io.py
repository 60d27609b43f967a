"""File I/O shared by every stage: crash-safe output, fast JSON, and image readers.

Images are read by :func:`read_rgb` (a micrograph as [H, W, 3] uint8 RGB) and
:func:`read_mask` (a mask's pixel values as stored); both close the file before they
return, and an unreadable file is a ``ValueError`` that names it.

A file under its final name is always complete: :func:`atomic_open` writes to a temporary
file in the same folder and renames it into place only when the block ends without an
error (POSIX ``rename`` is atomic within a file system); on an error the temporary file
is removed. Finished files honour the umask, like any file the process writes. A full
disk raises an ``OSError`` that says how to resume.

JSON: orjson parses ~2.5x and writes ~4x faster than the standard library (measured on
QMat-Instruct's COCO files); :func:`json_loads` / :func:`json_dumps` use it when present and
give the same compact output without it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "IMAGE_EXTS",
    "image_files",
    "image_size",
    "read_mask",
    "read_rgb",
    "image_bytes",
    "atomic_open",
    "atomic_write_bytes",
    "write_json",
    "pin_json",
    "json_loads",
    "json_dumps",
]

#: image files the package reads (Synthia backgrounds, detector and model inputs)
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; rename it to ``path`` on success.

    ``mode`` is a write mode (``"wb"``, ``"w"``); ``kwargs`` go to :func:`open`
    (``newline=""``, ``buffering=...``). Parent folders are created.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a" / "b.txt"
    >>> with atomic_open(p, "w") as fh:
    ...     _ = fh.write("done")
    >>> p.read_text()
    'done'
    """
    if not mode.startswith("w"):
        raise ValueError(f"mode must be a write mode ('w' or 'wb'); got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); a finished file gets the mode any other
        # file of this process would: 0666 minus the umask (0644 under umask 022)
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        if exc.errno == errno.ENOSPC:
            raise OSError(
                exc.errno,
                f"disk full while writing {path}; free space and re-run the same command to resume",
            ) from exc
        raise
    except BaseException:
        _discard(tmp)
        raise


def _umask() -> int:
    """The process umask, read without changing it where the system allows (Linux)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and put it back at once
    os.umask(mask)
    return mask


def _discard(tmp: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename (see :func:`atomic_open`)."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def check_image_shape(width: int, height: int, what: str = "image") -> None:
    """ValueError naming ``what`` unless a ``width`` x ``height`` image is within the limits
    of :mod:`qupaint.constants` (pixels, longest side, aspect ratio): checked from an image
    file's header before it is decoded, so that no file makes the work unbounded.

    >>> check_image_shape(1920, 1200)
    >>> check_image_shape(59_000_000, 1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: image: 59000000 x 1 px is outside the shapes read (at most 20000 px a side, ...
    """
    from qupaint.constants import MAX_IMAGE_ASPECT, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE

    w, h = int(width), int(height)
    if (w < 1 or h < 1 or max(w, h) > MAX_IMAGE_SIDE or w * h > MAX_IMAGE_PIXELS
            or max(w, h) > MAX_IMAGE_ASPECT * min(w, h)):  # fmt: skip
        raise ValueError(f"{what}: {w} x {h} px is outside the shapes read (at most "
                         f"{MAX_IMAGE_SIDE} px a side, {MAX_IMAGE_PIXELS / 1e6:g} megapixels, "
                         f"and sides within {MAX_IMAGE_ASPECT:g}:1)")  # fmt: skip


def _open_image(path):
    from PIL import Image

    try:
        im = Image.open(path)
    except Exception as exc:  # PIL raises many kinds (OSError, UnidentifiedImageError, ...)
        raise ValueError(f"{path}: not a readable image ({exc})") from None
    try:
        check_image_shape(im.width, im.height, str(path))
    except ValueError:
        im.close()
        raise
    return im


def read_rgb(path: str | os.PathLike) -> Any:
    """The image at ``path`` as a [H, W, 3] uint8 RGB array (any mode converted), the file
    closed after reading; an unreadable file is a ValueError naming it."""

    with _open_image(path) as im:
        try:
            return rgb8(im)
        except Exception as exc:  # a truncated or corrupt file fails while decoding
            raise ValueError(f"{path}: not a readable image ({exc})") from None


def rgb8(im) -> Any:
    """A PIL image as [H, W, 3] uint8 RGB. A 16-bit image is scaled to 8 bits (its 0-65535
    range to 0-255), and a 32-bit integer or float image by its own maximum: PIL's plain
    conversion clips them, which left a 16-bit micrograph white and without flakes.

    >>> import numpy as np
    >>> from PIL import Image
    >>> im = Image.fromarray(np.full((2, 2), 32896, np.uint16))
    >>> int(rgb8(im)[0, 0, 0])
    128
    """
    import numpy as np

    if im.mode.startswith("I;16"):
        a = np.asarray(im).astype(np.float64) / 257.0
    elif im.mode in ("I", "F"):
        a = np.asarray(im).astype(np.float64)
        top = float(a.max()) if a.size else 0.0
        a = a * (255.0 / top) if top > 255.0 else a
    else:
        return np.asarray(im.convert("RGB"))
    g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=-1)


def read_mask(path: str | os.PathLike) -> Any:
    """The pixel values of a mask image at ``path`` as stored (instance ids, 0 background),
    [H, W], the file closed after reading; an unreadable file is a ValueError naming it."""
    import numpy as np

    with _open_image(path) as im:
        try:
            return np.array(im)
        except Exception as exc:
            raise ValueError(f"{path}: not a readable mask ({exc})") from None


def image_files(paths, what: str = "images", min_count: int = 1) -> list[Path]:
    """The image files (:data:`IMAGE_EXTS`) of ``paths``: files, or folders searched
    recursively (sorted). ``what`` names the set in errors; fewer than ``min_count`` is one."""
    out: list[Path] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTS)
        elif p.is_file():
            out.append(p)
        else:
            raise ValueError(f"{what}: {p} is no image or folder")
    if len(out) < min_count:
        raise ValueError(f"{what}: at least {min_count} {what} images are needed; "
                         f"found {len(out)}")  # fmt: skip
    return out


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of the image at ``path`` from its header, the file closed."""
    with _open_image(path) as im:
        return im.size


def image_bytes(image: Any, format: str = "PNG", **save: Any) -> bytes:
    """``image`` (a uint8 array [H, W(, 3)] or a PIL image) encoded in memory as ``format``
    (PNG, JPEG, ...); ``save`` goes to PIL's ``Image.save`` (``quality=90``, ...)."""
    import io

    from PIL import Image

    im = image if hasattr(image, "save") else Image.fromarray(image)
    buf = io.BytesIO()
    im.save(buf, format=format, **save)
    return buf.getvalue()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """``obj`` as indented JSON (one trailing newline), written atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def pin_json(path: str | os.PathLike, obj: Any) -> Any | None:
    """Pin a long job's settings: write ``obj`` to ``path`` (compact JSON, keys in their
    order, atomically) when the file does not exist yet and return None; when it does, return its
    content if it differs from ``obj`` (compared as JSON), else None. Every machine and
    every resume of a sharded job calls it, so a mismatch is caught before any work."""
    text = json.dumps(obj, separators=(",", ":")) + "\n"
    p = Path(path)
    if not p.exists():
        atomic_write_bytes(p, text.encode())
        return None
    old = json.loads(p.read_text())
    return old if old != json.loads(text) else None


try:
    import orjson

    def json_loads(data: bytes | str) -> Any:
        """Parse JSON (orjson when installed)."""
        return orjson.loads(data)

    def json_dumps(obj: Any) -> str:
        """Compact JSON text, non-ASCII kept (orjson when installed)."""
        return orjson.dumps(obj).decode()

except ImportError:  # pragma: no cover - orjson is a declared dependency

    def json_loads(data: bytes | str) -> Any:
        """Parse JSON (orjson when installed)."""
        return json.loads(data)

    def json_dumps(obj: Any) -> str:
        """Compact JSON text, non-ASCII kept (orjson when installed)."""
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
