"""Rendering through a calibrated camera, and calibrating one.

``stack_color-camera-1e6x301-f32``: 1e6 MoS2 flakes on 285 nm SiO2 through a Gaussian camera
(the fused kernel with the camera's weights), against today's sRGB path on the same input;
with an illumination NA each quadrature angle is one more stack, so NA 0.3 (4 angles) costs
about 4x. ``fit_camera``: the oxide and a Gaussian camera from two graphene flakes over a
60-320 nm oxide range (the issue's target: well under a second).
"""

from __future__ import annotations

import numpy as np
import pytest

from qupaint.color import Camera, channel_contrast, stack_color
from qupaint.color.calibrate import fit_camera
from qupaint.optics import DEFAULT_WAVELENGTHS_NM as WL

FLAKES = 1_000_000
GROUP = "stack_color-camera-1e6x301-f32"
CAM = Camera.gaussian((610, 540, 465), (80, 80, 80), illuminant="A")


@pytest.fixture(scope="module")
def thickness():
    return np.random.default_rng(1).uniform(0.6, 40.0, FLAKES).astype(np.float32)


def test_camera_na0(peer, thickness):
    layers = [("MoS2", thickness), ("SiO2", 285.0)]
    peer(
        GROUP,
        "camera-na0",
        lambda: stack_color(layers, WL, dtype="float32", camera=CAM),
        ours=True,
        work=FLAKES,
        rounds=3,
    )


def test_srgb_fused(peer, thickness):
    layers = [("MoS2", thickness), ("SiO2", 285.0)]
    peer(
        GROUP,
        "srgb-fused (today)",
        lambda: stack_color(layers, WL, dtype="float32"),
        work=FLAKES,
        rounds=3,
    )


def test_camera_na03(peer, thickness):
    layers = [("MoS2", thickness[: FLAKES // 4]), ("SiO2", 285.0)]
    cam = CAM.replace(na=0.3)
    peer(
        GROUP,
        "camera-na0.3-4angles",
        lambda: stack_color(layers, WL, dtype="float32", camera=cam),
        scale=4.0,
        work=FLAKES,
        rounds=3,
    )


def test_fit_camera(peer):
    C = channel_contrast("graphene", [1, 2], 90.0, CAM.replace(na=0.2))
    obs = [("graphene", 1, C[0]), ("graphene", 2, C[1])]
    peer(
        "fit_camera-2flakes-60-320nm",
        "fit_camera",
        lambda: fit_camera(obs, oxide_nm=(60, 320)),
        ours=True,
        work=1,
        rounds=5,
    )
