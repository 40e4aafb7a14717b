"""Key lists of weight files without reading the weights: torch zip archives, safetensors, ONNX, zips.

Every reader here touches only metadata: the pickle of a torch archive (a few hundred kB for
net.pth, whose weights are 5 GB), the JSON header of a safetensors file, the top-level fields
of an ONNX protobuf, the central directory of a zip. So a wrong, truncated or unsafe model file
is found in well under a second, before any model is built.

The torch reader is its own restricted unpickler: besides dicts it accepts only the globals a
plain state dict needs (tensor rebuild functions, storage types, OrderedDict) and refuses any
other, naming it, as ``torch.load(weights_only=True)`` would. Storages are never opened; their
sizes are checked against the archive's directory, which is what catches a truncated file.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional, Tuple, Union

from ..io.checkpoints import CheckpointError

PathLike = Union[str, os.PathLike]

# storage type name -> (dtype name, bytes per element)
_STORAGES = {
    "FloatStorage": ("float32", 4), "DoubleStorage": ("float64", 8), "HalfStorage": ("float16", 2),
    "BFloat16Storage": ("bfloat16", 2), "LongStorage": ("int64", 8), "IntStorage": ("int32", 4),
    "ShortStorage": ("int16", 2), "CharStorage": ("int8", 1), "ByteStorage": ("uint8", 1),
    "BoolStorage": ("bool", 1),
}
_SAFETENSORS_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                      "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}


@dataclass(frozen=True)
class TensorInfo:
    shape: Tuple[int, ...]
    dtype: str


class _Storage:
    def __init__(self, key: str, dtype: str, itemsize: int, numel: int):
        self.key, self.dtype, self.itemsize, self.numel = key, dtype, itemsize, numel


def _rebuild_tensor(storage, offset, size, stride, *rest):
    return TensorInfo(tuple(int(s) for s in size), storage.dtype)


def _rebuild_parameter(data, requires_grad=False, hooks=None, *rest):
    return data


class _StorageType:
    def __init__(self, name: str):
        self.name = name


class _Unpickler(pickle.Unpickler):
    def __init__(self, data, path: Path):
        import io

        super().__init__(io.BytesIO(data))
        self.path = path
        self.storages: Dict[str, _Storage] = {}

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGES:
            return _StorageType(name)
        raise CheckpointError(
            f"{self.path} was refused: it holds a pickled Python object ({module}.{name}) besides tensors, "
            "and unpickling such objects can run code; only plain tensor state dicts are read "
            "(use the official file, or convert it with a tool you trust)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise CheckpointError(f"{self.path}: unexpected storage record {pid!r:.80} in the archive")
        dtype, itemsize = _STORAGES[pid[1].name]
        st = self.storages.get(str(pid[2]))
        if st is None:
            st = self.storages[str(pid[2])] = _Storage(str(pid[2]), dtype, itemsize, int(pid[4]))
        return st


def _corrupt(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"cannot read weights file {path} ({why}); the file may be truncated or corrupt: "
                           "download it again")


def _flatten(obj, prefix: str = "") -> Dict[str, TensorInfo]:
    """Tensors of a (possibly nested) dict by dotted key; the upscalers' ``params_ema`` wrapper included."""
    out: Dict[str, TensorInfo] = {}
    if isinstance(obj, TensorInfo):
        out[prefix] = obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def torch_manifest(path: PathLike) -> Optional[Dict[str, TensorInfo]]:
    """Keys, shapes and dtypes of a torch zip archive (``torch.save`` since 1.6) from its pickle only.

    Returns None for the legacy (pre-zip) format, which cannot be listed without reading it.
    Raises CheckpointError for a missing, truncated, corrupt or unsafe file.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"weights file not found: {p}")
    with open(p, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"\x80\x02" or magic[:1] == b"\x80":  # legacy torch.save: a bare pickle
        return None
    if magic != b"PK\x03\x04":
        raise _corrupt(p, "not a torch archive" if magic else "the file is empty")
    try:
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
            pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
            if not pkl:
                raise _corrupt(p, "no data.pkl in the archive")
            prefix = pkl[0][: -len("data.pkl")]
            un = _Unpickler(z.read(pkl[0]), p)
            obj = un.load()
            sizes = {n[len(prefix) + len("data/"):]: z.getinfo(n).file_size
                     for n in names if n.startswith(prefix + "data/")}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, OSError, ValueError, KeyError) as e:
        raise _corrupt(p, f"{type(e).__name__}: {str(e)[:120]}") from e
    for st in un.storages.values():
        if st.key not in sizes:
            raise _corrupt(p, f"storage {st.key} is missing from the archive")
        if sizes[st.key] < st.numel * st.itemsize:
            raise _corrupt(p, f"storage {st.key} holds {sizes[st.key]} of {st.numel * st.itemsize} bytes")
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    found = _flatten(obj)
    if not found:
        raise CheckpointError(f"{p} does not hold a state dict of tensors")
    return found


def safetensors_manifest(path: PathLike) -> Dict[str, TensorInfo]:
    """Keys, shapes and dtypes from a safetensors header; the file's size is checked against it."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"weights file not found: {p}")
    size = p.stat().st_size
    try:
        with open(p, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError("shorter than a header")
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, 100 * 2**20):
                raise ValueError(f"header length {n} exceeds the file")
            header = json.loads(f.read(n))
    except (ValueError, UnicodeDecodeError) as e:
        raise _corrupt(p, f"bad safetensors header: {str(e)[:120]}") from e
    out, end = {}, 0
    for k, v in header.items():
        if k == "__metadata__":
            continue
        try:
            shape, dtype, (a, b) = tuple(int(s) for s in v["shape"]), str(v["dtype"]), v["data_offsets"]
        except (KeyError, TypeError, ValueError) as e:
            raise _corrupt(p, f"bad header entry for {k}") from e
        numel = 1
        for s in shape:
            numel *= s
        if int(b) - int(a) != numel * _SAFETENSORS_BYTES.get(dtype, 0):
            raise _corrupt(p, f"tensor {k} has {int(b) - int(a)} bytes for shape {shape} {dtype}")
        end = max(end, int(b))
        out[k] = TensorInfo(shape, dtype.lower())
    if 8 + n + end > size:
        raise _corrupt(p, f"the header describes {8 + n + end} bytes but the file has {size}")
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
