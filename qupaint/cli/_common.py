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
from typer.core import TyperGroup

from qupaint.constants import MAX_OXIDE_NM

__all__ = [
    "app",
    "console",
    "LIMITS",
    "invoked_command",
    "user_errors",
    "fail",
    "detector_settings",
    "progress",
    "split_list",
    "metric_table",
    "pct",
    "load_microscope",
    "parse_oxide_option",
    "parse_range",
]

console = Console(soft_wrap=True)  # an error stays one line, however narrow the terminal

#: the range every numeric option must lie in, by option name: (low, high, what it is);
#: a bound given as a 1-tuple is exclusive. Physical limits where the quantity is physical.
LIMITS: dict[str, tuple] = {
    "layers": (1, 200, "layers"),
    "max_layers": (1, 12, "layers (the detector's ladder holds 1-12)"),
    "oxide_nm": (0, MAX_OXIDE_NM, "nm of SiO2"),
    "wl_min": (200, 2000, "nm"),
    "wl_max": (200, 2000, "nm"),
    "wl_step": ((0,), 100, "nm"),
    "theta_deg": (0, 89, "degrees"),
    "um_per_px": ((0,), 100, "um per pixel"),
    "gamma": ((0,), 10, "the response exponent"),
    "min_area_um2": (0, 1e6, "um^2"),
    "min_area": (0, 1e9, "pixels"),
    "min_score": (0, 1, "a probability"),
    "threshold": ((0,), (1,), "a probability"),
    "temperature": (0, 10, "the sampling temperature"),
    "lr": ((0,), 10, "the learning rate"),
    "vision_lr": ((0,), 10, "the learning rate"),
    "vision_steps": (0, 1_000_000_000, "a count (0: none)"),
    "adapt_steps": (0, 1_000_000, "optimiser steps (0: no adaptation)"),
    "seed": (0, 2**32 - 1, "a 32-bit seed"),
    "size": (16, 16384, "pixels"),
    "crop": (16, 16384, "pixels"),
    "width": (1, 1024, "channels"),
    "depth": (1, 8, "levels"),
    "stem": (1, 4, "a pixel-folding factor (1, 2 or 4)"),
    "grid": (1, 64, "cells per side"),
    "size_mm": ((0,), 300, "mm (a chip or wafer)"),
    "tiles": (1, 10000, "frames"),
    "overlap": (0, (0.5,), "a share of the frame"),
    "flakes_per_mm2": (0, 1e5, "flakes per mm^2"),
    "jitter_um": (0, 1000, "um"),
    "match_px": (0, 1000, "pixels"),
    "idle_s": ((0,), 1e6, "seconds"),
    "max_area_um2": (0, 1e9, "um^2"),
    "min_probability": (0, 1, "a probability"),
    "scan_id": (1, 2**62, "a scan's database id"),
    "overview_px": (64, 65536, "pixels"),
    "radius_um": ((0,), 1e4, "um"),
    "port": (1, 65535, "a TCP port"),
    "max_upload_mb": ((0,), 4096, "MB"),
    "time_limit_s": ((0,), 86400, "s"),
    "dense_weight": (0, 1000, "a loss weight"),
    "tile": (16, 16384, "pixels"),
    "window": (16, 16384, "pixels"),
    "rank": (1, 4096, "a LoRA rank"),
    **{name: (1, 1_000_000_000, "a count") for name in (
        "num_images", "images", "images_per_material", "max_images", "steps", "batch",
        "batch_size", "max_new_tokens", "limit", "per_class", "seeds", "shard_size", "chunk",
        "bench_images", "windows",
    )},
    **{name: (1, 256, "processes or threads") for name in ("workers", "threads")},
}  # fmt: skip


def _bound_text(b, low: bool) -> str:
    if isinstance(b, tuple):
        return f"{'>' if low else '<'} {b[0]:g}"
    return f"{'>=' if low else '<='} {b:g}"


def _check_range(name: str, value):
    lo, hi, what = LIMITS[name]
    if value is None:
        return value
    if isinstance(value, tuple):  # a pair (--size-mm W H): each number in range
        for v in value:
            _check_range(name, v)
        return value
    ok_lo = value > lo[0] if isinstance(lo, tuple) else value >= lo
    ok_hi = value < hi[0] if isinstance(hi, tuple) else value <= hi
    if not (ok_lo and ok_hi):
        span = f"{_bound_text(lo, True)} and {_bound_text(hi, False)}"
        raise typer.BadParameter(f"{value:g} is out of range ({what}: {span})")
    return value


def _limit_numeric_options(command) -> None:
    """Give every numeric option named in :data:`LIMITS` its range check (once)."""
    import typing

    for p in getattr(command, "params", ()):
        info = getattr(p, "type_descriptor", None)
        ann = getattr(info, "annotation", None)
        kinds = (ann,) + typing.get_args(ann)
        if p.name in LIMITS and (int in kinds or float in kinds) and not getattr(p, "_ranged", 0):
            inner = p.callback

            def check(ctx, param, value, _name=p.name, _inner=inner):
                value = _check_range(_name, value)
                return _inner(ctx, param, value) if _inner else value

            p.callback = check
            p._ranged = True
    for sub in getattr(command, "commands", {}).values():
        _limit_numeric_options(sub)


try:  # typer >= 0.16 vendors its click
    from typer._click import exceptions as _cx
except ImportError:  # pragma: no cover
    from click import exceptions as _cx
# typer's vendored click keeps Abort in typer.exceptions; without this the except clause
# below raised AttributeError and hid the real traceback of any uncaught error
_Abort = getattr(_cx, "Abort", None)
if _Abort is None:
    from typer.exceptions import Abort as _Abort


class OneLineErrors(TyperGroup):
    """The ``qupaint`` group: every numeric option range-checked (:data:`LIMITS`), and every
    usage error one line, ``error: <what> (see <command> --help)``, with exit code 2, the
    same as the errors the commands themselves report."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        import sys

        _limit_numeric_options(self)
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _cx.UsageError as e:
            sub_path = e.ctx.command_path.partition(" ")[2] if e.ctx is not None else ""
            where = f"qupaint {sub_path}".strip()
            console.print(f"[red]error:[/red] {e.format_message()} (see {where} --help)")
            sys.exit(2)
        except _cx.ClickException as e:
            console.print(f"[red]error:[/red] {e.format_message()}")
            sys.exit(e.exit_code)
        except _Abort:
            console.print("[red]error:[/red] aborted")
            sys.exit(1)
        except ModuleNotFoundError as e:  # an optional part not installed: name its extra
            from rich.markup import escape

            from qupaint._extras import hint

            line = hint(e)
            if line is None:
                raise
            console.print(f"[red]error:[/red] {escape(line)}")
            sys.exit(2)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
    rich_markup_mode=None,  # plain click help: no "<bool>" type column on --help and flags
    help="qupaint: physics-aware tools for 2D quantum-material discovery.",
    no_args_is_help=True,
    add_completion=False,
)

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


def invoked_command(name: str) -> str | None:
    """The command line as typed, for the record of how a result was made:
    ``"qupaint <name> <its arguments>"``, with ``name`` the (sub)command, e.g. ``"seg
    train"``; None when the process was not started by that command (e.g. in tests)."""
    import sys

    last = name.split()[-1]
    if last not in sys.argv:
        return None
    return f"qupaint {name} " + " ".join(sys.argv[sys.argv.index(last) + 1 :])


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


def load_microscope(spec: str | Path | None):
    """The :class:`~qupaint.color.Microscope` of a ``--camera`` value (a preset name or a
    camera JSON), read once; ``Microscope()`` without one. A bad value exits with its error."""
    from qupaint.color import Microscope

    with user_errors():
        return Microscope.load(spec)


def detector_settings(microscope, oxide_nm=None, um_per_px: float | None = None,
                      min_area_um2: float | None = None, method: str | None = None):
    """The :class:`~qupaint.detect.DetectorSettings` of a command's options
    (:meth:`~qupaint.detect.DetectorSettings.from_microscope`, the one door every command
    and the web app take): ``oxide_nm`` as :func:`parse_oxide_option` gives it, ``method``
    one of :data:`~qupaint.detect.config.METHODS`; a bad value exits with its error."""
    from qupaint.detect import DetectorSettings

    changes = {} if min_area_um2 is None else {"min_area_um2": min_area_um2}
    with user_errors():
        return DetectorSettings.from_microscope(microscope, oxide_nm=oxide_nm,
                                                um_per_px=um_per_px, method=method,
                                                **changes)  # fmt: skip


#: the help of every command's ``--method``
METHOD_HELP = ("How flakes are found: physics (contrast pieces, rules, layer ladder), learned "
               "(the segmenter alone; the ladder counts layers) or fused (physics verified by "
               "the segmenter); learned and fused use the --camera file's adapted segmenter "
               "(qupaint calibrate --images --masks) when it has one. Default: physics")


def parse_oxide_option(text: str | None, option: str = "--oxide-nm"):
    """A ``--oxide-nm`` value: None (not given), ``"auto"`` or a thickness in nm; a bad value
    exits naming the option (:func:`qupaint.constants.parse_oxide`)."""
    from qupaint.constants import parse_oxide

    try:
        return parse_oxide(text, option)
    except ValueError as exc:
        fail(str(exc))
