"""Reference-portrait preprocessing: upstream's ImageProcessor.preprocess without files.

Order as upstream: landmarks and identity on the original image, masks at the original
resolution, and only then the resizes to the working size.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import torch

from ..types import FaceData
from .detect import DETECTOR_FILENAME, SCRFD
from .embed import RECOGNIZER_FILENAME, ArcFace
from .errors import NoFaceError
from .image import ImageLike, content_hash, to_rgb_uint8
from .landmarks import TASK_FILENAME, get_landmarker
from .masks import (SILHOUETTE_IDS, compute_masks, face_region, mask_levels, masks_from_boxes,
                    reference_pixels)

logger = logging.getLogger(__name__)

EMBEDDING_DIM = 512


@dataclass(frozen=True)
class FaceModelPaths:
    """The three model files the face front end can use (any may be None or missing)."""

    landmarker: Optional[str] = None  # face_landmarker_v2_with_blendshapes.task
    detector: Optional[str] = None  # scrfd_10g_bnkps.onnx
    recognizer: Optional[str] = None  # glintr100.onnx

    @classmethod
    def from_dir(cls, models_dir: Union[str, os.PathLike]) -> "FaceModelPaths":
        """Files in ``face_analysis/models`` (``models_dir`` may be either folder)."""
        base = os.fspath(models_dir)
        sub = os.path.join(base, "models")

        def pick(name: str) -> str:
            for folder in (sub, base):
                if os.path.isfile(os.path.join(folder, name)):
                    return os.path.join(folder, name)
            return os.path.join(sub if os.path.isdir(sub) else base, name)

        return cls(pick(TASK_FILENAME), pick(DETECTOR_FILENAME), pick(RECOGNIZER_FILENAME))

    def fingerprint(self) -> tuple:
        def one(p):
            return (p, os.path.getmtime(p)) if p and os.path.isfile(p) else (p, None)

        return one(self.landmarker), one(self.detector), one(self.recognizer)


def _as_paths(models) -> FaceModelPaths:
    if models is None:
        return FaceModelPaths()
    if isinstance(models, FaceModelPaths):
        return models
    return FaceModelPaths.from_dir(models)


def _box_area(landmarks: np.ndarray) -> float:
    pts = landmarks[list(SILHOUETTE_IDS)]
    span = pts.max(axis=0) - pts.min(axis=0)
    return float(span[0] * span[1])


def _overlap(a, b) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _hinted(boxes, hint) -> int:
    """Index of the box that overlaps the detector's chosen face most (a crop may show a neighbour too)."""
    return int(np.argmax([_overlap(b, hint) for b in boxes]))


def _landmark_box(landmarks: np.ndarray) -> tuple:
    pts = landmarks[list(SILHOUETTE_IDS)]
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def _identity(rgb: np.ndarray, paths: FaceModelPaths, providers, no_face: str, notes: list,
              face_hint=None) -> np.ndarray:
    """Raw ArcFace embedding of the largest SCRFD face of the original image."""
    detector = SCRFD(paths.detector or DETECTOR_FILENAME, providers=providers)
    dets = detector.detect(rgb)
    if len(dets) == 0 or dets.kps is None:
        if no_face == "error":
            raise NoFaceError(f"the face detector ({DETECTOR_FILENAME}) found no face in the reference image",
                              fix="use a clearer frontal portrait, or use {=no_face} fallback to continue with a "
                                  "zero identity embedding")
        notes.append("face detector found no face: zero identity embedding (upstream's fallback)")
        logger.warning(notes[-1])
        return np.zeros(EMBEDDING_DIM, dtype=np.float32)
    best = dets.largest() if face_hint is None else _hinted(dets.boxes, face_hint)
    if len(dets) > 1 and face_hint is None:
        notes.append(f"face detector found {len(dets)} faces: using the largest for the identity")
        logger.warning(notes[-1])
    recognizer = ArcFace(paths.recognizer or RECOGNIZER_FILENAME, providers=providers)
    return recognizer.embed(rgb, dets.kps[best]).astype(np.float32)


def _prepare(rgb: np.ndarray, paths: FaceModelPaths, size: int, face_expand_ratio: float,
             no_face: str, providers, max_faces: int, landmark_backend: str, with_embedding: bool,
             face_hint=None) -> FaceData:
    height, width = rgb.shape[:2]
    notes: list = []
    landmarker = get_landmarker(paths.landmarker, max_faces=max_faces, backend=landmark_backend)
    if landmarker.backend == "legacy":
        notes.append(f"landmarks from mediapipe's legacy FaceMesh ({TASK_FILENAME} not found)")
    faces = landmarker.detect(rgb)
    landmarks = None
    if faces and face_hint is not None:
        landmarks = faces[_hinted([_landmark_box(f) for f in faces], face_hint)]
    elif faces:
        areas = [_box_area(f) for f in faces]
        landmarks = faces[int(np.argmax(areas))]
        if len(faces) > 1:
            notes.append(f"{len(faces)} faces found in the reference image: using the largest")
            logger.warning(notes[-1])
    elif no_face == "error":
        raise NoFaceError("no face found in the reference image (mediapipe face landmarks)",
                          fix="use a photo with a clearly visible, roughly frontal face, or use {=no_face} fallback "
                              "to animate it anyway (upstream's fallback: no identity, the whole picture as the "
                              "face region)")
    else:
        notes.append("no face landmarks: the whole image is used as the face region, with no lip region")
        logger.warning(notes[-1])

    if with_embedding:
        emb = _identity(rgb, paths, providers, no_face, notes, face_hint)
    else:
        emb = np.zeros(EMBEDDING_DIM, dtype=np.float32)
        notes.append("identity embedding skipped (zeros)")

    if landmarks is not None:
        ms = compute_masks(landmarks, width, height, face_expand_ratio)
    else:
        ms = masks_from_boxes((0, 0, width, height), (0, 0, 0, 0), width, height)

    sx, sy = size / float(width), size / float(height)
    fb = ms.face_box
    face_box = (int(round(fb[0] * sx)), int(round(fb[1] * sy)), int(round(fb[2] * sx)), int(round(fb[3] * sy)))
    return FaceData(
        pixels=reference_pixels(rgb, size),
        face_region=face_region(ms.face_mask, size),
        face_emb=torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32)),
        full_masks=mask_levels(ms.full, size),
        face_masks=mask_levels(ms.face, size),
        lip_masks=mask_levels(ms.lip, size),
        face_box=face_box,
        size=size,
        crop_box=None,
        source_size=(width, height),
        landmarks=None if landmarks is None else torch.from_numpy(landmarks.copy()),
        notes=notes,
    )


_CACHE: "OrderedDict[tuple, FaceData]" = OrderedDict()
_CACHE_LOCK = threading.Lock()
CACHE_SIZE = 8


def clear_cache() -> None:
    """Forget every cached preprocess result."""
    with _CACHE_LOCK:
        _CACHE.clear()


def prepare_face(
    image: ImageLike,
    models: Union[str, os.PathLike, FaceModelPaths, None] = None,
    size: int = 512,
    face_expand_ratio: float = 1.2,
    no_face: str = "error",
    providers: Optional[Sequence[str]] = None,
    max_faces: int = 4,
    landmark_backend: str = "auto",
    with_embedding: bool = True,
    use_cache: bool = True,
    face_hint: Optional[Sequence[float]] = None,
) -> FaceData:
    """Everything Hallo needs from the reference portrait.

    Args:
        image: PIL image, numpy or torch array ([H, W], [H, W, C] or ComfyUI's [1, H, W, C]),
            RGB / RGBA / grey, uint8 or float in [0, 1]. Alpha is ignored.
        models: the ``face_analysis`` (or ``face_analysis/models``) folder, or explicit paths.
            Without the .task file, mediapipe's legacy FaceMesh is used when installed.
        size: working resolution (square, a multiple of 64). The whole image is squashed to
            size x size, as upstream does; the square crop around a face in a photo of any shape
            is the framing's (:func:`hallo_core.face.prepare_framed_face`).
        face_expand_ratio: growth of the face box around the silhouette landmarks.
        no_face: "error" raises NoFaceError; "fallback" goes on like upstream (zero identity
            embedding; without landmarks the whole image is the face box).
        providers: onnxruntime providers; None is CPU only.
        max_faces: faces the landmarker looks for; the largest is used, with a warning.
        with_embedding: False skips SCRFD/ArcFace and returns a zero embedding.
        use_cache: reuse the result for the same pixels and settings (in-memory LRU).
        face_hint: (x0, y0, x1, y1) of the face to use, e.g. ``FaceFraming.face_in_crop()``:
            landmarks and identity then come from the face overlapping it most instead of
            the largest one (a crop from a group photo may show a neighbour's face too).

    The returned tensors are shared with the cache: do not modify them in place.
    """
    if no_face not in ("error", "fallback"):
        raise ValueError(f"no_face must be 'error' or 'fallback', not {no_face!r}")
    size = int(size)
    if size < 64 or size % 64:
        raise ValueError(f"size must be a positive multiple of 64, got {size}")
    rgb = to_rgb_uint8(image)
    paths = _as_paths(models)
    hint = None if face_hint is None else tuple(float(v) for v in face_hint)
    key = (content_hash(rgb), size, float(face_expand_ratio), no_face, paths.fingerprint(),
           tuple(providers or ()), int(max_faces), landmark_backend, bool(with_embedding), hint)
    if use_cache:
        with _CACHE_LOCK:
            hit = _CACHE.get(key)
            if hit is not None:
                _CACHE.move_to_end(key)
                return dataclasses.replace(hit, notes=list(hit.notes))
    data = _prepare(rgb, paths, size, float(face_expand_ratio), no_face, providers,
                    int(max_faces), landmark_backend, bool(with_embedding), hint)
    if use_cache:
        with _CACHE_LOCK:
            _CACHE[key] = data
            while len(_CACHE) > CACHE_SIZE:
                _CACHE.popitem(last=False)
        data = dataclasses.replace(data, notes=list(data.notes))
    return data
