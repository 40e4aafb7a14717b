"""The engine job both hosts drive: a photo and speech in, a finished mp4 out.

A :class:`Session` holds the models, loaded on first use and kept for every later job (a batch
of videos pays the weight loading once); :meth:`Session.run` runs one :class:`GenerateJob`:
frame the photo, embed the audio, stream the clips into the output (pasted back into the photo
when the framing asks for it), keep the resume checkpoint in step, and leave a complete or a
playable partial file. What a host adds is its own: argument parsing and messages (the CLI),
ComfyUI types and model management (the nodes), queues (``hallo batch``).

    with Session("pretrained_models") as s:
        result = s.run(GenerateJob("photo.jpg", "speech.wav", "talk.mp4"))
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

from .pipeline.resume import Checkpoint, checkpoint_path_for, resume_point

PathLike = Union[str, os.PathLike]


def _default_settings():
    from .pipeline.generate import GenerationSettings

    return GenerationSettings()


class OutputFile:
    """Where a job's video goes (``out``, with ``~`` expanded) and where its resume checkpoint lives."""

    out: PathLike

    @property
    def out_path(self) -> Path:
        return Path(os.path.expanduser(os.fspath(self.out)))

    @property
    def checkpoint(self) -> Path:
        return checkpoint_path_for(self.out_path)


@dataclass
class GenerateJob(OutputFile):
    """One video: inputs, output and every setting that decides its frames or its file."""

    image: PathLike
    audio: PathLike
    out: PathLike
    settings: object = field(default_factory=_default_settings)  # pipeline.generate.GenerationSettings
    hallo2: bool = False  # Hallo2 weights; the motion-frame drop is settings.mask_rate
    size: int = 512
    face: Optional[int] = None  # face index, counted left to right from 0; None = the largest
    frame: str = "auto"
    margin: Optional[float] = None  # None: the framing defaults
    max_side: Optional[int] = None
    detector: str = "auto"
    no_face: str = "error"
    separator: bool = True
    audio_features: str = "auto"  # "auto", "float32" or "float16"
    resume: bool = False


@dataclass
class JobResult:
    out: Path
    frames_written: int  # frames in the file, resumed ones included
    n_frames: int  # frames the whole video has
    interrupted: bool
    resumed_from: int  # frames that were on disk when the run started (0: a new file)
    seconds: float

    @property
    def complete(self) -> bool:
        return not self.interrupted and self.frames_written >= self.n_frames


class Session:
    """The models for any number of jobs, loaded on first use.

    Args:
        models: the models folder (official layout).
        device: torch device name, or "auto" (CUDA when available).
        dtype: torch dtype of the network and VAE; None = fp16 on CUDA (upstream's), fp32 elsewhere.
        keep_audio_models: keep wav2vec2 and the vocal separator between jobs (a batch wants
            this; a single run frees them before the diffusion weights load).
    """

    def __init__(self, models: PathLike, device: str = "auto", dtype=None, keep_audio_models: bool = True):
        from .assets import layout

        self.models = layout.resolve(models)
        self._device_name, self._dtype = device, dtype
        self.keep_audio_models = keep_audio_models
        self._nets: dict = {}
        self._vae = None
        self._encoder = None
        self._separator = None

    # -- models -------------------------------------------------------------------------------

    @property
    def device(self):
        import torch

        name = self._device_name
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        return torch.device(name)

    @property
    def dtype(self):
        import torch

        if self._dtype is not None:
            return self._dtype
        return torch.float16 if self.device.type == "cuda" else torch.float32

    def net(self, hallo2: bool = False):
        """The Hallo (or Hallo2) network, read once per session."""
        if hallo2 not in self._nets:
            from .io.checkpoints import load_hallo_weights
            from .models import build_hallo_net

            net = build_hallo_net(self.models.unet_config(), device="meta")
            load_hallo_weights(net, self.models.net(hallo2))
            net.denoising_unet.drop_unused_motion_modules()
            self._nets[hallo2] = net.to(device=self.device, dtype=self.dtype).eval().requires_grad_(False)
        return self._nets[hallo2]

    def vae(self):
        if self._vae is None:
            from .io.vae import VaeCodec, load_vae, vae_dtype

            # the VAE policy (hallo_core.io.vae), not the network's dtype
            self._vae = VaeCodec(load_vae(self.models.vae(), device=self.device, dtype=vae_dtype()))
        return self._vae

    def audio_models(self, separator: bool):
        """wav2vec2 and (when asked for and present) the vocal separator."""
        from .audio import HalloWav2Vec, load_separator

        if self._encoder is None:
            self._encoder = HalloWav2Vec.from_pretrained(self.models.require("wav2vec"), device=self.device)
        if separator and self._separator is None:
            self._separator = load_separator(self.models.path("audio_separator"))  # None (warned) when absent
        return self._encoder, (self._separator if separator else None)

    def release_audio_models(self) -> None:
        self._encoder = self._separator = None

    def close(self) -> None:
        """Drop every model (the session can still be used: they load again on demand)."""
        self._nets.clear()
        self._vae = None
        self.release_audio_models()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the job ------------------------------------------------------------------------------

    def frame(self, job: GenerateJob):
        """Find and prepare the face (no diffusion weights are read): a FramedInput."""
        from .face.crop import DEFAULT_MARGIN, DEFAULT_MAX_SIDE
        from .pipeline.full_frame import frame_input

        return frame_input(job.image, self.models.require("face_analysis").parent, size=job.size,
                           face_index=job.face, frame=job.frame,
                           margin=DEFAULT_MARGIN if job.margin is None else job.margin,
                           max_side=DEFAULT_MAX_SIDE if job.max_side is None else job.max_side,
                           detector=job.detector, no_face=job.no_face)

    def embed(self, job: GenerateJob):
        """The audio as wav2vec2 features at 25 fps (AudioFeatures)."""
        import torch

        from .audio import embed_audio

        encoder, separator = self.audio_models(job.separator)
        features = None if job.audio_features == "auto" else getattr(torch, job.audio_features)
        audio = embed_audio(job.audio, encoder, separator=separator,
                            segment_seconds=60.0 if job.hallo2 else None, feature_dtype=features)
        if not self.keep_audio_models:
            self.release_audio_models()  # before the diffusion weights load
        return audio

    def run(self, job: GenerateJob, framed=None, audio=None,
            progress: Optional[Callable] = None, should_stop: Optional[Callable[[], bool]] = None) -> JobResult:
        """Generate ``job.out``; returns when it is complete or stopped.

        ``framed`` / ``audio``: a FramedInput and AudioFeatures the host already computed (the CLI
        frames the photo before it reads any weights). ``progress``: the loop's callback
        ``(clip, n_clips, step, n_steps, frames or None)``. ``should_stop``: polled before every
        denoising step; the finished clips stay in a playable file next to their checkpoint.
        A signal raised inside (KeyboardInterrupt) leaves the same and propagates.
        """
        from .audio.loading import open_waveform
        from .media.video import Mp4Sink
        from .pipeline.full_frame import sidecar_path, write_sidecar
        from .pipeline.generate import ClipRun, stream

        t0 = time.time()
        framed = framed if framed is not None else self.frame(job)
        audio = audio if audio is not None else self.embed(job)
        out = job.out_path
        start = resume_point(out, job.resume)
        net, vae = self.net(job.hallo2), self.vae()
        # a checkpoint of another job is refused here, before the output is touched
        loop = ClipRun(net, vae, framed.face, audio, job_settings(job), start=start, should_stop=should_stop,
                       callback=progress, model_id=str(self.models.net(job.hallo2).name) + framed.resume_tag)
        wave, sr = open_waveform(job.audio)  # the audio as given, for the mp4, read as the video is written
        ckpt = Checkpoint(job.checkpoint)
        before = _stat(out)
        done, failed = None, False
        sink = framed.sink(Mp4Sink(out, wave, sr))
        try:
            done = stream(loop, sink, ckpt)
        except Exception:
            failed = True  # an error, not a stop: the file is kept as it is, no crop record is added
            raise
        finally:
            if done is not None and not done.interrupted:
                ckpt.discard()  # complete: nothing left to resume
            # stream closed the sink on every way out: what it committed is what the file holds
            written = loop.frames_done if done is not None else sink.committed_frames
            if written > 0 and not failed:
                write_sidecar(out, framed, Path(job.image).resolve())  # upscale --paste-into reads it
            elif written == 0 and start is None and _stat(out) not in (None, before):
                # a file this run started holds no frame: nothing plays, nothing to keep (a file
                # the run never opened is left as it was)
                for p in (out, sidecar_path(out)):
                    p.unlink(missing_ok=True)
        return JobResult(out, written, audio.num_frames, done.interrupted,
                         start.frames_done if start is not None else 0, time.time() - t0)


def job_settings(job: GenerateJob):
    """The job's sampling settings as the loop takes them (the motion-frame drop is Hallo2's)."""
    from dataclasses import replace

    return job.settings if job.hallo2 else replace(job.settings, mask_rate=0.0)


def _stat(p: Path):
    try:
        st = p.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns
