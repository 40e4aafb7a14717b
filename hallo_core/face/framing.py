"""From any picture to the square the model animates: check, find, choose, crop, decide.

:func:`frame_face` is the one call the CLI and the nodes make before loading any
generation model. Its :class:`FaceFraming` says which face was taken, where the crop is,
and whether the picture can go down the faithful whole-image path instead.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from .check import check_image
from .defaults import FRAME_MODES  # noqa: F401 (the hosts read it here too)
from .crop import DEFAULT_MARGIN, MIN_FACE_SIZE, CropBox, crop_for_face, fills_square
from .errors import FaceTooSmallError, NoFaceError
from .find import FaceBox, choose_face, detect_faces, draw_faces, get_face_detector
from .image import ImageLike
from .preprocess import prepare_face



@dataclass
class FaceFraming:
    """What :func:`frame_face` decided about one picture."""

    rgb: np.ndarray  # the source picture, [H, W, 3] uint8
    faces: List[FaceBox]  # every face found, left to right
    index: int  # the chosen face's index in ``faces``
    crop: CropBox  # the square to animate, in source pixels
    faithful: bool  # True: a square picture the face already fills -> animate it whole
    detector: str  # which detector found the faces ("scrfd" or "mediapipe")

    @property
    def face(self) -> FaceBox:
        return self.faces[self.index]

    @property
    def source_size(self) -> tuple:
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])

    def crop_image(self, size: Optional[int] = None) -> np.ndarray:
        """The square crop, at its own resolution or resized to ``size``."""
        return self.crop.extract(self.rgb, size)

    def face_in_crop(self) -> tuple:
        """The chosen face's box in the crop's pixels (a hint for :func:`prepare_face`)."""
        x0, y0, x1, y1 = self.face.box
        return (x0 - self.crop.x0, y0 - self.crop.y0, x1 - self.crop.x0, y1 - self.crop.y0)

    def preview(self) -> np.ndarray:
        """The picture with every face boxed and numbered, the chosen one in green ([H, W, 3] uint8)."""
        return draw_faces(self.rgb, self.faces, self.index)


def frame_face(
    image: ImageLike,
    detector_path: Optional[str] = None,
    face_index: Optional[int] = None,
    margin: float = DEFAULT_MARGIN,
    min_face: int = MIN_FACE_SIZE,
    providers: Optional[Sequence[str]] = None,
    backend: str = "auto",
    detector=None,
) -> FaceFraming:
    """Check the picture, find its faces, pick one, and place the crop around it.

    Args:
        image: anything :func:`hallo_core.face.to_rgb_uint8` takes (PIL, numpy, torch).
        detector_path: ``scrfd_10g_bnkps.onnx``; when missing (``backend="auto"``) the
            faces are found with mediapipe's bundled BlazeFace.
        face_index: None for the largest face, else N counted left to right from 0.
        margin: growth of the face box, per side, as a fraction of its long side.
        min_face: smallest face box (long side, source pixels) that is animated.
        detector: an object with ``detect(rgb) -> list[FaceBox]`` (overrides the rest).

    Raises BlankImageError, NoFaceError, FaceIndexError or FaceTooSmallError, all
    ValueErrors with a message meant for the user.
    """
    rgb = check_image(image)
    det = detector if detector is not None else get_face_detector(detector_path, providers, backend)
    faces = detect_faces(rgb, det)
    if not faces:
        raise NoFaceError(f"no face found in the {rgb.shape[1]}x{rgb.shape[0]} image",
                          fix=f"use a photo with a clearly visible, roughly frontal face at least {min_face} pixels "
                              "tall, or use {=no_face} fallback to animate it anyway (upstream's fallback: no "
                              "identity, the whole picture as the face)")
    largest = choose_face(faces)
    index = choose_face(faces, face_index)
    face = faces[index]
    if face.side < min_face:
        raise FaceTooSmallError(
            f"face {index} is only {face.side:.0f} pixels across; at least {min_face} are needed to animate it",
            fix="use a larger photo, or one taken closer to the face")
    h, w = rgb.shape[:2]
    crop = crop_for_face(face.box, w, h, margin)
    faithful = index == largest and fills_square(w, h, face.box)
    return FaceFraming(rgb, faces, index, crop, faithful, getattr(det, "name", type(det).__name__))


def prepare_framed_face(framing: FaceFraming, models=None, size: int = 512, frame: str = "auto",
                        **kwargs):
    """:func:`prepare_face` on what ``framing`` chose: the whole picture or the face's crop.

    ``frame``, in the framing vocabulary (:data:`FRAME_MODES`):
    "auto" takes the whole picture when ``framing.faithful`` (upstream's path, the same call)
    and the crop otherwise; "crop" always crops; "stretch" squashes the whole picture as
    upstream does. For a crop, ``crop_box`` and ``source_size`` of the result say where to
    paste the frames back, and ``landmarks`` are shifted to source pixels. Other keyword
    arguments go to :func:`prepare_face`.
    """
    if frame not in FRAME_MODES:
        raise ValueError(f"frame must be one of {', '.join(FRAME_MODES)}, not {frame!r}")
    if frame == "stretch" or (frame == "auto" and framing.faithful):
        return prepare_face(framing.rgb, models, size=size, **kwargs)
    data = prepare_face(framing.crop_image(), models, size=size, face_hint=framing.face_in_crop(), **kwargs)
    c = framing.crop
    lms = data.landmarks
    if lms is not None:
        lms = lms + lms.new_tensor([c.x0, c.y0])
    notes = list(data.notes)
    if len(framing.faces) > 1:
        notes.append(f"{len(framing.faces)} faces found: animating face {framing.index} (0 = leftmost)")
    return dataclasses.replace(data, crop_box=c.box, source_size=framing.source_size, landmarks=lms, notes=notes)
