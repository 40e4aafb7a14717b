"""``hallo download``: fetch the official weights into a models folder."""

from __future__ import annotations

from .common import fetch


def run(a) -> int:
    a.interrupt_note = "the files fetched so far are kept; run the same command again for the rest"
    print(fetch(a.models, a.which))
    return 0
