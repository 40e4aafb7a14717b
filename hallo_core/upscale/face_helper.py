"""Per-frame face detection and 5-point alignment, as Hallo2's ``FaceRestoreHelper`` does it.

All images here are numpy ``uint8`` BGR ``[H, W, 3]`` (OpenCV order), because every
number upstream produces (detector input, template fit, border colour) is defined in
that space.  Conversion from ComfyUI's RGB float frames happens in ``video_upscale``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np

from ..models.upscaler.retinaface import RetinaFace
from ..models.upscaler.retinaface import detect_faces as retina_detect

# FFHQ 5-point template for 512x512 crops (crop_ratio (1, 1)): eyes, nose tip, mouth corners.
FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ]
)
FACE_SIZE = 512
BORDER_VALUE = (135, 133, 132)  # gray fill outside the frame, BGR
MIN_INPUT_SIDE = 512  # frames with a shorter short side are upscaled first (read_image)
DETECT_SIDE = 640  # detection runs on the frame scaled so its short side is >= this


@dataclass
class Detection:
    """One face kept by :func:`detect_landmarks`, in the coordinates of the prepared frame."""

    box: np.ndarray  # [5] x1, y1, x2, y2, score (the score is divided by the scale, as upstream)
    landmarks: np.ndarray  # [5, 2] float32


def prepare_frame(img: np.ndarray) -> np.ndarray:
    """``read_image``: 16-bit/gray/alpha normalisation and upscaling of small frames."""
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    if np.max(img) > 256:  # 16-bit input
        img = img / 65535 * 255
    short = min(img.shape[:2])
    if short < MIN_INPUT_SIDE:
        f = MIN_INPUT_SIDE / short
        img = cv2.resize(img, (0, 0), fx=f, fy=f, interpolation=cv2.INTER_LINEAR)
    return img


def is_gray(img: np.ndarray, threshold: float = 10) -> bool:
    """Mean variance of the pairwise channel differences <= threshold (upstream ``is_gray``)."""
    if img.ndim == 2 or img.shape[2] == 1:
        return True
    c = [np.asarray(img[:, :, i], dtype=np.int16) for i in range(3)]
    diff = ((c[0] - c[1]).var() + (c[1] - c[2]).var() + (c[2] - c[0]).var()) / 3.0
    return bool(diff <= threshold)


def run_detector(detector, img: np.ndarray, conf_threshold: float = 0.8, nms_threshold: float = 0.4) -> np.ndarray:
    """``[n, 15]`` detections of a BGR uint8 image from our :class:`RetinaFace` or any object
    with upstream's ``detect_faces(bgr_image, conf_threshold, nms_threshold)`` method."""
    if isinstance(detector, RetinaFace):
        return retina_detect(detector, img, conf_threshold, nms_threshold, channel_order="bgr")
    return detector.detect_faces(img, conf_threshold=conf_threshold, nms_threshold=nms_threshold)


def detect_landmarks(
    detector,
    img: np.ndarray,
    resize: int = DETECT_SIDE,
    eye_dist_threshold: Optional[float] = 5,
    conf_threshold: float = 0.8,
    nms_threshold: float = 0.4,
) -> list:
    """Run RetinaFace on the up-scaled frame and return the kept faces in detection order.

    The detector (see :func:`run_detector`) returns upstream's ``[n, 15]`` array (box, score,
    5 landmarks; score-descending).
    The frame is only ever scaled up (Hallo2's ``scale = max(1, scale)``).
    """
    h, w = img.shape[:2]
    scale = 1.0 if resize is None else max(1.0, resize / min(h, w))
    det_img = img
    if resize is not None:
        det_img = cv2.resize(img, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_LINEAR)
    dets = run_detector(detector, det_img, conf_threshold, nms_threshold)
    if dets is None or len(dets) == 0:
        return []
    dets = np.asarray(dets) / scale  # upstream divides every column, the score included
    kept = []
    for row in dets:
        # Upstream's eye distance reads columns 6..9, one off the eye (x, y) pairs (5..8);
        # kept as is so the same faces survive the filter.
        eye_dist = np.linalg.norm([row[6] - row[8], row[7] - row[9]])
        if eye_dist_threshold is not None and eye_dist < eye_dist_threshold:
            continue
        lm = np.array([[row[i], row[i + 1]] for i in range(5, 15, 2)])
        kept.append(Detection(box=row[0:5], landmarks=lm))
    return kept


def choose_face(faces: Sequence[Detection], mode: str = "last", frame_hw: Optional[tuple] = None) -> Optional[Detection]:
    """Pick the face to restore. ``'last'`` = upstream (the last kept, i.e. lowest score);
    ``'largest'`` = largest box clipped to the frame; ``'center'`` = closest to the frame centre."""
    if not faces:
        return None
    if mode == "last":
        return faces[-1]
    if frame_hw is None:
        raise ValueError(f"face mode {mode!r} needs frame_hw")
    h, w = frame_hw
    if mode == "largest":
        def area(f):
            x1, y1, x2, y2 = np.clip(f.box[0], 0, w), np.clip(f.box[1], 0, h), np.clip(f.box[2], 0, w), np.clip(f.box[3], 0, h)
            return (x2 - x1) * (y2 - y1)
        # first maximum wins, as list.index(max(...)) upstream
        areas = [area(f) for f in faces]
        return faces[areas.index(max(areas))]
    if mode == "center":
        c = np.array([w / 2, h / 2])
        d = [np.linalg.norm(np.array([(f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2]) - c) for f in faces]
        return faces[d.index(min(d))]
    raise ValueError(f"unknown face mode {mode!r} (last, largest, center)")


def estimate_affine(landmarks: np.ndarray, template: np.ndarray = FFHQ_TEMPLATE_512) -> Optional[np.ndarray]:
    """4-DOF similarity from 5 landmarks to the template, robust LMEDS fit (as upstream)."""
    return cv2.estimateAffinePartial2D(landmarks, template, method=cv2.LMEDS)[0]


def warp_face(img: np.ndarray, affine: np.ndarray, size: int = FACE_SIZE) -> np.ndarray:
    """Bilinear warp of the frame into the aligned ``size``x``size`` crop, gray border."""
    return cv2.warpAffine(img, affine, (size, size), borderMode=cv2.BORDER_CONSTANT, borderValue=BORDER_VALUE)


class LandmarkSmoother:
    """Opt-in temporal smoothing of the 5 landmarks (upstream has none: off by default).

    A causal exponential moving average keyed by absolute frame index, so re-visiting a
    frame in an overlapping window gives the same result as the first visit.  ``strength``
    in [0, 1): 0 disables, larger is smoother (weight of the previous smoothed value).
    A frame without a face resets the filter so the next face is not dragged from far away.
    """

    def __init__(self, strength: float = 0.0):
        if not 0.0 <= strength < 1.0:
            raise ValueError("landmark smoothing strength must be in [0, 1)")
        self.strength = float(strength)
        self._cache: dict = {}
        self._last_index = -1
        self._state: Optional[np.ndarray] = None

    def __call__(self, index: int, landmarks: Optional[np.ndarray]) -> Optional[np.ndarray]:
        if index in self._cache:
            return self._cache[index]
        if index != self._last_index + 1:
            self._state = None  # a gap in the stream: start over
        if landmarks is None or self.strength == 0.0:
            out = landmarks
            self._state = None if landmarks is None else landmarks.astype(np.float64)
        else:
            lm = landmarks.astype(np.float64)
            self._state = lm if self._state is None else self.strength * self._state + (1 - self.strength) * lm
            out = self._state.astype(landmarks.dtype)
        self._last_index = index
        self._cache[index] = out
        # only the overlap of the next window can come back: keep the cache small
        for k in [k for k in self._cache if k < index - 64]:
            del self._cache[k]
        return out
