"""Ctrl-C and SIGTERM during a CLI run: keep the finished clips, say how to continue.

While models load and the audio is embedded nothing is on disk yet, so a signal stops the
run at once (KeyboardInterrupt). Once frames are being written, the first signal only asks
the clip loop to stop (``should_stop``, polled before every denoising step): the sink is closed
normally, so the mp4 holds every finished clip and plays, and the resume checkpoint matches
it. A second signal stops at once (the fragmented mp4 still plays up to the last whole clip).
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import List, Optional, Sequence

from ..errors import EXIT_SIGINT, EXIT_SIGTERM


class Interrupted(KeyboardInterrupt):
    """Raised by :meth:`InterruptGuard.check` (for loops that take an ``interrupt`` callable)."""


class InterruptGuard:
    """Installs SIGINT/SIGTERM handlers for its ``with`` block (main thread only; elsewhere a no-op).

    A signal that is ignored when the block starts is left ignored."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._soft = False
        self._old: dict = {}

    # -- state ---------------------------------------------------------------------------------
    @property
    def stopped(self) -> bool:
        return self.signum is not None

    def should_stop(self) -> bool:
        """For ``generate(should_stop=...)``."""
        return self.signum is not None

    def check(self) -> None:
        """For ``embed_audio(interrupt=...)``: raise once a signal arrived."""
        if self.signum is not None:
            raise Interrupted()

    @property
    def exit_code(self) -> int:
        return EXIT_SIGTERM if self.signum == signal.SIGTERM else EXIT_SIGINT

    @property
    def signal_name(self) -> str:
        return "SIGTERM" if self.signum == signal.SIGTERM else "Ctrl-C"

    @contextlib.contextmanager
    def soft(self):
        """Inside: the first signal only sets the flag (the clip loop stops at the next step)."""
        self._soft = True
        try:
            yield self
        finally:
            self._soft = False

    # -- handlers ------------------------------------------------------------------------------
    def _handle(self, signum, frame) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        if self._soft and first:
            return
        raise Interrupted()

    def __enter__(self) -> "InterruptGuard":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                # a signal the launcher ignores stays ignored (a shell script's `cmd &`, nohup-style
                # wrappers): the run is not theirs to stop with it
                if signal.getsignal(s) is not signal.SIG_IGN:
                    self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> bool:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()
        return False


def resume_command(argv: Sequence[str], prog: str = "python -m hallo_core") -> str:
    """The command line that continues this run: the same arguments plus ``--resume``."""
    args: List[str] = list(argv)
    if "--resume" not in args:
        args.append("--resume")
    return prog + " " + shlex.join(args)


def interrupt_hint(out: Path, frames: int, fps: int, argv: Sequence[str], signal_name: str = "Ctrl-C") -> str:
    """The one line the CLI prints after an interrupted run."""
    out = Path(out)
    if frames <= 0:
        return (f"interrupted ({signal_name}) before the first clip was finished: nothing to keep; "
                f"run again with: {resume_command(argv)}")
    return (f"interrupted ({signal_name}): {out} holds the first {frames} frames ({frames / fps:.1f} s) and plays; "
            f"continue with: {resume_command(argv)}")


def print_hint(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


__all__ = ["InterruptGuard", "Interrupted", "resume_command", "interrupt_hint"]
