"""ComfyUI's attention selection for the Hallo networks (sage, flash, xformers, SDPA, ...).

Install with ``install()`` once ComfyUI is importable; hallo_core then routes every attention
call through ``comfy.ldm.modules.attention.optimized_attention`` with the head-split layout.
"""

from __future__ import annotations


def comfy_attention(q, k, v):
    """q [b, h, n, d], k/v [b, h, m, d] -> [b, h, n, d] via ComfyUI's current selection."""
    from comfy.ldm.modules.attention import optimized_attention

    return optimized_attention(q, k, v, q.shape[1], skip_reshape=True, skip_output_reshape=True)


def install():
    """Route hallo_core's attention through ComfyUI; returns the previous function."""
    from hallo_core.models.attention import set_attention

    return set_attention(comfy_attention)
