"""Reading and converting Hallo weights (.pth via ``torch.load(weights_only=True)``, .safetensors)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Dict, Union

import torch
from torch import nn

from ..errors import WeightsError

PathLike = Union[str, os.PathLike]
REFETCH = "download the file again or point the models folder at the right one"


class CheckpointError(WeightsError):
    """A weights file that cannot be read or does not match the model (``path``: the file)."""


TRACE_ENV = "HALLO_TRACE_LOADS"


def trace_weight_load(path: PathLike, what: str = "weights") -> None:
    """With ``HALLO_TRACE_LOADS`` set, log that weights are about to be read (tests use it to
    prove that an up-front check failed before any weights were read). ``1`` logs to stderr;
    any other value is a file the line is appended to."""
    target = os.environ.get(TRACE_ENV)
    if not target:
        return
    line = f"hallo-trace: reading {what} {path}\n"
    if target == "1":
        import sys

        sys.stderr.write(line)
        sys.stderr.flush()
    else:
        with open(target, "a", encoding="utf-8") as f:
            f.write(line)


def load_state_dict_file(path: PathLike) -> Dict[str, torch.Tensor]:
    """Read a state dict from ``.pth``/``.pt``/``.ckpt`` (tensors only, never arbitrary pickles) or ``.safetensors``."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"weights file not found: {p}", fix=REFETCH, path=str(p))
    trace_weight_load(p)
    if p.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file

            sd = load_file(str(p), device="cpu")
        except Exception as e:  # truncated file, bad header
            raise _unreadable(p, e) from e
    else:
        sd = read_torch_file(p)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise CheckpointError(f"{p} does not hold a plain state dict of tensors", fix=REFETCH, path=str(p))
    return sd


def read_torch_file(p: Path, mmap: bool = True):
    """``torch.load(weights_only=True)`` on the CPU, its failures as one-line CheckpointErrors.

    ``mmap``: the storages are mapped, not read, so the tensors' pages load only when touched (a
    caller that looks at keys and shapes reads just the pickle). Only the zip format can be
    mapped; legacy files are read whole.
    """
    try:
        return torch.load(str(p), map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(p))
    except Exception as e:  # truncated zip, bad header, pickled objects, ...
        refused = _refused_global(e)
        if refused is not None:
            raise CheckpointError(
                f"{p} was refused: it holds a pickled Python object ({refused}) besides tensors, and "
                "unpickling such objects can run code; refusing to unpickle it (only plain tensor state "
                "dicts are read, with torch.load(weights_only=True))", fix=REFETCH, path=str(p)
            ) from e
        raise _unreadable(p, e) from e


def _unreadable(p: Path, e: Exception) -> CheckpointError:
    return CheckpointError(
        f"cannot read weights file {p}: the file may be truncated or corrupt ({type(e).__name__}: "
        f"{_first_line(e)[:160]})", fix="download it again", path=str(p))


def _refused_global(e: Exception) -> "str | None":
    """The global that torch's weights-only unpickler refused, or None for other failures.

    torch 2.13 words it "Unsupported global: GLOBAL x was not an allowed global by default" for a
    global outside its allow list, but "Trying to load unsupported GLOBAL x whose module x is
    blocked" for the dangerous modules (os, posix, subprocess, ...): a case-sensitive match on
    the first form called exactly the malicious files corrupt.
    """
    import re

    text = str(e)
    if "weights only load failed" not in text.lower() and "weightsunpickler" not in text.lower():
        return None
    m = re.search(r"unsupported\s+(?:global:?\s*)?GLOBAL\s+([\w.]+)", text, re.IGNORECASE)
    if m:
        return m.group(1)
    m = re.search(r"unsupported\s+global:?\s*([\w.]+)", text, re.IGNORECASE)
    if m:
        return m.group(1)
    if "unsupported operand" in text.lower():
        return "a raw pickle stream, not a torch archive"
    return "an object torch's safe loader refused" if "unsupported" in text.lower() else None


def _first_line(e: Exception) -> str:
    """The first sentence of a library's message (torch's zip errors go on for a paragraph of advice)."""
    s = str(e).strip().splitlines()
    first = s[0].split(". ")[0] if s else ""
    return first[:160]


def check_state_dict(model: nn.Module, sd: Dict[str, torch.Tensor], source: str = "state dict", limit: int = 5) -> None:
    """Raise CheckpointError naming ``source`` and the first mismatches unless keys and shapes match exactly."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [
        f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return
    lines = [f"{source} does not match the Hallo network:"]
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            lines.append(f"{len(items)} {title}: " + ", ".join(items[:limit]) + more)
    raise CheckpointError(" ".join(lines), fix=REFETCH, path=str(source))


def load_hallo_weights(net: nn.Module, path: PathLike) -> nn.Module:
    """Strictly load ``path`` (hallo/net.pth, hallo2/net.pth or a converted .safetensors) into ``net``.

    Tensors are cast to each parameter's dtype. Works for a net built on the meta device too
    (parameters are replaced by the loaded tensors via ``assign=True``).
    """
    sd = load_state_dict_file(path)
    check_state_dict(net, sd, str(path))
    on_meta = any(p.is_meta for p in net.parameters())
    if on_meta:
        own = net.state_dict()
        sd = {k: v.to(own[k].dtype) for k, v in sd.items()}
        net.load_state_dict(sd, strict=True, assign=True)
    else:
        net.load_state_dict(sd, strict=True)
    return net


def convert_to_safetensors(src: PathLike, dst: PathLike, dtype: torch.dtype = torch.float16) -> int:
    """Convert a net.pth to a .safetensors file with floating tensors cast to ``dtype``; returns tensor count."""
    from safetensors.torch import save_file

    sd = load_state_dict_file(src)
    out = {}
    for k, v in sd.items():
        v = v.to(dtype) if v.is_floating_point() and dtype is not None else v
        out[k] = v.contiguous()
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(dst), metadata={"format": "pt", "source": Path(src).name})
    return len(out)


__all__ = ["CheckpointError", "trace_weight_load", "TRACE_ENV", "load_state_dict_file", "read_torch_file",
           "check_state_dict", "load_hallo_weights", "convert_to_safetensors"]
