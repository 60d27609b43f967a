"""``qupaint optics``, ``qupaint materials`` and ``qupaint backends``."""

from __future__ import annotations

import csv
import importlib
from pathlib import Path

import numpy as np
import typer
from rich.table import Table

from qupaint._io import atomic_open, write_json
from qupaint.cli._common import (
    app,
    console,
    fail,
    load_microscope,
    parse_range,
    progress,
    user_errors,
)

#: every module that registers kernel ops with qupaint._backend, in pipeline order
OP_MODULES = (
    "qupaint.optics.tmm",
    "qupaint.color.convert",
    "qupaint.color.stack",
    "qupaint.pia",
    "qupaint.gate",
    "qupaint.synthia.finish",
    "qupaint.detect.contrast",
    "qupaint.detect.pieces",
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
    oxide_nm: float = typer.Option(
        None, help="SiO2 thickness for --flake (nm; default the --camera's calibrated, or 285)"
    ),
    substrate: str = typer.Option("Si", help="Semi-infinite substrate"),
    incident: str = typer.Option("air", help="Semi-infinite incident medium"),
    wl_min: float = typer.Option(400.0, help="First wavelength (nm)"),
    wl_max: float = typer.Option(700.0, help="Last wavelength (nm)"),
    wl_step: float = typer.Option(1.0, help="Wavelength step (nm)"),
    theta_deg: float = typer.Option(0.0, help="Angle of incidence (degrees)"),
    pol: str = typer.Option("u", help="s, p or u (unpolarised)"),
    out: Path = typer.Option(None, help="Write the spectrum as CSV (wavelength_nm,R)"),
    backend: str = typer.Option(None, help="reference | cpu | cuda"),
    camera: Path = typer.Option(None, help="Camera JSON (qupaint calibrate): print its R, G, B"),
):
    """Reflectance spectrum of a thin-film stack (transfer-matrix method); with --camera,
    also the stack's colour through that camera and (for --flake) its contrast."""
    from qupaint.optics import flake_layers, stack_reflectance

    mic = load_microscope(camera)
    cam = mic.camera
    oxide_nm = mic.oxide_or(oxide_nm)
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
    if cam is not None:
        from qupaint.color import channel_contrast, stack_color

        with user_errors():
            rgb = stack_color(spec, substrate=substrate, incident=incident, camera=cam)
            line = f"through {cam.describe()}: linear R, G, B = " + ", ".join(
                f"{v:.4f}" for v in rgb
            )
            if flake:
                c = channel_contrast(flake, [layers], oxide_nm, cam)[0]
                line += "; contrast C = I/I_sub - 1 = " + ", ".join(f"{v:+.4f}" for v in c)
        console.print(line)
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


def _parse_contrasts(text: str, n: int) -> list[tuple[float, float, float]]:
    groups = [g for g in text.split(";") if g.strip()]
    if len(groups) != n:
        raise typer.BadParameter(
            f"give one R,G,B triple per layer count ({n}), separated by ';'",
            param_hint="--contrast",
        )
    out = []
    for g in groups:
        try:
            vals = tuple(float(v) for v in g.split(","))
        except ValueError:
            raise typer.BadParameter(
                f"{g!r} is not three numbers", param_hint="--contrast"
            ) from None
        if len(vals) != 3:
            raise typer.BadParameter(f"{g!r}: need C_R,C_G,C_B", param_hint="--contrast")
        out.append(vals)
    return out


@app.command()
def calibrate(
    material: str = typer.Option(..., help="Material of the measured flakes, e.g. graphene"),
    layers: str = typer.Option(None, help="Their layer counts, e.g. 1,2 (with --contrast)"),
    contrast: str = typer.Option(
        None, help="Per-channel contrast C = I/I_sub - 1 of each, 'R,G,B;R,G,B' (e.g. -0.13,...)"
    ),
    images: Path = typer.Option(
        None, help="Or: a folder of your own micrographs with instance masks (a few suffice)"
    ),
    masks: Path = typer.Option(
        None, help="Their masks <stem>.png (0 elsewhere, k for flake k); default images/../masks"
    ),
    layers_csv: Path = typer.Option(
        None, help="Optional layer counts of the masked flakes: CSV image,instance,layers"
    ),
    camera: str = typer.Option("2dmatgmm", help="Starting camera (with --images)"),
    max_layers: int = typer.Option(
        5, help="With --images and no layer numbers: the most layers your masks mark (e.g. 3 "
        "for 1-3 layer flakes); the fit takes every flake as 1..this many"
    ),
    um_per_px: float = typer.Option(None, help="Image scale to record (default the camera's)"),
    oxide_nm: str = typer.Option("60:320", help="SiO2 thickness range LO:HI (nm)"),
    illuminant: str = typer.Option(
        "A", help="Lamp: A (halogen), D65, ..., blackbody:<K> or a CSV path"),
    gamma: float = typer.Option(1.0, help="Camera response exponent (1 = linear pixel values)"),
    out: Path = typer.Option(Path("camera.json"), help="Where to write the calibrated camera"),
    adapt_steps: int = typer.Option(
        300, help="With --images: fine-tune the thin-flake segmenter on the masks for this many "
        "steps (0: do not) and write it beside --out, for detect --method learned|fused"),
):
    """Fit the oxide thickness and the camera to measured flake contrasts (--layers and
    --contrast), or to a few annotated images of your own (--images with masks; layer
    numbers optional, inferred when absent); the JSON then goes to --camera of optics,
    synthia, instruct and detect."""
    from qupaint.color import channel_contrast
    from qupaint.color.calibrate import fit_camera

    if images is not None:
        _calibrate_images(material, images, masks, layers_csv, camera, um_per_px,
                          parse_range(oxide_nm, "--oxide-nm"), out, max_layers,
                          adapt_steps)  # fmt: skip
        return
    if layers is None or contrast is None:
        fail("give --layers and --contrast (measured flakes), or --images with masks")
    counts = [int(v) for v in layers.split(",") if v.strip()]
    obs_c = _parse_contrasts(contrast, len(counts))
    lo, hi = parse_range(oxide_nm, "--oxide-nm")
    with user_errors():
        fit = fit_camera(
            [(material, n, c) for n, c in zip(counts, obs_c, strict=True)],
            oxide_nm=(lo, hi),
            illuminant=illuminant,
            gamma=gamma,
        )
        write_json(
            out,
            {
                **fit.to_dict(),
                "material": material,
                "observations": [
                    {"layers": n, "contrast": list(c)} for n, c in zip(counts, obs_c, strict=True)
                ],
            },
        )
    table = Table(title=f"calibration: {fit.camera.describe()}, oxide {fit.oxide_nm:.1f} nm")
    for col in ("layers", "measured R,G,B", "model R,G,B", "residual"):
        table.add_column(col)
    for n, c, p in zip(counts, obs_c, fit.predicted, strict=True):
        table.add_row(
            str(n),
            ", ".join(f"{v:+.3f}" for v in c),
            ", ".join(f"{v:+.3f}" for v in p),
            f"{np.abs(np.asarray(c) - p).max():.3f}",
        )
    console.print(table)
    more = sorted(set(range(1, max(counts) + 3)) - set(counts))[:3]
    pred = channel_contrast(material, more, fit.oxide_nm, fit.camera)
    console.print(
        "predicted: "
        + "; ".join(
            f"{n}L {', '.join(f'{v:+.3f}' for v in p)}" for n, p in zip(more, pred, strict=True)
        )
    )
    if fit.alternatives:
        console.print(
            "other oxide solutions (nm, rms): "
            + ", ".join(f"{o:.0f} ({r:.3f})" for o, r in fit.alternatives)
            + "; narrow --oxide-nm to choose"
        )
    console.print(f"rms {fit.rms:.4f}; wrote {out}")


def _read_layers(path: Path) -> dict:
    """{(image stem, instance id): layers} from a CSV with columns image,instance,layers."""
    out = {}
    with open(path, newline="") as fh:
        for k, row in enumerate(csv.DictReader(fh), start=2):
            try:
                out[(Path(row["image"]).stem, int(row["instance"]))] = int(row["layers"])
            except (KeyError, TypeError, ValueError):
                fail(f"--layers-csv line {k}: need image,instance,layers (integers)")
    return out


def _adapted_weights(pairs, material, steps: int, out: Path) -> str:
    """Fine-tune the segmenter on the masked images and write it beside ``out`` under a
    name of its content (``<out stem>.segmenter-<hash>.safetensors``), so that a run killed
    before the camera file is written leaves the previous file and its weights as they
    were; returns the weights' file name."""
    import hashlib
    import tempfile

    from qupaint.seg.adapt import AdaptRecipe, adapt_segmenter

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        tmp_w = Path(tmp) / "adapted.safetensors"
        with progress("adapt the segmenter", total=steps) as report:
            adapt_segmenter(pairs, material, recipe=AdaptRecipe(steps=steps), out=tmp_w,
                            progress=report)  # fmt: skip
        digest = hashlib.sha256(tmp_w.read_bytes()).hexdigest()[:10]
        name = f"{out.stem}.segmenter-{digest}.safetensors"
        tmp_w.with_suffix(".json").replace(out.parent / Path(name).with_suffix(".json"))
        tmp_w.replace(out.parent / name)
    return name


def _calibrate_images(material, images, masks, layers_csv, camera, um_per_px, oxide, out,
                      max_layers=5, adapt_steps=0):  # fmt: skip
    from qupaint.bench.real import find_masked_images
    from qupaint.detect.calibrate import calibrate_from_masks

    mic = load_microscope(camera)
    cam, scale = mic.camera, mic.scale_or(um_per_px)
    with user_errors():
        pairs = find_masked_images(images, masks)
        known = _read_layers(layers_csv) if layers_csv else None
        with progress("measure flakes", total=len(pairs)) as report:
            result = calibrate_from_masks(pairs, material, cam, known, oxide, scale,
                                          progress=report, max_layers=max_layers)  # fmt: skip
        if adapt_steps:
            result["segmenter"] = _adapted_weights(pairs, material, adapt_steps, Path(out))
        write_json(out, result)
    if "oxide_nm" in result:
        oxide_text = f"oxide {result['oxide_nm']:.1f} nm"
    else:
        sd = result.get("oxide_sd_nm")
        oxide_text = (f"oxide about {result['oxide_prior_nm']:.0f}"
                      + (f" ± {sd:.0f}" if sd is not None else "") + " nm (the detector's prior)")
    table = Table(title=f"{material}: {result['flakes']} flakes in {len(pairs)} images, "
                        f"{oxide_text}")  # fmt: skip
    for col in ("image", "flake", "layers", "contrast R,G,B"):
        table.add_column(col)
    for f in result["observations"]:
        table.add_row(f["image"][:12], str(f["id"]), str(f.get("layers") or "?"),
                      ", ".join(f"{v:+.3f}" for v in f["contrast"]))  # fmt: skip
    console.print(table)
    if "response" in result:
        console.print("response exponents R, G, B (1 = as the starting camera): "
                      + ", ".join(f"{k:.2f}" for k in result["response"]))  # fmt: skip
    if "segmenter" in result:
        console.print(f"segmenter adapted on {len(pairs)} images: {result['segmenter']} "
                      "(detect --method learned or fused uses it)")  # fmt: skip
    console.print(f"{result['method']}; wrote {out} (use: qupaint detect ... --camera {out})")
