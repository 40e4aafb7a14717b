"""ComfyUI glue for the nodes that write or return videos: output files, IMAGE-or-VIDEO inputs, results.

Imported only inside ComfyUI (``folder_paths``, ``comfy_api``); the engine is imported inside the functions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

import torch

import folder_paths
from comfy_api.latest import io

from .common import out_device


def output_path(prefix: str, tag: Optional[str] = None) -> tuple[str, str, str]:
    """(full path, file name, subfolder) of an mp4 under ComfyUI's output folder.

    With ``tag`` the name is fixed (``<prefix>_<tag>.mp4``) so a later run of the same job finds the
    partial file and its checkpoint; otherwise a new numbered file, like core Save Video.
    """
    out_dir = folder_paths.get_output_directory()
    folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(prefix, out_dir)
    os.makedirs(folder, exist_ok=True)
    fname = f"{name}_{tag}.mp4" if tag else f"{name}_{counter:05}_.mp4"
    return os.path.join(folder, fname), fname, subfolder


def prefix_problem(prefix: str) -> Optional[str]:
    """Why ``prefix`` would write outside the output folder, or None when it stays inside."""
    if ".." in str(prefix).replace("\\", "/").split("/") or os.path.isabs(str(prefix)):
        return f"filename_prefix {prefix!r} leaves the output folder (no '..', not absolute)"
    return None


def file_output_inputs(prefix: str, image_tip: str, file_tip: str, prefix_tip: str) -> list:
    """The ``output_mode`` (image | file) and ``filename_prefix`` widgets of the nodes that can stream an mp4."""
    return [io.Combo.Input("output_mode", options=["image", "file"], default="image",
                           tooltip=f"image: {image_tip} file: {file_tip}"),
            io.String.Input("filename_prefix", default=prefix, tooltip=prefix_tip)]



def full_frame_inputs(prefix: str) -> list:
    """The output widgets of the paste nodes: file or IMAGE mode, prefix, and the fps of IMAGE frames."""
    from . import options as O

    return file_output_inputs(prefix, "full-frame IMAGE out (short videos).",
                              "stream an mp4 to the output folder and return it as VIDEO (any length).",
                              "Output file prefix in file mode, relative to the output folder.") + O.inputs(
        "fps", fps={"optional": True})


def full_frame_outputs() -> list:
    """The (IMAGE, VIDEO) outputs of the paste nodes."""
    return [io.Image.Output(display_name="frames", tooltip="Full-frame IMAGE frames (file mode: the last "
                                                           "frame only, to keep memory flat)."),
            io.Video.Output(display_name="video", tooltip="The full-frame video: the mp4 file (file mode) or "
                                                          "frames + audio + fps (image mode).")]

# -- IMAGE or VIDEO in, a file out: the frame nodes (paste back, temporal upscale) -------------------

@dataclass
class FramesIn:
    """A node's IMAGE-or-VIDEO input in the engine's terms: an IMAGE batch, or a video file the engine
    reads itself one frame at a time (so a long file never sits in memory)."""

    images: Optional[torch.Tensor]  # IMAGE [N, H, W, C]; None when ``path`` is set
    path: Optional[str]
    count: int
    fps: Fraction
    audio: Optional[dict]  # AUDIO of the IMAGE input or of the VIDEO's components

    def frames(self):
        """What the engine's frame functions take: the IMAGE batch, or the file's decoded frames."""
        if self.path is None:
            return self.images
        from hallo_core.media.video import read_frames

        return read_frames(self.path)

    def image_audio(self) -> Optional[dict]:
        """AUDIO to hand on with an IMAGE result: the input's, or the file's soundtrack."""
        return self.audio if self.path is None else file_audio(self.path)

    def waveform(self) -> tuple:
        """(waveform [C, T] or None, sample rate) of ``audio``, for the engine's mp4 writer."""
        from . import convert

        return convert.audio_first_item(self.audio) if self.audio is not None else (None, 16000)


def frames_input(frames, fps: float = 25.0, audio=None) -> FramesIn:
    """IMAGE, or a VIDEO (its file when it has one), as :class:`FramesIn`; ``fps`` and ``audio`` go with IMAGE."""
    from comfy_api.latest import InputImpl

    from . import convert

    if isinstance(frames, torch.Tensor):
        convert.check_image(frames, "frames")
        return FramesIn(frames, None, int(frames.shape[0]), Fraction(fps).limit_denominator(1000), audio)
    rate = Fraction(frames.get_frame_rate()).limit_denominator(100000)
    # VideoFromComponents has get_stream_source too, but it raises (no container format to encode to)
    stream = frames.get_stream_source() if isinstance(frames, InputImpl.VideoFromFile) else None
    if isinstance(stream, str) and os.path.isfile(stream):
        return FramesIn(None, stream, int(frames.get_frame_count()), rate, None)
    comp = frames.get_components()
    return FramesIn(comp.images, None, int(comp.images.shape[0]), rate, comp.audio)


def file_audio(path: str) -> Optional[dict]:
    """The soundtrack of a media file as AUDIO, or None when it has none."""
    import numpy as np

    from hallo_core.audio.loading import load_audio_file
    from hallo_core.media.video import probe

    if not probe(path).has_audio:
        return None
    wave, sr = load_audio_file(path)
    return {"waveform": torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)).unsqueeze(0),
            "sample_rate": int(sr)}


def new_output_file(prefix: str, source: Optional[str], node: str) -> tuple[str, str, str]:
    """:func:`output_path` for a new numbered mp4, checked against the input file it is made from."""
    from hallo_core.media.atomic import check_output_path

    from hallo_core.errors import UserError

    from .options import node_error

    path, fname, subfolder = output_path(prefix)
    try:
        check_output_path(path, {"frames": source}, key="out")
    except UserError as e:
        raise node_error(e) from None
    return path, fname, subfolder


def image_result(frames: list, fps: Fraction, audio) -> io.NodeOutput:
    """(IMAGE, VIDEO) outputs of RGB uint8 frames held in memory."""
    import numpy as np
    from comfy_api.latest import InputImpl, Types

    if not frames:
        raise no_frames()
    out = torch.from_numpy(np.stack(frames)).float().div_(255.0).to(out_device())
    video = InputImpl.VideoFromComponents(Types.VideoComponents(images=out, audio=audio, frame_rate=fps))
    return io.NodeOutput(out, video)


def file_result(last, path: str, fname: str, subfolder: str) -> io.NodeOutput:
    """(IMAGE of the last frame, VIDEO of the file) outputs and the node's preview of a written mp4."""
    from comfy_api.latest import InputImpl, ui

    image = torch.from_numpy(last.copy()).float().div_(255.0).unsqueeze(0).to(out_device())
    preview = ui.PreviewVideo([ui.SavedResult(fname, subfolder, io.FolderType.output)])
    return io.NodeOutput(image, InputImpl.VideoFromFile(path), ui=preview)


def no_frames():
    from hallo_core.errors import UserError

    return UserError("the video holds no frames", "frames", "connect the frames or VIDEO of a Hallo sampler")
