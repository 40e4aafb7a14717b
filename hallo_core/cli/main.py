"""Headless command line: ``hallo`` or ``python -m hallo_core`` with the subcommands
generate, batch, upscale, convert, download and doctor.

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
from ..errors import EXIT_USER, AudioError, InstallError, UserError, one_line
from .interrupts import InterruptGuard, print_hint

from . import batch, convert, download, upscale
from .common import DOWNLOAD_NAMES, DTYPE_NAMES, OPTIONAL_COMPONENTS, add_options, words
from .generate import GENERATE_FAST_OPTIONS, GENERATE_OPTIONS

_NET = models_dir.rel_path("hallo")


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
    g.add_argument("--audio", default=None, help="speech audio (wav/mp3/... via PyAV); sets the length")
    g.add_argument("--speaker", action="append", default=None, metavar="FACE=AUDIO[#CHANNEL]",
                   help="instead of --audio, once per person: face FACE (counted as --face counts) speaks AUDIO "
                        "(#CHANNEL: one channel of it); every face is pasted back into the photo")
    g.add_argument("--out", required=True, help="output .mp4 (H.264 + the original audio)")
    add_options(g, GENERATE_OPTIONS)
    g.add_argument("--device", default="auto", help="torch device (auto = cuda if available, else cpu)")
    g.add_argument("--dtype", choices=DTYPE_NAMES, default=None,
                   help="default: fp16 on CUDA (upstream's), fp32 on CPU")
    g.add_argument("--hallo2", action="store_true", help="Hallo2 weights + motion-frame drop")
    g.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from OUT.mp4.resume.pt (same inputs and settings)")
    add_options(g, GENERATE_FAST_OPTIONS)
    g.add_argument("--download", action="store_true", help="fetch missing official weights first")

    batch.add_arguments(sub.add_parser("batch", help="many generate jobs from a .jsonl or .csv file, the models read once",
                                       formatter_class=fmt, description="Run many generate jobs with the models read "
                                       "once; a finished job is skipped, a stopped one continues (docs/batch.md)."))

    u = sub.add_parser("upscale", help="Hallo2 temporal face restoration + background upscaling of a video",
                       description="Upscale a video (e.g. generate's 512 px output) with Hallo2's temporal "
                                   "CodeFormer and RealESRGAN x2; the input's audio is copied.", formatter_class=fmt)
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
    if a.speaker:
        from .speakers import run_speakers

        return run_speakers(a)
    if a.audio is None:
        raise AudioError("no audio given", "audio", "give the speech as --audio FILE, or one --speaker FACE=AUDIO "
                        "per person")
    from .generate import run_generate

    return run_generate(a)


def _batch(a) -> int:
    sub = next(x for x in _parser()._actions if isinstance(x, argparse._SubParsersAction))
    return batch.run(a, sub.choices["generate"])  # each row is read by generate's own parser


def _doctor(a) -> int:
    from .doctor import run_doctor

    return run_doctor(a.models, selftest=not a.no_selftest, selftest_out=a.selftest_out)


COMMANDS = {"generate": _generate, "batch": _batch, "upscale": upscale.run, "convert": convert.run, "download": download.run,
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
        return _interrupted(a, guard)
    except Exception as e:
        if guard.stopped and not isinstance(e, UserError) and not a.debug:
            # the signal's KeyboardInterrupt was raised inside a native reader's callback (safetensors
            # turns it into "could not determine the shape ..."): the run was stopped, not broken
            return _interrupted(a, guard)
        ue = e if isinstance(e, UserError) else _missing_package(e)
        if ue is None or a.debug:  # an internal fault keeps its traceback
            raise
        print(ue.placed(words).cli_line, file=sys.stderr, flush=True)
        return EXIT_USER


def _interrupted(a, guard: InterruptGuard) -> int:
    note = getattr(a, "interrupt_note", "nothing was written")
    print_hint(f"interrupted ({guard.signal_name}): {note}")
    return guard.exit_code


def _missing_package(e: Exception) -> Optional[UserError]:
    """A package the command needs that cannot be imported (torch not installed, a broken install)."""
    if not isinstance(e, ImportError) or (e.name or "").split(".")[0] == "hallo_core":
        return None  # a fault of this package's own imports keeps its traceback
    name = e.name or "a required package"
    fix = ("install PyTorch first (https://pytorch.org/get-started/locally/, e.g. pip install torch), then "
           "pip install -r requirements.txt") if name.split(".")[0] == "torch" else "pip install -r requirements.txt"
    return InstallError(f"{name} cannot be imported ({one_line(e, 160)})", fix=fix)
