"""Check a qupaint built without CUDA (QUPAINT_CUDA=OFF), installed under SITE: it imports,
says it has no CUDA kernels, and its CPU kernels agree with the reference.

Usage: python scripts/check_nocuda.py SITE   (run by `make check-nocuda`, which CI runs)
"""

from __future__ import annotations

import sys


def main(site: str) -> int:
    # the development install's editable finder would shadow SITE: drop it for this process
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]
    sys.path.insert(0, site)
    import numpy as np

    import qupaint
    from qupaint import _backend
    from qupaint.color import srgb_to_lab, stack_color
    from qupaint.optics import flake_layers, stack_reflectance

    assert qupaint.__file__.startswith(site), f"imported {qupaint.__file__}, not {site}"
    C = _backend._compiled()
    assert C is not None and not C.has_cuda(), "this build has CUDA kernels"
    ok, why = _backend.available("cuda", "cuda")
    assert not ok and "no CUDA kernels" in why, why
    layers = flake_layers("MoS2", 1, 285.0)
    cpu = stack_reflectance(layers, backend="cpu")
    ref = stack_reflectance(layers, backend="reference")
    assert np.abs(cpu - ref).max() < 1e-10
    assert (
        np.abs(stack_color(layers, backend="cpu") - stack_color(layers, backend="reference")).max()
        < 1e-10
    )
    rgb = np.random.default_rng(0).random((100, 3))
    assert (
        np.abs(srgb_to_lab(rgb, backend="cpu") - srgb_to_lab(rgb, backend="reference")).max() < 1e-9
    )
    print(f"no-CUDA build OK: {qupaint.__file__} (cuda: {why})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
