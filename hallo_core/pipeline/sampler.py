"""One 16-frame clip, computed the way upstream's ``FaceAnimatePipeline.__call__`` does.

Per video (constant across clips, so computed once): the face tokens
``[image_proj(0), image_proj(emb)]``, the face-locator residual ``[0, face_locator(box)]``,
the attention masks and (fast path) the reference-image latent. Per clip: the VAE mean
latents of ``[R, M1, M2]``, one reference-UNet pass at t=0 on ``[R, M1, M2] x 2`` (the model
tiles the face tokens ``[u, c] x 3`` like upstream), the audio tokens
``[0, audio_proj(window)]``, the initial noise drawn from the CPU generator in the model
dtype, then ``steps`` DDIM steps with ``v = v_u + g (v_c - v_u)`` and the decode (frame by frame
by default, as upstream; ``decode_chunk`` batches it).

``fast=True`` (default) is the faithful-fast path: identical math, only work that upstream
repeats is done once (face locator on one frame then broadcast, reference latent and the
reference-image items of the reference pass cached per video, reference K/V projected once
per clip; see reference_cache.py). ``fast=False`` keeps the plain upstream structure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import torch

from ..io.vae import VaeCodec
from ..types import FaceData
from .scheduler import make_scheduler, step_kwargs
from .reference_cache import reference_banks, reference_image_banks, reference_pass


@dataclass
class SamplerSettings:
    """Per-clip sampling knobs. Defaults are upstream's (40 DDIM steps, CFG 3.5, weights 1)."""

    steps: int = 40
    cfg: float = 3.5
    pose_weight: float = 1.0
    face_weight: float = 1.0
    lip_weight: float = 1.0
    scheduler: str = "ddim"
    cfg_steps: Optional[int] = None  # fast mode: CFG only on the first N steps (None = all)
    fast: bool = True  # faithful-fast precomputation (same output up to float rounding)
    # 1 = upstream's frame-by-frame decode: batching frames changed float32 frames by 4x upstream's
    # own thread spread at 512 px (docs/benchmarks.md) for no measurable time; >1 is opt-in throughput
    decode_chunk: int = 1
    # memory: reference UNet on the CPU between passes, VAE slicing, decode one frame at a time (CUDA)
    low_vram: bool = False
    # compute device/dtype; None reads the first denoiser weight. A host that keeps weights on
    # the CPU and casts them per layer (ComfyUI's comfy.ops, partial loading) sets both.
    device: Optional[object] = None
    dtype: Optional[torch.dtype] = None

    @property
    def motion_scale(self) -> Tuple[float, float, float]:
        return (float(self.pose_weight), float(self.face_weight), float(self.lip_weight))


@dataclass
class VideoContext:
    """Everything that is the same for every clip of one video."""

    ref_pixels: torch.Tensor  # [1, 3, S, S] in [-1, 1], float32
    face_region: torch.Tensor  # [3, S, S] in [0, 1] (also the Hallo2 keep-region)
    face_tokens: torch.Tensor  # [2, 4, D]: uncond, cond
    face_features: torch.Tensor  # [2, C0, F or 1, h, w]: zeros, face_locator(box)
    masks: Tuple[List[torch.Tensor], List[torch.Tensor], List[torch.Tensor]]  # full, face, lip
    frames: int
    ref_latent: Optional[torch.Tensor] = None  # [1, 4, h, w] (fast path only)
    ref_banks: Optional[dict] = None  # reference-image banks (R.u, R.c), fast path, made lazily
    notes: list = field(default_factory=list)
    owner: dict = field(default_factory=dict)  # what it was made from (see generate.prepare_context)

    def to(self, device) -> "VideoContext":
        """A copy with the model-side tensors on ``device`` (moves are exact, values unchanged)."""
        dev = torch.device(device)

        def mv(t):
            return None if t is None else t.to(dev)

        return VideoContext(
            self.ref_pixels, self.face_region, mv(self.face_tokens), mv(self.face_features),
            tuple([mv(m) for m in lv] for lv in self.masks), self.frames, mv(self.ref_latent),
            None if self.ref_banks is None else {k: mv(v) for k, v in self.ref_banks.items()},
            list(self.notes), dict(self.owner))


def model_dtype(net, settings=None) -> torch.dtype:
    """The compute dtype: ``settings.dtype`` when given, else the denoiser's weights'."""
    dt = getattr(settings, "dtype", None)
    return dt if dt is not None else next(net.denoising_unet.parameters()).dtype


def model_device(net, settings=None) -> torch.device:
    """The compute device: ``settings.device`` when given, else the denoiser's weights'."""
    dev = getattr(settings, "device", None)
    return torch.device(dev) if dev is not None else next(net.denoising_unet.parameters()).device


@torch.no_grad()
def prepare_video(net, vae: VaeCodec, face: FaceData, frames: int = 16, fast: bool = True,
                  settings=None) -> VideoContext:
    """Compute the per-video constants (upstream recomputes them every clip; same values).
    ``settings`` only supplies the compute device and dtype (see ``model_device``)."""
    dt, dev = model_dtype(net, settings), model_device(net, settings)
    emb = face.face_emb.reshape(1, -1).to(dev, dt)
    face_tokens = torch.cat([net.imageproj(torch.zeros_like(emb)), net.imageproj(emb)])
    region = face.face_region.to(dev, dt)[None, :, None]  # [1, 3, 1, S, S]
    n = 1 if fast else frames  # the face locator is per frame: one frame, broadcast, is exact
    feat = net.face_locator(region.expand(-1, -1, n, -1, -1))
    if fast and frames > 1:
        feat = feat.expand(-1, -1, frames, -1, -1)
    face_features = torch.cat([torch.zeros_like(feat), feat])

    def level_masks(levels: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        out = []
        for m in levels:
            # materialised as upstream's [2F, hw]: cheap, and the model's broadcast [1, hw]
            # form measured ~1.6e-5 relative off per step on the tiny config
            out.append(m.reshape(1, -1).to(dev, dt).expand(2 * frames, -1).contiguous())
        return out

    masks = (level_masks(face.full_masks), level_masks(face.face_masks), level_masks(face.lip_masks))
    ref_pixels = face.pixels.reshape(1, *face.pixels.shape[-3:]).float()
    ctx = VideoContext(ref_pixels, face.face_region.float(), face_tokens, face_features, masks, frames)
    if fast:
        ctx.ref_latent = vae.encode(ref_pixels)
    return ctx


def draw_initial_noise(generator: torch.Generator, frames: int, latent_hw: Tuple[int, int],
                       dtype: torch.dtype, device) -> torch.Tensor:
    """Upstream's draw: randn [1, 4, F, h, w] in the model dtype on the CPU generator, then moved."""
    shape = (1, 4, frames, latent_hw[0], latent_hw[1])
    return torch.randn(shape, generator=generator, dtype=dtype, device="cpu").to(device)


StepCallback = Callable[[int, int], None]  # (step index, number of steps)


@torch.no_grad()
def denoise(scheduler, latents: torch.Tensor, predict: Callable, on_step: Optional[StepCallback] = None,
            should_stop: Optional[Callable[[], bool]] = None) -> Optional[torch.Tensor]:
    """The scheduler loop: ``predict(latents, t, i)`` returns the (guided) v-prediction for the
    unscaled latents and applies ``scale_model_input`` itself. None if ``should_stop`` fired."""
    kw = step_kwargs(scheduler)
    n = len(scheduler.timesteps)
    for i, t in enumerate(scheduler.timesteps):
        if should_stop is not None and should_stop():
            return None
        latents = scheduler.step(predict(latents, t, i), t, latents, **kw, return_dict=False)[0]
        if on_step is not None:
            on_step(i, n)
    return latents


def _is_reference_image(motion_pixels: torch.Tensor, ref_pixels: torch.Tensor) -> Tuple[bool, ...]:
    """Per motion frame: are its pixels exactly the reference image's (a first clip)?"""
    ref = ref_pixels.reshape(ref_pixels.shape[-3:])
    return tuple(bool(torch.equal(m.to(ref.device, ref.dtype), ref)) for m in motion_pixels)


def sample_clip(
    net,
    vae: VaeCodec,
    ctx: VideoContext,
    motion_pixels: torch.Tensor,
    window: torch.Tensor,
    generator: torch.Generator,
    settings: SamplerSettings,
    scheduler=None,
    on_step: Optional[StepCallback] = None,
    should_stop: Optional[Callable[[], bool]] = None,
) -> Optional[torch.Tensor]:
    """Sample one clip.

    Args:
        motion_pixels: [2, 3, S, S] in [-1, 1] (already dropped for Hallo2).
        window: audio windows [F, 5, 12, 768] for the clip's frames.
        generator: CPU generator; exactly one draw (the initial noise) is made from it.
    Returns:
        decoded frames [F, 3, S, S] float32 in [0, 1] on the model device, or None if
        ``should_stop`` asked to stop mid-clip.
    """
    dt, dev = model_dtype(net, settings), model_device(net, settings)
    frames = ctx.frames
    unet = net.denoising_unet
    scheduler = scheduler or make_scheduler(settings.scheduler)
    scheduler.set_timesteps(settings.steps, device=dev)

    # initial noise: drawn before anything else of the clip, like upstream's prepare_latents
    s = ctx.ref_pixels.shape[-1] // vae.scale_factor
    latents = draw_initial_noise(generator, frames, (s, s), dt, dev) * scheduler.init_noise_sigma

    do_cfg = settings.cfg > 1.0
    offload = settings.low_vram
    if ctx.ref_latent is not None:
        # faithful-fast: reference-image items once per video, motion items per clip
        if ctx.ref_banks is None:
            ctx.ref_banks = reference_image_banks(net, ctx.ref_latent, ctx.face_tokens, offload)
        same = _is_reference_image(motion_pixels, ctx.ref_pixels)
        motion_latents = None if all(same) else vae.encode(motion_pixels)
        banks = reference_banks(net, ctx.ref_banks, motion_latents, ctx.face_tokens, do_cfg, offload, same)
    else:
        ref_latents = vae.encode(torch.cat([ctx.ref_pixels, motion_pixels.float()]))
        # CFG: [R, M1, M2] x 2; batch 1: [R, M1, M2] with the conditional face tokens only
        x = ref_latents.to(dt).repeat(2, 1, 1, 1) if do_cfg else ref_latents.to(dt)
        with reference_pass(net, dev, offload, x.shape):
            banks = net.reference_unet(x, 0, ctx.face_tokens if do_cfg else ctx.face_tokens[1:])
    tok = net.audioproj(window[None].to(dev, dt))
    audio_tokens = torch.cat([torch.zeros_like(tok), tok])
    ms = settings.motion_scale

    ref_full = ref_cond = None
    if do_cfg:
        ref_full = unet.prepare_reference(banks, batch=2, fast=settings.fast)
    if not do_cfg or settings.cfg_steps is not None:
        # the conditional row alone sees the second half of the banks: (R.c, M1.u, M2.c)
        half = banks if not do_cfg else {k: v[v.shape[0] // 2:] for k, v in banks.items()}
        ref_cond = unet.prepare_reference(half, batch=1, fast=settings.fast)
    cond_masks = tuple([m[m.shape[0] // 2:] for m in lv] for lv in ctx.masks)

    def predict(latents, t, i):
        if do_cfg and (settings.cfg_steps is None or i < settings.cfg_steps):
            x = scheduler.scale_model_input(torch.cat([latents, latents]), t)
            v = unet(x, t, ctx.face_tokens, reference=ref_full, face_features=ctx.face_features,
                     full_masks=ctx.masks[0], face_masks=ctx.masks[1], lip_masks=ctx.masks[2],
                     audio_tokens=audio_tokens, motion_scale=ms, zero_audio_rows=1 if settings.fast else 0)
            v_u, v_c = v.chunk(2)
            return v_u + settings.cfg * (v_c - v_u)
        x = scheduler.scale_model_input(latents, t)
        return unet(x, t, ctx.face_tokens[1:], reference=ref_cond, face_features=ctx.face_features[1:],
                    full_masks=cond_masks[0], face_masks=cond_masks[1], lip_masks=cond_masks[2],
                    audio_tokens=audio_tokens[1:], motion_scale=ms, num_uncond=0)

    latents = denoise(scheduler, latents, predict, on_step, should_stop)
    if latents is None:
        return None

    z = latents[0].transpose(0, 1)  # [F, 4, h, w]
    return vae.decode(z, 1 if settings.low_vram else settings.decode_chunk,
                      low_memory=settings.low_vram).float()
