"""``hallo upscale``: Hallo2's temporal face restoration and background upscaling of a video file."""

from __future__ import annotations

import argparse

from ..assets import layout as models_dir
from ..errors import UserError, as_user_error
from .common import alias as _alias, number as _number, print_findings as _print_findings

UPSCALE_SCALES = (1, 2, 4, 8)
_UPSCALE_DIRS = ", ".join(f"{models_dir.rel_path(c).split('/')[0]}/" for c in ("hallo2_sr", "facelib", "realesrgan"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input", required=True, help="input video (any format PyAV reads)")
    p.add_argument("-o", "--output", required=True, help="output .mp4")
    p.add_argument("-s", "--upscale", type=int, default=2, choices=UPSCALE_SCALES, help="output scale (default 2)")
    p.add_argument("-w", "--fidelity-weight", type=_number, default=0.5, help="CodeFormer fidelity w (default 0.5)")
    p.add_argument("--models", default="pretrained_models", help=f"models folder with {_UPSCALE_DIRS} (default pretrained_models)")
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda if available)")
    p.add_argument("--fp16", action="store_true", help="half precision on CUDA")
    p.add_argument("--bg-tile", type=_number, default=400, help="RealESRGAN tile size (default 400; 0 = no tiling)")
    p.add_argument("--no-bg-upsampler", action="store_true", help="Lanczos-only background (not upstream)")
    p.add_argument("--face-upsample", action="store_true", help="also RealESRGAN the restored faces")
    p.add_argument("--face", default="last", choices=("last", "largest", "center"),
                   help="which detected face to restore (last = upstream)")
    p.add_argument("--missing-face", default="passthrough", choices=("passthrough", "hold"),
                   help="frames without a face: background only, or reuse the last landmarks")
    p.add_argument("--smooth-landmarks", type=_number, default=0.0, help="temporal landmark smoothing in [0, 1)")
    p.add_argument("--qp", type=_number, default=20,
                   help="x264 quantiser, lower is better (default 20, the pack's one mp4 quality)")
    p.add_argument("--paste-into", nargs="?", const="", default=None, metavar="IMAGE",
                   help="paste the restored crop video (from generate --frame square) back into the photo; "
                        "IMAGE defaults to the source named in INPUT.framing.json")
    p.add_argument("--framing", default=None, metavar="JSON",
                   help="crop record for --paste-into (default: INPUT.framing.json, written by generate)")
    p.add_argument("--max-side", type=_number, default=1920, help="with --paste-into: cap on the video's long side")
    # the spellings of earlier releases (upstream's video_sr.py style)
    _alias(p, "--model_dir", "models")
    _alias(p, "--fidelity_weight", "fidelity_weight", type=_number)
    _alias(p, "--bg_tile", "bg_tile", type=_number)
    _alias(p, "--no_bg_upsampler", "no_bg_upsampler", action="store_true")
    _alias(p, "--face_upsample", "face_upsample", action="store_true")
    _alias(p, "--missing_face", "missing_face", choices=("passthrough", "hold"))
    _alias(p, "--smooth_landmarks", "smooth_landmarks", type=_number)
    _alias(p, "--crf", "qp", type=_number)  # the same 0..51 scale as x264's CRF


def run(a) -> int:
    from ..media.atomic import check_output_path
    from .preflight import preflight_upscale

    opts = {k: getattr(a, k) for k in ("fidelity_weight", "bg_tile", "qp", "smooth_landmarks")}
    pf = preflight_upscale(a.input, a.output, a.models, opts, device=a.device)
    for k, v in pf.options.items():
        setattr(a, k, v)
    paster = None  # read before the models load: a wrong crop record fails fast
    if a.paste_into is not None:
        from ..checks import Option, check_option
        from ..pipeline.full_frame import paster_from_sidecar, sidecar_path

        a.max_side = check_option("max_side", a.max_side, table={"max_side": Option(int, 64, 16384, 1920)})
        inputs = {"--input": a.input, "--paste-into": a.paste_into or None, "--framing": a.framing}
        check_output_path(a.output, inputs, option="--output")
        try:
            paster = paster_from_sidecar(a.framing or sidecar_path(a.input), a.paste_into or None,
                                         max_side=a.max_side)
        except (ValueError, FileNotFoundError) as e:
            if as_user_error(e) is not None:
                raise
            raise UserError(str(e), "--paste-into", "give the photo and crop record of a `generate --frame crop` "
                            "run") from e
    _print_findings(pf)
    # the engine writes to a temporary name and renames it once complete
    a.interrupt_note = f"nothing was written ({a.output} is as it was)"
    return upscale_checked(a, paster)


def upscale_checked(a, paster=None) -> int:
    """The engine call for options that passed the checks: plain values in, no argparse object."""
    import logging
    import sys

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ..upscale.file_upscale import load_upscaler_models, upscale_video

    models = load_upscaler_models(a.models, a.device, a.fp16, a.bg_tile, use_bg_upscaler=not a.no_bg_upsampler)

    def progress(done: int, total) -> None:
        sys.stderr.write(f"\rupscale: {done}/{total or '?'} frames")
        sys.stderr.flush()

    report = upscale_video(a.input, a.output, models, a.upscale, a.fidelity_weight, progress=progress, qp=a.qp,
                           paster=paster, face_upsample=a.face_upsample, face_mode=a.face,
                           missing_face=a.missing_face, landmark_smoothing=a.smooth_landmarks, fp16=a.fp16)
    sys.stderr.write(f"\nwrote {report.frames} frames to {a.output} ({report.faceless} without a face)\n")
    return 0
