"""The clip loop: Hallo chaining, Hallo2 motion-frame drop, streaming sinks, resume, hooks.

RNG order is upstream's: one CPU generator seeded once (upstream's ``torch.manual_seed(42)``
returns the global CPU generator, the same stream); per clip the Hallo2 keep mask is drawn
first (when enabled), then the clip's initial noise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional, Union

import torch

from ..errors import ResumeMismatchError
from ..io.vae import VaeCodec
from ..media.video import FrameSink, MemorySink
from ..types import AudioFeatures, FaceData
from .chain import audio_window, drop_motion_frames, first_motion_frames, next_motion_frames, plan_clips
from .motion import MotionFrames, skip_clip_draws
from .resume import ResumeState, fingerprint, load_state, save_state
from .sampler import SamplerSettings, VideoContext, model_device, model_dtype, prepare_video, sample_clip
from .scheduler import make_scheduler
from .reference_cache import reference_image_banks


@dataclass
class GenerationSettings(SamplerSettings):
    """Sampler settings plus the loop's: seed, clip geometry and the Hallo2 drop."""

    seed: int = 42
    clip_frames: int = 16
    motion_frames: int = 2
    mask_rate: float = 0.0  # Hallo2 per-pixel drop of the motion frames; 0 = plain Hallo chaining

    def identity(self) -> dict:
        """Settings that change the frames (hashed into the resume checkpoint).

        The drop is written in the two-field form of earlier releases (an on/off flag and a rate that
        stayed at 0.25 when off), so checkpoints they wrote still match.
        """
        keys = ("steps", "cfg", "pose_weight", "face_weight", "lip_weight", "scheduler", "cfg_steps",
                "seed", "clip_frames", "motion_frames")
        out = {k: getattr(self, k) for k in keys}
        drop = self.mask_rate > 0
        out.update(use_mask=drop, mask_rate=self.mask_rate if drop else 0.25)
        return out


def _owner(net, vae, face: FaceData, settings: "GenerationSettings") -> dict:
    """What a VideoContext depends on: the network, the VAE, the face and the clip geometry."""
    return {"net": id(net), "vae": id(getattr(vae, "vae", vae)), "dtype": str(model_dtype(net, settings)),
            "size": int(face.pixels.shape[-1]), "frames": int(settings.clip_frames), "fast": bool(settings.fast)}


@torch.no_grad()
def prepare_context(net, vae: VaeCodec, face: FaceData,
                    settings: Optional["GenerationSettings"] = None) -> VideoContext:
    """The per-video constants, computed once and reusable by any number of ``generate`` calls.

    Face tokens, face-locator features, attention masks and, on the fast path, the reference
    latent and the reference UNet's banks of the reference image (R.u, R.c). Seed, steps, CFG,
    weights and scheduler do not enter it, so one context serves every sampling run of a portrait.
    Pass it as ``generate(..., context=ctx)`` with the same net, VAE and face.
    """
    settings = settings or GenerationSettings()
    ctx = prepare_video(net, vae, face, settings.clip_frames, fast=settings.fast, settings=settings)
    if ctx.ref_latent is not None:
        ctx.ref_banks = reference_image_banks(net, ctx.ref_latent, ctx.face_tokens,
                                              settings.low_vram)
    ctx.owner = _owner(net, vae, face, settings)
    return ctx


def check_context(ctx: VideoContext, net, vae, face: FaceData, settings: "GenerationSettings") -> None:
    """Raise ValueError when ``ctx`` was prepared for another network, VAE, face or geometry."""
    if not isinstance(ctx, VideoContext) or not ctx.owner:
        raise ValueError("context: expected a VideoContext from prepare_context()")
    want = _owner(net, vae, face, settings)
    names = {"net": "another Hallo network", "vae": "another VAE", "dtype": "another model precision",
             "size": "another image size", "frames": "another clip length",
             "fast": "the other sampling path (fast on/off)"}
    for key, what in names.items():
        if ctx.owner.get(key) != want[key]:
            raise ValueError(f"context was prepared with {what} ({key}: {ctx.owner.get(key)} != "
                             f"{want[key]}); re-encode the reference with the same model, VAE and face")
    pix = face.pixels.reshape(ctx.ref_pixels.shape).to(ctx.ref_pixels.device, ctx.ref_pixels.dtype)
    if not torch.equal(pix, ctx.ref_pixels) or not torch.equal(
            face.face_region.to(ctx.face_region.device, ctx.face_region.dtype), ctx.face_region):
        raise ValueError("context was prepared for another face (reference pixels or face region differ); "
                         "re-encode the reference with this face")


# callback(clip_idx, n_clips, step, n_steps, latest_frames or None)
ProgressCallback = Callable[[int, int, int, int, Optional[torch.Tensor]], None]


@dataclass
class GenerationResult:
    frames_written: int  # frames in the sink(s) after this call, counting resumed ones
    clips_done: int
    n_clips: int
    interrupted: bool
    seconds: float


def checkpoint_path_for(output: Union[str, Path]) -> Path:
    """The resume checkpoint lives next to the output: ``OUT.mp4`` -> ``OUT.mp4.resume.pt``."""
    p = Path(output)
    return p.with_name(p.name + ".resume.pt")


@torch.no_grad()
def generate(
    net,
    vae: VaeCodec,
    face: FaceData,
    audio: AudioFeatures,
    settings: Optional[GenerationSettings] = None,
    sink: Optional[FrameSink] = None,
    checkpoint: Optional[Union[str, Path]] = None,
    resume: bool = False,
    callback: Optional[ProgressCallback] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    model_id: str = "",
    context: Optional[VideoContext] = None,
    motion: Optional[MotionFrames] = None,
) -> GenerationResult:
    """Generate the whole video clip by clip, handing each finished clip to ``sink``.

    Args:
        sink: a FrameSink (``MemorySink`` when None; read it back with ``sink.images()``).
        checkpoint: path of the resume checkpoint (e.g. ``checkpoint_path_for(out)``); None
            disables checkpointing. It is rewritten after every clip the sink has committed.
        resume: continue from ``checkpoint`` if it exists and matches these inputs/settings.
        callback: progress hook, called after every step and (with the frames) every clip.
        should_stop: polled before every step; True abandons the clip in flight and returns
            with ``interrupted=True`` (the sink keeps every finished clip).
        model_id: free text folded into the input hash (e.g. the checkpoint file name).
        context: per-video constants from ``prepare_context`` for this net, VAE, face and
            settings (checked; ValueError otherwise); None computes them here. Same frames.
        motion: continue from these frames (``motion.motion_frames_from_images``) instead of
            the reference image; the generator is advanced past ``motion.clip_index`` clips, so
            continuing from the last frames of a run of whole clips equals one run over the
            joined audio. Its ``mask_rate``, when set, replaces the settings' Hallo2 drop.
    """
    settings = settings or GenerationSettings()
    settings = _with_motion_rate(settings, motion)
    sink = sink if sink is not None else MemorySink()
    t0 = time.time()
    fclip, nm = settings.clip_frames, settings.motion_frames
    plan = plan_clips(audio.num_frames, fclip)
    n_clips = len(plan)
    size = int(face.pixels.shape[-1])

    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(settings.seed))
    input_hash = run_hash(net, face, audio, settings, model_id, motion)
    ckpt = Path(checkpoint) if checkpoint is not None else None

    start_clip, initial = 0, motion
    motion = None
    state = load_state(ckpt) if (resume and ckpt is not None and ckpt.is_file()) else None
    if state is not None:
        if state.input_hash != input_hash:
            raise ResumeMismatchError(f"the resume checkpoint {ckpt} was written for other inputs or settings",
                                      fix="give the inputs and settings of the interrupted run, or delete "
                                          f"{ckpt.name} to start over", path=str(ckpt))
        start_clip, motion = state.next_clip, state.motion
        generator.set_state(state.rng_state)
    start_frame = plan[start_clip][0] if start_clip < n_clips else audio.num_frames
    if start_clip >= n_clips:  # already complete
        return GenerationResult(start_frame, n_clips, n_clips, False, 0.0)

    if context is not None:
        check_context(context, net, vae, face, settings)
        ctx = context.to(model_device(net, settings))
    else:
        ctx = prepare_video(net, vae, face, fclip, fast=settings.fast, settings=settings)
    scheduler = make_scheduler(settings.scheduler)
    if motion is None and initial is not None:
        if initial.size != size or initial.pixels.shape[0] != nm:
            raise ValueError(f"motion frames: expected {nm} frames of {size}x{size}, got "
                             f"{tuple(initial.pixels.shape)}")
        s = size // vae.scale_factor
        skip_clip_draws(generator, initial.clip_index, ctx.face_region, fclip, (s, s), model_dtype(net, settings),
                        settings.mask_rate)
        motion = initial.pixels.float()
    if motion is None:
        motion = first_motion_frames(ctx.ref_pixels, nm)
    motion = motion.to(ctx.face_tokens.device)
    sink.open(size, size, audio.fps, start_frame=start_frame)
    pending = []  # states not yet covered by the sink's committed frames
    interrupted = False
    clips_done = start_clip
    try:
        for k in range(start_clip, n_clips):
            first, keep = plan[k]
            mot = drop_motion_frames(motion, generator, settings.mask_rate, ctx.face_region)
            window = audio_window(audio.features, first, fclip)

            def on_step(i, n, k=k):
                if callback is not None:
                    callback(k, n_clips, i + 1, n, None)

            frames = sample_clip(net, vae, ctx, mot, window, generator, settings, scheduler,
                                 on_step=on_step, should_stop=should_stop)
            if frames is None:
                interrupted = True
                break
            motion = next_motion_frames(frames, nm)
            sink.write(frames[:keep])
            clips_done = k + 1
            pending.append(ResumeState(input_hash, k + 1, first + keep, motion.cpu(),
                                       generator.get_state()))
            if ckpt is not None:
                _save_committed(ckpt, pending, sink.committed_frames)
            if callback is not None:
                callback(k, n_clips, settings.steps, settings.steps, frames[:keep])
    finally:
        sink.close()
        if ckpt is not None and pending:
            _save_committed(ckpt, pending, sink.committed_frames)
    frames_written = plan[clips_done - 1][0] + plan[clips_done - 1][1] if clips_done else 0
    return GenerationResult(frames_written, clips_done, n_clips, interrupted, time.time() - t0)


def _with_motion_rate(settings: GenerationSettings, motion: Optional[MotionFrames]) -> GenerationSettings:
    """A motion input's ``mask_rate``, when set, replaces the settings' Hallo2 drop."""
    if motion is None or motion.mask_rate is None:
        return settings
    return replace(settings, mask_rate=max(float(motion.mask_rate), 0.0))


def run_hash(net, face: FaceData, audio: AudioFeatures, settings: Optional[GenerationSettings] = None,
             model_id: str = "", motion: Optional[MotionFrames] = None) -> str:
    """The identity of a run, as its resume checkpoint records it.

    A host can name an output after it (ComfyUI's long-video node does), so that queueing the same
    job again finds its partial file and checkpoint while a changed job gets a new name. The
    settings are taken as ``generate`` takes them (a motion input's ``mask_rate`` replaces theirs).
    """
    settings = _with_motion_rate(settings or GenerationSettings(), motion)
    identity = settings.identity()
    if motion is not None:
        identity["motion"] = _motion_digest(motion)
    return fingerprint(face, audio, identity, net, model_id)


def _motion_digest(motion: MotionFrames) -> str:
    import hashlib

    t = motion.pixels.detach().cpu().float().contiguous()
    h = hashlib.sha256(str(tuple(t.shape)).encode())
    h.update(t.numpy().tobytes())
    return f"{h.hexdigest()}:{motion.clip_index}"


def _save_committed(path: Path, pending: list, committed: int) -> None:
    """Write the newest state whose frames are all on disk; drop older ones."""
    ready = [s for s in pending if s.frames_done <= committed]
    if ready:
        save_state(path, ready[-1])
        del pending[: pending.index(ready[-1]) + 1]
