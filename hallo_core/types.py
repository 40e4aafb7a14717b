"""Data passed between the front ends (audio, face), the sampler and the nodes.

These are plain containers so that every stage can be built and tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch


@dataclass
class AudioFeatures:
    """wav2vec2 hidden states at the video frame rate.

    ``features`` holds transformer layers 1..12 per video frame, already padded to a
    multiple of the clip length (upstream pads the normalised waveform). The +-2 frame
    window is applied lazily per clip (``hallo_core.pipeline.chain.audio_window``) so that an hour of
    audio does not need 5x the memory.
    """

    features: torch.Tensor  # [T_pad, 12, 768] float32, CPU
    num_frames: int  # unpadded frame count: the video is trimmed to this
    fps: int = 25
    sample_rate: int = 16000

    @property
    def padded_frames(self) -> int:
        return int(self.features.shape[0])


@dataclass
class FaceData:
    """Everything the diffusion model needs to know about the reference portrait.

    All tensors are at the working resolution ``size`` (square, multiple of 64).
    """

    pixels: torch.Tensor  # [3, S, S] float32 in [-1, 1]: the reference image
    face_region: torch.Tensor  # [3, S, S] float32 in [0, 1]: hard face box (FaceLocator input)
    face_emb: torch.Tensor  # [512] float32: raw ArcFace embedding (not normalised)
    # Blurred attention masks per UNet level (S/8, S/16, S/32, S/64), each flattened [h*w] in [0, 1].
    full_masks: Sequence[torch.Tensor]  # pose / background mask (1 - face)
    face_masks: Sequence[torch.Tensor]  # expression mask (face - lip)
    lip_masks: Sequence[torch.Tensor]  # lip mask
    face_box: tuple  # (x0, y0, x1, y1) of the expanded face box at working resolution
    size: int = 512
    # Where the square working image came from in the original image (crop mode), else None.
    crop_box: Optional[tuple] = None
    source_size: Optional[tuple] = None  # (width, height) of the original image
    landmarks: Optional[torch.Tensor] = None  # [478, 2] in original-image pixels
    notes: list = field(default_factory=list)  # human-readable warnings (fallbacks used, face count)
