"""``hallo upscale``: Hallo2's temporal face restoration and background upscaling of a video file."""

from __future__ import annotations

import argparse

from ..assets import layout as models_dir
from .common import add_options, alias as _alias, print_findings as _print_findings

# the schema's options of upscale (hallo_core.options)
UPSCALE_OPTIONS = ("upscale", "fidelity_weight", "bg_tile", "smooth_landmarks", "qp", "max_side")
_UPSCALE_DIRS = ", ".join(f"{models_dir.rel_path(c).split('/')[0]}/" for c in ("hallo2_sr", "facelib", "realesrgan"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input", required=True, help="input video (any format PyAV reads)")
    p.add_argument("-o", "--output", required=True, help="output .mp4")
    p.add_argument("--models", default="pretrained_models", help=f"models folder with {_UPSCALE_DIRS}")
    p.add_argument("--device", default=None, help="cuda / cpu; unset: cuda if available")
    p.add_argument("--fp16", action="store_true", help="half precision on CUDA")
    add_options(p, UPSCALE_OPTIONS[:-1])
    p.add_argument("--no-bg-upsampler", action="store_true", help="Lanczos-only background (not upstream)")
    p.add_argument("--face-upsample", action="store_true", help="also RealESRGAN the restored faces")
    p.add_argument("--face", default="last", choices=("last", "largest", "center"),
                   help="which detected face to restore (last = upstream)")
    p.add_argument("--missing-face", default="passthrough", choices=("passthrough", "hold"),
                   help="frames without a face: background only, or reuse the last landmarks")
    p.add_argument("--paste-into", nargs="?", const="", default=None, metavar="IMAGE",
                   help="paste the restored crop video (from generate --frame crop) back into the photo; "
                        "IMAGE defaults to the source named in INPUT.framing.json")
    p.add_argument("--framing", default=None, metavar="JSON",
                   help="crop record for --paste-into; unset: INPUT.framing.json, written by generate")
    add_options(p, UPSCALE_OPTIONS[-1:])
    # upstream's video_sr.py spellings of the options that are not in the schema
    _alias(p, "--model_dir", "models")
    _alias(p, "--no_bg_upsampler", "no_bg_upsampler", action="store_true")
    _alias(p, "--face_upsample", "face_upsample", action="store_true")
    _alias(p, "--missing_face", "missing_face", choices=("passthrough", "hold"))


def run(a) -> int:
    from ..media.atomic import check_output_path
    from .preflight import preflight_upscale

    opts = {k: getattr(a, k) for k in UPSCALE_OPTIONS}
    pf = preflight_upscale(a.input, a.output, a.models, opts, device=a.device)
    for k, v in pf.options.items():
        setattr(a, k, v)
    paster = None  # read before the models load: a wrong crop record fails fast
    if a.paste_into is not None:
        from ..pipeline.full_frame import paster_from_sidecar, sidecar_path

        check_output_path(a.output, {"input": a.input, "paste_into": a.paste_into or None, "framing": a.framing},
                          key="output")
        paster = paster_from_sidecar(a.framing or sidecar_path(a.input), a.paste_into or None, max_side=a.max_side)
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
