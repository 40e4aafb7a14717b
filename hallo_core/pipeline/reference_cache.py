"""Reference-UNet banks cached per video, and the reference UNet offloaded between its passes.

Faithful (same output up to float rounding):

* ``reference_banks`` runs the reference UNet on the two reference-image items (R.u, R.c)
  once per video and on the four motion-frame items per clip (upstream: all six items every
  clip). Every op of the reference UNet is per image (GroupNorm per sample, self-attention
  within the image, cross-attention to that item's face tokens), so splitting the batch only
  changes float rounding. Both R items are kept: upstream's row tiling makes the conditional
  frames read R.u and R.c alternately (docs/deviations.md).
  A motion frame that *is* the reference image (every video's first clip: upstream starts
  from the reference image repeated) gives the reference image's banks, so its items are
  taken from the cached pair instead of being run again (4 of the 6 items of clip 1).
* ``reference_pass`` puts the reference UNet on the compute device for one pass. Who moves it
  is the network's ``placement``: hallo_core's own (``OwnPlacement``: with ``low_vram`` the UNet
  lives in host RAM between passes), or the host's model manager (ComfyUI's nodes set one that
  loads and unloads through ComfyUI's model patchers, so nothing moves behind its back).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import ContextManager, Dict, Iterator, Optional, Protocol, Sequence

import torch

# face-token rows for the motion items [M1, M2, M1, M2] so that the pairs are upstream's
# (M1.c, M2.u | M1.u, M2.c): batch [R, M1, M2] x 2 with tokens tiled [u, c, u, c, u, c]
_MOTION_TOKENS = (1, 0, 0, 1)


class Placement(Protocol):
    """How a host makes the reference UNet ready for one pass, and what it does afterwards."""

    def reference_pass(self, net, device, low_vram: bool, shape: Optional[tuple] = None) -> ContextManager:
        """A context manager: on entry ``net.reference_unet`` computes on ``device``; on exit, with
        ``low_vram``, the host may take its memory back. ``shape``: the pass's latent batch
        [items, 4, h, w], for the host's memory estimate."""


class OwnPlacement:
    """hallo_core as its own model manager (the CLI, scripts).

    With ``low_vram`` the reference UNet (~0.86B params), needed once per clip, lives in host RAM
    and is moved to the device for each pass (sequential offload); otherwise it stays where it is.
    """

    def reference_pass(self, net, device, low_vram: bool, shape: Optional[tuple] = None) -> ContextManager:
        return offloaded(net.reference_unet, device, low_vram)


def placement_of(net) -> Placement:
    """The network's placement: the host's when it set one, else ``OwnPlacement``."""
    return getattr(net, "placement", None) or OwnPlacement()


def reference_pass(net, device, low_vram: bool, shape: Optional[tuple] = None) -> ContextManager:
    """``with reference_pass(net, device, low_vram, latents.shape): net.reference_unet(latents, ...)``."""
    return placement_of(net).reference_pass(net, device, low_vram, tuple(shape) if shape is not None else None)


@contextmanager
def offloaded(module: torch.nn.Module, device, enabled: bool) -> Iterator[torch.nn.Module]:
    """Move ``module`` to ``device`` for the block, then back to the CPU (``enabled`` only).

    Only for modules no model manager owns: ComfyUI's nodes never reach it (their placement
    goes through ComfyUI's patchers).
    """
    if not enabled:
        yield module
        return
    dev = torch.device(device)
    module.to(dev)
    try:
        yield module
    finally:
        module.to("cpu")
        if dev.type == "cuda":
            torch.cuda.empty_cache()


@torch.no_grad()
def reference_image_banks(net, ref_latent: torch.Tensor, face_tokens: torch.Tensor,
                          offload: bool = False) -> Dict[str, torch.Tensor]:
    """Banks of the reference image with the [u, c] face tokens: {name: [2, hw, C]} = (R.u, R.c).

    Constant for a video: compute once and pass to ``reference_banks``.
    """
    dt = face_tokens.dtype
    x = ref_latent.to(face_tokens.device, dt).repeat(2, 1, 1, 1)
    with reference_pass(net, face_tokens.device, offload, x.shape):
        return net.reference_unet(x, 0, face_tokens)


@torch.no_grad()
def reference_banks(net, image_banks: Dict[str, torch.Tensor], motion_latents: Optional[torch.Tensor],
                    face_tokens: torch.Tensor, cfg: bool = True, offload: bool = False,
                    is_reference: Sequence[bool] = (False, False)) -> Dict[str, torch.Tensor]:
    """Upstream's per-clip banks from the cached reference-image banks + a motion-only pass.

    Args:
        image_banks: ``reference_image_banks`` output (R.u, R.c per block).
        motion_latents: [2, 4, h, w] VAE latents of the two motion frames (rows of frames
            flagged in ``is_reference`` are not read; None when both are flagged).
        face_tokens: [2, T, D] (uncond, cond).
        cfg: True gives the CFG batch [R.u, M1.c, M2.u, R.c, M1.u, M2.c]; False the conditional
            batch-1 banks [R.c, M1.c, M2.c] (upstream has no such path; see deviations).
        is_reference: per motion frame, True when its pixels equal the reference image's:
            its items are then the reference image's banks with the same face tokens.
    Returns:
        {name: bank} exactly as ``ReferenceUNet.forward`` on the full batch would give.
    """
    dt = face_tokens.dtype
    # items in upstream order after R: (frame, face-token row) per motion item
    items = [(j % 2, t) for j, t in enumerate(_MOTION_TOKENS)] if cfg else [(0, 1), (1, 1)]
    run = [i for i, (f, _) in enumerate(items) if not is_reference[f]]
    mb = {}
    if run:
        m = motion_latents.to(face_tokens.device, dt)
        x = m[[items[i][0] for i in run]]
        with reference_pass(net, face_tokens.device, offload, x.shape):
            mb = net.reference_unet(x, 0, face_tokens[[items[i][1] for i in run]])
    out = {}
    for name, r in image_banks.items():
        rows = [r[1:2]] if not cfg else [r[:1]]
        for i, (f, t) in enumerate(items):
            if cfg and i == 2:
                rows.append(r[1:2])  # R.c opens the conditional copy
            rows.append(mb[name][run.index(i)][None] if i in run else r[t:t + 1])
        out[name] = torch.cat(rows)
    return out
