"""What a call raised, as JSON-friendly data, for scripts that run inside ComfyUI's Python and report back."""

from __future__ import annotations

from typing import Callable, List, Optional


def err(fn: Callable[[], object]) -> Optional[List[str]]:
    """``[exception class name, message]`` if ``fn()`` raises, else None."""
    try:
        fn()
    except Exception as e:  # the scripts report every kind: the tests assert which one
        return [type(e).__name__, str(e)]
    return None
