"""Tensor conventions between ComfyUI's core types and hallo_core.

Pure torch: nothing here imports ComfyUI, so the conversions are unit-tested on their own.

ComfyUI types (0.8.0):
- IMAGE: float32 [B, H, W, C] in 0..1, RGB (C may be 1 or 4 from some loaders).
- MASK: float32 [B, H, W] in 0..1.
- AUDIO: {"waveform": float32 [B, C, T], "sample_rate": int}.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F


def check_image(image: torch.Tensor, name: str = "image") -> None:
    """Raise ValueError unless ``image`` is a non-empty IMAGE batch."""
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"{name}: expected an IMAGE tensor, got {type(image).__name__}")
    if image.ndim != 4 or image.shape[0] < 1 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{name}: expected IMAGE of shape [B,H,W,C] with C in 1/3/4, got {tuple(image.shape)}")
    if image.shape[1] < 8 or image.shape[2] < 8:
        raise ValueError(f"{name}: image is {image.shape[2]}x{image.shape[1]} pixels, too small for a portrait")
    if not torch.isfinite(image).all():
        raise ValueError(f"{name}: image contains NaN or infinite values")


def image_to_rgb_uint8(image: torch.Tensor, index: int = 0):
    """One frame of an IMAGE batch as an [H, W, 3] uint8 numpy array.

    Grey is expanded to RGB; RGBA drops alpha (what PIL's ``convert("RGB")`` does upstream).
    """
    check_image(image)
    frame = image[index].detach().float().cpu().clamp(0, 1)
    if frame.shape[-1] == 1:
        frame = frame.expand(-1, -1, 3)
    elif frame.shape[-1] == 4:
        frame = frame[..., :3]
    return (frame * 255.0).round().to(torch.uint8).numpy()


def frames_to_image(frames: torch.Tensor, value_range: str = "0_1") -> torch.Tensor:
    """Decoded video frames [T, 3, H, W] -> IMAGE [T, H, W, 3] float32 0..1.

    ``value_range`` is "0_1" or "-1_1" (the VAE's native range).
    """
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"expected frames [T,3,H,W], got {tuple(frames.shape)}")
    x = frames.detach().float()
    if value_range == "-1_1":
        x = (x + 1.0) / 2.0
    elif value_range != "0_1":
        raise ValueError(f"unknown value_range {value_range!r}")
    return x.clamp(0, 1).permute(0, 2, 3, 1).contiguous()


def image_to_frames(image: torch.Tensor) -> torch.Tensor:
    """IMAGE [T, H, W, C] 0..1 -> [T, 3, H, W] float32 0..1 (alpha dropped, grey expanded)."""
    check_image(image)
    x = image.float()
    if x.shape[-1] == 1:
        x = x.expand(-1, -1, -1, 3)
    return x[..., :3].permute(0, 3, 1, 2).contiguous()


def level_mask_to_mask(flat: torch.Tensor, size: int) -> torch.Tensor:
    """A flattened square attention mask [h*w] (any UNet level) -> MASK [1, size, size] for preview."""
    n = flat.numel()
    side = int(round(math.sqrt(n)))
    if side * side != n:
        raise ValueError(f"mask of {n} values is not square")
    m = flat.detach().float().reshape(1, 1, side, side)
    m = F.interpolate(m, size=(size, size), mode="nearest")
    return m[:, 0].clamp(0, 1).contiguous()


def box_to_mask(box: Sequence[float], size: int) -> torch.Tensor:
    """(x0, y0, x1, y1) at working resolution -> hard MASK [1, size, size]."""
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    m = torch.zeros(1, size, size)
    m[:, max(0, y0):min(size, y1), max(0, x0):min(size, x1)] = 1.0
    return m


def check_audio(audio, name: str = "audio") -> None:
    """Raise ValueError unless ``audio`` is a usable AUDIO dict."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise ValueError(f"{name}: expected an AUDIO dict with 'waveform' and 'sample_rate'")
    wav = audio["waveform"]
    if not isinstance(wav, torch.Tensor) or wav.ndim != 3:
        shape = tuple(wav.shape) if isinstance(wav, torch.Tensor) else type(wav).__name__
        raise ValueError(f"{name}: waveform must be [B,C,T], got {shape}")
    if wav.shape[-1] == 0 or wav.shape[0] == 0 or wav.shape[1] == 0:
        raise ValueError(f"{name}: the audio is empty (waveform shape {tuple(wav.shape)})")
    sr = int(audio["sample_rate"])
    if sr < 1000:
        raise ValueError(f"{name}: sample_rate {sr} Hz is not a plausible audio rate")
    if not torch.isfinite(wav).all():
        raise ValueError(f"{name}: waveform contains NaN or infinite values")


def audio_first_item(audio) -> tuple[torch.Tensor, int]:
    """AUDIO -> ([C, T] float32 waveform of batch item 0, sample_rate). Further batch items are ignored."""
    check_audio(audio)
    return audio["waveform"][0].detach().float().cpu(), int(audio["sample_rate"])


def fit_audio_to_frames(audio, num_frames: int, fps: float):
    """AUDIO (batch item 0) trimmed or zero-padded to exactly ``num_frames / fps`` seconds.

    Core SaveVideo trims audio to the video but never pads, so the audio handed on is cut to the
    frames that were generated.
    """
    wav, sr = audio_first_item(audio)
    target = int(round(num_frames * sr / float(fps)))
    if wav.shape[-1] >= target:
        wav = wav[:, :target]
    else:
        wav = F.pad(wav, (0, target - wav.shape[-1]))
    return {"waveform": wav.unsqueeze(0).contiguous(), "sample_rate": sr}


def frames_for_audio(num_samples: int, sample_rate: int, fps: float) -> int:
    """Video frames covering the audio: ceil(duration * fps), the count the audio front end uses."""
    return int(math.ceil(num_samples * float(fps) / sample_rate - 1e-9))
