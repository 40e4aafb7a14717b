"""A tiny SD-layout VAE whose float16 activations overflow (for the VAE precision policy tests).

The first convolution of the encoder and of the decoder is scaled so that its largest weight is
``PEAK`` (representable in float16): the convolution sums dozens of such products, so its outputs
pass float16's 65504, while every later GroupNorm divides the scale out again and the float32
result stays an ordinary picture / latent.
"""

from __future__ import annotations

from pathlib import Path

import torch

PEAK = 6.0e4  # the largest weight after scaling, below float16's 65504


def build_overflow_vae(seed: int = 0, dtype=torch.float32):
    from .tiny_engine import build_tiny_vae

    vae = build_tiny_vae(seed=seed)
    with torch.no_grad():
        for conv in (vae.encoder.conv_in, vae.decoder.conv_in):
            scale = PEAK / float(conv.weight.abs().max())
            conv.weight.mul_(scale)
            conv.bias.mul_(scale)
    return vae.to(dtype)


def write_overflow_vae(folder, seed: int = 0) -> Path:
    """The VAE above saved as an ``sd-vae-ft-mse`` folder (config.json + safetensors) at ``folder``."""
    folder = Path(folder)
    build_overflow_vae(seed).save_pretrained(str(folder), safe_serialization=True)
    return folder
