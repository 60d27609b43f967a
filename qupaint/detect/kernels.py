"""The detector's pixel and window kernels, each a C++ kernel (``csrc/cpu/detect.cpp``,
through :mod:`qupaint._C`) with its numpy reference registered beside it
(:mod:`qupaint._backend`: ``backend="cpu"`` or ``"reference"``); the reference is the
truth, and the tests hold the two equal bit for bit.

=============================  ===========================  =================================
op                             Python entry                 what it computes
=============================  ===========================  =================================
``detect_flags``               :func:`~qupaint.detect.pieces.pixel_flags`  per-pixel bits
``detect_open``                :func:`open_bit`             3x3 opening of one flag bit
``detect_label``               :func:`label_regions`        connected regions of equal value
``detect_label_medians``       :func:`label_medians`        median contrast per label
``detect_masked_median``       :func:`masked_median`        median contrast of a masked window
``detect_masked_percentiles``  :func:`masked_percentiles`   percentiles of a masked window
``detect_terrace_classes``     :func:`nearest_rungs`        nearest ladder rung per pixel
``detect_boxes``               :func:`label_boxes`          box and area per label
``detect_grow``                :func:`grow`                 a piece grown into its edges/tails
``detect_median5``             :func:`median5`              5x5 median of a class map
=============================  ===========================  =================================
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from qupaint import _backend
from qupaint.detect.ladder import rung_chi2
from qupaint.detect.morphology import dilate_cross, pad_window

__all__ = ["BRIGHT", "CAND", "CORE", "STRONG", "flag_kernel", "grow", "label_boxes",
           "label_medians", "label_regions", "masked_median", "masked_percentiles", "median5",
           "nearest_rungs", "open_bit"]  # fmt: skip

#: bits of the per-pixel flags (:func:`~qupaint.detect.pieces.pixel_flags`)
CAND, CORE, STRONG, BRIGHT = 1, 2, 4, 8


def flag_kernel(backend: str | None = None):
    """The ``detect_flags`` kernel ``fn(C, img, noise, saturation, fg_chi2, floor,
    bright_level, edge2) -> uint8 [H, W]`` of ``backend`` (default: the fastest)."""
    return _backend.select("detect_flags", "cpu", backend)[1]


def open_bit(flags: np.ndarray, bit: int, backend: str | None = None) -> np.ndarray:
    """The pixels with ``bit`` set in ``flags`` [H, W] uint8, opened with the 3x3 square
    (``ndimage.binary_opening``), bool [H, W]."""
    _, fn = _backend.select("detect_open", "cpu", backend)
    return fn(flags, bit)


@_backend.register("detect_flags", "reference")
def _flags_reference(C, img, noise, saturation, fg_chi2, floor, bright_level, edge2):
    chi_sub = ((C / noise) ** 2).sum(-1)
    strong = np.abs(C).mean(-1) >= floor
    bright = (img >= saturation).any(-1) | (C.max(-1) > bright_level)
    cand = (chi_sub > fg_chi2) & ~bright
    g2 = np.zeros(C.shape[:2], np.float32)
    for c in range(3):
        gx = ndimage.sobel(C[..., c], 1)
        gy = ndimage.sobel(C[..., c], 0)
        g2 += (gx * gx + gy * gy) / np.float32((8.0 * noise[c]) ** 2)
    core = cand & (g2 < edge2)
    return (cand * CAND | core * CORE | strong * STRONG | bright * BRIGHT).astype(np.uint8)


@_backend.register("detect_flags", "cpu")
def _flags_cpu(C, img, noise, saturation, fg_chi2, floor, bright_level, edge2):
    from qupaint import _C

    H, W = C.shape[:2]
    C = np.ascontiguousarray(C, dtype=np.float32)
    img = np.ascontiguousarray(img)
    out = np.empty((H, W), np.uint8)
    _C.detect_flags_cpu(C.ctypes.data, img.ctypes.data, H, W, [float(v) for v in noise],
                        int(saturation), float(fg_chi2), float(floor), float(bright_level),
                        float(edge2), out.ctypes.data)  # fmt: skip
    return out


@_backend.register("detect_open", "reference")
def _open_reference(flags: np.ndarray, bit: int) -> np.ndarray:
    return ndimage.binary_opening((flags & bit) > 0, structure=np.ones((3, 3), bool))


@_backend.register("detect_open", "cpu")
def _open_cpu(flags: np.ndarray, bit: int) -> np.ndarray:
    from qupaint import _C

    flags = np.ascontiguousarray(flags, dtype=np.uint8)
    out = np.empty(flags.shape, np.uint8)
    _C.detect_open3_cpu(
        flags.ctypes.data, flags.shape[0], flags.shape[1], int(bit), out.ctypes.data
    )
    return out.view(bool)


def label_regions(a: np.ndarray, conn8: bool = True, backend: str | None = None
                  ) -> tuple[np.ndarray, int]:  # fmt: skip
    """(labels int32 [H, W], n): the connected regions of the non-zero pixels of ``a`` (bool,
    uint8 or int32 [H, W]), neighbours joined only where their values are equal (the regions
    of a class map), 8- or 4-connected; numbered as ``ndimage.label`` numbers a binary
    image's (raster order of each region's first pixel). The C++ kernel, or scipy
    (``backend="reference"``)."""
    if a.ndim != 2:
        raise ValueError(f"a: a 2-D image; got shape {a.shape}")
    _, fn = _backend.select("detect_label", "cpu", backend)
    return fn(a, conn8)


@_backend.register("detect_label", "cpu")
def _label_cpu(a: np.ndarray, conn8: bool) -> tuple[np.ndarray, int]:
    from qupaint import _C

    if a.dtype == bool:
        a = a.view(np.uint8)
    elif a.dtype not in (np.uint8, np.int32):
        a = a.astype(np.int32)
    a = np.ascontiguousarray(a)
    out = np.empty(a.shape, np.int32)
    n = _C.detect_label_cpu(a.ctypes.data, a.itemsize, a.shape[0], a.shape[1], int(conn8),
                            out.ctypes.data)  # fmt: skip
    return out, int(n)


@_backend.register("detect_label", "reference")
def _label_reference(a: np.ndarray, conn8: bool) -> tuple[np.ndarray, int]:
    structure = np.ones((3, 3), bool) if conn8 else None
    out, n = np.zeros(a.shape, np.int32), 0
    for v in np.unique(a[a != 0]):  # each value's regions, then numbered by first pixel
        lab, k = ndimage.label(a == v, structure=structure)
        out[lab > 0] = lab[lab > 0] + n
        n += k
    labels, first = np.unique(out.ravel(), return_index=True)
    first = first[labels > 0]
    number = np.zeros(n + 1, np.int32)
    number[out.ravel()[np.sort(first)]] = np.arange(1, n + 1)
    return number[out], n


def label_medians(labels: np.ndarray, C: np.ndarray, ids: np.ndarray, backend: str | None = None
                  ) -> np.ndarray:  # fmt: skip
    """[len(ids), 3] float32: per label of ``ids``, numpy's median of ``C`` [H, W, 3] over its
    pixels of the int32 label image ``labels`` [H, W] (NaN for a label without a pixel): the
    C++ kernel (one pass over the image), or numpy (``backend="reference"``)."""
    if labels.ndim != 2 or C.shape != labels.shape + (3,):
        raise ValueError(f"labels [H, W] and C [H, W, 3] must match; got {labels.shape} and "
                         f"{C.shape}")  # fmt: skip
    _, fn = _backend.select("detect_label_medians", "cpu", backend)
    return fn(np.ascontiguousarray(labels, np.int32), C, np.asarray(ids, np.int64).reshape(-1))


@_backend.register("detect_label_medians", "cpu")
def _label_medians_cpu(labels, C, ids):
    from qupaint import _C

    C = np.ascontiguousarray(C, np.float32)
    ids = np.ascontiguousarray(ids)
    out = np.empty((len(ids), 3), np.float32)
    _C.detect_label_medians_cpu(labels.ctypes.data, C.ctypes.data, labels.shape[0],
                                labels.shape[1], ids.ctypes.data, len(ids),
                                out.ctypes.data)  # fmt: skip
    return out


@_backend.register("detect_label_medians", "reference")
def _label_medians_reference(labels, C, ids):
    out = np.full((len(ids), 3), np.nan, np.float32)
    for i, k in enumerate(ids):
        px = C[labels == k]
        if len(px):
            out[i] = np.median(px, axis=0)
    return out


def masked_median(C: np.ndarray, sl: tuple, mask: np.ndarray, backend: str | None = None
                  ) -> np.ndarray:  # fmt: skip
    """``np.median(C[sl][mask], axis=0)``: the median contrast per channel [3] (float32) of
    the pixels ``mask`` of the window ``sl`` of ``C`` [H, W, 3] float32 (a piece's colour):
    the C++ kernel, or numpy (``backend="reference"``); NaN for an empty mask."""
    _window_check(C, sl, mask)
    _, fn = _backend.select("detect_masked_median", "cpu", backend)
    return fn(C, sl, mask)


@_backend.register("detect_masked_median", "cpu")
def _masked_median_cpu(C: np.ndarray, sl: tuple, mask: np.ndarray) -> np.ndarray:
    from qupaint import _C

    held, window = _window_args(C, sl, mask)
    out = np.empty(3, np.float32)
    _C.detect_masked_median_cpu(*window, out.ctypes.data)
    return out


@_backend.register("detect_masked_median", "reference")
def _masked_median_reference(C: np.ndarray, sl: tuple, mask: np.ndarray) -> np.ndarray:
    px = C[sl][mask]
    return np.median(px, axis=0) if len(px) else np.full(3, np.nan, np.float32)


def masked_percentiles(C: np.ndarray, sl: tuple, mask: np.ndarray, q, backend: str | None = None
                       ) -> np.ndarray:  # fmt: skip
    """``np.percentile(C[sl][mask], q, axis=0)`` [len(q), 3] float64, exactly: the C++ kernel,
    or numpy (``backend="reference"``); NaN for an empty mask."""
    _window_check(C, sl, mask)
    _, fn = _backend.select("detect_masked_percentiles", "cpu", backend)
    return fn(C, sl, mask, np.asarray(q, np.float64).reshape(-1))


@_backend.register("detect_masked_percentiles", "cpu")
def _masked_percentiles_cpu(C, sl, mask, q):
    from qupaint import _C

    held, window = _window_args(C, sl, mask)
    frac = np.ascontiguousarray(np.true_divide(q, 100))  # as np.percentile takes it
    out = np.empty((len(q), 3))
    _C.detect_masked_quantiles_cpu(*window, frac.ctypes.data, len(q), out.ctypes.data)
    return out


@_backend.register("detect_masked_percentiles", "reference")
def _masked_percentiles_reference(C, sl, mask, q):
    px = C[sl][mask]
    return np.percentile(px, q, axis=0) if len(px) else np.full((len(q), 3), np.nan)


def nearest_rungs(C: np.ndarray, sl: tuple, mask: np.ndarray, mu: np.ndarray, ids: np.ndarray,
                  noise: np.ndarray, rel_sigma: float, backend: str | None = None
                  ) -> np.ndarray:  # fmt: skip
    """int32 [h, w]: for each pixel of ``mask`` in the window ``sl`` of the contrast ``C``,
    the id (``ids`` [R]) of the rung of ``mu`` [R, 3] of least chi-square
    (:func:`~qupaint.detect.ladder.rung_chi2`, sigma^2 = noise^2 + (rel_sigma C)^2); 0
    outside the mask. The C++ kernel, or numpy (``backend="reference"``), bit for bit."""
    _window_check(C, sl, mask)
    _, fn = _backend.select("detect_terrace_classes", "cpu", backend)
    mu, ids = np.asarray(mu, np.float64).reshape(-1, 3), np.asarray(ids, np.int32).reshape(-1)
    return fn(C, sl, mask, mu, ids, np.asarray(noise, np.float64), rel_sigma)


@_backend.register("detect_terrace_classes", "cpu")
def _nearest_rungs_cpu(C, sl, mask, mu, ids, noise, rel_sigma):
    from qupaint import _C

    held, window = _window_args(C, sl, mask)
    mu, ids = np.ascontiguousarray(mu), np.ascontiguousarray(ids)
    out = np.empty(mask.shape, np.int32)
    _C.detect_terrace_classes_cpu(*window, mu.ctypes.data, ids.ctypes.data, len(mu),
                                  noise.tolist(), float(rel_sigma), out.ctypes.data)  # fmt: skip
    return out


@_backend.register("detect_terrace_classes", "reference")
def _nearest_rungs_reference(C, sl, mask, mu, ids, noise, rel_sigma):
    px = C[sl][mask]
    sig = np.sqrt(noise**2 + (rel_sigma * px) ** 2)
    out = np.zeros(mask.shape, np.int32)
    out[mask] = ids[rung_chi2(px, mu, sig).argmin(1)]
    return out


def _window_args(C: np.ndarray, sl: tuple, mask: np.ndarray):
    """(the arrays to hold while the kernel runs, the C++ window arguments (C, W, y0, x0,
    mask, mh, mw)) of the window ``sl`` of ``C`` [H, W, 3] and its ``mask``, for the masked
    kernels (``detect_masked_median``, ``_quantiles``, ``detect_terrace_classes``)."""
    C, m = np.ascontiguousarray(C, np.float32), np.ascontiguousarray(mask, dtype=bool)
    y0, x0 = sl[0].indices(C.shape[0])[0], sl[1].indices(C.shape[1])[0]
    return (C, m), (C.ctypes.data, C.shape[1], y0, x0, m.ctypes.data, m.shape[0], m.shape[1])


def _window_check(C: np.ndarray, sl: tuple, mask: np.ndarray) -> None:
    shape = tuple(len(range(*s.indices(n))) for s, n in zip(sl, C.shape[:2], strict=True))
    if mask.shape != shape:
        raise ValueError(f"mask: shape {mask.shape} is not the window's {shape}")


def label_boxes(labels: np.ndarray, backend: str | None = None
                ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The box ``(y0, y1, x0, x1)`` [n, 4] (half-open, as ``ndimage.find_objects``) and the
    pixel count [n] of each label 1..n of an int32 label image, in one pass."""
    _, fn = _backend.select("detect_boxes", "cpu", backend)
    return fn(np.ascontiguousarray(labels, dtype=np.int32))


@_backend.register("detect_boxes", "cpu")
def _boxes_cpu(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from qupaint import _C

    n = int(labels.max()) if labels.size else 0
    boxes, areas = np.empty((n, 4), np.int64), np.empty(n, np.int64)
    _C.detect_boxes_cpu(labels.ctypes.data, labels.shape[0], labels.shape[1], n,
                        boxes.ctypes.data, areas.ctypes.data)  # fmt: skip
    return boxes, areas


@_backend.register("detect_boxes", "reference")
def _boxes_reference(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    H, W = labels.shape
    n = int(labels.max()) if labels.size else 0
    boxes = np.tile(np.array([H, 0, W, 0], np.int64), (n, 1))
    for k, sl in enumerate(ndimage.find_objects(labels, n)):
        if sl is not None:
            boxes[k] = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
    return boxes, np.bincount(labels.ravel(), minlength=n + 1)[1 : n + 1].astype(np.int64)


def grow(piece: np.ndarray, sl: tuple, pad: int, cand: np.ndarray, C=None, med=None, sig=None,
          reach: int = 0, backend: str | None = None):  # fmt: skip
    """A piece grown by up to ``pad`` px into the candidate pixels ``cand`` [H, W] around it
    (its edge pixels, which the colour-edge split took off), as (mask, y0, x0): the mask
    in a window whose top-left pixel is (y0, x0) of the image. With ``C``, ``med``, ``sig``
    and ``reach``, it first floods through connected candidate pixels of its own colour
    (within 3 ``sig`` of ``med`` in every channel) up to ``reach`` px beyond its box: the
    narrow tails and tips the colour-edge split cut off. Its box, mask and area are the
    flake's. The C++ kernel (``detect_grow_cpu``: a flood fill, then the dilation), or
    numpy (``backend="reference"``: a labelling, then shifted ORs)."""
    if pad <= 0 and reach <= 0:
        return piece, sl[0].start, sl[1].start
    own, y0, x0 = pad_window(piece, sl[0].start, sl[1].start, pad + reach, cand.shape)
    flood = reach > 0 and C is not None
    _, fn = _backend.select("detect_grow", "cpu", backend)
    return fn(own, cand, (y0, x0), C if flood else None, med, sig, pad), y0, x0


@_backend.register("detect_grow", "reference")
def _grow_reference(own, cand, at, C, med, sig, pad):
    y0, x0 = at
    cw = cand[y0 : y0 + own.shape[0], x0 : x0 + own.shape[1]]
    if C is not None:
        same = cw.copy()  # candidates of its colour: within 3 sig of med in every channel
        Cw = C[y0 : y0 + own.shape[0], x0 : x0 + own.shape[1]]
        for c in range(3):
            same &= np.abs(Cw[..., c] - med[c]) <= 3.0 * sig[c]
        # what the piece reaches through its own colour (the window bounds the reach): the
        # 4-connected components of same | own that hold a pixel of it, as a binary
        # propagation from it would flood them, in one labelling pass
        lab, n = ndimage.label(same | own)
        keep = np.zeros(n + 1, bool)
        keep[lab[own]] = True
        keep[0] = False
        own = keep[lab]
    return dilate_cross(own, pad) & (cw | own) if pad > 0 else own


@_backend.register("detect_grow", "cpu")
def _grow_cpu(own, cand, at, C, med, sig, pad):
    from qupaint import _C

    if C is not None and (np.asarray(med).dtype != np.float32 or C.dtype != np.float32):
        return _grow_reference(own, cand, at, C, med, sig, pad)  # numpy's float64 arithmetic
    out = np.array(own, dtype=bool, order="C")
    cand = np.ascontiguousarray(cand, dtype=bool)
    if C is not None:
        C = np.ascontiguousarray(C)
        med3 = np.asarray(med).reshape(3)  # float32: |C - med| in float32, as numpy
        thr = (3.0 * np.asarray(sig)).astype(np.float64).reshape(3)  # compared as numpy does
    _C.detect_grow_cpu(out.ctypes.data, out.shape[0], out.shape[1], cand.ctypes.data,
                       cand.shape[1], at[0], at[1], 0 if C is None else C.ctypes.data,
                       [0.0] * 3 if C is None else med3.tolist(),
                       [0.0] * 3 if C is None else thr.tolist(), int(pad))  # fmt: skip
    return out


def median5(a: np.ndarray, mask: np.ndarray | None = None, backend: str | None = None
            ) -> np.ndarray:  # fmt: skip
    """``scipy.ndimage.median_filter(a, size=5)`` of an int32 map, exactly (edges
    reflected), times ``mask`` if given (outside it 0, and not computed): the C++ kernel,
    or numpy (``backend="reference"``)."""
    _, fn = _backend.select("detect_median5", "cpu", backend)
    m = None if mask is None else np.ascontiguousarray(mask, dtype=bool)
    return fn(np.ascontiguousarray(a, dtype=np.int32), m)


@_backend.register("detect_median5", "cpu")
def _median5_cpu(a: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    from qupaint import _C

    out = np.empty_like(a)
    _C.detect_median5_cpu(a.ctypes.data, a.shape[0], a.shape[1],
                          0 if mask is None else mask.ctypes.data, out.ctypes.data)  # fmt: skip
    return out


@_backend.register("detect_median5", "reference")
def _median5_reference(a: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Computed only where the 5 x 5 neighbourhood is not one value: a class map is mostly
    uniform, and there its median is that value."""
    from numpy.lib.stride_tricks import sliding_window_view

    lo = ndimage.minimum_filter(a, size=5)
    out = lo.copy()
    mixed = lo != ndimage.maximum_filter(a, size=5)
    if mixed.any():
        pad = np.pad(a, 2, mode="symmetric")  # scipy's "reflect": d c b a | a b c d
        win = sliding_window_view(pad, (5, 5))[mixed].reshape(-1, 25)
        out[mixed] = np.partition(win, 12, axis=1)[:, 12]
    return out if mask is None else out * mask

