"""ParseNet face parser (facelib, from PSFRGAN), 19 CelebAMask-HQ classes.

Module names follow ``facelib/parsing_parsenet.pth`` (bare state dict, strict). Defaults build the
released network (21,303,254 parameters + BatchNorm buffers, 238 keys).
"""
from __future__ import annotations

import math
from typing import Any, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..operations import batch_norm, resolve_operations


class _Norm(nn.Module):
    """Holds the BatchNorm as ``.norm`` so keys read ``<layer>.norm.norm.*`` like the checkpoint."""

    def __init__(self, channels: int, operations: Any) -> None:
        super().__init__()
        ops = resolve_operations(operations)
        self.norm = batch_norm(ops, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class ConvLayer(nn.Module):
    """[nearest x2 if 'up'] -> reflection pad -> conv (stride 2 if 'down') -> [BN] -> [LeakyReLU 0.2]."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, scale: str = "none",
                 use_bn: bool = False, act: bool = False, operations: Any = None) -> None:
        super().__init__()
        ops = resolve_operations(operations)
        self.up = scale == "up"
        self.pad = int(math.ceil((kernel_size - 1) / 2))
        self.act = act
        self.conv2d = ops.Conv2d(cin, cout, kernel_size, 2 if scale == "down" else 1, bias=not use_bn)
        if use_bn:
            self.norm = _Norm(cout, ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        if self.pad:
            x = F.pad(x, (self.pad,) * 4, mode="reflect")
        x = self.conv2d(x)
        if hasattr(self, "norm"):
            x = self.norm(x)
        return F.leaky_relu(x, 0.2) if self.act else x


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int, scale: str, operations: Any) -> None:
        super().__init__()
        ops = resolve_operations(operations)
        self.has_shortcut = scale != "none" or cin != cout
        if self.has_shortcut:
            self.shortcut_func = ConvLayer(cin, cout, 3, scale, operations=ops)
        # the resampling sits on conv2 when going down and on conv1 when going up
        s1, s2 = {"down": ("none", "down"), "up": ("up", "none"), "none": ("none", "none")}[scale]
        self.conv1 = ConvLayer(cin, cout, 3, s1, use_bn=True, act=True, operations=ops)
        self.conv2 = ConvLayer(cout, cout, 3, s2, use_bn=True, act=False, operations=ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.shortcut_func(x) if self.has_shortcut else x
        return identity + self.conv2(self.conv1(x))


class ParseNet(nn.Module):
    """forward: x [N, 3, S, S] RGB normalised to [-1, 1] -> (mask logits [N, parsing_ch, S, S],
    image [N, 3, S, S]) as upstream (the image head is unused by the pipeline)."""

    def __init__(self, in_size: int = 512, out_size: int = 512, min_feat_size: int = 32, base_ch: int = 64,
                 parsing_ch: int = 19, res_depth: int = 10, ch_range: Sequence[int] = (32, 256),
                 operations: Any = None) -> None:
        super().__init__()
        ops = resolve_operations(operations)
        lo, hi = ch_range

        def clip(c: int) -> int:
            return max(lo, min(c, hi))

        min_feat_size = min(in_size, min_feat_size)
        down_steps = int(math.log2(in_size // min_feat_size))
        up_steps = int(math.log2(out_size // min_feat_size))

        enc: list = [ConvLayer(3, base_ch, 3, operations=ops)]
        head = base_ch
        for _ in range(down_steps):
            enc.append(ResidualBlock(clip(head), clip(head * 2), "down", ops))
            head *= 2
        self.encoder = nn.Sequential(*enc)
        self.body = nn.Sequential(*[ResidualBlock(clip(head), clip(head), "none", ops) for _ in range(res_depth)])
        dec: list = []
        for _ in range(up_steps):
            dec.append(ResidualBlock(clip(head), clip(head // 2), "up", ops))
            head //= 2
        self.decoder = nn.Sequential(*dec)
        self.out_img_conv = ConvLayer(clip(head), 3, operations=ops)
        self.out_mask_conv = ConvLayer(clip(head), parsing_ch, operations=ops)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        feat = self.encoder(x)
        x = self.decoder(feat + self.body(feat))
        return self.out_mask_conv(x), self.out_img_conv(x)
