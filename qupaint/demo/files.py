"""The demo's file writers: CSV rows and matplotlib figures, each written atomically."""

from __future__ import annotations

import csv
from pathlib import Path

from qupaint._io import atomic_open

__all__ = ["save_fig", "write_rows"]


def write_rows(path: Path, header: list[str], rows) -> None:
    """CSV with a header row, written atomically (temp file + rename)."""
    with atomic_open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def save_fig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, dpi=110, format="png")
    plt.close(fig)

