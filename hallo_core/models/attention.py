"""The one attention call of every network in this package, replaceable by the host.

Callers pass head-split tensors q [b, h, n, d], k/v [b, h, m, d] and get [b, h, n, d] back,
with the scale 1/sqrt(d) (the only one these networks use). Outside a host the call is PyTorch's SDPA, exactly as if
it were called directly; ComfyUI installs its own selection (sage, flash, xformers, ...)
through ``set_attention`` or, for one block of work, ``use_attention``.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterator, Optional

import torch
import torch.nn.functional as F

AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

_GLOBAL: Optional[AttentionFn] = None
_LOCAL: contextvars.ContextVar = contextvars.ContextVar("hallo_attention", default=None)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: Optional[float] = None) -> torch.Tensor:
    """``scale`` is only ever 1/sqrt(d) here; callers that passed it to SDPA keep passing it
    so the default path stays bit-identical. A host function is called as ``fn(q, k, v)``."""
    fn = _LOCAL.get() or _GLOBAL
    if fn is None:
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    return fn(q, k, v)


def set_attention(fn: Optional[AttentionFn]) -> Optional[AttentionFn]:
    """Install ``fn`` process-wide (None restores SDPA); returns the previous one."""
    global _GLOBAL
    prev, _GLOBAL = _GLOBAL, fn
    return prev


def installed_attention() -> Optional[AttentionFn]:
    """The process-wide function (None: SDPA)."""
    return _GLOBAL


@contextlib.contextmanager
def use_attention(fn: Optional[AttentionFn]) -> Iterator[None]:
    """``fn`` for the calls made inside the block (this thread/context only)."""
    token = _LOCAL.set(fn)
    try:
        yield
    finally:
        _LOCAL.reset(token)
