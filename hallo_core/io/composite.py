"""Several animated crops pasted into one photo: the order and the masks that keep every face its own.

Each crop is pasted as :class:`~hallo_core.io.paste_back.FramePaster` pastes one (the photo
outside it, a feathered edge), through a mask built from its own face region: the face region
(the box the model's face locator was given) always lies in the mask's unfaded part, and the
mask reaches out to the crop's edge except where it must stop short of another speaker's face.

The order follows one rule: a crop whose mask reaches another speaker's face is pasted before
that speaker's crop, which then covers its own face completely. Where those rules go round in
a circle (two crops that each reach the other's face), the mask whose cut costs the least area
is cut back to stop before the other face, with its feather inside the cut. Only faces whose
regions themselves overlap leave no such order: :class:`FacesOverlapError`, raised before any
weights are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from ..face.crop import DEFAULT_MAX_SIDE, CropBox, output_size
from .paste_back import DEFAULT_FEATHER, FramePaster

Box = Tuple[int, int, int, int]  # (x0, y0, x1, y1), half-open, output pixels


class FacesOverlapError(ValueError):
    """Two chosen faces whose regions overlap: no paste order keeps both faces whole."""

    def __init__(self, a: int, b: int, box_a: Box, box_b: Box):
        self.pair = (a, b)
        super().__init__(f"the face regions of face {a} {tuple(box_a)} and face {b} {tuple(box_b)} overlap, so "
                         "either crop would cover part of the other's face")


def face_region_in_output(face_box, crop: CropBox, size: int, out_size: Tuple[int, int]) -> Box:
    """A face box at the working resolution (``FaceData.face_box``) in output pixels, rounded outward."""
    sx, sy = out_size[0] / float(crop.width), out_size[1] / float(crop.height)
    k = crop.side / float(size)
    x0, y0, x1, y1 = (float(v) for v in face_box)
    box = (int(np.floor((crop.x0 + x0 * k) * sx)), int(np.floor((crop.y0 + y0 * k) * sy)),
           int(np.ceil((crop.x0 + x1 * k) * sx)), int(np.ceil((crop.y0 + y1 * k) * sy)))
    w, h = out_size
    return max(box[0], 0), max(box[1], 0), min(box[2], w), min(box[3], h)


def _meets(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _area(b: Box) -> int:
    return max(0, b[2] - b[0]) * max(0, b[3] - b[1])


def _cut(mask: Box, own: Box, other: Box) -> Box:
    """``mask`` cut back so it stops before ``other`` and still holds ``own``: the largest of the
    cuts along a side that separates the two regions."""
    x0, y0, x1, y1 = mask
    options = []
    if other[0] >= own[2]:
        options.append((x0, y0, min(x1, other[0]), y1))
    if other[2] <= own[0]:
        options.append((max(x0, other[2]), y0, x1, y1))
    if other[1] >= own[3]:
        options.append((x0, y0, x1, min(y1, other[1])))
    if other[3] <= own[1]:
        options.append((x0, max(y0, other[3]), x1, y1))
    return max(options, key=_area)


def _order(masks: Sequence[Box], faces: Sequence[Box]) -> Optional[List[int]]:
    """Indices in paste order (a mask that reaches a face comes before that face's own), None on a cycle.

    Among the crops free to go next, the one given first goes first, so the order is stable.
    """
    n = len(masks)
    before: Dict[int, Set[int]] = {j: {i for i in range(n) if i != j and _meets(masks[i], faces[j])} for j in range(n)}
    order: List[int] = []
    while len(order) < n:
        free = [j for j in range(n) if j not in order and before[j] <= set(order)]
        if not free:
            return None
        order.append(free[0])
    return order


def _cycle_edges(masks: Sequence[Box], faces: Sequence[Box]) -> List[Tuple[int, int]]:
    """Edges (i reaches j's face) among crops left over when nothing more can be ordered."""
    n = len(masks)
    placed: List[int] = []
    while True:
        free = [j for j in range(n) if j not in placed
                and all(i in placed for i in range(n) if i != j and _meets(masks[i], faces[j]))]
        if not free:
            break
        placed.extend(free)
    rest = [j for j in range(n) if j not in placed]
    return [(i, j) for i in rest for j in rest if i != j and _meets(masks[i], faces[j])]


@dataclass
class PastePlan:
    """Where and in which order the crops go (index = speaker, as given)."""

    order: List[int]
    pasters: List[FramePaster]
    faces: List[Box]  # each speaker's face region, output pixels
    masks: List[Box]  # the part of the frame each crop may change, output pixels
    cut: List[bool]  # whether that mask was cut back from the crop's edge

    @property
    def size(self) -> Tuple[int, int]:
        return self.pasters[0].size

    def describe(self) -> str:
        """The geometry, for the resume hash (a resume with another layout is refused)."""
        parts = [f"{self.size[0]}x{self.size[1]} order {self.order}"]
        for p, f, m in zip(self.pasters, self.faces, self.masks):
            parts.append(f"crop {p.crop.box} face {f} mask {m}")
        return "; ".join(parts)

    def composite(self, clips: Sequence) -> np.ndarray:
        """One clip per speaker (working-size frames, equal counts) -> [n, H, W, 3] uint8 full frames."""
        if len(clips) != len(self.pasters):
            raise ValueError(f"expected {len(self.pasters)} clips, got {len(clips)}")
        out = None
        for i in self.order:
            out = self.pasters[i].paste(clips[i], onto=out)
        return out


def plan_pastes(source: np.ndarray, crops: Sequence[CropBox], face_boxes: Sequence, size,
                max_side: int = DEFAULT_MAX_SIDE, feather: float = DEFAULT_FEATHER) -> PastePlan:
    """The paste plan for crops of one photo; ``face_boxes``: each crop's ``FaceData.face_box``
    (working pixels of a ``size`` square: one size for all, or one per crop). Raises
    :class:`FacesOverlapError` when two face regions overlap."""
    if not crops or len(crops) != len(face_boxes):
        raise ValueError("plan_pastes needs one face box per crop")
    sizes = [int(size)] * len(crops) if np.isscalar(size) else [int(v) for v in size]
    h, w = source.shape[:2]
    out_size = output_size(w, h, max_side)
    pasters = [FramePaster(source, c, out_size=out_size, feather=feather) for c in crops]
    faces = [face_region_in_output(fb, c, s, out_size) for fb, c, s in zip(face_boxes, crops, sizes)]
    n = len(crops)
    for i in range(n):
        for j in range(i + 1, n):
            if _meets(faces[i], faces[j]):
                raise FacesOverlapError(i, j, faces[i], faces[j])
    masks: List[Box] = [p.visible for p in pasters]
    order = _order(masks, faces)
    while order is None:
        edges = _cycle_edges(masks, faces)
        i, j = max(edges, key=lambda e: (_area(_cut(masks[e[0]], faces[e[0]], faces[e[1]])), -e[0], -e[1]))
        masks[i] = _cut(masks[i], faces[i], faces[j])
        order = _order(masks, faces)
    cut = [m != p.visible for m, p in zip(masks, pasters)]
    for p, m, f, was_cut in zip(pasters, masks, faces, cut):
        if not was_cut:
            continue
        band = feather * max(p.rect[2] - p.rect[0], p.rect[3] - p.rect[1])
        # a cut edge fades inside the cut, never over the speaker's own face
        bands = tuple(float(min(band, gap)) if moved else 0.0 for moved, gap in (
            (m[0] != p.visible[0], f[0] - m[0]), (m[1] != p.visible[1], f[1] - m[1]),
            (m[2] != p.visible[2], m[2] - f[2]), (m[3] != p.visible[3], m[3] - f[3])))
        p.restrict(m, bands)
    return PastePlan(order, pasters, faces, masks, cut)
