"""Video file -> video file upscaling, and the ``python -m hallo_core upscale`` command.

The weights are read from upstream's ``pretrained_models/`` layout, whose file names
``hallo_core.assets.layout`` holds (``UPSCALER_FILES``).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch

from ..assets.layout import UPSCALER_FILES as WEIGHT_FILES
from .background import Upscaler, rrdb_upscaler
from ..media.video_io import probe, read_frames_bgr, write_video
from .video_upscale import UpscaleReport, upscale_frames_bgr


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


def upscale_video(
    input_path: Union[str, os.PathLike],
    output_path: Union[str, os.PathLike],
    models: UpscalerModels,
    scale: int = 2,
    fidelity: float = 0.5,
    crf: int = 18,
    progress: Optional[Callable[[int, Optional[int]], None]] = None,
    paster=None,
    **kwargs,
) -> UpscaleReport:
    """Upscale a video file into an H.264 mp4 with the input's audio copied.

    Streams: frames are decoded, restored and encoded window by window (RAM holds one
    16-frame window). Every input frame is written, the last one included. ``kwargs`` go
    to :func:`~hallo_core.upscale.video_upscale.upscale_frames_bgr` (face_upsample,
    face_mode, missing_face, landmark_smoothing, fp16, interrupt).

    ``paster``: a :class:`hallo_core.io.paste_back.FramePaster` for a square crop video;
    each restored frame is pasted into the source photo as it streams, so the output has
    the photo's aspect and size (capped by the paster's ``max_side``).
    """
    info = probe(input_path)
    report = UpscaleReport()
    frames = upscale_frames_bgr(
        read_frames_bgr(input_path), models.codeformer, models.detector, models.parser,
        models.bg_upscaler, scale, fidelity, progress=progress, total=info.frames, report=report, **kwargs)
    if paster is not None:
        frames = _pasted_bgr(frames, paster)
    write_video(output_path, frames, info.fps, audio_from=input_path, crf=crf)
    return report


def _pasted_bgr(frames, paster):
    """BGR crop frames (any size) -> BGR full frames, one at a time."""
    for bgr in frames:
        yield paster.paste(bgr[None, :, :, ::-1])[0][:, :, ::-1]


def run_upscale(args: argparse.Namespace) -> int:
    """Entry point of ``hallo upscale``: ``args`` are the CLI's parsed options (hallo_core/cli/upscale.py)."""
    import logging
    import sys

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    paster = None  # read before the models load: a wrong crop record fails fast
    if args.paste_into is not None:
        from ..pipeline.full_frame import paster_from_sidecar, sidecar_path

        sidecar = args.framing or sidecar_path(args.input)
        paster = paster_from_sidecar(sidecar, args.paste_into or None, max_side=args.max_side)
    models = load_upscaler_models(args.model_dir, args.device, args.fp16, args.bg_tile,
                                  use_bg_upscaler=not args.no_bg_upsampler)

    def progress(done: int, total: Optional[int]) -> None:
        sys.stderr.write(f"\rupscale: {done}/{total or '?'} frames")
        sys.stderr.flush()

    report = upscale_video(args.input, args.output, models, args.upscale, args.fidelity_weight, crf=args.crf,
                           progress=progress, paster=paster, face_upsample=args.face_upsample, face_mode=args.face,
                           missing_face=args.missing_face, landmark_smoothing=args.smooth_landmarks,
                           fp16=args.fp16)
    # the CLI writes to a temporary name and renames it once complete: name the file the user gave
    shown = getattr(args, "final_output", None) or args.output
    sys.stderr.write(f"\nwrote {report.frames} frames to {shown} ({report.faceless} without a face)\n")
    return 0
