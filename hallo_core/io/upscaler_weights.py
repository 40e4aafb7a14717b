"""Strict loaders for the temporal upscaler's official weight files.

| file                                   | top level                          | prefix handling          |
|----------------------------------------|------------------------------------|--------------------------|
| hallo2/net_g.pth                       | ``params_ema``                     | none                     |
| facelib/detection_Resnet50_Final.pth   | bare state dict                    | leading ``module.`` cut  |
| facelib/parsing_parsenet.pth           | bare state dict                    | none                     |
| realesrgan/RealESRGAN_x2plus.pth       | ``params_ema``, ``params`` or bare | none                     |

Each loader builds the released configuration; ``**config`` overrides constructor arguments (tests use
tiny configs). Every file is read with ``torch.load(weights_only=True)``; the model is built on the meta device
and the tensors are assigned, so nothing is allocated twice. Any missing/unexpected key or shape
mismatch raises :class:`UpscalerWeightsError` (a user error about the models) naming the file and the
first mismatches. A RealESRGAN file saved without the ``params_ema`` / ``params`` wrapper (what
conversions of it often hold) is read as the bare state dict it is.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import torch
from torch import nn

from ..models.upscaler.codeformer import TemporalCodeFormer
from ..models.upscaler.parsenet import ParseNet
from ..models.upscaler.retinaface import RetinaFace
from ..errors import WeightsError
from ..models.upscaler.rrdbnet import RRDBNet

_SHOW = 5


_FIX = "download it again (python -m hallo_core download --models MODELS --which hallo2-4k)"


class UpscalerWeightsError(WeightsError):
    """A weight file is unreadable or does not match the network it is loaded into."""

    def __init__(self, what: str, path: str = "", fix: str = _FIX):
        super().__init__(what, fix=fix, path=path)


def read_weight_file(path: str | os.PathLike) -> Any:
    """``torch.load(path, map_location='cpu', weights_only=True)`` with a clear error on failure."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UpscalerWeightsError(f"{path}: file not found", path)
    from .checkpoints import trace_weight_load

    trace_weight_load(path, "upscaler weights")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors come in many types
        raise UpscalerWeightsError(f"{path}: cannot be read as a PyTorch weights file ({exc})", path) from exc


def _tensors_only(obj: Any) -> bool:
    return isinstance(obj, Mapping) and all(isinstance(v, torch.Tensor) for v in obj.values())


def select_state_dict(obj: Any, path: str, keys: Sequence[str] = (), bare_ok: bool = False) -> Dict[str, torch.Tensor]:
    """Return ``obj[k]`` for the first of ``keys`` present (``obj`` itself when ``keys`` is empty, or
    when none is present, ``bare_ok`` and ``obj`` is itself a flat dict of tensors)."""
    if not isinstance(obj, Mapping):
        raise UpscalerWeightsError(f"{path}: expected a dict of tensors, got {type(obj).__name__}", path)
    for k in keys:
        if k in obj:
            obj = obj[k]
            break
    else:
        if keys and not (bare_ok and obj and _tensors_only(obj)):
            top = ", ".join(repr(k) for k in list(obj)[:_SHOW])
            raise UpscalerWeightsError(f"{path}: none of the top-level keys {list(keys)} found "
                                       f"(file has {top}{', ...' if len(obj) > _SHOW else ''})", path)
    if not _tensors_only(obj):
        raise UpscalerWeightsError(f"{path}: the selected entry is not a flat dict of tensors", path)
    return dict(obj)


def strip_prefix(sd: Mapping[str, torch.Tensor], prefix: str = "module.") -> Dict[str, torch.Tensor]:
    """Drop ``prefix`` from every key that starts with it (DataParallel checkpoints)."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in sd.items()}


def check_state_dict(model: nn.Module, sd: Mapping[str, torch.Tensor], path: str) -> None:
    """Raise :class:`UpscalerWeightsError` unless ``sd`` has exactly ``model``'s keys and shapes."""
    expected = model.state_dict(keep_vars=True)
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for name, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if items:
                more = f" (+{len(items) - _SHOW} more)" if len(items) > _SHOW else ""
                parts.append(f"{len(items)} {name}: {items[:_SHOW]}{more}")
        raise UpscalerWeightsError(f"{path}: does not match {type(model).__name__}: " + "; ".join(parts), path)


def _load(build: Callable[[], nn.Module], sd: Mapping[str, torch.Tensor], path: str,
          device: Optional[torch.device], dtype: Optional[torch.dtype]) -> nn.Module:
    with torch.device("meta"):
        model = build()
    check_state_dict(model, sd, path)
    model.load_state_dict(sd, strict=True, assign=True)
    model.eval().requires_grad_(False)
    return model.to(device=device or "cpu", dtype=dtype)


def load_temporal_codeformer(path: str | os.PathLike, device: Optional[torch.device] = None,
                             dtype: Optional[torch.dtype] = None, operations: Any = None,
                             **config: Any) -> TemporalCodeFormer:
    """``hallo2/net_g.pth`` -> eval :class:`TemporalCodeFormer` (key ``params_ema``, strict).

    Upstream loads with strict=False but asserts no unexpected keys; the released file has no
    missing keys either, so strict here rejects only files that are not this network.
    """
    path = os.fspath(path)
    sd = select_state_dict(read_weight_file(path), path, ("params_ema",))
    return _load(lambda: TemporalCodeFormer(operations=operations, **config), sd, path, device, dtype)


def load_retinaface(path: str | os.PathLike, device: Optional[torch.device] = None,
                    dtype: Optional[torch.dtype] = None, operations: Any = None, **config: Any) -> RetinaFace:
    """``facelib/detection_Resnet50_Final.pth`` (bare dict, ``module.`` prefix stripped as upstream)."""
    path = os.fspath(path)
    sd = strip_prefix(select_state_dict(read_weight_file(path), path))
    return _load(lambda: RetinaFace(operations=operations, **config), sd, path, device, dtype)


def load_parsenet(path: str | os.PathLike, device: Optional[torch.device] = None,
                  dtype: Optional[torch.dtype] = None, operations: Any = None, **config: Any) -> ParseNet:
    """``facelib/parsing_parsenet.pth`` (bare dict, no prefix handling)."""
    path = os.fspath(path)
    sd = select_state_dict(read_weight_file(path), path)
    return _load(lambda: ParseNet(operations=operations, **config), sd, path, device, dtype)


def load_rrdbnet_x2(path: str | os.PathLike, device: Optional[torch.device] = None,
                    dtype: Optional[torch.dtype] = None, operations: Any = None, **config: Any) -> RRDBNet:
    """``RealESRGAN_x2plus.pth`` (``params_ema`` if present, else ``params``, else the bare dict) -> RRDBNet x2."""
    path = os.fspath(path)
    sd = select_state_dict(read_weight_file(path), path, ("params_ema", "params"), bare_ok=True)
    return _load(lambda: RRDBNet(**{"scale": 2, **config}, operations=operations), sd, path, device, dtype)
