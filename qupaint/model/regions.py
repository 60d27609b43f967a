"""Regions: the one home of how the compact model's vision side speaks to its language model.

- :func:`map_regions`: the dense head's class map cut into connected regions per layer
  class (boxes and classes);
- :func:`box_class`: the layer class read off the dense head's probabilities at a box (a
  referred box, ``QuPAINTConfig.region_refer``);
- :func:`region_text`, :func:`region_ids`: the regions written as the text (and the fixed
  number of token ids) the language model reads in its image slots;
- :func:`referred_box`: the box a describe question refers to.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BOX_SIGMA", "box_class", "map_regions", "referred_box", "region_ids",
           "region_text", "region_tokens", "regions_that_fit", "tally"]  # fmt: skip


def region_text(boxes, categories, totals=None, asked: int | None = None) -> str:
    """Region tokens' text: first a tally of the regions per layer class (``totals``
    [all, Mono, Few, Thick], default counted from ``categories``), then the boxes (x1, y1,
    x2, y2, as fractions of the image) with their layer classes (1 Mono, 2 Few, 3 Thick)
    in the corpus' llava dialect: ``" flakes 2, Mono 1, Few 0, Thick 1; Mono: [0.482,
    0.080, 0.589, 0.210]; Thick: [...]"``, ``"...; none"`` without regions. The tally puts
    each count the questions ask for right after its class name, where a pointer
    (:class:`~qupaint.model.pointer.RegionPointer`) can copy it. ``asked`` (a layer class:
    that of the box a question refers to, ``QuPAINTConfig.region_refer``) opens the text
    with " asked <phrase>;", the words a description begins with.

    >>> region_text([(0.1, 0.2, 0.3, 0.5)], [1])
    ' flakes 1, Mono 1, Few 0, Thick 0; Mono: [0.100, 0.200, 0.300, 0.500]'
    >>> region_text([], [], asked=2)
    ' asked few-layer; flakes 0, Mono 0, Few 0, Thick 0; none'
    """
    from qupaint.categories import CATEGORY_NAMES, CATEGORY_PHRASES
    from qupaint.instruct.formats import box_coords, join_boxes

    cats = [int(c) for c in categories]
    if totals is None:
        totals = tally(cats)
    counts = ", ".join(f"{name} {int(n)}" for name, n in
                      zip(["flakes", *(CATEGORY_NAMES[c] for c in sorted(CATEGORY_NAMES))],
                          totals, strict=True))  # fmt: skip
    coords = [box_coords("llava", (x1, y1, x2 - x1, y2 - y1), 1, 1) for x1, y1, x2, y2 in boxes]
    labels = [CATEGORY_NAMES[c] for c in cats]
    head = "" if asked is None else f" asked {CATEGORY_PHRASES[int(asked)]};"
    return f"{head} {counts}; " + (join_boxes("llava", coords, labels) if coords else "none")


def tally(cats: list[int]) -> list[int]:
    """[all, Mono, Few, Thick] counts of layer classes ``cats``."""
    from qupaint.categories import CATEGORY_NAMES

    return [len(cats)] + [cats.count(c) for c in sorted(CATEGORY_NAMES)]


def region_tokens(tokenizer, boxes, categories, totals=None, asked=None) -> list[int]:
    """The token ids of :func:`region_text` (no special tokens)."""
    return tokenizer(region_text(boxes, categories, totals, asked),
                     add_special_tokens=False)["input_ids"]  # fmt: skip


def regions_that_fit(tokenizer, boxes, categories, length: int, totals=None,
                     asked: int | None = None) -> int:  # fmt: skip
    """How many of the regions, taken in the order given, :func:`region_text` (with
    ``totals`` and ``asked``) writes in at most ``length`` tokens."""
    k = 0
    while k < len(boxes) and len(region_tokens(tokenizer, boxes[:k + 1], categories[:k + 1],
                                                totals, asked)) <= length:  # fmt: skip
        k += 1
    return k


def region_ids(tokenizer, boxes, categories, length: int, fill_id: int,
               asked: int | None = None) -> list[int]:  # fmt: skip
    """The ``length`` token ids of :func:`region_text` for regions (boxes (x1, y1, x2, y2)
    as fractions, layer classes): the tally counts all of them; the largest that fit whole
    are written, top to bottom then left to right; the slots left hold ``fill_id``. One
    rule for the true regions in training and the dense head's at inference. ``asked``:
    the referred box's layer class, or None."""
    cats = [int(c) for c in categories]
    totals = tally(cats)
    big = sorted(range(len(boxes)), key=lambda i: -(boxes[i][2] - boxes[i][0])
                 * (boxes[i][3] - boxes[i][1]))  # fmt: skip
    boxes, cats = [boxes[i] for i in big], [cats[i] for i in big]
    k = regions_that_fit(tokenizer, boxes, cats, length, totals, asked)
    keep = sorted(range(k), key=lambda i: (boxes[i][1], boxes[i][0]))
    ids = region_tokens(tokenizer, [boxes[i] for i in keep], [cats[i] for i in keep], totals,
                         asked)  # fmt: skip
    return (ids + [fill_id] * length)[:length]


def referred_box(question: str, fmt: str | None, image_size: tuple[int, int]):
    """The box (x1, y1, x2, y2, fractions of the image) that a question about one flake
    refers to (a ``describe`` question: "Describe the flake at [0.1, 0.2, 0.3, 0.4]."),
    written in box dialect ``fmt`` (None: the first of llava, internvl, qwen that reads
    one) for an image of ``image_size`` (width, height); None for any other question or
    one without exactly one box.

    >>> referred_box("Describe the flake at [0.100, 0.200, 0.300, 0.500].", "llava", (224, 224))
    (0.1, 0.2, 0.3, 0.5)
    >>> referred_box("How many monolayer flakes are in the image?", "llava", (224, 224)) is None
    True
    """
    from qupaint.instruct.formats import FORMATS
    from qupaint.instruct.parse import parse_answer
    from qupaint.model.constrain import task_of_question

    if task_of_question(question) != "describe":
        return None
    if fmt is None:
        return next((b for f in FORMATS if (b := referred_box(question, f, image_size))), None)
    w, h = image_size
    a = parse_answer(question, fmt, image_size=(w, h), expect="boxes")
    if not a.ok or len(a.boxes) != 1:
        return None
    x1, y1, x2, y2 = (float(v) for v in a.boxes[0])
    return (round(x1 / w, 6), round(y1 / h, 6), round(x2 / w, 6), round(y2 / h, 6))


#: the spread of :func:`box_class`'s weights, a fraction of the box's width and height
#: (chosen on the compact model's validation render: the class read at a flake's centre
#: beats the plain sum over its box, 0.85 vs 0.83 of 376 described flakes, because a
#: blurred edge reads as a thinner class)
BOX_SIGMA = 0.15


def box_class(probs, box, sigma: float = BOX_SIGMA) -> int:
    """The layer class of a box on a dense map: the class (1 .. C - 1) whose probability,
    summed over the cells the box (x1, y1, x2, y2, fractions of the map) touches, each
    weighted by a Gaussian around the box's centre (``sigma`` of its size), is largest.
    ``probs`` [h, w, C] are per-cell class probabilities, class 0 the substrate. The
    weighted sum, not a vote of each cell's best class, still names the class of a flake
    the substrate outweighs in every cell (a small or faint one).

    >>> p = np.zeros((4, 4, 4)); p[..., 0] = 0.7; p[..., 2] = 0.3; p[0, 0] = [0, 1, 0, 0]
    >>> box_class(p, (0.0, 0.0, 1.0, 1.0)), box_class(p, (0.0, 0.0, 0.25, 0.25))
    (2, 1)
    """
    probs = np.asarray(probs)
    h, w = probs.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    c0, r0 = min(max(int(np.floor(x1 * w)), 0), w - 1), min(max(int(np.floor(y1 * h)), 0), h - 1)
    c1, r1 = max(int(np.ceil(x2 * w)), c0 + 1), max(int(np.ceil(y2 * h)), r0 + 1)
    cells = probs[r0:r1, c0:c1, 1:]
    ys = (np.arange(cells.shape[0]) + 0.5) / cells.shape[0] - 0.5
    xs = (np.arange(cells.shape[1]) + 0.5) / cells.shape[1] - 0.5
    weight = np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma**2))
    return int(np.argmax((cells * weight[..., None]).sum((0, 1)))) + 1


def map_regions(labels, classes: int, min_cells: int = 3, absorb_cells: int = 0):
    """Regions of a class map ``labels`` [h, w] (0 substrate, 1 .. classes - 1 layer
    classes): (boxes, classes), boxes (x1, y1, x2, y2) as fractions of the map, largest
    first. A region is a connected set (4-neighbour) of at least ``min_cells`` cells of one
    class. A region under ``absorb_cells`` cells that is the minority of its flake (the
    connected set of non-substrate cells around it is at least twice its size) is part of
    that flake's edge, not a flake of its own, and is dropped: the flake's own region
    already covers it.

    >>> lab = np.zeros((8, 8), int); lab[1:5, 1:5] = 3; lab[4, 1:3] = 2; lab[6:8, 6:8] = 1
    >>> map_regions(lab, 4, min_cells=2)  # a Thick flake, its Few edge, a Mono flake
    ([(0.125, 0.125, 0.625, 0.625), (0.75, 0.75, 1.0, 1.0), (0.125, 0.5, 0.375, 0.625)], [3, 1, 2])
    >>> map_regions(lab, 4, min_cells=2, absorb_cells=3)  # the edge is part of its flake
    ([(0.125, 0.125, 0.625, 0.625), (0.75, 0.75, 1.0, 1.0)], [3, 1])
    """
    from scipy import ndimage

    labels = np.asarray(labels)
    gh, gw = labels.shape
    blobs, _ = ndimage.label(labels > 0)
    blob_size = np.bincount(blobs.ravel())
    found = []
    for c in range(1, classes):
        comp, _ = ndimage.label(labels == c)
        for k, sl in enumerate(ndimage.find_objects(comp), start=1):
            piece = comp[sl] == k
            area = int(piece.sum())
            if area < min_cells:
                continue
            if area < absorb_cells and blob_size[blobs[sl][piece][0]] >= 2 * area:
                continue
            ys, xs = sl
            found.append((area, (xs.start / gw, ys.start / gh, xs.stop / gw, ys.stop / gh), c))
    found.sort(key=lambda r: -r[0])
    return [b for _, b, _ in found], [c for _, _, c in found]
