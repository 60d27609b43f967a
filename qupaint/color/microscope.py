"""The microscope an image was taken on: its camera, the scale, and what its calibration chip
said. :meth:`Microscope.load` is the one place a camera preset or file is read.

A camera file (``qupaint calibrate --out camera.json``, or a preset shipped in
``qupaint/color/cameras/``) holds the :class:`~qupaint.color.camera.Camera` under
``"camera"`` and, beside it, what was measured with it: ``oxide_nm`` (the calibration
chip's SiO2), ``um_per_px`` (the image scale) and ``response`` (the per-channel response
exponents of its settings). The camera's lamp is the illuminant of every colour computed
through it.

>>> m = Microscope.load("2dmatgmm")
>>> from qupaint.constants import REFERENCE_UM_PER_PX
>>> m.um_per_px == REFERENCE_UM_PER_PX, m.oxide_nm, m.oxide_prior_nm
(True, None, 92.94)
>>> Microscope.load(None).camera is None
True
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

from qupaint._io import write_json
from qupaint.color.camera import PRESETS, Camera, preset_file

__all__ = ["Microscope"]


def _opt_float(d: dict, key: str, where: str) -> float | None:
    v = d.get(key)
    if v is None:
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"camera: {where}: {key} must be a number; got {d[key]!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"camera: {where}: {key} must be finite; got {v}")
    return v


@dataclass(frozen=True)
class Microscope:
    """A microscope: camera, image scale and its calibration's oxide and response.

    Parameters
    ----------
    camera : Camera or None
        What the pipeline sees through; None: each tool's default.
    oxide_nm : float or None
        SiO2 thickness (nm) of the chip the camera was calibrated on, when the user's own
        calibration states it (a file from ``qupaint calibrate``): the chips imaged with it
        are taken to share it.
    um_per_px : float or None
        Image scale (µm per pixel), > 0.
    response : tuple of 3 floats or None
        Per-channel response exponents (R, G, B) of the camera's settings, from
        ``qupaint calibrate --images``; the detector's prior for them.
    oxide_prior_nm : float or None
        A preset's calibration chip (nm), or a calibration that knows the oxide only roughly
        (``qupaint calibrate --images`` without layer numbers): a prior for the fitted oxide,
        never taken as the user's chip.
    oxide_sd_nm : float or None
        That prior's width (nm), when the calibration measured it; the detector's default
        otherwise.
    name : str or None
        The preset name or file path it was loaded from.
    segmenter : str or None
        Weights of the thin-flake segmenter adapted to this microscope (``qupaint calibrate
        --images --masks`` writes them beside the camera file), for the detector's
        ``learned`` and ``fused`` methods; a relative path in a file is taken from the
        file's folder.
    """

    camera: Camera | None = None
    oxide_nm: float | None = None
    um_per_px: float | None = None
    response: tuple[float, float, float] | None = None
    oxide_prior_nm: float | None = None
    name: str | None = None
    oxide_sd_nm: float | None = None
    segmenter: str | None = None

    def __post_init__(self):
        if self.um_per_px is not None and not (math.isfinite(self.um_per_px)
                                               and self.um_per_px > 0):  # fmt: skip
            raise ValueError(f"um_per_px must be > 0 (µm per pixel); got {self.um_per_px}")
        if self.response is not None:
            resp = tuple(float(v) for v in self.response)
            if len(resp) != 3:
                raise ValueError(f"response: three exponents (R, G, B); got {self.response}")
            object.__setattr__(self, "response", resp)

    @classmethod
    def load(cls, spec: str | os.PathLike | Microscope | None) -> Microscope:
        """A microscope from a preset name (:data:`~qupaint.color.camera.PRESETS`), a camera
        JSON file, or a :class:`Microscope` (returned as it is); None gives ``Microscope()``.
        The file is read once.

        Raises
        ------
        ValueError
            For an unknown preset, a missing or malformed file.
        """
        if spec is None:
            return cls()
        if isinstance(spec, Microscope):
            return spec
        if not isinstance(spec, (str, os.PathLike)):
            raise TypeError(f"camera: a preset name or a JSON path; got {type(spec).__name__}")
        name = str(spec)
        if name == "srgb":  # a preset without a file: it states nothing beside the camera
            return cls(camera=Camera.preset("srgb"), name=name)
        preset = name in PRESETS
        path = preset_file(name) if preset else Path(spec)
        if not path.is_file():
            raise ValueError(f"camera: no such file {name!r} (nor a preset: "
                             f"{sorted(PRESETS)})")  # fmt: skip
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"camera: {path} is not JSON ({exc})") from exc
        if not isinstance(d, dict):
            raise ValueError(f"camera: {path} holds no camera (expected a JSON object)")
        mic = cls.from_dict(d, name, preset)
        if mic.segmenter is not None and not Path(mic.segmenter).is_absolute():
            mic = replace(mic, segmenter=str(path.parent / mic.segmenter))
        if mic.segmenter is not None and not Path(mic.segmenter).is_file():
            raise ValueError(f"camera: {path} names segmenter weights {mic.segmenter} that do "
                             "not exist (rerun `qupaint calibrate --images`, or remove the "
                             "\"segmenter\" entry)")  # fmt: skip
        return mic

    @classmethod
    def from_dict(cls, d: dict, name: str = "camera", preset: bool = False) -> Microscope:
        """A microscope from a camera file's contents (:meth:`to_dict`'s form, or what
        ``qupaint calibrate`` writes); ``name`` names it in errors. A preset's oxide is its
        calibration chip's, so it becomes the prior (``oxide_prior_nm``), not the oxide; so
        does a file's own ``oxide_prior_nm`` (what ``qupaint calibrate --images`` writes when
        the masks carry no layer numbers: the oxide is then known only roughly)."""
        camera = Camera.from_dict(d.get("camera", d))
        oxide = _opt_float(d, "oxide_nm", name)
        prior = _opt_float(d, "oxide_prior_nm", name)
        resp = d.get("response")
        return cls(
            camera=camera,
            oxide_nm=None if preset else oxide,
            um_per_px=_opt_float(d, "um_per_px", name),
            response=None if resp is None else tuple(float(v) for v in resp),
            oxide_prior_nm=oxide if preset else prior,
            name=name,
            oxide_sd_nm=None if preset or prior is None else _opt_float(d, "oxide_sd_nm", name),
            segmenter=None if d.get("segmenter") is None else str(d["segmenter"]),
        )

    def oxide_or(self, oxide_nm: float | None, default: float = 285.0) -> float:
        """An explicit ``oxide_nm``, else the calibrated :attr:`oxide_nm`, else ``default``."""
        if oxide_nm is not None:
            return float(oxide_nm)
        return self.oxide_nm if self.oxide_nm is not None else default

    def scale_or(self, um_per_px: float | None) -> float | None:
        """An explicit ``um_per_px``, else :attr:`um_per_px`."""
        return float(um_per_px) if um_per_px is not None else self.um_per_px

    def to_dict(self) -> dict:
        """The JSON form :meth:`load` reads back (the camera under ``"camera"``)."""
        d: dict = {"camera": None if self.camera is None else self.camera.to_dict()}
        for key in ("oxide_nm", "um_per_px", "oxide_prior_nm", "oxide_sd_nm"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        if self.response is not None:
            d["response"] = list(self.response)
        if self.segmenter is not None:
            d["segmenter"] = self.segmenter
        return d

    def save(self, path: str | os.PathLike) -> None:
        """Write it as a camera file (atomically); :meth:`load` reads it back."""
        if self.camera is None:
            raise ValueError("camera: a Microscope without a camera cannot be saved")
        write_json(path, self.to_dict())
