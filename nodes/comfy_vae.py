"""The VAE the Hallo nodes encode and decode with: the pack's HALLO_VAE or ComfyUI's core VAE,
both seen through hallo_core's codec interface (``encode`` / ``decode`` / ``dtype`` / ``device``)."""

from __future__ import annotations

from typing import Optional

import torch

from hallo_core.io.vae import LATENT_SCALE


class ComfyVaeCodec:
    """ComfyUI's core VAE seen through hallo_core's codec interface.

    core ``VAE.encode`` takes IMAGE-layout pixels in 0..1, maps them to [-1,1] itself and returns the
    *unscaled* posterior mode (= mean, DiagonalGaussianRegularizer with sample=False); ``decode``
    returns IMAGE-layout 0..1 clamped as ``(x+1)/2``. Upstream Hallo encodes with the distribution mean
    times 0.18215 and decodes latents / 0.18215, so the scale is applied here.
    """

    def __init__(self, vae):
        self.vae = vae

    @property
    def dtype(self) -> torch.dtype:
        return self.vae.vae_dtype

    @property
    def device(self) -> torch.device:
        return self.vae.device

    @property
    def scale_factor(self) -> int:
        return int(self.vae.downscale_ratio) if isinstance(self.vae.downscale_ratio, int) else 8

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1] -> [N, 4, H/8, W/8] scaled latents."""
        img = ((pixels.float() + 1.0) / 2.0).permute(0, 2, 3, 1).cpu()
        return self.vae.encode(img) * LATENT_SCALE

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, chunk: Optional[int] = None, low_memory: bool = False) -> torch.Tensor:
        """[N, 4, h, w] scaled latents -> [N, 3, 8h, 8w] in [0, 1].

        ``chunk`` / ``low_memory`` are hallo_core's codec arguments; core ``VAE.decode`` batches by
        free memory itself, so they are accepted and left to it.
        """
        out = self.vae.decode((latents.float() / LATENT_SCALE).cpu())
        return out.reshape(-1, *out.shape[-3:]).permute(0, 3, 1, 2).float()


class ManagedCodec:
    """hallo_core's VAE codec with the VAE brought onto the device before every encode/decode.

    The VAE is a diffusers module (not comfy.ops), so it is loaded fully; loading it may partially
    offload the Hallo network, which comfy.ops layers handle by casting weights per forward.
    """

    def __init__(self, codec, patcher):
        self.codec = codec
        self.patcher = patcher

    def __getattr__(self, name):
        return getattr(self.codec, name)

    def encode(self, pixels):
        from hallo_core.pipeline.memory import vae_encode_memory

        from .common import load_gpu

        # core's estimate for one image, as its own VAE asks before it batches by free memory
        load_gpu([self.patcher], vae_encode_memory(pixels.shape[-1], 1, self.codec.dtype), full=True)
        return self.codec.encode(pixels.to(self.codec.device, self.codec.dtype))

    def decode(self, latents, chunk=None, low_memory=False):
        from hallo_core.pipeline.memory import vae_decode_memory

        from .common import load_gpu

        at_once = min(int(chunk or getattr(self.codec, "decode_chunk", 1)), int(latents.shape[0]))
        size = latents.shape[-1] * self.codec.scale_factor
        load_gpu([self.patcher], vae_decode_memory(size, at_once, self.codec.dtype), full=True)
        return self.codec.decode(latents, chunk, low_memory=low_memory)


def vae_codec(vae):
    """(codec, patcher) for either the pack's HALLO_VAE or ComfyUI's core VAE."""
    if hasattr(vae, "codec") and hasattr(vae, "patcher") and hasattr(vae, "folder"):
        return ManagedCodec(vae.codec(), vae.patcher), vae.patcher
    if hasattr(vae, "first_stage_model") and hasattr(vae, "encode"):
        if getattr(vae, "latent_channels", 4) != 4 or getattr(vae, "latent_dim", 2) != 2:
            raise ValueError("Hallo needs an SD1.5-family VAE (4 latent channels, image VAE, e.g. "
                             "vae-ft-mse-840000); the connected VAE is a different kind")
        return ComfyVaeCodec(vae), vae.patcher
    raise ValueError(f"vae: expected a VAE from 'Hallo VAE Loader' or 'Load VAE', got {type(vae).__name__}")
