"""Square crop geometry around a chosen face, output frame size, and the faithful-path rule.

Hallo was trained on square, face-centred frames in which the face box spans roughly a
third to a half of the side (the fixture portraits measure 0.35 to 0.54 with the pack's
detectors). The crop therefore grows the face box by ``margin`` of its long side on every
side: the default 0.75 gives a crop 2.5 times the face, a face at 40% of the crop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

from .defaults import DEFAULT_MARGIN, DEFAULT_MAX_SIDE

MIN_MARGIN = 0.1  # what is kept before padding when the image is too small for the full margin
MIN_FACE_SIZE = 64  # pixels of the face box's long side in the source image
SQUARE_TOLERANCE = 0.02
FILL_FRACTION = 0.25


@dataclass(frozen=True)
class CropBox:
    """A square of ``side`` source pixels at (x0, y0); may reach past the image (then padded)."""

    x0: int
    y0: int
    side: int
    width: int  # source image size, so the crop knows what it pads
    height: int

    @classmethod
    def from_box(cls, box, source_size) -> "CropBox":
        """Rebuild from ``FaceData.crop_box`` (x0, y0, x1, y1) and ``FaceData.source_size`` (w, h)."""
        x0, y0, x1, y1 = (int(v) for v in box)
        if x1 - x0 != y1 - y0:
            raise ValueError(f"crop box {tuple(box)} is not square")
        return cls(x0, y0, x1 - x0, int(source_size[0]), int(source_size[1]))

    @property
    def box(self) -> Tuple[int, int, int, int]:
        return self.x0, self.y0, self.x0 + self.side, self.y0 + self.side

    @property
    def pad(self) -> Tuple[int, int, int, int]:
        """Pixels outside the image on the (left, top, right, bottom)."""
        x0, y0, x1, y1 = self.box
        return max(0, -x0), max(0, -y0), max(0, x1 - self.width), max(0, y1 - self.height)

    @property
    def inside(self) -> bool:
        return not any(self.pad)

    def extract(self, rgb: np.ndarray, size: Optional[int] = None) -> np.ndarray:
        """The square crop of ``rgb`` (edges replicated where it runs off), optionally resized."""
        if rgb.shape[:2] != (self.height, self.width):
            raise ValueError(f"crop was made for {self.width}x{self.height}, image is "
                             f"{rgb.shape[1]}x{rgb.shape[0]}")
        left, top, right, bottom = self.pad
        x0, y0, x1, y1 = self.box
        part = rgb[max(y0, 0):min(y1, self.height), max(x0, 0):min(x1, self.width)]
        if any((left, top, right, bottom)):
            part = cv2.copyMakeBorder(part, top, bottom, left, right, cv2.BORDER_REPLICATE)
        part = np.ascontiguousarray(part)
        if size is not None and size != self.side:
            interp = cv2.INTER_AREA if size < self.side else cv2.INTER_CUBIC
            part = cv2.resize(part, (size, size), interpolation=interp)
        return part


def _place(center: float, side: int, dim: int) -> int:
    """Start of a span of ``side`` centred on ``center``, shifted to cover as much of [0, dim) as it can."""
    start = int(round(center - side / 2.0))
    if side <= dim:
        return min(max(start, 0), dim - side)
    return min(max(start, dim - side), 0)


def crop_for_face(face_box, width: int, height: int, margin: float = DEFAULT_MARGIN) -> CropBox:
    """Square crop around ``face_box`` (x0, y0, x1, y1), grown by ``margin`` x its long side per side.

    A crop that runs off the image is first shifted back in. When the image is too small
    for it, the side shrinks to the image's short side as long as the face keeps at
    least ``MIN_MARGIN``; only beyond that is the crop padded (edge pixels replicated).
    Nothing is ever scaled unevenly.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    x0, y0, x1, y1 = (float(v) for v in face_box)
    face = max(x1 - x0, y1 - y0)
    want = int(round(face * (1.0 + 2.0 * margin)))
    least = int(round(face * (1.0 + 2.0 * min(margin, MIN_MARGIN))))
    side = max(2, want if want <= min(width, height) else max(min(width, height), least))
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    return CropBox(_place(cx, side, width), _place(cy, side, height), side, int(width), int(height))


def even_size(value: float, cap: Optional[int] = None) -> int:
    """Nearest even integer >= 2 (H.264 with yuv420p needs even sides), halves up, not above ``cap``."""
    n = max(2, 2 * int(np.floor(value / 2.0 + 0.5)))
    if cap is not None and n > cap:
        n = max(2, cap - cap % 2)
    return n


def output_size(width: int, height: int, max_side: int = DEFAULT_MAX_SIDE) -> Tuple[int, int]:
    """Video size for a source: the source size, scaled down to ``max_side`` on its long side, even."""
    if max_side < 2:
        raise ValueError(f"max_side must be at least 2, got {max_side}")
    scale = min(1.0, max_side / float(max(width, height)))
    return even_size(width * scale, max_side), even_size(height * scale, max_side)


def fills_square(width: int, height: int, face_box, min_fill: float = FILL_FRACTION,
                 tolerance: float = SQUARE_TOLERANCE) -> bool:
    """Whether the picture already looks like Hallo's input, so upstream's faithful path applies.

    True when the image is square within ``tolerance`` of its long side and the face box's
    long side spans at least ``min_fill`` of the image's short side. Such a picture goes
    to the model whole, exactly as upstream; anything else is cropped and pasted back.
    """
    if abs(width - height) > tolerance * max(width, height):
        return False
    x0, y0, x1, y1 = (float(v) for v in face_box)
    return max(x1 - x0, y1 - y0) >= min_fill * min(width, height)
