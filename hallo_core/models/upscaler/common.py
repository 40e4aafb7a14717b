"""Attention with ``nn.MultiheadAttention``'s parameter names, shared by the upscaler networks."""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..operations import resolve_operations


class MultiheadAttention(nn.Module):
    """Drop-in for ``nn.MultiheadAttention`` (no dropout, no masks) with the same parameter names.

    Parameters are ``in_proj_weight`` [3E, E], ``in_proj_bias`` [3E] and ``out_proj`` (Linear E->E),
    so official state dicts load unchanged. Inputs here are batch-first ``[N, L, E]``; the attention
    itself goes through ``scaled_dot_product_attention``.
    """

    def __init__(self, embed_dim: int, num_heads: int, operations: Any = None,
                 device: Any = None, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        ops = resolve_operations(operations)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim, device=device, dtype=dtype))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim, device=device, dtype=dtype))
        self.out_proj = ops.Linear(embed_dim, embed_dim, bias=True, device=device, dtype=dtype)
        if self.in_proj_weight.device.type != "meta":
            # torch's own initialisation, so random-weight tests behave like nn.MultiheadAttention
            nn.init.xavier_uniform_(self.in_proj_weight)
            nn.init.zeros_(self.in_proj_bias)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        n, lq, e = query.shape
        lk = key.shape[1]
        w = self.in_proj_weight.to(query.dtype)
        b = self.in_proj_bias.to(query.dtype)
        wq, wk, wv = w.chunk(3)
        bq, bk, bv = b.chunk(3)
        h, d = self.num_heads, e // self.num_heads
        q = F.linear(query, wq, bq).view(n, lq, h, d).transpose(1, 2)
        k = F.linear(key, wk, bk).view(n, lk, h, d).transpose(1, 2)
        v = F.linear(value, wv, bv).view(n, lk, h, d).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0 / math.sqrt(d))
        out = out.transpose(1, 2).reshape(n, lq, e)
        return self.out_proj(out)
