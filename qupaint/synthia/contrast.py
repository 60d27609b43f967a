"""Predicted colour and contrast of 1..N layers of a material on SiO2/Si (the layer model).

The same model serves three places: Synthia paints flakes with it, QMat-Instruct explains
layer numbers with it, and the physics detector classifies flakes by it. A lab camera's
white balance is a per-channel gain g (QuPAINT Eq. 16), so a flake of L layers is expected
at g * c_L and the substrate at g * c_0 (linear sRGB); both are compared in CIELAB.
"""

from __future__ import annotations

import functools

import numpy as np

from qupaint.color import xyz_to_lab
from qupaint.color.convert import SRGB_TO_XYZ
from qupaint.optics import get_material
from qupaint.synthia.render import flake_color_table
from qupaint.synthia.whitebalance import tmm_substrate_color

__all__ = ["LayerModel", "layer_model", "linear_to_lab"]


def linear_to_lab(linear: np.ndarray) -> np.ndarray:
    """Linear sRGB [..., 3] -> CIELAB (D65), float64 numpy."""
    return np.asarray(xyz_to_lab(np.asarray(linear, dtype=np.float64) @ SRGB_TO_XYZ.T))


class LayerModel:
    """TMM colours of 1..``max_layers`` layers of ``material`` on ``oxide_nm`` SiO2 / Si.

    Attributes
    ----------
    linear : [max_layers, 3] linear sRGB of 1..max_layers layers (row k = k + 1 layers)
    substrate : [3] linear sRGB of the bare substrate
    """

    def __init__(
        self, material: str, oxide_nm: float, illuminant: str = "D65", max_layers: int = 30
    ):
        self.material = get_material(material).name
        self.oxide_nm = float(oxide_nm)
        self.illuminant = illuminant
        self.max_layers = int(max_layers)
        self.linear = flake_color_table(self.material, self.max_layers, oxide_nm, illuminant)[1:]
        self.substrate = np.asarray(tmm_substrate_color(oxide_nm, illuminant), dtype=np.float64)

    def colors(self, gain=(1.0, 1.0, 1.0)) -> np.ndarray:
        """[1 + max_layers, 3] linear sRGB under gain g: row 0 substrate, row k = k layers."""
        g = np.asarray(gain, dtype=np.float64)
        return np.vstack([self.substrate[None], self.linear]) * g

    def lab(self, gain=(1.0, 1.0, 1.0)) -> np.ndarray:
        """[1 + max_layers, 3] CIELAB of :meth:`colors`."""
        return linear_to_lab(self.colors(gain))

    @staticmethod
    def match(lab: np.ndarray, table_lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest layer count for measured CIELAB colours ``lab`` [..., 3].

        ``table_lab`` is :meth:`lab` (row 0, the substrate, is not a candidate). Returns
        (layers [...] int, distance [...] CIE76 Delta-E to the predicted colour).
        """
        d = np.linalg.norm(np.asarray(lab)[..., None, :] - table_lab[1:], axis=-1)
        k = np.argmin(d, axis=-1)
        return k + 1, np.take_along_axis(d, k[..., None], axis=-1)[..., 0]


@functools.lru_cache(maxsize=64)
def layer_model(
    material: str, oxide_nm: float, illuminant: str = "D65", max_layers: int = 30
) -> LayerModel:
    """Cached :class:`LayerModel` (one TMM evaluation per material / oxide / illuminant)."""
    return LayerModel(material, oxide_nm, illuminant, max_layers)
