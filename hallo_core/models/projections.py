"""FaceLocator, ImageProj (face embedding -> 4 tokens) and AudioProj (wav2vec window -> 32 tokens)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import fk
from .operations import resolve_operations


class FaceLocator(nn.Module):
    """Per-frame conv stack on the face-box image; its output is added after the denoiser's conv_in.

    conv_in 3->16, then [16->16, 16->32 /2, 32->32, 32->64 /2, 64->64, 64->128 /2], conv_out
    128->``out_channels``, every conv 3x3 followed by SiLU except conv_out.
    """

    compute_dtype = None  # see HalloNet.set_compute_dtype

    def __init__(self, out_channels: int = 320, channels: Sequence[int] = (16, 32, 64, 128), in_channels: int = 3,
                 operations=None, device=None, dtype=None):
        super().__init__()
        ops = resolve_operations(operations)
        self.conv_in = ops.Conv2d(in_channels, channels[0], 3, padding=1, **fk(device, dtype))
        self.blocks = nn.ModuleList()
        for cin, cout in zip(channels[:-1], channels[1:]):
            self.blocks.append(ops.Conv2d(cin, cin, 3, padding=1, **fk(device, dtype)))
            self.blocks.append(ops.Conv2d(cin, cout, 3, padding=1, stride=2, **fk(device, dtype)))
        self.conv_out = ops.Conv2d(channels[-1], out_channels, 3, padding=1, **fk(device, dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 3, F, H, W] (or [B, 3, H, W]) in [0, 1] -> [B, C0, F, H/8, W/8] (or [B, C0, H/8, W/8])."""
        video = x.dim() == 5
        if video:
            b, c, f = x.shape[:3]
            x = x.transpose(1, 2).reshape(b * f, c, *x.shape[3:])
        x = x.to(self.compute_dtype or self.conv_in.weight.dtype)
        h = F.silu(self.conv_in(x))
        for blk in self.blocks:
            h = F.silu(blk(h))
        h = self.conv_out(h)
        if video:
            h = h.view(b, f, *h.shape[1:]).transpose(1, 2)
        return h


class ImageProj(nn.Module):
    """Linear 512 -> tokens*768, reshape, LayerNorm (``imageproj.proj``, ``imageproj.norm``)."""

    compute_dtype = None  # see HalloNet.set_compute_dtype

    def __init__(self, cross_attention_dim: int = 768, embed_dim: int = 512, tokens: int = 4,
                 operations=None, device=None, dtype=None):
        super().__init__()
        ops = resolve_operations(operations)
        self.tokens, self.dim = tokens, cross_attention_dim
        self.proj = ops.Linear(embed_dim, tokens * cross_attention_dim, **fk(device, dtype))
        self.norm = ops.LayerNorm(cross_attention_dim, **fk(device, dtype))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        """emb [B, 512] -> tokens [B, 4, 768]."""
        x = self.proj(emb.to(self.compute_dtype or self.proj.weight.dtype)).reshape(-1, self.tokens, self.dim)
        return self.norm(x)


class AudioProj(nn.Module):
    """MLP from a 5-frame x 12-layer x 768 wav2vec window to 32 tokens of 768 per video frame."""

    compute_dtype = None  # see HalloNet.set_compute_dtype

    def __init__(self, seq_len: int = 5, blocks: int = 12, channels: int = 768, intermediate_dim: int = 512,
                 output_dim: int = 768, context_tokens: int = 32, operations=None, device=None, dtype=None):
        super().__init__()
        ops = resolve_operations(operations)
        self.tokens, self.out_dim = context_tokens, output_dim
        self.in_dim = seq_len * blocks * channels
        self.proj1 = ops.Linear(self.in_dim, intermediate_dim, **fk(device, dtype))
        self.proj2 = ops.Linear(intermediate_dim, intermediate_dim, **fk(device, dtype))
        self.proj3 = ops.Linear(intermediate_dim, context_tokens * output_dim, **fk(device, dtype))
        self.norm = ops.LayerNorm(output_dim, **fk(device, dtype))

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        """window [B, F, 5, 12, 768] -> tokens [B, F, 32, 768]."""
        b, f = window.shape[:2]
        x = window.reshape(b * f, self.in_dim).to(self.compute_dtype or self.proj1.weight.dtype)
        x = torch.relu(self.proj1(x))
        x = torch.relu(self.proj2(x))
        x = self.proj3(x).reshape(b * f, self.tokens, self.out_dim)
        return self.norm(x).view(b, f, self.tokens, self.out_dim)
