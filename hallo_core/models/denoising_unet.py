"""Denoising UNet (``denoising_unet.*``): the path upstream Hallo actually executes.

Upstream builds this model with ``from_config`` (training mode) and enables gradient
checkpointing, so the official inference runs the training branch of every block: in the
cross-attention levels and the mid block each layer runs
resnet -> spatial transformer (self-attention also over the reference tokens) -> audio
transformer (pose/face/lip weighted) -> motion module over [2 motion frames + F frames];
in ``down_blocks.3`` and ``up_blocks.0`` only the resnets run, their motion modules exist
in the checkpoint but are never executed. All GroupNorms are per frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from .layers import fk
from .operations import resolve_operations
from .transformers import check_masks
from .unet_blocks import UNetSkeleton, check_latent_size


@dataclass
class ReferenceState:
    """Per-clip reference data for the denoiser, made by ``DenoisingUNet.prepare_reference``.

    ``fast=True``: per block, the reference keys/values (already projected by ``attn1``) and
    the motion-frame prefix; reused unchanged by every denoising step of the clip.
    ``fast=False``: the raw banks, run through the plain upstream-equivalent path.
    """

    entries: Dict[str, object]
    batch: int
    fast: bool


class DenoisingUNet(UNetSkeleton):
    """The 3D denoising UNet with motion and hierarchical audio modules."""

    def __init__(self, cfg: dict, operations=None, device=None, dtype=None):
        super().__init__(cfg, video=True, operations=operations, device=device, dtype=dtype)
        c0 = cfg["block_out_channels"][0]
        ops = resolve_operations(operations)
        self.conv_norm_out = ops.GroupNorm(cfg["norm_num_groups"], c0, eps=cfg["norm_eps"], **fk(device, dtype))
        self.conv_out = ops.Conv2d(c0, cfg["out_channels"], 3, padding=1, **fk(device, dtype))

    def drop_unused_motion_modules(self) -> int:
        """Free the motion modules upstream never runs: those of the levels without layers
        (down_blocks.3, up_blocks.0).

        Returns the number of parameters freed. Load the checkpoint (strictly) first: after
        this call those keys are gone from the state dict.
        """
        freed = 0
        for lvl in (*self.down_blocks, *self.up_blocks):
            if lvl.attentions is None and lvl.motion_modules is not None:
                freed += sum(p.numel() for p in lvl.motion_modules.parameters())
                lvl.motion_modules = None
        return freed

    @torch.no_grad()
    def prepare_reference(
        self, banks: Dict[str, torch.Tensor], batch: int = 2, fast: bool = True
    ) -> ReferenceState:
        """Turn reference banks into per-clip state (call once per clip, reuse for every step).

        Args:
            banks: output of ``ReferenceUNet.forward`` ([batch * S, hw, C] per block, S = 3).
            batch: batch rows of the denoiser input (2 with CFG).
            fast: project the reference keys/values once here (faithful-fast path); False keeps
                the plain upstream-equivalent path.
        """
        if not fast:
            return ReferenceState(dict(banks), batch, False)
        entries = {}
        for name in self.attention_names():
            bank = banks[name]
            attn = self.get_submodule(name)
            side = int(round((bank.shape[1]) ** 0.5))
            hw = _level_hw(bank.shape[1], side)
            entries[name] = attn.prepare_reference(bank, batch, hw)
        return ReferenceState(entries, batch, True)

    def forward(
        self,
        sample: torch.Tensor,
        timestep,
        encoder_hidden_states: torch.Tensor,
        reference: Union[None, Dict[str, torch.Tensor], ReferenceState] = None,
        face_features: Optional[torch.Tensor] = None,
        full_masks: Optional[Sequence[torch.Tensor]] = None,
        face_masks: Optional[Sequence[torch.Tensor]] = None,
        lip_masks: Optional[Sequence[torch.Tensor]] = None,
        audio_tokens: Optional[torch.Tensor] = None,
        motion_scale: Optional[Sequence[float]] = None,
        num_uncond: Optional[int] = None,
        zero_audio_rows: int = 0,
    ) -> torch.Tensor:
        """Predict v for a clip.

        Args:
            sample: noisy latents [B, 4, F, h, w] (upstream CFG: B=2, uncond row first).
            timestep: scalar, 0-d or 1-element tensor; expanded to B (not B*F), as upstream.
            encoder_hidden_states: face tokens [B, T, D], shared by the F frames of a row.
            reference: None (no reference: self-only attention and 4 zero motion frames, as
                upstream with an empty bank), the banks dict from the reference UNet (plain
                path), or ``prepare_reference(...)`` output.
            face_features: face-locator residual [B, C0, F, h, w] added after conv_in, or None.
            full_masks, face_masks, lip_masks: 4 levels each (latent size /1, /2, /4, /8),
                level l shaped [B*F, h_l*w_l] (upstream) or [1, h_l*w_l] (broadcast).
            audio_tokens: [B, F, 32, 768]; the uncond row holds zeros (after AudioProj).
            motion_scale: (pose, face, lip) weights for all 16 audio blocks, or None (plain sum).
            num_uncond: leading rows whose spatial self-attention ignores the reference;
                default B // 2 (upstream CFG).
            zero_audio_rows: leading rows whose ``audio_tokens`` the caller guarantees are zeros;
                their audio cross-attention output is the to_out bias, exactly, so it is not
                computed. 0 (default) computes every row, as upstream.

        Returns:
            v prediction [B, 4, F, h, w].
        """
        b, _, frames, hh, ww = sample.shape
        check_latent_size(hh, ww)
        if audio_tokens is None:
            raise ValueError("audio_tokens are required (zeros for the unconditional row)")
        masks = (
            check_masks(full_masks, "full_masks"),
            check_masks(face_masks, "face_masks"),
            check_masks(lip_masks, "lip_masks"),
        )
        nu = b // 2 if num_uncond is None else int(num_uncond)
        dt = self.dtype
        refs = _reference_lookup(reference, b)
        ctx = encoder_hidden_states.to(dt)
        audio = audio_tokens.to(dt).reshape(b * frames, *audio_tokens.shape[2:])
        temb = self.embed_time(timestep, b, sample.device)

        def fold(x):  # [B, C, F, H, W] -> [(B F), C, H, W]
            return x.transpose(1, 2).reshape(-1, x.shape[1], *x.shape[3:])

        def layer(lvl, j, name, h):
            h, prefix = lvl.attentions[j].forward_read(h, ctx, frames, refs(name), nu)
            h = lvl.audio_modules[j](h, audio, *masks, motion_scale, zero_audio_rows * frames)
            return lvl.motion_modules[j](h, frames, prefix)

        h = self.conv_in(fold(sample.to(dt)))
        if face_features is not None:
            h = h + fold(face_features.to(dt))
        h = self.walk(h, temb, frames, layer)
        h = self.conv_out(F.silu(self.conv_norm_out(h)))
        return h.view(b, frames, *h.shape[1:]).transpose(1, 2)


def _level_hw(n: int, side: int):
    if side * side != n:
        raise ValueError("reference banks must come from square latents (as upstream)")
    return side, side


def _reference_lookup(reference, batch: int):
    """name -> what SpatialTransformer.forward_read expects for that block."""
    if reference is None:
        return lambda name: None
    if isinstance(reference, ReferenceState):
        if reference.batch != batch:
            raise ValueError(f"reference prepared for batch {reference.batch}, sample has batch {batch}")
        return reference.entries.__getitem__
    if isinstance(reference, dict):
        for name, bank in reference.items():
            if bank.shape[0] % batch:
                raise ValueError(f"bank {name} has {bank.shape[0]} rows, not a multiple of batch {batch}")
        return reference.__getitem__
    raise TypeError(f"unsupported reference type {type(reference).__name__}")
