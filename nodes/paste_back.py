"""Paste-back node: the animated square goes back into the photo it was cut from, at the photo's aspect."""

from __future__ import annotations

from comfy_api.latest import io

from . import common as C
from . import outputs as F
from . import convert
from . import options as O
from .progress import frame_progress


def check_paste_inputs(max_side=None, feather=None, filename_prefix=None, fps=None):
    """None, or the UserError of the first input out of range (in the node's words)."""
    from hallo_core.errors import UserError

    try:
        O.checked(max_side=max_side, feather=feather, fps=fps)
    except UserError as e:
        return e
    why = F.prefix_problem(filename_prefix) if filename_prefix is not None else None
    return UserError(why, "filename_prefix", "give a relative prefix such as hallo/full_frame") if why else None


class HalloPasteBack(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Hallo_PasteBack",
            display_name="Hallo Paste Back",
            category=f"{C.CATEGORY}/face",
            description="Puts the generated face video back into the photo it came from: every frame is pasted "
                        "at the crop's place and scale with a feathered edge, so the output has the photo's "
                        "aspect and size (long side capped by max_side) and, outside the crop, is the photo. "
                        "'file' mode streams a VIDEO file frame by frame into a new mp4, audio copied.",
            inputs=[
                C.HalloFaceDataType.Input("face_data", tooltip="From 'Hallo Face Analysis': says where the crop "
                                                               "came from."),
                io.Image.Input("source", tooltip="The photo that went into Hallo Face Analysis (first image used)."),
                io.MultiType.Input("frames", types=[io.Image, io.Video],
                                   tooltip="The generated frames: IMAGE, or the VIDEO of a sampler's file mode "
                                           "(read frame by frame, so long files never sit in memory)."),
            ] + O.inputs("max_side", "feather") + F.full_frame_inputs("hallo/full_frame") + [
                io.Audio.Input("audio", optional=True,
                               tooltip="Soundtrack for IMAGE frames (a VIDEO brings its own): the 'audio' output "
                                       "of Hallo Audio Embeds."),
            ],
            outputs=F.full_frame_outputs(),
            hidden=[io.Hidden.unique_id],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, max_side, feather, filename_prefix, fps=25.0) -> bool | str:
        err = check_paste_inputs(max_side, feather, filename_prefix, fps)
        return True if err is None else str(err)

    @classmethod
    def execute(cls, face_data, source, frames, max_side, feather, output_mode, filename_prefix, fps=25.0,
                audio=None) -> io.NodeOutput:
        from hallo_core.errors import UserError
        from hallo_core.io.paste_back import SourceMismatchError, paste_frames, paste_to_file, paste_video, paster_for
        from hallo_core.media.video import NoFramesError

        err = check_paste_inputs(max_side, feather, filename_prefix, fps)
        if err is not None:  # a linked value is not seen by validate_inputs
            raise err
        try:
            paster = paster_for(face_data, convert.image_to_rgb_uint8(source, 0), int(max_side), float(feather))
        except SourceMismatchError as e:
            raise UserError(str(e), "source", "connect the image that went into Hallo Face Analysis") from None
        src = F.frames_input(frames, float(fps), audio)
        node_id = cls.hidden.unique_id if cls.hidden is not None else None
        kw = dict(total=src.count, progress=frame_progress(node_id, src.count), interrupt=C.interrupted)
        if output_mode == "image":
            return F.image_result(list(paste_frames(src.frames(), paster, **kw)), src.fps, src.image_audio())
        path, fname, subfolder = F.new_output_file(filename_prefix, src.path, "Hallo paste back")
        try:
            if src.path is not None:
                report = paste_video(src.path, path, paster, **kw)
            else:
                wave, sr = src.waveform()
                report = paste_to_file(src.images, path, paster, src.fps, waveform=wave, sample_rate=sr, **kw)
        except NoFramesError:
            raise F.no_frames() from None
        return F.file_result(report.last, path, fname, subfolder)


NODES = [HalloPasteBack]
