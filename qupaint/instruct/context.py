"""One image's annotations and their physics, and the phrases that describe them.

An :class:`ImageContext` holds the CIELAB colours of an image's flakes, its substrate and
the TMM layer model (:class:`qupaint.color.LayerModel`) for its material and oxide, so every
task generator (:mod:`qupaint.instruct.tasks`) states numbers that come from the
annotations and the physics, never invented ones. Answers are lists of text segments and
:class:`Boxes`; :func:`render` turns them into one answer format's text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qupaint.categories import CATEGORY_NAMES
from qupaint.instruct.formats import box_coords, join_boxes

__all__ = ["Boxes", "ImageContext", "render", "plural", "layers_words"]


@dataclass
class Boxes:
    """An answer segment: boxes of annotations ``idx`` of ``ctx`` (rendered per format)."""

    ctx: ImageContext
    idx: list
    labelled: bool


def plural(n: int, word: str = "flake") -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def layers_words(n: int) -> str:
    return "a monolayer" if n == 1 else f"{n} layers"


def _shift_words(d: list) -> str:
    dl, da, db = d
    return (
        f"{'darker' if dl < 0 else 'brighter'} than the substrate (dL* = {dl:+.1f}), "
        f"shifted towards {'green' if da < 0 else 'red/magenta'} (da* = {da:+.1f}) "
        f"and {'blue' if db < 0 else 'yellow'} (db* = {db:+.1f})"
    )


def _edge_words(de: float) -> str:
    # the corpus's convention for "edge transparency", from the contrast alone
    if de < 8:
        return "faint and semi-transparent, with edges that are hard to see"
    if de < 20:
        return "clearly visible but translucent at the edges"
    return "opaque-looking, with sharp high-contrast edges"


class ImageContext:
    """Annotations of one image plus their physics (CIELAB of flakes, substrate, layer model).

    ``lab`` stacks, in CIELAB: the substrate, the model's 1..max_layers colours (both under
    the image's white-balance gain), then one row per annotation. ``materials`` are all the
    materials of the corpus (for verification questions about absent ones).
    """

    def __init__(
        self,
        image: dict,
        anns: list[dict],
        lab: np.ndarray,
        material: str,
        model,
        materials: Sequence[str] = (),
    ):
        self.image, self.anns = image, anns
        self.W, self.H = int(image["width"]), int(image["height"])
        self.material = material
        self.materials = materials
        self.model = model
        self._coords: dict[str, dict[int, str]] = {}
        sub, table, flakes = lab[0], lab[1 : 1 + model.max_layers], lab[1 + model.max_layers :]
        # all the physics of the image in a few vectorised calls; text needs python floats
        d = flakes - sub
        self.dlab = d.tolist()
        self.de = np.sqrt((d * d).sum(-1))
        best, dist = model.match(flakes, lab[: 1 + model.max_layers])  # the detector's rule
        self.best, self.best_dist = best.tolist(), dist.tolist()
        self.pred_de = np.sqrt(((table - sub) ** 2).sum(-1)).tolist()

    def by_cat(self, cat: int | None) -> list[int]:
        return [i for i, a in enumerate(self.anns) if cat is None or a["category_id"] == cat]

    def boxes(self, idx: list[int], labelled: bool = True) -> Boxes:
        """Boxes of annotations ``idx`` in reading order (top to bottom, then left to
        right): one order for every answer, the one region tokens are written in."""
        order = sorted(idx, key=lambda i: (self.anns[i]["bbox"][1], self.anns[i]["bbox"][0]))
        return Boxes(self, order, labelled)

    def render_boxes(self, b: Boxes, fmt: str) -> str:
        """Box text in ``fmt``; each box's coordinates are formatted once per format."""
        cache = self._coords.setdefault(fmt, {})
        coords = []
        for i in b.idx:
            c = cache.get(i)
            if c is None:
                c = cache[i] = box_coords(fmt, self.anns[i]["bbox"], self.W, self.H)
            coords.append(c)
        labels = [CATEGORY_NAMES[self.anns[i]["category_id"]] if b.labelled else None
                  for i in b.idx]  # fmt: skip
        return join_boxes(fmt, coords, labels)

    def explain(self, i: int) -> str:
        """Physics reasoning for annotation i: contrast, colour shift, edges, layer estimate."""
        a = self.anns[i]
        n = int(a["layers"])
        de = float(self.de[i])
        best, dist = self.best[i], self.best_dist[i]
        text = (
            f"Its colour differs from the substrate by Delta-E = {de:.1f} (CIE76): it is "
            f"{_shift_words(self.dlab[i])}. It looks {_edge_words(de)}. "
        )
        if n <= self.model.max_layers:
            text += (
                f"The thin-film (TMM) prediction for {layers_words(n)} of {self.material} on "
                f"{a['substrate_oxide_nm']:g} nm SiO2/Si is Delta-E = {self.pred_de[n - 1]:.1f}. "
            )
        if best == n:
            text += (
                f"That is the closest match among 1-{self.model.max_layers} layers (colour "
                f"distance {dist:.1f}), so it is {layers_words(n)} "
                f"(about {a['thickness_nm']:.1f} nm thick)."
            )
        else:
            text += (
                f"Colour alone is ambiguous here: {layers_words(best)} would look similar "
                f"(colour distance {dist:.1f}); the annotated thickness is "
                f"{layers_words(n)} (about {a['thickness_nm']:.1f} nm)."
            )
        return text


def render(segs, fmt: str, boxes_only: bool = False) -> str:
    """Text of an answer (a string, or segments of text and :class:`Boxes`) in ``fmt``;
    ``boxes_only`` drops the text segments (Qwen's localisation answers are bare JSON)."""
    if isinstance(segs, str):
        return segs
    out = []
    for s in segs:
        if isinstance(s, Boxes):
            if fmt == "qwen" or s.idx:
                out.append(s.ctx.render_boxes(s, fmt))
        elif not boxes_only:
            out.append(s)
    return "".join(out).strip()
