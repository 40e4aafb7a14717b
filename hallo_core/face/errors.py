"""Errors about the user's picture, raised before any generation model loads.

All are :class:`hallo_core.errors.ImageError` (user errors about the ``image`` input); the
subclasses let callers tell the cases apart. Raise them with ``what`` and ``fix`` apart:
``NoFaceError("no face found in the image", fix="use a photo with ...")``.
"""

from __future__ import annotations

from ..errors import FaceError, ImageError


class BadImageError(ImageError):
    """The picture cannot be animated as given."""


class ImageDecodeError(BadImageError):
    """The file is not an image this install can decode."""


class BlankImageError(BadImageError):
    """Fully transparent or (almost) one flat colour: nothing to animate."""


class NoFaceError(BadImageError, FaceError):
    """No face in the reference image (and the fallback was not asked for)."""


class FaceTooSmallError(BadImageError, FaceError):
    """The chosen face has too few pixels to animate."""


class FaceIndexError(BadImageError, FaceError):
    """The requested face index does not exist (about the ``face`` option, not the picture)."""

    default_key = "face"
