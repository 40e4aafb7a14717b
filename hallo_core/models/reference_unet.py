"""Reference UNet: the SD1.5 2D UNet (no conv_norm_out / conv_out) that only produces banks.

A bank is the LayerNorm1 output inside a spatial transformer block, i.e. the token features
the denoising UNet's block of the same name attends to. Everything after the last bank
(up_blocks.3.attentions.2) cannot influence any bank, so it is not computed.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch

from .unet_blocks import UNetSkeleton, check_latent_size


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
        n = sample.shape[0]
        check_latent_size(sample.shape[-2], sample.shape[-1])
        if encoder_hidden_states is None:
            raise ValueError("encoder_hidden_states (face tokens) are required")
        ctx = encoder_hidden_states.to(self.dtype)
        temb = self.embed_time(timestep, n, sample.device)
        last = self.attention_names()[-1]
        banks: Dict[str, torch.Tensor] = {}

        def layer(lvl, j, name, h):
            h, bank = lvl.attentions[j].forward_write(h, ctx, bank_only=name == last)
            banks[name] = bank if bank_dtype is None else bank.to(bank_dtype)
            return h

        self.walk(self.conv_in(sample.to(self.dtype)), temb, 1, layer)
        return banks
