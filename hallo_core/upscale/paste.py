"""Paste a restored 512x512 face back into the upscaled frame (upstream
``FaceRestoreHelper.paste_faces_to_input_image`` with ``use_parse=True``).

The arithmetic, interpolation flags and dtypes follow upstream step by step, so the
result matches it to the uint8 level: float32 square mask, float64 parse mask, the blend
computed in float64 and truncated (not rounded) to uint8.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import cv2
import numpy as np
import torch

from .face_helper import FACE_SIZE

# ParseNet classes (CelebAMask-HQ order) that do NOT belong to the pasted face:
# background, hat, necklace, neck, cloth.
PARSE_EXCLUDED = (0, 14, 16, 17, 18)
PARSE_BLUR_KSIZE = 101
PARSE_BLUR_SIGMA = 11
PARSE_BORDER = 10


def inverse_affine(affine: np.ndarray, scale: int, face_upsampled: bool = False) -> np.ndarray:
    """Map from the aligned crop to the ``scale``-times upscaled frame.

    Without a face upsampler upstream adds ``0.5 * scale`` to the translation (for scale > 1)
    to centre the bilinear samples; with one, the matrix maps the ``512*scale`` face instead.
    """
    inv = cv2.invertAffineTransform(affine) * scale
    if face_upsampled:
        inv /= scale
        inv[:, 2] *= scale
    elif scale > 1:
        inv[:, 2] += 0.5 * scale
    return inv


def square_soft_mask(inv: np.ndarray, face_size: Tuple[int, int], out_hw: Tuple[int, int], scale: int):
    """Warped square mask, eroded by 2*scale (black warp borders), then eroded again by
    2*w_edge and Gaussian-blurred with kernel 2*w_edge+1, where w_edge = sqrt(area) // 20.

    Returns ``(hard, soft)``: the first erosion (multiplies the warped face) and the soft
    edge mask ``[H, W, 1]`` float32 in [0, 1].
    """
    h_up, w_up = out_hw
    mask = np.ones(face_size, dtype=np.float32)
    inv_mask = cv2.warpAffine(mask, inv, (w_up, h_up))
    hard = cv2.erode(inv_mask, np.ones((int(2 * scale), int(2 * scale)), np.uint8))
    total_face_area = np.sum(hard)
    w_edge = int(total_face_area ** 0.5) // 20
    center = cv2.erode(hard, np.ones((w_edge * 2, w_edge * 2), np.uint8))
    soft = cv2.GaussianBlur(center, (w_edge * 2 + 1, w_edge * 2 + 1), 0)
    return hard, soft[:, :, None]


def parse_labels(parser: torch.nn.Module, face: np.ndarray) -> np.ndarray:
    """ParseNet argmax labels ``[512, 512]`` of a BGR face (any size, resized to 512)."""
    face_in = cv2.resize(face, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_LINEAR)
    face_in = cv2.cvtColor(face_in.astype("float32") / 255.0, cv2.COLOR_BGR2RGB)
    p = next(parser.parameters())
    t = torch.from_numpy(face_in.transpose(2, 0, 1)).float()
    t = ((t - 0.5) / 0.5).unsqueeze(0).to(p.device, p.dtype)
    with torch.no_grad():
        out = parser(t)
    out = out[0] if isinstance(out, (tuple, list)) else out
    return out.argmax(dim=1).squeeze().cpu().numpy()


def parse_mask_from_labels(labels: np.ndarray) -> np.ndarray:
    """Soft face mask ``[512, 512]`` float64 in [0, 1] from parsing labels: 255 for face
    classes, two Gaussian blurs (101, sigma 11), a 10-px zero border, then /255."""
    m = np.where(np.isin(labels, PARSE_EXCLUDED), 0.0, 255.0)
    m = cv2.GaussianBlur(m, (PARSE_BLUR_KSIZE, PARSE_BLUR_KSIZE), PARSE_BLUR_SIGMA)
    m = cv2.GaussianBlur(m, (PARSE_BLUR_KSIZE, PARSE_BLUR_KSIZE), PARSE_BLUR_SIGMA)
    b = PARSE_BORDER
    m[:b, :] = 0
    m[-b:, :] = 0
    m[:, :b] = 0
    m[:, -b:] = 0
    return m / 255.0


def paste_face(
    background: np.ndarray,
    face: np.ndarray,
    affine: np.ndarray,
    scale: int,
    parser: Optional[torch.nn.Module] = None,
    face_upsampler: Optional[Callable[[np.ndarray], np.ndarray]] = None,
    return_mask: bool = False,
):
    """Blend ``face`` (restored, aligned, BGR 512x512) into ``background`` (BGR, already
    ``scale`` times the prepared frame) under min(square soft mask, parse mask).

    ``affine`` is the forward 2x3 matrix frame -> crop used for alignment.
    ``face_upsampler(face) -> face`` of size ``512*scale`` (optional, upstream ``--face_upsample``).
    ``parser=None`` skips the parse mask (upstream always uses it in video_sr.py).
    Returns the uint8 frame, and the final mask ``[H, W, 1]`` in [0, 1] if ``return_mask``.
    """
    scale = int(scale)
    h_up, w_up = background.shape[:2]
    inv = inverse_affine(affine, scale, face_upsampled=face_upsampler is not None)
    if face_upsampler is not None:
        face = face_upsampler(face)
        face_size = (FACE_SIZE * scale, FACE_SIZE * scale)
    else:
        face_size = (FACE_SIZE, FACE_SIZE)
    inv_restored = cv2.warpAffine(face, inv, (w_up, h_up))
    hard, soft = square_soft_mask(inv, face_size, (h_up, w_up), scale)
    pasted = hard[:, :, None] * inv_restored
    if parser is not None:
        pm = parse_mask_from_labels(parse_labels(parser, face))
        pm = cv2.resize(pm, face_size)
        pm = cv2.warpAffine(pm, inv, (w_up, h_up), flags=cv2.INTER_AREA)[:, :, None]
        # upstream's min-fusion; it turns the mask float64
        fuse = (pm < soft).astype("int")
        soft = pm * fuse + soft * (1 - fuse)
    bg = background if background.ndim == 3 else background[:, :, None]
    out = soft * pasted + (1 - soft) * bg
    out = out.astype(np.uint16) if np.max(out) > 256 else out.astype(np.uint8)
    return (out, soft) if return_mask else out
