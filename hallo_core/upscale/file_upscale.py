"""Upscaling into a video file: the CLI's ``upscale`` and the Temporal Upscale node's file mode.

The weights are read from upstream's ``pretrained_models/`` layout, whose file names
``hallo_core.assets.layout`` holds (``UPSCALER_FILES``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

import torch

from ..assets.layout import UPSCALER_FILES as WEIGHT_FILES
from ..media.video import DEFAULT_QP, probe, read_frames, write_video
from .background import Upscaler, rrdb_upscaler
from .video_upscale import UpscaleReport, upscale_frames


@dataclass
class UpscalerModels:
    """The four networks of the stage (``bg_upscaler`` may be None: Lanczos only)."""

    codeformer: torch.nn.Module
    detector: Any
    parser: Optional[torch.nn.Module]
    bg_upscaler: Optional[Upscaler]


def load_upscaler_models(
    model_dir: Union[str, os.PathLike] = "pretrained_models",
    device: Optional[Union[str, torch.device]] = None,
    fp16: bool = False,
    bg_tile: int = 400,
    use_bg_upscaler: bool = True,
) -> UpscalerModels:
    """Load the official weight files (strict, ``weights_only``) from ``model_dir``.

    fp16 (CUDA only, as upstream) halves RealESRGAN; the CodeFormer stays fp32 and runs
    under autocast when ``upscale_frames(fp16=True)``.
    """
    from ..io import upscaler_weights as uw

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    root = Path(model_dir)
    cf = uw.load_temporal_codeformer(root / WEIGHT_FILES["codeformer"], device=device)
    det = uw.load_retinaface(root / WEIGHT_FILES["detector"], device=device)
    parser = uw.load_parsenet(root / WEIGHT_FILES["parser"], device=device)
    bg = None
    if use_bg_upscaler:
        half = fp16 and device.type == "cuda"
        rr = uw.load_rrdbnet_x2(root / WEIGHT_FILES["bg"], device=device,
                                dtype=torch.float16 if half else None)
        bg = rrdb_upscaler(rr, tile=bg_tile)
    return UpscalerModels(cf, det, parser, bg)


def upscale_to_file(
    frames: Iterable,
    output_path: Union[str, os.PathLike],
    models: UpscalerModels,
    fps,
    scale: int = 2,
    fidelity: float = 0.5,
    *,
    audio_from: Union[str, os.PathLike, None] = None,
    waveform=None,
    sample_rate: int = 16000,
    qp: int = DEFAULT_QP,
    paster=None,
    **kwargs,
) -> UpscaleReport:
    """Upscale ``frames`` (anything :func:`~hallo_core.upscale.video_upscale.upscale_frames` takes,
    read lazily) into an H.264 mp4 at ``fps``, with the audio of ``waveform`` or ``audio_from``.

    Streams: frames are restored and encoded window by window (RAM holds one 16-frame window).
    The file appears under ``output_path`` only once complete. ``kwargs`` go to
    :func:`~hallo_core.upscale.video_upscale.upscale_frames` (face_upsample, face_mode, missing_face,
    landmark_smoothing, fp16, progress, interrupt, total).

    ``paster``: a paster of :mod:`hallo_core.io.paste_back` for a crop video; each restored frame
    is pasted into the source photo as it streams, so the output has the photo's aspect and size.
    """
    report = kwargs.pop("report", None) or UpscaleReport()
    out = upscale_frames(frames, models.codeformer, models.detector, models.parser, models.bg_upscaler, scale,
                         fidelity, report=report, **kwargs)
    if paster is not None:
        out = paster.paste_each(out)
    write_video(output_path, out, fps, audio_from=audio_from, waveform=waveform, sample_rate=sample_rate, qp=qp)
    return report


def upscale_video(
    input_path: Union[str, os.PathLike],
    output_path: Union[str, os.PathLike],
    models: UpscalerModels,
    scale: int = 2,
    fidelity: float = 0.5,
    progress: Optional[Callable[[int, Optional[int]], None]] = None,
    **kwargs,
) -> UpscaleReport:
    """File to file: every frame of ``input_path`` upscaled (the last one included), its audio copied.

    ``kwargs`` go to :func:`upscale_to_file` (qp, paster, face_upsample, ...).
    """
    info = probe(input_path)
    return upscale_to_file(read_frames(input_path), output_path, models, info.fps, scale, fidelity,
                           audio_from=input_path, progress=progress, total=info.frames, **kwargs)
