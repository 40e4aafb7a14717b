"""Face front end: landmarks, Hallo's masks, face region and ArcFace identity, without insightface.

Entry points: :func:`frame_face` checks any picture, finds and picks the face and places
the square crop; :func:`prepare_face` turns a (square) picture into a
:class:`hallo_core.types.FaceData`.
"""

from .check import check_image, load_image
from .crop import CropBox, crop_for_face, fills_square, output_size
from .detect import SCRFD, Detections
from .embed import ArcFace, align_face, alignment_matrix, umeyama
from .errors import (BadImageError, BlankImageError, FaceIndexError, FaceTooSmallError, ImageDecodeError,
                     NoFaceError)
from .find import FaceBox, choose_face, detect_faces, draw_faces, get_face_detector
from .framing import FaceFraming, frame_face, prepare_framed_face
from .image import to_rgb_uint8
from .landmarks import FaceLandmarks, LandmarkerUnavailableError, get_landmarker
from .masks import MaskSet, compute_masks
from .preprocess import FaceModelPaths, clear_cache, prepare_face

__all__ = [
    "ArcFace", "BadImageError", "BlankImageError", "CropBox", "Detections", "FaceBox", "FaceFraming",
    "FaceIndexError", "FaceLandmarks", "FaceModelPaths", "FaceTooSmallError", "ImageDecodeError",
    "LandmarkerUnavailableError", "MaskSet", "NoFaceError", "SCRFD", "align_face", "alignment_matrix",
    "check_image", "choose_face", "clear_cache", "compute_masks", "crop_for_face", "detect_faces",
    "draw_faces", "fills_square", "frame_face", "get_face_detector", "get_landmarker", "load_image",
    "output_size", "prepare_face", "prepare_framed_face", "to_rgb_uint8", "umeyama",
]
