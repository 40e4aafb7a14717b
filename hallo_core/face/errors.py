"""Errors about the user's picture, raised before any generation model loads.

All are ValueErrors, so callers that already catch ValueError (the CLI, the nodes) keep
working; the subclasses let them tell the cases apart.
"""

from __future__ import annotations


class BadImageError(ValueError):
    """The picture cannot be animated as given."""


class ImageDecodeError(BadImageError):
    """The file is not an image this install can decode."""


class BlankImageError(BadImageError):
    """Fully transparent or (almost) one flat colour: nothing to animate."""


class NoFaceError(BadImageError):
    """No face in the reference image (and the fallback was not asked for)."""


class FaceTooSmallError(BadImageError):
    """The chosen face has too few pixels to animate."""


class FaceIndexError(BadImageError):
    """The requested face index does not exist."""
