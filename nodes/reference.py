"""ReferenceNet encoding node: the portrait is encoded once and reused for every clip."""

from __future__ import annotations

from comfy_api.latest import io

from . import common as C
from .loaders import HalloVaeType


def vae_input(tooltip: str):
    """The VAE socket: the pack's own loader (official sd-vae-ft-mse folder) or core 'Load VAE'."""
    return io.MultiType.Input("vae", types=[HalloVaeType, io.Vae], tooltip=tooltip)


class HalloReference(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Hallo_Reference",
            display_name="Hallo Reference Encode",
            category=f"{C.CATEGORY}/sampling",
            description="Encodes the portrait for the ReferenceNet: the reference latent (VAE distribution mean "
                        "x 0.18215, as upstream) plus the face data. Computed once, reused by every clip.",
            inputs=[
                C.HalloModelType.Input("hallo_model", tooltip="From 'Hallo Model Loader'."),
                vae_input("sd-vae-ft-mse: from 'Hallo VAE Loader' or core 'Load VAE'."),
                C.HalloFaceDataType.Input("face_data", tooltip="From 'Hallo Face Analysis'."),
            ],
            outputs=[C.HalloReferenceType.Output(display_name="reference",
                                                 tooltip="Encoded portrait for the Hallo samplers.")],
        )

    @classmethod
    def execute(cls, hallo_model, vae, face_data) -> io.NodeOutput:
        codec, _ = C.vae_codec(vae)
        latent = codec.encode(face_data.pixels.unsqueeze(0)).float().to(C.out_device())
        return io.NodeOutput(C.Reference(face=face_data, ref_latent=latent, size=int(face_data.size)))


NODES = [HalloReference]
