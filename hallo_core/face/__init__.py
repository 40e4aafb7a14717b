"""Face front end: landmarks, Hallo's masks, face region and ArcFace identity, without insightface.

Entry points: :func:`frame_face` checks any picture, finds and picks the face and places
the square crop; :func:`prepare_face` turns a (square) picture into a
:class:`hallo_core.types.FaceData`.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    ".check": ("check_image", "load_image"),
    ".crop": ("CropBox", "crop_for_face", "fills_square", "output_size"),
    ".detect": ("SCRFD", "Detections"),
    ".embed": ("ArcFace", "align_face", "alignment_matrix", "umeyama"),
    ".errors": ("BadImageError", "BlankImageError", "FaceIndexError", "FaceTooSmallError", "ImageDecodeError",
        "NoFaceError"),
    ".find": ("FaceBox", "choose_face", "detect_faces", "draw_faces", "get_face_detector"),
    ".framing": ("FaceFraming", "frame_face", "prepare_framed_face"),
    ".image": ("to_rgb_uint8",),
    ".landmarks": ("FaceLandmarks", "LandmarkerUnavailableError", "get_landmarker"),
    ".masks": ("MaskSet", "compute_masks"),
    ".preprocess": ("FaceModelPaths", "clear_cache", "prepare_face"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = [name for names in _EXPORTS.values() for name in names]
