"""Hallo2's temporal CodeFormer: VQGAN encoder/generator around a codebook-prediction transformer
whose layers add attention and an MLP across the frames of a window.

Module names follow the official checkpoint (``hallo2/net_g.pth`` -> ``params_ema``), so loading is a
plain strict ``load_state_dict``. The default constructor arguments give the released network
(113,037,763 parameters, 623 keys); smaller values give tiny test models.

Public entry point: :meth:`TemporalCodeFormer.inference`.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..operations import embedding, resolve_operations
from .common import MultiheadAttention


def _swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def _group_norm(operations: Any, channels: int, groups: int) -> nn.Module:
    return operations.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


class ResBlock(nn.Module):
    """GroupNorm-swish-conv twice, with a 1x1 ``conv_out`` shortcut when the width changes."""

    def __init__(self, in_ch: int, out_ch: int, operations: Any, groups: int) -> None:
        super().__init__()
        ops = resolve_operations(operations)
        self.in_channels, self.out_channels = in_ch, out_ch
        self.norm1 = _group_norm(ops, in_ch, groups)
        self.conv1 = ops.Conv2d(in_ch, out_ch, kernel_size=3, stride=1, padding=1)
        self.norm2 = _group_norm(ops, out_ch, groups)
        self.conv2 = ops.Conv2d(out_ch, out_ch, kernel_size=3, stride=1, padding=1)
        if in_ch != out_ch:
            self.conv_out = ops.Conv2d(in_ch, out_ch, kernel_size=1, stride=1, padding=0)

    def forward(self, x_in: torch.Tensor) -> torch.Tensor:
        x = self.conv1(_swish(self.norm1(x_in)))
        x = self.conv2(_swish(self.norm2(x)))
        if self.in_channels != self.out_channels:
            x_in = self.conv_out(x_in)
        return x + x_in


class AttnBlock(nn.Module):
    """Single-head self-attention over all H*W positions (1x1 conv projections), residual."""

    def __init__(self, ch: int, operations: Any, groups: int) -> None:
        super().__init__()
        ops = resolve_operations(operations)
        self.norm = _group_norm(ops, ch, groups)
        self.q = ops.Conv2d(ch, ch, kernel_size=1, stride=1, padding=0)
        self.k = ops.Conv2d(ch, ch, kernel_size=1, stride=1, padding=0)
        self.v = ops.Conv2d(ch, ch, kernel_size=1, stride=1, padding=0)
        self.proj_out = ops.Conv2d(ch, ch, kernel_size=1, stride=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        b, c, hh, ww = h.shape
        q = self.q(h).reshape(b, 1, c, hh * ww).transpose(2, 3)
        k = self.k(h).reshape(b, 1, c, hh * ww).transpose(2, 3)
        v = self.v(h).reshape(b, 1, c, hh * ww).transpose(2, 3)
        out = F.scaled_dot_product_attention(q, k, v, scale=float(c) ** -0.5)
        out = out.transpose(2, 3).reshape(b, c, hh, ww)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Zero-pad right/bottom by one, then a 3x3 stride-2 conv without padding (VQGAN style)."""

    def __init__(self, ch: int, operations: Any) -> None:
        super().__init__()
        self.conv = resolve_operations(operations).Conv2d(ch, ch, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0))


class Upsample(nn.Module):
    def __init__(self, ch: int, operations: Any) -> None:
        super().__init__()
        self.conv = resolve_operations(operations).Conv2d(ch, ch, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Encoder(nn.Module):
    """``blocks`` as in the checkpoint; ``taps[res]`` is the block index whose output is the skip
    feature at resolution ``res`` (the last block before each downsample)."""

    def __init__(self, img_size: int, nf: int, ch_mult: Sequence[int], res_blocks: int,
                 attn_resolutions: Sequence[int], emb_dim: int, operations: Any, groups: int) -> None:
        super().__init__()
        ops = resolve_operations(operations)
        blocks: List[nn.Module] = [ops.Conv2d(3, nf, kernel_size=3, stride=1, padding=1)]
        self.taps: Dict[int, int] = {}
        res = img_size
        in_mult = (1,) + tuple(ch_mult)
        ch = nf
        for i, mult in enumerate(ch_mult):
            ch = nf * in_mult[i]
            out_ch = nf * mult
            for _ in range(res_blocks):
                blocks.append(ResBlock(ch, out_ch, ops, groups))
                ch = out_ch
                if res in attn_resolutions:
                    blocks.append(AttnBlock(ch, ops, groups))
            self.taps[res] = len(blocks) - 1
            if i != len(ch_mult) - 1:
                blocks.append(Downsample(ch, ops))
                res //= 2
        blocks += [ResBlock(ch, ch, ops, groups), AttnBlock(ch, ops, groups), ResBlock(ch, ch, ops, groups),
                   _group_norm(ops, ch, groups), ops.Conv2d(ch, emb_dim, kernel_size=3, stride=1, padding=1)]
        self.blocks = nn.ModuleList(blocks)


class Generator(nn.Module):
    """``blocks`` as in the checkpoint; ``taps[res]`` is the first ResBlock at resolution ``res``,
    after which the fidelity fusion is applied."""

    def __init__(self, img_size: int, nf: int, ch_mult: Sequence[int], res_blocks: int,
                 attn_resolutions: Sequence[int], emb_dim: int, operations: Any, groups: int) -> None:
        super().__init__()
        ops = resolve_operations(operations)
        ch = nf * ch_mult[-1]
        res = img_size // 2 ** (len(ch_mult) - 1)
        blocks: List[nn.Module] = [ops.Conv2d(emb_dim, ch, kernel_size=3, stride=1, padding=1),
                                   ResBlock(ch, ch, ops, groups), AttnBlock(ch, ops, groups),
                                   ResBlock(ch, ch, ops, groups)]
        self.taps: Dict[int, int] = {}
        for i in reversed(range(len(ch_mult))):
            out_ch = nf * ch_mult[i]
            for r in range(res_blocks):
                blocks.append(ResBlock(ch, out_ch, ops, groups))
                ch = out_ch
                if r == 0:
                    self.taps[res] = len(blocks) - 1
                if res in attn_resolutions:
                    blocks.append(AttnBlock(ch, ops, groups))
            if i != 0:
                blocks.append(Upsample(ch, ops))
                res *= 2
        blocks += [_group_norm(ops, ch, groups), ops.Conv2d(ch, 3, kernel_size=3, stride=1, padding=1)]
        self.blocks = nn.ModuleList(blocks)


class VectorQuantizer(nn.Module):
    """Only the codebook (``quantize.embedding.weight``) is needed at inference."""

    def __init__(self, codebook_size: int, emb_dim: int, operations: Any) -> None:
        super().__init__()
        ops = resolve_operations(operations)
        self.embedding = embedding(ops, codebook_size, emb_dim)

    def lookup(self, indices: torch.Tensor, n: int, h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
        """Rows of the codebook for ``indices`` [n*h*w] -> [n, C, h, w]."""
        feat = self.embedding.weight.to(dtype)[indices.reshape(-1)]
        return feat.view(n, h, w, -1).permute(0, 3, 1, 2).contiguous()


class TransformerSALayer(nn.Module):
    """Pre-LN spatial self-attention + MLP, then Hallo2's temporal attention + temporal MLP.

    Temporal attention has no frame-index encoding: each spatial token attends over the frames
    of the window with only its spatial position embedding added to q and k, so the layer is
    permutation-equivariant over frames.
    """

    def __init__(self, dim: int, n_head: int, dim_mlp: int, operations: Any) -> None:
        super().__init__()
        ops = resolve_operations(operations)
        self.self_attn = MultiheadAttention(dim, n_head, operations=ops)
        self.linear1 = ops.Linear(dim, dim_mlp)
        self.linear2 = ops.Linear(dim_mlp, dim)
        self.norm1 = ops.LayerNorm(dim)
        self.norm2 = ops.LayerNorm(dim)
        self.temp_norm = ops.LayerNorm(dim)
        self.temp_attn = MultiheadAttention(dim, n_head, operations=ops)
        self.temp_ffn_norm = ops.LayerNorm(dim)
        self.temp_linear1 = ops.Linear(dim, dim_mlp)
        self.temp_linear2 = ops.Linear(dim_mlp, dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, frames: int) -> torch.Tensor:
        """x: [b*f, L, C] (frame-major within each batch item); pos: [L, C]."""
        h = self.norm1(x)
        qk = h + pos
        x = x + self.self_attn(qk, qk, h)
        x = x + self.linear2(F.gelu(self.linear1(self.norm2(x))))

        n, length, c = x.shape
        b = n // frames
        # [b*f, L, C] -> [b*L, f, C]: every spatial token attends across the window's frames
        xt = x.view(b, frames, length, c).transpose(1, 2).reshape(b * length, frames, c)
        h = self.temp_norm(xt)
        qk = h + pos.repeat(b, 1).unsqueeze(1)
        xt = xt + self.temp_attn(qk, qk, h)
        x = xt.view(b, length, frames, c).transpose(1, 2).reshape(n, length, c)

        return x + self.temp_linear2(F.gelu(self.temp_linear1(self.temp_ffn_norm(x))))


class FuseSftBlock(nn.Module):
    """Controllable feature transformation: ``dec + w * (dec * scale + shift)``."""

    def __init__(self, ch: int, operations: Any, groups: int) -> None:
        super().__init__()
        ops = resolve_operations(operations)
        self.encode_enc = ResBlock(2 * ch, ch, ops, groups)
        self.scale = nn.Sequential(ops.Conv2d(ch, ch, kernel_size=3, padding=1), nn.LeakyReLU(0.2),
                                   ops.Conv2d(ch, ch, kernel_size=3, padding=1))
        self.shift = nn.Sequential(ops.Conv2d(ch, ch, kernel_size=3, padding=1), nn.LeakyReLU(0.2),
                                   ops.Conv2d(ch, ch, kernel_size=3, padding=1))

    def forward(self, enc: torch.Tensor, dec: torch.Tensor, w: float) -> torch.Tensor:
        enc = self.encode_enc(torch.cat([enc, dec], dim=1))
        return w * (dec * self.scale(enc) + self.shift(enc)) + dec


def calc_mean_std(feat: torch.Tensor, eps: float = 1e-5) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel spatial mean and sqrt(unbiased var + eps) of a [N, C, H, W] tensor."""
    n, c = feat.shape[:2]
    flat = feat.reshape(n, c, -1)
    std = (flat.var(dim=2) + eps).sqrt().view(n, c, 1, 1)
    mean = flat.mean(dim=2).view(n, c, 1, 1)
    return mean, std


def adaptive_instance_normalization(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Renormalise ``content`` to the channel statistics of ``style`` (AdaIN)."""
    s_mean, s_std = calc_mean_std(style)
    c_mean, c_std = calc_mean_std(content)
    return (content - c_mean) / c_std * s_std + s_mean


class TemporalCodeFormer(nn.Module):
    """Hallo2's temporal CodeFormer (upstream ``CodeFormer`` in basicsr/archs/codeformer_arch.py).

    Defaults build the released network. For tiny test models shrink ``img_size``, ``nf``,
    ``ch_mult``, ``emb_dim``, ``dim_embd``, ``codebook_size``, ``n_layers`` and ``norm_groups``;
    ``connect_list`` names the resolutions (as strings, like the checkpoint) that get fusion blocks.
    ``operations``: layer namespace (torch.nn by default, or comfy.ops.*).
    """

    def __init__(self, dim_embd: int = 512, n_head: int = 8, n_layers: int = 9, codebook_size: int = 1024,
                 connect_list: Sequence[str] = ("32", "64", "128", "256"), img_size: int = 512, nf: int = 64,
                 ch_mult: Sequence[int] = (1, 2, 2, 4, 4, 8), res_blocks: int = 2,
                 attn_resolutions: Sequence[int] = (16,), emb_dim: int = 256, norm_groups: int = 32,
                 operations: Any = None) -> None:
        super().__init__()
        ops = resolve_operations(operations)
        self.img_size = img_size
        self.latent_res = img_size // 2 ** (len(ch_mult) - 1)
        self.connect_list = [str(s) for s in connect_list]
        # registered first so the state-dict order matches the checkpoint (position_emb is key 0)
        self.position_emb = nn.Parameter(torch.zeros(self.latent_res ** 2, dim_embd))
        self.encoder = Encoder(img_size, nf, ch_mult, res_blocks, attn_resolutions, emb_dim, ops, norm_groups)
        self.quantize = VectorQuantizer(codebook_size, emb_dim, ops)
        self.generator = Generator(img_size, nf, ch_mult, res_blocks, attn_resolutions, emb_dim, ops, norm_groups)
        self.feat_emb = ops.Linear(emb_dim, dim_embd)
        self.ft_layers = nn.Sequential(*[TransformerSALayer(dim_embd, n_head, 2 * dim_embd, ops)
                                         for _ in range(n_layers)])
        self.idx_pred_layer = nn.Sequential(ops.LayerNorm(dim_embd), ops.Linear(dim_embd, codebook_size, bias=False))
        channels = {img_size // 2 ** i: nf * m for i, m in enumerate(ch_mult)}
        self.fuse_convs_dict = nn.ModuleDict(
            {s: FuseSftBlock(channels[int(s)], ops, norm_groups) for s in self.connect_list})

    def _encode(self, x: torch.Tensor, offload: Optional[torch.device]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        taps = {self.encoder.taps[int(s)]: s for s in self.connect_list}
        skips: Dict[str, torch.Tensor] = {}
        for i, block in enumerate(self.encoder.blocks):
            x = block(x)
            if i in taps:
                skips[taps[i]] = x if offload is None else x.to(offload)
        return x, skips

    def _decode(self, x: torch.Tensor, skips: Dict[str, torch.Tensor], w: float) -> torch.Tensor:
        taps = {self.generator.taps[int(s)]: s for s in self.connect_list}
        for i, block in enumerate(self.generator.blocks):
            x = block(x)
            if i in taps and w > 0:
                s = taps[i]
                x = self.fuse_convs_dict[s](skips[s].to(x.device, x.dtype), x, w)
        return x

    def predict_codes(self, lq_feat: torch.Tensor, frames: int) -> torch.Tensor:
        """Transformer + head: lq_feat [b*f, emb, r, r] -> code indices [b*f, r*r, 1]."""
        pos = self.position_emb.to(lq_feat.dtype)
        h = self.feat_emb(lq_feat.flatten(2).transpose(1, 2))
        for layer in self.ft_layers:
            h = layer(h, pos, frames)
        logits = self.idx_pred_layer(h)
        # softmax before top-1, as upstream: ties resolve the same way
        return torch.topk(F.softmax(logits, dim=2), 1, dim=2)[1]

    @torch.no_grad()
    def inference(self, x: torch.Tensor, w: float = 0.5, adain: bool = True,
                  frame_chunk: Optional[int] = None,
                  offload_skips: Optional[torch.device] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Restore a window of aligned faces.

        Args:
            x: [b, f, 3, S, S] RGB in [-1, 1], S = ``img_size`` (512 for the released model).
            w: fidelity weight (0 = pure codebook output, 1 = most faithful to the input).
            adain: renormalise the looked-up codes to the encoder features' statistics (upstream
                inference uses True).
            frame_chunk: run the per-frame encoder/generator on at most this many frames at a time
                (None = all at once, as upstream). Only the transformer mixes frames, so this changes
                memory, not the result (up to float reassociation).
            offload_skips: device to park the encoder skip features on (upstream parks them on CPU).

        Returns:
            (out [b, f, 3, S, S] in nominally [-1, 1] (not clamped), top_idx [b*f, r*r, 1]).
        """
        b, f = x.shape[:2]
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"expected {self.img_size}x{self.img_size} faces, got {tuple(x.shape[-2:])}")
        x = x.reshape(b * f, *x.shape[2:])
        n = x.shape[0]
        step = n if not frame_chunk else max(1, int(frame_chunk))

        feats, skip_parts = [], []
        for i in range(0, n, step):
            lq, sk = self._encode(x[i:i + step], offload_skips)
            feats.append(lq)
            skip_parts.append(sk)
        lq_feat = torch.cat(feats) if len(feats) > 1 else feats[0]

        top_idx = self.predict_codes(lq_feat, f)
        r = self.latent_res
        quant = self.quantize.lookup(top_idx, n, r, r, lq_feat.dtype)
        if adain:
            quant = adaptive_instance_normalization(quant, lq_feat)

        outs = []
        for j, i in enumerate(range(0, n, step)):
            outs.append(self._decode(quant[i:i + step], skip_parts[j], w))
            skip_parts[j] = {}
        out = torch.cat(outs) if len(outs) > 1 else outs[0]
        return out.view(b, f, *out.shape[1:]), top_idx
