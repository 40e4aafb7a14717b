"""ReferenceNet encoding node: the portrait is encoded once and reused for every clip."""

from __future__ import annotations

from comfy_api.latest import io

from hallo_core.assets.layout import rel_path

from . import common as C
from .comfy_vae import vae_codec
from .loaders import HalloVaeType


VAE_TOOLTIP = f"{rel_path('vae')}: from 'Hallo VAE Loader' or core 'Load VAE'."


def vae_input(tooltip: str):
    """The VAE socket: the pack's own loader (the official VAE folder) or core 'Load VAE'."""
    return io.MultiType.Input("vae", types=[HalloVaeType, io.Vae], tooltip=tooltip)


class HalloReference(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Hallo_Reference",
            display_name="Hallo Reference Encode",
            category=f"{C.CATEGORY}/sampling",
            description="Encodes the portrait for the ReferenceNet: the reference latent (VAE distribution mean "
                        "x 0.18215, as upstream), the face tokens and face-locator features, and the "
                        "ReferenceNet's features of the portrait. Computed once, reused by every clip and by "
                        "every sampler run with the same model, VAE and face (a mismatch is an error).",
            inputs=[
                C.HalloModelType.Input("hallo_model", tooltip="From 'Hallo Model Loader'."),
                vae_input(VAE_TOOLTIP),
                C.HalloFaceDataType.Input("face_data", tooltip="From 'Hallo Face Analysis'."),
            ],
            outputs=[C.HalloReferenceType.Output(display_name="reference",
                                                 tooltip="Encoded portrait for the Hallo samplers.")],
        )

    @classmethod
    def execute(cls, hallo_model, vae, face_data) -> io.NodeOutput:
        from hallo_core.pipeline.generate import GenerationSettings, prepare_context

        codec, _ = vae_codec(vae)
        # may be partial: the device and the compute dtype are passed explicitly. The reference UNet
        # is loaded by its pass (the network's placement), with that pass's own estimate.
        C.load_hallo(hallo_model, C.reference_memory(hallo_model, int(face_data.size)))
        # default settings = what the samplers use (fast path, 16-frame clips); computed on the model's
        # device, then kept on ComfyUI's intermediate device between nodes
        st = GenerationSettings(device=hallo_model.patcher.load_device, dtype=hallo_model.compute)
        ctx = prepare_context(hallo_model.net, codec, face_data, st).to(C.out_device())
        latent = ctx.ref_latent.float()
        return io.NodeOutput(C.Reference(face=face_data, ref_latent=latent, context=ctx, size=int(face_data.size)))


NODES = [HalloReference]
