"""sd-vae-ft-mse through diffusers' AutoencoderKL, with upstream Hallo's scaling.

Encode uses the latent distribution *mean* (upstream never samples) times 0.18215; decode
divides by 0.18215 and maps to [0, 1] with ``clamp(x / 2 + 0.5, 0, 1)``. Decoding is
batched in chunks (upstream decodes one frame at a time; the result is the same up to
float rounding because every VAE op is per-image).

Precision policy, the same for the CLI and the ComfyUI nodes (``vae_dtype``): the VAE computes in
float32 unless a lower precision is chosen explicitly. SD VAEs overflow float16 (activations past
65504 turn into inf, then NaN frames; ComfyUI's own SD VAE therefore works only in bf16 or fp32),
so a codec in a lower precision checks every chunk it encodes or decodes and recomputes a chunk
that is not finite in float32, with float32 copies of the weights for that chunk only (the module
is left where and as its owner placed it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

import torch

from ..assets import layout as models_dir
from ..errors import ModelMissingError, WeightsError, one_line

LATENT_SCALE = 0.18215


def vae_config(folder: Union[str, Path]) -> dict:
    """The folder's config.json, refused unless it describes the kind of VAE Hallo decodes with
    (an AutoencoderKL with 3 colour and 4 latent channels that diffusers can build)."""
    path = Path(folder) / "config.json"
    fix = (f"use the VAE folder {models_dir.rel_path('vae')} of {models_dir.source_of(models_dir.rel_path('vae'))} "
           "(python -m hallo_core download --models MODELS --which vae)")
    if not path.is_file():
        raise ModelMissingError(f"VAE config not found: {path}", fix=fix, component="vae", path=str(path))
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise WeightsError(f"the VAE config {path} cannot be read ({one_line(e, 120)})", fix=fix,
                           path=str(path)) from None
    groups = cfg.get("norm_num_groups", 32) if isinstance(cfg, dict) else 0
    if not isinstance(cfg, dict):
        problem = "it holds no settings"
    elif cfg.get("_class_name", "AutoencoderKL") != "AutoencoderKL":
        problem = f"it describes a {cfg['_class_name']}"
    elif (cfg.get("in_channels", 3), cfg.get("out_channels", 3), cfg.get("latent_channels", 4)) != (3, 3, 4):
        problem = (f"it has {cfg.get('in_channels', 3)} colour and {cfg.get('latent_channels', 4)} latent channels, "
                   "Hallo's UNet needs 3 and 4")
    elif not isinstance(groups, int) or groups < 1 or any(
            not isinstance(c, int) or c % groups for c in cfg.get("block_out_channels", ())):
        problem = f"its block widths {cfg.get('block_out_channels')} do not split into {groups} groups"
    else:
        return cfg
    raise WeightsError(f"{path} is not the config of Stable Diffusion's VAE (AutoencoderKL): {problem}", fix=fix,
                       path=str(path))


def load_vae(folder: Union[str, Path], device="cpu", dtype=torch.float32):
    """Load the official ``sd-vae-ft-mse/`` folder (config.json + weights) as AutoencoderKL."""
    from diffusers import AutoencoderKL

    folder = Path(folder)
    vae_config(folder)
    weights = [n for n in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
               if (folder / n).is_file()]
    if not weights:
        raise ModelMissingError(f"VAE weights not found in {folder}",
                                fix="expected diffusion_pytorch_model.safetensors or .bin (python -m hallo_core "
                                    "download --models MODELS --which vae)", component="vae", path=str(folder))
    from .checkpoints import trace_weight_load

    trace_weight_load(folder / weights[0], "VAE weights")
    vae = AutoencoderKL.from_pretrained(
        str(folder), use_safetensors=weights[0].endswith(".safetensors"), torch_dtype=dtype
    )
    return vae.to(device).eval().requires_grad_(False)


def vae_dtype(choice=None) -> torch.dtype:
    """The VAE's dtype under the policy: float32 for None / "auto", else the explicit choice
    ("fp32" / "fp16" / "bf16", torch's names, or a torch dtype); lower precisions are guarded."""
    if choice is None or choice == "auto":
        return torch.float32
    if isinstance(choice, torch.dtype):
        return choice
    names = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
             "half": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    if choice not in names:
        raise ValueError(f"VAE precision: expected auto, fp32, fp16 or bf16, got {choice!r}")
    return names[choice]


class _Call(torch.nn.Module):
    """Calls ``fn(vae, x)``; lets ``torch.func.functional_call`` swap the VAE's weights for one call."""

    def __init__(self, vae, fn):
        super().__init__()
        self.vae = vae
        self.fn = fn

    def forward(self, x):
        return self.fn(self.vae, x)


class VaeCodec:
    """Hallo's view of the VAE: [-1, 1] pixels <-> scaled latents, [0, 1] decoded frames."""

    def __init__(self, vae, decode_chunk: int = 1):
        self.vae = vae
        self.decode_chunk = max(1, int(decode_chunk))

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1] -> [N, 4, H/8, W/8] = latent mean * 0.18215 (VAE dtype)."""
        x = pixels.to(device=self.device, dtype=self.dtype)
        z = self.vae.encode(x).latent_dist.mean
        if not self._finite(z):
            z = self._fp32(_encode_mean, x).to(self.dtype)
        return z * LATENT_SCALE

    def _finite(self, t: torch.Tensor) -> bool:
        return self.dtype == torch.float32 or bool(torch.isfinite(t).all())

    def _fp32(self, fn, x: torch.Tensor) -> torch.Tensor:
        """``fn(vae, x)`` computed in float32 with float32 copies of the weights (overflow fallback)."""
        from torch.func import functional_call

        tensors = {"vae." + k: v.float() for k, v in self.vae.named_parameters()}
        tensors.update({"vae." + k: v.float() if v.is_floating_point() else v for k, v in self.vae.named_buffers()})
        return functional_call(_Call(self.vae, fn), tensors, (x.float(),))

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, chunk: Optional[int] = None,
               low_memory: bool = False) -> torch.Tensor:
        """[N, 4, h, w] scaled latents -> [N, 3, 8h, 8w] in [0, 1], decoded ``chunk`` at a time.

        ``low_memory`` turns on diffusers' sliced decoding. On a CUDA out-of-memory error the
        decode is retried one frame at a time with slicing and tiling (tiling blends
        overlapping tiles, so frames larger than the VAE's tile size change slightly; at
        512 px and below it does nothing).
        """
        chunk = chunk or self.decode_chunk
        z = (latents / LATENT_SCALE).to(device=self.device, dtype=self.dtype)
        saved = self._memory_flags()
        try:
            if low_memory:
                self._set_low_memory(tiling=False)
            try:
                out = [self._decode(z[i:i + chunk]) for i in range(0, z.shape[0], chunk)]
            except torch.cuda.OutOfMemoryError:
                out = None  # leave the except block so the failed attempt's tensors are freed
            if out is None:
                torch.cuda.empty_cache()
                self._set_low_memory(tiling=True)
                out = [self._decode(z[i:i + 1]) for i in range(z.shape[0])]
        finally:
            # the VAE may be shared (ComfyUI passes one object to many runs): a low-memory
            # decode must not change what later decodes compute
            self._restore_memory_flags(saved)
        return (torch.cat(out) / 2 + 0.5).clamp(0, 1)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        x = self.vae.decode(z).sample
        if not self._finite(x):
            x = self._fp32(_decode_sample, z).to(x.dtype)  # [-1, 1] after the fallback: fits any dtype
        return x

    def _memory_flags(self) -> dict:
        return {k: getattr(self.vae, k) for k in ("use_slicing", "use_tiling") if hasattr(self.vae, k)}

    def _restore_memory_flags(self, saved: dict) -> None:
        for k, v in saved.items():
            setattr(self.vae, k, v)

    def _set_low_memory(self, tiling: bool) -> None:
        for name in ("enable_slicing",) + (("enable_tiling",) if tiling else ()):
            fn = getattr(self.vae, name, None)
            if fn is not None:
                fn()


def _encode_mean(vae, x):
    return vae.encode(x).latent_dist.mean


def _decode_sample(vae, z):
    return vae.decode(z).sample
