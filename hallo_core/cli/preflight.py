"""Every up-front check of a job, in one call, before any model weights are read.

The CLI calls these right after parsing; the nodes call the pieces they have values for (a node
gets tensors, not paths). Order: options, device, output, image, audio, model files, cheapest
first, so the user learns of a typo in a second and of a bad 5 GB file in under one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

from .. import checks
from ..assets import layout as models_dir
from ..errors import AudioError, ImageError, UserError
from ..media.atomic import check_output_path
from ..options import check_options

PathLike = Union[str, os.PathLike]


@dataclass
class Preflight:
    """What the checks found: warnings to print (``warning: ...``) and values worth keeping."""

    warnings: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)  # informational (optional parts absent)
    audio: Optional[checks.AudioReport] = None
    device: Any = None
    options: Dict[str, Any] = field(default_factory=dict)


def preflight_generate(models: PathLike, image: PathLike, audio: PathLike, out: PathLike,
                       options: Mapping[str, Any], device: str = "cpu", hallo2: bool = False,
                       separator: bool = True, resume: bool = False, check_models: bool = True) -> Preflight:
    """The checks of ``generate`` (option names as the CLI's dest names: steps, cfg, pose_weight...).

    ``resume``: an existing output is the partial video to continue, not a clash. ``check_models``
    False skips the model files (``--download`` fetches them first: check after it).
    """
    pf = Preflight()
    pf.options = check_options(options)
    pf.device = checks.check_device(device)
    check_output_path(out, {"image": image, "audio": audio, "models": models})
    ckpt = Path(os.fspath(out) + ".resume.pt")
    for key, value, error in (("image", image, ImageError), ("audio", audio, AudioError)):
        if value is not None and Path(os.path.expanduser(os.fspath(value))).resolve() == ckpt.resolve():
            raise error(f"{value} is the resume checkpoint of {{=out}}", key, "give the original input file")
    checks.check_image_file(image)
    pf.audio = checks.check_audio_file(audio)
    pf.warnings += pf.audio.warnings
    if check_models:
        pf.notes += checks.check_model_files(models, "hallo2" if hallo2 else "hallo", separator)
    if resume and not Path(os.path.expanduser(os.fspath(out))).is_file() and ckpt.is_file():
        pf.warnings.append(f"{{=resume}}: {out} is missing, so the checkpoint {ckpt.name} cannot be used; "
                           "starting from the beginning")
    return pf


def preflight_upscale(video: PathLike, out: PathLike, model_dir: PathLike, options: Mapping[str, Any],
                      device: Optional[str] = None, check_models: bool = True) -> Preflight:
    """The checks of ``upscale``: the input video exists, the output is not it, the options, the models."""
    pf = Preflight()
    pf.options = check_options(options)
    if device is not None:
        pf.device = checks.check_device(device)
    p = Path(os.path.expanduser(os.fspath(video))) if video is not None else None
    if p is None or not p.is_file():
        raise UserError(f"input video {video} does not exist", "input", "check the path")
    check_output_path(out, {"input": video, "models": model_dir}, key="output")
    _probe_video(p)
    if check_models:
        pf.notes += checks.check_model_files(model_dir, "hallo2-4k")
    return pf


def _probe_video(path: Path) -> None:
    import av

    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise UserError(f"{path} holds no video stream", "input", "give a video file (e.g. an mp4)")
            frame = next(c.decode(c.streams.video[0]), None)
    except UserError:
        raise
    except Exception as e:  # PyAV raises its own error types per container problem
        raise UserError(f"video {path} cannot be decoded ({type(e).__name__})", "input",
                        "give a video PyAV/ffmpeg reads, e.g. an mp4") from None
    if frame is None:
        raise UserError(f"video {path} has no frames", "input", "give a video with at least one frame")


def preflight_convert(src: PathLike, dst: PathLike) -> Preflight:
    """The checks of ``convert``: the source lists tensors only and the destination is not it."""
    pf = Preflight()
    s = Path(os.path.expanduser(os.fspath(src)))
    if not s.is_file():
        raise UserError(f"weights file {src} does not exist", "src", f"give {models_dir.rel_path('hallo')} or {models_dir.rel_path('hallo2')}")
    check_output_path(dst, {"src": src}, key="dst", suffixes=(".safetensors",), kind="a safetensors file")
    checks.check_torch_file(s, f"give an unchanged official {os.path.basename(models_dir.rel_path('hallo'))}",
                            key="src")
    return pf


__all__ = ["Preflight", "preflight_generate", "preflight_upscale", "preflight_convert"]
