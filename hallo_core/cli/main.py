"""Headless command line: ``hallo`` or ``python -m hallo_core`` with the subcommands
generate, upscale, convert, download and doctor.

Nothing heavy is imported until a subcommand runs, so ``--help`` answers at once. Every
command checks what it was given before it reads any weights (:mod:`hallo_core.cli.preflight`); a
user mistake is one ``error: <what> (<where>): <how to fix>`` line and exit code 2, anything
else is an internal fault and keeps its traceback (``--debug`` shows one for user errors too).
Ctrl-C and SIGTERM exit 130 / 143 with one line that says what was kept (docs/errors.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from ..assets import layout as models_dir
from ..errors import EXIT_USER, as_user_error, one_line
from .interrupts import InterruptGuard, print_hint

from . import convert, download, upscale
from .common import DOWNLOAD_NAMES, DTYPE_NAMES, OPTIONAL_COMPONENTS, number as _number  # noqa: F401 (tests read them here)
from .upscale import UPSCALE_SCALES  # noqa: F401

# Copies of the engine's tables (tests/test_cli_help.py keeps them equal): reading the engine's
# would import torch just to print --help.
SCHEDULER_NAMES = ("ddim", "dpmpp", "unipc", "euler")
FRAME_NAMES = ("auto", "crop", "stretch")
_NET = models_dir.rel_path("hallo")


def _frame_name(value: str) -> str:
    return "crop" if value == "square" else value  # "square" is accepted as another name for crop


class _Parser(argparse.ArgumentParser):
    """argparse's own mistakes (a missing argument, a value that is no number) as one line too."""

    def error(self, message: str):
        self.exit(EXIT_USER, f"error: {one_line(message)} ({self.prog}): see `{self.prog} --help`\n")


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
    g.add_argument("--frame", choices=FRAME_NAMES, default="auto", type=_frame_name,
                   help="auto: a square photo the face fills is animated whole (upstream's path), any "
                        "other is cropped around the face and pasted back; crop: the square crop around "
                        "the face is the video; stretch: squash the whole photo into the square (upstream)")
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
    upscale.add_arguments(u)

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
    from .generate import run_generate

    return run_generate(a)


def _doctor(a) -> int:
    from .doctor import run_doctor

    return run_doctor(a.models, selftest=not a.no_selftest, selftest_out=a.selftest_out)


COMMANDS = {"generate": _generate, "upscale": upscale.run, "convert": convert.run, "download": download.run,
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
