"""Paste-back node: the animated square goes back into the photo it was cut from, at the photo's aspect."""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import torch
from comfy_api.latest import InputImpl, Types, io, ui

from . import common as C
from . import convert
from . import options as O
from .progress import ClipProgress


def check_paste_inputs(max_side=None, feather=None, filename_prefix=None, fps=None):
    """None, or the UserError of the first input out of range (in the node's words)."""
    from hallo_core.errors import UserError

    try:
        O.checked(max_side=max_side, feather=feather, fps=fps)
    except UserError as e:
        return e
    why = C.prefix_problem(filename_prefix) if filename_prefix is not None else None
    return UserError(why, "filename_prefix", "give a relative prefix such as hallo/full_frame") if why else None


class _Resize:
    """Face data of the whole picture (no crop): each frame is resized to the photo's aspect, which also
    undoes upstream's squash of a non-square photo."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height

    def paste(self, frames) -> np.ndarray:
        import cv2

        from hallo_core.io.paste_back import frames_to_uint8

        gen = frames_to_uint8(frames)
        return np.stack([cv2.resize(g, (self.width, self.height),
                                    interpolation=cv2.INTER_AREA if g.shape[1] > self.width else cv2.INTER_CUBIC)
                         for g in gen])


def make_paster(face, source_rgb: np.ndarray, max_side: int, feather: float):
    """The paster for ``face`` (FaceData) and the photo it was made from, or a UserError when they differ."""
    from hallo_core.errors import UserError
    from hallo_core.face.crop import CropBox, output_size
    from hallo_core.io.paste_back import FramePaster

    h, w = source_rgb.shape[:2]
    made_for = getattr(face, "source_size", None)
    if made_for is not None and tuple(int(v) for v in made_for) != (w, h):
        raise UserError(f"the source image is {w}x{h}, but the face data was made from a {made_for[0]}x"
                        f"{made_for[1]} image", "source", "connect the image that went into Hallo Face Analysis")
    if getattr(face, "crop_box", None) is None:
        return _Resize(*output_size(w, h, max_side))
    return FramePaster(source_rgb, CropBox.from_box(face.crop_box, (w, h)), max_side=max_side, feather=feather)


def _frame_source(frames, fps: float, audio):
    """(iterator of [S, S, 3] frames, count, frame rate, AUDIO or None, source mp4 path or None)."""
    if isinstance(frames, torch.Tensor):
        convert.check_image(frames, "frames")
        return (f[..., :3] for f in frames), int(frames.shape[0]), Fraction(fps).limit_denominator(1000), audio, None
    rate = Fraction(frames.get_frame_rate()).limit_denominator(100000)
    # VideoFromComponents has get_stream_source too, but it raises (no container format to encode to)
    stream = frames.get_stream_source() if isinstance(frames, InputImpl.VideoFromFile) else None
    if isinstance(stream, str) and os.path.isfile(stream):
        from hallo_core.media.video_io import read_frames_bgr

        # decoded one at a time: a long video's frames never sit in memory together
        it = (torch.from_numpy(np.ascontiguousarray(f[:, :, ::-1])) for f in read_frames_bgr(stream))
        return it, int(frames.get_frame_count()), rate, None, stream
    comp = frames.get_components()
    return (f[..., :3] for f in comp.images), int(comp.images.shape[0]), rate, comp.audio, None


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
            ] + O.inputs("max_side", "feather") + C.file_output_inputs(
                "hallo/full_frame", "full-frame IMAGE out (short videos).",
                "stream an mp4 to the output folder and return it as VIDEO (any length).",
                "Output file prefix in file mode, relative to the output folder.") + O.inputs(
                "fps", fps={"optional": True}) + [
                io.Audio.Input("audio", optional=True,
                               tooltip="Soundtrack for IMAGE frames (a VIDEO brings its own): the 'audio' output "
                                       "of Hallo Audio Embeds."),
            ],
            outputs=[
                io.Image.Output(display_name="frames", tooltip="Full-frame IMAGE frames (file mode: the last "
                                                               "frame only, to keep memory flat)."),
                io.Video.Output(display_name="video", tooltip="The full-frame video: the mp4 file (file mode) or "
                                                              "frames + audio + fps (image mode)."),
            ],
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
        err = check_paste_inputs(max_side, feather, filename_prefix, fps)
        if err is not None:  # a linked value is not seen by validate_inputs
            raise err
        paster = make_paster(face_data, convert.image_to_rgb_uint8(source, 0), int(max_side), float(feather))
        it, total, rate, audio, src_path = _frame_source(frames, float(fps), audio)
        node_id = cls.hidden.unique_id if cls.hidden is not None else None
        prog = ClipProgress(node_id, clips=1, steps=max(1, total))
        every = max(1, total // 200)  # an hour of frames would otherwise send 90000 websocket messages

        def pasted():
            for i, f in enumerate(it):
                C.interrupted()
                yield paster.paste(f.unsqueeze(0))[0]
                if (i + 1) % every == 0 or i + 1 == total:
                    prog.step(0, min(i + 1, prog.steps))

        if output_mode == "image":
            if src_path is not None:
                audio = _file_audio(src_path)
            full = list(pasted())
            if not full:
                raise _no_frames()
            out = torch.from_numpy(np.stack(full)).float().div_(255.0).to(C.out_device())
            video = InputImpl.VideoFromComponents(Types.VideoComponents(images=out, audio=audio, frame_rate=rate))
            return io.NodeOutput(out, video)
        return cls._to_file(pasted(), paster, rate, audio, src_path, filename_prefix)

    @staticmethod
    def _to_file(frames, paster, rate: Fraction, audio, src_path, filename_prefix) -> io.NodeOutput:
        from hallo_core.errors import UserError
        from hallo_core.media.atomic import atomic_output, check_output_path

        path, fname, subfolder = C.output_path(filename_prefix, False)
        try:
            check_output_path(path, {"frames": src_path}, key="out")
        except UserError as e:
            raise O.node_error(e) from None
        last = {}

        def keep_last(frames):
            for f in frames:
                last["f"] = f
                yield f

        # a cancelled run leaves no half-written file: the mp4 appears under its name only when complete
        with atomic_output(path) as tmp:
            if src_path is not None or audio is None:
                from hallo_core.media.video_io import write_video

                write_video(tmp, (f[:, :, ::-1] for f in keep_last(frames)), rate, audio_from=src_path)
            else:
                _write_with_audio(tmp, keep_last(frames), paster, rate, audio)
            if "f" not in last:
                raise _no_frames()  # inside the block: the empty file is removed, not renamed into place
        image = torch.from_numpy(last["f"].copy()).float().div_(255.0).unsqueeze(0).to(C.out_device())
        preview = ui.PreviewVideo([ui.SavedResult(fname, subfolder, io.FolderType.output)])
        return io.NodeOutput(image, InputImpl.VideoFromFile(path), ui=preview)


def _no_frames():
    from hallo_core.errors import UserError

    return UserError("the video holds no frames", "frames", "connect the frames or VIDEO of a Hallo sampler")


def _file_audio(path: str):
    """The soundtrack of an mp4 as AUDIO, or None when it has none."""
    import av

    with av.open(path) as c:
        if not c.streams.audio:
            return None
    from hallo_core.audio.loading import load_audio_file

    wave, sr = load_audio_file(path)
    return {"waveform": torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)).unsqueeze(0),
            "sample_rate": int(sr)}


def _write_with_audio(path, frames, paster, rate: Fraction, audio) -> None:
    """IMAGE frames + an AUDIO dict: the pack's mp4 writer muxes the waveform itself."""
    from hallo_core.media.video import Mp4Sink

    wav, sr = convert.audio_first_item(audio)
    sink = Mp4Sink(path, waveform=wav, sample_rate=sr)
    sink.open(paster.width, paster.height, int(round(float(rate))))
    try:
        for f in frames:
            sink.write(torch.from_numpy(f).permute(2, 0, 1).unsqueeze(0).float().div_(255.0))
    finally:
        sink.close()


NODES = [HalloPasteBack]
