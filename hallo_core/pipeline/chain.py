"""Clip planning, motion frames and Hallo2's motion-frame drop (pure tensor helpers)."""

from __future__ import annotations

import math
from typing import List, Tuple

import torch


def plan_clips(num_frames: int, clip_frames: int = 16) -> List[Tuple[int, int]]:
    """(first frame, frames kept) per clip so the output covers exactly ``num_frames``.

    ceil(num_frames / clip_frames) clips; only the last one is trimmed. Upstream Hallo2
    could drop up to 15 tail frames or render a whole padded clip too many (see
    docs/deviations.md); this plan does neither.
    """
    if num_frames <= 0:
        return []
    n = math.ceil(num_frames / clip_frames)
    return [(k * clip_frames, min(clip_frames, num_frames - k * clip_frames)) for k in range(n)]


def audio_window(features, start: int, frames: int, radius: int = 2) -> torch.Tensor:
    """Upstream ``process_audio_emb`` for frames [start, start+frames): [frames, 2r+1, 12, 768].

    ``features``: an ``AudioFeatures`` or its [T_pad, 12, 768] tensor. Neighbours are clamped
    to the available (padded) feature length, as upstream clamps to the padded length;
    computing it per clip avoids holding 5x the features. Frames outside the features raise
    IndexError (the audio is padded to whole clips, so a clip never reaches past them).
    """
    features = getattr(features, "features", features)
    t = features.shape[0]
    if start < 0 or frames < 0 or start + frames > t:
        raise IndexError(f"frames {start}..{start + frames} outside the {t} available")
    idx = torch.arange(start, start + frames)[:, None] + torch.arange(-radius, radius + 1)[None]
    return features[idx.clamp(0, t - 1)]


def first_motion_frames(ref_pixels: torch.Tensor, n: int = 2) -> torch.Tensor:
    """Clip 0: the reference image repeated (upstream's ``motion_zeros`` is not zeros)."""
    return ref_pixels.reshape(1, *ref_pixels.shape[-3:]).float().repeat(n, 1, 1, 1)


def next_motion_frames(decoded: torch.Tensor, n: int = 2) -> torch.Tensor:
    """Later clips: the last ``n`` decoded frames ([0, 1], clamped) mapped to [-1, 1].

    Contiguous: the decoder can hand back channels-last frames, and the VAE's convolutions
    round differently per layout, so frames that come back from outside (a saved IMAGE, a
    resume checkpoint) must enter the encoder in the same layout to continue exactly.
    """
    return (decoded[-n:].float().clamp(0, 1) * 2.0 - 1.0).contiguous()


def draw_keep_mask(generator: torch.Generator, size: int, mask_rate: float,
                   face_region: torch.Tensor) -> torch.Tensor:
    """Hallo2's per-pixel keep mask: ``rand[S, S] > mask_rate`` OR inside the face box.

    One draw from ``generator`` (upstream: the global CPU RNG, before the latent noise).
    Returns bool [3, S, S]; the same mask is applied to both motion frames.
    """
    r = torch.rand(size, size, generator=generator)
    return (r > mask_rate)[None] | (face_region.cpu() != 0)


def apply_keep_mask(motion: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Dropped pixels become 0 (mid-grey in [-1, 1]), shared by all frames and channels."""
    return motion * keep.to(motion.device)


def drop_motion_frames(motion: torch.Tensor, generator: torch.Generator, mask_rate: float,
                       face_region: torch.Tensor) -> torch.Tensor:
    """Apply the Hallo2 drop. ``mask_rate == 0`` returns the frames unchanged *without* touching
    the RNG, so the result equals plain Hallo chaining."""
    if mask_rate <= 0:
        return motion
    keep = draw_keep_mask(generator, motion.shape[-1], mask_rate, face_region)
    return apply_keep_mask(motion, keep)
