"""Motion frames from any frames: continue a video where an earlier run (or any video) ended.

Between clips the loop carries the last two decoded frames as pixels ([-1, 1], undropped);
each clip then draws the Hallo2 keep mask (when the drop is on) and its initial noise from
one CPU generator. So a run that starts from the last frames of an earlier output, with the
generator advanced past the clips already rendered, continues exactly as one long run would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from .chain import draw_keep_mask
from .sampler import draw_initial_noise


@dataclass
class MotionFrames:
    """The motion input of a run: the frames the first clip continues from.

    ``pixels``: [n, 3, S, S] float32 in [-1, 1] on the CPU, before any Hallo2 drop (the drop is
    drawn per clip from the run's generator, so it stays reproducible). ``clip_index``: how
    many clips came before these frames; the run advances its generator past their draws so
    the seed schedule matches one long run. ``mask_rate``: the Hallo2 patch drop for the run
    (0 disables it); None keeps the sampler's own setting.
    """

    pixels: torch.Tensor
    clip_index: int = 0
    mask_rate: Optional[float] = None

    @property
    def size(self) -> int:
        return int(self.pixels.shape[-1])


def _as_nchw(frames: torch.Tensor) -> torch.Tensor:
    """[n, H, W, 3] in [0, 1] (ComfyUI IMAGE) or [n, 3, H, W] in [-1, 1] -> [n, 3, H, W] in [0, 1]."""
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4:
        raise ValueError(f"motion frames: expected an image batch, got shape {tuple(frames.shape)}")
    if frames.shape[-1] in (3, 4) and frames.shape[1] not in (3, 4):
        return frames[..., :3].permute(0, 3, 1, 2).float()
    if frames.shape[1] == 3:
        return (frames.float() + 1.0) / 2.0
    raise ValueError(f"motion frames: cannot tell the channel axis of shape {tuple(frames.shape)}")


def _resize_like_reference(frame01: torch.Tensor, size: int, crop_box: Optional[Sequence[int]]) -> torch.Tensor:
    """The reference's path for a frame of another size: optional square crop, 8-bit PIL bilinear."""
    from ..face.masks import _pil_to_float, pil_resize

    rgb = np.clip(np.round(frame01.permute(1, 2, 0).double().numpy() * 255.0), 0, 255).astype(np.uint8)
    if crop_box is not None:
        x0, y0, x1, y1 = (int(v) for v in crop_box)
        rgb = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    return _pil_to_float(pil_resize(rgb, size))


def motion_frames_from_images(frames: torch.Tensor, size: int, n: int = 2, clip_index: int = 0,
                              mask_rate: Optional[float] = None,
                              crop_box: Optional[Sequence[int]] = None) -> MotionFrames:
    """Hallo2's motion frames from the last ``n`` frames of any batch.

    ``frames``: [N, H, W, 3] float in [0, 1] (ComfyUI IMAGE, e.g. an earlier Hallo output) or
    [N, 3, H, W] in [-1, 1]. Frames already S x S are used as they are (exact: an earlier
    float output continues seamlessly; a uint8/mp4 source differs by its quantization).
    Other sizes take the reference image's path: ``crop_box`` (the reference's square crop
    in source pixels, FaceData.crop_box) when given, then an 8-bit bilinear resize to S x S.
    """
    if frames.shape[0] < n:
        raise ValueError(f"motion frames: need the last {n} frames, the batch has {frames.shape[0]}")
    x = _as_nchw(frames[-n:].detach().cpu())
    if x.shape[-2:] != (size, size) or crop_box is not None:
        x = torch.stack([_resize_like_reference(f.clamp(0, 1), size, crop_box) for f in x])
    if mask_rate is not None and not 0.0 <= float(mask_rate) < 1.0:
        raise ValueError(f"mask_rate must be in [0, 1), got {mask_rate}")
    if clip_index < 0:
        raise ValueError(f"clip_index must be >= 0, got {clip_index}")
    # the same map the loop applies to decoded frames between clips (chain.next_motion_frames)
    pixels = x.float().clamp(0, 1) * 2.0 - 1.0
    return MotionFrames(pixels.contiguous(), int(clip_index), None if mask_rate is None else float(mask_rate))


def skip_clip_draws(generator: torch.Generator, clips: int, face_region: torch.Tensor, frames: int,
                    latent_hw, dtype: torch.dtype, mask_rate: float) -> None:
    """Advance ``generator`` past ``clips`` clips' draws: keep mask (rate > 0), then initial noise.

    Replays the very calls the loop makes, so the state equals the one after those clips.
    """
    size = int(face_region.shape[-1])
    for _ in range(int(clips)):
        if mask_rate > 0:
            draw_keep_mask(generator, size, mask_rate, face_region)
        draw_initial_noise(generator, frames, latent_hw, dtype, "cpu")
