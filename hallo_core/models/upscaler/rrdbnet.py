"""RRDBNet (ESRGAN trunk) as used by RealESRGAN_x2plus, plus RealESRGANer-style tiled upscaling.

Module names follow ``RealESRGAN_x2plus.pth`` (``params_ema``/``params``), so loading is a strict
``load_state_dict``. Defaults build the x2plus network (16,703,171 parameters, 702 keys).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..operations import resolve_operations


class ResidualDenseBlock(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int, operations: Any) -> None:
        super().__init__()
        ops = resolve_operations(operations)
        self.conv1 = ops.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = ops.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = ops.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = ops.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = ops.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = F.leaky_relu(self.conv1(x), 0.2)
        x2 = F.leaky_relu(self.conv2(torch.cat((x, x1), 1)), 0.2)
        x3 = F.leaky_relu(self.conv3(torch.cat((x, x1, x2), 1)), 0.2)
        x4 = F.leaky_relu(self.conv4(torch.cat((x, x1, x2, x3), 1)), 0.2)
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int, operations: Any) -> None:
        super().__init__()
        ops = resolve_operations(operations)
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch, ops)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch, ops)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch, ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN generator. ``scale`` 2 and 1 pixel-unshuffle the input first (by 2 and 4), so the
    trunk always upsamples x4 and the net's overall factor is ``scale``.

    forward: x [N, num_in_ch, H, W] in [0, 1] (H, W multiples of 2 for scale 2) -> [N, num_out_ch,
    H*scale, W*scale] (not clamped).
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, scale: int = 2, num_feat: int = 64,
                 num_block: int = 23, num_grow_ch: int = 32, operations: Any = None) -> None:
        super().__init__()
        ops = resolve_operations(operations)
        if scale not in (1, 2, 4):
            raise ValueError(f"RRDBNet scale must be 1, 2 or 4, got {scale}")
        self.scale = scale
        unshuffle = {1: 4, 2: 2, 4: 1}[scale]
        self.unshuffle = unshuffle
        self.conv_first = ops.Conv2d(num_in_ch * unshuffle ** 2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch, ops) for _ in range(num_block)])
        self.conv_body = ops.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = ops.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = ops.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = ops.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = ops.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # same channel order as basicsr's pixel_unshuffle (c * s^2 + dy * s + dx)
        feat = F.pixel_unshuffle(x, self.unshuffle) if self.unshuffle > 1 else x
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))


@torch.no_grad()
def tiled_upscale(model: Callable[[torch.Tensor], torch.Tensor], img: torch.Tensor, scale: int,
                  tile: int = 400, tile_pad: int = 40, pre_pad: int = 0,
                  mod_scale: Optional[int] = None) -> torch.Tensor:
    """Upscale ``img`` [1, C, H, W] (float, RGB, [0, 1]) with ``model`` the way RealESRGANer does.

    pre-pad (reflect, bottom/right), mod-pad to a multiple of ``mod_scale`` (default 2 for scale 2,
    4 for scale 1), then ``tile`` x ``tile`` input tiles, each run with up to ``tile_pad`` pixels of
    context, only the tile's own area written out; ``tile=0`` runs the whole image at once. The
    pads are cropped again; the result is **not** clamped (RealESRGANer clamps after this step).
    Returns [1, C, H*scale, W*scale] on ``img``'s device and dtype.
    """
    x = img
    if pre_pad:
        x = F.pad(x, (0, pre_pad, 0, pre_pad), mode="reflect")
    if mod_scale is None:
        mod_scale = {2: 2, 1: 4}.get(scale)
    pad_h = pad_w = 0
    if mod_scale:
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % mod_scale, (-w) % mod_scale
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")

    if tile and tile > 0:
        out = _tile_process(model, x, scale, tile, tile_pad)
    else:
        out = model(x)

    h, w = out.shape[-2:]
    out = out[:, :, : h - pad_h * scale, : w - pad_w * scale]
    if pre_pad:
        h, w = out.shape[-2:]
        out = out[:, :, : h - pre_pad * scale, : w - pre_pad * scale]
    return out


def _tile_process(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, scale: int,
                  tile: int, tile_pad: int) -> torch.Tensor:
    b, c, height, width = x.shape
    out = x.new_zeros((b, c, height * scale, width * scale))
    for ty in range(math.ceil(height / tile)):
        for tx in range(math.ceil(width / tile)):
            x0, y0 = tx * tile, ty * tile
            x1, y1 = min(x0 + tile, width), min(y0 + tile, height)
            px0, py0 = max(x0 - tile_pad, 0), max(y0 - tile_pad, 0)
            px1, py1 = min(x1 + tile_pad, width), min(y1 + tile_pad, height)
            res = model(x[:, :, py0:py1, px0:px1])
            ox, oy = (x0 - px0) * scale, (y0 - py0) * scale
            out[:, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale] = \
                res[:, :, oy:oy + (y1 - y0) * scale, ox:ox + (x1 - x0) * scale]
    return out


def enhance(model: Callable[[torch.Tensor], torch.Tensor], image_rgb: torch.Tensor, scale: int = 2,
            tile: int = 400, tile_pad: int = 40, pre_pad: int = 0) -> torch.Tensor:
    """RealESRGANer.enhance without the final Lanczos resize, on an RGB image.

    image_rgb: [H, W, 3] uint8 (or float in [0, 255]). Returns [H*scale, W*scale, 3] uint8 RGB,
    i.e. upstream's ``(clamp(out, 0, 1) * 255).round()``. The model runs in the dtype/device of
    its first parameter (fp16 if the caller ``.half()``-ed it, as upstream on CUDA).
    """
    p = next(iter(model.parameters())) if isinstance(model, nn.Module) else None
    x = image_rgb.to(torch.float32)
    max_range = 65535.0 if float(x.max()) > 256 else 255.0
    x = (x / max_range).permute(2, 0, 1).unsqueeze(0)
    if p is not None:
        x = x.to(p.device, p.dtype)
    out = tiled_upscale(model, x, scale, tile=tile, tile_pad=tile_pad, pre_pad=pre_pad)
    out = out[0].float().clamp_(0, 1).permute(1, 2, 0)
    out = (out * max_range).round()
    return out.to(torch.uint16 if max_range == 65535.0 else torch.uint8).cpu()
