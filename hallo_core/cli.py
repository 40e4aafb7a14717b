"""Headless command line: ``hallo`` or ``python -m hallo_core`` with the subcommands
generate, upscale, convert, download and doctor.

Nothing heavy is imported until a subcommand runs, so ``--help`` answers at once. Every
command checks what it was given before it reads any weights (:mod:`hallo_core.preflight`); a
user mistake is one ``error: <what> (<where>): <how to fix>`` line and exit code 2, anything
else is an internal fault and keeps its traceback (``--debug`` shows one for user errors too).
Ctrl-C and SIGTERM exit 130 / 143 with one line that says what was kept (docs/errors.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional

from . import models_dir
from .errors import EXIT_USER, UserError, as_user_error, one_line
from .interrupts import InterruptGuard, print_hint

# Copies of the engine's tables (tests/test_cli_help.py keeps them equal): reading the engine's
# would import torch just to print --help.
DTYPE_NAMES = ("bf16", "fp16", "fp32")
SCHEDULER_NAMES = ("ddim", "dpmpp", "unipc", "euler")
UPSCALE_SCALES = (1, 2, 4, 8)
FRAME_NAMES = ("auto", "square", "stretch")
# generate runs without these: built-in SD1.5 UNet values, no vocal separation
OPTIONAL_COMPONENTS = ("unet_config", "audio_separator")
# the layout table is plain Python (no torch), so the names download accepts come from it directly
DOWNLOAD_NAMES = {"bundles": tuple(models_dir.BUNDLES), "components": tuple(models_dir.COMPONENTS)}
_NET = models_dir.rel_path("hallo")
_UPSCALE_DIRS = ", ".join(f"{models_dir.rel_path(c).split('/')[0]}/" for c in ("hallo2_sr", "facelib", "realesrgan"))


class _Parser(argparse.ArgumentParser):
    """argparse's own mistakes (a missing argument, a value that is no number) as one line too."""

    def error(self, message: str):
        self.exit(EXIT_USER, f"error: {one_line(message)} ({self.prog}): see `{self.prog} --help`\n")


def _number(text: str):
    """Any number, NaN and inf included: the range checks (hallo_core.checks.OPTIONS) then name
    the option and what it accepts, which argparse's ``invalid int value`` does not."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _dtype(name: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _alias(p: argparse.ArgumentParser, old: str, dest: str, **kw) -> None:
    """An old spelling that still parses but is not shown in --help."""
    p.add_argument(old, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kw)


def _add_upscale_arguments(p: argparse.ArgumentParser) -> None:
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


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = _Parser(prog="hallo", description="Hallo / Hallo2 portrait animation (also: python -m hallo_core)")
    p.add_argument("--debug", action="store_true", help="show the traceback of user errors too")
    sub = p.add_subparsers(dest="cmd", required=True)

    g = sub.add_parser("generate", help="animate a portrait from an audio file into an mp4", formatter_class=fmt)
    g.add_argument("--models", required=True, help="models folder in the official Hugging Face layout")
    g.add_argument("--image", required=True, help="any photo with a face (PNG, JPEG, WebP, ...)")
    g.add_argument("--audio", required=True, help="speech audio (wav/mp3/... via PyAV); sets the length")
    g.add_argument("--out", required=True, help="output .mp4 (H.264 + the original audio)")
    g.add_argument("--steps", type=_number, default=40, help="denoising steps per clip")
    g.add_argument("--cfg", type=_number, default=3.5, help="classifier-free guidance scale")
    g.add_argument("--seed", type=_number, default=42, help="same seed + device = same video")
    g.add_argument("--pose-weight", type=_number, default=1.0, help="audio-driven head motion")
    g.add_argument("--face-weight", type=_number, default=1.0, help="audio-driven expression")
    g.add_argument("--lip-weight", type=_number, default=1.0, help="audio-driven lip motion")
    g.add_argument("--size", type=_number, default=512, help="square working size (multiple of 64)")
    g.add_argument("--face", type=_number, default=None, metavar="N",
                   help="which face to animate, counted left to right from 0 (default: the largest)")
    g.add_argument("--frame", choices=FRAME_NAMES, default="auto",
                   help="auto: a square photo the face fills is animated whole (upstream's path), any "
                        "other is cropped around the face and pasted back; square: the crop video; "
                        "stretch: squash the whole photo into the square (upstream)")
    g.add_argument("--margin", type=_number, default=0.75, help="crop margin per side, x the face's size")
    g.add_argument("--max-side", type=_number, default=1920, help="cap on the pasted-back video's long side")
    g.add_argument("--detector", choices=("auto", "scrfd", "mediapipe"), default="auto",
                   help=f"face finder: auto = SCRFD when {models_dir.rel_path('face_analysis')}/ has it, else mediapipe")
    g.add_argument("--no-face", choices=("error", "fallback"), default="error",
                   help="a picture without a usable face: refuse it, or animate it as upstream does "
                        "(zero identity, the whole picture as the face region)")
    g.add_argument("--device", default="auto", help="torch device (auto = cuda if available, else cpu)")
    g.add_argument("--dtype", choices=DTYPE_NAMES, default=None,
                   help="default: fp16 on CUDA (upstream's), fp32 on CPU")
    g.add_argument("--hallo2", action="store_true", help="Hallo2 weights + motion-frame drop")
    g.add_argument("--mask-rate", type=_number, default=0.25, help="Hallo2 drop rate (0 = plain Hallo chaining)")
    g.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from OUT.mp4.resume.pt (same inputs and settings)")
    g.add_argument("--scheduler", choices=SCHEDULER_NAMES, default="ddim",
                   help="ddim is faithful; the others are a fast mode (not bit-faithful)")
    g.add_argument("--cfg-steps", type=_number, default=None, help="fast mode: CFG only on the first N steps")
    g.add_argument("--audio-features", choices=["auto", "float32", "float16"], default="auto",
                   help="storage of the audio features: auto = float32 up to 10 min, float16 beyond "
                        "(an hour is 3.3 GB as float32)")
    g.add_argument("--no-separator", action="store_true",
                   help=f"skip vocal separation (also skipped, with a warning, when {models_dir.rel_path('audio_separator')} is absent)")
    g.add_argument("--download", action="store_true", help="fetch missing official weights first")

    u = sub.add_parser("upscale", help="Hallo2 temporal face restoration + background upscaling of a video",
                       description="Upscale a video (e.g. generate's 512 px output) with Hallo2's temporal "
                                   "CodeFormer and RealESRGAN x2; the input's audio is copied.")
    _add_upscale_arguments(u)

    c = sub.add_parser("convert", help=f"convert {os.path.basename(_NET)} to fp16 safetensors", formatter_class=fmt)
    c.add_argument("src", help=f"{_NET} or {models_dir.rel_path('hallo2')}")
    c.add_argument("dst", help="output .safetensors")
    c.add_argument("--dtype", choices=DTYPE_NAMES, default="fp16")

    names = (f"bundles: {', '.join(DOWNLOAD_NAMES['bundles'])}; "
             f"components: {', '.join(DOWNLOAD_NAMES['components'])}")
    d = sub.add_parser("download", help="fetch the official weights from Hugging Face", formatter_class=fmt,
                       description=f"Fetch only the files Hallo reads. Names - {names}.")
    d.add_argument("--models", required=True, help="models folder to fill (official layout)")
    d.add_argument("--which", nargs="+", default=["hallo"], metavar="NAME", help=f"what to fetch ({names})")

    dr = sub.add_parser("doctor", help="check the install, the models folder, and run a tiny self-test",
                        formatter_class=fmt)
    dr.add_argument("--models", default=None, help="models folder to check (official layout)")
    dr.add_argument("--no-selftest", action="store_true", help="skip the tiny-weights pipeline run")
    dr.add_argument("--selftest-out", default=None, help="keep the self-test video here (default: a temp file)")
    for sp in sub.choices.values():  # also after the subcommand; SUPPRESS keeps a --debug given before it
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of user errors too")
    return p


def _generate(a) -> int:
    from .cli_generate import run_generate

    return run_generate(a)


def _print_findings(pf) -> None:
    for w in pf.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for n in pf.notes:
        print(f"note: {n}", file=sys.stderr)


def _upscale(a) -> int:
    from .io.atomic import atomic_output, check_output_path
    from .preflight import preflight_upscale
    from .upscale.file_upscale import run_upscale

    opts = {k: getattr(a, k) for k in ("fidelity_weight", "bg_tile", "crf", "smooth_landmarks")}
    pf = preflight_upscale(a.input, a.output, a.models, opts, device=a.device)
    for k, v in pf.options.items():
        setattr(a, k, v)
    if a.paste_into is not None:
        from .checks import Option, check_option

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


def _convert(a) -> int:
    from .io.atomic import atomic_output
    from .io.checkpoints import convert_to_safetensors
    from .preflight import preflight_convert

    _print_findings(preflight_convert(a.src, a.dst))
    a.interrupt_note = f"nothing was written ({a.dst} is as it was)"
    with atomic_output(a.dst) as tmp:
        n = convert_to_safetensors(a.src, tmp, _dtype(a.dtype))
    print(f"wrote {a.dst} ({n} tensors)")
    return 0


def _fetch(models: str, which) -> Path:
    from .errors import download_failure
    from .models_dir import download, files_to_fetch

    try:
        plan = files_to_fetch(which)
    except ValueError as e:
        raise UserError(str(e), "--which", "give names from `hallo download --help`") from None
    try:
        return download(models, files=plan)
    except (UserError, models_dir.ModelFileMissing):
        raise
    except Exception as e:  # an HTTP stack's error that escaped the download's own guard
        raise download_failure(e, Path(models).expanduser().absolute(), plan) from e


def _download(a) -> int:
    a.interrupt_note = "the files fetched so far are kept; run the same command again for the rest"
    print(_fetch(a.models, a.which))
    return 0


def _doctor(a) -> int:
    from .doctor import run_doctor

    return run_doctor(a.models, selftest=not a.no_selftest, selftest_out=a.selftest_out)


COMMANDS = {"generate": _generate, "upscale": _upscale, "convert": _convert, "download": _download,
            "doctor": _doctor}


def _prog() -> str:
    """How the user started the CLI, for the command lines it prints."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m hallo_core" if name in ("", "__main__.py", "-c") or name.endswith(".py") else name


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = _parser().parse_args(argv)
    a.argv, a.prog = argv, _prog()
    guard = a.guard = InterruptGuard()
    try:
        with guard:  # SIGTERM too: without a handler it would end the process with no word and no cleanup
            return COMMANDS[a.cmd](a)
    except KeyboardInterrupt:
        if a.debug:
            raise
        note = getattr(a, "interrupt_note", "nothing was written")
        print_hint(f"interrupted ({guard.signal_name}): {note}")
        return guard.exit_code
    except Exception as e:
        ue = as_user_error(e)
        if ue is None or a.debug:  # an internal fault keeps its traceback
            raise
        print(ue.cli_line, file=sys.stderr, flush=True)
        return EXIT_USER
