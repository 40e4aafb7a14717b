"""The ComfyExtension that lists every node of the pack."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from . import common


def node_list() -> list[type[io.ComfyNode]]:
    from . import (audio, download, face, loaders, long_video, motion, paste_back, reference, sampler, speakers,
                   upscale)

    out: list[type[io.ComfyNode]] = []
    for mod in (loaders, audio, face, reference, motion, sampler, long_video, paste_back, speakers, upscale,
                download):
        out += mod.NODES
    return out


class HalloExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return node_list()


def setup() -> HalloExtension:
    """One-time setup (ComfyUI 0.8.0 never calls ComfyExtension.on_load): register models/hallo and
    route Hallo's attention through ComfyUI's selection (--use-sage-attention etc. apply to it too)."""
    from . import comfy_attention

    common.register_model_folder()
    comfy_attention.install()
    common.log.info("Hallo: attention through ComfyUI's selection (%s)", comfy_attention.selected())
    return HalloExtension()
