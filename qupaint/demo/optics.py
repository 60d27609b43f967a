"""The demo's optics and colour charts: the contrast ``C = R / R_sub - 1`` (the one
definition, :func:`qupaint.detect.contrast_map`'s, here of reflectance spectra) and the
rendered colour of 1-10 layer flakes of every material on 90 and 285 nm SiO2/Si, and the
per-channel contrast of a camera calibrated on real graphene."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qupaint.demo.files import save_fig, write_rows
from qupaint.optics import (
    DEFAULT_WAVELENGTHS_NM,
    FLAKE_MATERIALS,
    flake_layers,
    get_material,
    stack_reflectance,
)

__all__ = ["LAYERS", "MATERIALS", "MEASURED_GRAPHENE_90NM", "OXIDES_NM", "camera_contrast",
           "color_table", "contrast_table", "plot_colors", "plot_contrast", "reflectance_contrast",
           "write_color_csv", "write_csv"]  # fmt: skip


def reflectance_contrast(r, r_sub):
    """``C = R / R_sub - 1``: a flake's reflectance ``r`` against its substrate's ``r_sub``,
    negative where the flake is darker (the sign of the detector's ``C = I / I_sub - 1``).

    >>> float(reflectance_contrast(0.25, 0.5))
    -0.5
    """
    return np.asarray(r) / np.asarray(r_sub) - 1.0


#: the QF-Bench materials under their canonical names (hBN, graphene, ...)
MATERIALS = tuple(get_material(m).name for m in FLAKE_MATERIALS)


OXIDES_NM = (90.0, 285.0)


LAYERS = tuple(range(1, 11))


def contrast_table(wavelengths_nm=DEFAULT_WAVELENGTHS_NM, backend=None):
    """{(material, oxide_nm): (R_sub [W], R_flake [10, W])}, one batched call per flake."""
    out = {}
    for oxide in OXIDES_NM:
        r_sub = stack_reflectance([("SiO2", oxide)], wavelengths_nm, backend=backend)
        for mat in MATERIALS:
            # layer-resolved n,k differ per layer count, so each count is its own stack
            r = np.stack(
                [
                    stack_reflectance(flake_layers(mat, nl, oxide), wavelengths_nm, backend=backend)
                    for nl in LAYERS
                ]
            )
            out[(mat, oxide)] = (r_sub, r)
    return out


def write_csv(table, wavelengths_nm, path: Path) -> None:
    def rows():
        for (mat, oxide), (r_sub, r) in table.items():
            for i, nl in enumerate(LAYERS):
                c = reflectance_contrast(r[i], r_sub)
                k = int(np.argmax(np.abs(c)))
                t = flake_layers(mat, nl, oxide)[0][1]
                yield [
                    mat,
                    oxide,
                    nl,
                    f"{t:.3f}",
                    f"{r[i].mean():.5f}",
                    f"{r_sub.mean():.5f}",
                    f"{c.mean():.5f}",
                    f"{c[k]:.5f}",
                    f"{wavelengths_nm[k]:.0f}",
                ]

    header = [
        "material",
        "oxide_nm",
        "layers",
        "thickness_nm",
        "mean_R_flake",
        "mean_R_substrate",
        "mean_contrast",
        "peak_abs_contrast",
        "peak_wavelength_nm",
    ]
    write_rows(path, header, rows())


def plot_contrast(table, wavelengths_nm, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(OXIDES_NM),
        len(MATERIALS),
        figsize=(2.6 * len(MATERIALS), 5.6),
        sharex=True,
        sharey="row",
        constrained_layout=True,
    )
    cmap = plt.get_cmap("viridis")
    for row, oxide in enumerate(OXIDES_NM):
        for col, mat in enumerate(MATERIALS):
            ax = axes[row, col]
            r_sub, r = table[(mat, oxide)]
            for i, nl in enumerate(LAYERS):
                ax.plot(
                    wavelengths_nm,
                    reflectance_contrast(r[i], r_sub),
                    color=cmap(i / (len(LAYERS) - 1)),
                    lw=1.0,
                    label=f"{nl}L" if (row, col) == (0, 0) else None,
                )
            ax.axhline(0, color="0.6", lw=0.5)
            ax.set_title(f"{mat} / {oxide:g} nm SiO2", fontsize=9)
            if col == 0:
                ax.set_ylabel("contrast C = R / R_sub - 1")
            if row == len(OXIDES_NM) - 1:
                ax.set_xlabel("wavelength (nm)")
    fig.legend(loc="outside right center", fontsize=8, title="layers")
    fig.suptitle(
        "Optical contrast of 1-10 layer flakes on SiO2/Si (TMM, normal incidence, unpolarised)"
    )

    save_fig(fig, path)


ILLUMINANTS = ("D65", "A")


def color_table(backend=None):
    """{(material, oxide, illuminant): (substrate rgb [3], flake rgb [10, 3], dE [10])}."""
    from qupaint.color import delta_e, srgb_encode, stack_color, xyz_to_lab, xyz_to_linear_srgb

    def rgb_lab(xyz, ill):
        rgb = np.clip(srgb_encode(np.clip(xyz_to_linear_srgb(xyz), 0.0, 1.0)), 0.0, 1.0)
        return rgb, xyz_to_lab(xyz, white=ill)

    out = {}
    for oxide in OXIDES_NM:
        for ill in ILLUMINANTS:
            sub_rgb, sub_lab = rgb_lab(
                stack_color([("SiO2", oxide)], illuminant=ill, space="xyz", backend=backend), ill
            )
            for mat in MATERIALS:
                xyz = np.stack(
                    [
                        stack_color(
                            flake_layers(mat, nl, oxide),
                            illuminant=ill,
                            space="xyz",
                            backend=backend,
                        )
                        for nl in LAYERS
                    ]
                )
                rgb, lab = rgb_lab(xyz, ill)
                out[(mat, oxide, ill)] = (sub_rgb, rgb, delta_e(lab, sub_lab[None, :]))
    return out


def write_color_csv(table, path: Path) -> None:
    def rows():
        for (mat, oxide, ill), (sub, rgb, de) in table.items():
            yield [mat, oxide, ill, 0, *(f"{v:.4f}" for v in sub), "0.00"]
            for i, nl in enumerate(LAYERS):
                yield [mat, oxide, ill, nl, *(f"{v:.4f}" for v in rgb[i]), f"{de[i]:.2f}"]

    header = [
        "material",
        "oxide_nm",
        "illuminant",
        "layers",
        "srgb_r",
        "srgb_g",
        "srgb_b",
        "delta_e_vs_substrate",
    ]
    write_rows(path, header, rows())


def plot_colors(table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(ox, ill) for ox in OXIDES_NM for ill in ILLUMINANTS]
    fig, axes = plt.subplots(2, 2, figsize=(15, 9.5), constrained_layout=True)
    for ax, (oxide, ill) in zip(axes.flat, panels, strict=True):
        img = np.zeros((len(MATERIALS), len(LAYERS) + 1, 3))
        for r, mat in enumerate(MATERIALS):
            sub, rgb, de = table[(mat, oxide, ill)]
            img[r, 0] = sub
            img[r, 1:] = rgb
            for c in range(len(LAYERS)):
                lum = 0.2126 * rgb[c, 0] + 0.7152 * rgb[c, 1] + 0.0722 * rgb[c, 2]
                ax.text(
                    c + 1,
                    r,
                    f"{de[c]:.1f}",
                    ha="center",
                    va="center",
                    fontsize=7.5,
                    color="black" if lum > 0.45 else "white",
                )
        ax.imshow(img, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(len(LAYERS) + 1), ["sub", *[f"{n}L" for n in LAYERS]])
        ax.set_yticks(range(len(MATERIALS)), MATERIALS)
        ax.set_title(
            f"{oxide:g} nm SiO2/Si, illuminant {ill} (numbers: dE76 vs substrate)", fontsize=10
        )
    fig.suptitle("Rendered colour of 1-10 layer flakes (TMM + CIE 1931, sRGB, no white balance)")

    save_fig(fig, path)


#: median per-channel contrast C = I/I_sub - 1 of 1-4 layer graphene on ~90 nm SiO2, measured
#: by qupaint (``qupaint eval crops``) on the 766 labelled graphene crops of the 2DMatGMM
#: data set (Uslu et al., Mach. Learn.: Sci. Technol. 5, 015027 (2024), MIT licence; a DFK
#: 33UX174 camera behind a Nikon microscope with a halogen lamp)
MEASURED_GRAPHENE_90NM = {
    1: (-0.1346, -0.1354, -0.0615),
    2: (-0.2453, -0.2549, -0.1391),
    3: (-0.3455, -0.3542, -0.1825),
    4: (-0.4314, -0.4465, -0.2305),
}


def camera_contrast(path_csv: Path, path_png: Path, max_layers: int = 6) -> None:
    """Per-channel contrast against layer number: the uncalibrated sRGB model (D65, nominal
    90 nm) and a camera calibrated on the measured 1-2 layer contrasts, with the measured
    1-4 layer values (3-4 layers are held out of the calibration)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qupaint.color import channel_contrast
    from qupaint.color.calibrate import fit_camera

    fit = fit_camera([("graphene", n, MEASURED_GRAPHENE_90NM[n]) for n in (1, 2)],
                     oxide_nm=(60, 120))  # fmt: skip
    layers = np.arange(1, max_layers + 1)
    models = {
        "sRGB D65, 90 nm (uncalibrated)": channel_contrast("graphene", layers, 90.0),
        f"calibrated camera, {fit.oxide_nm:.1f} nm": channel_contrast(
            "graphene", layers, fit.oxide_nm, fit.camera
        ),
    }
    measured = np.array([MEASURED_GRAPHENE_90NM[n] for n in sorted(MEASURED_GRAPHENE_90NM)])
    rows = []
    for name, c in models.items():
        rows += [[name, int(n), *(f"{v:.4f}" for v in c[i])] for i, n in enumerate(layers)]
    rows += [["measured (2DMatGMM crops)", n, *(f"{v:.4f}" for v in measured[n - 1])]
             for n in range(1, len(measured) + 1)]  # fmt: skip
    write_rows(path_csv, ["model", "layers", "C_R", "C_G", "C_B"], rows)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharey=True, constrained_layout=True)
    for ch, (ax, color) in enumerate(zip(axes, ("tab:red", "tab:green", "tab:blue"), strict=True)):
        for (name, c), ls in zip(models.items(), ("--", "-"), strict=True):
            ax.plot(layers, c[:, ch], ls, color=color, label=name)
        ax.plot(np.arange(1, len(measured) + 1), measured[:, ch], "o", color="k",
                label="measured (1-2 L calibrate, 3-4 L held out)")  # fmt: skip
        ax.set_title(f"{'RGB'[ch]} channel")
        ax.set_xlabel("layers")
        ax.axhline(0, color="0.7", lw=0.5)
    axes[0].set_ylabel("contrast C = I / I_sub - 1")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Graphene on SiO2/Si: per-channel contrast ({fit.camera.describe()})", fontsize=9)
    save_fig(fig, path_png)

