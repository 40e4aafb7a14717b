"""ComfyUI's attention selection for the Hallo networks (sage, flash, xformers, SDPA, ...).

The pack installs it when ComfyUI loads it (``extension.setup``); hallo_core then routes every
attention call through ``comfy.ldm.modules.attention.optimized_attention`` with the head-split
layout. Outside ComfyUI nothing installs it and the engine keeps PyTorch SDPA.
"""

from __future__ import annotations


def comfy_attention(q, k, v):
    """q [b, h, n, d], k/v [b, h, m, d] -> [b, h, n, d] via ComfyUI's current selection."""
    # looked up per call, not bound at install: the selection is a module global that ComfyUI
    # (or another pack) may still change after this pack loads
    from comfy.ldm.modules.attention import optimized_attention

    return optimized_attention(q, k, v, q.shape[1], skip_reshape=True, skip_output_reshape=True)


def install():
    """Route hallo_core's attention through ComfyUI; returns the previous function."""
    from hallo_core.models.attention import set_attention

    return set_attention(comfy_attention)


def installed() -> bool:
    from hallo_core.models.attention import installed_attention

    return installed_attention() is comfy_attention


def selected() -> str:
    """Name of the function ComfyUI selected (e.g. attention_pytorch, attention_sub_quad)."""
    from comfy.ldm.modules.attention import optimized_attention

    return getattr(optimized_attention, "__name__", type(optimized_attention).__name__)
