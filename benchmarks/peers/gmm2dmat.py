"""2DMatGMM's flake detector, re-implemented for a same-run speed comparison.

2DMatGMM (Uslu et al., "An open-source robust machine learning platform for real-time
detection and classification of 2D material flakes", Mach. Learn.: Sci. Technol. 5, 015027
(2024); github.com/Jaluus/2DMatGMM, MIT) is not on PyPI, so its ``MaterialDetector`` cannot
be installed as shipped. This module follows its published algorithm step by step, with the
same libraries it uses (OpenCV, numba, scikit-image), so that the time per image is what
the shipped detector spends:

1. a 5x5 median blur of the BGR image;
2. the background colour per channel: the mean of the pixels within +-5 of the histogram's
   mode, counting only values 20..230;
3. the contrast image ``I / I_bg - 1``;
4. the Mahalanobis distance of every pixel to every layer's Gaussian (through the inverse
   Cholesky factor of its covariance), in a parallel numba loop;
5. each pixel kept for its nearest layer when within 5 standard deviations;
6. per layer: a morphological opening with a radius-2 disk, 4-connected components, and
   for each component of at least ``size_threshold`` pixels: its outer contour with the
   holes filled, its mean contrast, the false-positive features (solidity and perimeter over
   the square root of the area) through a logistic model, its minimum-area rectangle, and
   the mean Shannon entropy (radius-2 disk) of the grey image over the eroded mask within
   the box grown by 20 px.

Its layer parameters (graphene, 1-4 layers: mean contrast and covariance per layer, BGR) are
those the authors publish (``GMMDetector/trained_parameters/Graphene_GMM.json``). The
logistic model's two weights are placeholders (the authors' fitted model is a joblib file);
they cost the same to evaluate. The defaults are the authors' demo's: 200 px, 5 sigma.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GRAPHENE", "GMMDetector2DMat"]

#: (B, G, R) mean contrast and covariance per layer count (Graphene_GMM.json)
GRAPHENE = {
    1: ((-0.071, -0.140, -0.137),
        ((4.3691e-4, 1.3443e-4, 3.6409e-5), (1.3443e-4, 2.3108e-4, 9.3540e-5),
         (3.6409e-5, 9.3540e-5, 3.3202e-4))),
    2: ((-0.152, -0.264, -0.248),
        ((8.3287e-4, 2.5255e-4, -1.1751e-4), (2.5255e-4, 2.3699e-4, 2.0306e-5),
         (-1.1751e-4, 2.0306e-5, 3.1832e-4))),
    3: ((-0.216, -0.368, -0.347),
        ((1.3438e-3, 3.8766e-4, -1.7056e-4), (3.8766e-4, 2.7825e-4, 1.5671e-6),
         (-1.7056e-4, 1.5671e-6, 3.0163e-4))),
    4: ((-0.272, -0.465, -0.436),
        ((1.0399e-3, 3.8128e-4, 4.5299e-5), (3.8128e-4, 2.9525e-4, 4.8839e-5),
         (4.5299e-5, 4.8839e-5, 2.1838e-4))),
}  # fmt: skip


def _kernels():
    from numba import njit, prange

    @njit(parallel=True, fastmath=True, nogil=True, cache=True)
    def background(image, lo, hi, radius):
        out = np.zeros(3, dtype=np.float32)
        for c in prange(3):
            data = image[:, :, c].ravel()
            hist = np.zeros(256, dtype=np.int64)
            for v in data:
                if lo <= v <= hi:
                    hist[v] += 1
            mode = np.argmax(hist[lo : hi + 1]) + lo
            a, b = max(lo, mode - radius), min(hi, mode + radius)
            s = 0.0
            n = 0
            for v in data:
                if a <= v <= b:
                    s += v
                    n += 1
            out[c] = s / n if n > 0 else 0.0
        return out

    @njit(parallel=True, fastmath=True, nogil=True, cache=True)
    def distances(contrast, means, inv_chol):
        K = means.shape[0]
        H, W, C = contrast.shape
        out = np.zeros((K, H, W), dtype=np.float32)
        for k in prange(K):
            for i in prange(H):
                for j in range(W):
                    d2 = 0.0
                    for a in range(C):
                        t = 0.0
                        for b in range(a + 1):
                            t += (means[k, b] - contrast[i, j, b]) * inv_chol[k, a, b]
                        d2 += t * t
                    out[k, i, j] = np.sqrt(d2)
        return out

    return background, distances


class GMMDetector2DMat:
    """The detector (see the module doc): ``detector(bgr_image) -> list of flake dicts``."""

    def __init__(self, params: dict = GRAPHENE, size_threshold: int = 200,
                 sigma_threshold: float = 5.0, fp_weights=(0.35, -4.0, 1.0)):  # fmt: skip
        from skimage.morphology import disk

        self.layers = sorted(params)
        self.means = np.array([params[n][0] for n in self.layers], dtype=np.float64)
        self.inv_chol = np.array([np.linalg.inv(np.linalg.cholesky(np.array(params[n][1])))
                                  for n in self.layers])  # fmt: skip
        self.size_threshold = int(size_threshold)
        self.sigma = float(sigma_threshold)
        self.fp_weights = np.asarray(fp_weights, dtype=np.float64)
        self.disk2 = disk(2).astype(np.uint8)
        self._background, self._distances = _kernels()

    def __call__(self, image: np.ndarray) -> list[dict]:
        import cv2
        from skimage.filters.rank import entropy

        image = cv2.medianBlur(image, 5)
        bg = self._background(image, 20, 230, 5)
        contrast = image / bg - 1.0
        dist = self._distances(contrast, self.means, self.inv_chol)
        dist[dist != dist.min(axis=0)] = self.sigma
        semantic = (dist < self.sigma).astype(np.uint8)
        flakes = []
        for li, mask in enumerate(semantic):
            mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self.disk2)
            if cv2.countNonZero(mask) < self.size_threshold:
                continue
            n, labels = cv2.connectedComponents(mask, connectivity=4)
            for i in range(1, n + 1):
                flake = cv2.inRange(labels, i, i)
                size = cv2.countNonZero(flake)
                if size < self.size_threshold:
                    continue
                contours, hierarchy = cv2.findContours(flake, cv2.RETR_TREE,
                                                       cv2.CHAIN_APPROX_NONE)  # fmt: skip
                outer = [contours[k] for k in range(len(contours)) if hierarchy[0, k, 3] == -1]
                flake = cv2.drawContours(flake, outer, -1, 255, -1)
                mean_c, _ = cv2.meanStdDev(contrast, mask=flake)
                c0 = outer[0]
                area = cv2.contourArea(c0)
                hull = cv2.contourArea(cv2.convexHull(c0))
                arc = cv2.arcLength(c0, True)
                feats = np.array([arc / max(area, 1e-9) ** 0.5, area / max(hull, 1e-9), 1.0])
                p_fp = float(1.0 / (1.0 + np.exp(-feats @ self.fp_weights)))
                (cx, cy), (w, h), _ = cv2.minAreaRect(c0)
                x, y, bw, bh = cv2.boundingRect(c0)
                y0, y1 = max(y - 20, 0), min(y + bh + 20, image.shape[0])
                x0, x1 = max(x - 20, 0), min(x + bw + 20, image.shape[1])
                sub = cv2.erode(flake[y0:y1, x0:x1], self.disk2, iterations=2)
                grey = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
                ent = cv2.mean(entropy(grey, footprint=self.disk2, mask=sub), mask=sub)[0]
                flakes.append({"layers": self.layers[li], "size": size,
                               "contrast": mean_c[:, 0].tolist(), "center": (cx, cy),
                               "sides": (min(w, h), max(w, h)), "fp": p_fp,
                               "entropy": ent, "mask": flake})  # fmt: skip
        return flakes
