"""Signalling a CLI run the way a user does.

The moment to interrupt a generate is read from its progress bar on stderr: the bar counts
denoising steps over all clips, so ``| STEPS/TOTAL [`` means the first clip's last step is done.
Its frames are then decoded and written while the signal is on its way, and the run stops at the
next step it would start, a whole denoising step (the widest window a run offers) before the second
clip could finish. ``WarmCli.signal_when`` (tests/support/cli_runner.py) sends it.
"""

from __future__ import annotations

import signal


def signals_as_a_terminal_gives_them() -> None:
    """``preexec_fn`` for a child the test signals: a test run launched with SIGINT ignored (a
    script's `&`) would pass that on, and the CLI keeps an ignored signal ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
