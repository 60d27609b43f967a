"""``make demo`` / ``qupaint demo``: the main job on built-in defaults, one module a section.

- :mod:`~qupaint.demo.optics`: for every material, 1-10 layers on 90 nm and 285 nm SiO2/Si
  at normal incidence (unpolarised, 400-700 nm): ``flake_contrast.{csv,png}``, the
  reflectance contrast ``C = R_flake / R_substrate - 1`` (negative for a flake darker than
  its substrate, the detector's sign); ``flake_colors.{csv,png}``, the rendered sRGB colour of
  substrate and flakes under D65 daylight and illuminant A (halogen lamp) and the CIELAB
  contrast Delta-E (CIE76) vs the substrate, with Lab relative to the illuminant's white
  (colours without white balance: under A the whole chip looks warm, as it does through a
  halogen microscope before the camera's white balance); ``camera_contrast.{csv,png}``, a
  camera calibrated on real graphene;
- :mod:`~qupaint.demo.synthia`: ``synthia_samples.png`` and ``synthia_vs_real.png``;
- :mod:`~qupaint.demo.real`: the detector on real chips, and a chip scan;
- :mod:`~qupaint.demo.model`: the compact model's answers, and the whole pipeline on CPU.

:func:`run` does them all and returns the files by name (:class:`DemoOutputs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from qupaint.demo.model import compact_answers, pipeline
from qupaint.demo.optics import (
    camera_contrast,
    color_table,
    contrast_table,
    plot_colors,
    plot_contrast,
    write_color_csv,
    write_csv,
)
from qupaint.demo.real import chip_scan, real_micrographs
from qupaint.demo.synthia import synthia_contact_sheet, synthia_vs_real
from qupaint.optics import DEFAULT_WAVELENGTHS_NM

__all__ = ["DemoOutputs", "chip_scan", "compact_answers", "pipeline", "real_micrographs", "run"]


@dataclass
class DemoOutputs:
    """What :func:`run` wrote, by name; :meth:`paths` lists them all in order."""

    contrast_csv: Path
    contrast_png: Path
    colors_csv: Path
    colors_png: Path
    synthia_samples: Path
    synthia_vs_real: Path
    camera_csv: Path
    camera_png: Path
    real: list[Path] = field(default_factory=list)
    chip: list[Path] = field(default_factory=list)
    compact: list[Path] = field(default_factory=list)
    pipeline: list[Path] = field(default_factory=list)

    @classmethod
    def under(cls, out: Path) -> DemoOutputs:
        """The single files' names under the folder ``out``."""
        return cls(out / "flake_contrast.csv", out / "flake_contrast.png",
                   out / "flake_colors.csv", out / "flake_colors.png",
                   out / "synthia_samples.png", out / "synthia_vs_real.png",
                   out / "camera_contrast.csv", out / "camera_contrast.png")  # fmt: skip

    def paths(self) -> list[Path]:
        """Every file and folder written, in the order they were."""
        out: list[Path] = []
        for f in fields(self):
            v = getattr(self, f.name)
            out += v if isinstance(v, list) else [v]
        return out


def run(
    out_dir: str | Path = "demo_out",
    backend: str | None = None,
    pipeline_steps: int = 120,
    log=None,
) -> DemoOutputs:
    """Every section of the demo into ``out_dir``; ``pipeline_steps`` 0 skips the tiny
    model's training."""
    out = Path(out_dir)
    o = DemoOutputs.under(out)
    wl = DEFAULT_WAVELENGTHS_NM
    table = contrast_table(wl, backend)
    write_csv(table, wl, o.contrast_csv)
    plot_contrast(table, wl, o.contrast_png)
    colors = color_table(backend)
    write_color_csv(colors, o.colors_csv)
    plot_colors(colors, o.colors_png)
    synthia_contact_sheet(o.synthia_samples)
    synthia_vs_real(o.synthia_vs_real)
    camera_contrast(o.camera_csv, o.camera_png)
    o.real = real_micrographs(out, log)
    o.chip = chip_scan(out, log)
    o.compact = compact_answers(out / "compact", log=log)
    if pipeline_steps:
        o.pipeline = pipeline(out / "pipeline", pipeline_steps, log)
    return o
