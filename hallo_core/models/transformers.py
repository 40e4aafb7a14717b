"""Spatial (reference-aware), hierarchical audio and temporal (motion) transformers.

Inputs are folded video tensors ``[(B F), C, H, W]``; ``frames`` says how many frames each
batch row holds.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from .layers import Attention, FeedForward, fk, from_tokens, to_tokens
from .operations import resolve_operations


def _per_frame(x: torch.Tensor, frames: int) -> torch.Tensor:
    """[B, ...] -> [(B F), ...] repeating each row ``frames`` times (batch-major)."""
    if frames == 1:
        return x
    return x[:, None].expand(x.shape[0], frames, *x.shape[1:]).reshape(-1, *x.shape[1:])


def _reference_rows(ref: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Reference features for folded rows ``start..stop-1`` of a [(B F)] batch, upstream's way.

    Upstream tiles the per-item reference ``d[:, 0]`` ([B, N, C]) with ``.repeat(1, F, 1, 1)``
    on a 3-D tensor, which prepends a dim and *tiles* the items: folded row r gets item
    ``r % B``, not ``r // F``. With B=2 and even F, the conditional frames alternate between
    the reference features made with the unconditional (even frames) and the conditional
    (odd frames) face tokens.
    """
    idx = torch.arange(start, stop, device=ref.device) % ref.shape[0]
    return ref.index_select(0, idx)


def _self_and_reference(own: torch.Tensor, ref: torch.Tensor, start: int) -> torch.Tensor:
    """[own keys | reference keys] along tokens for folded rows start.. (one buffer, no repeat+cat)."""
    rows, n, c = own.shape
    b = ref.shape[0]
    out = own.new_empty(rows, n + ref.shape[1], c)
    out[:, :n] = own
    if start % b == 0 and rows % b == 0:
        # row start+j reads item j % B: a broadcast copy, no gathered temporary
        out[:, n:].view(rows // b, b, ref.shape[1], c).copy_(ref.to(own.dtype)[None].expand(rows // b, -1, -1, -1))
    else:
        out[:, n:] = _reference_rows(ref, start, start + rows).to(own.dtype)
    return out


class SpatialBlock(nn.Module):
    """Self-attention (optionally over reference tokens too), face cross-attention, GEGLU FF."""

    def __init__(self, dim, heads, context_dim, operations=None, device=None, dtype=None):
        super().__init__()
        ops = resolve_operations(operations)
        self.norm1 = ops.LayerNorm(dim, **fk(device, dtype))
        self.attn1 = Attention(dim, heads, dim // heads, None, ops, device, dtype)
        self.norm2 = ops.LayerNorm(dim, **fk(device, dtype))
        self.attn2 = Attention(dim, heads, dim // heads, context_dim, ops, device, dtype)
        self.norm3 = ops.LayerNorm(dim, **fk(device, dtype))
        self.ff = FeedForward(dim, 4, ops, device, dtype)

    def cross_and_ff(self, h: torch.Tensor, context: torch.Tensor, frames: int) -> torch.Tensor:
        """Face-token cross-attention then FF; context [B, T, D] is shared by the frames of a row."""
        a = self.attn2
        k = _per_frame(a.to_k(context), frames)
        v = _per_frame(a.to_v(context), frames)
        h = a.attend(a.to_q(self.norm2(h)), k, v) + h
        return self.ff(self.norm3(h)) + h


class TransformerWrapper(nn.Module):
    """GroupNorm, ``proj_in`` (1x1 conv, or Linear on tokens), one transformer block, ``proj_out``.

    ``block(ops)`` is built between the two projections, in checkpoint order, so a seeded
    default initialisation draws the same numbers as a layer-by-layer build.
    """

    def __init__(self, channels, inner, groups, block, linear=False, operations=None, device=None, dtype=None):
        super().__init__()
        ops = resolve_operations(operations)

        def proj(cin, cout):
            if linear:
                return ops.Linear(cin, cout, **fk(device, dtype))
            return ops.Conv2d(cin, cout, 1, **fk(device, dtype))

        self.norm = ops.GroupNorm(groups, channels, eps=1e-6, affine=True, **fk(device, dtype))
        self.proj_in = proj(channels, inner)
        self.transformer_blocks = nn.ModuleList([block(ops)])
        self.proj_out = proj(inner, channels)


class SpatialTransformer(TransformerWrapper):
    """1x1 projections around one SpatialBlock, residual (SD1.5 Transformer2DModel)."""

    def __init__(self, channels, heads, context_dim, groups, operations=None, device=None, dtype=None):
        def block(ops):
            return SpatialBlock(channels, heads, context_dim, ops, device, dtype)

        super().__init__(channels, channels, groups, block, False, operations, device, dtype)

    @property
    def block(self) -> SpatialBlock:
        return self.transformer_blocks[0]

    def _enter(self, x):
        return to_tokens(self.proj_in(self.norm(x)))

    def _leave(self, h, x):
        return self.proj_out(from_tokens(h, x.shape[2], x.shape[3])) + x

    # -- reference UNet ("write" mode) --------------------------------------------------------
    def forward_write(self, x: torch.Tensor, context: torch.Tensor, bank_only: bool = False):
        """Reference pass: returns (output, bank) where bank = LN1 input of self-attention [N, HW, C].

        ``context`` [M, T, D] is tiled ``repeat(N // M)`` over the batch as upstream does, so a
        batch [R,M1,M2,R,M1,M2] with [u,c] tokens pairs (R.u, M1.c, M2.u, R.c, M1.u, M2.c).
        """
        blk = self.block
        h = self._enter(x)
        n1 = blk.norm1(h)
        if bank_only:
            return None, n1
        h = blk.attn1(n1) + h
        ctx = context.repeat(h.shape[0] // context.shape[0], 1, 1)
        h = blk.attn2(blk.norm2(h), ctx) + h
        h = blk.ff(blk.norm3(h)) + h
        return self._leave(h, x), n1

    # -- denoising UNet ("read" mode) ---------------------------------------------------------
    def prepare_reference(self, bank: torch.Tensor, batch: int, hw: Tuple[int, int]) -> dict:
        """Per-clip constants for the fast path: reference K/V of row 0 of each batch item, motion prefix."""
        blk = self.block
        w = blk.attn1.to_k.weight
        bank = bank.to(w.dtype if w.dtype.is_floating_point else bank.dtype)
        d = bank.view(batch, -1, *bank.shape[1:])
        ref = d[:, 0]
        return {
            "k": blk.attn1.to_k(ref),
            "v": blk.attn1.to_v(ref),
            "prefix": motion_prefix(bank, batch, hw),
        }

    def forward_read(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        frames: int,
        reference=None,
        num_uncond: int = 0,
    ):
        """Denoising pass. Returns (output, motion prefix [B, C, S-1, H, W]).

        ``reference``: None (no reference: self-only attention, 4 zero motion frames, as
        upstream with an empty bank), a bank tensor [B*S, HW, C] (plain upstream-equivalent
        path: every row attends to [self, ref], then the unconditional rows are recomputed
        self-only and overwrite), or the dict from ``prepare_reference`` (fast path: the
        unconditional rows are computed self-only once, the conditional rows use the cached
        reference K/V). Which reference item a row sees follows upstream's tiling, see
        ``_reference_rows``.
        """
        blk = self.block
        bf = x.shape[0]
        batch = bf // frames
        h = self._enter(x)
        n1 = blk.norm1(h)
        a = blk.attn1
        u = num_uncond * frames
        if reference is None:
            h = a(n1) + h
            prefix = x.new_zeros(batch, x.shape[1], 4, x.shape[2], x.shape[3])
        elif isinstance(reference, dict):
            parts = []
            if u > 0:
                parts.append(a(n1[:u]) + h[:u])
            if u < bf:
                nc = n1[u:]
                k = _self_and_reference(a.to_k(nc), reference["k"], u)
                v = _self_and_reference(a.to_v(nc), reference["v"], u)
                parts.append(a.attend(a.to_q(nc), k, v) + h[u:])
            h = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
            prefix = reference["prefix"].to(x.dtype)
        else:
            bank = reference.to(n1.dtype)
            ref = _reference_rows(bank.view(batch, -1, *bank.shape[1:])[:, 0], 0, bf)
            h_all = a(n1, torch.cat([n1, ref], dim=1)) + h
            if u > 0:
                h_u = a(n1[:u], n1[:u]) + h[:u]
                h = torch.cat([h_u, h_all[u:]], dim=0)
            else:
                h = h_all
            prefix = motion_prefix(bank, batch, (x.shape[2], x.shape[3]))
        h = blk.cross_and_ff(h, context, frames)
        return self._leave(h, x), prefix


def motion_prefix(bank: torch.Tensor, batch: int, hw: Tuple[int, int]) -> torch.Tensor:
    """Bank [B*S, HW, C] -> motion frames [B, C, S-1, H, W] (rows 1.. of each batch item)."""
    d = bank.view(batch, -1, *bank.shape[1:])[:, 1:]  # [B, S-1, HW, C]
    b, s, _, c = d.shape
    return d.permute(0, 3, 1, 2).reshape(b, c, s, hw[0], hw[1])


class AudioBlock(nn.Module):
    """Per-frame self-attention, three masked audio cross-attentions (pose/face/lip) with 1x1 zero convs, FF."""

    def __init__(self, dim, heads, audio_dim, operations=None, device=None, dtype=None):
        super().__init__()
        ops = resolve_operations(operations)
        conv = lambda: ops.Conv2d(dim, dim, 1, **fk(device, dtype))  # noqa: E731
        self.zero_conv_full = conv()
        self.zero_conv_face = conv()
        self.zero_conv_lip = conv()
        self.attn1 = Attention(dim, heads, dim // heads, None, ops, device, dtype)
        self.norm1 = ops.LayerNorm(dim, **fk(device, dtype))
        self.attn2_0 = Attention(dim, heads, dim // heads, audio_dim, ops, device, dtype)
        self.attn2_1 = Attention(dim, heads, dim // heads, audio_dim, ops, device, dtype)
        self.attn2_2 = Attention(dim, heads, dim // heads, audio_dim, ops, device, dtype)
        self.norm2 = ops.LayerNorm(dim, **fk(device, dtype))
        self.ff = FeedForward(dim, 4, ops, device, dtype)
        self.norm3 = ops.LayerNorm(dim, **fk(device, dtype))

    def forward(self, h, audio, masks, motion_scale, hw, zero_rows: int = 0):
        """``zero_rows``: leading rows whose audio tokens are all zeros (the CFG unconditional row)."""
        h = self.attn1(self.norm1(h)) + h
        n = self.norm2(h)
        branches = []
        for attn, conv, m in (
            (self.attn2_0, self.zero_conv_full, masks[0]),
            (self.attn2_1, self.zero_conv_face, masks[1]),
            (self.attn2_2, self.zero_conv_lip, masks[2]),
        ):
            if zero_rows:
                o = _zero_context_rows(attn, n, audio, zero_rows)
            else:
                o = attn(n, audio)
            # the mask scales the attention output before the conv, so the conv bias is unmasked
            o = o * m.to(n.dtype)[:, :, None]
            branches.append(to_tokens(conv(from_tokens(o, hw[0], hw[1]))))
        full, face, lip = branches
        if motion_scale is not None:
            h = motion_scale[0] * full + motion_scale[1] * face + motion_scale[2] * lip + h
        else:
            h = full + face + lip + h
        return self.ff(self.norm3(h)) + h


def _zero_context_rows(attn: Attention, n: torch.Tensor, audio: torch.Tensor, zero_rows: int) -> torch.Tensor:
    """``attn(n, audio)`` when the first ``zero_rows`` rows of ``audio`` are zeros.

    to_k/to_v have no bias, so zero tokens give K = V = 0: the softmax weights are uniform, the
    weighted sum of zeros is exactly 0 and to_out returns exactly its bias, whatever the query.
    Those rows skip the query projection and the attention; the rest run as usual.
    """
    rest = attn(n[zero_rows:], audio[zero_rows:])
    out = attn.to_out[0]
    # through the layer itself, so cast-at-forward layers (ComfyUI ops) give their bias as used
    const = out(rest.new_zeros(1, 1, out.weight.shape[1])).expand(zero_rows, rest.shape[1], -1)
    return torch.cat([const, rest])


class AudioTransformer(TransformerWrapper):
    """1x1 projections C->inner->C around one AudioBlock, residual."""

    def __init__(self, channels, inner, heads, groups, audio_dim, level, operations=None, device=None, dtype=None):
        def block(ops):
            return AudioBlock(inner, heads, audio_dim, ops, device, dtype)

        super().__init__(channels, inner, groups, block, False, operations, device, dtype)
        self.level = level  # which of the 4 mask resolutions this block uses

    def forward(self, x, audio, full_masks, face_masks, lip_masks, motion_scale, zero_rows: int = 0):
        """x [(B F), C, H, W]; audio [(B F), 32, D]; masks: sequences of 4 levels [(B F) or 1, HW];
        zero_rows: leading rows of ``audio`` known to be zeros."""
        hw = (x.shape[2], x.shape[3])
        h = to_tokens(self.proj_in(self.norm(x)))
        lv = self.level
        h = self.transformer_blocks[0](h, audio, (full_masks[lv], face_masks[lv], lip_masks[lv]), motion_scale, hw,
                                     zero_rows)
        return self.proj_out(from_tokens(h, hw[0], hw[1])) + x


def sinusoidal_pe(d_model: int, max_len: int) -> torch.Tensor:
    """[1, max_len, d_model] table computed with the same ops as AnimateDiff's PositionalEncoding."""
    position = torch.arange(max_len).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(1, max_len, d_model)
    pe[0, :, 0::2] = torch.sin(position * div_term)
    pe[0, :, 1::2] = torch.cos(position * div_term)
    return pe


class PositionalEncoding(nn.Module):
    """The frame-position table, a checkpoint buffer (``pos_encoder.pe``).

    A host that loads a network partially (ComfyUI's ModelPatcher) moves only the weights of
    layers, so the buffer can stay on the offload device while the attention computes elsewhere.
    ``table`` then keeps one copy on the compute device, made on first use, instead of copying the
    buffer on every call.
    """

    def __init__(self, dim, max_len, device=None, dtype=None):
        super().__init__()
        pe = sinusoidal_pe(dim, max_len)
        self.register_buffer("pe", pe.to(device=device, dtype=dtype or pe.dtype))
        self._copy = None  # (device, dtype, source buffer, its version, copy)

    def table(self, n: int, device, dtype) -> torch.Tensor:
        """The first ``n`` rows on ``device`` in ``dtype`` (the buffer itself when it is there)."""
        pe = self.pe
        if pe.device == device and pe.dtype == dtype:
            self._copy = None  # loaded with its module: no second copy to keep
            return pe[:, :n]
        c = self._copy
        if c is None or c[0] != device or c[1] != dtype or c[2] is not pe or c[3] != pe._version:
            c = self._copy = (device, dtype, pe, pe._version, pe.to(device, dtype))
        return c[4][:, :n]


class TemporalAttention(Attention):
    """Self-attention along frames; the PE is added to its (normalised) input."""

    def __init__(self, dim, heads, max_len, operations=None, device=None, dtype=None):
        super().__init__(dim, heads, dim // heads, None, operations, device, dtype)
        self.pos_encoder = PositionalEncoding(dim, max_len, device, dtype)

    def forward(self, x):
        x = x + self.pos_encoder.table(x.shape[1], x.device, x.dtype)
        return super().forward(x)


class TemporalBlock(nn.Module):
    def __init__(self, dim, heads, max_len, operations=None, device=None, dtype=None):
        super().__init__()
        ops = resolve_operations(operations)
        self.attention_blocks = nn.ModuleList(
            [TemporalAttention(dim, heads, max_len, ops, device, dtype) for _ in range(2)]
        )
        self.norms = nn.ModuleList([ops.LayerNorm(dim, **fk(device, dtype)) for _ in range(2)])
        self.ff = FeedForward(dim, 4, ops, device, dtype)
        self.ff_norm = ops.LayerNorm(dim, **fk(device, dtype))

    def forward(self, t):
        for attn, norm in zip(self.attention_blocks, self.norms):
            t = attn(norm(t)) + t
        return self.ff(self.ff_norm(t)) + t


class TemporalTransformer(TransformerWrapper):
    """Linear projections on tokens around one TemporalBlock, residual."""

    def __init__(self, channels, heads, groups, max_len, operations=None, device=None, dtype=None):
        def block(ops):
            return TemporalBlock(channels, heads, max_len, ops, device, dtype)

        super().__init__(channels, channels, groups, block, True, operations, device, dtype)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        bf, c, hh, ww = x.shape
        b, n = bf // frames, hh * ww
        t = self.proj_in(to_tokens(self.norm(x)))
        # LN/FF are per token, so one layout change serves both attention blocks
        t = t.view(b, frames, n, c).transpose(1, 2).reshape(b * n, frames, c)
        for blk in self.transformer_blocks:
            t = blk(t)
        t = t.view(b, n, frames, c).transpose(1, 2).reshape(bf, n, c)
        return from_tokens(self.proj_out(t), hh, ww) + x


class MotionModule(nn.Module):
    """AnimateDiff v2 temporal module (``temporal_transformer.*``)."""

    def __init__(self, channels, heads, groups, max_len, operations=None, device=None, dtype=None):
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels, heads, groups, max_len, operations, device, dtype)

    def forward(self, x: torch.Tensor, frames: int, prefix: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x [(B F), C, H, W]; prefix [B, C, P, H, W] is prepended along frames, then dropped again."""
        if prefix is None or prefix.shape[2] == 0:
            return self.temporal_transformer(x, frames)
        bf, c, hh, ww = x.shape
        b, p = bf // frames, prefix.shape[2]
        pre = prefix.to(x.dtype).permute(0, 2, 1, 3, 4)
        xx = torch.cat([pre, x.view(b, frames, c, hh, ww)], dim=1).reshape(b * (p + frames), c, hh, ww)
        out = self.temporal_transformer(xx, p + frames)
        return out.view(b, p + frames, c, hh, ww)[:, p:].reshape(bf, c, hh, ww)


def check_masks(masks: Optional[Sequence[torch.Tensor]], name: str) -> Sequence[torch.Tensor]:
    if masks is None or len(masks) != 4:
        raise ValueError(f"{name} must be a sequence of 4 mask levels")
    return masks
