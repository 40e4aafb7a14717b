"""Resume checkpoints: everything needed to continue a long run after the last finished clip.

The state is tiny (two motion frames, the RNG state, a few integers and a hash), so it is
rewritten after every committed clip. The hash covers the face data, the audio features,
the settings that change frames and a fingerprint of the model weights, so a checkpoint
is never applied to a different job.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Union

import torch

from ..errors import OutputError, ResumeMismatchError
from ..types import AudioFeatures, FaceData

STATE_VERSION = 1


@dataclass
class ResumeState:
    input_hash: str
    next_clip: int  # first clip still to render
    frames_done: int  # output frames already in the sink
    motion: torch.Tensor  # [2, 3, S, S] in [-1, 1]: the next clip's (undropped) motion frames
    rng_state: torch.Tensor  # torch.Generator.get_state() after the last finished clip


def _tensor_digest(h, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(str((tuple(t.shape), str(t.dtype))).encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def model_fingerprint(net, per_tensor: int = 256) -> str:
    """Cheap weight fingerprint: names, shapes and the first elements of every parameter."""
    h = hashlib.sha256()
    for name, p in net.state_dict().items():
        h.update(name.encode())
        _tensor_digest(h, p.reshape(-1)[:per_tensor])
    return h.hexdigest()


def fingerprint(face: FaceData, audio: AudioFeatures, settings: dict, net=None, model_id: str = "") -> str:
    """Hash of everything that determines the frames of a run."""
    h = hashlib.sha256()
    for t in (face.pixels, face.face_region, face.face_emb, *face.full_masks, *face.face_masks,
              *face.lip_masks, audio.features):
        _tensor_digest(h, t)
    h.update(json.dumps({"num_frames": audio.num_frames, "fps": audio.fps, "settings": settings,
                         "model_id": model_id}, sort_keys=True, default=str).encode())
    if net is not None:
        h.update(model_fingerprint(net).encode())
    return h.hexdigest()


def checkpoint_path_for(output: Union[str, os.PathLike]) -> Path:
    """The resume checkpoint lives next to the output: ``OUT.mp4`` -> ``OUT.mp4.resume.pt``."""
    p = Path(output)
    return p.with_name(p.name + ".resume.pt")


def save_state(path: Path, state: ResumeState) -> None:
    """Atomic write (temp file + rename, :func:`hallo_core.media.atomic.atomic_output`): a kill
    never leaves a half-written checkpoint, and a failed write leaves no temp file.

    The state is serialised in memory and written with plain file I/O, so a full disk is an
    OSError naming its cause (torch's own writer reports it as a stream position mismatch); the
    error is the user's :class:`OutputError`.
    """
    from ..media.atomic import atomic_output

    path = Path(path)
    tmp_name = path.with_name(path.name + ".tmp")
    buf = io.BytesIO()
    torch.save({"version": STATE_VERSION, "input_hash": state.input_hash, "next_clip": state.next_clip,
                "frames_done": state.frames_done, "motion": state.motion.float().cpu(),
                "rng_state": state.rng_state.cpu()}, buf)
    try:
        with atomic_output(path, temp=tmp_name) as tmp:
            with open(tmp, "wb") as f:
                f.write(buf.getbuffer())
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp_name.unlink()
        raise OutputError(f"the resume checkpoint {path} cannot be written ({e.strerror or e})",
                          fix="free disk space (or write {=out} to another disk) and run again with {=resume}: "
                              "the finished clips are kept", path=str(path)) from None


def load_state(path: Path) -> Optional[ResumeState]:
    """Read a checkpoint (tensors and plain types only: ``weights_only=True``)."""
    d = torch.load(Path(path), map_location="cpu", weights_only=True)
    if d.get("version") != STATE_VERSION:
        raise ResumeMismatchError(f"{path} is a resume checkpoint of another version ({d.get('version')})",
                                  fix=f"delete {Path(path).name} to start over", path=str(path))
    return ResumeState(d["input_hash"], int(d["next_clip"]), int(d["frames_done"]), d["motion"],
                       d["rng_state"])


def discard_state(path: Path) -> bool:
    """Remove a finished run's checkpoint (and a stale temp file); True when one was removed.

    Called once the video is complete: the checkpoint can only resume an unfinished run, and a
    leftover one next to every output is clutter that a later ``--resume`` would misread as work.
    """
    path = Path(path)
    removed = False
    for p in (path, path.with_name(path.name + ".tmp")):
        try:
            p.unlink()
            removed = removed or p == path
        except FileNotFoundError:
            pass
    return removed


class Checkpoint:
    """A resume checkpoint file kept in step with what the output has on disk.

    A clip's state is written only once the sink has committed all of its frames (a kill then
    never leaves a checkpoint that claims frames the file lacks); until then it waits here.
    """

    def __init__(self, path: Union[str, os.PathLike]):
        self.path = Path(path)
        self._pending: List[ResumeState] = []

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> ResumeState:
        return load_state(self.path)

    def clip_done(self, state: ResumeState, committed_frames: int) -> None:
        self._pending.append(state)
        self.flush(committed_frames)

    def flush(self, committed_frames: int) -> None:
        """Write the newest waiting state whose frames are all committed; drop older ones."""
        ready = [s for s in self._pending if s.frames_done <= committed_frames]
        if ready:
            save_state(self.path, ready[-1])
            del self._pending[: self._pending.index(ready[-1]) + 1]

    def discard(self) -> bool:
        return discard_state(self.path)


def resume_point(output: Union[str, os.PathLike], resume: bool) -> Optional[ResumeState]:
    """Where a job that writes ``output`` starts: the one resume policy of every host.

    A run continues only when it is asked to and both the output and its checkpoint exist: a
    checkpoint without its video cannot be continued, and one left beside a run that starts
    over would describe the wrong file, so in every other case it is removed. Whether the state
    fits the job (its hash) is checked by the loop that takes it.
    """
    ckpt = Checkpoint(checkpoint_path_for(output))
    if resume and ckpt.exists() and Path(output).is_file():
        return ckpt.load()
    ckpt.discard()
    return None
