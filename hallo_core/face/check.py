"""Load the user's picture and refuse the ones that cannot be animated, before any model loads."""

from __future__ import annotations

import os
from typing import Union

import numpy as np
import torch

from .errors import BlankImageError, ImageDecodeError
from .image import ImageLike, to_rgb_uint8

# Standard deviation of the grey level, in 0..255, below which a picture is one flat colour:
# JPEG noise on a flat fill stays near 1, while a dim real photo is well above 10.
BLANK_STD = 3.0


def load_image(path: Union[str, os.PathLike], exif_transpose: bool = True):
    """Open an image file as a PIL image, or raise ImageDecodeError saying why.

    ``exif_transpose`` turns phone photos upright as viewers show them (their pixels are
    stored sideways with an orientation tag).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError  # noqa: PLC0415

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageDecodeError(f"image {path!r} does not exist", fix="check the path")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError(f"cannot decode {path!r} as an image ({exc})",
                               fix="use a PNG, JPEG or WebP file") from exc
    if exif_transpose:
        img = ImageOps.exif_transpose(img)
    return img


def _alpha(image) -> Union[np.ndarray, None]:
    """The alpha channel as an array, or None when the picture has none."""
    if hasattr(image, "convert") and hasattr(image, "mode"):
        if "A" in image.getbands() or "transparency" in getattr(image, "info", {}):
            return np.asarray(image.convert("RGBA"))[:, :, 3]
        return None
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim == 4:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        return arr[:, :, -1]
    return None


def check_image(image: ImageLike) -> np.ndarray:
    """The picture as [H, W, 3] uint8 RGB, or BlankImageError when there is nothing in it."""
    alpha = _alpha(image)
    if alpha is not None and not np.any(alpha):
        raise BlankImageError("the image is fully transparent: there is no picture to animate",
                              fix="use a photo with a visible face")
    rgb = to_rgb_uint8(image)
    grey = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    std = float(grey.std())
    if std < BLANK_STD:
        raise BlankImageError(f"the image is almost blank (one flat colour, grey-level spread {std:.1f} of 255)",
                              fix="use a photo with a visible face")
    return rgb
