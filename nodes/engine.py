"""The only module of the node pack that calls into hallo_core.

Every call is a thin adapter: ComfyUI types in, hallo_core types out. hallo_core is imported lazily
here (inside functions) so that importing the pack never pulls in diffusers, transformers, mediapipe
or onnxruntime. Where a hallo_core entry point is not present in this build, the adapter raises a
RuntimeError that names it, instead of failing somewhere deep inside.
"""

from __future__ import annotations

import importlib
import os
from typing import Callable, Optional

import torch


def _entry(module: str, *names: str) -> Callable:
    """First of ``names`` found in hallo_core ``module``; a clear error when none is there."""
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise RuntimeError(f"Hallo: cannot import {module} ({e}); the pack's requirements may be missing "
                           f"(pip install -r requirements.txt in the pack folder)") from e
    for n in names:
        fn = getattr(mod, n, None)
        if fn is not None:
            return fn
    raise RuntimeError(f"Hallo: {module} has none of {', '.join(names)}: this build of hallo_core does not "
                       f"provide that stage yet")


# ----------------------------------------------------------------------------------------- model


def build_hallo_net(unet_config_path: Optional[str], operations, dtype) -> tuple[torch.nn.Module, dict]:
    """Build the Hallo network without allocating weights (meta device); the checkpoint fills it."""
    load_unet_config = _entry("hallo_core.models", "load_unet_config")
    build = _entry("hallo_core.models", "build_hallo_net")
    cfg = load_unet_config(unet_config_path)
    net = build(unet_config=cfg, operations=operations, device="meta", dtype=dtype)
    return net, cfg


def load_hallo_weights(net: torch.nn.Module, path: str) -> None:
    """Strict load of the official net.pth / converted safetensors (errors name the file and keys)."""
    _entry("hallo_core.io.checkpoints", "load_hallo_weights")(net, path)


# ------------------------------------------------------------------------------------------- VAE


def load_vae_module(folder: str, device, dtype) -> torch.nn.Module:
    """diffusers AutoencoderKL from the official sd-vae-ft-mse folder."""
    return _entry("hallo_core.io.vae", "load_vae")(folder, device=device, dtype=dtype)


def vae_codec(vae_module: torch.nn.Module):
    """hallo_core's view of a diffusers VAE: [-1,1] pixels <-> latent mean * 0.18215."""
    return _entry("hallo_core.io.vae", "VaeCodec")(vae_module)


LATENT_SCALE = 0.18215


class ComfyVaeCodec:
    """ComfyUI's core VAE seen through hallo_core's codec interface.

    core ``VAE.encode`` takes IMAGE-layout pixels in 0..1, maps them to [-1,1] itself and returns the
    *unscaled* posterior mode (= mean, DiagonalGaussianRegularizer with sample=False); ``decode``
    returns IMAGE-layout 0..1 clamped as ``(x+1)/2``. Upstream Hallo encodes with the distribution mean
    times 0.18215 and decodes latents / 0.18215, so the scale is applied here.
    """

    def __init__(self, vae):
        self.vae = vae

    @property
    def dtype(self) -> torch.dtype:
        return self.vae.vae_dtype

    @property
    def device(self) -> torch.device:
        return self.vae.device

    @property
    def scale_factor(self) -> int:
        return int(self.vae.downscale_ratio) if isinstance(self.vae.downscale_ratio, int) else 8

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1] -> [N, 4, H/8, W/8] scaled latents."""
        img = ((pixels.float() + 1.0) / 2.0).permute(0, 2, 3, 1).cpu()
        return self.vae.encode(img) * LATENT_SCALE

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, chunk: Optional[int] = None, low_memory: bool = False) -> torch.Tensor:
        """[N, 4, h, w] scaled latents -> [N, 3, 8h, 8w] in [0, 1].

        ``chunk`` / ``low_memory`` are hallo_core's codec arguments; core ``VAE.decode`` batches by
        free memory itself, so they are accepted and left to it.
        """
        out = self.vae.decode((latents.float() / LATENT_SCALE).cpu())
        return out.reshape(-1, *out.shape[-3:]).permute(0, 3, 1, 2).float()


# ----------------------------------------------------------------------------------------- audio


def load_wav2vec(folder: str, device, dtype) -> torch.nn.Module:
    """wav2vec2-base-960h with Hallo's forward (both weight-norm key spellings accepted)."""
    cls = _entry("hallo_core.audio", "HalloWav2Vec")
    return cls.from_pretrained(folder, device=device, dtype=dtype)


def embed_audio(audio: dict, encoder: torch.nn.Module, separator_path: Optional[str], segment_seconds,
                progress: Optional[Callable[[int, int], None]] = None,
                interrupt: Optional[Callable[[], None]] = None):
    """ComfyUI AUDIO -> hallo_core.types.AudioFeatures (25 fps, padded to whole 16-frame clips).

    The onnxruntime separator session lives only for this call.
    """
    separator = None
    if separator_path is not None:
        separator = _entry("hallo_core.audio", "load_separator")(separator_path)
    try:
        fn = _entry("hallo_core.audio", "embed_audio")
        return fn(audio, encoder, separator=separator, segment_seconds=segment_seconds,
                  progress=progress, interrupt=interrupt)
    finally:
        del separator


# ------------------------------------------------------------------------------------------ face


def prepare_face(rgb_uint8, face_analysis_dir: str, size: int, mode: str, face_expand_ratio: float,
                 no_face: str, onnx_device: str):
    """[H, W, 3] uint8 portrait -> hallo_core.types.FaceData (masks, face region, embedding).

    onnxruntime / mediapipe sessions are created and released inside hallo_core for this call.
    """
    fn = _entry("hallo_core.face", "prepare_face")
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if onnx_device == "gpu" else None
    return fn(rgb_uint8, face_analysis_dir, size=size, mode=mode, face_expand_ratio=face_expand_ratio,
              no_face=no_face, providers=providers)


# --------------------------------------------------------------------------------------- sampling


def generation_settings(**kw):
    """hallo_core.pipeline.generate.GenerationSettings (sampler + loop settings)."""
    return _entry("hallo_core.pipeline.generate", "GenerationSettings")(**kw)


def generate(net, codec, face, audio, settings, sink, checkpoint=None, resume=False, callback=None,
             should_stop=None, model_id: str = "", context=None):
    """hallo_core's clip loop (Hallo chaining / Hallo2 motion-frame drop, streaming sink, resume).

    ``context`` is a ``prepare_context`` result for the same net/VAE/face (hallo_core checks it).
    """
    fn = _entry("hallo_core.pipeline.generate", "generate")
    return fn(net, codec, face, audio, settings, sink, checkpoint=checkpoint, resume=resume, callback=callback,
              should_stop=should_stop, model_id=model_id, context=context)


def prepare_context(net, codec, face, device=None):
    """The per-video reference pass for the Reference node: face tokens, face-locator features, masks,
    reference latent and the reference UNet's reference-image banks (faithful-fast path, 16-frame clips).

    Computed on the model's device, then kept on ``device`` (ComfyUI's intermediate device) between nodes.
    """
    settings = generation_settings()  # fast=True, clip_frames=16: what the samplers use
    ctx = _entry("hallo_core.pipeline.generate", "prepare_context")(net, codec, face, settings)
    return ctx.to(device) if device is not None else ctx


def context_for(reference, fast: bool):
    """The prepared context to hand to ``generate``: the Reference node's, on the fast path only
    (the plain upstream-structured path, ``fast=False``, builds its own)."""
    ctx = getattr(reference, "context", None)
    return ctx if (fast and ctx is not None) else None


def checkpoint_path_for(output: str) -> str:
    return str(_entry("hallo_core.pipeline.generate", "checkpoint_path_for")(output))


def make_scheduler(name: str):
    return _entry("hallo_core.pipeline.scheduler", "make_scheduler")(name)


def memory_sink():
    return _entry("hallo_core.io.video", "MemorySink")()


def mp4_sink(path: str, waveform, sample_rate: int):
    return _entry("hallo_core.io.video", "Mp4Sink")(path, waveform=waveform, sample_rate=sample_rate)


# --------------------------------------------------------------------------------------- upscaler


def load_upscaler_nets(net_g: str, detector: str, parser: Optional[str], device, dtype, operations) -> dict:
    """Temporal CodeFormer, RetinaFace-R50 and ParseNet from the official files (strict).

    Only the CodeFormer takes the chosen precision; detector and parser stay fp32 (as upstream).
    """
    mod = "hallo_core.io.upscaler_weights"
    cf = _entry(mod, "load_temporal_codeformer")(net_g, device=device, dtype=dtype, operations=operations)
    det = _entry(mod, "load_retinaface")(detector, device=device, dtype=torch.float32, operations=operations)
    par = None
    if parser is not None:
        par = _entry(mod, "load_parsenet")(parser, device=device, dtype=torch.float32, operations=operations)
    return {"codeformer": cf, "detector": det, "parser": par}


def upscale_frames(frames, nets: dict, bg_upscaler, scale: int, fidelity: float, **kw):
    """Iterator over upscaled IMAGE frames [H*s, W*s, 3] (hallo_core.upscale.video_upscale)."""
    fn = _entry("hallo_core.upscale.video_upscale", "upscale_frames")
    return fn(frames, nets["codeformer"], nets["detector"], nets["parser"], bg_upscaler, scale, fidelity, **kw)


def tensor_upscaler(model, device=None, dtype=None):
    return _entry("hallo_core.upscale.background", "tensor_upscaler")(model, device=device, dtype=dtype)


def download_plan(bundles: list[str]) -> list[tuple[str, str]]:
    """(HF repo, path) of every official file the bundles need (hallo_core.models_dir)."""
    return _entry("hallo_core.models_dir", "files_to_fetch")(bundles)


def hf_download(repo_id: str, files: list[str], target: str, progress=None) -> list[str]:
    """Download ``files`` of ``repo_id`` into ``target`` with huggingface_hub (explicit user action only)."""
    from huggingface_hub import hf_hub_download

    out = []
    for i, f in enumerate(files):
        out.append(hf_hub_download(repo_id=repo_id, filename=f, local_dir=target))
        if progress is not None:
            progress(i + 1, len(files))
    return out


def file_exists(path: str) -> bool:
    return os.path.isfile(path)
