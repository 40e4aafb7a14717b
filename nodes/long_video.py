"""Hallo2 long-video node: motion-frame chaining with patch drop, streamed to memory or to an mp4.

In file mode the mp4 is named after a hash of everything that decides its content, and a resume
checkpoint is written next to it after every finished clip. Queueing the same prompt again after a
Cancel or a crash therefore finds the partial file and continues it, while a changed prompt writes
a new file; the checkpoint is removed once the video is complete.
"""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

from comfy_api.latest import InputImpl, Types, io, ui

from . import common as C
from . import outputs as F
from . import convert, sampler
from . import options as O
from .progress import notify


class HalloLongVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Hallo2_LongVideo",
            display_name="Hallo2 Long Video Sampler",
            category=f"{C.CATEGORY}/sampling",
            description="Hallo2 long-duration generation: 16-frame clips chained by 2 motion frames with "
                        "patch drop (mask_rate), streamed clip by clip so memory stays flat. 'file' mode writes "
                        "an mp4 with the audio as it goes (playable up to the last finished clip); after a "
                        "Cancel or a crash, queue the same prompt again and it continues from there. 'image' "
                        "mode returns IMAGE frames for short videos.",
            inputs=sampler.model_inputs() + sampler.sampling_inputs() + O.inputs("mask_rate")
            + F.file_output_inputs(
                "hallo2/long", "return all frames as IMAGE (short videos).",
                "stream an mp4 to the output folder and return it as VIDEO (any length).",
                "Output file name prefix (file mode), relative to the output folder. "
                "The file is <prefix>_<hash of the inputs and settings>.mp4.") + [
                io.Boolean.Input("resume", default=True,
                                 tooltip="File mode: on = queueing the same prompt again after a Cancel or a "
                                         "crash continues its file from the last finished clip (same frames as "
                                         "an uninterrupted run). Off = start that file over."),
            ] + sampler.speed_inputs() + [
                io.Audio.Input("audio", optional=True,
                               tooltip="The audio to mux into the file (file mode) and into the VIDEO output. "
                                       "Use the 'audio' output of Hallo Audio Embeds."),
                sampler.motion_input(),
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
    def validate_inputs(cls, steps, cfg, mask_rate, filename_prefix, cfg_steps=0, seed=None, pose_weight=None,
                        face_weight=None, lip_weight=None) -> bool | str:
        why = F.prefix_problem(filename_prefix) if filename_prefix is not None else None
        if why:
            return why
        return O.validate(seed=seed, steps=steps, cfg=cfg, pose_weight=pose_weight, face_weight=face_weight,
                          lip_weight=lip_weight, mask_rate=mask_rate, cfg_steps=cfg_steps)

    @classmethod
    def execute(cls, hallo_model, vae, reference, audio_embeds, output_mode, filename_prefix, resume=True,
                audio=None, motion=None, **widgets) -> io.NodeOutput:
        from hallo_core.media.video import ImageSink

        settings = sampler.settings(**widgets)
        node_id = cls.hidden.unique_id if cls.hidden is not None else None
        fps = float(getattr(audio_embeds, "fps", 25))
        n = int(audio_embeds.num_frames)
        fitted = convert.fit_audio_to_frames(audio, n, fps) if audio is not None else None
        mf = sampler.motion_frames(motion, reference, settings)
        if output_mode == "image":
            sink = ImageSink(n)
            sampler.run(node_id, hallo_model, vae, reference, audio_embeds, settings, sink, motion=mf)
            images = sink.images().to(C.out_device())
            video = InputImpl.VideoFromComponents(
                Types.VideoComponents(images=images, audio=fitted, frame_rate=Fraction(fps).limit_denominator(1000)))
            return io.NodeOutput(images, video, fps)
        return _to_file(node_id, hallo_model, vae, reference, audio_embeds, settings, filename_prefix,
                        bool(resume), fitted, mf, fps)


def run_tag(hallo_model, reference, audio_embeds, settings, motion, fitted) -> str:
    """Short hash naming the file: the run's resume identity plus the audio muxed into it."""
    from hallo_core.pipeline.generate import run_hash

    h = hashlib.sha256(run_hash(hallo_model.net, reference.face, audio_embeds, settings, hallo_model.path,
                                motion).encode())
    if fitted is not None:  # the muxed track is not in the frames' identity, but it is in the file
        wav = fitted["waveform"].detach().float().cpu().contiguous()
        h.update(f"{tuple(wav.shape)}:{fitted['sample_rate']}".encode())
        h.update(wav.numpy().tobytes())
    return h.hexdigest()[:12]


def _to_file(node_id, hallo_model, vae, reference, audio_embeds, settings, prefix, resume, fitted, mf, fps):
    from hallo_core.media.video import Mp4Sink
    from hallo_core.pipeline.resume import Checkpoint, checkpoint_path_for, resume_point

    n = int(audio_embeds.num_frames)
    n_clips = max(1, -(-n // settings.clip_frames))
    path, fname, subfolder = F.output_path(prefix, run_tag(hallo_model, reference, audio_embeds, settings, mf,
                                                           fitted))
    shown = f"{subfolder}/{fname}" if subfolder else fname
    ckpt = Checkpoint(checkpoint_path_for(path))
    start = resume_point(path, resume)
    if start is not None:
        notify(node_id, f"Hallo2: resuming {shown} at clip {start.next_clip + 1} of {n_clips} "
                        f"({start.frames_done} frames kept)", state="resumed", filename=fname,
               subfolder=subfolder, clip=start.next_clip, clips=n_clips, frames=start.frames_done)
    wav = fitted["waveform"][0] if fitted is not None else None
    sr = fitted["sample_rate"] if fitted is not None else 16000
    # hallo_core closes the sink itself, on Cancel too: the file stays playable up to the last
    # finished clip, and the checkpoint next to it lets the same prompt continue
    try:
        result = sampler.run(node_id, hallo_model, vae, reference, audio_embeds, settings,
                             Mp4Sink(path, waveform=wav, sample_rate=sr), checkpoint=ckpt, start=start, motion=mf)
    except BaseException as e:
        _report_partial(node_id, e, ckpt.path, shown, fname, subfolder, fps, n, n_clips)
        raise
    ckpt.discard()  # complete: nothing left to resume, and a leftover would only mislead
    # the IMAGE output stays one frame in file mode, to keep memory flat
    image = (convert.frames_to_image(result.last_frame.float().cpu()) if result.last_frame is not None
             else convert.frames_to_image(reference.face.pixels.unsqueeze(0), "-1_1"))
    video = InputImpl.VideoFromFile(path)
    preview = ui.PreviewVideo([ui.SavedResult(fname, subfolder, io.FolderType.output)])
    return io.NodeOutput(image.to(C.out_device()), video, fps, ui=preview)


def _report_partial(node_id, error, ckpt: Path, shown, fname, subfolder, fps, n, n_clips) -> None:
    """Name the partial file a stopped run leaves, with what it holds, where the user looks."""
    import comfy.model_management as mm

    from hallo_core.pipeline.resume import load_state

    try:
        state = load_state(ckpt) if ckpt.is_file() else None
    except Exception:  # never mask the real error with a checkpoint problem
        state = None
    frames = state.frames_done if state is not None else 0
    why = "cancelled" if isinstance(error, mm.InterruptProcessingException) else "stopped by an error"
    if frames:
        nxt = state.next_clip
        text = (f"Hallo2: {why}. {shown} holds {frames} of {n} frames ({frames / fps:.2f} s); queue the same "
                f"prompt again to continue at clip {nxt + 1} of {n_clips}.")
    else:
        nxt = 0
        text = f"Hallo2: {why} before the first clip was saved; {shown} holds no finished clip."
    notify(node_id, text, warn=True, state="partial", reason=why, filename=fname, subfolder=subfolder,
           frames=frames, seconds=round(frames / fps, 3), total_frames=n, clip=nxt, clips=n_clips)


NODES = [HalloLongVideo]
