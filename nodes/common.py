"""ComfyUI glue shared by all Hallo nodes: model folders, socket types, devices, model patchers.

Imported only inside ComfyUI (it needs ``folder_paths`` and ``comfy``). Of hallo_core only the light
modules (the model layout, the VAE scale) are imported at load time; the engine is imported inside the
node ``execute`` methods so that loading the pack stays cheap and never fails on a missing optional
dependency.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Optional

import torch

import folder_paths
from comfy_api.latest import io

from hallo_core.assets import layout as models_dir

log = logging.getLogger("hallo")

FOLDER = "hallo"
CATEGORY = "Hallo"

# Socket types of this pack; the strings are unique so they never collide with core or other packs.
HalloModelType = io.Custom("HALLO_MODEL")
HalloAudioModelsType = io.Custom("HALLO_AUDIO_MODELS")
HalloFaceModelsType = io.Custom("HALLO_FACE_MODELS")
HalloAudioEmbedsType = io.Custom("HALLO_AUDIO_EMBEDS")
HalloFaceDataType = io.Custom("HALLO_FACE_DATA")
HalloReferenceType = io.Custom("HALLO_REFERENCE")
HalloUpscalerType = io.Custom("HALLO_UPSCALER")
HalloMotionType = io.Custom("HALLO_MOTION")

PRECISIONS = ["auto", "fp16", "bf16", "fp32"]
SCHEDULERS = ["ddim", "dpmpp", "unipc", "euler"]


def register_model_folder() -> None:
    """Register ``models/hallo`` by appending, so paths from extra_model_paths.yaml are kept."""
    folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER))


def model_roots() -> list[str]:
    """Every folder registered under "hallo" (yaml paths first if the user put them first)."""
    try:
        return folder_paths.get_folder_paths(FOLDER)
    except KeyError:
        return [os.path.join(folder_paths.models_dir, FOLDER)]


def missing(rel: str) -> FileNotFoundError:
    """The error every loader raises for an absent file: names the expected path and the download."""
    source = models_dir.source_of(rel)
    roots = model_roots()
    where = os.path.join(roots[0], rel)
    also = f" (also searched: {', '.join(roots[1:])})" if len(roots) > 1 else ""
    return FileNotFoundError(
        f"Hallo: missing '{rel}'. Expected it at {where}{also}. Download it from {source} "
        f"(same folder layout as the Hugging Face repository), or run the 'Hallo Download Models' node."
    )


def find_file(rel: str) -> str:
    """Full path of ``rel`` in the first hallo root that has it, else a clear FileNotFoundError."""
    for root in model_roots():
        p = os.path.join(root, rel)
        if os.path.isfile(p):
            return p
    raise missing(rel)


def find_dir(rel: str, must_contain: tuple[str, ...] = ()) -> str:
    """Full path of directory ``rel`` (holding ``must_contain``) in the first root that has it."""
    for root in model_roots():
        p = os.path.join(root, rel)
        if os.path.isdir(p) and all(os.path.exists(os.path.join(p, f)) for f in must_contain):
            return p
    need = f" with {', '.join(must_contain)}" if must_contain else ""
    raise missing(rel + "/" + need)


def root_of(full_path: str, rel: str) -> str:
    """The hallo root a file was found in (``full_path`` minus ``rel``)."""
    full = os.path.normpath(full_path)
    rel = os.path.normpath(rel)
    if full.endswith(rel):
        return full[: -len(rel)].rstrip(os.sep) or os.sep
    return os.path.dirname(full)


def list_files(suffixes: tuple[str, ...], must_contain: str = "") -> list[str]:
    """Files under models/hallo (relative names) with one of ``suffixes`` and ``must_contain``."""
    try:
        names = folder_paths.get_filename_list(FOLDER)
    except Exception:  # folder not registered (unit tests without a server)
        names = []
    out = [n for n in names if n.lower().endswith(suffixes) and must_contain in n.replace("\\", "/")]
    return sorted(out)


def combo_options(options: list[str], placeholder: str) -> list[str]:
    """A combo needs at least one entry; an empty folder shows what to download instead."""
    return options if options else [placeholder]


# ---------------------------------------------------------------------------------------------
# devices, precision, patchers


def load_device() -> torch.device:
    import comfy.model_management as mm

    return mm.get_torch_device()


def offload_device() -> torch.device:
    import comfy.model_management as mm

    return mm.unet_offload_device()


def out_device() -> torch.device:
    import comfy.model_management as mm

    return mm.intermediate_device()


def pick_dtype(precision: str, device: torch.device, n_params: int = 0) -> torch.dtype:
    """User choice, or what ComfyUI's model management picks for a UNet on ``device``."""
    if precision == "fp16":
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp32":
        return torch.float32
    import comfy.model_management as mm

    return mm.unet_dtype(device, n_params, [torch.float16, torch.bfloat16, torch.float32])


def pick_operations(dtype: torch.dtype, device: torch.device):
    """comfy.ops classes: manual_cast when weights are stored in a dtype the device cannot compute in."""
    import comfy.model_management as mm
    import comfy.ops

    cast = mm.unet_manual_cast(dtype, device)
    return comfy.ops.manual_cast if cast is not None else comfy.ops.disable_weight_init


class Container(torch.nn.Module):
    """Holds the actual modules for a ModelPatcher.

    diffusers / transformers models expose a read-only ``device`` property, which ModelPatcher writes
    to; this container has a plain attribute instead.
    """

    def __init__(self, device: torch.device, dtype: torch.dtype, **modules: torch.nn.Module):
        super().__init__()
        self.device = device
        self._dtype = dtype
        for name, m in modules.items():
            self.add_module(name, m)

    def get_dtype(self) -> torch.dtype:
        return self._dtype


def make_patcher(container: Container):
    import comfy.model_patcher

    return comfy.model_patcher.ModelPatcher(container, load_device=load_device(), offload_device=offload_device())


def load_gpu(patchers: list, memory_required: int = 0, full: bool = False) -> None:
    """Bring patchers onto the compute device. Cheap when they already are; call before each use."""
    import comfy.model_management as mm

    mm.load_models_gpu([p for p in patchers if p is not None], memory_required=memory_required, force_full_load=full)


def interrupted() -> None:
    """Raise ComfyUI's InterruptProcessingException if the user pressed Cancel."""
    import comfy.model_management as mm

    mm.throw_exception_if_processing_interrupted()


@dataclass
class HalloModel:
    """HALLO_MODEL: the Hallo network behind a ModelPatcher, with what the sampler needs to know."""

    patcher: Any
    version: str  # "hallo" or "hallo2"
    dtype: torch.dtype
    unet_config: dict
    path: str
    extra: dict = field(default_factory=dict)

    @property
    def net(self) -> torch.nn.Module:
        return self.patcher.model.net


@dataclass
class AudioModels:
    """HALLO_AUDIO_MODELS: wav2vec2 behind a patcher, plus the optional vocal separator file."""

    patcher: Any
    wav2vec_dir: str
    separator_path: Optional[str]
    dtype: torch.dtype

    @property
    def wav2vec(self) -> torch.nn.Module:
        return self.patcher.model.wav2vec


@dataclass
class FaceModels:
    """HALLO_FACE_MODELS: file locations only; onnxruntime/mediapipe sessions are created per use."""

    models_dir: str  # the face_analysis folder (holding models/)
    onnx_device: str = "cpu"


@dataclass
class UpscalerPatcher:
    """HALLO_UPSCALER: temporal CodeFormer + face helpers behind one patcher."""

    patcher: Any
    dtype: torch.dtype
    paths: dict
    fp16: bool = False


@dataclass
class Reference:
    """HALLO_REFERENCE: the encoded portrait, computed once and reused for every clip."""

    face: Any  # hallo_core.types.FaceData
    ref_latent: torch.Tensor  # [1, 4, h, w] scaled latent on the intermediate device
    context: Any = None  # hallo_core VideoContext (reference banks etc.) on the intermediate device
    size: int = 512


@dataclass
class MotionSource:
    """HALLO_MOTION: the frames a sampler run continues from, before they are fitted to its reference.

    ``frames``: the last frames of the source, float [n, H, W, 3] in [0, 1] on the CPU (the sampler
    knows the working size and turns them into hallo_core's MotionFrames). ``clip_index``: clips
    rendered before them. ``mask_rate``: the Hallo2 drop for the run, None = the sampler's own.
    """

    frames: torch.Tensor
    clip_index: int
    mask_rate: Optional[float] = None
    source_frames: int = 0  # length of the source, for messages


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

    path, fname, subfolder = output_path(prefix)
    for warning in check_output_path(path, {"frames": source}, option="filename_prefix"):
        log.warning("%s: %s", node, warning)
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
