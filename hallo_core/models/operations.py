"""The layer factory every network in this package is built through.

Each constructor takes ``operations``: a namespace of layer classes (``Linear``, ``Conv2d``,
``GroupNorm``, ``LayerNorm``, ...), or None for ``torch.nn``. ComfyUI passes a ``comfy.ops``
namespace so that weights can stay on the offload device and be cast at each forward.
``comfy.ops`` has no ``BatchNorm2d``, and a hand-made namespace may lack ``Embedding``; the
two helpers below build torch's own class when the namespace lacks one.
"""

from __future__ import annotations

from typing import Any

from torch import nn


def resolve_operations(operations: Any = None) -> Any:
    """The namespace to build layers from: ``operations`` itself, or ``torch.nn`` when None."""
    return nn if operations is None else operations


def batch_norm(operations: Any, channels: int, **kwargs: Any) -> nn.Module:
    cls = getattr(operations, "BatchNorm2d", None) or nn.BatchNorm2d
    return cls(channels, **kwargs)


def embedding(operations: Any, num: int, dim: int, **kwargs: Any) -> nn.Module:
    cls = getattr(operations, "Embedding", None) or nn.Embedding
    return cls(num, dim, **kwargs)
