"""Model preparation and settings presets that only the speed tests and the benchmarks use.

Not bit-faithful unless stated: ``prepare_models(drop_unused=True)`` alone only frees the
motion modules upstream never runs (same output); its ``dtype=torch.bfloat16``,
``channels_last`` and ``compile`` options and ``fast_preset`` (few-step DPM-Solver++/UniPC,
CFG on the first steps only) change the frames.
"""

from __future__ import annotations

from typing import Optional

import torch


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
    return {"decode_chunk": 1, "low_vram": True}
