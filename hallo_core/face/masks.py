"""Lip / expression / pose masks and the hard face box, with upstream Hallo's arithmetic.

Upstream (hallo/utils/util.py: get_mask and helpers) writes each intermediate mask to a
PNG and reads it back. PNG is lossless for 8-bit grey, so keeping the same uint8 arrays in
memory gives the same numbers without touching the disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import cv2
import numpy as np
import torch
from PIL import Image

# Landmark ids of the 478-point mesh (mediapipe topology), as used by upstream.
SILHOUETTE_IDS = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288,
    397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136,
    172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)
LIP_IDS = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291,
           146, 91, 181, 84, 17, 314, 405, 321, 375)

LIP_EXPAND_RATIO = 2.0  # upstream's get_lip_mask default; get_mask never overrides it
BLUR_SIZE = 64  # masks are blurred at 64x64 whatever the working size
FACE_KERNEL = 51
LIP_KERNEL = 31

Box = Tuple[int, int, int, int]  # (x0, y0, x1, y1), half-open, pixels


def expand_region(min_x: float, max_x: float, min_y: float, max_y: float,
                  width: int, height: int, ratio: float) -> Box:
    """Scale a box about its centre by ``ratio`` and shift it back inside the image.

    Upstream's order of operations is kept (floor-divided centre and half sides, shift,
    Python round, which is half-to-even). One deliberate difference: when the scaled box
    is larger than the image, upstream leaves a negative start, which numpy slicing then
    wraps around (an empty or wrong mask); here the start is clamped to 0.
    """
    mid_x = (max_x + min_x) // 2
    mid_y = (max_y + min_y) // 2
    half_x = ((max_x - min_x) * ratio) // 2
    half_y = ((max_y - min_y) * ratio) // 2
    x0, x1 = mid_x - half_x, mid_x + half_x
    y0, y1 = mid_y - half_y, mid_y + half_y
    if x0 < 0:
        x1 -= x0
        x0 = 0
    if x1 > width:
        x0 -= x1 - width
        x1 = width
    if y0 < 0:
        y1 -= y0
        y0 = 0
    if y1 > height:
        y0 -= y1 - height
        y1 = height
    return max(round(x0), 0), round(x1), max(round(y0), 0), round(y1)


def landmark_box(landmarks: np.ndarray, ids: Sequence[int], width: int, height: int, ratio: float) -> Box:
    """Expanded bounding box ``(x0, y0, x1, y1)`` of the given landmark ids."""
    pts = np.asarray(landmarks, dtype=np.float64)[list(ids)]
    lo = np.round(pts.min(axis=0))
    hi = np.round(pts.max(axis=0))
    x0, x1, y0, y1 = expand_region(lo[0], hi[0], lo[1], hi[1], width, height, ratio)
    return x0, y0, x1, y1


def box_mask(box: Box, width: int, height: int) -> np.ndarray:
    """Binary 0/255 uint8 mask [H, W] that is 255 inside the half-open box."""
    mask = np.zeros((height, width), dtype=np.uint8)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = 255
    return mask


def blur_mask(mask: np.ndarray, kernel: int) -> np.ndarray:
    """64x64 linear resize, Gaussian blur (sigma from the kernel), min-max stretch to 0..255."""
    small = cv2.resize(mask, (BLUR_SIZE, BLUR_SIZE))
    blurred = cv2.GaussianBlur(small, (kernel, kernel), 0)
    return cv2.normalize(blurred, None, 0, 255, cv2.NORM_MINMAX)


@dataclass
class MaskSet:
    """Upstream's intermediate masks, all uint8."""

    face_box: Box  # expanded silhouette box, original pixels
    lip_box: Box  # expanded lip box, original pixels (empty box when there are no landmarks)
    face_mask: np.ndarray  # [H, W] 0/255 hard face box (FaceLocator input before resizing)
    full: np.ndarray  # [64, 64] pose/background mask (1 - face)
    face: np.ndarray  # [64, 64] expression mask (face - lip, saturating)
    lip: np.ndarray  # [64, 64] lip mask


def masks_from_boxes(face_box: Box, lip_box: Box, width: int, height: int) -> MaskSet:
    """Blurred and separated masks from the two boxes (upstream's get_mask after landmarks)."""
    face_mask = box_mask(face_box, width, height)
    lip_mask = box_mask(lip_box, width, height)
    face_blur = blur_mask(face_mask, FACE_KERNEL)
    lip_blur = blur_mask(lip_mask, LIP_KERNEL)
    # float64 then truncation to uint8, as upstream's get_background_mask: not always 255 - x.
    full = ((1.0 - face_blur / 255.0) * 255).astype(np.uint8)
    face = cv2.subtract(face_blur, lip_blur)
    return MaskSet(face_box, lip_box, face_mask, full, face, lip_blur)


def compute_masks(landmarks: np.ndarray, width: int, height: int, face_expand_ratio: float = 1.2) -> MaskSet:
    """All masks for one face's 478 landmarks (pixels of a ``width`` x ``height`` image)."""
    lip_box = landmark_box(landmarks, LIP_IDS, width, height, LIP_EXPAND_RATIO)
    face_box = landmark_box(landmarks, SILHOUETTE_IDS, width, height, face_expand_ratio)
    return masks_from_boxes(face_box, lip_box, width, height)


def _pil_to_float(img: Image.Image) -> torch.Tensor:
    """torchvision's ToTensor for 8-bit PIL images: [C, H, W] float32 in [0, 1]."""
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div(255)


def pil_resize(arr: np.ndarray, size: int) -> Image.Image:
    """Resize a uint8 array to size x size like torchvision's Resize on a PIL image."""
    return Image.fromarray(arr).resize((size, size), Image.BILINEAR)


def mask_levels(mask64: np.ndarray, size: int) -> List[torch.Tensor]:
    """Flattened [h*w] float masks at size/8, /16, /32, /64 (upstream's attn_transform_*)."""
    return [_pil_to_float(pil_resize(mask64, size // d)).reshape(-1) for d in (8, 16, 32, 64)]


def face_region(face_mask: np.ndarray, size: int) -> torch.Tensor:
    """Hard face box -> RGB -> bilinear (antialiased) resize to size x size -> [3, S, S] in [0, 1]."""
    img = Image.fromarray(face_mask).convert("RGB")
    return _pil_to_float(img.resize((size, size), Image.BILINEAR))


def reference_pixels(rgb: np.ndarray, size: int) -> torch.Tensor:
    """Reference image [3, S, S] in [-1, 1]: PIL bilinear resize, ToTensor, Normalize(0.5, 0.5)."""
    t = _pil_to_float(pil_resize(rgb, size))
    return t.sub_(0.5).div_(0.5)
