"""The layer colour model: predicted colours of 1..N layers of a material on SiO2/Si.

One model serves three stages: Synthia paints flakes with it, QMat-Instruct explains layer
numbers with it, and the physics detector classifies flakes by it. Colours are linear RGB
from the fused TMM + colour kernel (:func:`qupaint.color.stack_color`, QuPAINT Eq. 21-22)
seen through a :class:`~qupaint.color.Camera`: by default the CIE observer in linear sRGB
under ``illuminant`` (``Camera.srgb``), or a lab's calibrated camera. A camera's white
balance is a per-channel gain g (QuPAINT Eq. 16), so a flake of L layers is expected at
g * c_L and the substrate at g * c_0; both are compared in CIELAB (camera RGB read as linear
sRGB, as the pixels of its images are).

Optical contrast, per channel: ``C = I_flake / I_substrate - 1`` (:func:`channel_contrast`),
the definition of the MaskTerial and 2DMatGMM detectors, so a darker flake has C < 0. The
demo's reflectance contrast ``(R_sub - R_flake) / R_sub`` (Blake et al. 2007) is its
negative, per wavelength rather than per channel.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from qupaint.color.camera import Camera
from qupaint.color.convert import linear_srgb_to_lab
from qupaint.color.stack import stack_color
from qupaint.optics import flake_layers, get_material

__all__ = [
    "LayerModel",
    "layer_model",
    "flake_color_table",
    "tmm_substrate_color",
    "channel_contrast",
]


def _lamp(illuminant, camera):
    """The illuminant of a colour seen without a camera (default D65). A camera brings its
    own lamp (``camera.illuminant``), so with one a separate illuminant is refused."""
    if camera is not None:
        if illuminant is not None:
            raise TypeError("illuminant: a camera brings its own lamp (camera.illuminant); "
                            "give an illuminant only without a camera")  # fmt: skip
        return None
    return "D65" if illuminant is None else illuminant


def _rgb(layers, illuminant, camera, **kw) -> np.ndarray:
    """Linear RGB of stacks through ``camera`` (default: sRGB under ``illuminant``)."""
    if camera is None:
        return np.asarray(stack_color(layers, illuminant=illuminant, space="linear_srgb", **kw))
    return np.asarray(stack_color(layers, camera=camera, **kw))


def tmm_substrate_color(
    oxide_nm: float, illuminant: Any = None, wavelengths_nm: Any = None,
    camera: Camera | None = None,
) -> np.ndarray:  # fmt: skip
    """c0 = Phi(R_sub(lambda), I(lambda)): linear RGB [3] of bare SiO2/Si (QuPAINT Alg. 1
    lines 2-3, Eq. 15); ``oxide_nm=0`` is bare Si. Through ``camera`` (its lamp is the
    illuminant), else linear sRGB under ``illuminant`` (default D65)."""
    illuminant = _lamp(illuminant, camera)
    kw = {} if wavelengths_nm is None else {"wavelengths_nm": wavelengths_nm}
    layers = [("SiO2", float(oxide_nm))] if oxide_nm > 0 else []
    return _rgb(layers, illuminant, camera, **kw)


def flake_color_table(
    material: str, max_layers: int, oxide_nm: float, illuminant: Any = None,
    camera: Camera | None = None,
) -> np.ndarray:  # fmt: skip
    """Linear RGB of 1..max_layers layers of ``material`` on the oxide, [max_layers + 1, 3]
    (row 0 unused), through ``camera`` or under ``illuminant`` (not both): layers 1-3 use
    layer-resolved n,k (one call each), the rest the bulk table in one batched fused-kernel
    call."""
    illuminant = _lamp(illuminant, camera)
    table = np.zeros((max_layers + 1, 3))
    for nl in range(1, min(3, max_layers) + 1):
        table[nl] = _rgb(flake_layers(material, nl, oxide_nm), illuminant, camera)
    if max_layers > 3:
        t = np.arange(4, max_layers + 1) * get_material(material).monolayer_nm
        layers = [(material, t)] + ([("SiO2", oxide_nm)] if oxide_nm > 0 else [])
        table[4:] = _rgb(layers, illuminant, camera)
    return table


def channel_contrast(
    material: str,
    layers: Any,
    oxide_nm: float,
    camera: Camera | None = None,
    illuminant: Any = None,
) -> np.ndarray:
    """Per-channel optical contrast ``C = I_flake / I_substrate - 1`` of flakes of
    ``layers`` layers on ``oxide_nm`` SiO2/Si, as ``camera`` records it: [len(layers), 3]
    (R, G, B).

    ``camera`` defaults to the CIE observer in linear sRGB under ``illuminant`` (D65 by
    default; a camera brings its own lamp, so give one or the other). Its response is
    applied to both intensities, so C is the contrast of the pixel values the camera
    writes. A darker flake has C < 0 (the MaskTerial / 2DMatGMM convention;
    ``(I_sub - I_flake) / I_sub`` is -C).

    Examples
    --------
    >>> from qupaint.color import Camera, channel_contrast
    >>> cam = Camera.gaussian((610, 540, 465), (60, 60, 60), illuminant="A")
    >>> channel_contrast("graphene", [1, 2], 90.0, cam).round(3)
    array([[-0.134, -0.137, -0.086],
           [-0.256, -0.258, -0.159]])
    """
    counts = np.atleast_1d(np.asarray(layers))
    if counts.size == 0 or counts.ndim != 1:
        raise ValueError("layers: give one or more layer counts, e.g. [1, 2, 3]")
    if not np.all(counts == np.round(counts)) or np.any(counts < 1):
        raise ValueError(f"layers: layer counts must be positive integers; got {layers!r}")
    if not (np.isfinite(oxide_nm) and oxide_nm >= 0):
        raise ValueError(f"oxide_nm must be a finite thickness >= 0 nm; got {oxide_nm}")
    illuminant = _lamp(illuminant, camera)
    table = flake_color_table(material, int(counts.max()), float(oxide_nm), illuminant, camera)
    sub = tmm_substrate_color(float(oxide_nm), illuminant, camera=camera)
    resp = camera.response if camera is not None else np.asarray
    return resp(table[counts.astype(int)]) / resp(sub)[None, :] - 1.0


class LayerModel:
    """TMM colours of 1..``max_layers`` layers of ``material`` on ``oxide_nm`` SiO2 / Si,
    through ``camera`` (its lamp is the illuminant), else linear sRGB under ``illuminant``
    (default D65).

    Attributes
    ----------
    linear : [max_layers, 3] linear RGB of 1..max_layers layers (row k = k + 1 layers)
    substrate : [3] linear RGB of the bare substrate

    Examples
    --------
    >>> m = layer_model("graphene", 285.0, max_layers=5)
    >>> lab = m.lab()                       # row 0 substrate, row k = k layers
    >>> layers, dist = m.match(lab[2], lab)
    >>> int(layers), float(dist)
    (2, 0.0)
    """

    def __init__(
        self, material: str, oxide_nm: float, illuminant: Any = None, max_layers: int = 30,
        camera: Camera | None = None,
    ):  # fmt: skip
        self.material = get_material(material).name
        self.oxide_nm = float(oxide_nm)
        illuminant = _lamp(illuminant, camera)
        self.illuminant = illuminant
        self.max_layers = int(max_layers)
        self.camera = camera
        table = flake_color_table(self.material, self.max_layers, oxide_nm, illuminant, camera)
        self.linear = table[1:]
        self.substrate = np.asarray(
            tmm_substrate_color(oxide_nm, illuminant, camera=camera), dtype=np.float64
        )

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
    material: str, oxide_nm: float, illuminant: Any = None, max_layers: int = 30,
    camera: Camera | None = None,
) -> LayerModel:  # fmt: skip
    """Cached :class:`LayerModel` (one TMM evaluation per material / oxide / illuminant /
    camera)."""
    return LayerModel(material, oxide_nm, illuminant, max_layers, camera)
