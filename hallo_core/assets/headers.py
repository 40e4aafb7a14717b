"""Key lists of weight files without reading the weights: torch zip archives, safetensors, ONNX, zips.

Every reader here touches only metadata, so a wrong, truncated or unsafe model file is found in
well under a second, before any model is built:

* torch archives go through ``torch.load(weights_only=True, mmap=True)``: torch's own safe
  unpickler refuses any global a plain state dict does not need, and the storages are mapped,
  not read (a storage shorter than its tensors fails as it is mapped, which is what catches a
  cut or tampered archive);
* safetensors files through ``safetensors.safe_open``, which checks the header against the file;
* ONNX models by walking their top-level protobuf fields. Neither onnxruntime (a session reads
  and optimises the whole graph before anything can be listed) nor the ``onnx`` package (not a runtime
  dependency) offers a reader that stops at the structure;
* zip bundles (mediapipe ``.task``) through their central directory.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional, Tuple, Union

from ..io.checkpoints import CheckpointError, read_torch_file

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class TensorInfo:
    shape: Tuple[int, ...]
    dtype: str


def _corrupt(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"cannot read weights file {path} ({why}); the file may be truncated or corrupt: "
                           "download it again")


def _flatten(obj, prefix: str = "") -> Dict[str, TensorInfo]:
    """Tensors of a (possibly nested) dict by dotted key; the upscalers' ``params_ema`` wrapper included."""
    import torch

    out: Dict[str, TensorInfo] = {}
    if isinstance(obj, torch.Tensor):
        out[prefix] = TensorInfo(tuple(int(s) for s in obj.shape), str(obj.dtype).replace("torch.", ""))
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def torch_manifest(path: PathLike) -> Optional[Dict[str, TensorInfo]]:
    """Keys, shapes and dtypes of a torch zip archive (``torch.save`` since 1.6), weights left unread.

    Returns None for the legacy (pre-zip) format, which cannot be listed without reading it.
    Raises CheckpointError for a missing, truncated, corrupt or unsafe file.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"weights file not found: {p}")
    with open(p, "rb") as f:
        magic = f.read(4)
    if magic[:1] == b"\x80":  # legacy torch.save: a bare pickle
        return None
    if magic != b"PK\x03\x04":
        raise _corrupt(p, "not a torch archive" if magic else "the file is empty")
    obj = read_torch_file(p, mmap=True)
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    found = _flatten(obj)
    if not found:
        raise CheckpointError(f"{p} does not hold a state dict of tensors")
    return found


def safetensors_manifest(path: PathLike) -> Dict[str, TensorInfo]:
    """Keys, shapes and dtypes from a safetensors header (checked against the file by safetensors)."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"weights file not found: {p}")
    try:
        with safe_open(str(p), framework="pt") as f:
            out = {}
            for k in f.keys():
                sl = f.get_slice(k)
                out[k] = TensorInfo(tuple(int(s) for s in sl.get_shape()), str(sl.get_dtype()).lower())
    except Exception as e:  # SafetensorError (a Rust exception type), OSError
        raise _corrupt(p, f"safetensors: {' '.join(str(e).split())[:160]}") from e
    return out


def manifest(path: PathLike) -> Optional[Dict[str, TensorInfo]]:
    """``safetensors_manifest`` or ``torch_manifest`` by extension (None: legacy torch format)."""
    p = Path(path)
    return safetensors_manifest(p) if p.suffix.lower() == ".safetensors" else torch_manifest(p)


def compare_manifest(found: Mapping[str, TensorInfo], expected: Mapping[str, Tuple[int, ...]], source: str,
                     what: str = "the Hallo network", limit: int = 3, allow_extra: bool = False) -> None:
    """CheckpointError (one line) unless the keys and shapes match ``expected``."""
    missing = [k for k in expected if k not in found]
    extra = [] if allow_extra else [k for k in found if k not in expected]
    shapes = [f"{k}: file {found[k].shape} vs model {tuple(expected[k])}" for k in expected
              if k in found and tuple(found[k].shape) != tuple(expected[k])]
    parts = []
    for title, items in (("missing keys", missing), ("unexpected keys", extra), ("shape mismatches", shapes)):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            parts.append(f"{len(items)} {title}: " + ", ".join(items[:limit]) + more)
    if parts:
        raise CheckpointError(f"{source} does not match {what}: " + "; ".join(parts))


# -- ONNX and zip bundles ------------------------------------------------------------------------

def _varint(f) -> Optional[int]:
    shift = value = 0
    while True:
        b = f.read(1)
        if not b:
            return None if shift == 0 else -1
        value |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            return -1


def onnx_check(path: PathLike) -> Dict[int, int]:
    """Walk the top-level fields of an ONNX ModelProto, seeking over their contents.

    A valid model has an ``ir_version`` (field 1) and a ``graph`` (field 7), and its last field ends
    exactly at the end of the file; a truncated download fails that. Returns {field: count}.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"model file not found: {p}")
    size = p.stat().st_size
    fields: Dict[int, int] = {}
    with open(p, "rb") as f:
        while f.tell() < size:
            tag = _varint(f)
            if tag is None or tag < 0:
                raise _corrupt(p, "bad ONNX field tag")
            num, wire = tag >> 3, tag & 7
            if wire == 0:
                if _varint(f) in (None, -1):
                    raise _corrupt(p, "bad ONNX varint")
            elif wire == 2:
                n = _varint(f)
                if n in (None, -1) or f.tell() + n > size:
                    raise _corrupt(p, f"ONNX field {num} runs past the end of the file")
                f.seek(n, 1)
            elif wire in (1, 5):
                f.seek(8 if wire == 1 else 4, 1)
            else:
                raise _corrupt(p, f"not an ONNX model (wire type {wire})")
            if num < 1 or num > 64:
                raise _corrupt(p, "not an ONNX model")
            fields[num] = fields.get(num, 0) + 1
        if f.tell() != size:
            raise _corrupt(p, "ONNX model ends mid-field")
    if 1 not in fields or 7 not in fields:
        raise _corrupt(p, "not an ONNX model (no ir_version or graph)")
    return fields


def zip_check(path: PathLike, members: Iterable[str] = ()) -> None:
    """A zip bundle (mediapipe .task) whose directory opens and lists ``members``."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"model file not found: {p}")
    try:
        with zipfile.ZipFile(p) as z:
            names = set(z.namelist())
    except (zipfile.BadZipFile, OSError) as e:
        raise _corrupt(p, f"{type(e).__name__}: {str(e)[:120]}") from e
    lacking = [m for m in members if m not in names]
    if lacking:
        raise _corrupt(p, "missing " + ", ".join(lacking))


__all__ = ["TensorInfo", "torch_manifest", "safetensors_manifest", "manifest", "compare_manifest",
           "onnx_check", "zip_check"]
