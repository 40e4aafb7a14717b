"""``hallo upscale``: Hallo2's temporal face restoration and background upscaling of a video file."""

from __future__ import annotations

import argparse

from ..assets import layout as models_dir
from .common import add_options, alias as _alias, print_findings as _print_findings

# the schema's options of upscale (hallo_core.options)
UPSCALE_OPTIONS = ("upscale", "fidelity_weight", "bg_tile", "smooth_landmarks", "crf", "max_side")
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
                   help="paste the restored crop video (from generate --frame square) back into the photo; "
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
    from ..media.atomic import atomic_output, check_output_path
    from .preflight import preflight_upscale
    from ..upscale.file_upscale import run_upscale

    opts = {k: getattr(a, k) for k in UPSCALE_OPTIONS}
    pf = preflight_upscale(a.input, a.output, a.models, opts, device=a.device)
    for k, v in pf.options.items():
        setattr(a, k, v)
    if a.paste_into is not None:
        check_output_path(a.output, {"input": a.input, "paste_into": a.paste_into or None, "framing": a.framing},
                          key="output")
    _print_findings(pf)
    a.model_dir = a.models  # run_upscale reads the engine's attribute names
    final = a.output
    a.interrupt_note = f"nothing was written ({final} is as it was)"
    # an existing video is replaced only once the new one is complete
    with atomic_output(final) as tmp:
        a.output, a.final_output = str(tmp), final
        try:
            return run_upscale(a)
        finally:
            a.output = final
