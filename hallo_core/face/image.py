"""Bring any user image to the one layout the face front end works on: HxWx3 uint8 RGB."""

from __future__ import annotations

import hashlib
from typing import Union

import numpy as np
import torch

from .errors import BadImageError

ImageLike = Union[np.ndarray, torch.Tensor, "PIL.Image.Image"]  # noqa: F821


def to_rgb_uint8(image: ImageLike) -> np.ndarray:
    """Convert an image to a contiguous ``[H, W, 3]`` uint8 RGB array.

    Accepts a PIL image, a numpy array or a torch tensor, laid out ``[H, W]``,
    ``[H, W, C]`` or ComfyUI's ``[1, H, W, C]``, with C in {1, 3, 4}, either uint8, 16-bit
    or float in [0, 1]. Deeper pixels are scaled to 8 bits, not clipped (a 16-bit photo's
    values reach 65535). Alpha is dropped without compositing, as PIL's ``convert("RGB")``
    does in upstream; grey is replicated to three channels. NaN or infinite pixels are a
    :class:`BadImageError`.
    """
    if hasattr(image, "convert") and hasattr(image, "mode"):  # PIL image
        image = _pil_array(image)
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.dtype in (torch.float16, torch.bfloat16):
            image = image.float()
        image = image.numpy()
    arr = np.asarray(image)
    if arr.ndim == 4:
        if arr.shape[0] != 1:
            raise ValueError(f"expected a single image, got a batch of {arr.shape[0]}")
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected an image [H, W, C] with C in 1..4, got shape {tuple(arr.shape)}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"empty image of shape {tuple(arr.shape)}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            if not np.isfinite(arr).all():
                raise BadImageError("the image holds NaN or infinite pixel values",
                                    fix="save it again as an ordinary 8- or 16-bit PNG or JPEG")
            # ComfyUI stores uint8/255 in float32: rounding gives the original bytes back.
            arr = np.clip(np.round(arr.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
        elif arr.dtype == np.bool_:
            arr = arr.astype(np.uint8) * 255
        elif np.issubdtype(arr.dtype, np.integer):
            if arr.dtype.itemsize > 1 and (arr.dtype == np.uint16 or arr.max() > 255):  # 16-bit levels
                arr = np.round(np.clip(arr, 0, 65535) * (255.0 / 65535.0))
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        else:
            raise ValueError(f"unsupported image dtype {arr.dtype}")
    channels = arr.shape[2]
    if channels in (1, 2):  # grey or grey+alpha
        arr = np.repeat(arr[:, :, :1], 3, axis=2)
    elif channels == 4:
        arr = arr[:, :, :3]
    return np.ascontiguousarray(arr)


def _pil_array(image) -> np.ndarray:
    """A PIL image as an array that keeps 16-bit and float pixels for scaling (``convert("RGB")``
    clips them at 255); float pixels come back in [0, 1]."""
    if image.mode.startswith("I;16") or image.mode == "I":
        return np.asarray(image).astype(np.int32)
    if image.mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        finite = arr[np.isfinite(arr)]
        top = float(finite.max()) if finite.size else 1.0
        return arr if top <= 1.0 else arr / (255.0 if top <= 255.0 else 65535.0)
    return np.asarray(image.convert("RGB"))


def content_hash(rgb: np.ndarray) -> str:
    """Hash of the pixels and the shape, used as the preprocess cache key."""
    h = hashlib.sha1()
    h.update(repr(rgb.shape).encode())
    h.update(np.ascontiguousarray(rgb).tobytes())
    return h.hexdigest()
