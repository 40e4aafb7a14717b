"""Interrupt a ``python -m hallo_core generate`` subprocess the way a user does: a signal once
the first clip is in the video.

The moment is read from generate's progress bar on stderr: the bar counts denoising steps over
all clips, so ``| STEPS/TOTAL [`` means the first clip's last step is done. Its frames are then
decoded and written while the signal is on its way, and the run stops at the next step it
would start, a whole denoising step (the widest window a run offers) before the second clip
could finish. ``WarmCli.signal_when`` (tests/support/cli_runner.py) does the same to a child of a
warm interpreter; :func:`interrupt_after_first_clip` signals a cold ``python -m hallo_core``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from typing import List, Optional, Tuple


def _reader(stream, buf: bytearray) -> None:
    while True:
        chunk = os.read(stream.fileno(), 65536)
        if not chunk:
            return
        buf.extend(chunk)


def signals_as_a_terminal_gives_them() -> None:
    """``preexec_fn`` for a child the test signals: a test run launched with SIGINT ignored (a
    script's `&`) would pass that on, and the CLI keeps an ignored signal ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def interrupt_after_first_clip(cmd: List[str], steps: int, env: Optional[dict] = None, cwd=None,
                               sig: int = signal.SIGINT, timeout: float = 300) -> Tuple[int, str, float]:
    """Run ``cmd``, send ``sig`` once the first clip's ``steps`` steps are done; returns
    (exit code, stderr, seconds from the signal to the exit)."""
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, preexec_fn=signals_as_a_terminal_gives_them)
    buf = bytearray()
    reader = threading.Thread(target=_reader, args=(proc.stderr, buf), daemon=True)
    reader.start()
    done = re.compile(rb"\| %d/\d+ \[" % steps)
    deadline = time.monotonic() + timeout
    try:
        while not done.search(buf):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the run ended or stalled before its first clip:\n" + buf.decode(errors="replace")[-3000:])
            time.sleep(0.02)
        sent = time.monotonic()
        proc.send_signal(sig)
        rc = proc.wait(timeout=max(deadline - time.monotonic(), 30))
        stopped = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    proc.stderr.close()
    return rc, buf.decode(errors="replace"), stopped
