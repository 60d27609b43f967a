"""``qupaint`` command line (typer). Each pipeline stage has a subcommand."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="qupaint: physics-aware tools for 2D quantum-material discovery.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


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
    spec = _parse_stack(stack) if stack else flake_layers(flake, layers, oxide_nm)
    if wl_step <= 0 or wl_max < wl_min:
        raise typer.BadParameter("need wl_step > 0 and wl_max >= wl_min")
    wl = np.arange(wl_min, wl_max + 0.5 * wl_step, wl_step)
    try:
        R = stack_reflectance(
            spec,
            wl,
            substrate=substrate,
            incident=incident,
            theta0=np.radians(theta_deg),
            pol=pol,
            backend=backend,
        )
    except (ValueError, TypeError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
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
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="") as fh:
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
    """Which kernels this build and machine can run."""
    from qupaint import _backend
    from qupaint.optics import tmm  # noqa: F401  (registers the optics ops)

    table = Table(title="qupaint backends")
    for col in ("backend", "available", "ops", "note"):
        table.add_column(col)
    for name, info in _backend.describe().items():
        table.add_row(
            name, "yes" if info["available"] else "no", ", ".join(info["ops"]) or "-", info["why"]
        )
    console.print(table)


@app.command()
def synthia(
    out: Path = typer.Option(..., help="Output folder (images/, annotations.json, manifest.json)"),
    num_images: int = typer.Option(100, help="Number of images"),
    materials: str = typer.Option(
        "BN,Graphene,MoS2,MoSe2,MoWSe2,WS2,WSe2,WTe2", help="Comma-separated materials"
    ),
    reference_dir: Path = typer.Option(None, help="Real microscopy backgrounds (PNG/JPEG/TIFF)"),
    oxide_nm: float = typer.Option(285.0, help="SiO2 thickness (nm)"),
    illuminant: str = typer.Option("D65", help="D65, A (halogen), E, ..."),
    size: int = typer.Option(512, help="Image height and width (px)"),
    workers: int = typer.Option(2, help="Worker processes"),
    shard_size: int = typer.Option(500, help="Images per shard (the unit of resume)"),
    seed: int = typer.Option(0, help="Data-set seed (image i depends only on seed and i)"),
):
    """Render synthetic flake images with COCO annotations (QuPAINT Alg. 1); resumable."""
    from rich.progress import Progress

    from qupaint.synthia import SynthiaConfig, generate

    try:
        cfg = SynthiaConfig(
            seed=seed,
            height=size,
            width=size,
            oxide_nm=oxide_nm,
            illuminant=illuminant,
            materials=tuple(m.strip() for m in materials.split(",") if m.strip()),
            reference_dir=str(reference_dir) if reference_dir else None,
        )
        cfg.validate()
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    t0 = time.perf_counter()
    with Progress(console=console) as bar:
        task = bar.add_task("shards", total=None)

        def report(done, total):
            bar.update(task, completed=done, total=total)

        try:
            manifest = generate(cfg, out, num_images, shard_size, workers, progress=report)
        except (ValueError, OSError) as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
    dt = time.perf_counter() - t0
    console.print(
        f"wrote {num_images} images, {manifest['annotations']} annotations "
        f"{manifest['per_category']} to {out} in {dt:.1f} s"
    )
    if manifest["flakes_placed"] < manifest["flakes_requested"]:
        console.print(
            f"placed {manifest['flakes_placed']} of {manifest['flakes_requested']} "
            "flakes (no clean substrate left for the rest; see manifest.json)"
        )


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), help="Output folder"),
    backend: str = typer.Option(None, help="reference | cpu | cuda"),
):
    """The main job on built-in defaults: flake contrast and colour charts (PNG + CSV)."""
    from qupaint import demo as demo_mod

    t0 = time.perf_counter()
    with console.status("flake contrast and colours: 8 materials x 10 layers x 2 oxides x 2 lamps"):
        paths = demo_mod.run(out, backend)
    for p in paths:
        console.print(f"wrote {p}")
    console.print(f"done in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":  # pragma: no cover
    app()
