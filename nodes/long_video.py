"""Hallo2 long-video node: motion-frame chaining with patch drop, streamed to memory or to an mp4."""

from __future__ import annotations

import os
from fractions import Fraction

from comfy_api.latest import InputImpl, Types, io, ui

from . import common as C
from . import convert, sampler


class HalloLongVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Hallo2_LongVideo",
            display_name="Hallo2 Long Video Sampler",
            category=f"{C.CATEGORY}/sampling",
            description="Hallo2 long-duration generation: 16-frame clips chained by 2 motion frames with "
                        "patch drop (mask_rate), streamed clip by clip so memory stays flat. 'file' mode writes "
                        "an mp4 with the audio as it goes (playable up to the last finished clip, resumable); "
                        "'image' mode returns IMAGE frames for short videos.",
            inputs=sampler.model_inputs() + sampler.sampling_inputs() + [
                io.Float.Input("mask_rate", default=0.25, min=0.0, max=0.95, step=0.05,
                               tooltip="Share of motion-frame pixels dropped outside the face box (Hallo2 "
                                       "0.25). 0 = plain Hallo chaining."),
                io.Combo.Input("output_mode", options=["image", "file"], default="image",
                               tooltip="image: return all frames as IMAGE (short videos). file: stream an mp4 "
                                       "to the output folder and return it as VIDEO (any length)."),
                io.String.Input("filename_prefix", default="hallo2/long",
                                tooltip="Output file name prefix (file mode), relative to the output folder."),
                io.Boolean.Input("resume", default=False,
                                 tooltip="File mode: continue an interrupted run of the same inputs from its "
                                         "last finished clip (same frames as an uninterrupted run)."),
            ] + sampler.speed_inputs() + [
                io.Audio.Input("audio", optional=True,
                               tooltip="The audio to mux into the file (file mode) and into the VIDEO output. "
                                       "Use the 'audio' output of Hallo Audio Embeds."),
            ],
            outputs=[
                io.Image.Output(display_name="frames", tooltip="IMAGE frames (image mode); in file mode only the "
                                                               "last frame, to keep memory flat."),
                io.Video.Output(display_name="video", tooltip="The video: the mp4 file (file mode) or the frames "
                                                              "+ audio + fps (image mode)."),
                io.Float.Output(display_name="fps", tooltip="Frame rate."),
            ],
            hidden=[io.Hidden.unique_id],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, steps, cfg, mask_rate, filename_prefix, cfg_steps=0) -> bool | str:
        ok = sampler.check_sampling(steps, cfg, cfg_steps)
        if ok is not True:
            return ok
        if mask_rate is not None and not 0.0 <= float(mask_rate) < 1.0:
            return f"mask_rate must be in [0, 1), got {mask_rate}"
        if filename_prefix is not None and (".." in filename_prefix.replace("\\", "/").split("/")
                                            or os.path.isabs(filename_prefix)):
            return "filename_prefix must stay inside the output folder (no '..', not absolute)"
        return True

    @classmethod
    def execute(cls, hallo_model, vae, reference, audio_embeds, output_mode, filename_prefix, resume, audio=None,
                **widgets) -> io.NodeOutput:
        from hallo_core.io.video import MemorySink, Mp4Sink
        from hallo_core.pipeline.generate import checkpoint_path_for

        settings = sampler.settings(**widgets)
        node_id = cls.hidden.unique_id if cls.hidden is not None else None
        fps = float(getattr(audio_embeds, "fps", 25))
        n = int(audio_embeds.num_frames)
        fitted = convert.fit_audio_to_frames(audio, n, fps) if audio is not None else None
        if output_mode == "image":
            sink = MemorySink()
            sampler.run(node_id, hallo_model, vae, reference, audio_embeds, settings, sink)
            images = sink.images()[:n].to(C.out_device())
            video = InputImpl.VideoFromComponents(
                Types.VideoComponents(images=images, audio=fitted, frame_rate=Fraction(fps).limit_denominator(1000)))
            return io.NodeOutput(images, video, fps)

        path, fname, subfolder = C.output_path(filename_prefix, bool(resume))
        wav = fitted["waveform"][0] if fitted is not None else None
        sr = fitted["sample_rate"] if fitted is not None else 16000
        sink = Mp4Sink(path, waveform=wav, sample_rate=sr)
        last = {}

        class _Tail:  # remembers the last frame so the IMAGE output stays one frame
            def __getattr__(self, k):
                return getattr(sink, k)

            def write(self, frames):
                last["f"] = frames[-1:].detach().float().cpu()
                sink.write(frames)

        # hallo_core closes the sink itself, on Cancel too: the file stays playable up to the last
        # finished clip, and the checkpoint next to it lets a re-run with resume continue.
        sampler.run(node_id, hallo_model, vae, reference, audio_embeds, settings, _Tail(),
                    checkpoint=str(checkpoint_path_for(path)) if resume else None, resume=bool(resume))
        image = convert.frames_to_image(last["f"]) if "f" in last else convert.frames_to_image(
            reference.face.pixels.unsqueeze(0), "-1_1")
        video = InputImpl.VideoFromFile(path)
        preview = ui.PreviewVideo([ui.SavedResult(fname, subfolder, io.FolderType.output)])
        return io.NodeOutput(image.to(C.out_device()), video, fps, ui=preview)


NODES = [HalloLongVideo]
