"""Building blocks shared by the reference and denoising UNets.

Every layer is built through ``operations`` (see :mod:`.operations`). Attribute names follow
the official checkpoint keys (``to_q``, ``to_out.0``, ``ff.net.0.proj``, ...).

Video tensors are handled folded as ``[(B F), C, H, W]`` (batch-major), which makes every
GroupNorm per frame, like upstream's inflated GroupNorm.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .operations import resolve_operations


def fk(device=None, dtype=None) -> dict:
    """Factory kwargs for layer constructors."""
    return {"device": device, "dtype": dtype}


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, c = x.shape
    return x.view(b, n, heads, c // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class Attention(nn.Module):
    """Multi-head attention with diffusers' parameter names (to_q/to_k/to_v bias-free, to_out.0)."""

    def __init__(self, query_dim, heads, dim_head, context_dim=None, operations=None, device=None, dtype=None):
        super().__init__()
        ops = resolve_operations(operations)
        inner = heads * dim_head
        context_dim = query_dim if context_dim is None else context_dim
        self.heads = heads
        self.to_q = ops.Linear(query_dim, inner, bias=False, **fk(device, dtype))
        self.to_k = ops.Linear(context_dim, inner, bias=False, **fk(device, dtype))
        self.to_v = ops.Linear(context_dim, inner, bias=False, **fk(device, dtype))
        self.to_out = nn.ModuleList([ops.Linear(inner, query_dim, **fk(device, dtype))])

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention on already projected q [b,n,inner], k/v [b,m,inner]; returns to_out(result)."""
        h = self.heads
        o = F.scaled_dot_product_attention(split_heads(q, h), split_heads(k, h), split_heads(v, h))
        return self.to_out[0](merge_heads(o))

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        context = x if context is None else context
        return self.attend(self.to_q(x), self.to_k(context), self.to_v(context))


class GEGLU(nn.Module):
    def __init__(self, dim_in, dim_out, operations=None, device=None, dtype=None):
        super().__init__()
        self.proj = resolve_operations(operations).Linear(dim_in, dim_out * 2, **fk(device, dtype))

    def forward(self, x):
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward, inner width 4x (keys ``net.0.proj``, ``net.2``)."""

    def __init__(self, dim, mult=4, operations=None, device=None, dtype=None):
        super().__init__()
        inner = dim * mult
        self.net = nn.ModuleList(
            [
                GEGLU(dim, inner, operations, device, dtype),
                nn.Identity(),  # dropout slot in the checkpoint layout
                resolve_operations(operations).Linear(inner, dim, **fk(device, dtype)),
            ]
        )

    def forward(self, x):
        for m in self.net:
            x = m(x)
        return x


def timestep_embedding(timesteps: torch.Tensor, dim: int, flip_sin_to_cos=True, shift=0.0) -> torch.Tensor:
    """Sinusoidal embedding computed like diffusers' ``get_timestep_embedding`` (fp32)."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(0, half, dtype=torch.float32, device=timesteps.device)
    exponent = exponent / (half - shift)
    emb = timesteps[:, None].float() * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    return emb


class TimestepEmbedding(nn.Module):
    def __init__(self, in_dim, dim, operations=None, device=None, dtype=None):
        super().__init__()
        ops = resolve_operations(operations)
        self.linear_1 = ops.Linear(in_dim, dim, **fk(device, dtype))
        self.linear_2 = ops.Linear(dim, dim, **fk(device, dtype))

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


def time_embed(module, timestep, batch: int, dim: int, flip: bool, shift: float, device, dtype) -> torch.Tensor:
    """Timestep (int / float / tensor) -> embedding [batch, 4*C0]; the timestep is expanded to ``batch``."""
    if not torch.is_tensor(timestep):
        dt = torch.float64 if isinstance(timestep, float) else torch.int64
        timestep = torch.tensor([timestep], dtype=dt, device=device)
    elif timestep.ndim == 0:
        timestep = timestep[None].to(device)
    timestep = timestep.to(device).expand(batch)
    return module(timestep_embedding(timestep, dim, flip, shift).to(dtype))


class ResnetBlock(nn.Module):
    """GN-SiLU-conv, +time embedding, GN-SiLU-conv, + shortcut (diffusers ResnetBlock2D, default norm)."""

    def __init__(self, cin, cout, temb_dim, groups, eps, operations=None, device=None, dtype=None):
        super().__init__()
        ops = resolve_operations(operations)
        self.norm1 = ops.GroupNorm(groups, cin, eps=eps, affine=True, **fk(device, dtype))
        self.conv1 = ops.Conv2d(cin, cout, 3, padding=1, **fk(device, dtype))
        self.time_emb_proj = ops.Linear(temb_dim, cout, **fk(device, dtype))
        self.norm2 = ops.GroupNorm(groups, cout, eps=eps, affine=True, **fk(device, dtype))
        self.conv2 = ops.Conv2d(cout, cout, 3, padding=1, **fk(device, dtype))
        self.conv_shortcut = ops.Conv2d(cin, cout, 1, **fk(device, dtype)) if cin != cout else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor, frames: int = 1) -> torch.Tensor:
        """x [(B F), C, H, W]; temb [B, D] is broadcast over the F frames of each batch row."""
        h = self.conv1(F.silu(self.norm1(x)))
        t = self.time_emb_proj(F.silu(temb))
        if frames == 1:
            h = h + t[:, :, None, None]
        else:
            bf, c, hh, ww = h.shape
            h = (h.view(bf // frames, frames, c, hh, ww) + t[:, None, :, None, None]).view(bf, c, hh, ww)
        h = self.conv2(F.silu(self.norm2(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class Downsample(nn.Module):
    def __init__(self, channels, operations=None, device=None, dtype=None):
        super().__init__()
        self.conv = resolve_operations(operations).Conv2d(channels, channels, 3, stride=2, padding=1, **fk(device, dtype))

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels, operations=None, device=None, dtype=None):
        super().__init__()
        self.conv = resolve_operations(operations).Conv2d(channels, channels, 3, padding=1, **fk(device, dtype))

    def forward(self, x):
        dt = x.dtype
        if dt == torch.bfloat16:  # nearest upsampling has no bf16 kernel on some torch builds
            x = x.float()
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x.to(dt))


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, H*W, C]."""
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, h * w, c)


def from_tokens(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[N, H*W, C] -> [N, C, H, W]."""
    n, _, c = x.shape
    return x.reshape(n, h, w, c).permute(0, 3, 1, 2)
