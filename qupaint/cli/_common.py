"""What every ``qupaint`` command shares: the app, the console, errors and progress bars."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

__all__ = [
    "app",
    "console",
    "user_errors",
    "fail",
    "camera_field",
    "detector_config",
    "progress",
    "split_list",
    "metric_table",
    "pct",
    "load_camera",
    "oxide_or",
    "parse_range",
]

app = typer.Typer(
    help="qupaint: physics-aware tools for 2D quantum-material discovery.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()

#: the errors a command reports as a one-line message (exit code 2) rather than a traceback:
#: bad input (ValueError, TypeError) and files that cannot be read or written (OSError)
USER_ERRORS = (ValueError, TypeError, OSError)


@contextlib.contextmanager
def user_errors(*extra: type[Exception]) -> Iterator[None]:
    """Turn a user error raised inside the block into ``error: <message>`` and exit code 2."""
    try:
        yield
    except (*USER_ERRORS, *extra) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def fail(message: str, code: int = 2) -> NoReturn:
    """Stop the command with a one-line ``error: <message>`` and a non-zero exit code."""
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


@contextlib.contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Callable[..., None]]:
    """A progress bar; yields ``report(done, total=None, description=None)``."""
    with Progress(console=console) as bar:
        task = bar.add_task(description, total=total)

        def report(done: int, total: int | None = None, description: str | None = None) -> None:
            # None leaves rich's total / description as they are
            bar.update(task, completed=done, total=total, description=description)

        yield report


def split_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (comma-separated option values)."""
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_range(text: str, param: str) -> tuple[float, float]:
    """``"80:100"`` -> (80.0, 100.0); a single number is a range of one value."""
    lo, _, hi = text.partition(":")
    try:
        return float(lo), float(hi if hi else lo)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: use LO:HI, e.g. 80:100", param_hint=param) from None


def pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def metric_table(title: str, rows: dict) -> Table:
    """Two-column table of metrics in percent."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in rows.items():
        table.add_row(k, pct(v))
    return table


def load_camera(spec: str | Path | None):
    """(camera, calibrated oxide in nm or None) from a ``--camera`` value: a preset name
    (``srgb``, ``2dmatgmm``) or a JSON file written by ``qupaint calibrate`` or
    ``Camera.save``; (None, None) without one. A preset's oxide is not used (it was its own
    calibration chip's)."""
    if spec is None:
        return None, None
    import json

    from qupaint.color import Camera
    from qupaint.color.camera import PRESETS

    with user_errors():
        if str(spec) in PRESETS:
            return Camera.preset(str(spec)), None
        cam = Camera.load(spec)
        oxide = json.loads(Path(spec).read_text()).get("oxide_nm")
    return cam, (float(oxide) if oxide is not None else None)


def camera_field(spec: str | Path | None, key: str):
    """What a ``--camera`` preset or file states beside the camera: ``um_per_px`` (the image
    scale), ``oxide_nm`` (the chip it was calibrated on) or ``response`` (the per-channel
    response exponents of its settings, from ``qupaint calibrate --images``); None without."""
    if spec is None:
        return None
    import json

    from qupaint.color.camera import PRESETS

    path = (Path(__file__).parents[1] / "color" / "cameras" / f"{spec}.json"
            if str(spec) in PRESETS else Path(spec))  # fmt: skip
    try:
        v = json.loads(path.read_text()).get(key)
    except (OSError, ValueError):
        return None
    if v is None:
        return None
    return [float(x) for x in v] if isinstance(v, list) else float(v)


def detector_config(camera: str | Path | None, **changes):
    """The detector's settings for a ``--camera``: its calibrated response as the prior."""
    from qupaint.detect import DetectorConfig

    resp = camera_field(camera, "response")
    if resp is not None:
        changes["response_center"] = tuple(resp)
    return DetectorConfig(**changes)


def oxide_or(oxide_nm: float | None, calibrated: float | None, default: float = 285.0) -> float:
    """An explicit ``--oxide-nm``, else the camera file's calibrated oxide, else ``default``."""
    if oxide_nm is not None:
        return float(oxide_nm)
    return calibrated if calibrated is not None else default
