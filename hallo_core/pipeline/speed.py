"""Speed and memory helpers: per-video reference cache, offload, model preparation, fast preset.

Faithful (same output up to float rounding):

* ``reference_banks`` runs the reference UNet on the two reference-image items (R.u, R.c)
  once per video and on the four motion-frame items per clip (upstream: all six items every
  clip). Every op of the reference UNet is per image (GroupNorm per sample, self-attention
  within the image, cross-attention to that item's face tokens), so splitting the batch only
  changes float rounding. Both R items are kept: upstream's row tiling makes the conditional
  frames read R.u and R.c alternately (docs/deviations.md).
* ``prepare_models(drop_unused=True)`` frees the motion modules upstream never runs.
* ``offloaded`` keeps the reference UNet on the CPU between its passes (CUDA only).

Not bit-faithful (opt-in): ``prepare_models(dtype=torch.bfloat16 / float16, channels_last,
compile)`` and ``fast_preset`` (few-step DPM-Solver++/UniPC, CFG on the first steps only).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, Iterator, Optional

import torch

# face-token rows for the motion items [M1, M2, M1, M2] so that the pairs are upstream's
# (M1.c, M2.u | M1.u, M2.c): batch [R, M1, M2] x 2 with tokens tiled [u, c, u, c, u, c]
_MOTION_TOKENS = (1, 0, 0, 1)


@contextmanager
def offloaded(module: torch.nn.Module, device, enabled: bool) -> Iterator[torch.nn.Module]:
    """Move ``module`` to ``device`` for the block, then back to the CPU (only on CUDA).

    Sequential offload: the reference UNet (~0.86B params) is needed once per clip, so it
    can live in host RAM while the denoiser runs its 40 steps.
    """
    dev = torch.device(device)
    if not enabled or dev.type != "cuda":
        yield module
        return
    module.to(dev)
    try:
        yield module
    finally:
        module.to("cpu")
        torch.cuda.empty_cache()


@torch.no_grad()
def reference_image_banks(net, ref_latent: torch.Tensor, face_tokens: torch.Tensor,
                          offload: bool = False) -> Dict[str, torch.Tensor]:
    """Banks of the reference image with the [u, c] face tokens: {name: [2, hw, C]} = (R.u, R.c).

    Constant for a video: compute once and pass to ``reference_banks``.
    """
    dt = face_tokens.dtype
    with offloaded(net.reference_unet, face_tokens.device, offload) as ref:
        return ref(ref_latent.to(face_tokens.device, dt).repeat(2, 1, 1, 1), 0, face_tokens)


@torch.no_grad()
def reference_banks(net, image_banks: Dict[str, torch.Tensor], motion_latents: torch.Tensor,
                    face_tokens: torch.Tensor, cfg: bool = True,
                    offload: bool = False) -> Dict[str, torch.Tensor]:
    """Upstream's per-clip banks from the cached reference-image banks + a motion-only pass.

    Args:
        image_banks: ``reference_image_banks`` output (R.u, R.c per block).
        motion_latents: [2, 4, h, w] VAE latents of the two motion frames.
        face_tokens: [2, T, D] (uncond, cond).
        cfg: True gives the CFG batch [R.u, M1.c, M2.u, R.c, M1.u, M2.c]; False the conditional
            batch-1 banks [R.c, M1.c, M2.c] (upstream has no such path; see deviations).
    Returns:
        {name: bank} exactly as ``ReferenceUNet.forward`` on the full batch would give.
    """
    dt = face_tokens.dtype
    m = motion_latents.to(face_tokens.device, dt)
    with offloaded(net.reference_unet, face_tokens.device, offload) as ref:
        if cfg:
            tokens = face_tokens[list(_MOTION_TOKENS)]
            mb = ref(torch.cat([m, m]), 0, tokens)
        else:
            mb = ref(m, 0, face_tokens[1:])
    out = {}
    for name, r in image_banks.items():
        x = mb[name]
        if cfg:
            out[name] = torch.cat([r[:1], x[0:2], r[1:2], x[2:4]])
        else:
            out[name] = torch.cat([r[1:2], x])
    return out


def prepare_models(net, vae=None, dtype: Optional[torch.dtype] = None, device=None,
                   drop_unused: bool = True, channels_last: bool = False,
                   compile: bool = False, compile_mode: Optional[str] = None) -> dict:
    """Get a loaded HalloNet (and optionally the diffusers VAE) ready for sampling.

    Args:
        net: HalloNet with its checkpoint already loaded (strict load first: dropping the
            unused motion modules removes their keys).
        vae: a ``VaeCodec`` or None.
        dtype: cast weights (``torch.float16`` as upstream on GPU; ``torch.bfloat16`` is fast
            mode only, not faithful).
        device: move the models there.
        drop_unused: free ``down_blocks.3`` / ``up_blocks.0`` motion modules (never run).
        channels_last: channels-last conv weights (fast-mode option; rounding may change).
        compile: ``torch.compile`` the denoising UNet in place (``Module.compile``); the
            first call is slow, later clips reuse the graph (static shapes).
    Returns:
        a small report: parameters freed, dtype, device, compile/channels-last flags.
    """
    freed = net.denoising_unet.drop_unused_motion_modules() if drop_unused else 0
    if device is not None or dtype is not None:
        net.to(device=device, dtype=dtype)
    if vae is not None and device is not None:
        vae.vae.to(device)
    if channels_last:
        net.to(memory_format=torch.channels_last)
        if vae is not None:
            vae.vae.to(memory_format=torch.channels_last)
    if compile:
        net.denoising_unet.compile(mode=compile_mode, dynamic=False)
    p = next(net.denoising_unet.parameters())
    return {"freed_params": freed, "dtype": str(p.dtype), "device": str(p.device),
            "channels_last": channels_last, "compiled": compile}


def fast_preset(scheduler: str = "unipc", steps: int = 20, cfg_steps: Optional[int] = None) -> dict:
    """Keyword arguments for ``GenerationSettings`` in fast mode (previews, not faithful).

    ``cfg_steps`` defaults to the first half of the steps: late steps mostly refine detail,
    where the unconditional branch adds little.
    """
    if scheduler not in ("dpmpp", "unipc", "euler"):
        raise ValueError("fast mode uses a multistep scheduler: dpmpp, unipc or euler")
    return {"scheduler": scheduler, "steps": int(steps),
            "cfg_steps": int(cfg_steps) if cfg_steps is not None else max(1, int(steps) // 2)}


def low_vram_preset() -> dict:
    """Keyword arguments for ``GenerationSettings`` in low-VRAM mode (same frames; slower).

    Reference UNet offloaded to the CPU between passes, VAE decoded one frame at a time with
    sliced attention. Combine with ``prepare_models(dtype=torch.float16)``.
    """
    return {"offload_reference": True, "decode_chunk": 1, "low_vram": True}
