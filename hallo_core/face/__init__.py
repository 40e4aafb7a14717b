"""Face front end: landmarks, Hallo's masks, face region and ArcFace identity, without insightface.

Entry point: :func:`prepare_face` returns a :class:`hallo_core.types.FaceData`.
"""

from .detect import SCRFD, Detections
from .embed import ArcFace, align_face, alignment_matrix, umeyama
from .image import to_rgb_uint8
from .landmarks import FaceLandmarks, LandmarkerUnavailableError, get_landmarker
from .masks import MaskSet, compute_masks
from .preprocess import FaceModelPaths, NoFaceError, clear_cache, prepare_face

__all__ = [
    "ArcFace", "Detections", "FaceLandmarks", "FaceModelPaths", "LandmarkerUnavailableError", "MaskSet",
    "NoFaceError", "SCRFD", "align_face", "alignment_matrix", "clear_cache", "compute_masks",
    "get_landmarker", "prepare_face", "to_rgb_uint8", "umeyama",
]
