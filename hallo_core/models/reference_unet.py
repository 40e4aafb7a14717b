"""Reference UNet: the SD1.5 2D UNet (no conv_norm_out / conv_out) that only produces banks.

A bank is the LayerNorm1 output inside a spatial transformer block, i.e. the token features
the denoising UNet's block of the same name attends to (anatomy 2.2). Everything after the
last bank (up_blocks.3.attentions.2) cannot influence any bank, so it is not computed.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch

from .layers import time_embed
from .unet_blocks import UNetSkeleton, check_latent_size, level_downsampler, level_upsampler


class ReferenceUNet(UNetSkeleton):
    """``reference_unet.*`` of net.pth."""

    def __init__(self, cfg: dict, operations=None, device=None, dtype=None):
        super().__init__(cfg, video=False, operations=operations, device=device, dtype=dtype)

    def forward(
        self,
        sample: torch.Tensor,
        timestep=0,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        bank_dtype: Optional[torch.dtype] = torch.float16,
    ) -> Dict[str, torch.Tensor]:
        """Run the reference pass and return the banks.

        Args:
            sample: latents [N, 4, h, w]; upstream uses N=6: [R, M1, M2] x 2 (uncond copy first).
            timestep: upstream uses 0.
            encoder_hidden_states: face tokens [M, T, D] (upstream: [u, c]); tiled with
                ``repeat(N // M)`` as upstream does, so with N=6 the rows see [u, c, u, c, u, c].
            bank_dtype: upstream's ``ReferenceAttentionControl.update`` casts every bank to fp16
                before the denoiser reads it; the default reproduces that. None keeps the
                compute dtype.

        Returns:
            {``down_blocks.i.attentions.j`` / ``mid_block.attentions.0`` / ``up_blocks.i.attentions.j``:
            bank [N, h_l * w_l, C_l]}; the denoiser's block of the same name reads it.
        """
        cfg = self.config
        n = sample.shape[0]
        check_latent_size(sample.shape[-2], sample.shape[-1])
        if encoder_hidden_states is None:
            raise ValueError("encoder_hidden_states (face tokens) are required")
        ctx = encoder_hidden_states.to(self.dtype)
        temb = time_embed(
            self.time_embedding, timestep, n, cfg["block_out_channels"][0],
            cfg["flip_sin_to_cos"], cfg["freq_shift"], sample.device, self.dtype,
        )
        banks: Dict[str, torch.Tensor] = {}

        def keep(name, bank):
            banks[name] = bank if bank_dtype is None else bank.to(bank_dtype)

        h = self.conv_in(sample.to(self.dtype))
        skips = [h]
        for i, lvl in enumerate(self.down_blocks):
            for j, res in enumerate(lvl.resnets):
                h = res(h, temb)
                if lvl.cross:
                    h, bank = lvl.attentions[j].forward_write(h, ctx)
                    keep(f"down_blocks.{i}.attentions.{j}", bank)
                skips.append(h)
            ds = level_downsampler(lvl)
            if ds is not None:
                h = ds(h)
                skips.append(h)

        mid = self.mid_block
        h = mid.resnets[0](h, temb)
        h, bank = mid.attentions[0].forward_write(h, ctx)
        keep("mid_block.attentions.0", bank)
        h = mid.resnets[1](h, temb)

        last = len(self.up_blocks) - 1
        for i, lvl in enumerate(self.up_blocks):
            nres = len(lvl.resnets)
            for j, res in enumerate(lvl.resnets):
                h = res(torch.cat([h, skips.pop()], dim=1), temb)
                if lvl.cross:
                    final = i == last and j == nres - 1
                    h, bank = lvl.attentions[j].forward_write(h, ctx, bank_only=final)
                    keep(f"up_blocks.{i}.attentions.{j}", bank)
            us = level_upsampler(lvl)
            if us is not None:
                h = us(h)
        return banks
