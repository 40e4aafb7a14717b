"""Activation-memory estimates for a host's model manager, in the form ComfyUI's samplers use.

ComfyUI asks a model for the memory one sampling call needs beyond its weights
(``BaseModel.memory_required`` called from ``comfy/sampler_helpers.py``) and keeps that much free
when it loads the weights. Its formula for an image or video UNet counts latent elements per
batch item, ``area = batch * prod(latent dims after the channels)``, and charges

* ``area * bytes_per_element(compute dtype) * 0.01 * factor`` MiB with a memory-efficient
  attention kernel (xformers or PyTorch's flash / memory-efficient SDPA), or
* ``area * 0.15 * factor`` MiB without one (sub-quadratic or split attention).

The Hallo denoiser is the SD1.5 UNet (ComfyUI's SD1.5 factor is 1.0) run on every frame of the
clip at once, with the CFG batch doubled like core doubles its noise batch: ``batch`` is
``cfg_rows * clip_frames``. The reference UNet runs once per clip on the reference and
motion-frame items (``items``, frames = 1). The VAE figures are core's for SD VAEs
(``comfy/sd.py``, NVIDIA ratio): per image, 1767 x bytes-per-element per pixel to encode and
2178 x 64 x bytes-per-element per latent pixel to decode. Nothing here is measured on a GPU;
docs/comfyui.md says what still needs confirming.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

MIB = 1024 * 1024
SD15_FACTOR = 1.0  # ComfyUI's memory_usage_factor for SD1.5 (supported_models.SD15)


def dtype_bytes(dtype: torch.dtype) -> int:
    """Bytes per element as ComfyUI counts them (fp32 4, fp16 / bf16 2, 8-bit 1)."""
    if dtype in (torch.float16, torch.bfloat16):
        return 2
    if dtype == torch.float32:
        return 4
    try:
        return torch.tensor([], dtype=dtype).element_size()
    except Exception:  # dtypes without tensor support count as 4, like ComfyUI's fallback
        return 4


def unet_memory(shape: Sequence[int], dtype: torch.dtype, efficient_attention: bool,
                factor: float = SD15_FACTOR) -> int:
    """Bytes for one UNet call on a latent of ``shape`` = [batch, channels, *dims]."""
    area = int(shape[0]) * math.prod(int(d) for d in shape[2:])
    if efficient_attention:
        return int(area * dtype_bytes(dtype) * 0.01 * factor * MIB)
    return int(area * 0.15 * factor * MIB)


def denoise_memory(size: int, clip_frames: int, cfg: bool, dtype: torch.dtype, efficient_attention: bool,
                   scale_factor: int = 8) -> int:
    """One denoising step of a clip: latent [cfg_rows * frames, 4, size/8, size/8]."""
    s = int(size) // int(scale_factor)
    rows = 2 if cfg else 1
    return unet_memory([rows * int(clip_frames), 4, s, s], dtype, efficient_attention)


def reference_memory(size: int, items: int, dtype: torch.dtype, efficient_attention: bool,
                     scale_factor: int = 8) -> int:
    """One reference-UNet pass over ``items`` images (2: the portrait's R.u, R.c; 6 per CFG clip)."""
    s = int(size) // int(scale_factor)
    return unet_memory([int(items), 4, s, s], dtype, efficient_attention)


def vae_encode_memory(size: int, images: int, dtype: torch.dtype) -> int:
    """ComfyUI's SD-VAE figure (NVIDIA) for encoding ``images`` pictures of ``size`` x ``size``."""
    return int(1767 * int(size) * int(size) * dtype_bytes(dtype)) * int(images)


def vae_decode_memory(size: int, frames: int, dtype: torch.dtype, scale_factor: int = 8) -> int:
    """ComfyUI's SD-VAE figure (NVIDIA) for decoding ``frames`` latents of ``size / 8``."""
    s = int(size) // int(scale_factor)
    return int(2178 * s * s * 64 * dtype_bytes(dtype)) * int(frames)
