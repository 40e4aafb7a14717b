"""The SD1.5-shaped UNet both Hallo UNets are made of, and its one down/mid/up walk.

Attribute names and registration order follow the official state dict: top level
``conv_in, time_embedding, down_blocks, up_blocks, mid_block`` and per level
``attentions, resnets, audio_modules, motion_modules, downsamplers|upsamplers``.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import torch
from torch import nn

from . import config as C
from .layers import Downsample, ResnetBlock, TimestepEmbedding, Upsample, fk, time_embed
from .operations import resolve_operations
from .transformers import AudioTransformer, MotionModule, SpatialTransformer


def _module_list(modules: Optional[Sequence[nn.Module]]) -> Optional[nn.ModuleList]:
    return None if modules is None else nn.ModuleList(modules)


class UNetLevel(nn.Module):
    """One entry of ``down_blocks`` / ``up_blocks``, or the ``mid_block``.

    In a cross-attention level each resnet is followed by a layer: spatial transformer, then
    (denoiser only) audio module and motion module. The mid block has one such layer between
    its two resnets. A list the level does not have is None. ``down_blocks.3`` and
    ``up_blocks.0`` hold motion modules in the checkpoint but have no layers, so the walk
    never runs them.
    """

    def __init__(
        self,
        resnets: Sequence[nn.Module],
        attentions: Optional[Sequence[nn.Module]] = None,
        audio_modules: Optional[Sequence[nn.Module]] = None,
        motion_modules: Optional[Sequence[nn.Module]] = None,
        downsamplers: Optional[Sequence[nn.Module]] = None,
        upsamplers: Optional[Sequence[nn.Module]] = None,
    ):
        super().__init__()
        self.attentions = _module_list(attentions)
        self.resnets = nn.ModuleList(resnets)
        self.audio_modules = _module_list(audio_modules)
        self.motion_modules = _module_list(motion_modules)
        self.downsamplers = _module_list(downsamplers)
        self.upsamplers = _module_list(upsamplers)


# layer(level, j, name, h) -> h: runs layer j of a cross-attention level after its resnet;
# ``name`` is that layer's spatial transformer, the key of its reference bank.
LayerFn = Callable[[UNetLevel, int, str, torch.Tensor], torch.Tensor]


class UNetSkeleton(nn.Module):
    """conv_in, time embedding and all levels. ``video=True`` adds Hallo's audio and motion modules."""

    def __init__(self, cfg: dict, video: bool, operations=None, device=None, dtype=None):
        super().__init__()
        cfg = C.validate_unet_config(cfg)
        self.config = cfg
        ops = resolve_operations(operations)
        kw = {"operations": ops, "device": device, "dtype": dtype}
        ch = cfg["block_out_channels"]
        heads = cfg["attention_head_dim"]  # SD1.5 quirk: this is the number of heads
        groups, eps = cfg["norm_num_groups"], cfg["norm_eps"]
        nl = cfg["layers_per_block"]
        temb = ch[0] * 4

        def level(cout, resnet_ins, audio_ins, depth, cross=True, down=False, up=False):
            """A level with one layer per entry of ``audio_ins``, the width each audio module's
            inner size derives from; ``depth`` picks the mask resolution of its audio modules.
            The lists are built in checkpoint order, so seeded default init stays the same."""
            n = len(audio_ins)
            return UNetLevel(
                attentions=[SpatialTransformer(cout, heads, cfg["cross_attention_dim"], groups, **kw)
                            for _ in range(n)] if cross else None,
                resnets=[ResnetBlock(ci, cout, temb, groups, eps, **kw) for ci in resnet_ins],
                audio_modules=[AudioTransformer(cout, heads * (ci // heads), heads, groups, C.AUDIO_ATTENTION_DIM,
                                                depth, **kw) for ci in audio_ins] if video and cross else None,
                motion_modules=[MotionModule(cout, C.MOTION_HEADS, C.MOTION_NORM_GROUPS, C.MOTION_PE_MAX_LEN, **kw)
                                for _ in range(n)] if video else None,
                downsamplers=[Downsample(cout, **kw)] if down else None,
                upsamplers=[Upsample(cout, **kw)] if up else None,
            )

        self.conv_in = ops.Conv2d(cfg["in_channels"], ch[0], 3, padding=1, **fk(device, dtype))
        self.time_embedding = TimestepEmbedding(ch[0], temb, **kw)

        self.down_blocks = nn.ModuleList()
        cin = ch[0]
        for i, cout in enumerate(ch):
            ins = [cin] + [cout] * (nl - 1)
            self.down_blocks.append(level(cout, ins, ins, i, cross=i < 3, down=i < 3))
            cin = cout

        # an up level takes nl + 1 skips; the last is as wide as the next level's input
        self.up_blocks = nn.ModuleList()
        rc = ch[::-1]
        prev = rc[0]
        for i, cout in enumerate(rc):
            skip = rc[min(i + 1, 3)]
            ins = [(prev if j == 0 else cout) + (skip if j == nl else cout) for j in range(nl + 1)]
            self.up_blocks.append(level(cout, ins, [skip] * (nl + 1), 3 - i, cross=i > 0, up=i < 3))
            prev = cout

        self.mid_block = level(ch[3], [ch[3], ch[3]], [ch[3]], 3)

    def attention_names(self) -> List[str]:
        """Names of the 16 spatial transformers in the order the walk runs them (the bank keys)."""
        def names(prefix, blocks):
            return [f"{prefix}.{i}.attentions.{j}" for i, lvl in enumerate(blocks)
                    if lvl.attentions is not None for j in range(len(lvl.attentions))]

        return names("down_blocks", self.down_blocks) + ["mid_block.attentions.0"] + names("up_blocks", self.up_blocks)

    def embed_time(self, timestep, batch: int, device) -> torch.Tensor:
        cfg = self.config
        return time_embed(self.time_embedding, timestep, batch, cfg["block_out_channels"][0],
                          cfg["flip_sin_to_cos"], cfg["freq_shift"], device, self.dtype)

    def walk(self, h: torch.Tensor, temb: torch.Tensor, frames: int, layer: LayerFn) -> torch.Tensor:
        """conv_in output [(B F), C, H, W] through the down, mid and up levels."""
        skips = [h]
        for i, lvl in enumerate(self.down_blocks):
            for j, res in enumerate(lvl.resnets):
                h = res(h, temb, frames)
                if lvl.attentions is not None:
                    h = layer(lvl, j, f"down_blocks.{i}.attentions.{j}", h)
                skips.append(h)
            if lvl.downsamplers is not None:
                h = lvl.downsamplers[0](h)
                skips.append(h)

        mid = self.mid_block
        h = mid.resnets[0](h, temb, frames)
        h = layer(mid, 0, "mid_block.attentions.0", h)
        h = mid.resnets[1](h, temb, frames)

        for i, lvl in enumerate(self.up_blocks):
            for j, res in enumerate(lvl.resnets):
                h = res(torch.cat([h, skips.pop()], dim=1), temb, frames)
                if lvl.attentions is not None:
                    h = layer(lvl, j, f"up_blocks.{i}.attentions.{j}", h)
            if lvl.upsamplers is not None:
                h = lvl.upsamplers[0](h)
        return h

    # set by HalloNet.set_compute_dtype when a host stores weights in one dtype and computes in
    # another (ComfyUI's manual-cast layers cast each weight to the input's dtype)
    compute_dtype = None

    @property
    def dtype(self):
        """The dtype inputs are cast to: the compute dtype when set, else the weights'."""
        return self.compute_dtype or self.conv_in.weight.dtype

    @property
    def device(self):
        return self.conv_in.weight.device


def check_latent_size(h: int, w: int, name: str = "latents") -> None:
    if h % 8 or w % 8:
        raise ValueError(f"{name} height/width must be multiples of 8 (3 downsamplings), got {h}x{w}")
