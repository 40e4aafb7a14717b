"""ComfyUI glue shared by all Hallo nodes: model folders, socket types, devices, model patchers.

Imported only inside ComfyUI (it needs ``folder_paths`` and ``comfy``). Of hallo_core only the light
modules (the model layout, the VAE scale) are imported at load time; the engine is imported inside the
node ``execute`` methods so that loading the pack stays cheap and never fails on a missing optional
dependency.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
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


def pack_dir() -> str:
    """The pack's folder (the repository root, holding hallo_core/)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli_command(*args: str) -> str:
    """A hallo_core CLI command that works as written in this ComfyUI install: ComfyUI's own Python,
    run from the pack folder (hallo_core is a folder there, not an installed package)."""
    import shlex
    import sys

    return (f"cd {shlex.quote(pack_dir())} && {shlex.quote(sys.executable)} -m hallo_core "
            + " ".join(shlex.quote(a) for a in args))


def file_url(rel: str) -> str:
    """Where to get ``rel``: the file itself for an official file, else the repository's page."""
    rel = rel.replace("\\", "/")
    for _, repo, files, _ in models_dir.COMPONENTS.values():
        if rel in files:
            return f"{models_dir.repo_url(repo)}/resolve/main/{rel}"
    return models_dir.source_of(rel)


# Per loader node: the files its widget values make it read. Alternatives (tuples) are satisfied by
# any one of them; optional files (the landmarker, the UNet config) are not listed.
def _node_needs(class_type: str, inputs: dict) -> list:
    vae = models_dir.COMPONENTS["vae"][2]
    if class_type == "Hallo_ModelLoader" and isinstance(inputs.get("model"), str):
        return [inputs["model"]]
    if class_type == "Hallo_VAELoader" and isinstance(inputs.get("vae_folder"), str):
        folder = inputs["vae_folder"]
        return [f"{folder}/config.json",
                (f"{folder}/{os.path.basename(vae[1])}", f"{folder}/diffusion_pytorch_model.bin")]
    if class_type == "Hallo_AudioModelLoader":
        sep = inputs.get("separator")
        return list(models_dir.COMPONENTS["wav2vec"][2]) + ([sep] if isinstance(sep, str) and sep != "none" else [])
    if class_type == "Hallo_FaceModelLoader":
        return [f"{models_dir.rel_path('face_analysis')}/{f}" for f in models_dir.FACE_FILES[:2]]
    if class_type == "Hallo2_UpscalerLoader":
        up = models_dir.UPSCALER_FILES
        return [up["codeformer"], up["detector"]] + ([up["parser"]] if inputs.get("use_parser", True) is not False else [])
    return []


def missing_for_prompt(prompt: Optional[dict]) -> list[str]:
    """Every file the prompt's Hallo loaders will read that no models/hallo folder holds."""
    roots = model_roots()
    have = lambda rel: any(os.path.isfile(os.path.join(r, rel)) for r in roots)  # noqa: E731
    out: list[str] = []
    for node in (prompt or {}).values():
        if not isinstance(node, dict):
            continue
        for need in _node_needs(str(node.get("class_type")), node.get("inputs") or {}):
            options = need if isinstance(need, tuple) else (need,)
            if not any(have(o) for o in options) and options[0] not in out:
                out.append(options[0])
    return out


def _download_choice(prompt: Optional[dict]) -> str:
    types = {str(n.get("class_type")): n.get("inputs") or {} for n in (prompt or {}).values() if isinstance(n, dict)}
    model = str(types.get("Hallo_ModelLoader", {}).get("model", ""))
    if "Hallo2_UpscalerLoader" in types:
        return "hallo2 + temporal upscaler"
    return "hallo2 (long video)" if model.startswith("hallo2") else "hallo (portrait video)"


def check_prompt_models(prompt: Optional[dict]) -> None:
    """Raise one FileNotFoundError naming every file the prompt's Hallo loaders miss, with where to
    get each, so a first run reports the whole list at once, whichever loader runs first."""
    todo = missing_for_prompt(prompt)
    if not todo:
        return
    roots = model_roots()
    also = f" (also searched: {', '.join(roots[1:])})" if len(roots) > 1 else ""
    lines = [f"Hallo: {len(todo)} model file{'s are' if len(todo) > 1 else ' is'} missing from {roots[0]}{also}:"]
    lines += [f"  {rel}  <-  {file_url(rel)}" for rel in todo]
    choice = _download_choice(prompt)
    lines.append(f"Fetch them with the 'Hallo Download Models' node (models: {choice}, download: on), or "
                 f"put the files above at those paths (the Hugging Face repositories' own layout). "
                 f"Check an install with: {cli_command('doctor', '--models', roots[0])}")
    raise FileNotFoundError("\n".join(lines))


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


def compute_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """The dtype ComfyUI computes a UNet stored in ``dtype`` in on ``device`` (its manual cast, or the
    storage dtype when the device computes in it)."""
    import comfy.model_management as mm

    return mm.unet_manual_cast(dtype, device) or dtype


def pick_operations(dtype: torch.dtype, device: torch.device):
    """comfy.ops classes: manual_cast when weights are stored in a dtype the device cannot compute in."""
    import comfy.model_management as mm
    import comfy.ops

    cast = mm.unet_manual_cast(dtype, device)
    return comfy.ops.manual_cast if cast is not None else comfy.ops.disable_weight_init


class Container(torch.nn.Module):
    """Holds the actual modules for a ModelPatcher.

    diffusers / transformers models expose a read-only ``device`` property, which ModelPatcher writes
    to; this container has a plain attribute instead. ``manual_cast_dtype`` is what ComfyUI's own
    models carry when they compute in another dtype than they store (the patcher reads it to size
    the cast buffers of a partial load).
    """

    def __init__(self, device: torch.device, dtype: torch.dtype, compute: Optional[torch.dtype] = None,
                 **modules: torch.nn.Module):
        super().__init__()
        self.device = device
        self._dtype = dtype
        self.manual_cast_dtype = compute if compute not in (None, dtype) else None
        for name, m in modules.items():
            self.add_module(name, m)

    def get_dtype(self) -> torch.dtype:
        return self._dtype


def make_patcher(container: Container):
    import comfy.model_patcher

    return comfy.model_patcher.ModelPatcher(container, load_device=load_device(), offload_device=offload_device())


def load_gpu(patchers: list, memory_required: int = 0, full: bool = False) -> None:
    """Bring patchers onto the compute device, keeping ``memory_required`` bytes free for the call
    that follows. Cheap when they already are; call before each use."""
    import comfy.model_management as mm

    mm.load_models_gpu([p for p in patchers if p is not None], memory_required=int(memory_required),
                       force_full_load=full)


def unload(patchers: list) -> None:
    """Give the patchers' memory back through ComfyUI's model management (their weights go to the
    offload device, ComfyUI's bookkeeping with them). Other loaded models are kept."""
    import comfy.model_management as mm

    for p in patchers:
        if p is None:
            continue
        keep = [lm for lm in mm.current_loaded_models if lm.model is not p]
        if len(keep) < len(mm.current_loaded_models):
            mm.free_memory(1e30, p.load_device, keep_loaded=keep)


def clip_boundary() -> None:
    """Between two clips of one node run: what ComfyUI does after every node execution, so that
    memory used by the clip (cast buffers, cached blocks, Dynamic VRAM's watermarks) is given back
    before the next one starts."""
    import comfy.model_management as mm

    if hasattr(mm, "reset_cast_buffers"):  # ComfyUI >= 0.9: also empties the cache
        mm.reset_cast_buffers()
    else:
        mm.soft_empty_cache()
    try:
        import comfy.memory_management as cmm

        if getattr(cmm, "aimdo_enabled", False):
            import comfy_aimdo.model_vbar

            comfy_aimdo.model_vbar.vbars_reset_watermark_limits()
    except Exception as e:  # optional machinery of newer ComfyUI; never stop a run over it
        log.debug("hallo: Dynamic VRAM reset skipped: %s", e)


def efficient_attention() -> bool:
    """Does ComfyUI count on a memory-efficient attention kernel (its own memory estimates do)?"""
    import comfy.model_management as mm

    return bool(mm.xformers_enabled() or mm.pytorch_attention_flash_attention())


def denoise_memory(model: "HalloModel", size: int, clip_frames: int, cfg: float) -> int:
    """``memory_required`` of one denoising step (see hallo_core.pipeline.memory and docs/comfyui.md)."""
    from hallo_core.pipeline.memory import denoise_memory as est

    return est(size, clip_frames, float(cfg) > 1.0, model.compute, efficient_attention())


def reference_memory(model: "HalloModel", size: int, items: int = 2) -> int:
    """``memory_required`` of a reference-UNet pass over ``items`` images (2 for the portrait)."""
    from hallo_core.pipeline.memory import reference_memory as est

    return est(size, items, model.compute, efficient_attention())


class ComfyPlacement:
    """hallo_core's reference-UNet placement through ComfyUI's model management.

    Every pass loads the reference patcher with the pass's own memory estimate. With ``low_vram``
    the reference patcher is unloaded again right after the pass and the main patcher is loaded
    back (ComfyUI may have offloaded parts of it to make room), so the two are never both on the
    device while the denoiser runs. Holds the patchers, not the HalloModel, so the network it is
    attached to does not form a reference cycle.
    """

    def __init__(self, main, ref, compute: torch.dtype):
        self.main, self.ref, self.compute = main, ref, compute
        self.main_memory = 0  # the last memory_required asked for the main patcher (load_hallo)

    def pass_memory(self, shape) -> int:
        from hallo_core.pipeline.memory import unet_memory

        return unet_memory(list(shape), self.compute, efficient_attention())

    @contextlib.contextmanager
    def reference_pass(self, net, device, low_vram: bool, shape=None):
        mem = self.pass_memory(shape) if shape is not None else 0
        if not low_vram:
            load_gpu([self.main, self.ref], mem)
            yield
            return
        load_gpu([self.ref], mem)
        try:
            yield
        finally:
            unload([self.ref])
            load_gpu([self.main], self.main_memory)


def load_hallo(model: "HalloModel", memory_required: int = 0, low_vram: bool = False) -> None:
    """Load the Hallo network's main patcher (denoiser, projections, face locator) for a call that
    needs ``memory_required`` bytes of activations; the reference UNet is loaded by its passes.
    With ``low_vram`` the reference UNet is given back first if an earlier node left it loaded."""
    pl = getattr(model.net, "placement", None)
    if isinstance(pl, ComfyPlacement):
        pl.main_memory = int(memory_required)
    if low_vram:
        unload([model.ref_patcher])
    load_gpu([model.patcher], memory_required)


def interrupted() -> None:
    """Raise ComfyUI's InterruptProcessingException if the user pressed Cancel."""
    import comfy.model_management as mm

    mm.throw_exception_if_processing_interrupted()


@dataclass
class HalloModel:
    """HALLO_MODEL: the Hallo network behind two ModelPatchers, with what the sampler needs to know.

    ``patcher`` holds the denoiser, the projections and the face locator; ``ref_patcher`` the
    reference UNet, which runs once per clip and can be given back between its passes (low_vram).
    ``dtype`` is the storage dtype, ``compute_dtype`` the one ComfyUI computes in (manual cast).
    """

    patcher: Any
    version: str  # "hallo" or "hallo2"
    dtype: torch.dtype
    unet_config: dict
    path: str
    extra: dict = field(default_factory=dict)
    ref_patcher: Any = None
    compute_dtype: Optional[torch.dtype] = None
    network: Any = None

    @property
    def net(self) -> torch.nn.Module:
        return self.network if self.network is not None else self.patcher.model.net

    @property
    def compute(self) -> torch.dtype:
        return self.compute_dtype or self.dtype

    @property
    def patchers(self) -> list:
        return [p for p in (self.patcher, self.ref_patcher) if p is not None]


@dataclass
class AudioModels:
    """HALLO_AUDIO_MODELS: wav2vec2 behind a patcher, plus the optional vocal separator file."""

    patcher: Any
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
