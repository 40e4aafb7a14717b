"""Resume checkpoints: everything needed to continue a long run after the last finished clip.

The state is tiny (two motion frames, the RNG state, a few integers and a hash), so it is
rewritten after every committed clip. The hash covers the face data, the audio features,
the settings that change frames and a fingerprint of the model weights, so a checkpoint
is never applied to a different job.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

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


def save_state(path: Path, state: ResumeState) -> None:
    """Atomic write (temp file + rename): a kill never leaves a half-written checkpoint, and a
    failed write (a full disk) leaves no temp file."""
    from ..media.atomic import atomic_output

    path = Path(path)
    with atomic_output(path, temp=path.with_name(path.name + ".tmp")) as tmp:
        torch.save({"version": STATE_VERSION, "input_hash": state.input_hash, "next_clip": state.next_clip,
                    "frames_done": state.frames_done, "motion": state.motion.float().cpu(),
                    "rng_state": state.rng_state.cpu()}, tmp)


def load_state(path: Path) -> Optional[ResumeState]:
    """Read a checkpoint (tensors and plain types only: ``weights_only=True``)."""
    d = torch.load(Path(path), map_location="cpu", weights_only=True)
    if d.get("version") != STATE_VERSION:
        raise ValueError(f"{path}: unsupported resume checkpoint version {d.get('version')}")
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
