"""Construction of the SD1.5-shaped UNet skeleton shared by the reference and denoising UNets.

Attribute names and registration order follow the official state dict: top level
``conv_in, time_embedding, down_blocks, up_blocks, mid_block`` and per level
``attentions, resnets, audio_modules, motion_modules, downsamplers|upsamplers``.
"""

from __future__ import annotations

from typing import Optional

from torch import nn

from . import config as C
from .layers import Downsample, ResnetBlock, TimestepEmbedding, Upsample, fk, resolve_ops
from .transformers import AudioTransformer, MotionModule, SpatialTransformer


class Level(nn.Module):
    """One down/mid/up level; which lists exist depends on the level type."""

    def __init__(self):
        super().__init__()
        self.cross = False
        self.level = 0  # mask level / depth of the audio modules


class UNetSkeleton(nn.Module):
    """Builds conv_in, time embedding and all levels. ``video=True`` adds Hallo's audio and motion modules."""

    def __init__(self, cfg: dict, video: bool, operations=None, device=None, dtype=None):
        super().__init__()
        cfg = C.validate_unet_config(cfg)
        self.config = cfg
        ops = resolve_ops(operations)
        self.ops = ops
        kw = {"ops": ops, "device": device, "dtype": dtype}
        ch = cfg["block_out_channels"]
        heads = cfg["attention_head_dim"]  # SD1.5 quirk: this is the number of heads
        groups, eps = cfg["norm_num_groups"], cfg["norm_eps"]
        xdim = cfg["cross_attention_dim"]
        nl = cfg["layers_per_block"]
        temb = ch[0] * 4
        self.heads = heads

        def resnet(cin, cout):
            return ResnetBlock(cin, cout, temb, groups, eps, **kw)

        def spatial(c):
            return SpatialTransformer(c, heads, xdim, groups, **kw)

        def audio(c, cin, level):
            return AudioTransformer(c, heads * (cin // heads), heads, groups, C.AUDIO_ATTENTION_DIM, level, **kw)

        def motion(c):
            return MotionModule(c, C.MOTION_HEADS, C.MOTION_NORM_GROUPS, C.MOTION_PE_MAX_LEN, **kw)

        self.conv_in = ops.Conv2d(cfg["in_channels"], ch[0], 3, padding=1, **fk(device, dtype))
        self.time_embedding = TimestepEmbedding(ch[0], temb, **kw)

        self.down_blocks = nn.ModuleList()
        cout = ch[0]
        for i in range(4):
            cin_block, cout = cout, ch[i]
            lvl = Level()
            lvl.cross, lvl.level = i < 3, i
            cins = [cin_block if j == 0 else cout for j in range(nl)]
            if lvl.cross:
                lvl.attentions = nn.ModuleList([spatial(cout) for _ in range(nl)])
            lvl.resnets = nn.ModuleList([resnet(ci, cout) for ci in cins])
            if video and lvl.cross:
                lvl.audio_modules = nn.ModuleList([audio(cout, ci, i) for ci in cins])
            if video:
                lvl.motion_modules = nn.ModuleList([motion(cout) for _ in range(nl)])
            if i < 3:
                lvl.downsamplers = nn.ModuleList([Downsample(cout, **kw)])
            self.down_blocks.append(lvl)

        self.up_blocks = nn.ModuleList()
        rc = list(reversed(ch))
        prev = rc[0]
        for i in range(4):
            cout, cin_block = rc[i], rc[min(i + 1, 3)]
            lvl = Level()
            lvl.cross, lvl.level = i > 0, 3 - i
            n = nl + 1
            rins = [(prev if j == 0 else cout) + (cin_block if j == n - 1 else cout) for j in range(n)]
            if lvl.cross:
                lvl.attentions = nn.ModuleList([spatial(cout) for _ in range(n)])
            lvl.resnets = nn.ModuleList([resnet(r, cout) for r in rins])
            if video and lvl.cross:
                lvl.audio_modules = nn.ModuleList([audio(cout, cin_block, 3 - i) for _ in range(n)])
            if video:
                lvl.motion_modules = nn.ModuleList([motion(cout) for _ in range(n)])
            if i < 3:
                lvl.upsamplers = nn.ModuleList([Upsample(cout, **kw)])
            self.up_blocks.append(lvl)
            prev = cout

        mid = Level()
        mid.cross, mid.level = True, 3
        mid.attentions = nn.ModuleList([spatial(ch[3])])
        mid.resnets = nn.ModuleList([resnet(ch[3], ch[3]), resnet(ch[3], ch[3])])
        if video:
            mid.audio_modules = nn.ModuleList([audio(ch[3], ch[3], 3)])
            mid.motion_modules = nn.ModuleList([motion(ch[3])])
        self.mid_block = mid

    def attention_names(self):
        """Names of the 16 spatial transformers, the keys of the reference banks."""
        names = []
        for prefix, blocks in (("down_blocks", self.down_blocks), ("up_blocks", self.up_blocks)):
            for i, lvl in enumerate(blocks):
                if lvl.cross:
                    names += [f"{prefix}.{i}.attentions.{j}" for j in range(len(lvl.attentions))]
        names.append("mid_block.attentions.0")
        return names

    @property
    def dtype(self):
        return self.conv_in.weight.dtype

    @property
    def device(self):
        return self.conv_in.weight.device


def check_latent_size(h: int, w: int, name: str = "latents") -> None:
    if h % 8 or w % 8:
        raise ValueError(f"{name} height/width must be multiples of 8 (3 downsamplings), got {h}x{w}")


def level_downsampler(lvl: Level) -> Optional[nn.Module]:
    ds = getattr(lvl, "downsamplers", None)
    return ds[0] if ds is not None else None


def level_upsampler(lvl: Level) -> Optional[nn.Module]:
    us = getattr(lvl, "upsamplers", None)
    return us[0] if us is not None else None
