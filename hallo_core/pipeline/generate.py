"""The clip loop: Hallo chaining, Hallo2 motion-frame drop, streaming sinks, resume, hooks.

:class:`ClipRun` is the loop itself, an iterator of finished clips that leaves sinks, checkpoints,
progress and stopping to its host; :func:`generate` is the stock host around it.

RNG order is upstream's: one CPU generator seeded once (upstream's ``torch.manual_seed(42)``
returns the global CPU generator, the same stream); per clip the Hallo2 keep mask is drawn
first (when enabled), then the clip's initial noise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

import torch

from ..io.vae import VaeCodec
from ..media.video import FrameSink, MemorySink
from ..types import AudioFeatures, FaceData
from .chain import audio_window, drop_motion_frames, first_motion_frames, next_motion_frames, plan_clips
from .motion import MotionFrames, skip_clip_draws
from .resume import Checkpoint, ResumeMismatchError, ResumeState, checkpoint_path_for, fingerprint  # noqa: F401
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
        """Settings that change the frames (hashed into the resume checkpoint)."""
        keys = ("steps", "cfg", "pose_weight", "face_weight", "lip_weight", "scheduler", "cfg_steps",
                "seed", "clip_frames", "motion_frames", "mask_rate")
        return {k: getattr(self, k) for k in keys}


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
    last_frame: Optional[torch.Tensor] = None  # [1, 3, S, S] of the last clip this call finished


@dataclass
class Clip:
    """One finished clip, as the loop hands it to its host."""

    index: int
    n_clips: int
    first_frame: int  # the clip's first frame in the whole video
    frames: torch.Tensor  # [clip_frames, 3, S, S] float in [0, 1]: the whole decoded clip
    keep: int  # frames of it that belong to the video (the last clip stops where the audio does)
    state: ResumeState  # what continuing after this clip needs

    @property
    def output(self) -> torch.Tensor:
        return self.frames[: self.keep]


class ClipRun:
    """The clip loop as an iterator: each finished clip is handed back with its resume state.

    Where frames go, when checkpoints are written, how progress is shown and when to stop are
    the host's (``generate`` is the stock host: a sink and an optional checkpoint file).

    Args:
        start: a ResumeState of an earlier run of the same job (``ResumeMismatchError`` when it
            was written for other inputs or settings); the loop continues after its clip.
        motion, context, model_id: as for ``generate``.
        should_stop: polled before every denoising step; True ends the iteration at once (the
            clip in flight is dropped) and sets ``interrupted``.
        callback: ``callback(clip_index, n_clips, step, n_steps, None)`` after every denoising
            step (``stream`` adds the call with the frames after every clip).

    RNG order is upstream's whether a run is continued or not, so iterating a resumed run gives
    the remaining clips of the uninterrupted one exactly.
    """

    def __init__(self, net, vae: VaeCodec, face: FaceData, audio: AudioFeatures,
                 settings: Optional[GenerationSettings] = None, *, start: Optional[ResumeState] = None,
                 motion: Optional[MotionFrames] = None, context: Optional[VideoContext] = None,
                 model_id: str = "", should_stop: Optional[Callable[[], bool]] = None,
                 callback: Optional[ProgressCallback] = None):
        self.settings = _with_motion_rate(settings or GenerationSettings(), motion)
        self.net, self.vae, self.face, self.audio = net, vae, face, audio
        self.plan = plan_clips(audio.num_frames, self.settings.clip_frames)
        self.n_clips = len(self.plan)
        self.size = int(face.pixels.shape[-1])
        self.input_hash = run_hash(net, face, audio, self.settings, model_id, motion)
        if start is not None and start.input_hash != self.input_hash:
            raise ResumeMismatchError("the resume checkpoint was written for other inputs or settings")
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(int(self.settings.seed))
        self.start_clip, self._motion, self._initial = 0, None, motion
        if start is not None:
            self.start_clip, self._motion = start.next_clip, start.motion
            self.generator.set_state(start.rng_state)
        self.clips_done = self.start_clip
        self.interrupted = False
        self._context, self._should_stop, self.callback = context, should_stop, callback
        self._ready = None

    @property
    def start_frame(self) -> int:
        return self.plan[self.start_clip][0] if self.start_clip < self.n_clips else self.audio.num_frames

    @property
    def complete(self) -> bool:
        return self.clips_done >= self.n_clips

    @property
    def frames_done(self) -> int:
        """Frames of the video covered by the clips finished so far (resumed ones included)."""
        k = self.clips_done
        return self.plan[k - 1][0] + self.plan[k - 1][1] if k else 0

    def prepare(self) -> None:
        """The per-video constants and the first motion frames; iterating calls it if nobody did.

        Separate so that a host can let a bad motion input or context fail before it opens its
        output.
        """
        if self._ready is not None or self.complete:
            return
        net, vae, face, settings = self.net, self.vae, self.face, self.settings
        if self._context is not None:
            check_context(self._context, net, vae, face, settings)
            ctx = self._context.to(model_device(net, settings))
        else:
            ctx = prepare_video(net, vae, face, settings.clip_frames, fast=settings.fast, settings=settings)
        scheduler = make_scheduler(settings.scheduler)
        motion, initial, nm = self._motion, self._initial, settings.motion_frames
        if motion is None and initial is not None:
            if initial.size != self.size or initial.pixels.shape[0] != nm:
                raise ValueError(f"motion frames: expected {nm} frames of {self.size}x{self.size}, got "
                                 f"{tuple(initial.pixels.shape)}")
            s = self.size // vae.scale_factor
            skip_clip_draws(self.generator, initial.clip_index, ctx.face_region, settings.clip_frames, (s, s),
                            model_dtype(net, settings), settings.mask_rate)
            motion = initial.pixels.float()
        if motion is None:
            motion = first_motion_frames(ctx.ref_pixels, nm)
        self._motion = motion.to(ctx.face_tokens.device)
        self._ready = (ctx, scheduler)

    @torch.no_grad()
    def __iter__(self) -> Iterator[Clip]:
        self.prepare()
        if self.complete:
            return
        ctx, scheduler = self._ready
        settings, generator = self.settings, self.generator
        for k in range(self.clips_done, self.n_clips):
            first, keep = self.plan[k]
            mot = drop_motion_frames(self._motion, generator, settings.mask_rate, ctx.face_region)
            window = audio_window(self.audio.features, first, settings.clip_frames)

            def on_step(i, n, k=k):
                if self.callback is not None:
                    self.callback(k, self.n_clips, i + 1, n, None)

            frames = sample_clip(self.net, self.vae, ctx, mot, window, generator, settings, scheduler,
                                 on_step=on_step, should_stop=self._should_stop)
            if frames is None:
                self.interrupted = True
                return
            self._motion = next_motion_frames(frames, settings.motion_frames)
            self.clips_done = k + 1
            state = ResumeState(self.input_hash, k + 1, first + keep, self._motion.cpu(), generator.get_state())
            yield Clip(k, self.n_clips, first, frames, keep, state)


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
        resume: continue from ``checkpoint`` if it exists and matches these inputs/settings
            (``ResumeMismatchError`` when it does not).
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
    ckpt = Checkpoint(checkpoint) if checkpoint is not None else None
    start = ckpt.load() if (resume and ckpt is not None and ckpt.exists()) else None
    run = ClipRun(net, vae, face, audio, settings, start=start, motion=motion, context=context,
                  model_id=model_id, should_stop=should_stop, callback=callback)
    return stream(run, sink if sink is not None else MemorySink(), ckpt)


def stream(run: ClipRun, sink: FrameSink, checkpoint: Optional[Checkpoint] = None) -> GenerationResult:
    """Run ``run`` to its end (or its stop) with every clip going into ``sink``.

    The checkpoint, when given, follows what the sink has committed; ``run.callback`` also hears
    of every finished clip, with its frames. The sink is closed on every way out.
    """
    t0 = time.time()
    if run.complete:
        return GenerationResult(run.start_frame, run.n_clips, run.n_clips, False, 0.0)
    run.prepare()
    sink.open(run.size, run.size, run.audio.fps, start_frame=run.start_frame)
    last = None
    try:
        for clip in run:
            sink.write(clip.output)
            last = clip.output[-1:]
            if checkpoint is not None:
                checkpoint.clip_done(clip.state, sink.committed_frames)
            if run.callback is not None:
                run.callback(clip.index, run.n_clips, run.settings.steps, run.settings.steps, clip.output)
    finally:
        sink.close()
        if checkpoint is not None:
            checkpoint.flush(sink.committed_frames)
    return GenerationResult(run.frames_done, run.clips_done, run.n_clips, run.interrupted, time.time() - t0, last)


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
