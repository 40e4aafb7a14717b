"""In-memory tiny engine models (HalloNet, VAE) and random front-end outputs for tests and benchmarks.

Nothing here is a real model: these build the real classes at a reduced size with random
weights, and random conditioning tensors of the shapes the front ends produce.
"""

from __future__ import annotations

import torch

from hallo_core.types import AudioFeatures, FaceData


def tiny_unet_config(channels=(32, 32, 32, 32), cross_attention_dim: int = 32) -> dict:
    """Reduced SD1.5-layout UNet config (channels divisible by the 32-group norms)."""
    return {"block_out_channels": list(channels), "layers_per_block": 1, "attention_head_dim": 8,
            "norm_num_groups": 32, "cross_attention_dim": cross_attention_dim}


def build_tiny_net(seed: int = 0, dtype=torch.float32, **config):
    """HalloNet with a tiny config (``tiny_unet_config(**config)``) and random weights."""
    from hallo_core.models import build_hallo_net

    torch.manual_seed(seed)
    net = build_hallo_net(tiny_unet_config(**config), dtype=dtype)
    return net.eval().requires_grad_(False)


def random_face_data(size: int = 64, seed: int = 0) -> FaceData:
    """FaceData of the right shapes: random pixels, a box face region, blurred-like masks."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.rand(3, size, size, generator=g) * 2 - 1
    x0, x1 = size // 4, 3 * size // 4
    region = torch.zeros(3, size, size)
    region[:, x0:x1, x0:x1] = 1.0
    full, facem, lip = [], [], []
    for div in (8, 16, 32, 64):
        s = size // div
        f = torch.rand(s * s, generator=g)
        l = torch.rand(s * s, generator=g) * f
        full.append(1 - f)
        facem.append(f - l)
        lip.append(l)
    emb = torch.randn(512, generator=g) * 10
    return FaceData(pixels, region, emb, full, facem, lip, (x0, x0, x1, x1), size=size)


def random_audio(num_frames: int, clip_frames: int = 16, seed: int = 0) -> AudioFeatures:
    """AudioFeatures [T_pad, 12, 768] padded to a multiple of the clip length."""
    g = torch.Generator().manual_seed(seed)
    t_pad = -(-num_frames // clip_frames) * clip_frames
    return AudioFeatures(torch.randn(t_pad, 12, 768, generator=g), num_frames)


def tiny_vae_config() -> dict:
    """A small AutoencoderKL config with the sd-vae layout (8x downscale, 4 latent channels)."""
    return {
        "in_channels": 3, "out_channels": 3, "latent_channels": 4,
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "block_out_channels": [8, 8, 16, 16], "layers_per_block": 1, "norm_num_groups": 4,
        "sample_size": 64,
    }


def build_tiny_vae(seed: int = 0, dtype=torch.float32):
    """Random-weight tiny AutoencoderKL for tests and benchmarks (never a real model)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(**tiny_vae_config()).to(dtype).eval().requires_grad_(False)
