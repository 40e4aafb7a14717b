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
    p.add_argument("--crf", type=_number, default=18, help="x264 quality (default 18)")
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


def run(a) -> int:
    from ..media.atomic import atomic_output, check_output_path
    from .preflight import preflight_upscale
    from ..upscale.file_upscale import run_upscale

    opts = {k: getattr(a, k) for k in ("fidelity_weight", "bg_tile", "crf", "smooth_landmarks")}
    pf = preflight_upscale(a.input, a.output, a.models, opts, device=a.device)
    for k, v in pf.options.items():
        setattr(a, k, v)
    if a.paste_into is not None:
        from ..checks import Option, check_option

        a.max_side = check_option("max_side", a.max_side, table={"max_side": Option(int, 64, 16384, 1920)})
        inputs = {"--input": a.input, "--paste-into": a.paste_into or None, "--framing": a.framing}
        check_output_path(a.output, inputs, option="--output")
    _print_findings(pf)
    a.model_dir = a.models  # run_upscale reads the engine's attribute names
    final = a.output
    a.interrupt_note = f"nothing was written ({final} is as it was)"
    # an existing video is replaced only once the new one is complete
    with atomic_output(final) as tmp:
        a.output, a.final_output = str(tmp), final
        try:
            rc = run_upscale(a)
        except (ValueError, FileNotFoundError) as e:
            if a.paste_into is None or as_user_error(e) is not None:
                raise
            raise UserError(str(e), "--paste-into", "give the photo and crop record of a `generate --frame square` "
                            "run") from e
        finally:
            a.output = final
    return rc
