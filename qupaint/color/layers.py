"""The layer colour model: predicted colours of 1..N layers of a material on SiO2/Si.

One model serves three stages: Synthia paints flakes with it, QMat-Instruct explains layer
numbers with it, and the physics detector classifies flakes by it. Colours are linear sRGB
from the fused TMM + CIE kernel (:func:`qupaint.color.stack_color`, QuPAINT Eq. 21-22). A
lab camera's white balance is a per-channel gain g (QuPAINT Eq. 16), so a flake of L layers
is expected at g * c_L and the substrate at g * c_0; both are compared in CIELAB.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from qupaint.color.convert import linear_srgb_to_lab
from qupaint.color.stack import stack_color
from qupaint.optics import flake_layers, get_material

__all__ = ["LayerModel", "layer_model", "flake_color_table", "tmm_substrate_color"]


def tmm_substrate_color(
    oxide_nm: float, illuminant: Any = "D65", wavelengths_nm: Any = None
) -> np.ndarray:
    """c0 = Phi(R_sub(lambda), I(lambda)): linear sRGB [3] of bare SiO2/Si (QuPAINT Alg. 1
    lines 2-3, Eq. 15); ``oxide_nm=0`` is bare Si."""
    kw = {} if wavelengths_nm is None else {"wavelengths_nm": wavelengths_nm}
    layers = [("SiO2", float(oxide_nm))] if oxide_nm > 0 else []
    return np.asarray(stack_color(layers, illuminant=illuminant, space="linear_srgb", **kw))


def flake_color_table(
    material: str, max_layers: int, oxide_nm: float, illuminant: Any
) -> np.ndarray:
    """Linear sRGB of 1..max_layers layers of ``material`` on the oxide, [max_layers + 1, 3]
    (row 0 unused): layers 1-3 use layer-resolved n,k (one call each), the rest the bulk
    table in one batched fused-kernel call."""
    table = np.zeros((max_layers + 1, 3))
    for nl in range(1, min(3, max_layers) + 1):
        table[nl] = np.asarray(
            stack_color(
                flake_layers(material, nl, oxide_nm), illuminant=illuminant, space="linear_srgb"
            )
        )
    if max_layers > 3:
        t = np.arange(4, max_layers + 1) * get_material(material).monolayer_nm
        layers = [(material, t)] + ([("SiO2", oxide_nm)] if oxide_nm > 0 else [])
        table[4:] = np.asarray(stack_color(layers, illuminant=illuminant, space="linear_srgb"))
    return table


class LayerModel:
    """TMM colours of 1..``max_layers`` layers of ``material`` on ``oxide_nm`` SiO2 / Si.

    Attributes
    ----------
    linear : [max_layers, 3] linear sRGB of 1..max_layers layers (row k = k + 1 layers)
    substrate : [3] linear sRGB of the bare substrate

    Examples
    --------
    >>> m = layer_model("graphene", 285.0, max_layers=5)
    >>> lab = m.lab()                       # row 0 substrate, row k = k layers
    >>> layers, dist = m.match(lab[2], lab)
    >>> int(layers), float(dist)
    (2, 0.0)
    """

    def __init__(
        self, material: str, oxide_nm: float, illuminant: Any = "D65", max_layers: int = 30
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
        """[1 + max_layers, 3] CIELAB (D65) of :meth:`colors`."""
        return linear_srgb_to_lab(self.colors(gain))

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
    material: str, oxide_nm: float, illuminant: Any = "D65", max_layers: int = 30
) -> LayerModel:
    """Cached :class:`LayerModel` (one TMM evaluation per material / oxide / illuminant)."""
    return LayerModel(material, oxide_nm, illuminant, max_layers)
