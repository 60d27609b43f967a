"""``qupaint optics``, ``qupaint materials`` and ``qupaint backends``."""

from __future__ import annotations

import csv
import importlib
from pathlib import Path

import numpy as np
import typer
from rich.table import Table

from qupaint._io import atomic_open
from qupaint.cli._common import app, console, user_errors

#: every module that registers kernel ops with qupaint._backend, in pipeline order
OP_MODULES = (
    "qupaint.optics.tmm",
    "qupaint.color.convert",
    "qupaint.color.stack",
    "qupaint.pia",
    "qupaint.gate",
    "qupaint.synthia.finish",
)


def _parse_stack(stack: str) -> list[tuple]:
    layers = []
    for item in filter(None, (s.strip() for s in stack.split(","))):
        parts = item.split(":")
        if len(parts) not in (2, 3):
            raise typer.BadParameter(
                f"{item!r}: use MATERIAL:THICKNESS_NM or MATERIAL:THICKNESS_NM:N_LAYERS",
                param_hint="--stack",
            )
        try:
            spec = (parts[0], float(parts[1])) + ((int(parts[2]),) if len(parts) == 3 else ())
        except ValueError as exc:
            raise typer.BadParameter(f"{item!r}: {exc}", param_hint="--stack") from exc
        layers.append(spec)
    return layers


@app.command()
def optics(
    stack: str = typer.Option(None, help="Layers top to bottom, e.g. 'MoS2:0.615:1,SiO2:285'"),
    flake: str = typer.Option(None, help="Shortcut: material of a flake on oxide (with --layers)"),
    layers: int = typer.Option(1, help="Layer count for --flake"),
    oxide_nm: float = typer.Option(285.0, help="SiO2 thickness for --flake (nm)"),
    substrate: str = typer.Option("Si", help="Semi-infinite substrate"),
    incident: str = typer.Option("air", help="Semi-infinite incident medium"),
    wl_min: float = typer.Option(400.0, help="First wavelength (nm)"),
    wl_max: float = typer.Option(700.0, help="Last wavelength (nm)"),
    wl_step: float = typer.Option(1.0, help="Wavelength step (nm)"),
    theta_deg: float = typer.Option(0.0, help="Angle of incidence (degrees)"),
    pol: str = typer.Option("u", help="s, p or u (unpolarised)"),
    out: Path = typer.Option(None, help="Write the spectrum as CSV (wavelength_nm,R)"),
    backend: str = typer.Option(None, help="reference | cpu | cuda"),
):
    """Reflectance spectrum of a thin-film stack (transfer-matrix method)."""
    from qupaint.optics import flake_layers, stack_reflectance

    if (stack is None) == (flake is None):
        raise typer.BadParameter("give exactly one of --stack or --flake")
    if wl_step <= 0 or wl_max < wl_min:
        raise typer.BadParameter("need wl_step > 0 and wl_max >= wl_min")
    wl = np.arange(wl_min, wl_max + 0.5 * wl_step, wl_step)
    with user_errors():
        spec = _parse_stack(stack) if stack else flake_layers(flake, layers, oxide_nm)
        R = stack_reflectance(
            spec,
            wl,
            substrate=substrate,
            incident=incident,
            theta0=np.radians(theta_deg),
            pol=pol,
            backend=backend,
        )
    desc = " / ".join([incident, *[f"{s[0]} {s[1]:g} nm" for s in spec], substrate])
    table = Table(title=f"R({pol}) of {desc} at {theta_deg:g} deg")
    table.add_column("wavelength (nm)", justify="right")
    table.add_column("R", justify="right")
    for i in np.linspace(0, len(wl) - 1, min(len(wl), 11)).astype(int):
        table.add_row(f"{wl[i]:g}", f"{R[i]:.5f}")
    console.print(table)
    console.print(
        f"mean R = {R.mean():.5f}, min {R.min():.5f} at {wl[R.argmin()]:g} nm, "
        f"max {R.max():.5f} at {wl[R.argmax()]:g} nm"
    )
    if out:
        with user_errors(), atomic_open(out, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["wavelength_nm", "R"])
            w.writerows((f"{a:g}", f"{b:.8f}") for a, b in zip(wl, R, strict=True))
        console.print(f"wrote {out}")


@app.command()
def materials():
    """List the built-in materials, their ranges, monolayer thickness and sources."""
    from qupaint.optics import get_material, list_materials

    table = Table(title="qupaint materials")
    for col in ("name", "range (nm)", "monolayer (nm)", "source"):
        table.add_column(col)
    for name in list_materials():
        m = get_material(name)
        lo, hi = m.range_nm()
        src = m.citations()[0].split("REF:")[-1].split("|")[0].strip()[:90]
        table.add_row(name, f"{lo:g}-{hi:g}", f"{m.monolayer_nm:g}" if m.monolayer_nm else "-", src)
    console.print(table)


@app.command()
def backends():
    """Which kernels (ops) this build and machine can run, per backend."""
    from qupaint import _backend

    for module in OP_MODULES:
        importlib.import_module(module)
    table = Table(title="qupaint backends")
    for col in ("backend", "available", "ops", "note"):
        table.add_column(col)
    for name, info in _backend.describe().items():
        table.add_row(
            name, "yes" if info["available"] else "no", ", ".join(info["ops"]) or "-", info["why"]
        )
    console.print(table)
