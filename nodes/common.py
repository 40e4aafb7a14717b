"""ComfyUI glue shared by all Hallo nodes: model folders, socket types, devices, model patchers.

Imported only inside ComfyUI (it needs ``folder_paths`` and ``comfy``); hallo_core is imported lazily
inside the node ``execute`` methods so that loading the pack stays cheap and never fails on a missing
optional dependency.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

import folder_paths
from comfy_api.latest import io

log = logging.getLogger("hallo")

FOLDER = "hallo"
CATEGORY = "Hallo"
HF_HALLO = "https://huggingface.co/fudan-generative-ai/hallo"
HF_HALLO2 = "https://huggingface.co/fudan-generative-ai/hallo2"

# Socket types of this pack; the strings are unique so they never collide with core or other packs.
HalloModelType = io.Custom("HALLO_MODEL")
HalloAudioModelsType = io.Custom("HALLO_AUDIO_MODELS")
HalloFaceModelsType = io.Custom("HALLO_FACE_MODELS")
HalloAudioEmbedsType = io.Custom("HALLO_AUDIO_EMBEDS")
HalloFaceDataType = io.Custom("HALLO_FACE_DATA")
HalloReferenceType = io.Custom("HALLO_REFERENCE")
HalloUpscalerType = io.Custom("HALLO_UPSCALER")

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


def missing(rel: str, source: str = HF_HALLO2) -> FileNotFoundError:
    """The error every loader raises for an absent file: names the expected path and the download."""
    roots = model_roots()
    where = os.path.join(roots[0], rel)
    also = f" (also searched: {', '.join(roots[1:])})" if len(roots) > 1 else ""
    return FileNotFoundError(
        f"Hallo: missing '{rel}'. Expected it at {where}{also}. Download it from {source} "
        f"(same folder layout as the Hugging Face repository), or run the 'Hallo Download Models' node."
    )


def find_file(rel: str, source: str = HF_HALLO2) -> str:
    """Full path of ``rel`` in the first hallo root that has it, else a clear FileNotFoundError."""
    for root in model_roots():
        p = os.path.join(root, rel)
        if os.path.isfile(p):
            return p
    raise missing(rel, source)


def find_dir(rel: str, must_contain: tuple[str, ...] = (), source: str = HF_HALLO2) -> str:
    """Full path of directory ``rel`` (holding ``must_contain``) in the first root that has it."""
    for root in model_roots():
        p = os.path.join(root, rel)
        if os.path.isdir(p) and all(os.path.exists(os.path.join(p, f)) for f in must_contain):
            return p
    need = f" with {', '.join(must_contain)}" if must_contain else ""
    raise missing(rel + "/" + need, source)


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
class UpscalerModels:
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


class ManagedCodec:
    """hallo_core's VAE codec with the VAE brought onto the device before every encode/decode.

    The VAE is a diffusers module (not comfy.ops), so it is loaded fully; loading it may partially
    offload the Hallo network, which comfy.ops layers handle by casting weights per forward.
    """

    def __init__(self, codec, patcher):
        self.codec = codec
        self.patcher = patcher

    def __getattr__(self, name):
        return getattr(self.codec, name)

    def encode(self, pixels):
        load_gpu([self.patcher], full=True)
        return self.codec.encode(pixels.to(self.codec.device, self.codec.dtype))

    def decode(self, latents, chunk=None, low_memory=False):
        load_gpu([self.patcher], full=True)
        return self.codec.decode(latents, chunk, low_memory=low_memory)


def vae_codec(vae):
    """(codec, patcher) for either the pack's HALLO_VAE or ComfyUI's core VAE."""
    from . import engine

    if hasattr(vae, "codec") and hasattr(vae, "patcher") and hasattr(vae, "folder"):
        return ManagedCodec(vae.codec(), vae.patcher), vae.patcher
    if hasattr(vae, "first_stage_model") and hasattr(vae, "encode"):
        if getattr(vae, "latent_channels", 4) != 4 or getattr(vae, "latent_dim", 2) != 2:
            raise ValueError("Hallo needs an SD1.5-family VAE (4 latent channels, image VAE, e.g. "
                             "vae-ft-mse-840000); the connected VAE is a different kind")
        return engine.ComfyVaeCodec(vae), vae.patcher
    raise ValueError(f"vae: expected a VAE from 'Hallo VAE Loader' or 'Load VAE', got {type(vae).__name__}")
