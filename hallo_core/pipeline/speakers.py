"""Several faces of one photo, each driven by its own voice, streamed into one full-frame video.

One :class:`~hallo_core.pipeline.generate.ClipRun` per speaker, all sharing one network and one
VAE, advance in lockstep: clip k of every speaker is sampled (one after the other, each with its
own generator seeded as a single-speaker run is, so each speaker's clips are exactly that run's),
then the clips are pasted into the photo (:class:`~hallo_core.io.composite.PastePlan`) and the
full frames go to the sink. One checkpoint holds every speaker's resume state; it is written
only once clip k of every speaker is on disk, so a resumed run restarts every speaker at the same
clip and continues with the frames of an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Union

import torch

from ..media.video import FrameSink
from .resume import STATE_VERSION, Checkpoint, ResumeMismatchError, ResumeState, checkpoint_path_for

# callback(speaker, clip_idx, n_clips, step, n_steps, latest_frames or None)
SpeakerProgress = Callable[[int, int, int, int, int, Optional[torch.Tensor]], None]


@dataclass
class SpeakersState:
    """Every speaker's resume state after the same clip, and what ties them to one job."""

    input_hash: str  # of the whole job: every speaker's run hash and the paste plan
    states: List[ResumeState]

    @property
    def next_clip(self) -> int:
        return self.states[0].next_clip

    @property
    def frames_done(self) -> int:
        return self.states[0].frames_done


def job_hash(runs: Sequence, plan_description: str) -> str:
    """The identity of a multi-speaker job: the speakers' run hashes in order, and the paste geometry."""
    h = hashlib.sha256(b"speakers")
    for r in runs:
        h.update(r.input_hash.encode())
    h.update(plan_description.encode())
    return h.hexdigest()


def save_speakers_state(path: Union[str, os.PathLike], state: SpeakersState) -> None:
    """Atomic write (temp file + rename). The top level reads as a one-speaker checkpoint whose hash
    fits no one-speaker job, so ``generate --resume`` with one voice refuses it instead of failing."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    first = state.states[0]
    torch.save({"version": STATE_VERSION, "input_hash": state.input_hash, "next_clip": first.next_clip,
                "frames_done": first.frames_done, "motion": first.motion.float().cpu(),
                "rng_state": first.rng_state.cpu(),
                "speakers": [{"input_hash": s.input_hash, "next_clip": s.next_clip, "frames_done": s.frames_done,
                              "motion": s.motion.float().cpu(), "rng_state": s.rng_state.cpu()}
                             for s in state.states]}, tmp)
    os.replace(tmp, path)


def load_speakers_state(path: Union[str, os.PathLike]) -> SpeakersState:
    """Read a multi-speaker checkpoint; ResumeMismatchError for a one-speaker one."""
    d = torch.load(Path(path), map_location="cpu", weights_only=True)
    if d.get("version") != STATE_VERSION:
        raise ValueError(f"{path}: unsupported resume checkpoint version {d.get('version')}")
    if "speakers" not in d:
        raise ResumeMismatchError("the resume checkpoint was written by a one-speaker run")
    states = [ResumeState(s["input_hash"], int(s["next_clip"]), int(s["frames_done"]), s["motion"], s["rng_state"])
              for s in d["speakers"]]
    return SpeakersState(d["input_hash"], states)


class SpeakersCheckpoint(Checkpoint):
    """The job's one checkpoint file, written when every speaker's clip is committed."""

    def load(self) -> SpeakersState:
        return load_speakers_state(self.path)

    def flush(self, committed_frames: int) -> None:
        ready = [s for s in self._pending if s.frames_done <= committed_frames]
        if ready:
            save_speakers_state(self.path, ready[-1])
            del self._pending[: self._pending.index(ready[-1]) + 1]


def speakers_resume_point(output: Union[str, os.PathLike], resume: bool) -> Optional[SpeakersState]:
    """The one resume policy (``resume.resume_point``) for a multi-speaker checkpoint."""
    ckpt = SpeakersCheckpoint(checkpoint_path_for(output))
    if resume and ckpt.exists() and Path(output).is_file():
        return ckpt.load()
    ckpt.discard()
    return None


def check_start(start: Optional[SpeakersState], runs: Sequence, plan_description: str) -> None:
    """ResumeMismatchError unless ``start`` was written by this very job (speakers, inputs, layout)."""
    if start is None:
        return
    if len(start.states) != len(runs) or start.input_hash != job_hash(runs, plan_description):
        raise ResumeMismatchError("the resume checkpoint was written for other speakers, inputs or settings")


@dataclass
class SpeakersResult:
    frames_written: int  # frames in the file after this call, resumed ones included
    clips_done: int
    n_clips: int
    interrupted: bool
    seconds: float


def stream_speakers(runs: Sequence, plan, sink: FrameSink, checkpoint: Optional[SpeakersCheckpoint] = None,
                    callback: Optional[SpeakerProgress] = None,
                    timings: Optional[List[float]] = None) -> SpeakersResult:
    """Run every speaker's ClipRun in lockstep, each clip index composited into one full frame.

    ``runs``: one ClipRun per speaker (same clip plan and start clip; their own ``callback`` is the
    step progress). ``plan``: a PastePlan with one paster per run. ``callback`` hears of every
    finished clip of every speaker with its frames (``step == n_steps``). ``timings``: one number
    per speaker, to which the seconds spent sampling that speaker's clips are added. The checkpoint
    follows what the sink has committed; the sink is closed on every way out.
    """
    t0 = time.time()
    if len({r.n_clips for r in runs}) != 1 or len({r.start_clip for r in runs}) != 1:
        raise ValueError("the speakers' runs must share one clip plan and start at the same clip")
    first = runs[0]
    if first.complete:
        return SpeakersResult(first.start_frame, first.n_clips, first.n_clips, False, 0.0)
    for r in runs:
        r.prepare()
    run_hash = job_hash(runs, plan.describe())
    width, height = plan.size
    sink.open(width, height, first.audio.fps, start_frame=first.start_frame)
    iters = [iter(r) for r in runs]
    done = first.start_clip
    try:
        while done < first.n_clips:
            clips = []
            for i, it in enumerate(iters):
                t = time.perf_counter()
                clip = next(it, None)
                if timings is not None:
                    timings[i] += time.perf_counter() - t
                if clip is None:  # stopped: the clips of this index already sampled are dropped
                    break
                clips.append(clip)
                if callback is not None:
                    steps = runs[i].settings.steps
                    callback(i, clip.index, clip.n_clips, steps, steps, clip.output)
            if len(clips) < len(runs):
                break
            full = plan.composite([c.output for c in clips])
            sink.write_rgb(full)
            done += 1
            if checkpoint is not None:
                checkpoint.clip_done(SpeakersState(run_hash, [c.state for c in clips]), sink.committed_frames)
    finally:
        sink.close()
        if checkpoint is not None:
            checkpoint.flush(sink.committed_frames)
    interrupted = any(r.interrupted for r in runs)
    k = done
    frames = first.plan[k - 1][0] + first.plan[k - 1][1] if k else 0
    return SpeakersResult(frames, done, first.n_clips, interrupted, time.time() - t0)
