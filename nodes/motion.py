"""Motion-frame chaining as its own node: continue any video (an earlier Hallo output) with new audio."""

from __future__ import annotations

import io as _io
import os

import torch

from comfy_api.latest import InputImpl, io

from . import common as C
from . import convert
from . import options as O

DROP = ["as sampler", "on", "off"]


def _clip_geometry() -> tuple[int, int]:
    """(frames per clip, motion frames) of the samplers: hallo_core's defaults, which no node changes."""
    from hallo_core.pipeline.generate import GenerationSettings

    st = GenerationSettings()
    return int(st.clip_frames), int(st.motion_frames)


def tail_of(frames, n: int) -> tuple[torch.Tensor, int]:
    """(last ``n`` frames as float [n, H, W, 3] in [0, 1] on the CPU, frame count of the source)."""
    if isinstance(frames, torch.Tensor):
        convert.check_image(frames, "frames")
        tail = frames[-n:].detach().float().cpu()
        tail = tail.expand(-1, -1, -1, 3) if tail.shape[-1] == 1 else tail[..., :3]
        return tail, int(frames.shape[0])
    # only a file-backed VIDEO streams its source: the base class would encode the whole video to get one
    stream = frames.get_stream_source() if isinstance(frames, InputImpl.VideoFromFile) else None
    if isinstance(stream, _io.BytesIO) or (isinstance(stream, str) and os.path.isfile(stream)):
        from hallo_core.media.video import read_tail

        # a file is decoded frame by frame keeping only the tail: an hour of video never sits in memory
        tail, count = read_tail(stream, n)
        return tail.float() / 255.0, count
    images = frames.get_components().images
    return images[-n:, ..., :3].float().cpu(), int(images.shape[0])


class HalloMotionFrames(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        clip, n = _clip_geometry()
        return io.Schema(
            node_id="Hallo_MotionFrames",
            display_name="Hallo Motion Frames",
            category=f"{C.CATEGORY}/sampling",
            description=f"Takes the last {n} frames of any IMAGE batch or VIDEO (e.g. an earlier Hallo output) as "
                        "Hallo2 motion frames, so a sampler continues that video instead of starting from the "
                        "portrait: build a long piece section by section, each with its own audio. With the same "
                        "seed, model and reference, continuing the float IMAGE of a run of whole "
                        f"{clip}-frame clips equals one run over the joined audio.",
            inputs=[
                io.MultiType.Input("frames", types=[io.Image, io.Video],
                                   tooltip="The video to continue: IMAGE frames (exact for a Hallo sampler's "
                                           "IMAGE output) or a VIDEO (an mp4 is 8-bit, so the continuation "
                                           "differs by its quantization). Only the last frames are kept; frames "
                                           "of another size are resized to the reference's working size."),
                io.Int.Input("clip_index", default=-1, min=-1, max=1_000_000,
                             tooltip=f"Clips rendered before these frames, so the seed schedule continues where "
                                     f"the earlier run stopped. -1 = count them: the source's frames / {clip}, "
                                     "rounded up (right for a whole Hallo output)."),
                io.Combo.Input("patch_drop", options=DROP, default="as sampler",
                               tooltip="Hallo2's patch drop on the motion frames for the continued run: 'as "
                                       "sampler' keeps the sampler's (Hallo Sampler: none; Hallo2 Long Video: "
                                       "its mask_rate), 'on' uses mask_rate below, 'off' disables it."),
            ] + O.inputs("mask_rate", mask_rate={"tooltip": "Share of motion-frame pixels dropped outside the face "
                                                             "box when patch_drop is 'on' (Hallo2 0.25)."}),
            outputs=[C.HalloMotionType.Output(display_name="motion",
                                              tooltip="Motion frames for the 'motion' input of Hallo Sampler or "
                                                      "Hallo2 Long Video Sampler.")],
        )

    @classmethod
    def validate_inputs(cls, clip_index, mask_rate) -> bool | str:
        if clip_index is not None and int(clip_index) < -1:
            return f"clip_index must be -1 (count) or >= 0, got {clip_index}"
        return O.validate(mask_rate=mask_rate)

    @classmethod
    def execute(cls, frames, clip_index=-1, patch_drop="as sampler", mask_rate=0.25) -> io.NodeOutput:
        clip, n = _clip_geometry()
        tail, count = tail_of(frames, n)
        if count < n:
            raise ValueError(f"frames: Hallo continues from the last {n} frames; the source has {count}")
        index = -(-count // clip) if int(clip_index) < 0 else int(clip_index)
        rate = None if patch_drop == "as sampler" else (O.checked(mask_rate=mask_rate)["mask_rate"]
                                                         if patch_drop == "on" else 0.0)
        return io.NodeOutput(C.MotionSource(frames=tail.contiguous(), clip_index=index, mask_rate=rate,
                                            source_frames=count))


NODES = [HalloMotionFrames]
