"""Find every face in a picture of any size, pick one, and draw what was found.

Two detectors give the same :class:`FaceBox` list:

* ``scrfd``: the pack's SCRFD (``scrfd_10g_bnkps.onnx``) through onnxruntime. Its letterbox
  to 640 and its three strides find faces from a few percent of the frame upwards.
* ``mediapipe``: mediapipe's bundled BlazeFace (``solutions.face_detection``, full-range
  model), used when the SCRFD file is absent. Its input is only 192 pixels, so a face at a
  tenth of a large frame vanishes; it therefore also runs on overlapping tiles (each half
  the previous size, half a tile apart) so that every face smaller than half a tile lies
  whole inside one tile at a usable scale.

Faces are returned sorted left to right by the centre of their box: index 0 is the leftmost.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import List, Optional, Sequence

import cv2
import numpy as np

from .defaults import DETECTORS
from .detect import DETECTOR_FILENAME, SCRFD
from .errors import FaceIndexError, NoFaceError


@dataclass(frozen=True)
class FaceBox:
    """One detected face in source pixels: (x0, y0, x1, y1), half-open, floats."""

    box: tuple
    score: float
    kps: Optional[np.ndarray] = None  # [5, 2] eyes, nose, mouth corners (SCRFD only)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def side(self) -> float:
        """Long side of the box: the face's size for the minimum-size rule and the crop."""
        return max(self.width, self.height)

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def center(self) -> tuple:
        return ((self.box[0] + self.box[2]) / 2.0, (self.box[1] + self.box[3]) / 2.0)


def _clip_box(box, width: int, height: int) -> tuple:
    x0, y0, x1, y1 = (float(v) for v in box)
    return (min(max(x0, 0.0), width), min(max(y0, 0.0), height),
            min(max(x1, 0.0), width), min(max(y1, 0.0), height))


def _inter_over_min(a: tuple, b: tuple) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / small if small > 0 else 0.0


def merge_faces(faces: Sequence[FaceBox], overlap: float = 0.5) -> List[FaceBox]:
    """Keep the best-scoring box of each group that overlaps by more than ``overlap``.

    Overlap is measured over the smaller box, so a tile's view of a face and the whole
    image's view of the same face count as one even when their sizes differ.
    """
    kept: List[FaceBox] = []
    for f in sorted(faces, key=lambda f: -f.score):
        if all(_inter_over_min(f.box, k.box) <= overlap for k in kept):
            kept.append(f)
    return kept


def tile_grid(width: int, height: int, min_tile: int = 384) -> List[tuple]:
    """Square tiles (x0, y0, side) at halving sizes, each grid overlapping by half a tile.

    Sizes go from half the short side down to ``max(min_tile, short side / 8)``: smaller
    faces than that are below what the pack animates anyway.
    """
    short = min(width, height)
    floor = max(min_tile, short // 8)
    tiles = []
    side = short // 2
    while side >= floor:
        step = side // 2
        xs = list(range(0, max(width - side, 0) + 1, step))
        ys = list(range(0, max(height - side, 0) + 1, step))
        if xs[-1] != width - side:
            xs.append(width - side)
        if ys[-1] != height - side:
            ys.append(height - side)
        tiles += [(x, y, side) for y in ys for x in xs]
        side //= 2
    return tiles


class MediapipeFaceDetector:
    """mediapipe's bundled full-range BlazeFace, on the whole image and on tiles."""

    name = "mediapipe"

    def __init__(self, min_score: float = 0.5, tiles: bool = True) -> None:
        from .landmarks import LandmarkerUnavailableError, _import_mediapipe  # noqa: PLC0415 - heavy

        mp = _import_mediapipe()
        try:
            module = mp.solutions.face_detection
        except (AttributeError, ImportError) as exc:  # pragma: no cover - depends on the install
            raise LandmarkerUnavailableError(
                f"no face detector available: {DETECTOR_FILENAME} is missing and mediapipe "
                f"{getattr(mp, '__version__', '?')} has no bundled face_detection",
                fix=f"download {DETECTOR_FILENAME} (python -m hallo_core download --models MODELS --which "
                    "face_analysis)") from exc
        self.min_score = float(min_score)
        self.tiles = bool(tiles)
        self._impl = module.FaceDetection(model_selection=1, min_detection_confidence=self.min_score)
        self._lock = threading.Lock()

    def _run(self, rgb: np.ndarray) -> List[FaceBox]:
        h, w = rgb.shape[:2]
        with self._lock:
            result = self._impl.process(np.ascontiguousarray(rgb))
        out = []
        for d in result.detections or []:
            b = d.location_data.relative_bounding_box
            box = _clip_box((b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h), w, h)
            if box[2] > box[0] and box[3] > box[1]:
                out.append(FaceBox(box, float(d.score[0])))
        return out

    def detect(self, rgb: np.ndarray) -> List[FaceBox]:
        h, w = rgb.shape[:2]
        found = self._run(rgb)
        if self.tiles:
            for x, y, side in tile_grid(w, h):
                margin = 0.02 * side
                for f in self._run(rgb[y:y + side, x:x + side]):
                    x0, y0, x1, y1 = f.box
                    # a face cut by an inner tile edge is seen whole by a neighbouring tile
                    if ((x0 <= margin and x > 0) or (y0 <= margin and y > 0)
                            or (x1 >= side - margin and x + side < w) or (y1 >= side - margin and y + side < h)):
                        continue
                    found.append(FaceBox((x0 + x, y0 + y, x1 + x, y1 + y), f.score))
        return merge_faces(found)

    def close(self) -> None:
        impl, self._impl = self._impl, None
        if impl is not None:
            impl.close()


class ScrfdFaceDetector:
    """The pack's SCRFD; boxes and key points in source pixels."""

    name = "scrfd"

    def __init__(self, model_path: str, providers: Optional[Sequence[str]] = None) -> None:
        self.scrfd = SCRFD(model_path, providers=providers)

    def detect(self, rgb: np.ndarray) -> List[FaceBox]:
        h, w = rgb.shape[:2]
        d = self.scrfd.detect(rgb)
        out = []
        for i in range(len(d)):
            box = _clip_box(d.boxes[i], w, h)
            if box[2] > box[0] and box[3] > box[1]:
                out.append(FaceBox(box, float(d.scores[i]), None if d.kps is None else d.kps[i].copy()))
        return out


_DETECTORS: dict = {}
_DETECTORS_LOCK = threading.Lock()


def get_face_detector(detector_path: Optional[str] = None, providers: Optional[Sequence[str]] = None,
                      backend: str = "auto"):
    """SCRFD when its file exists ("auto") or is asked for ("scrfd"), else mediapipe's BlazeFace."""
    if backend not in DETECTORS:
        raise ValueError(f"backend must be one of {', '.join(DETECTORS)}, not {backend!r}")
    has_scrfd = bool(detector_path) and os.path.isfile(str(detector_path))
    use_scrfd = backend == "scrfd" or (backend == "auto" and has_scrfd)
    key = ("scrfd", os.path.abspath(str(detector_path)), tuple(providers or ())) if use_scrfd else ("mediapipe",)
    with _DETECTORS_LOCK:
        det = _DETECTORS.get(key)
        if det is None:
            det = ScrfdFaceDetector(detector_path or DETECTOR_FILENAME, providers) if use_scrfd \
                else MediapipeFaceDetector()
            _DETECTORS[key] = det
        return det


def detect_faces(rgb: np.ndarray, detector=None) -> List[FaceBox]:
    """Every face in an [H, W, 3] uint8 RGB image, sorted left to right (box centres)."""
    detector = detector if detector is not None else get_face_detector()
    faces = detector.detect(rgb)
    return sorted(faces, key=lambda f: (f.center[0], f.center[1]))


def choose_face(faces: Sequence[FaceBox], index: Optional[int] = None) -> int:
    """Index of the face to animate: the largest by default, else ``index`` counted left to right."""
    if not faces:
        raise NoFaceError("no face found in the image", fix="use a picture with a clearly visible face")
    if index is None:
        areas = [f.area for f in faces]
        return int(np.argmax(areas))  # ties go to the leftmost
    n = len(faces)
    if not 0 <= int(index) < n:
        which = "1 face was" if n == 1 else f"{n} faces were"
        raise FaceIndexError(f"face index {index} does not exist",
                             fix=f"{which} found, numbered 0 (leftmost) to {n - 1} (rightmost): pick one of those")
    return int(index)


def draw_faces(rgb: np.ndarray, faces: Sequence[FaceBox], chosen: Optional[int] = None) -> np.ndarray:
    """A copy of the image with every face boxed and numbered; the chosen one in green."""
    out = np.ascontiguousarray(rgb, dtype=np.uint8).copy()
    h, w = out.shape[:2]
    thick = max(2, round(min(h, w) / 300))
    font = max(0.5, min(h, w) / 800)
    for i, f in enumerate(faces):
        color = (0, 220, 0) if i == chosen else (255, 200, 0)
        x0, y0, x1, y1 = (int(round(v)) for v in f.box)
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), color, thick)
        label = str(i)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font, thick)
        ty = y0 - thick if y0 - th - base - thick > 0 else min(y1 + th + thick, h - base)
        cv2.rectangle(out, (x0, ty - th - base), (x0 + tw + 2 * thick, ty + base), color, -1)
        cv2.putText(out, label, (x0 + thick, ty), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), thick, cv2.LINE_AA)
    return out
