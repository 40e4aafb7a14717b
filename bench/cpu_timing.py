"""Process-CPU timing of a module's calls; no imports beyond the standard library, so both the
bench (our venv) and upstream_worker.py (upstream's venv) use the same helper."""

from __future__ import annotations

import time


def time_calls(module) -> list:
    """Wrap ``module.forward``; the returned one-element list accumulates the process CPU
    seconds spent inside its calls (set ``[0] = 0.0`` to restart the count)."""
    acc, fwd = [0.0], module.forward

    def timed(*a, **k):
        c = time.process_time()
        try:
            return fwd(*a, **k)
        finally:
            acc[0] += time.process_time() - c

    module.forward = timed
    return acc
